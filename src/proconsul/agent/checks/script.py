"""Script checks: Nagios-style plugins run as child processes.

Exit 0 is passing, 1 warning, anything else critical, as every Nagios plugin expects. Each run
gets its own process group so a timeout (or a stop during reload) kills the plugin *and*
whatever it spawned; otherwise a hung `curl` under a shell wrapper would outlive its check and
pile up every interval. Output is stdout and stderr interleaved, keeping the tail.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
from collections.abc import Sequence

from .base import CheckDefinition, CheckStatusSink
from .monitor import IntervalCheck, go_duration
from .output import TailBuffer

DEFAULT_TIMEOUT = 30.0
_DRAIN_GRACE = 1.0

SCRIPTS_DISABLED_MESSAGE = (
    "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or "
    "'enable_local_script_checks' to true"
)


class ScriptChecksDisabledError(ValueError):
    """Raised when a script or docker check is registered on an agent that forbids them."""

    def __init__(self) -> None:
        super().__init__(SCRIPTS_DISABLED_MESSAGE)


def exit_status(code: int) -> str:
    if code == 0:
        return "passing"
    if code == 1:
        return "warning"
    return "critical"


def _spawn_error(argv: Sequence[str], exc: OSError) -> str:
    """Go's exec error wording for a plugin that could not be started."""
    name = argv[0] if argv else ""
    if isinstance(exc, FileNotFoundError) and "/" not in name:
        return f'exec: "{name}": executable file not found in $PATH'
    reason = (exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))).lower()
    return f"fork/exec {name}: {reason}"


def kill_group(pid: int) -> None:
    """SIGKILL a run's whole process group; a group already gone is not an error."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_plugin(argv: Sequence[str], timeout: float, max_output: int) -> tuple[str, str]:
    """Run one plugin to completion or timeout and map it to (status, output)."""
    if not argv:
        return "critical", "exec: no command"
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return "critical", _spawn_error(argv, exc)
    buf = TailBuffer(max_output)

    async def drain() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            buf.write(chunk)

    async def finish() -> int:
        await drain()
        return await proc.wait()

    waiter = asyncio.ensure_future(finish())
    try:
        code = await asyncio.wait_for(asyncio.shield(waiter), timeout)
    except TimeoutError:
        kill_group(proc.pid)
        # wait for the group to die so two runs of one check never overlap; a descendant
        # that left the group may still hold the pipe, so the drain gets only a grace period
        await proc.wait()
        try:
            await asyncio.wait_for(waiter, _DRAIN_GRACE)
        except TimeoutError:
            pass
        msg = f"Timed out ({go_duration(timeout)}) running check"
        out = buf.captured_text()
        return "critical", f"{msg}\n\n{out}" if out else msg
    except asyncio.CancelledError:
        kill_group(proc.pid)
        waiter.cancel()
        raise
    return exit_status(code), buf.captured_text()


class ScriptCheck(IntervalCheck):
    """Runs `Args` every interval; the gate on script checks is the caller's (the factory)."""

    default_timeout = DEFAULT_TIMEOUT

    def __init__(self, defn: CheckDefinition, sink: CheckStatusSink,
                 loop: asyncio.AbstractEventLoop | None = None,
                 first_delay: float | None = None) -> None:
        super().__init__(defn, sink, loop, first_delay)
        self.argv: list[str] = list(defn.args) or (
            ["/bin/sh", "-c", defn.shell] if defn.shell else [])

    async def probe(self) -> tuple[str, str]:
        return await run_plugin(self.argv, self.timeout, self.defn.output_max_size)
