"""The keyring against serf 0.9.4's own encrypted traffic, and its failure modes.

Every encrypted UDP packet of the capture must open to exactly the plaintext the manifest
recorded, with the key the capture used; the run rotated keys halfway, so the later packets need
the second key. Sealing must round-trip for both versions and every AES key size, and anything
tampered with must fail as GossipDecryptError, never as another exception or as garbage.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul.errors import GossipDecryptError, GossipError
from proconsul.gossip import codec
from proconsul.gossip import keyring as keyring_mod
from proconsul.gossip.keyring import (
    Keyring,
    KeyringError,
    decode_key,
    encode_key,
    encrypted_length,
    encryption_overhead,
)

VECTORS = Path(__file__).parent / "vectors"
MANIFEST: dict[str, Any] = json.loads((VECTORS / "manifest.json").read_text())
KEYS = [base64.b64decode(text) for text in MANIFEST["keys_b64"]]
ENCRYPTED_UDP = [f for f in MANIFEST["files"]
                 if f["file"].startswith("encrypted/") and f["transport"] == "udp"]
ENCRYPTED_TCP = [f for f in MANIFEST["files"]
                 if f["file"].startswith("encrypted/") and f["transport"] == "tcp"
                 and f["kind"] == "gossip"]
K16, K24, K32 = bytes(range(16)), bytes(range(24)), bytes(range(32))


def vector(entry: dict[str, Any]) -> bytes:
    return (VECTORS / entry["file"]).read_bytes()


def encrypt_layer(entry: dict[str, Any]) -> dict[str, Any]:
    layer: dict[str, Any] = entry["layers"][0]
    assert layer["layer"] == "encrypt"
    return layer


# -- the capture -----------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ENCRYPTED_UDP, ids=lambda e: e["file"])
def test_udp_vector_opens_to_the_recorded_plaintext(entry: dict[str, Any]) -> None:
    layer = encrypt_layer(entry)
    packet = vector(entry)
    assert packet[0] == layer["vsn"] == 1
    expected = bytes.fromhex(layer["plaintext_hex"])
    aad = bytes.fromhex(layer["aad_hex"])
    # the key the capture recorded opens it on its own ...
    assert Keyring([KEYS[layer["key_index"]]]).decrypt(packet, aad) == expected
    # ... and so does the rotated ring, whichever key is primary
    ring = Keyring(KEYS)
    assert ring.decrypt(packet, aad) == expected
    ring.use_key(KEYS[1])
    assert ring.decrypt(packet, aad) == expected
    assert len(packet) == encrypted_length(1, len(expected))


def test_rotation_in_the_capture_needs_the_second_key() -> None:
    by_key: dict[int, list[float]] = {0: [], 1: []}
    old_ring = Keyring([KEYS[0]])
    for entry in ENCRYPTED_UDP:
        layer = encrypt_layer(entry)
        by_key[layer["key_index"]].append(entry["t"])
        if layer["key_index"] == 1:
            with pytest.raises(GossipDecryptError, match="No installed keys could decrypt"):
                old_ring.decrypt(vector(entry), b"")
    assert by_key[0] and by_key[1]
    # every packet under the new key comes after the last one under the old key
    assert min(by_key[1]) > max(by_key[0])


@pytest.mark.parametrize("entry", ENCRYPTED_TCP, ids=lambda e: e["file"])
def test_tcp_frame_opens_with_its_header_as_aad(entry: dict[str, Any]) -> None:
    layer = encrypt_layer(entry)
    frame = vector(entry)
    header = frame[:5]
    assert header.hex() == layer["aad_hex"]
    assert int.from_bytes(header[1:], "big") == len(frame) - 5 == layer["length_field"]
    ring = Keyring(KEYS)
    assert ring.decrypt(frame[5:], header) == bytes.fromhex(layer["plaintext_hex"])
    with pytest.raises(GossipDecryptError):
        ring.decrypt(frame[5:], b"")


@pytest.mark.parametrize("entry", ENCRYPTED_UDP, ids=lambda e: e["file"])
def test_codec_ingest_uses_the_keyring(entry: dict[str, Any]) -> None:
    leaves = codec.ingest(vector(entry), Keyring(KEYS))
    assert [leaf.hex() for leaf in leaves] == [m["raw_hex"] for m in entry["messages"]]


# -- sealing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("key", [K16, K24, K32], ids=["aes128", "aes192", "aes256"])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 1400])
@pytest.mark.parametrize("aad", [b"", b"label", b"\x0a\x00\x00\x01\x01"])
def test_round_trip(version: int, key: bytes, size: int, aad: bytes) -> None:
    ring = Keyring([key])
    plain = os.urandom(size)
    sealed = ring.encrypt(plain, aad, version)
    assert sealed[0] == version
    assert len(sealed) == encrypted_length(version, size)
    assert len(sealed) <= size + encryption_overhead(version)
    if version == 0:  # PKCS#7 always pads, a full block when already aligned
        assert (len(sealed) - 29) % 16 == 0 and len(sealed) - 29 > size
    assert ring.decrypt(sealed, aad) == plain
    # an independent AES-GCM opens it the way memberlist does
    opened = AESGCM(key).decrypt(sealed[1:13], sealed[13:], aad or None)
    if version == 0:
        opened = opened[:-opened[-1]]
    assert opened == plain


def test_nonces_are_fresh() -> None:
    ring = Keyring([K32])
    assert len({ring.encrypt(b"same", b"", 1)[1:13] for _ in range(50)}) == 50


def test_overheads() -> None:
    assert encryption_overhead(1) == 29
    assert encryption_overhead(0) == 45
    with pytest.raises(ValueError):
        encryption_overhead(2)
    with pytest.raises(ValueError):
        Keyring([K16]).encrypt(b"x", b"", 2)


def test_one_cipher_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[bytes] = []

    def counting(key: bytes) -> AESGCM:
        made.append(key)
        return AESGCM(key)

    monkeypatch.setattr(keyring_mod, "AESGCM", counting)
    ring = Keyring([K16, K32])
    for _ in range(100):
        ring.decrypt(ring.encrypt(b"payload", b"", 1), b"")
    ring.use_key(K32)
    ring.decrypt(ring.encrypt(b"payload", b"", 0), b"")
    assert sorted(made) == [K16, K32]


# -- tampering -------------------------------------------------------------------------------

def test_wrong_aad_key_and_version_are_rejected() -> None:
    ring = Keyring([K16])
    sealed = ring.encrypt(b"hello gossip", b"aad", 1)
    with pytest.raises(GossipDecryptError, match="No installed keys could decrypt"):
        ring.decrypt(sealed, b"other")
    with pytest.raises(GossipDecryptError):
        ring.decrypt(sealed, b"")
    with pytest.raises(GossipDecryptError):
        Keyring([K24, K32]).decrypt(sealed, b"aad")
    with pytest.raises(GossipDecryptError, match="Unsupported encryption version 2"):
        ring.decrypt(b"\x02" + sealed[1:], b"aad")
    with pytest.raises(GossipDecryptError, match="empty payload"):
        ring.decrypt(b"", b"")
    with pytest.raises(GossipDecryptError, match="No installed keys"):
        Keyring().decrypt(sealed, b"aad")


@pytest.mark.parametrize("version", [0, 1])
def test_every_truncation_and_bit_flip_is_rejected(version: int) -> None:
    ring = Keyring([K32])
    sealed = ring.encrypt(b"suspect c from a", b"", version)
    for cut in range(len(sealed)):
        with pytest.raises(GossipDecryptError):
            ring.decrypt(sealed[:cut], b"")
    for index in range(len(sealed)):
        for bit in range(8):
            damaged = bytearray(sealed)
            damaged[index] ^= 1 << bit
            if index == 0 and damaged[0] in (0, 1):
                # the other version opens the same ciphertext only if the padding happens to
                # fit; either way it must not come back as the original message unnoticed
                try:
                    out = ring.decrypt(bytes(damaged), b"")
                except GossipDecryptError:
                    continue
                assert out != b"suspect c from a"
                continue
            with pytest.raises(GossipDecryptError):
                ring.decrypt(bytes(damaged), b"")


def test_minimum_lengths() -> None:
    ring = Keyring([K16])
    with pytest.raises(GossipDecryptError, match="too small"):
        ring.decrypt(b"\x01" + bytes(27), b"")
    with pytest.raises(GossipDecryptError, match="too small"):
        ring.decrypt(b"\x00" + bytes(43), b"")
    with pytest.raises(GossipDecryptError, match="No installed keys"):
        ring.decrypt(b"\x01" + bytes(28), b"")


def test_bad_padding_in_version_0_is_refused() -> None:
    key = K16
    nonce = bytes(12)
    for block in (b"x" * 15 + b"\x00", b"x" * 15 + b"\x11"):
        sealed = b"\x00" + nonce + AESGCM(key).encrypt(nonce, block, None)
        with pytest.raises(GossipDecryptError, match="padding"):
            Keyring([key]).decrypt(sealed, b"")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=8))
def test_random_input_only_raises_decrypt_errors(data: bytes, aad: bytes) -> None:
    with pytest.raises(GossipDecryptError):
        Keyring([K16, K32]).decrypt(data, aad)


# -- managing keys ---------------------------------------------------------------------------

def test_add_use_remove() -> None:
    ring = Keyring([K16])
    assert ring.keys == [K16] and ring.primary_key == K16
    ring.add_key(K24)
    ring.add_key(K32)
    ring.add_key(K24)  # already installed: no-op
    assert ring.keys == [K16, K24, K32]
    ring.use_key(K32)  # to the front, the others keep their order
    assert ring.keys == [K32, K16, K24] and ring.primary_key == K32
    ring.remove_key(K16)
    assert ring.keys == [K32, K24]
    ring.remove_key(K16)  # not installed: no-op, as memberlist
    assert ring.keys == [K32, K24]
    ring.keys.clear()  # a copy
    assert ring.keys == [K32, K24]
    assert "Keyring with 2 keys" in repr(ring) and K32.hex() not in repr(ring)


def test_management_errors_use_memberlist_texts() -> None:
    ring = Keyring([K16, K24])
    with pytest.raises(KeyringError, match=r"^Requested key is not in the keyring$"):
        ring.use_key(K32)
    with pytest.raises(KeyringError, match=r"^Removing the primary key is not allowed$"):
        ring.remove_key(K16)
    with pytest.raises(KeyringError, match=r"^key size must be 16, 24 or 32 bytes$"):
        ring.add_key(bytes(20))
    with pytest.raises(KeyringError, match=r"^Empty primary key not allowed$"):
        Keyring([K16], primary_key=b"")
    with pytest.raises(KeyringError):
        Keyring().encrypt(b"x", b"", 1)
    assert isinstance(KeyringError("x"), GossipError) and isinstance(KeyringError("x"), ValueError)
    assert ring.keys == [K16, K24]


def test_constructor_puts_the_primary_first() -> None:
    assert Keyring([K16, K24, K32], primary_key=K24).keys == [K24, K16, K32]
    assert Keyring([K16, K16, K24]).keys == [K16, K24]
    assert Keyring(primary_key=K32).keys == [K32]
    empty = Keyring()
    assert empty.keys == [] and empty.primary_key is None


# -- base64 keys -----------------------------------------------------------------------------

def test_decode_key() -> None:
    assert decode_key(MANIFEST["keys_b64"][0]) == KEYS[0]
    assert encode_key(KEYS[1]) == MANIFEST["keys_b64"][1]
    assert decode_key("AAECAwQF\r\nBgcICQoLDA0ODw==") == KEYS[0]  # Go skips CR and LF
    assert Keyring.from_base64(MANIFEST["keys_b64"]).keys == KEYS


@pytest.mark.parametrize(("text", "offset"), [
    ("this is not a valid key", 4),  # Consul's own test case
    ("AAECAwQFBgcICQoLDA0ODw=", 23),
    ("AAECAwQFBgcICQoLDA0ODw", 20),
    ("AAECAwQFBgcICQoLDA0ODw==AA", 24),
    ("AB=C", 2),
    ("A===", 1),
    ("A", 0),
    ("ABC\u00e9", 3),
])
def test_decode_key_reports_go_offsets(text: str, offset: int) -> None:
    with pytest.raises(KeyringError, match=f"^illegal base64 data at input byte {offset}$"):
        decode_key(text)


def test_decode_key_checks_the_size() -> None:
    with pytest.raises(KeyringError, match=r"^key size must be 16, 24 or 32 bytes$"):
        decode_key(base64.b64encode(bytes(20)).decode())
    assert decode_key(base64.b64encode(bytes(20)).decode(), validate=False) == bytes(20)


@given(st.binary(max_size=64))
def test_decode_matches_python_base64(raw: bytes) -> None:
    assert decode_key(base64.b64encode(raw).decode(), validate=False) == raw


# -- keyring files ---------------------------------------------------------------------------

def test_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "serf" / "local.keyring"
    ring = Keyring(KEYS)
    ring.use_key(KEYS[1])
    ring.save(path)
    # serf's json.MarshalIndent(keys, "", "  "), primary first, readable by the owner only
    new, old = MANIFEST["keys_b64"][1], MANIFEST["keys_b64"][0]
    assert path.read_text() == f'[\n  "{new}",\n  "{old}"\n]'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["local.keyring"]
    assert Keyring.load(path).keys == [KEYS[1], KEYS[0]]
    ring.remove_key(KEYS[0])
    ring.save(path)
    assert Keyring.load(path).keys == [KEYS[1]]


def test_a_failed_save_keeps_the_old_file(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "local.keyring"
    Keyring([K16]).save(path)
    before = path.read_bytes()

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keyring_mod.os, "replace", broken)
    with pytest.raises(KeyringError, match=r"^Failed to write keyring file: .*No space left"):
        Keyring([K32]).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["local.keyring"]


@pytest.mark.parametrize(("content", "message"), [
    ("[]", "^Keyring file contains no keys$"),
    ("null", "^Keyring file contains no keys$"),
    ("{", "^Failed to decode keyring file: "),
    ('{"a": 1}', "^Failed to decode keyring file: expected a JSON array of strings$"),
    ("[1]", "^Failed to decode keyring file: expected a JSON array of strings$"),
    ('["this is not a valid key"]',
     "^Failed to decode key from keyring: illegal base64 data at input byte 4$"),
    ('["AAAA"]', "^Failed to restore keyring: key size must be 16, 24 or 32 bytes$"),
])
def test_load_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keyring"
    path.write_text(content)
    with pytest.raises(KeyringError, match=message):
        Keyring.load(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match=r"^Failed to read keyring file: "):
        Keyring.load(tmp_path / "absent")
