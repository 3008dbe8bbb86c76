"""Both twins of the Raft log record framing: bytes pinned, round trips, the recovery rule, the
truncate-and-flip property over the last record, and a differential test holding them equal."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul.errors import LogCorruption
from proconsul.raft.log import Log, LogType
from tests.conftest import load_twin, twin_params

COMPILED = "proconsul._speedups.raft_log"
PURE = "proconsul.raft.log_codec_py"


@pytest.fixture(params=twin_params(COMPILED, PURE))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request, request.param)


def entries(first: int, count: int, size: int = 40, term: int = 3) -> list[Log]:
    return [
        Log(first + i, term, i % 6, bytes((first + i + j) % 251 for j in range(size + i % 7)))
        for i in range(count)
    ]


def record_offsets(logs: list[Log]) -> list[int]:
    offsets, pos = [], 0
    for entry in logs:
        offsets.append(pos)
        pos += len(entry.data) + 32
    return offsets


# -- format ------------------------------------------------------------------------------------


def test_bytes_are_pinned(codec: ModuleType) -> None:
    # a change here breaks every existing data directory
    assert codec.encode_entries([Log(1, 2, LogType.COMMAND, b"hi")]).hex() == (
        "020000000001000001000000000000000200000000000000" "6869" "9cfe3e05e2ea23b3"
    )
    assert codec.encode_entries([Log(7, 3, LogType.CONFIGURATION, b"")]).hex() == (
        "000000000501000007000000000000000300000000000000" "00ea9664e353d7a8"
    )
    assert codec.RECORD_OVERHEAD == 32
    assert codec.FORMAT_VERSION == 1


@pytest.mark.parametrize("size", [*range(0, 80), 255, 256, 1000, 4099])
def test_checksum_is_xxh64_of_header_and_payload(codec: ModuleType, size: int) -> None:
    data = bytes((i * 7 + size) % 256 for i in range(size))
    buf = codec.encode_entries([Log(9, 4, 0, data)])
    assert len(buf) == size + 32
    assert struct.unpack("<IBBHQQ", buf[:24]) == (size, 0, 1, 0, 9, 4)
    assert buf[24:-8] == data
    assert struct.unpack("<Q", buf[-8:])[0] == xxhash.xxh64_intdigest(buf[:-8])


def test_round_trip(codec: ModuleType) -> None:
    logs = [*entries(100, 50), Log(150, 2**64 - 1, 255, b"x" * 70000)]
    buf = codec.encode_entries(logs)
    decoded, end = codec.decode_entries(buf)
    assert decoded == logs
    assert end == len(buf)
    assert codec.encode_entries(tuple(logs)) == buf
    assert codec.encode_entries([]) == b""
    assert codec.decode_entries(b"") == ([], 0)


def test_decode_from_an_offset_and_stop_before_a_short_record(codec: ModuleType) -> None:
    logs = entries(1, 5)
    buf = codec.encode_entries(logs)
    offsets = record_offsets(logs)
    assert codec.decode_entries(buf, offsets[2]) == (logs[2:], len(buf))
    assert codec.decode_entries(buf[:-1]) == (logs[:4], offsets[4])
    assert codec.decode_entries(buf[: offsets[3] + 10]) == (logs[:3], offsets[3])
    assert codec.decode_entries(memoryview(buf)) == (logs, len(buf))
    assert codec.decode_entries(bytearray(buf)) == (logs, len(buf))
    with pytest.raises(ValueError, match="outside"):
        codec.decode_entries(buf, len(buf) + 1)


def test_decode_rejects_damage(codec: ModuleType) -> None:
    buf = bytearray(codec.encode_entries(entries(1, 3)))
    buf[40] ^= 1
    with pytest.raises(LogCorruption, match=r"log segment s\.seg: checksum mismatch at byte "
                                             r"offset 0"):
        codec.decode_entries(bytes(buf), 0, "s.seg")
    buf = bytearray(codec.encode_entries(entries(1, 3)))
    buf[5] = 9
    with pytest.raises(LogCorruption, match="bad record header at byte offset 0"):
        codec.decode_entries(bytes(buf))


@pytest.mark.parametrize(
    ("logs", "message"),
    [
        ([Log(0, 1, 0, b"")], "log index 0 is out of range"),
        ([Log(2**64, 1, 0, b"")], "out of range"),
        ([Log(1, -1, 0, b"")], "log term -1 is out of range"),
        ([Log(1, 1, 256, b"")], "log type 256 is out of range"),
        ([Log(1, 1, 0, b""), Log(3, 1, 0, b"")], "not consecutive: 3 after 1"),
        ([Log(5, 1, 0, b""), Log(5, 1, 0, b"")], "not consecutive: 5 after 5"),
    ],
)
def test_encode_refuses_bad_entries(codec: ModuleType, logs: list[Log], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        codec.encode_entries(logs)


def test_encode_takes_any_bytes_like_payload(codec: ModuleType) -> None:
    plain = codec.encode_entries([Log(1, 1, 0, b"abc")])
    assert codec.encode_entries([Log(1, 1, 0, bytearray(b"abc"))]) == plain  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        codec.encode_entries([Log(1, 1, 0, 3)])  # type: ignore[arg-type]


# -- the recovery scan -------------------------------------------------------------------------


def test_scan_clean_segment(codec: ModuleType) -> None:
    logs = entries(7, 20)
    buf = codec.encode_entries(logs)
    result = codec.scan(buf, "x.seg")
    assert result.first_index == 7
    assert result.last_index == 26
    assert list(result.offsets) == record_offsets(logs)
    assert (result.end, result.size, result.torn, result.reason) == (len(buf), len(buf), False, "")
    empty = codec.scan(b"")
    assert (empty.first_index, empty.last_index, len(empty.offsets), empty.end) == (0, 0, 0, 0)


def test_scan_cuts_zeros_after_the_records(codec: ModuleType) -> None:
    # a file extended by the filesystem but never written reads back as zeros
    buf = codec.encode_entries(entries(1, 4))
    result = codec.scan(buf + bytes(4096))
    assert (result.last_index, result.end, result.torn) == (4, len(buf), True)
    assert result.reason == "bad header"


def test_scan_reports_a_bad_record_followed_by_a_valid_one(codec: ModuleType) -> None:
    logs = entries(1, 6)
    offsets = record_offsets(logs)
    buf = bytearray(codec.encode_entries(logs))
    buf[offsets[2] + 30] ^= 0x10
    with pytest.raises(LogCorruption) as info:
        codec.scan(bytes(buf), "/d/00000000000000000001.seg")
    assert str(info.value) == (
        f"log segment /d/00000000000000000001.seg: corrupt record at byte offset {offsets[2]} "
        f"(checksum mismatch) followed by a valid record at byte offset {offsets[3]}"
    )


def test_scan_finds_valid_data_after_a_damaged_length(codec: ModuleType) -> None:
    logs = entries(1, 6)
    offsets = record_offsets(logs)
    buf = bytearray(codec.encode_entries(logs))
    buf[offsets[1]:offsets[1] + 4] = struct.pack("<I", 10**6)
    with pytest.raises(LogCorruption, match=rf"byte offset {offsets[1]} \(length 1000000 runs "
                                             rf"past the end\) followed by a valid record at "
                                             rf"byte offset {offsets[2]}"):
        codec.scan(bytes(buf), "s")


def test_scan_treats_any_damage_outside_the_last_segment_as_corruption(codec: ModuleType) -> None:
    logs = entries(1, 4)
    buf = codec.encode_entries(logs)
    with pytest.raises(LogCorruption, match=r"log segment a\.seg: corrupt record at byte offset "
                                             rf"{record_offsets(logs)[3]} \(length \d+ runs past "
                                             r"the end\) in a segment that is not the last"):
        codec.scan(buf[:-1], "a.seg", False)
    assert codec.scan(buf, "a.seg", False).last_index == 4


def test_scan_rejects_a_whole_record_with_the_wrong_index(codec: ModuleType) -> None:
    a = codec.encode_entries(entries(1, 2))
    b = codec.encode_entries(entries(5, 1))
    with pytest.raises(LogCorruption, match=rf"record at byte offset {len(a)} has index 5, "
                                             r"expected 3"):
        codec.scan(a + b, "s")
    with pytest.raises(LogCorruption, match="has index 0, expected at least 1"):
        zero = bytearray(24) + b""
        zero[5] = 1
        codec.scan(bytes(zero) + struct.pack("<Q", xxhash.xxh64_intdigest(bytes(zero))), "s")


# -- the property from issue 3 -----------------------------------------------------------------


def _last_record_cases(codec: ModuleType) -> tuple[bytes, list[Log], int]:
    logs = entries(1, 12, size=48)
    buf = codec.encode_entries(logs)
    return buf, logs, record_offsets(logs)[-1]


def test_truncating_anywhere_in_the_last_record_keeps_exactly_the_whole_ones(
    codec: ModuleType,
) -> None:
    buf, logs, start = _last_record_cases(codec)
    for cut in range(start, len(buf)):
        result = codec.scan(buf[:cut], "s")
        assert result.last_index == len(logs) - 1, cut
        assert result.end == start, cut
        assert result.torn == (cut > start), cut
        assert codec.decode_entries(buf[:result.end]) == (logs[:-1], start)


def test_flipping_any_byte_of_the_last_record_keeps_exactly_the_whole_ones(
    codec: ModuleType,
) -> None:
    buf, logs, start = _last_record_cases(codec)
    for at in range(start, len(buf)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(buf)
            damaged[at] ^= mask
            result = codec.scan(bytes(damaged), "s")
            assert (result.last_index, result.end, result.torn) == (len(logs) - 1, start, True), (
                at, mask, result.reason,
            )


# -- the twins agree -----------------------------------------------------------------------------


def _outcome(codec: ModuleType, buf: bytes, last: bool) -> object:
    try:
        result = codec.scan(buf, "seg", last)
    except LogCorruption as err:
        return ("corrupt", str(err))
    return (result.first_index, list(result.offsets), result.end, result.size, result.reason)


def _decoded(codec: ModuleType, buf: bytes) -> object:
    try:
        return codec.decode_entries(buf, 0, "seg")
    except LogCorruption as err:
        return ("corrupt", str(err))


log_strategy = st.lists(
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 255), st.binary(max_size=90)),
    max_size=8,
)


@pytest.mark.c_extension
@settings(max_examples=300, deadline=None)
@given(
    first=st.integers(1, 2**64 - 9),
    fields=log_strategy,
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=3),
    cut=st.integers(0, 3000),
    last=st.booleans(),
)
def test_twins_agree(
    request: pytest.FixtureRequest,
    first: int,
    fields: list[tuple[int, int, bytes]],
    edits: list[tuple[int, int]],
    cut: int,
    last: bool,
) -> None:
    compiled = load_twin(request, COMPILED)
    pure = load_twin(request, PURE)
    logs = [Log(first + i, term, kind, data) for i, (term, kind, data) in enumerate(fields)]
    buf = pure.encode_entries(logs)
    assert compiled.encode_entries(logs) == buf
    assert compiled.decode_entries(buf) == pure.decode_entries(buf) == (logs, len(buf))
    damaged = bytearray(buf[:cut] if cut < len(buf) else buf)
    for at, mask in edits:
        if damaged:
            damaged[at % len(damaged)] ^= mask
    data = bytes(damaged)
    assert _outcome(compiled, data, last) == _outcome(pure, data, last)
    assert _decoded(compiled, data) == _decoded(pure, data)


@pytest.mark.c_extension
@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(max_size=400), prefix=st.integers(0, 5))
def test_twins_agree_on_garbage(request: pytest.FixtureRequest, garbage: bytes,
                                prefix: int) -> None:
    compiled = load_twin(request, COMPILED)
    pure = load_twin(request, PURE)
    data = pure.encode_entries(entries(1, prefix)) + garbage
    for last in (True, False):
        assert _outcome(compiled, data, last) == _outcome(pure, data, last)
    assert _decoded(compiled, data) == _decoded(pure, data)
