# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of proconsul/http/wire_py.py: request heads in, response bytes out.

Every HTTP request crosses this module twice, so it is written against C buffers: percent
decoding, query splitting and response heads are built in one pass without intermediate Python
strings. The public names, signatures and results are those of the pure twin; the selector
proconsul/http/wire.py chooses between them, and the differential tests hold them equal.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdio cimport snprintf
from libc.string cimport memchr, memcpy
from libc.time cimport time, time_t

from email.utils import formatdate

import httptools

from proconsul.errors import ConnectionLimit, HTTPParseError, ProconsulError
from proconsul.http.request import Request

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    bint PyUnicode_IS_ASCII(object text)
    object PyUnicode_DecodeUTF8(const char* data, Py_ssize_t size, const char* errors)
    object PyUnicode_DecodeLatin1(const char* data, Py_ssize_t size, const char* errors)

__all__ = [
    "BODY",
    "CONTINUE",
    "HEAD",
    "IDLE",
    "LAST_CHUNK",
    "RequestReader",
    "encode_chunk",
    "encode_response",
    "encode_stream_head",
    "http_date",
    "parse_query",
    "split_target",
    "status_text",
    "widen_indent",
]

cdef enum:
    STACK_SIZE = 2048
    CACHE_MAX = 512

cdef enum:
    C_IDLE = 0
    C_HEAD = 1
    C_BODY = 2

IDLE = C_IDLE
HEAD = C_HEAD
BODY = C_BODY

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"

# Go's net/http StatusText table; clients and health checks print these texts.
cdef dict _STATUS_TEXTS = {
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",
    103: "Early Hints",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",
    208: "Already Reported",
    226: "IM Used",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request URI Too Long",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    417: "Expectation Failed",
    418: "I'm a teapot",
    421: "Misdirected Request",
    422: "Unprocessable Entity",
    423: "Locked",
    424: "Failed Dependency",
    425: "Too Early",
    426: "Upgrade Required",
    428: "Precondition Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    508: "Loop Detected",
    510: "Not Extended",
    511: "Network Authentication Required",
}

cdef dict _status_lines = {}
cdef dict _header_names = {}
cdef dict _methods = {}
cdef object _Request = Request
cdef object _UpgradeError = httptools.HttpParserUpgrade
cdef object _ParserError = httptools.HttpParserError

# RFC 9110 token characters: a response header name with anything else is dropped, as Go does.
cdef unsigned char _token[256]


cdef void _init_token_table() noexcept:
    cdef int c
    cdef const char* extra = b"!#$%&'*+-.^_`|~"
    for c in range(256):
        _token[c] = 0
    for c in range(ord("0"), ord("9") + 1):
        _token[c] = 1
    for c in range(ord("A"), ord("Z") + 1):
        _token[c] = 1
    for c in range(ord("a"), ord("z") + 1):
        _token[c] = 1
    while extra[0] != 0:
        _token[<unsigned char>extra[0]] = 1
        extra += 1


_init_token_table()


# ---------------------------------------------------------------- dates and status lines

cdef time_t _date_second = -1
cdef bytes _date_value = b""


cdef inline bytes _date():
    global _date_second, _date_value
    cdef time_t now = time(NULL)
    if now != _date_second:
        _date_value = formatdate(<double>now, usegmt=True).encode("ascii")
        _date_second = now
    return _date_value


def http_date() -> bytes:
    """The current IMF-fixdate, formatted at most once per second since every response needs it."""
    return _date()


def status_text(status: int) -> str:
    """The reason phrase Go sends; Go's fallback for codes it does not know."""
    text = _STATUS_TEXTS.get(status)
    return text if text is not None else f"status code {status}"


