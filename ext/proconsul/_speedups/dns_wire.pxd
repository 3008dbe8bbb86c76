# Declarations for dns_wire.pyx: the C structs and cdef class layouts of the DNS wire codec, and
# the libc socket calls drain_udp batches with. Kept apart so the .pyx reads as behaviour only.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t

    struct sockaddr:
        sa_family_t sa_family

    struct sockaddr_storage:
        sa_family_t ss_family

    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags

    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len

    struct timespec:
        pass

    int recvmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags, timespec* timeout)
    int sendmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags)
    enum:
        AF_INET
        AF_INET6
        MSG_DONTWAIT


cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr

    struct sockaddr_in:
        uint16_t sin_port

    struct sockaddr_in6:
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        uint32_t sin6_scope_id

    uint16_t ntohs(uint16_t)
    uint32_t ntohl(uint32_t)


cdef extern from *:
    """
    #include <errno.h>
    #define DNS_WOULD_BLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK)
    """
    bint DNS_WOULD_BLOCK(int e) nogil


cdef extern from "<netdb.h>" nogil:
    int getnameinfo(const sockaddr* addr, socklen_t addrlen, char* host, socklen_t hostlen,
                    char* serv, socklen_t servlen, int flags)
    enum:
        NI_NUMERICHOST


cdef enum:
    MAX_NAME = 255          # longest name in wire form
    MAX_QUESTION = 259      # a question: name + qtype + qclass


# One parsed query, held in C so a cache hit never builds a Query object.
cdef struct QInfo:
    uint16_t id
    uint16_t qdcount
    uint16_t qtype
    uint16_t qclass
    int opcode
    bint rd
    bint cd
    int nlen                    # wire length of the question name (0: no question)
    int qlen                    # nlen + 4 (0: no question)
    bint edns
    uint16_t edns_size
    int edns_version
    bint edns_do
    const uint8_t* ecs          # first client-subnet option data (NULL: none)
    Py_ssize_t ecs_len
    const char* err             # reason when parsing failed
    uint8_t question[MAX_QUESTION]
    uint8_t key[MAX_QUESTION]


cdef class Name:
    cdef readonly str text
    cdef readonly bytes wire
    cdef bytes _lwire           # wire with ASCII A-Z lowered: the compression keys
    cdef int _n                 # label count
    cdef uint8_t* _off          # wire offset of each label
    cdef uint64_t* _hash        # hash of the lowered suffix starting at each label


cdef class Record:
    cdef readonly Name name
    cdef readonly object rtype
    cdef readonly object ttl
    cdef readonly object rdata
    cdef bint _ready
    cdef int _kind
    cdef uint8_t _head[8]       # type, class, ttl
    cdef bytes _raw             # whole rdata, SRV's first 6 bytes or SOA's last 20
    cdef Name _n1
    cdef Name _n2
    cdef int _prepare(self) except -1


cdef class Plan:
    cdef readonly object rcode
    cdef readonly object answers
    cdef readonly object authority
    cdef readonly object extras
    cdef readonly object extra_of
    cdef readonly object answer_limit
    cdef readonly bint shuffle
    cdef readonly bint soa_now
    cdef readonly bint authoritative
    cdef tuple _ans
    cdef tuple _auth
    cdef tuple _ext
    cdef int _rcode
    cdef Py_ssize_t _limit
    cdef int* _xo               # flattened extra_of
    cdef Py_ssize_t* _xo_at     # answer i's extras are _xo[_xo_at[i]:_xo_at[i + 1]]
    cdef bint _ready
    cdef int _prepare(self) except -1


cdef class Rng:
    cdef uint64_t _x
    cdef uint64_t _next(self) noexcept
    cdef void _shuffle_idx(self, int* items, Py_ssize_t n) noexcept


cdef class RenderOptions:
    cdef readonly Py_ssize_t udp_answer_limit
    cdef readonly bint enable_truncate
    cdef readonly bint compress
    cdef readonly bint recursion_available


cdef class Query:
    cdef QInfo q
    cdef bytes _question
    cdef bytes _key
    cdef bytes _ecs
    cdef str _qname
    cdef void _set_ecs(self, bytes ecs) noexcept


cdef class Responder:
    cdef readonly RenderOptions opts
    cdef readonly Rng rng
    cdef readonly Py_ssize_t hits
    cdef readonly Py_ssize_t misses
    cdef readonly Py_ssize_t formerr
    cdef dict _plans
    cdef Py_ssize_t _max
    cdef object _lookup(self, const uint8_t* p, Py_ssize_t n, bint tcp)
