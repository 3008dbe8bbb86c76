"""The interval scheduler every probing check shares.

Ten thousand checks registered at once (an agent restart, a config reload) must not probe
their targets in the same instant, so each check's first run lands at a random offset inside
its interval, as Consul's `RandomStagger` does; after that it runs one interval after the
previous probe *finished*, so a slow target never has two probes of the same check in flight.
Each check is one sleeping task: the loop is never blocked and idle checks cost no CPU.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod

from .base import CheckDefinition, CheckStatusSink

log = logging.getLogger(__name__)

#: Consul's floor for check intervals (checks.MinInterval); lower values are raised.
MIN_INTERVAL = 1.0


def random_stagger(interval: float, rng: random.Random | None = None) -> float:
    """A first-run delay uniform in [0, interval), so simultaneous registrations spread out."""
    if interval <= 0:
        return 0.0
    value = (rng or random).random() * interval
    return value if value < interval else 0.0


def go_duration(seconds: float) -> str:
    """Format a duration as Go's time.Duration.String does, because Consul's messages embed it
    (`Timed out (30s) running check`) and clients match on them."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, scale in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= scale:
                return sign + _trim(nanos, scale) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _trim(rest, 1_000_000_000) + "s"


def _trim(value: int, scale: int) -> str:
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


class IntervalCheck(ABC):
    """Runs `probe()` on Consul's schedule and reports each result to the sink.

    Subclasses only say how to probe; scheduling, cancellation and "report nothing once
    stopped" live here so every check type behaves the same under reloads.
    """

    #: used when the definition sets no timeout; Consul's per-type default
    default_timeout: float = 10.0

    def __init__(self, defn: CheckDefinition, sink: CheckStatusSink,
                 loop: asyncio.AbstractEventLoop | None = None,
                 first_delay: float | None = None) -> None:
        self.defn = defn
        self.sink = sink
        self.interval = defn.interval
        self.timeout = defn.timeout if defn.timeout > 0 else self.default_timeout
        self._loop = loop
        self._first_delay = first_delay
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def probe(self) -> tuple[str, str]:
        """One probe: (status, output) in Consul's words for this check type."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        loop = self._loop or asyncio.get_running_loop()
        delay = (self._first_delay if self._first_delay is not None
                 else random_stagger(self.interval))
        self._task = loop.create_task(self._run(delay), name=f"check:{self.defn.check_id}")

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()

    async def run_once(self) -> tuple[str, str]:
        """Probe now and report, outside the schedule; used on demand and by tests."""
        status, output = await self.probe()
        self.sink.update_check(self.defn.check_id, status, output)
        return status, output

    async def _run(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a probe bug must not end the schedule silently
                log.exception("check %s probe failed", self.defn.check_id)
                self.sink.update_check(self.defn.check_id, "critical", str(exc))
            await asyncio.sleep(self.interval)
