"""The snapshot archive: exact layout, byte-for-byte round trips, and refusal of every damage.

A restore replaces a cluster's whole state, so the reader must reject anything that is not
exactly what a writer produced: truncation anywhere, a flipped byte anywhere, sums that do not
match, members missing, extra, repeated or out of order, data that is not gzip, and metadata that
Raft could not restore from.  Damaged archives are built by hand (valid gzip around a bad tar, a
valid tar around bad sums) so each check is reached on its own, not only through the gzip CRC.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from typing import Any

import msgpack
import pytest

from proconsul.errors import SnapshotError
from proconsul.snapshot import inspect_archive, inspect_state, read_archive, write_archive
from proconsul.snapshot.archive import kv_prefix
from proconsul.state import Store
from proconsul.structs.catalog import HEALTH_PASSING, HealthCheck, Node
from proconsul.structs.kvs import KVEntry
from proconsul.structs.session import SERF_CHECK_ID, Session

SESSION_ID = "8d9b4c7e-1f55-4f0b-9a7e-3c2f1d0e5a6b"


def populated_store() -> Store:
    """A store with nodes, checks, a session holding a lock, KV pairs and a tombstone."""
    s = Store()
    idx = iter(range(1, 1000))

    def txn_do(fn: Any) -> None:
        txn = s.write(next(idx))
        fn(txn)
        txn.commit()

    txn_do(lambda t: s.ensure_node(t, Node(node="n1", address="10.0.0.1")))
    txn_do(lambda t: s.ensure_check(t, HealthCheck(node="n1", check_id=SERF_CHECK_ID,
                                                   name="Serf Health Status",
                                                   status=HEALTH_PASSING)))
    txn_do(lambda t: s.session_create(t, Session(id=SESSION_ID, node="n1", name="locker")))
    for key, value in (("app/config/a", b"alpha"), ("app/config/b", bytes(range(256))),
                       ("app/flags", b""), ("top", b"t" * 3000), ("gone", b"x"),
                       ("service/web/leader", b"me")):
        txn_do(lambda t, k=key, v=value: s.kvs_set(t, KVEntry(key=k, value=v, flags=7)))
    txn_do(lambda t: s.kvs_delete(t, "gone"))
    txn_do(lambda t: s.kvs_lock(t, KVEntry(key="service/web/leader", value=b"me",
                                           session=SESSION_ID)))
    return s


def dump_bytes(store: Store) -> bytes:
    packed: bytes = msgpack.packb(store.dump(), use_bin_type=True)
    return packed


def meta_for(state: bytes, **changes: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "Version": 1, "ID": "2-42-1700000000000", "Index": 42, "Term": 2, "Peers": None,
        "Configuration": {"Servers": [{"Suffrage": 0, "ID": "a577b288", "Address":
                                       "127.0.0.1:8300"}]},
        "ConfigurationIndex": 1, "Size": len(state),
    }
    meta.update(changes)
    return meta


@pytest.fixture(scope="module")
def state() -> bytes:
    return dump_bytes(populated_store())


@pytest.fixture(scope="module")
def archive(state: bytes) -> bytes:
    return write_archive(meta_for(state), state, mtime=1_700_000_000)


# ----------------------------------------------------------------------------------------------
# Hand-built archives


def member(name: str, body: bytes, type_: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(body) if type_ in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    info.mode = 0o600
    info.type = type_
    header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    if info.size == 0:
        return header
    return header + body + bytes(-len(body) % 512)


def sums_of(*files: tuple[str, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in files).encode()


def meta_bytes(meta: Any) -> bytes:
    return (json.dumps(meta, separators=(",", ":")) + "\n").encode()


def build(members: list[bytes], end: bytes = bytes(1024)) -> bytes:
    return gzip.compress(b"".join(members) + end, mtime=0)


def standard(meta_raw: bytes, state: bytes, sums: bytes | None = None) -> list[bytes]:
    if sums is None:
        sums = sums_of(("meta.json", meta_raw), ("state.bin", state))
    return [member("meta.json", meta_raw), member("state.bin", state), member("SHA256SUMS", sums)]


def rejected(data: bytes, *fragments: str) -> str:
    with pytest.raises(SnapshotError) as info:
        read_archive(data)
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, text
    return text


# ----------------------------------------------------------------------------------------------
# Round trips and layout


def test_round_trip_returns_state_byte_for_byte(archive: bytes, state: bytes) -> None:
    meta, got = read_archive(archive)
    assert got == state
    assert meta == meta_for(state)


def test_restored_store_dumps_identically(state: bytes) -> None:
    """KV pairs (binary values, lock holder), sessions and tombstones survive save and restore."""
    _, got = read_archive(write_archive(meta_for(state), state))
    restored = Store.load(msgpack.unpackb(got, raw=False, strict_map_key=False))
    assert dump_bytes(restored) == state
    _, entry = restored.kvs_get(None, "app/config/b")
    assert entry is not None and entry.value == bytes(range(256)) and entry.flags == 7
    _, locked = restored.kvs_get(None, "service/web/leader")
    assert locked is not None and locked.session == SESSION_ID and locked.lock_index == 1
    assert "gone" in restored.tombstones
    assert SESSION_ID in restored.sessions


def test_reads_from_a_binary_stream(archive: bytes, state: bytes) -> None:
    _, got = read_archive(io.BytesIO(archive))
    assert got == state


def test_empty_state_round_trips() -> None:
    meta, got = read_archive(write_archive(meta_for(b"", Index=0), b""))
    assert got == b"" and meta["Size"] == 0


def test_layout_matches_consul(archive: bytes, state: bytes) -> None:
    """One gzip member (OS byte 255 as Go writes it) around a USTAR tar with three 0600 files in
    Consul's order, the end marker, and no record padding after it."""
    assert archive[:4] == b"\x1f\x8b\x08\x00" and archive[9] == 0xFF
    tar = gzip.decompress(archive)
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        infos = tf.getmembers()
        assert [i.name for i in infos] == ["meta.json", "state.bin", "SHA256SUMS"]
        assert all(i.mode == 0o600 and i.type == tarfile.REGTYPE for i in infos)
        assert all(i.mtime == 1_700_000_000 for i in infos)
        bodies = {i.name: tf.extractfile(i).read() for i in infos}  # type: ignore[union-attr]
    assert tar[257:265] == b"ustar\x0000"
    assert bodies["state.bin"] == state
    meta_raw = bodies["meta.json"]
    assert meta_raw.endswith(b"}\n") and b" " not in meta_raw
    assert list(json.loads(meta_raw)) == ["Version", "ID", "Index", "Term", "Peers",
                                          "Configuration", "ConfigurationIndex", "Size"]
    assert bodies["SHA256SUMS"].decode() == (
        f"{hashlib.sha256(meta_raw).hexdigest()}  meta.json\n"
        f"{hashlib.sha256(state).hexdigest()}  state.bin\n")
    used = sum(512 + len(b) + (-len(b) % 512) for b in bodies.values())
    assert len(tar) == used + 1024 and tar[used:] == bytes(1024)


