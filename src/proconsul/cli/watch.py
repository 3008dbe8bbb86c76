"""`consul watch`: follow a view of the catalog or KV store with blocking queries.

Without a handler the first result is printed as indented JSON and the command exits, as Consul
does; with a handler the command runs it (through the shell unless `-shell=false`) with the JSON
result on stdin and `CONSUL_INDEX` in its environment, on the first result and after every real
change.  Spurious wake-ups (same index, or a new index with an identical result) never run the
handler, a lower index resets the query, and the query loop is rate limited so an index that
churns cannot spin it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from proconsul.cli import err, log, out
from proconsul.cli.api import APIError, Client, HTTPFlags, Params
from proconsul.cli.flags import Flag, FlagSet, format_duration, parse_args, parse_bool
from proconsul.cli.kv import go_json

HELP = """
Usage: consul watch [options] [child...]

  Watches for changes in a given data view from Consul. If a child process
  is specified, it will be invoked with the latest results on changes. Otherwise,
  the latest values are dumped to stdout and the watch terminates.

  Providing the watch type is required, and other parameters may be required
  or supported depending on the watch type.
"""

RETRY_INTERVAL_S = 5.0
MAX_BACKOFF_S = 180.0
#: Token bucket for the query loop: a short burst, then at most this many queries a second.
RATE_PER_S = 10.0
RATE_BURST = 2.0

_KV_FIELDS = ("Key", "CreateIndex", "ModifyIndex", "LockIndex", "Flags", "Value", "Session")


def kv_pair_view(pair: dict[str, Any]) -> dict[str, Any]:
    """A KV pair re-shaped as the Go client's api.KVPair marshals (field order, omitempty)."""
    view = {name: pair.get(name, "" if name in ("Key", "Session") else 0) for name in _KV_FIELDS}
    view["Value"] = pair.get("Value")
    for name in ("Namespace", "Partition"):
        if pair.get(name):
            view[name] = pair[name]
    return view


def event_index(event_id: str) -> int:
    """api.Event.IDToIndex: the wait index Consul derives from an event's UUID."""
    try:
        low = int(event_id[0:8] + event_id[9:13] + event_id[14:18], 16)
        high = int(event_id[19:23] + event_id[24:36], 16)
    except ValueError:
        return 0
    return low ^ high


@dataclass
class Plan:
    """A parsed watch: which endpoint to block on and how to shape its result."""

    kind: str
    path: str
    params: Params = field(default_factory=list)
    stale: bool = False
    not_found_ok: bool = False
    shape: Callable[[Any], Any] = field(default=lambda data: data)


class PlanError(Exception):
    pass


def parse_plan(params: dict[str, Any]) -> Plan:
    """watch.Parse: build the plan and insist that every given parameter was used."""
    params = dict(params)
    kind = str(params.pop("type", ""))
    params.pop("datacenter", None)
    params.pop("token", None)
    if not kind:
        raise PlanError("Watch type must be specified")

    def take(name: str) -> Any:
        return params.pop(name, None)

    stale = False
    if kind != "event":
        stale = bool(take("stale"))
    plan: Plan
    if kind == "key":
        key = take("key") or ""
        if not key:
            raise PlanError("Must specify a single key to watch")
        plan = Plan(kind, "/v1/kv/" + key, stale=stale, not_found_ok=True,
                    shape=lambda data: kv_pair_view(data[0]) if data else None)
    elif kind == "keyprefix":
        prefix = take("prefix") or ""
        if not prefix:
            raise PlanError("Must specify a single prefix to watch")
        plan = Plan(kind, "/v1/kv/" + prefix, [("recurse", "")], stale=stale, not_found_ok=True,
                    shape=lambda data: [kv_pair_view(p) for p in data] if data else None)
    elif kind == "services":
        plan = Plan(kind, "/v1/catalog/services", stale=stale,
                    shape=lambda data: dict(sorted((data or {}).items())))
    elif kind == "nodes":
        plan = Plan(kind, "/v1/catalog/nodes", stale=stale)
    elif kind == "service":
        service = take("service") or ""
        if not service:
            raise PlanError("Must specify a single service to watch")
        query: Params = [("tag", t) for t in take("tag") or []]
        if take("passingonly"):
            query.append(("passing", "1"))
        plan = Plan(kind, "/v1/health/service/" + service, query, stale=stale)
    elif kind == "checks":
        service = take("service") or ""
        state = take("state") or ""
        if service and state:
            raise PlanError("Cannot specify service and state")
        tags: Params = [("tag", t) for t in take("tag") or []]
        if service:
            plan = Plan(kind, "/v1/health/checks/" + service, stale=stale)
        else:
            plan = Plan(kind, "/v1/health/state/" + (state or "any"), tags, stale=stale)
    elif kind == "event":
        name = take("name") or ""
        plan = Plan(kind, "/v1/event/list", [("name", name)] if name else [])
    else:
        raise PlanError(f"Unsupported watch type: {kind}")
    if kind in ("services", "nodes", "service", "checks"):
        filt = take("filter")
        if filt:
            plan.params.append(("filter", filt))
    if params:
        raise PlanError(f"Invalid parameters: [{' '.join(sorted(params))}]")
    return plan