cdef bytes _status_line(object status, bint http10):
    cdef PyObject* cached
    if http10:
        return f"HTTP/1.0 {status} {status_text(status)}\r\n".encode("latin-1")
    cached = PyDict_GetItem(_status_lines, status)
    if cached != NULL:
        return <bytes><object>cached
    line = f"HTTP/1.1 {status} {status_text(status)}\r\n".encode("latin-1")
    if len(_status_lines) < CACHE_MAX:
        _status_lines[status] = line
    return line


# ---------------------------------------------------------------- percent decoding

cdef inline int _hex(unsigned char c) noexcept:
    if c >= 48 and c <= 57:
        return c - 48
    if c >= 65 and c <= 70:
        return c - 55
    if c >= 97 and c <= 102:
        return c - 87
    return -1


cdef Py_ssize_t _unescape(const char* src, Py_ssize_t n, char* dst, bint plus) noexcept:
    """Percent-decode src into dst (never longer); invalid escapes stay as sent, like urllib."""
    cdef Py_ssize_t i = 0, j = 0
    cdef unsigned char c
    cdef int hi, lo
    while i < n:
        c = <unsigned char>src[i]
        if c == 37 and i + 2 < n:  # '%'
            hi = _hex(<unsigned char>src[i + 1])
            lo = _hex(<unsigned char>src[i + 2])
            if hi >= 0 and lo >= 0:
                dst[j] = <char>(hi * 16 + lo)
                j += 1
                i += 3
                continue
        elif c == 43 and plus:  # '+'
            c = 32
        dst[j] = <char>c
        j += 1
        i += 1
    return j


cdef inline bint _needs_unescape(const char* s, Py_ssize_t n, bint plus) noexcept:
    if memchr(s, 37, n) != NULL:
        return True
    return plus and memchr(s, 43, n) != NULL


cdef inline object _decode(const char* s, Py_ssize_t n, bint plus, char* scratch):
    cdef Py_ssize_t m
    if not _needs_unescape(s, n, plus):
        return PyUnicode_DecodeUTF8(s, n, "replace")
    m = _unescape(s, n, scratch, plus)
    return PyUnicode_DecodeUTF8(scratch, m, "replace")


cdef dict _parse_query(const char* s, Py_ssize_t n, char* scratch):
    cdef dict result = {}
    cdef Py_ssize_t start = 0, end, name_end
    cdef const char* amp
    cdef const char* eq
    cdef PyObject* found
    while start <= n:
        amp = <const char*>memchr(s + start, 38, n - start)  # '&'
        end = (amp - s) if amp != NULL else n
        if end > start:
            eq = <const char*>memchr(s + start, 61, end - start)  # '='
            name_end = (eq - s) if eq != NULL else end
            name = _decode(s + start, name_end - start, True, scratch)
            if eq != NULL and end - name_end > 1:
                value = _decode(s + name_end + 1, end - name_end - 1, True, scratch)
            else:
                value = ""
            found = PyDict_GetItem(result, name)
            if found == NULL:
                PyDict_SetItem(result, name, [value])
            else:
                PyList_Append(<list><object>found, value)
        start = end + 1
    return result


cdef inline char* _scratch(Py_ssize_t n, char* stack) except NULL:
    if n <= STACK_SIZE:
        return stack
    cdef char* heap = <char*>PyMem_Malloc(n)
    if heap == NULL:
        raise MemoryError()
    return heap


def parse_query(query: bytes) -> dict:
    """Split a query string into decoded names mapped to their values in order.

    Consul reads flags by presence (`?recurse`), so a parameter without `=` keeps an empty value
    instead of being dropped; empty pieces between `&` are skipped as url.ParseQuery does.
    """
    cdef bytes raw = bytes(query)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef char stack[STACK_SIZE]
    cdef char* scratch = _scratch(n, stack)
    try:
        return _parse_query(PyBytes_AS_STRING(raw), n, scratch)
    finally:
        if scratch != stack:
            PyMem_Free(scratch)


