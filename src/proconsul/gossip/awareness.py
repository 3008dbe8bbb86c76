"""Lifeguard's local health awareness (mirrors hashicorp/memberlist awareness.go).

A node that misses acks and nacks may be the slow one, not its peers: each failed probe raises a
score, each successful one lowers it, and the probe interval (and with it the time this node
gives indirect probes) is multiplied by score + 1, so an overloaded node slows its own
accusations instead of flooding the cluster with false suspicions.
"""

from __future__ import annotations


class Awareness:
    __slots__ = ("_max", "_score")

    def __init__(self, max_multiplier: int = 8) -> None:
        self._max = max(1, max_multiplier)
        self._score = 0

    def apply_delta(self, delta: int) -> None:
        """Move the score by `delta`, kept within 0 .. max_multiplier - 1."""
        self._score = min(max(self._score + delta, 0), self._max - 1)

    @property
    def score(self) -> int:
        return self._score

    def scale(self, timeout: float) -> float:
        """`timeout` stretched by the current health score."""
        return timeout * (self._score + 1)