def test_meta_json_escapes_html_like_go() -> None:
    meta = meta_for(b"x", ID="a<b>&c")
    tar = gzip.decompress(write_archive(meta, b"x"))
    assert b'"ID":"a\\u003cb\\u003e\\u0026c"' in tar
    assert read_archive(write_archive(meta, b"x"))[0]["ID"] == "a<b>&c"


def test_writer_refuses_what_the_reader_would_refuse(state: bytes) -> None:
    with pytest.raises(SnapshotError, match="Size"):
        write_archive(meta_for(state, Size=len(state) + 1), state)
    with pytest.raises(SnapshotError, match='missing "Term"'):
        write_archive({k: v for k, v in meta_for(state).items() if k != "Term"}, state)
    with pytest.raises(SnapshotError, match="failed to encode snapshot metadata"):
        write_archive(meta_for(state, Extra=object()), state)


def test_accepts_what_consul_writes_differently(state: bytes) -> None:
    """Consul lists sums in map order (either way round), upper-case hex parses, several gzip
    members read as one stream, and unknown metadata fields are ignored."""
    meta_raw = meta_bytes(meta_for(state, Unknown=True))
    reversed_sums = sums_of(("state.bin", state), ("meta.json", meta_raw))
    assert read_archive(build(standard(meta_raw, state, reversed_sums)))[1] == state
    upper = b"\n".join(line[:64].upper() + line[64:]
                       for line in sums_of(("meta.json", meta_raw), ("state.bin", state))
                       .split(b"\n"))
    assert read_archive(build(standard(meta_raw, state, upper)))[1] == state
    tar = b"".join(standard(meta_raw, state)) + bytes(1024)
    split = gzip.compress(tar[:700], mtime=0) + gzip.compress(tar[700:], mtime=0)
    assert read_archive(split)[1] == state


