# Packet layers: compound, CRC, label, LZW and the receive/send pipelines (included by
# gossip_codec.pyx). `ingest` peels a packet in place: the label, CRC and compound layers are
# read through a pointer into the datagram and only the leaves (and the LZW input and output)
# become bytes objects.

# -- compound ----------------------------------------------------------------------------------

def make_compound(parts):
    """`[0x07][n][n x u16 BE lengths][parts]`, at most MAX_COMPOUND_PARTS parts."""
    cdef Py_ssize_t count, i, n, total
    cdef uint8_t* w
    if type(parts) is not list and type(parts) is not tuple:
        return _py.make_compound(parts)
    for part in parts:
        if type(part) is not bytes:
            return _py.make_compound(parts)
    count = len(parts)
    if count > C_MAX_PARTS:
        raise ValueError(f"{count} parts in one compound (max {MAX_COMPOUND_PARTS}); "
                         "use make_compounds")
    total = 2 + 2 * count
    for part in parts:
        n = PyBytes_GET_SIZE(part)
        if n > 0xFFFF:
            raise ValueError("compound part longer than 65535 bytes")
        total += n
    res = PyBytes_FromStringAndSize(NULL, total)
    w = <uint8_t*>PyBytes_AS_STRING(res)
    w[0] = T_COMPOUND
    w[1] = <uint8_t>count
    i = 0
    for part in parts:
        n = PyBytes_GET_SIZE(part)
        w[2 + 2 * i] = <uint8_t>(n >> 8)
        w[3 + 2 * i] = <uint8_t>n
        i += 1
    w += 2 + 2 * count
    for part in parts:
        n = PyBytes_GET_SIZE(part)
        memcpy(w, PyBytes_AS_STRING(part), n)
        w += n
    return res


def make_compounds(parts):
    """Split any number of parts into compounds of at most MAX_COMPOUND_PARTS each."""
    return [make_compound(parts[i:i + C_MAX_PARTS]) for i in range(0, len(parts), C_MAX_PARTS)]


def split_compound(buf):
    """The parts of a `[0x07]...` compound and how many were cut off by the packet's end.

    Like memberlist, parts that fit are returned even when later ones are truncated; only a
    header that is itself cut short is an error.
    """
    cdef const uint8_t* p
    cdef Py_ssize_t n, count, off, i, length
    if type(buf) is not bytes:
        if type(buf) is not bytearray:
            return _py.split_compound(buf)
        buf = bytes(buf)
    n = PyBytes_GET_SIZE(buf)
    p = <const uint8_t*>PyBytes_AS_STRING(buf)
    if n < 2 or p[0] != T_COMPOUND:
        raise GossipFormatError("missing compound length byte")
    count = p[1]
    off = 2 + 2 * count
    if n < off:
        raise GossipFormatError("truncated compound length slice")
    parts = []
    for i in range(count):
        length = be16(p + 2 + 2 * i)
        if n - off < length:
            return parts, count - i
        parts.append(PyBytes_FromStringAndSize(<const char*>p + off, length))
        off += length
    return parts, 0


# -- CRC ---------------------------------------------------------------------------------------

def add_crc(payload):
    """`[0x0c][CRC-32/IEEE BE][payload]`: a prefix despite memberlist's comment saying "end"."""
    cdef Py_ssize_t n
    cdef uint32_t c
    cdef uint8_t* w
    if type(payload) is not bytes:
        return _py.add_crc(payload)
    n = PyBytes_GET_SIZE(payload)
    c = crc32(<const uint8_t*>PyBytes_AS_STRING(payload), n)
    res = PyBytes_FromStringAndSize(NULL, n + 5)
    w = <uint8_t*>PyBytes_AS_STRING(res)
    w[0] = T_CRC
    w[1] = <uint8_t>(c >> 24)
    w[2] = <uint8_t>(c >> 16)
    w[3] = <uint8_t>(c >> 8)
    w[4] = <uint8_t>c
    memcpy(w + 5, PyBytes_AS_STRING(payload), n)
    return res


# -- LZW ---------------------------------------------------------------------------------------

cdef object _lzw_decompress = None
cdef object _lzw_compress = None


cdef object _default_decompress():
    global _lzw_decompress
    if _lzw_decompress is None:
        from proconsul.gossip import lzw

        _lzw_decompress = lzw.decompress
    return _lzw_decompress


cdef object _default_compress():
    global _lzw_compress
    if _lzw_compress is None:
        from proconsul.gossip import lzw

        _lzw_compress = lzw.compress
    return _lzw_compress


cdef bytes _run_decompress(object fn, bytes data):
    """Call the LZW decoder, turning whatever it raises on garbage into GossipFormatError."""
    if fn is None:
        fn = _default_decompress()
    try:
        out = fn(data)
    except GossipError:
        raise
    except (ValueError, EOFError, IndexError, KeyError, OverflowError) as exc:
        raise GossipFormatError(f"bad LZW data: {exc}") from None
    if not out:
        raise GossipFormatError("compressed payload decompressed to nothing")
    return out if type(out) is bytes else bytes(out)


# -- receive side ------------------------------------------------------------------------------

