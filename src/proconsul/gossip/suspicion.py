"""Lifeguard's dynamic suspicion timer (mirrors hashicorp/memberlist suspicion.go).

A suspected node gets a long timeout that shrinks as independent peers confirm the suspicion:
with k expected confirmations, after c of them the timeout is
max - (ln(c + 1) / ln(k + 1)) x (max - min), never below min. Sans-IO: the owner asks for the
deadline and schedules the timer itself, so thousands of suspicions cost no tasks.
"""

from __future__ import annotations

import math


class Suspicion:
    __slots__ = ("_confirmations", "_k", "_max", "_min", "_start", "node")

    def __init__(self, node: str, accuser: str, k: int, min_timeout: float,
                 max_timeout: float, now: float) -> None:
        """`k` is the number of confirmations expected (SuspicionMult - 2, or 0 in clusters too
        small for that many independent peers); with none expected the minimum applies at
        once."""
        self.node = node
        self._k = max(0, k)
        self._min = min_timeout
        self._max = max_timeout if self._k >= 1 else min_timeout
        self._start = now
        # the accuser does not confirm its own accusation
        self._confirmations: set[str] = {accuser}

    @property
    def confirmations(self) -> int:
        return len(self._confirmations) - 1

    def timeout(self) -> float:
        """The current total timeout (from the start of the suspicion)."""
        c = self.confirmations
        if self._k < 1 or c <= 0:
            return self._max
        frac = math.log(c + 1.0) / math.log(self._k + 1.0)
        return max(self._min, self._max - frac * (self._max - self._min))

    def deadline(self) -> float:
        return self._start + self.timeout()

    def confirm(self, source: str) -> bool:
        """Count a confirmation from `source`; True when it was new and counted (the caller
        re-gossips it and moves its timer to the new, earlier deadline)."""
        if self.confirmations >= self._k or source in self._confirmations:
            return False
        self._confirmations.add(source)
        return True