class TokenBucket:
    """Spaces out queries once the burst is spent, so a churning index cannot spin the loop."""

    def __init__(self, rate: float = RATE_PER_S, burst: float = RATE_BURST) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            time.sleep((1.0 - self.tokens) / self.rate)
            self.tokens = 1.0
            self.stamp = time.monotonic()
        self.tokens -= 1.0


class Watcher:
    """The blocking-query loop of one plan, calling `handler(index, result)` on each change."""

    def __init__(self, client: Client, plan: Plan,
                 handler: Callable[[int, Any], bool]) -> None:
        self.client = client
        self.plan = plan
        self.handler = handler
        self.last_index: int | None = None
        self.last_result: Any = None
        self.fired = False
        self.bucket = TokenBucket()

    def fetch(self) -> tuple[int, Any]:
        index = self.last_index or 0
        params = list(self.plan.params)
        params += Client.read_params(stale=self.plan.stale, index=index)
        resp = self.client.request("GET", self.plan.path, params,
                                   timeout=Client.blocking_timeout(index, 0))
        meta = Client.meta(resp)
        if resp.status == 404 and self.plan.not_found_ok:
            return meta.last_index, self.plan.shape(None)
        data = Client.decode(Client.require_ok(resp))
        if self.plan.kind == "event":
            data = self._new_events(data or [])
        return meta.last_index, self.plan.shape(data)

    def _new_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, event in enumerate(events):
            if self.last_index is not None and event_index(str(event.get("ID", ""))) == \
                    self.last_index:
                return events[i + 1:]
        return events

    def run(self) -> None:
        """Loop until the handler asks to stop; errors back off as Consul's watch plans do."""
        failures = 0
        while True:
            self.bucket.take()
            try:
                index, result = self.fetch()
            except APIError as exc:
                failures += 1
                retry = min(RETRY_INTERVAL_S * failures * failures, MAX_BACKOFF_S)
                self._log_error(exc, retry)
                self.last_index = None
                time.sleep(retry)
                continue
            failures = 0
            if self.last_index is not None and index == self.last_index:
                continue
            previous = self.last_index
            went_back = previous is not None and index < previous
            # Event-list indexes come from random event IDs and carry no order to reset on.
            self.last_index = 0 if went_back and self.plan.kind != "event" else index
            if self.fired and result == self.last_result:
                continue
            self.fired = True
            self.last_result = result
            if not self.handler(index, result):
                return

    def _log_error(self, exc: APIError, retry_s: float) -> None:
        log("ERROR", "watch", "Watch errored", type=self.plan.kind, error=str(exc),
            retry=format_duration(int(retry_s * 1e9)))


# ----------------------------------------------------------------------------------------------


def handler_command(args: list[str], shell: bool) -> list[str]:
    """Consul's exec.Script (`$SHELL -c`, default /bin/sh) or exec.Subprocess for -shell=false."""
    if shell:
        return [os.environ.get("SHELL") or "/bin/sh", "-c", " ".join(args)]
    return list(args)


def exit_text(code: int) -> str:
    """Go's *exec.ExitError text for a finished child."""
    if code >= 0:
        return f"exit status {code}"
    names: dict[int, str] = {signal.SIGKILL: "killed", signal.SIGTERM: "terminated",
                             signal.SIGINT: "interrupt",
                             signal.SIGHUP: "hangup", signal.SIGQUIT: "quit",
                             signal.SIGABRT: "aborted", signal.SIGSEGV: "segmentation fault",
                             signal.SIGPIPE: "broken pipe"}
    return f"signal: {names.get(-code, f'signal {-code}')}"


