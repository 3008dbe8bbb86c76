"""Helpers shared by the Raft storage tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from proconsul.raft.log import Log

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run one test body on a fresh loop, bounded so a hang fails instead of stalling."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def make_logs(first: int, count: int, term: int = 1, size: int = 40) -> list[Log]:
    """Consecutive entries whose payloads differ, so a read of the wrong one shows."""
    return [
        Log(first + i, term, 0, (f"{first + i}:{term}:".encode() * size)[:size])
        for i in range(count)
    ]
