"""TTL checks: the service reports its own health and silence means critical.

This is a dead man's switch: `/v1/agent/check/{pass,warn,fail,update}` feed `set_status`, each
update re-arms the timer, and a missed deadline turns the check critical with Consul's
`TTL expired` text (carrying the last output, so operators see what the service said last).
TTL updates bypass the success/failure thresholds, as in Consul: the service is the authority.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .base import CheckDefinition, CheckStatusSink
from .output import truncate_ttl_output

log = logging.getLogger(__name__)


class TTLCheck:
    """A `CheckRunner` that also accepts pushed statuses."""

    def __init__(self, defn: CheckDefinition, sink: CheckStatusSink,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.defn = defn
        self.sink = sink
        self.ttl = defn.ttl
        self.status = defn.status or "critical"
        self.last_output = ""
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        #: monotonic deadline, for persisting TTL state across restarts
        self.expires_at = 0.0

    def start(self) -> None:
        self._running = True
        self._arm(self.ttl)

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def restore(self, status: str, output: str, remaining: float) -> None:
        """Resume persisted state: the given status holds for what was left of the TTL."""
        self.status, self.last_output = status, output
        if self._running:
            self._arm(max(0.0, remaining))

    def set_status(self, status: str, output: str) -> str:
        """Record a pushed status and renew the TTL; returns the (possibly capped) output
        that was stored, which the HTTP layer echoes back."""
        output = truncate_ttl_output(output, self.defn.output_max_size)
        self.status = status
        self.sink.update_check(self.defn.check_id, status, output)
        self.last_output = output
        if self._running:
            self._arm(self.ttl)
        return output

    def expired_output(self) -> str:
        if not self.last_output:
            return "TTL expired"
        return f"TTL expired (last output before timeout follows): {self.last_output}"

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self.expires_at = time.monotonic() + delay
        self._timer = loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if not self._running:
            return
        log.warning("check %s missed its TTL, now critical", self.defn.check_id)
        self.status = "critical"
        self.sink.update_check(self.defn.check_id, "critical", self.expired_output())