cdef bytes _origin_form(bytes target):
    """The path-and-query of an absolute-form target such as `http://host/path?q`."""
    cdef Py_ssize_t scheme_end = target.find(b"://")
    if scheme_end <= 0:
        return target
    slash = target.find(b"/", scheme_end + 3)
    query_start = target.find(b"?", scheme_end + 3)
    if slash < 0 or 0 <= query_start < slash:
        return b"/" + target[query_start:] if query_start >= 0 else b"/"
    return target[slash:]


cdef tuple _split_target(bytes target):
    cdef const char* s
    cdef const char* mark
    cdef Py_ssize_t n, path_len, query_start, query_len = 0
    cdef char stack[STACK_SIZE]
    cdef char* scratch
    if PyBytes_GET_SIZE(target) == 0 or PyBytes_AS_STRING(target)[0] != 47:  # '/'
        target = _origin_form(target)
    s = PyBytes_AS_STRING(target)
    n = PyBytes_GET_SIZE(target)
    mark = <const char*>memchr(s, 63, n)  # '?'
    if mark != NULL:
        path_len = mark - s
        query_start = path_len + 1
        mark = <const char*>memchr(s + query_start, 35, n - query_start)  # '#'
        query_len = ((mark - s) if mark != NULL else n) - query_start
    else:
        mark = <const char*>memchr(s, 35, n)
        path_len = (mark - s) if mark != NULL else n
        query_start = n
    scratch = _scratch(n, stack)
    try:
        raw_path = PyUnicode_DecodeUTF8(s, path_len, "replace")
        if memchr(s, 37, path_len) != NULL:
            path = PyUnicode_DecodeUTF8(scratch, _unescape(s, path_len, scratch, False), "replace")
        else:
            path = raw_path
        query = _parse_query(s + query_start, query_len, scratch) if query_len > 0 else {}
    finally:
        if scratch != stack:
            PyMem_Free(scratch)
    return (path, raw_path, query)


def split_target(target: bytes) -> tuple:
    """Split a request target into (decoded path, path as sent, query).

    Absolute-form targets (`http://host/path`, sent through proxies) keep only their path, and a
    fragment, which clients should not send, is dropped.
    """
    return _split_target(bytes(target))


# ---------------------------------------------------------------- response encoding

cdef struct _Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t cap
    bint heap


