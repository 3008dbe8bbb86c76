"""LogStore behaviour that the in-memory twin and the file store (with either codec twin) share,
so code tested against the in-memory store behaves the same on disk."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from proconsul.errors import LogNotFound, StorageError
from proconsul.raft.file_log import FileLogStore
from proconsul.raft.inmem import InmemLogStore
from proconsul.raft.log import Log, LogStore
from tests.conftest import load_twin, twin_params
from tests.raft.support import make_logs, run

Factory = Callable[[], LogStore]


@pytest.fixture(params=["inmem", *twin_params("proconsul._speedups.raft_log",
                                              "proconsul.raft.log_codec_py")])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "inmem":
        return InmemLogStore
    codec = load_twin(request, request.param)
    # small segments so the file store's tests also cross segment boundaries
    return lambda: FileLogStore(tmp_path / "log", segment_size=700, codec=codec)


def contents(store: LogStore) -> list[Log]:
    if not store.last_index():
        return []
    return [store.get_log(i) for i in range(store.first_index(), store.last_index() + 1)]


def test_append_and_read(factory: Factory) -> None:
    async def body() -> None:
        store = factory()
        assert (store.first_index(), store.last_index()) == (0, 0)
        logs = make_logs(1, 30)
        await store.store_logs(logs[:10])
        await store.store_logs(logs[10:11])
        await store.store_logs([])
        await store.store_logs(logs[11:])
        assert (store.first_index(), store.last_index()) == (1, 30)
        assert contents(store) == logs
        for missing in (0, 31, 1000):
            with pytest.raises(LogNotFound, match=f"log entry {missing} not found"):
                store.get_log(missing)
        await store.close()

    run(body())


def test_appends_must_follow_the_last_index(factory: Factory) -> None:
    async def body() -> None:
        store = factory()
        await store.store_logs(make_logs(5, 3))
        for bad in (make_logs(9, 1), make_logs(7, 1), make_logs(1, 2)):
            with pytest.raises(ValueError, match="must follow index 7"):
                await store.store_logs(bad)
        with pytest.raises(ValueError, match="not consecutive"):
            await store.store_logs([*make_logs(8, 1), *make_logs(10, 1)])
        assert (store.first_index(), store.last_index()) == (5, 7)
        await store.store_logs(make_logs(8, 1))
        assert store.last_index() == 8
        await store.close()

    run(body())


def test_delete_a_prefix(factory: Factory) -> None:
    async def body() -> None:
        store = factory()
        logs = make_logs(1, 40)
        await store.store_logs(logs)
        await store.delete_range(1, 25)
        assert (store.first_index(), store.last_index()) == (26, 40)
        with pytest.raises(LogNotFound):
            store.get_log(25)
        assert contents(store) == logs[25:]
        await store.delete_range(20, 30)  # overlapping the start is still a prefix
        assert store.first_index() == 31
        await store.store_logs(make_logs(41, 2))
        assert contents(store) == logs[30:] + make_logs(41, 2)
        await store.close()

    run(body())


def test_delete_a_suffix_then_append_other_terms(factory: Factory) -> None:
    async def body() -> None:
        store = factory()
        await store.store_logs(make_logs(1, 40))
        await store.delete_range(18, 40)
        assert (store.first_index(), store.last_index()) == (1, 17)
        with pytest.raises(LogNotFound):
            store.get_log(18)
        replacement = make_logs(18, 5, term=2)
        await store.store_logs(replacement)
        assert contents(store) == make_logs(1, 17) + replacement
        await store.delete_range(22, 1000)
        assert store.last_index() == 21
        await store.close()

    run(body())


def test_delete_everything_then_start_anywhere(factory: Factory) -> None:
    async def body() -> None:
        store = factory()
        await store.store_logs(make_logs(10, 20))
        await store.delete_range(1, 100)
        assert (store.first_index(), store.last_index()) == (0, 0)
        with pytest.raises(LogNotFound):
            store.get_log(10)
        await store.store_logs(make_logs(3, 4))
        assert contents(store) == make_logs(3, 4)
        await store.close()

    run(body())


def test_deleting_nothing_and_the_middle(factory: Factory) -> None:
    async def body() -> None:
        store = factory()
        await store.delete_range(1, 5)
        await store.store_logs(make_logs(1, 20))
        await store.delete_range(30, 40)
        await store.delete_range(5, 4)
        with pytest.raises(ValueError, match="middle"):
            await store.delete_range(5, 10)
        assert (store.first_index(), store.last_index()) == (1, 20)
        await store.close()

    run(body())


def test_closed_store_refuses_writes(factory: Factory) -> None:
    async def body() -> None:
        store = factory()
        await store.store_logs(make_logs(1, 2))
        await store.close()
        with pytest.raises(StorageError, match="closed"):
            await store.store_logs(make_logs(3, 1))

    run(body())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_file_store_follows_the_in_memory_model(tmp_path: Path, seed: int) -> None:
    """Random appends (some concurrent), prefix and suffix deletions and reopenings: the file
    store always holds what the in-memory twin holds."""
    rng = random.Random(seed)

    async def body() -> None:
        model = InmemLogStore()
        store = FileLogStore(tmp_path, segment_size=500, cache_size=8)
        term = 1
        for _ in range(150):
            op = rng.random()
            first, last = model.first_index(), model.last_index()
            if op < 0.5:
                size = rng.choice([0, 5, 40, 200])
                start = last + 1 if last else rng.randint(1, 50)
                groups = [make_logs(start, rng.randint(1, 4), term, size)]
                for _ in range(rng.randint(0, 3)):
                    groups.append(make_logs(groups[-1][-1].index + 1, rng.randint(1, 3), term,
                                            size))
                await asyncio.gather(*(store.store_logs(g) for g in groups))
                for group in groups:
                    await model.store_logs(group)
            elif op < 0.65 and last:
                upto = rng.randint(first, last + 2)
                await store.delete_range(1, upto)
                await model.delete_range(1, upto)
            elif op < 0.8 and last:
                lo = rng.randint(first + 1, last + 1) if last > first else last + 1
                term += 1
                await store.delete_range(lo, last)
                await model.delete_range(lo, last)
            else:
                await store.close()
                store = FileLogStore(tmp_path, segment_size=500, cache_size=8)
            assert (store.first_index(), store.last_index()) == (
                model.first_index(), model.last_index())
            assert contents(store) == contents(model)
        await store.close()

    run(body(), timeout=120)