class _Flags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.http = HTTPFlags(self.fs)
        s = self.fs
        self.type: Flag[str] = s.str_flag(
            "type", "",
            "Specifies the watch type. One of key, keyprefix, services, nodes, service, checks, "
            "or event.")
        self.key: Flag[str] = s.str_flag(
            "key", "", "Specifies the key to watch. Only for 'key' type.")
        self.prefix: Flag[str] = s.str_flag(
            "prefix", "", "Specifies the key prefix to watch. Only for 'keyprefix' type.")
        self.service: Flag[str] = s.str_flag(
            "service", "",
            "Specifies the service to watch. Required for 'service' type, optional for 'checks' "
            "type.")
        self.tag: Flag[list[str]] = s.list_flag(
            "tag",
            "Specifies the service tag(s) to filter on. Optional for 'service' type. May be "
            "specified multiple times")
        self.passingonly: Flag[str] = s.str_flag(
            "passingonly", "",
            "Specifies if only hosts passing all checks are displayed. Optional for 'service' "
            "type, must be one of `[true|false]`. Defaults false.")
        self.shell: Flag[bool] = s.bool_flag(
            "shell", True,
            "Use a shell to run the command (can set a custom shell via the SHELL environment "
            "variable).")
        self.state: Flag[str] = s.str_flag(
            "state", "", "Specifies the states to watch. Optional for 'checks' type.")
        self.name: Flag[str] = s.str_flag(
            "name", "", "Specifies an event name to watch. Only for 'event' type.")
        self.filter: Flag[str] = s.str_flag("filter", "", "Filter to use with the request")


def help_text() -> str:
    return _Flags().fs.usage(HELP)


class _Shutdown(Exception):
    pass


class _Handlers:
    """What happens to each result: printed once, or fed to the handler command."""

    def __init__(self, args: list[str], shell: bool) -> None:
        self.args = args
        self.shell = shell
        self.code = 0
        self.child: subprocess.Popen[bytes] | None = None

    def print_once(self, _index: int, result: Any) -> bool:
        out(go_json(result, indent="    "))
        return False

    def run_handler(self, index: int, result: Any) -> bool:
        env = {**os.environ, "CONSUL_INDEX": str(index)}
        try:
            child = subprocess.Popen(handler_command(self.args, self.shell),
                                     stdin=subprocess.PIPE, env=env)
        except OSError as exc:
            err(f"Error starting handler: {exc}")
            self.code = 1
            return False
        self.child = child
        try:
            assert child.stdin is not None
            child.stdin.write((go_json(result) + "\n").encode())
            child.stdin.close()
        except BrokenPipeError:
            pass
        code = child.wait()
        self.child = None
        if code != 0:
            err(f"Error executing handler: {exit_text(code)}")
            self.code = 1
            return False
        return True

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Forward the signal to a running handler, then stop watching (exit status 0)."""
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        raise _Shutdown()


def run(argv: list[str]) -> int:
    f = _Flags()
    child_args = parse_args(f.fs, argv)
    if child_args is None:
        return 1
    if not f.type.value:
        err("Watch type must be specified")
        err("")
        err(help_text())
        return 1
    try:
        cfg = f.http.config()
    except APIError as exc:
        err(str(exc))
        return 1

    params: dict[str, Any] = {"type": f.type.value}
    for name, flag in (("key", f.key), ("prefix", f.prefix), ("service", f.service),
                       ("filter", f.filter), ("state", f.state), ("name", f.name)):
        if flag.value:
            params[name] = flag.value
    if f.http.datacenter:
        params["datacenter"] = f.http.datacenter
    if cfg.token:
        params["token"] = cfg.token
    if f.tag.value:
        params["tag"] = f.tag.value
    if f.http.stale:
        params["stale"] = True
    if f.passingonly.value:
        try:
            params["passingonly"] = parse_bool(f.passingonly.value)
        except ValueError:
            err("Failed to parse passingonly flag: strconv.ParseBool: parsing "
                f"\"{f.passingonly.value}\": invalid syntax")
            return 1
    try:
        plan = parse_plan(params)
    except PlanError as exc:
        err(str(exc))
        return 1

    try:
        client = Client(cfg)
    except APIError as exc:
        err(f"Error connecting to Consul agent: {exc}")
        return 1
    try:
        client.status_leader()
    except APIError as exc:
        err(f"Error querying Consul agent: {exc}")
        return 1

    handlers = _Handlers(child_args, f.shell.value)
    signal.signal(signal.SIGINT, handlers.on_signal)
    signal.signal(signal.SIGTERM, handlers.on_signal)
    handler = handlers.run_handler if child_args else handlers.print_once
    try:
        Watcher(client, plan, handler).run()
    except _Shutdown:
        return 0
    finally:
        sys.stdout.flush()
    return handlers.code