cdef int _walk(const uint8_t* p, Py_ssize_t n, object whole, list out, int depth,
               object decompress, object errors, Py_ssize_t* budget) except -1:
    """Unwrap compound/compress containers at `p` into `out`; `whole`, when not None, is a
    bytes object holding exactly `p[:n]` (handed out as is when it is a leaf)."""
    cdef Py_ssize_t count, off, pos, i, fit, length
    cdef uint8_t t = p[0]
    if t != T_COMPOUND and t != T_COMPRESS:
        out.append(whole if whole is not None
                   else PyBytes_FromStringAndSize(<const char*>p, n))
        return 0
    if depth >= C_MAX_NESTING:
        raise GossipFormatError("containers nested too deep")
    if t == T_COMPRESS:
        inner = _run_decompress(decompress, _compress_buf(p, n))
        budget[0] += PyBytes_GET_SIZE(inner)
        if budget[0] > C_MAX_DECOMPRESSED:
            raise GossipFormatError("decompressed size limit exceeded")
        return _walk(<const uint8_t*>PyBytes_AS_STRING(inner), PyBytes_GET_SIZE(inner), inner,
                     out, depth + 1, decompress, errors, budget)
    if n < 2:
        raise GossipFormatError("missing compound length byte")
    count = p[1]
    off = 2 + 2 * count
    if n < off:
        raise GossipFormatError("truncated compound length slice")
    fit = count
    pos = off
    for i in range(count):
        length = be16(p + 2 + 2 * i)
        if n - pos < length:
            fit = i
            break
        pos += length
    if fit < count and errors is not None:
        errors.append(f"compound: {count - fit} truncated parts")
    pos = off
    for i in range(fit):
        length = be16(p + 2 + 2 * i)
        if length == 0:
            if errors is not None:
                errors.append("compound: empty part")
            continue
        t = p[pos]
        if t != T_COMPOUND and t != T_COMPRESS:
            out.append(_bytes_at(p + pos, length))
        else:
            try:
                _walk(p + pos, length, None, out, depth + 1, decompress, errors, budget)
            except GossipFormatError as exc:
                if errors is not None:
                    errors.append(f"compound part: {exc}")
        pos += length
    return 0


def ingest(packet, keyring=None, label=b"", verify_incoming=True, decompress=None, *,
           skip_inbound_label_check=False, errors=None):
    """Peel one UDP packet down to its leaf messages `[type][body]`, in wire order.

    Order as memberlist's `ingestPacket`/`handleCommand`: label -> decrypt (AAD = label) ->
    CRC (only when the first byte is 0x0c) -> compress/compound, recursively. A problem with
    the packet as a whole raises (GossipFormatError, or GossipDecryptError from the keyring);
    a bad or truncated compound part is dropped, as memberlist drops it, and the reason is
    appended to `errors` when given, so the good parts are still delivered. Leaves are not
    decoded: the caller dispatches on the type byte (unknown types included, so it can log).
    `decompress` defaults to `proconsul.gossip.lzw.decompress`.
    """
    cdef const uint8_t* p
    cdef Py_ssize_t n, size
    cdef Py_ssize_t budget = 0
    if len(packet) > C_MAX_PACKET:
        raise GossipFormatError(f"packet of {len(packet)} bytes exceeds {MAX_PACKET_SIZE}")
    buf = packet if type(packet) is bytes else bytes(packet)
    n = PyBytes_GET_SIZE(buf)
    p = <const uint8_t*>PyBytes_AS_STRING(buf)
    if n > 0 and p[0] == T_LABEL:
        if n < 2:
            raise GossipFormatError("label header too short")
        size = p[1]
        if size < 1:
            raise GossipFormatError("label header cannot be empty when present")
        if n < 2 + size:
            raise GossipFormatError("label header truncated")
        got = buf[2:2 + size]
        buf = buf[2 + size:]
        aad = _py.check_label(got, label, skip_inbound_label_check)
    elif (not skip_inbound_label_check and type(label) is bytes
          and PyBytes_GET_SIZE(label) == 0):
        aad = label
    else:
        aad = _py.check_label(b"", label, skip_inbound_label_check)
    if keyring is not None:
        try:
            buf = keyring.decrypt(buf, aad)
        except GossipError:
            if verify_incoming:
                raise
        if not buf:
            raise GossipFormatError("empty packet")
        if type(buf) is not bytes:
            buf = bytes(buf)
    n = PyBytes_GET_SIZE(buf)
    p = <const uint8_t*>PyBytes_AS_STRING(buf)
    if n == 0:
        raise GossipFormatError("empty packet")
    whole = buf
    if p[0] == T_CRC:
        if n < 5:
            raise GossipFormatError("truncated CRC header")
        if crc32(p + 5, n - 5) != be32(p + 1):
            raise GossipFormatError("CRC mismatch")
        p += 5
        n -= 5
        whole = None
        if n == 0:
            raise GossipFormatError("empty payload after CRC")
    out = []
    _walk(p, n, whole, out, 0, decompress, errors, &budget)
    return out


# -- send side ---------------------------------------------------------------------------------

def prepare(msgs, *, compress=False, crc=False, keyring=None, label=b"", encrypt_version=1):
    """One UDP packet from encoded messages, in memberlist's send order.

    Several messages become one compound (at most MAX_COMPOUND_PARTS; split first with
    `make_compounds` and prepare each). LZW is kept only when the wrapped result is shorter.
    `crc` is for peers with PMax >= 5 (memberlist adds it on gossip, not on pings and acks).
    With a keyring the buffer is sealed with the primary key, AAD = label; the label (never
    toward memberlist < 0.3.0) goes outermost. `compress=True` uses `proconsul.gossip.lzw`.
    """
    if not msgs:
        raise ValueError("nothing to send")
    payload = bytes(msgs[0]) if len(msgs) == 1 else make_compound(msgs)
    if compress:
        fn = _default_compress() if compress is True else compress
        assert callable(fn)
        wrapped = encode_compress(fn(payload))
        if len(wrapped) < len(payload):
            payload = wrapped
    if crc:
        payload = add_crc(payload)
    if keyring is not None:
        payload = keyring.encrypt(payload, label, encrypt_version)
    if not label:
        return payload
    return _py.add_label(payload, label)