# ----------------------------------------------------------------------------------------------
# Damage to the compressed stream


def test_truncated_at_every_offset_is_rejected(archive: bytes) -> None:
    for cut in range(len(archive)):
        with pytest.raises(SnapshotError):
            read_archive(archive[:cut])


def test_flipped_byte_anywhere_is_rejected(archive: bytes, state: bytes) -> None:
    """Every byte but the gzip header's unchecked MTIME, XFL and OS fields is covered: damage
    is refused, unless the deflate stream still inflates to the very same tar (a flip in a
    Huffman table entry no symbol uses), which then reads back the unchanged state."""
    rejected = 0
    for pos in range(len(archive)):
        damaged = bytearray(archive)
        damaged[pos] ^= 0xFF
        if 4 <= pos <= 9:
            assert read_archive(bytes(damaged))[1] == state
            continue
        try:
            got = read_archive(bytes(damaged))[1]
        except SnapshotError:
            rejected += 1
            continue
        assert gzip.decompress(bytes(damaged)) == gzip.decompress(archive), pos
        assert got == state
    assert rejected >= len(archive) - 6 - 8  # all but the header fields and a few table bits


def test_not_gzip_is_rejected(archive: bytes) -> None:
    rejected(b"", "failed to decompress snapshot")
    rejected(b"PK\x03\x04 not a tarball", "failed to decompress snapshot: gzip: invalid header")
    rejected(gzip.decompress(archive), "gzip: invalid header")
    rejected(b"\x1f\x8b\x08\x00" + bytes(20), "failed to decompress snapshot")


def test_garbage_after_the_gzip_stream_is_rejected(archive: bytes) -> None:
    rejected(archive + b"\n", "bytes after the end of the compressed stream")
    rejected(archive + bytes(512), "gzip: invalid header")


def test_bad_crc_is_rejected(archive: bytes) -> None:
    damaged = bytearray(archive)
    damaged[-8] ^= 0x01
    rejected(bytes(damaged), "failed to decompress snapshot", "incorrect data check")


# ----------------------------------------------------------------------------------------------
# Damage inside a well-formed gzip stream


