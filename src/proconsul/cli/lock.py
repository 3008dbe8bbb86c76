"""`consul lock`: run a child command only while holding a lock (or a semaphore slot).

The lock is the one Consul's Go client builds (`api/lock.go`, `api/semaphore.go`): a session
with a 15s TTL renewed at half-TTL, the key `<prefix>/.lock` acquired with the magic flag value,
blocking waits while another session holds it, a timed retry while a lock-delay is in force, and a
monitor that declares the lock lost as soon as the key no longer names our session.  Keeping the
same keys, flags and session shapes lets `proconsul lock` and `consul lock` (or any Go client)
contend for the same prefix.  When the lock is lost the child gets SIGTERM, then SIGKILL after a
grace period; at the end the lock is released, the session destroyed and the key cleaned up.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from proconsul.cli import err, out
from proconsul.cli.api import APIError, Client, HTTPFlags, is_retryable
from proconsul.cli.flags import Flag, FlagSet, format_duration, parse_args, parse_duration
from proconsul.cli.kv import go_join
from proconsul.cli.watch import exit_text, handler_command

LOCK_FLAG_VALUE = 0x2DDCCBC058A50C18
SEMAPHORE_FLAG_VALUE = 0xE0F69A2BAA414DE0
SEMAPHORE_KEY = ".lock"
SESSION_TTL = "15s"
LOCK_WAIT_NS = 15_000_000_000
LOCK_RETRY_S = 5.0
MONITOR_RETRIES = 3
MONITOR_RETRY_S = 1.0
KILL_GRACE_S = 5.0

HELP = """
Usage: consul lock [options] prefix child...

  Acquires a lock or semaphore at a given path, and invokes a child process
  when successful. The child process can assume the lock is held while it
  executes. If the lock is lost or communication is disrupted the child
  process will be sent a SIGTERM signal and given time to gracefully exit.
  After the grace period expires the process will be hard terminated.

  When -n=1, only a single lock holder or leader exists providing mutual
  exclusion. Setting a higher value switches to a semaphore allowing multiple
  holders to coordinate.

  The prefix provided must have write privileges.
"""


class LockError(Exception):
    """A lock operation failed; the message is the Go client's."""


class LockInUse(LockError):
    """Cleanup found another holder (api.ErrLockInUse / ErrSemaphoreInUse)."""


class Shutdown(Exception):
    """SIGINT/SIGTERM arrived while waiting for the lock."""


# ----------------------------------------------------------------------------------------------


