# The per-packet path for dns_wire.pyx (included there): the Responder's plan cache and the
# batched UDP loop.


cdef class Responder:
    """Parse, look the plan up and render: what a DNS listener does per packet.

    A cache hit never builds a Query: the question is parsed into a C struct, the key bytes are
    the only object made before the dict probe, and the answer is rendered from the struct.
    """

    def __init__(self, RenderOptions opts not None, seed: int | None = None,
                 max_plans: int = 65536) -> None:
        self.opts = opts
        self.rng = Rng(seed)
        self._max = max_plans
        self._plans = {}
        self.hits = 0
        self.misses = 0
        self.formerr = 0

    cdef object _lookup(self, const uint8_t* p, Py_ssize_t n, bint tcp):
        cdef QInfo q
        cdef PyObject* plan
        if _parse(p, n, &q) < 0:
            self.formerr += 1
            return _formerr(p, n)
        if q.qdcount == 0:
            return _error(&q, C_REFUSED, self.opts)
        if q.opcode != 0:
            return _error(&q, C_NOTIMP, self.opts)
        key = PyBytes_FromStringAndSize(<char*>q.key, q.qlen)
        plan = PyDict_GetItem(self._plans, key)
        if plan == NULL:
            self.misses += 1
            return _query_from(&q, key)
        self.hits += 1
        return _render(&q, <Plan>plan, tcp, self.opts, self.rng)

    def lookup(self, data: bytes, bint tcp) -> bytes | Query:
        """The response bytes (b"": send nothing), or the Query when no plan is cached."""
        cdef bytes raw = data if type(data) is bytes else bytes(data)
        return self._lookup(<const uint8_t*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), tcp)

    def store(self, Query query not None, Plan plan not None) -> None:
        """Cache `plan` for the question of `query`; a full cache is cleared first."""
        if len(self._plans) >= self._max:
            self._plans.clear()
        self._plans[query.key] = plan

    def forget(self, key: bytes) -> None:
        """Drop one cached plan, if present."""
        self._plans.pop(key, None)

    def clear(self) -> None:
        """Drop every cached plan."""
        self._plans.clear()

    def __len__(self) -> int:
        return len(self._plans)

    def plan_for(self, key: bytes) -> Plan | None:
        """The cached plan for a cache key, or None."""
        return self._plans.get(key)

    def render(self, Query query not None, Plan plan not None, bint tcp) -> bytes:
        """`render` with this responder's options and generator."""
        return _render(&query.q, plan, tcp, self.opts, self.rng)


# recvmmsg/sendmmsg state, allocated on first use: BATCH receive buffers of RECV_SIZE bytes.
cdef uint8_t* _rbuf = NULL
cdef mmsghdr _rmsg[BATCH]
cdef iovec _riov[BATCH]
cdef sockaddr_storage _raddr[BATCH]
cdef mmsghdr _smsg[BATCH]
cdef iovec _siov[BATCH]
cdef bint _draining = False


cdef object _address(sockaddr_storage* ss, socklen_t size):
    """The tuple socket.recvfrom gives for this source (getnameinfo, as CPython formats it)."""
    cdef char host[1025]
    cdef sockaddr_in6* six
    if getnameinfo(<sockaddr*>ss, size, host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0:
        host[0] = 0
    if ss.ss_family == AF_INET6:
        six = <sockaddr_in6*>ss
        return (host.decode("ascii"), ntohs(six.sin6_port), ntohl(six.sin6_flowinfo),
                six.sin6_scope_id)
    return (host.decode("ascii"), ntohs((<sockaddr_in*>ss).sin_port))


cdef void _send_batch(int fd, int count) noexcept:
    """Send the prepared answers; a failed datagram is skipped (UDP is lossy, clients retry)
    and a full send buffer drops the rest of the batch rather than blocking the loop."""
    cdef int i = 0, sent
    while i < count:
        sent = sendmmsg(fd, &_smsg[i], count - i, MSG_DONTWAIT)
        if sent > 0:
            i += sent
        elif sent < 0 and errno == EINTR:
            continue
        elif sent < 0 and DNS_WOULD_BLOCK(errno):
            return
        else:
            i += 1


def drain_udp(sock: object, Responder responder not None, miss: object,
              Py_ssize_t budget=256) -> int:
    """Serve datagrams from a non-blocking socket until it is empty or `budget` were read.

    Datagrams arrive and leave in batches of up to 32 per system call. Hits are answered here;
    misses go to `miss(query, address)`. An exception from `miss` propagates after the answers
    already rendered in its batch are sent; the datagrams after it in that batch are dropped.
    Returns the number of datagrams read.
    """
    global _rbuf, _draining
    cdef int fd = sock.fileno()
    cdef Py_ssize_t got = 0
    cdef int want, received, i, nsend
    cdef object result
    cdef list keep = []
    if _draining:
        raise RuntimeError("drain_udp is not re-entrant")
    if _rbuf == NULL:
        _rbuf = <uint8_t*>PyMem_Malloc(<size_t>BATCH * RECV_SIZE)
        if _rbuf == NULL:
            raise MemoryError()
        for i in range(BATCH):
            _riov[i].iov_base = _rbuf + <size_t>i * RECV_SIZE
            _riov[i].iov_len = RECV_SIZE
    _draining = True
    try:
        while got < budget:
            want = <int>min(<Py_ssize_t>BATCH, budget - got)
            for i in range(want):
                memset(&_rmsg[i], 0, sizeof(mmsghdr))
                _rmsg[i].msg_hdr.msg_name = &_raddr[i]
                _rmsg[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
                _rmsg[i].msg_hdr.msg_iov = &_riov[i]
                _rmsg[i].msg_hdr.msg_iovlen = 1
            received = recvmmsg(fd, _rmsg, want, MSG_DONTWAIT, NULL)
            if received < 0:
                if errno == EINTR:
                    PyErr_CheckSignals()
                    continue
                # empty (EAGAIN), or an error queued on the socket: the next wake-up retries
                break
            if received == 0:
                break
            got += received
            nsend = 0
            try:
                for i in range(received):
                    result = responder._lookup(<const uint8_t*>_riov[i].iov_base,
                                               _rmsg[i].msg_len, False)
                    if type(result) is bytes:
                        if PyBytes_GET_SIZE(result):
                            keep.append(result)
                            memset(&_smsg[nsend], 0, sizeof(mmsghdr))
                            _siov[nsend].iov_base = PyBytes_AS_STRING(result)
                            _siov[nsend].iov_len = PyBytes_GET_SIZE(result)
                            _smsg[nsend].msg_hdr.msg_name = &_raddr[i]
                            _smsg[nsend].msg_hdr.msg_namelen = _rmsg[i].msg_hdr.msg_namelen
                            _smsg[nsend].msg_hdr.msg_iov = &_siov[nsend]
                            _smsg[nsend].msg_hdr.msg_iovlen = 1
                            nsend += 1
                    else:
                        miss(result, _address(&_raddr[i], _rmsg[i].msg_hdr.msg_namelen))
            finally:
                if nsend:
                    _send_batch(fd, nsend)
                keep.clear()
            if received < want:
                break   # the queue is empty: skip the system call that would say so
    finally:
        _draining = False
    return got