cdef int _grow(_Buf* buf, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap = buf.cap * 2
    cdef char* data
    if cap < buf.size + extra:
        cap = buf.size + extra
    if buf.heap:
        data = <char*>PyMem_Realloc(buf.data, cap)
    else:
        data = <char*>PyMem_Malloc(cap)
        if data != NULL:
            memcpy(data, buf.data, buf.size)
    if data == NULL:
        raise MemoryError()
    buf.data = data
    buf.cap = cap
    buf.heap = True
    return 0


cdef inline int _put(_Buf* buf, const char* s, Py_ssize_t n) except -1:
    if buf.size + n > buf.cap:
        _grow(buf, n)
    memcpy(buf.data + buf.size, s, n)
    buf.size += n
    return 0


cdef inline int _put_bytes(_Buf* buf, bytes b) except -1:
    return _put(buf, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


cdef bint _valid_name(object name):
    cdef Py_ssize_t n, i
    cdef const char* s
    if not isinstance(name, str) or not PyUnicode_IS_ASCII(name):
        return False
    s = PyUnicode_AsUTF8AndSize(name, &n)
    if n == 0:
        return False
    for i in range(n):
        if not _token[<unsigned char>s[i]]:
            return False
    return True


cdef int _put_headers(_Buf* buf, object headers) except -1:
    cdef Py_ssize_t n, i, start
    cdef const char* s
    cdef char c
    if not isinstance(headers, (list, tuple)):
        headers = list(headers)
    for item in headers:
        if type(item) is tuple and PyTuple_GET_SIZE(item) == 2:
            name = <object>PyTuple_GET_ITEM(item, 0)
            value = <object>PyTuple_GET_ITEM(item, 1)
        else:
            name, value = item
        if not _valid_name(name):
            continue
        s = PyUnicode_AsUTF8AndSize(value, &n)
        _put(buf, PyUnicode_AsUTF8AndSize(name, &i), i)
        _put(buf, ": ", 2)
        start = buf.size
        _put(buf, s, n)
        for i in range(start, buf.size):
            c = buf.data[i]
            if c == 13 or c == 10:
                buf.data[i] = 32
        _put(buf, "\r\n", 2)
    return 0


cdef int _put_tail(_Buf* buf, bint keep_alive, bint http10) except -1:
    _put(buf, "Date: ", 6)
    _put_bytes(buf, _date())
    if not keep_alive:
        _put(buf, "\r\nConnection: close\r\n\r\n", 23)
    elif http10:
        _put(buf, "\r\nConnection: keep-alive\r\n\r\n", 28)
    else:
        _put(buf, "\r\n\r\n", 4)
    return 0


def encode_response(
    object status,
    object headers,
    object body,
    bint keep_alive,
    bint head=False,
    bint http10=False,
) -> bytes:
    """The bytes of a complete response: status line, headers, framing, Date, then the body.

    `head` leaves the body out but keeps its Content-Length (the answer to HEAD, or a head
    written before a large body that the caller sends on its own). 1xx, 204 and 304 answers
    carry neither a length nor a body, as in Go. `http10` answers in HTTP/1.0, where keep-alive
    must be said.
    """
    cdef char stack[STACK_SIZE]
    cdef char number[48]
    cdef _Buf buf
    cdef Py_ssize_t body_len, total
    cdef int code = status
    cdef bytes out
    cdef char* dst
    if type(body) is not bytes:
        body = bytes(body)
    body_len = PyBytes_GET_SIZE(body)
    buf.data = stack
    buf.size = 0
    buf.cap = STACK_SIZE
    buf.heap = False
    try:
        _put_bytes(&buf, _status_line(status, http10))
        _put_headers(&buf, headers)
        if (100 <= code < 200) or code == 204 or code == 304:
            body_len = 0
        else:
            _put(&buf, number, snprintf(number, sizeof(number),
                                        "Content-Length: %zd\r\n", body_len))
        _put_tail(&buf, keep_alive, http10)
        if head:
            body_len = 0
        total = buf.size + body_len
        out = PyBytes_FromStringAndSize(NULL, total)
        dst = PyBytes_AS_STRING(out)
        memcpy(dst, buf.data, buf.size)
        if body_len:
            memcpy(dst + buf.size, PyBytes_AS_STRING(body), body_len)
        return out
    finally:
        if buf.heap:
            PyMem_Free(buf.data)


def encode_stream_head(
    object status, object headers, bint keep_alive, bint http10=False
) -> bytes:
    """The head of a response whose body follows as chunks of unknown total length.

    HTTP/1.0 has no chunked coding: its body is delimited by closing the connection, so the
    caller must pass keep_alive=False and write the chunks unframed.
    """
    cdef char stack[STACK_SIZE]
    cdef _Buf buf
    buf.data = stack
    buf.size = 0
    buf.cap = STACK_SIZE
    buf.heap = False
    try:
        _put_bytes(&buf, _status_line(status, http10))
        _put_headers(&buf, headers)
        if not http10:
            _put(&buf, "Transfer-Encoding: chunked\r\n", 28)
        _put_tail(&buf, keep_alive, http10)
        return PyBytes_FromStringAndSize(buf.data, buf.size)
    finally:
        if buf.heap:
            PyMem_Free(buf.data)


def widen_indent(data: bytes) -> bytes:
    """Double the indentation at the start of every line (two-space JSON to Consul's four)."""
    cdef const char* src = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i = 0, extra = 0, j
    cdef bint line_start = True
    while i < n:
        if line_start:
            while i < n and src[i] == 32:
                extra += 1
                i += 1
            line_start = False
        elif src[i] == 10:
            line_start = True
            i += 1
        else:
            i += 1
    if extra == 0:
        return data
    out = PyBytes_FromStringAndSize(NULL, n + extra)
    cdef char* dst = PyBytes_AS_STRING(out)
    i = 0
    j = 0
    line_start = True
    while i < n:
        if line_start:
            while i < n and src[i] == 32:
                dst[j] = 32
                dst[j + 1] = 32
                j += 2
                i += 1
            line_start = False
        else:
            dst[j] = src[i]
            if src[i] == 10:
                line_start = True
            j += 1
            i += 1
    return out


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; empty data gives no bytes, since a zero chunk ends the body."""
    cdef bytes raw = data if type(data) is bytes else bytes(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef char size_line[24]
    cdef int k
    cdef bytes out
    cdef char* dst
    if n == 0:
        return b""
    k = snprintf(size_line, sizeof(size_line), "%zx\r\n", n)
    out = PyBytes_FromStringAndSize(NULL, k + n + 2)
    dst = PyBytes_AS_STRING(out)
    memcpy(dst, size_line, k)
    memcpy(dst + k, PyBytes_AS_STRING(raw), n)
    dst[k + n] = 13
    dst[k + n + 1] = 10
    return out


# ---------------------------------------------------------------- request reading

cdef str _header_name(bytes raw):
    cdef PyObject* cached = PyDict_GetItem(_header_names, raw)
    if cached != NULL:
        return <str><object>cached
    name = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), NULL).lower()
    if len(_header_names) < CACHE_MAX:
        _header_names[raw] = name
    return name


cdef str _method_name(bytes raw):
    cdef PyObject* cached = PyDict_GetItem(_methods, raw)
    if cached != NULL:
        return <str><object>cached
    method = raw.decode("ascii")
    _methods[raw] = method
    return method


cdef class RequestReader:
    """The httptools callback target of one connection: it queues each complete request.

    Each finished message is appended to `queue` as `(request, keep_alive)`; the protocol drains
    the queue after every `feed`. Limits are checked here, where the sizes are known, and surface
    from `feed` as `ConnectionLimit` (status 413, 417 or 431) or `HTTPParseError` (400); after
    either, or after a message that ends the connection, the reader ignores further bytes.

    :param queue: receives `(Request, keep_alive)` tuples in arrival order.
    :param remote: the peer address put on every request.
    :param body_limit: `(method, path) -> bytes allowed`, asked only for requests with a body.
    :param max_head: the most bytes a request head may take.
    """

    cdef object _queue
    cdef object _remote
    cdef object _body_limit
    cdef object _parser
    cdef Py_ssize_t _max_head
    cdef Py_ssize_t _head_bytes
    cdef Py_ssize_t _head_size
    cdef Py_ssize_t _body_size
    cdef Py_ssize_t _limit
    cdef bytes _url
    cdef dict _headers
    cdef list _body
    cdef bint _done
    cdef str _method
    cdef str _path
    cdef str _raw_path
    cdef dict _query
    cdef str _version
    cdef public int state
    cdef public Py_ssize_t messages
    cdef public bint expect_continue
    cdef public object rejected

    def __init__(self, queue, remote, body_limit, Py_ssize_t max_head):
        self._queue = queue
        self._remote = remote
        self._body_limit = body_limit
        self._max_head = max_head
        self._parser = httptools.HttpRequestParser(self)
        self._url = None
        self._headers = {}
        self._body = None
        self._body_size = 0
        self._limit = -1
        self._head_bytes = 0
        self._head_size = 0
        self._done = False
        self._method = ""
        self._path = ""
        self._raw_path = ""
        self._query = {}
        self._version = "1.1"
        self.state = C_IDLE
        self.messages = 0
        self.expect_continue = False
        self.rejected = None

    def feed(self, data) -> None:
        """Parse bytes from the socket; complete requests land in the queue."""
        parser = self._parser
        if self._done or parser is None:
            return
        if self.state != C_BODY:
            self._head_bytes += len(data)
        try:
            parser.feed_data(data)
        except _UpgradeError:
            # Protocol switches are not offered: answer what was asked, then close.
            self._done = True
            if self._queue:
                self._queue.append((self._queue.pop()[0], False))
            return
        except _ParserError as exc:
            if self._done:
                return  # bytes after a message that ends the connection are ignored
            self._done = True
            cause = exc.__context__
            if isinstance(cause, ProconsulError):
                raise cause from None
            raise HTTPParseError(str(exc) or "malformed request") from None
        if self.state != C_BODY and self._head_bytes > self._max_head:
            self._done = True
            raise ConnectionLimit("request header too large", 431)

    def close(self) -> None:
        """Drop the parser, which refers back to this reader, once the connection is gone."""
        self._parser = None
        self._done = True

    def on_url(self, bytes url) -> None:
        if self._url is None:
            self._url = url
            self._head_size = PyBytes_GET_SIZE(url)
            self.state = C_HEAD
            self.messages += 1
        else:
            self._url = self._url + url
            self._head_size += PyBytes_GET_SIZE(url)

    def on_header(self, bytes name, bytes value) -> None:
        cdef PyObject* previous
        if self.state != C_HEAD:
            return  # trailers of a chunked body are not kept
        self._head_size += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
        key = _header_name(name)
        text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), "replace")
        previous = PyDict_GetItem(self._headers, key)
        if previous == NULL:
            PyDict_SetItem(self._headers, key, text)
        else:
            PyDict_SetItem(self._headers, key, (<str><object>previous) + ", " + text)

    def on_headers_complete(self) -> None:
        cdef tuple parts
        cdef PyObject* length
        cdef PyObject* expect
        cdef bint chunked
        parser = self._parser
        self._head_bytes = 0
        if self._head_size > self._max_head:
            raise ConnectionLimit("request header too large", 431)
        method = self._method = _method_name(parser.get_method())
        version = self._version = parser.get_http_version()
        parts = _split_target(self._url if self._url is not None else b"/")
        self._path = <str>parts[0]
        self._raw_path = <str>parts[1]
        self._query = <dict>parts[2]
        headers = self._headers
        if version == "1.1" and PyDict_GetItem(headers, "host") == NULL:
            raise HTTPParseError("missing required Host header")
        self.state = C_BODY
        self._limit = -1
        length = PyDict_GetItem(headers, "content-length")
        chunked = PyDict_GetItem(headers, "transfer-encoding") != NULL
        if not chunked and (length == NULL or (<str><object>length) == "0"):
            return
        self._limit = self._body_limit(method, self._path)
        if not chunked and length != NULL:
            size = int(<str><object>length)
            if size > self._limit:
                self.rejected = (method, self._path, size, self._limit)
                raise ConnectionLimit("request body too large", 413)
        expect = PyDict_GetItem(headers, "expect")
        if expect != NULL and version == "1.1":
            if (<str><object>expect).lower() != "100-continue":
                raise ConnectionLimit("unsupported Expect header", 417)
            self.expect_continue = True

    def on_body(self, bytes body) -> None:
        self._body_size += PyBytes_GET_SIZE(body)
        if 0 <= self._limit < self._body_size:
            self.rejected = (self._method, self._path, -1, self._limit)
            raise ConnectionLimit("request body too large", 413)
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        cdef bint keep_alive = self._parser.should_keep_alive()
        if self._body is None:
            body = b""
        elif len(self._body) == 1:
            body = self._body[0]
        else:
            body = b"".join(self._body)
        request = _Request(
            self._method,
            self._path,
            self._raw_path,
            self._query,
            self._headers,
            body,
            self._remote,
            self._version,
        )
        self._queue.append((request, keep_alive))
        self._url = None
        self._headers = {}
        self._body = None
        self._body_size = 0
        self.state = C_IDLE
        self.expect_continue = False
        if not keep_alive:
            self._done = True