class SessionKeeper:
    """A lock session and its renewal thread (api.Session.RenewPeriodic)."""

    def __init__(self, client: Client, entry: dict[str, Any]) -> None:
        self.client = client
        self.entry = entry
        self.id = ""
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._destroyed = False

    def create(self) -> str:
        try:
            self.id = self.client.session_create(self.entry)
        except APIError as exc:
            raise LockError(f"failed to create session: {exc}") from None
        self._thread = threading.Thread(target=self._renew, name="session-renew", daemon=True)
        self._thread.start()
        return self.id

    def _renew(self) -> None:
        ttl = parse_duration(str(self.entry.get("TTL", SESSION_TTL))) / 1e9
        wait = ttl / 2
        last = time.monotonic()
        while time.monotonic() - last <= ttl:
            if self._done.wait(wait):
                self._destroy()
                return
            try:
                entry = self.client.session_renew(self.id)
            except APIError:
                wait = 1.0
                continue
            if entry is None:
                return
            try:
                ttl = parse_duration(str(entry.get("TTL") or SESSION_TTL)) / 1e9
            except ValueError:
                pass
            wait = ttl / 2
            last = time.monotonic()

    def _destroy(self) -> None:
        try:
            self.client.session_destroy(self.id)
            self._destroyed = True
        except APIError:
            pass

    def stop(self) -> None:
        """End renewal and destroy the session, waiting for it so the process can then exit."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            if self._thread.is_alive():
                return
            self._thread = None
        if self.id and not self._destroyed:
            self._destroy()


@dataclass(frozen=True)
class Options:
    """How to contend: the session name, monitor tolerance, one-shot budget and stop test."""

    name: str
    monitor_retries: int
    try_once: bool
    wait_ns: int
    should_stop: Callable[[], bool]


class _Acquirer:
    """What a lock and a semaphore share: the session, the wait budget and the monitor."""

    def __init__(self, client: Client, opts: Options) -> None:
        self.client = client
        self.name = opts.name
        self.monitor_retries = opts.monitor_retries
        self.try_once = opts.try_once
        self.wait_ns = opts.wait_ns if opts.try_once else LOCK_WAIT_NS
        self.should_stop = opts.should_stop
        self.session: SessionKeeper | None = None
        self.held = False
        self.lost: threading.Event | None = None

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; True when the wait ran its course."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.should_stop():
                return False
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return not self.should_stop()

    def _budget(self, start: float, attempts: int) -> int | None:
        """The query wait for this attempt; None once a one-shot attempt has used its time."""
        if not (self.try_once and attempts > 0):
            return self.wait_ns
        remaining = self.wait_ns - int((time.monotonic() - start) * 1e9)
        return remaining if remaining > 0 else None

    def _monitor(self, check: Callable[[int], tuple[bool, int]], lost: threading.Event) -> None:
        """Block on the key until it stops naming our session; ride out a few 500s first."""
        index = 0
        retries = self.monitor_retries
        try:
            while True:
                try:
                    still_held, index = check(index)
                except APIError as exc:
                    if retries > 0 and is_retryable(exc):
                        time.sleep(MONITOR_RETRY_S)
                        retries -= 1
                        index = 0
                        continue
                    return
                if not still_held:
                    return
                retries = self.monitor_retries
        finally:
            lost.set()

    def _start_monitor(self, check: Callable[[int], tuple[bool, int]]) -> threading.Event:
        lost = threading.Event()
        threading.Thread(target=self._monitor, args=(check, lost), name="lock-monitor",
                         daemon=True).start()
        self.lost = lost
        self.held = True
        return lost

    def _stop_session(self) -> None:
        if self.session is not None:
            self.session.stop()
            self.session = None


class Lock(_Acquirer):
    """api.Lock on `<prefix>/.lock`."""

    def __init__(self, client: Client, key: str, opts: Options) -> None:
        super().__init__(client, opts)
        self.key = key
        self.session_id = ""

    def acquire(self) -> threading.Event | None:
        """Wait for the lock; the returned event is set when the lock is lost."""
        self.session = SessionKeeper(self.client, {"Name": self.name, "TTL": SESSION_TTL})
        self.session_id = self.session.create()
        try:
            lost = self._acquire()
        finally:
            if not self.held:
                self._stop_session()
        return lost

    def _acquire(self) -> threading.Event | None:
        start = time.monotonic()
        attempts = 0
        index = 0
        while True:
            if self.should_stop():
                return None
            wait = self._budget(start, attempts)
            if wait is None:
                return None
            attempts += 1
            try:
                pair, meta = self.client.kv_get(self.key, index=index, wait_ns=wait)
            except APIError as exc:
                raise LockError(f"failed to read lock: {exc}") from None
            if pair is not None and pair.get("Flags") != LOCK_FLAG_VALUE:
                raise LockError("Existing key does not match lock use")
            if pair is not None and pair.get("Session") == self.session_id:
                return self._start_monitor(self._still_held)
            if pair is not None and pair.get("Session"):
                index = meta.last_index
                continue
            try:
                locked = self.client.kv_put(self.key, b"", LOCK_FLAG_VALUE,
                                            [("acquire", self.session_id)])
            except APIError as exc:
                raise LockError(f"failed to acquire lock: {exc}") from None
            if locked:
                return self._start_monitor(self._still_held)
            try:
                pair, meta = self.client.kv_get(self.key, wait_ns=wait)
            except APIError as exc:
                raise LockError(str(exc)) from None
            if pair is not None and pair.get("Session"):
                index = meta.last_index
                continue
            # Unlocked yet refused: a lock-delay is in force, so retry on a timer.
            index = 0
            if not self._sleep(LOCK_RETRY_S):
                return None

    def _still_held(self, index: int) -> tuple[bool, int]:
        pair, meta = self.client.kv_get(self.key, consistent=True, index=index)
        return (pair is not None and pair.get("Session") == self.session_id), meta.last_index

    def release(self) -> None:
        if not self.held:
            raise LockError("Lock not held")
        self.held = False
        try:
            self.client.kv_put(self.key, b"", LOCK_FLAG_VALUE, [("release", self.session_id)])
        except APIError as exc:
            raise LockError(f"failed to release lock: {exc}") from None
        finally:
            self._stop_session()

    def destroy(self) -> None:
        if self.held:
            raise LockError("Lock already held")
        try:
            pair, _ = self.client.kv_get(self.key)
        except APIError as exc:
            raise LockError(f"failed to read lock: {exc}") from None
        if pair is None:
            return
        if pair.get("Flags") != LOCK_FLAG_VALUE:
            raise LockError("Existing key does not match lock use")
        if pair.get("Session"):
            raise LockInUse("Lock in use")
        try:
            removed = self.client.kv_delete(self.key, [("cas", str(pair.get("ModifyIndex", 0)))])
        except APIError as exc:
            raise LockError(f"failed to remove lock: {exc}") from None
        if not removed:
            raise LockInUse("Lock in use")


class Semaphore(_Acquirer):
    """api.Semaphore: contender keys `<prefix>/<session>` and a holder set in `<prefix>/.lock`."""

    def __init__(self, client: Client, prefix: str, limit: int, opts: Options) -> None:
        super().__init__(client, opts)
        self.prefix = prefix
        self.limit = limit
        self.lock_key = go_join(prefix, SEMAPHORE_KEY)
        self.session_id = ""

    def _find_lock(self, pairs: list[dict[str, Any]] | None) -> dict[str, Any]:
        for pair in pairs or []:
            if pair.get("Key") == self.lock_key:
                return pair
        return {"Flags": SEMAPHORE_FLAG_VALUE, "ModifyIndex": 0}

    def _decode(self, pair: dict[str, Any] | None) -> dict[str, Any]:
        raw = (pair or {}).get("Value")
        if not raw:
            return {"Limit": self.limit, "Holders": {}}
        try:
            doc = json.loads(base64.b64decode(raw))
        except ValueError as exc:
            raise LockError(f"lock decoding failed: {exc}") from None
        if not isinstance(doc, dict):
            raise LockError("lock decoding failed: not an object")
        return {"Limit": doc.get("Limit", 0), "Holders": dict(doc.get("Holders") or {})}

    @staticmethod
    def _prune(lock: dict[str, Any], pairs: list[dict[str, Any]] | None) -> None:
        alive = {p.get("Session") for p in pairs or [] if p.get("Session")}
        lock["Holders"] = {h: v for h, v in lock["Holders"].items() if h in alive}

    @staticmethod
    def _encode(lock: dict[str, Any]) -> bytes:
        doc = {"Limit": lock["Limit"], "Holders": dict(sorted(lock["Holders"].items()))}
        return json.dumps(doc, separators=(",", ":")).encode()

    def acquire(self) -> threading.Event | None:
        self.session = SessionKeeper(self.client, {"Name": self.name, "TTL": SESSION_TTL,
                                                   "Behavior": "delete"})
        self.session_id = self.session.create()
        try:
            lost = self._acquire()
        finally:
            if not self.held:
                self._stop_session()
        return lost

    def _acquire(self) -> threading.Event | None:
        contender = go_join(self.prefix, self.session_id)
        try:
            made = self.client.kv_put(contender, b"", SEMAPHORE_FLAG_VALUE,
                                      [("acquire", self.session_id)])
        except APIError as exc:
            raise LockError(f"failed to make contender entry: {exc}") from None
        if not made:
            raise LockError("failed to make contender entry: <nil>")
        start = time.monotonic()
        attempts = 0
        index = 0
        while True:
            if self.should_stop():
                return None
            wait = self._budget(start, attempts)
            if wait is None:
                return None
            attempts += 1
            try:
                pairs, meta = self.client.kv_list(self.prefix, index=index, wait_ns=wait)
            except APIError as exc:
                raise LockError(f"failed to read prefix: {exc}") from None
            lock_pair = self._find_lock(pairs)
            if lock_pair.get("Flags") != SEMAPHORE_FLAG_VALUE:
                raise LockError("Existing key does not match semaphore use")
            lock = self._decode(lock_pair)
            if lock["Limit"] != self.limit:
                raise LockError(f"semaphore limit conflict (lock: {lock['Limit']}, local: "
                                f"{self.limit})")
            self._prune(lock, pairs)
            if len(lock["Holders"]) >= lock["Limit"]:
                index = meta.last_index
                continue
            lock["Holders"][self.session_id] = True
            try:
                done = self.client.kv_put(self.lock_key, self._encode(lock), SEMAPHORE_FLAG_VALUE,
                                          [("cas", str(lock_pair.get("ModifyIndex", 0)))])
            except APIError as exc:
                raise LockError(f"failed to update lock: {exc}") from None
            if done:
                return self._start_monitor(self._still_held)

    def _still_held(self, index: int) -> tuple[bool, int]:
        pairs, meta = self.client.kv_list(self.prefix, consistent=True, index=index)
        lock = self._decode(self._find_lock(pairs))
        self._prune(lock, pairs)
        return self.session_id in lock["Holders"], meta.last_index

    def release(self) -> None:
        if not self.held:
            raise LockError("Semaphore not held")
        self.held = False
        try:
            while True:
                pair, _ = self.client.kv_get(self.lock_key)
                lock = self._decode(pair)
                if self.session_id not in lock["Holders"]:
                    break
                del lock["Holders"][self.session_id]
                index = (pair or {}).get("ModifyIndex", 0)
                try:
                    swapped = self.client.kv_put(self.lock_key, self._encode(lock),
                                                 SEMAPHORE_FLAG_VALUE, [("cas", str(index))])
                except APIError as exc:
                    raise LockError(f"failed to update lock: {exc}") from None
                if swapped:
                    break
            self.client.kv_delete(go_join(self.prefix, self.session_id))
        except APIError as exc:
            raise LockError(str(exc)) from None
        finally:
            self._stop_session()

    def destroy(self) -> None:
        if self.held:
            raise LockError("Semaphore already held")
        try:
            pairs, _ = self.client.kv_list(self.prefix)
        except APIError as exc:
            raise LockError(f"failed to read prefix: {exc}") from None
        lock_pair = self._find_lock(pairs)
        if not lock_pair.get("ModifyIndex"):
            return
        if lock_pair.get("Flags") != SEMAPHORE_FLAG_VALUE:
            raise LockError("Existing key does not match semaphore use")
        lock = self._decode(lock_pair)
        self._prune(lock, pairs)
        if lock["Holders"]:
            raise LockInUse("Semaphore in use")
        try:
            removed = self.client.kv_delete(self.lock_key,
                                            [("cas", str(lock_pair.get("ModifyIndex", 0)))])
        except APIError as exc:
            raise LockError(f"failed to remove semaphore: {exc}") from None
        if not removed:
            raise LockInUse("Semaphore in use")


# ----------------------------------------------------------------------------------------------
# The command


class _Flags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.http = HTTPFlags(self.fs)
        s = self.fs
        self.child_exit_code: Flag[bool] = s.bool_flag(
            "child-exit-code", False,
            "Exit 2 if the child process exited with an error if this is true, otherwise this "
            "doesn't propagate an error from the child. The default value is false.")
        self.limit: Flag[int] = s.int_flag(
            "n", 1,
            "Optional limit on the number of concurrent lock holders. The underlying "
            "implementation switches from a lock to a semaphore when the value is greater than "
            "1. The default value is 1.")
        self.monitor_retry: Flag[int] = s.int_flag(
            "monitor-retry", MONITOR_RETRIES,
            "Number of times to retry if Consul returns a 500 error while monitoring the lock. "
            "This allows riding out brief periods of unavailability without causing leader "
            "elections, but increases the amount of time required to detect a lost lock in some "
            "cases. The default value is 3, with a 1s wait between retries. Set this value to 0 "
            "to disable retires.")
        self.name: Flag[str] = s.str_flag(
            "name", "",
            "Optional name to associate with the lock session. It not provided, one is generated "
            "based on the provided child command.")
        self.pass_stdin: Flag[bool] = s.bool_flag(
            "pass-stdin", False, "Pass stdin to the child process.")
        self.shell: Flag[bool] = s.bool_flag(
            "shell", True,
            "Use a shell to run the command (can set a custom shell via the SHELL environment "
            "variable).")
        self.timeout: Flag[int] = s.duration_flag(
            "timeout", 0,
            "Maximum amount of time to wait to acquire the lock, specified as a duration like "
            "\"1s\" or \"3h\". The default value is 0.")
        self.verbose: Flag[bool] = s.bool_flag(
            "verbose", False, "Enable verbose (debugging) output.")
        s.alias("try", self.timeout, "DEPRECATED. Use -timeout instead.")


def help_text() -> str:
    return _Flags().fs.usage(HELP)


class _Signals:
    """SIGINT/SIGTERM: abort a lock wait, or forward to the child and wind down."""

    def __init__(self) -> None:
        self.shutdown = False
        self.raise_on_signal = False
        self.child: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.shutdown = True
        child = self.child
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except OSError:
                pass
        if self.raise_on_signal:
            self.raise_on_signal = False
            raise Shutdown()


class _Child:
    """The command run under the lock, with a waiter thread reporting how it ended."""

    def __init__(self, args: list[str], shell: bool, pass_stdin: bool, verbose: bool) -> None:
        self.args = args
        self.shell = shell
        self.pass_stdin = pass_stdin
        self.verbose = verbose
        self.proc: subprocess.Popen[bytes] | None = None
        self.done = threading.Event()
        self.failed = False

    def start(self) -> subprocess.Popen[bytes] | None:
        if self.verbose:
            out("Starting handler")
        cmd = handler_command(self.args, self.shell)
        if not cmd:
            err("Error executing handler: need an executable to run")
            self.failed = True
            self.done.set()
            return None
        if self.pass_stdin and self.verbose:
            out("Stdin passed to handler process")
        env = {**os.environ, "CONSUL_LOCK_HELD": "true"}
        try:
            self.proc = subprocess.Popen(
                cmd, env=env, stdin=None if self.pass_stdin else subprocess.DEVNULL)
        except OSError as exc:
            err(f"Error starting handler: {exc}")
            self.failed = True
            self.done.set()
            return None
        threading.Thread(target=self._wait, name="lock-child", daemon=True).start()
        return self.proc

    def _wait(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        if code != 0:
            err(f"Error running handler: {exit_text(code)}")
            self.failed = True
        self.done.set()

    def kill(self) -> None:
        """SIGTERM, then SIGKILL once the grace period is over."""
        proc = self.proc
        if proc is None:
            if self.verbose:
                out("No child process to kill")
            return
        if self.verbose:
            out(f"Terminating child pid {proc.pid}")
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError as exc:
            err(f"Failed to terminate {proc.pid}: {exc}")
            return
        if self.done.wait(KILL_GRACE_S):
            if self.verbose:
                out("Child terminated")
            return
        if self.verbose:
            grace = format_duration(int(KILL_GRACE_S * 1e9))
            out(f"Child did not exit after grace period of {grace}")
            out(f"Killing child pid {proc.pid}")
        try:
            proc.kill()
        except OSError as exc:
            err(f"Failed to kill {proc.pid}: {exc}")


def _hold(child: _Child, lost: threading.Event, signals: _Signals, verbose: bool) -> int:
    """Run the child while the lock holds; 2 when the child itself failed, as Consul reports."""
    signals.child = child.start()
    try:
        while True:
            if signals.shutdown:
                if verbose:
                    out("Shutdown triggered, killing child")
                child.kill()
                return 0
            if lost.is_set():
                if verbose:
                    out("Lock lost, killing child")
                child.kill()
                return 0
            if child.done.wait(0.1):
                if verbose:
                    out("Child terminated, releasing lock")
                return 2 if child.failed else 0
    finally:
        signals.child = None


def run(argv: list[str]) -> int:
    f = _Flags()
    extra = parse_args(f.fs, argv)
    if extra is None:
        return 1
    if f.limit.value <= 0:
        err("Lock holder limit must be positive")
        return 1
    if len(extra) < 2:
        err("Key prefix and child command must be specified")
        return 1
    prefix = extra[0].removeprefix("/")
    if f.timeout.value < 0:
        err("Timeout must be positive")
        return 1
    name = f.name.value or f"Consul lock for '{' '.join(extra[1:])}' at '{prefix}'"
    oneshot = f.timeout.value > 0
    if f.monitor_retry.value < 0:
        err("Number for 'monitor-retry' must be >= 0")
        return 1
    client = f.http.connect()
    if client is None:
        return 1
    try:
        client.agent_node_name()
    except APIError as exc:
        err(f"Error querying Consul agent: {exc}")
        return 1

    signals = _Signals()
    signals.install()
    verbose = f.verbose.value
    common = Options(name, f.monitor_retry.value, oneshot, f.timeout.value,
                     lambda: signals.shutdown)
    lock: Lock | Semaphore
    if f.limit.value == 1:
        key = go_join(prefix, SEMAPHORE_KEY)
        if verbose:
            out(f"Setting up lock at path: {key}")
        lock = Lock(client, key, common)
    else:
        if verbose:
            out(f"Setting up semaphore (limit {f.limit.value}) at prefix: {prefix}")
        if not prefix:
            err("Lock setup failed: missing prefix")
            return 1
        lock = Semaphore(client, prefix, f.limit.value, common)

    if verbose:
        out("Attempting lock acquisition")
    signals.raise_on_signal = True
    try:
        lost = lock.acquire()
    except Shutdown:
        lost = lock.lost if lock.held else None
    except LockError as exc:
        err(f"Lock acquisition failed: {exc}")
        return 1
    finally:
        signals.raise_on_signal = False
    if lost is None:
        err("Shutdown triggered or timeout during lock acquisition")
        return 1

    child_code = 0
    if signals.shutdown:
        err("Shutdown triggered during lock acquisition")
    else:
        child = _Child(extra[1:], f.shell.value, f.pass_stdin.value, verbose)
        child_code = _hold(child, lost, signals, verbose)

    try:
        lock.release()
    except LockError as exc:
        err(f"Lock release failed: {exc}")
        return 1
    try:
        lock.destroy()
    except LockError as exc:
        if not isinstance(exc, LockInUse):
            err(f"Lock cleanup failed: {exc}")
            return 1
        if verbose:
            out("Cleanup aborted, lock in use")
    else:
        if verbose:
            out("Cleanup succeeded")
    return child_code if f.child_exit_code.value else 0
