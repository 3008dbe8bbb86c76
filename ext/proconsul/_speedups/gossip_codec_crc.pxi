# CRC-32/IEEE for memberlist's hasCrc layer (included by gossip_codec.pyx).
#
# Computed here rather than by calling zlib.crc32 per packet. On x86-64 with PCLMULQDQ the bulk
# is folded 64 bytes at a time with carry-less multiplies (Intel's "Fast CRC Computation for
# Generic Polynomials Using PCLMULQDQ", the constants of zlib's SIMD variants), about 4x faster
# than tables at 1400 bytes; the tail, and every CPU without it, uses tables sliced by 16,
# which at gossip sizes also beat zlib 1.2's braided loop.

cdef extern from *:
    """
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>

    static int pc_clmul_ok(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    }

    /* len >= 64 and a multiple of 16; crc in and out in zlib's pre/post-inverted form */
    __attribute__((target("pclmul,sse4.1")))
    static uint32_t pc_crc_fold(const unsigned char* buf, Py_ssize_t len, uint32_t crc) {
        const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
        const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
        const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124);
        const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
        const __m128i mask = _mm_setr_epi32(~0, 0, ~0, 0);
        __m128i x1, x2, x3, x4, x5, x6, x7, x8;
        x1 = _mm_xor_si128(_mm_loadu_si128((const __m128i*)buf), _mm_cvtsi32_si128((int)crc));
        x2 = _mm_loadu_si128((const __m128i*)(buf + 16));
        x3 = _mm_loadu_si128((const __m128i*)(buf + 32));
        x4 = _mm_loadu_si128((const __m128i*)(buf + 48));
        buf += 64;
        len -= 64;
        while (len >= 64) {
            x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
            x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
            x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
            x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
            x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
            x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
            x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
            x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
            x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i*)buf));
            x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i*)(buf + 16)));
            x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i*)(buf + 32)));
            x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i*)(buf + 48)));
            buf += 64;
            len -= 64;
        }
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x2), x5);
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x3), x5);
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x4), x5);
        while (len >= 16) {
            x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
            x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11),
                                             _mm_loadu_si128((const __m128i*)buf)), x5);
            buf += 16;
            len -= 16;
        }
        /* 128 -> 64 bits, then 64 -> 32, then Barrett reduction */
        x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
        x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
        x2 = _mm_srli_si128(x1, 4);
        x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask), k5k0, 0x00), x2);
        x2 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask), poly, 0x10);
        x2 = _mm_clmulepi64_si128(_mm_and_si128(x2, mask), poly, 0x00);
        return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x1, x2), 1);
    }
    #else
    static int pc_clmul_ok(void) { return 0; }
    static uint32_t pc_crc_fold(const unsigned char* buf, Py_ssize_t len, uint32_t crc) {
        return crc;
    }
    #endif
    """
    int pc_clmul_ok() nogil
    uint32_t pc_crc_fold(const uint8_t* buf, Py_ssize_t n, uint32_t crc) nogil

cdef bint _CLMUL = pc_clmul_ok()
cdef uint32_t CRC[16][256]


cdef void _crc_init() noexcept:
    cdef uint32_t c
    cdef int i, k
    for i in range(256):
        c = i
        for k in range(8):
            c = (c >> 1) ^ (0xEDB88320u if c & 1 else 0)
        CRC[0][i] = c
    for i in range(256):
        c = CRC[0][i]
        for k in range(1, 16):
            c = CRC[0][c & 0xFF] ^ (c >> 8)
            CRC[k][i] = c


_crc_init()


cdef inline uint32_t _le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
            | (<uint32_t>p[3] << 24))


cdef uint32_t crc32(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t c = 0xFFFFFFFFu
    cdef uint32_t a, b, d, e
    cdef Py_ssize_t bulk
    if _CLMUL and n >= 64:
        bulk = n & ~(<Py_ssize_t>15)
        c = pc_crc_fold(p, bulk, c)
        p += bulk
        n -= bulk
    while n >= 16:
        a = _le32(p) ^ c
        b = _le32(p + 4)
        d = _le32(p + 8)
        e = _le32(p + 12)
        c = (CRC[15][a & 0xFF] ^ CRC[14][(a >> 8) & 0xFF] ^ CRC[13][(a >> 16) & 0xFF]
             ^ CRC[12][a >> 24] ^ CRC[11][b & 0xFF] ^ CRC[10][(b >> 8) & 0xFF]
             ^ CRC[9][(b >> 16) & 0xFF] ^ CRC[8][b >> 24] ^ CRC[7][d & 0xFF]
             ^ CRC[6][(d >> 8) & 0xFF] ^ CRC[5][(d >> 16) & 0xFF] ^ CRC[4][d >> 24]
             ^ CRC[3][e & 0xFF] ^ CRC[2][(e >> 8) & 0xFF] ^ CRC[1][(e >> 16) & 0xFF]
             ^ CRC[0][e >> 24])
        p += 16
        n -= 16
    while n > 0:
        c = CRC[0][(c ^ p[0]) & 0xFF] ^ (c >> 8)
        p += 1
        n -= 1
    return c ^ 0xFFFFFFFFu
