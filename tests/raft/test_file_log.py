"""The file log store: segments and reopening, recovery of torn tails and refusal of middle
corruption, group commit with durability before answers, and failed writes on a full disk."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path
from types import ModuleType

import pytest

from proconsul.errors import DiskFull, LogCorruption, LogNotFound, StorageError
from proconsul.raft import log_codec
from proconsul.raft.file_log import FileLogStore
from proconsul.raft.file_stable import FileStableStore
from proconsul.raft.log import Log
from tests.conftest import load_twin, twin_params
from tests.raft.support import make_logs, run


@pytest.fixture(params=twin_params("proconsul._speedups.raft_log", "proconsul.raft.log_codec_py"))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request, request.param)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def reopen_contents(directory: Path, codec: ModuleType, **kwargs: int) -> list[Log]:
    async def body() -> list[Log]:
        store = FileLogStore(directory, codec=codec, **kwargs)
        try:
            first, last = store.first_index(), store.last_index()
            return [store.get_log(i) for i in range(first, last + 1)] if last else []
        finally:
            await store.close()

    return run(body())


def fill(directory: Path, codec: ModuleType, logs: list[Log], **kwargs: int) -> None:
    async def body() -> None:
        store = FileLogStore(directory, codec=codec, **kwargs)
        for entry in logs:
            await store.store_logs([entry])
        await store.close()

    run(body())


# -- layout and reopening --------------------------------------------------------------------


def test_reopen_keeps_everything(tmp_path: Path, codec: ModuleType) -> None:
    logs = make_logs(1, 50, size=100) + make_logs(51, 50, term=2, size=3)
    fill(tmp_path, codec, logs)
    assert [p.name for p in segments(tmp_path)] == ["00000000000000000001.seg"]
    assert reopen_contents(tmp_path, codec) == logs
    assert reopen_contents(tmp_path, codec, cache_size=0) == logs


def test_segments_roll_at_the_size_limit_without_splitting_a_call(
    tmp_path: Path, codec: ModuleType
) -> None:
    async def body() -> None:
        store = FileLogStore(tmp_path, segment_size=1000, codec=codec)
        await store.store_logs(make_logs(1, 30, size=68))  # 3000 bytes in one call
        for entry in make_logs(31, 30, size=68):
            await store.store_logs([entry])
        await store.close()

    run(body())
    files = segments(tmp_path)
    assert files[0].name == "00000000000000000001.seg"
    assert files[0].stat().st_size == 3000
    assert files[1].name == "00000000000000000031.seg"
    assert all(p.stat().st_size == 1000 for p in files[1:])
    assert [p.name for p in files[1:]] == [f"{i:020d}.seg" for i in (31, 41, 51)]
    assert reopen_contents(tmp_path, codec, segment_size=1000) == make_logs(1, 60, size=68)


def test_prefix_and_suffix_deletion_survive_reopening(tmp_path: Path, codec: ModuleType) -> None:
    async def body() -> None:
        store = FileLogStore(tmp_path, segment_size=1000, codec=codec)
        for entry in make_logs(1, 100, size=68):
            await store.store_logs([entry])
        await store.delete_range(1, 35)
        await store.delete_range(77, 100)
        await store.store_logs(make_logs(77, 3, term=5, size=68))
        await store.close()

    run(body())
    # whole segments below the floor are gone; 31..40 stays and the floor hides 31..35
    assert segments(tmp_path)[0].name == "00000000000000000031.seg"
    assert FileStableStore(tmp_path / "log.meta").get_uint64(b"FirstIndex") == 36
    expected = make_logs(36, 41, size=68) + make_logs(77, 3, term=5, size=68)
    assert reopen_contents(tmp_path, codec, segment_size=1000) == expected


def test_suffix_deletion_at_a_segment_start_removes_that_segment(
    tmp_path: Path, codec: ModuleType
) -> None:
    async def body() -> None:
        store = FileLogStore(tmp_path, segment_size=1000, codec=codec)
        for entry in make_logs(1, 35, size=68):
            await store.store_logs([entry])
        await store.delete_range(21, 35)
        assert store.last_index() == 20
        await store.store_logs(make_logs(21, 2, term=3, size=68))
        await store.close()

    run(body())
    assert [p.name for p in segments(tmp_path)] == [f"{i:020d}.seg" for i in (1, 11, 21)]
    assert reopen_contents(tmp_path, codec) == make_logs(1, 20, size=68) + make_logs(
        21, 2, term=3, size=68)


def test_emptied_store_restarting_below_the_old_floor(tmp_path: Path, codec: ModuleType) -> None:
    async def body() -> None:
        store = FileLogStore(tmp_path, codec=codec)
        await store.store_logs(make_logs(100, 10))
        await store.delete_range(100, 109)
        await store.store_logs(make_logs(40, 5))
        await store.close()

    run(body())
    assert reopen_contents(tmp_path, codec) == make_logs(40, 5)


def test_an_interrupted_prefix_deletion_finishes_on_open(tmp_path: Path, codec: ModuleType) -> None:
    fill(tmp_path, codec, make_logs(1, 40, size=68), segment_size=1000)
    # the floor was written, then the process died before the segments below it went
    FileStableStore(tmp_path / "log.meta").set_uint64(b"FirstIndex", 25)
    assert reopen_contents(tmp_path, codec) == make_logs(25, 16, size=68)
    assert segments(tmp_path)[0].name == "00000000000000000021.seg"
    FileStableStore(tmp_path / "log.meta").set_uint64(b"FirstIndex", 41)
    assert reopen_contents(tmp_path, codec) == []
    assert segments(tmp_path) == []


def test_reads_come_from_disk_and_cache(tmp_path: Path, codec: ModuleType) -> None:
    async def body() -> None:
        store = FileLogStore(tmp_path, codec=codec, cache_size=4)
        logs = make_logs(1, 10)
        await store.store_logs(logs)
        assert [store.get_log(i) for i in range(1, 11)] == logs
        await store.close()
        with pytest.raises(StorageError, match="closed"):
            store.get_log(1)

    run(body())


# -- recovery ----------------------------------------------------------------------------------


def test_torn_tail_property_over_the_last_record_of_the_last_segment(
    tmp_path: Path, codec: ModuleType
) -> None:
    """Issue 3: cut the last segment at every offset inside its last record, and flip every
    byte of that record; reopening keeps exactly the whole records before it, every time."""
    logs = make_logs(1, 16, size=36)  # 68-byte records; segment_size puts 10 in the first
    fill(tmp_path / "orig", codec, logs, segment_size=680)
    files = segments(tmp_path / "orig")
    assert len(files) == 2
    first_seg, last_seg = (p.read_bytes() for p in files)
    start = len(last_seg) - 68
    cases: list[bytes] = [last_seg[:cut] for cut in range(start, len(last_seg))]
    for at in range(start, len(last_seg)):
        damaged = bytearray(last_seg)
        damaged[at] ^= 0xFF
        cases.append(bytes(damaged))

    async def body() -> None:
        work = tmp_path / "work"
        work.mkdir()
        (work / files[0].name).write_bytes(first_seg)
        for case in cases:
            (work / files[1].name).write_bytes(case)
            store = FileLogStore(work, segment_size=680, codec=codec)
            assert (store.first_index(), store.last_index()) == (1, 15)
            assert store.get_log(15) == logs[14]
            with pytest.raises(LogNotFound):
                store.get_log(16)
            assert (work / files[1].name).stat().st_size == start  # cut back on disk
            await store.store_logs([logs[15]])  # and appending carries on where it left off
            await store.close()

    run(body())
    assert reopen_contents(tmp_path / "work", codec) == logs


def test_corruption_before_the_tail_names_segment_and_offset(
    tmp_path: Path, codec: ModuleType
) -> None:
    fill(tmp_path, codec, make_logs(1, 16, size=36), segment_size=680)
    first_seg, last_seg = segments(tmp_path)
    original = last_seg.read_bytes()
    damaged = bytearray(original)
    damaged[2 * 68 + 40] ^= 1  # record 13, with 14..16 after it
    last_seg.write_bytes(bytes(damaged))
    with pytest.raises(LogCorruption) as info:
        FileLogStore(tmp_path, codec=codec)
    assert str(info.value) == (
        f"log segment {last_seg}: corrupt record at byte offset 136 (checksum mismatch) "
        f"followed by a valid record at byte offset 204"
    )
    assert last_seg.read_bytes() == bytes(damaged)  # nothing was cut
    last_seg.write_bytes(original)
    # any damage in a segment that is not the last, even at its very end
    first_seg.write_bytes(first_seg.read_bytes()[:-1])
    with pytest.raises(LogCorruption, match=rf"log segment {first_seg}: corrupt record at byte "
                                             r"offset 612 .* not the last"):
        FileLogStore(tmp_path, codec=codec)


def test_a_missing_segment_is_corruption(tmp_path: Path, codec: ModuleType) -> None:
    fill(tmp_path, codec, make_logs(1, 30, size=36), segment_size=680)
    files = segments(tmp_path)
    files[1].unlink()
    with pytest.raises(LogCorruption, match=rf"log segment {files[2]} starts at index 21, the "
                                             r"previous one ends at 10"):
        FileLogStore(tmp_path, codec=codec)


def test_an_empty_last_segment_is_removed(tmp_path: Path, codec: ModuleType) -> None:
    fill(tmp_path, codec, make_logs(1, 5))
    (tmp_path / f"{6:020d}.seg").write_bytes(b"")  # created, then the process died
    assert reopen_contents(tmp_path, codec) == make_logs(1, 5)
    assert len(segments(tmp_path)) == 1


# -- group commit ------------------------------------------------------------------------------


def test_group_commit_shares_syncs_and_answers_only_after_durability(
    tmp_path: Path, codec: ModuleType
) -> None:
    durable = [0]  # highest index found on disk right after a sync returned

    def sync(fd: int) -> None:
        os.fdatasync(fd)
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            found = log_codec.scan(f.read(), "check").last_index
        durable[0] = max(durable[0], found)

    async def body() -> None:
        store = FileLogStore(tmp_path, codec=codec, sync=sync)
        answered: list[int] = []

        async def writer(entry: Log) -> None:
            await store.store_logs([entry])
            assert entry.index <= durable[0], (entry.index, durable[0])
            answered.append(entry.index)

        await asyncio.gather(*(writer(entry) for entry in make_logs(1, 200)))
        assert sorted(answered) == list(range(1, 201))
        assert store.syncs < 20, store.syncs
        await store.close()

    run(body())
    assert reopen_contents(tmp_path, codec) == make_logs(1, 200)


def test_a_cancelled_caller_still_has_its_entries_written(tmp_path: Path,
                                                          codec: ModuleType) -> None:
    async def body() -> None:
        store = FileLogStore(tmp_path, codec=codec)
        task = asyncio.ensure_future(store.store_logs(make_logs(1, 3)))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.store_logs(make_logs(4, 1))
        assert store.last_index() == 4
        await store.close()

    run(body())


# -- failures ----------------------------------------------------------------------------------


class FailingDisk:
    """os.write that can run out of space half-way through a write, and a gate on sync."""

    def __init__(self) -> None:
        self.full = False
        self.failures = 0

    def write(self, fd: int, data: memoryview) -> int:
        if self.full:
            self.failures += 1
            if len(data) > 1 and self.failures == 1:
                return os.write(fd, data[: len(data) // 2])  # a short write first
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)


def test_disk_full_fails_the_write_and_keeps_the_store_usable(
    tmp_path: Path, codec: ModuleType
) -> None:
    disk = FailingDisk()

    async def body() -> None:
        store = FileLogStore(tmp_path, codec=codec, write=disk.write)
        await store.store_logs(make_logs(1, 10))
        size = segments(tmp_path)[0].stat().st_size
        disk.full = True
        with pytest.raises(DiskFull, match="no space left on device writing the log segment"):
            await store.store_logs(make_logs(11, 5))
        assert disk.failures == 2
        assert store.last_index() == 10
        assert segments(tmp_path)[0].stat().st_size == size  # cut back to the durable length
        with pytest.raises(ValueError, match="must follow index 10"):
            await store.store_logs(make_logs(16, 1))
        disk.full = False
        await store.store_logs(make_logs(11, 5, term=2))
        assert store.get_log(15) == make_logs(11, 5, term=2)[4]
        await store.close()

    run(body())
    assert reopen_contents(tmp_path, codec) == make_logs(1, 10) + make_logs(11, 5, term=2)


def test_a_failed_sync_fails_its_callers_and_everything_queued_behind(
    tmp_path: Path, codec: ModuleType
) -> None:
    entered = threading.Event()
    release = threading.Event()
    fail = [False]

    def sync(fd: int) -> None:
        if fail[0]:
            entered.set()
            release.wait(10)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fdatasync(fd)

    async def body() -> None:
        store = FileLogStore(tmp_path, codec=codec, sync=sync)
        await store.store_logs(make_logs(1, 3))
        fail[0] = True
        first = asyncio.ensure_future(store.store_logs(make_logs(4, 2)))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, entered.wait, 10)
        behind = [asyncio.ensure_future(store.store_logs(make_logs(6 + i, 1))) for i in range(3)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(first, *behind, return_exceptions=True)
        assert type(results[0]) is StorageError and "Input/output error" in str(results[0])
        for result in results[1:]:
            assert type(result) is StorageError
            assert str(result) == "an earlier log write failed"
        assert store.last_index() == 3
        fail[0] = False
        await store.store_logs(make_logs(4, 2, term=7))
        await store.close()

    run(body())
    assert reopen_contents(tmp_path, codec) == make_logs(1, 3) + make_logs(4, 2, term=7)


def test_a_full_disk_when_starting_a_segment(tmp_path: Path, codec: ModuleType) -> None:
    disk = FailingDisk()
    disk.failures = 1  # no short write: the new segment stays empty

    async def body(directory: Path, before: list[Log], failing: Log, after: Log) -> None:
        store = FileLogStore(directory, segment_size=100, codec=codec, write=disk.write)
        await store.store_logs(before)
        disk.full = True
        with pytest.raises(DiskFull):
            await store.store_logs([failing])
        disk.full = False
        await store.store_logs([after])
        await store.close()

    # the empty segment is reused by the entry it was made for...
    one, two = make_logs(1, 2, size=60)
    run(body(tmp_path / "a", [one], two, two))
    assert [p.name for p in segments(tmp_path / "a")] == [f"{i:020d}.seg" for i in (1, 2)]
    assert reopen_contents(tmp_path / "a", codec) == [one, two]
    # ...and replaced when an emptied store starts somewhere else
    five, nine = make_logs(5, 1, size=60)[0], make_logs(9, 1, size=60)[0]
    run(body(tmp_path / "b", [], five, nine))
    assert [p.name for p in segments(tmp_path / "b")] == [f"{9:020d}.seg"]
    assert reopen_contents(tmp_path / "b", codec) == [nine]


def test_one_failure_in_a_batch_keeps_the_successes_before_it(
    tmp_path: Path, codec: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Event()
    release = threading.Event()
    gate = [False]

    def sync(fd: int) -> None:
        os.fdatasync(fd)
        if gate[0]:
            gate[0] = False
            entered.set()
            release.wait(10)

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async def body() -> None:
        store = FileLogStore(tmp_path, codec=codec, sync=sync)
        await store.store_logs(make_logs(1, 20))
        gate[0] = True
        held = asyncio.ensure_future(store.store_logs(make_logs(21, 1)))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        # queued while the writer is busy, so they are carried out as one batch
        queued = [
            asyncio.ensure_future(store.store_logs(make_logs(22, 1))),
            asyncio.ensure_future(store.delete_range(1, 10)),
            asyncio.ensure_future(store.store_logs(make_logs(23, 1))),
        ]
        await asyncio.sleep(0)
        # the floor of a prefix deletion goes through the stable store's os.write
        monkeypatch.setattr(os, "write", full)
        release.set()
        results = await asyncio.gather(held, *queued, return_exceptions=True)
        monkeypatch.undo()
        assert results[:2] == [None, None]
        assert type(results[2]) is DiskFull
        assert type(results[3]) is StorageError
        assert str(results[3]) == "an earlier log write failed"
        assert (store.first_index(), store.last_index()) == (1, 22)
        await store.delete_range(1, 10)  # not broken: nothing had changed
        await store.store_logs(make_logs(23, 1))
        await store.close()

    run(body())
    assert reopen_contents(tmp_path, codec) == make_logs(11, 13)


def test_a_deletion_failing_half_way_stops_writes_until_reopened(
    tmp_path: Path, codec: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_unlink(path: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    async def body() -> None:
        store = FileLogStore(tmp_path, segment_size=700, codec=codec)
        for entry in make_logs(1, 30):
            await store.store_logs([entry])
        monkeypatch.setattr(os, "unlink", broken_unlink)
        with pytest.raises(StorageError, match="Input/output error"):
            await store.delete_range(5, 30)
        monkeypatch.undo()
        with pytest.raises(StorageError, match="unusable"):
            await store.store_logs(make_logs(31, 1))
        await store.close()

    run(body())
    # the files were changed in an order that keeps them consistent: some prefix of the old log
    contents = reopen_contents(tmp_path, codec)
    assert contents == make_logs(1, len(contents))
    assert len(contents) >= 4


def test_a_writer_bug_fails_callers_instead_of_hanging_them(tmp_path: Path,
                                                            codec: ModuleType) -> None:
    def sync(fd: int) -> None:
        raise RuntimeError("boom")

    async def body() -> None:
        store = FileLogStore(tmp_path, codec=codec, sync=sync)
        with pytest.raises(StorageError, match="the log writer failed: RuntimeError"):
            await store.store_logs(make_logs(1, 1))
        with pytest.raises(StorageError, match="unusable"):
            await store.store_logs(make_logs(1, 1))
        await store.close()

    run(body())