@pytest.mark.parametrize("target", ["meta.json", "state.bin", "SHA256SUMS"])
def test_flipped_byte_in_each_member_is_rejected(archive: bytes, target: str) -> None:
    tar = gzip.decompress(archive)
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        info = tf.getmember(target)
    for offset in sorted({0, info.size // 2, info.size - 1}):
        damaged = bytearray(tar)
        pos = info.offset_data + offset
        # flipping the case of a hex letter leaves the digest as it was, so change the letter
        damaged[pos] ^= 0x01 if chr(tar[pos]) in "abcdefABCDEF" else 0x20
        text = rejected(gzip.compress(bytes(damaged), mtime=0), "failed to read snapshot file")
        if target == "SHA256SUMS":
            assert "integrity" in text
        else:
            assert f'hash check failed for "{target}"' in text


@pytest.mark.parametrize("target", ["meta.json", "state.bin", "SHA256SUMS"])
def test_flipped_byte_in_each_header_is_rejected(archive: bytes, target: str) -> None:
    tar = gzip.decompress(archive)
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        header = tf.getmember(target).offset
    for field_offset in (0, 100, 124, 148, 156, 257):
        damaged = bytearray(tar)
        damaged[header + field_offset] ^= 0x01
        rejected(gzip.compress(bytes(damaged), mtime=0), "failed to read snapshot file")


def test_wrong_sums_are_rejected(state: bytes) -> None:
    meta_raw = meta_bytes(meta_for(state))
    good = sums_of(("meta.json", meta_raw), ("state.bin", state))
    swapped = sums_of(("meta.json", state), ("state.bin", meta_raw))
    rejected(build(standard(meta_raw, state, swapped)), "hash check failed for")
    only_meta = sums_of(("meta.json", meta_raw))
    rejected(build(standard(meta_raw, state, only_meta)), 'file missing for "state.bin"')
    rejected(build(standard(meta_raw, state, b"")), "file missing for")
    extra = good + sums_of(("other.bin", b""))
    rejected(build(standard(meta_raw, state, extra)), 'list missing hash for "other.bin"')
    twice = good + sums_of(("state.bin", state))
    rejected(build(standard(meta_raw, state, twice)), '"state.bin" twice')
    rejected(build(standard(meta_raw, state, good.replace(b"  ", b" "))), "malformed line 1")
    rejected(build(standard(meta_raw, state, good + b"\n")), "malformed line 3")
    rejected(build(standard(meta_raw, state, good[:10] + good[11:])), "malformed line 1")
    rejected(build(standard(meta_raw, state, b"\xff" + good)), "not a text file")


def test_missing_members_are_rejected(state: bytes) -> None:
    meta_raw = meta_bytes(meta_for(state))
    m, s, sums = standard(meta_raw, state)
    rejected(build([m, s]), 'snapshot is missing "SHA256SUMS"')
    rejected(build([m]), 'snapshot is missing "state.bin"')
    rejected(build([]), 'snapshot is missing "meta.json"')
    rejected(build([m, sums]), 'file "SHA256SUMS" is out of order')
    rejected(build([s, m, sums]), 'file "state.bin" is out of order')


def test_extra_or_repeated_members_are_rejected(state: bytes) -> None:
    meta_raw = meta_bytes(meta_for(state))
    m, s, sums = standard(meta_raw, state)
    rejected(build([m, s, sums, member("extra.txt", b"hi")]), 'unexpected file "extra.txt"')
    rejected(build([member("extra.txt", b"hi"), m, s, sums]), 'unexpected file "extra.txt"')
    rejected(build([m, m, s, sums]), 'duplicate file "meta.json"')
    rejected(build([m, s, sums, sums]), 'unexpected file "SHA256SUMS"')
    rejected(build([member("./meta.json", meta_raw), s, sums]), 'unexpected file "./meta.json"')


def test_member_that_is_not_a_regular_file_is_rejected(state: bytes) -> None:
    meta_raw = meta_bytes(meta_for(state))
    _, s, sums = standard(meta_raw, state)
    rejected(build([member("meta.json", b"", tarfile.SYMTYPE), s, sums]), "not a regular file")


def test_tar_endings_other_than_consuls_are_rejected(state: bytes) -> None:
    meta_raw = meta_bytes(meta_for(state))
    members = standard(meta_raw, state)
    rejected(build(members, end=b""), "end-of-archive marker")
    rejected(build(members, end=bytes(512)), "end-of-archive marker")
    rejected(build(members, end=bytes(1024) + bytes(9216)), "9216 unread uncompressed bytes")
    rejected(build(members, end=bytes(1024) + b"x"), "1 unread uncompressed bytes")
    rejected(build(members, end=b"\x01" + bytes(1023)), "end-of-archive marker")


def test_member_data_cut_short_is_rejected(state: bytes) -> None:
    meta_raw = meta_bytes(meta_for(state))
    m, s, _ = standard(meta_raw, state)
    tar = m + s[: 512 + len(state) // 2]
    rejected(gzip.compress(tar, mtime=0), 'unexpected EOF in "state.bin"')
    rejected(gzip.compress(m + s[:300], mtime=0), "unexpected EOF in a tar header")


def test_python_tarfile_output_is_rejected_like_consul_rejects_it(state: bytes) -> None:
    """tarfile pads to a 10 KiB record; Consul's verifier refuses bytes after the end marker."""
    meta_raw = meta_bytes(meta_for(state))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, body in (("meta.json", meta_raw), ("state.bin", state),
                           ("SHA256SUMS", sums_of(("meta.json", meta_raw), ("state.bin", state)))):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    rejected(gzip.compress(buf.getvalue(), mtime=0), "unread uncompressed bytes remain")


# ----------------------------------------------------------------------------------------------
# Metadata


def archive_with_meta(meta: Any, state: bytes) -> bytes:
    return build(standard(meta if isinstance(meta, bytes) else meta_bytes(meta), state))


@pytest.mark.parametrize("key", ["ID", "Index", "Term", "Version", "Size"])
def test_each_required_meta_field_must_be_present(state: bytes, key: str) -> None:
    meta = {k: v for k, v in meta_for(state).items() if k != key}
    rejected(archive_with_meta(meta, state), f'missing "{key}"')


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("ID", 7, '"ID" must be a string'), ("ID", None, '"ID" must be a string'),
    ("Index", "42", '"Index" must be an unsigned integer'),
    ("Index", -1, '"Index" must be an unsigned integer'),
    ("Index", True, '"Index" must be an unsigned integer'),
    ("Index", 1.5, '"Index" must be an unsigned integer'),
    ("Term", 1 << 64, '"Term" must be an unsigned integer'),
    ("Size", None, '"Size" must be an unsigned integer'),
    ("ConfigurationIndex", -3, '"ConfigurationIndex" must be an unsigned integer'),
    ("Version", 2, "unsupported snapshot version 2"),
    ("Version", -1, "unsupported snapshot version -1"),
    ("Version", "1", 'unsupported snapshot version "1"'),
    ("Peers", 5, '"Peers" must be base64 text or null'),
    ("Configuration", [1], '"Configuration" must be an object or null'),
])
def test_meta_field_values_must_be_sane(state: bytes, key: str, value: Any, fragment: str) -> None:
    rejected(archive_with_meta(meta_for(state, **{key: value}), state), fragment)


def test_meta_size_must_match_state(state: bytes) -> None:
    rejected(archive_with_meta(meta_for(state, Size=len(state) - 1), state),
             f"Size {len(state) - 1} but state.bin holds {len(state)} bytes")


def test_meta_must_be_a_json_object(state: bytes) -> None:
    rejected(archive_with_meta(b"{not json", state), "failed to decode snapshot metadata")
    rejected(archive_with_meta(b"[1, 2]\n", state), "not a JSON object")
    rejected(archive_with_meta(b"\xff\xfe{}", state), "failed to decode snapshot metadata")


def test_optional_meta_fields_may_be_null_or_absent(state: bytes) -> None:
    minimal = {"ID": "x", "Index": 1, "Term": 1, "Version": 0, "Size": len(state)}
    assert read_archive(archive_with_meta(minimal, state))[0] == minimal
    nulls = meta_for(state, Peers=None, Configuration=None)
    assert read_archive(archive_with_meta(nulls, state))[1] == state


# ----------------------------------------------------------------------------------------------
# Inspection


def test_inspect_counts_and_sizes_each_record_type(archive: bytes, state: bytes) -> None:
    store = populated_store()
    dump = store.dump()
    info = inspect_archive(archive)
    assert info["Meta"] == {"ID": "2-42-1700000000000", "Size": len(state), "Index": 42,
                            "Term": 2, "Version": 1}
    stats = {row["Name"]: row for row in info["Stats"]}
    assert set(stats) == {"KVS", "Tombstone", "Session", "Register", "Index"}

    def packed(value: Any) -> int:
        return len(msgpack.packb(value, use_bin_type=True))

    assert stats["KVS"]["Count"] == len(dump["KVs"]) == 5
    assert stats["KVS"]["Sum"] == sum(packed(r) for r in dump["KVs"])
    assert stats["Tombstone"]["Count"] == 1
    assert stats["Session"]["Count"] == 1
    assert stats["Session"]["Sum"] == packed(dump["Sessions"][0])
    assert stats["Register"]["Count"] == len(dump["Nodes"]) + len(dump["Checks"]) == 2
    assert stats["Index"]["Count"] == len(dump["Index"])
    assert info["TotalSize"] == sum(row["Sum"] for row in info["Stats"])
    assert info["TotalSize"] < len(state)
    sums = [row["Sum"] for row in info["Stats"]]
    assert sums == sorted(sums, reverse=True)
    assert info["StatsKV"] is None and info["TotalSizeKV"] == 0


def test_inspect_kv_details_by_depth_and_filter(archive: bytes) -> None:
    info = inspect_archive(archive, kv_details=True)
    rows = {row["Name"]: row["Count"] for row in info["StatsKV"]}
    assert rows == {"app/config": 2, "app/flags": 1, "top": 1, "service/web": 1}
    assert info["TotalSizeKV"] == next(r["Sum"] for r in info["Stats"] if r["Name"] == "KVS")

    deep = inspect_archive(archive, kv_details=True, kv_depth=1)
    assert {row["Name"]: row["Count"] for row in deep["StatsKV"]} == {
        "app": 3, "top": 1, "service": 1}
    filtered = inspect_archive(archive, kv_details=True, kv_depth=3, kv_filter="app/c")
    assert {row["Name"]: row["Count"] for row in filtered["StatsKV"]} == {
        "app/config/a": 1, "app/config/b": 1}
    assert inspect_archive(archive, kv_details=True, kv_filter="zzz")["StatsKV"] is None
    assert kv_prefix("a/b/c", 0) == "" and kv_prefix("a/b/c", 9) == "a/b/c"
    with pytest.raises(ValueError):
        inspect_archive(archive, kv_details=True, kv_depth=-1)


def test_inspect_refuses_a_damaged_archive_before_reading_state(archive: bytes) -> None:
    with pytest.raises(SnapshotError):
        inspect_archive(archive[:-1])


@pytest.mark.parametrize("state", [
    b"\x93\x01\x02\x03",                       # a list, not a map
    msgpack.packb({"KVs": [{"Key": "a"}]})[:-2],  # truncated
    msgpack.packb({"KVs": []}) + b"\x00",          # trailing bytes
    b"\xc1",                                    # never-used msgpack byte
])
def test_inspect_refuses_state_that_is_not_a_dump(state: bytes) -> None:
    with pytest.raises(SnapshotError, match=r"failed to decode state\.bin"):
        inspect_state(meta_for(state), state)


def test_inspect_names_unknown_record_lists_by_key() -> None:
    state = msgpack.packb({"Version": 1, "Future": [1, 2], "Flag": True, "Index": {}})
    info = inspect_state(meta_for(state), state)
    assert info["Stats"] == [{"Name": "Future", "Sum": 2, "Count": 2}]


def test_zlib_level_matches_go_default(state: bytes) -> None:
    """Go's DefaultCompression is level 6: the deflate body is what zlib makes at level 6."""
    archive = write_archive(meta_for(state), state, mtime=0)
    tar = gzip.decompress(archive)
    assert zlib.compress(tar, 6, wbits=31)[10:] == archive[10:]
