"""What a call over the RPC port can fail with.

Callers decide on retries by class: `ConnectFailed` means nothing reached the server (safe to
try another one, for writes too), `CallFailed` means the connection broke mid-call (only reads
may be repeated), `RemoteError` carries the server's own error string unchanged, because
Consul's clients compare those strings ("No cluster leader").
"""

from __future__ import annotations

from proconsul.errors import ProconsulError, RPCError

#: structs.ErrNoLeader's text; matched by substring as Consul's IsErrNoLeader does
ERR_NO_LEADER = "No cluster leader"
#: structs.ErrNoServers
ERR_NO_SERVERS = "No known Consul servers"


class YamuxError(ProconsulError):
    """A yamux session or stream failure; the text is hashicorp/yamux's for the same case."""


class SessionShutdown(YamuxError):
    def __init__(self, message: str = "session shutdown") -> None:
        super().__init__(message)


class SessionEOF(SessionShutdown):
    """The peer closed the connection under the session."""

    def __init__(self) -> None:
        super().__init__("EOF")


class RemoteGoAway(YamuxError):
    def __init__(self) -> None:
        super().__init__("remote end is not accepting connections")


class ConnectionReset(YamuxError):
    def __init__(self) -> None:
        super().__init__("connection reset")


class StreamClosed(YamuxError):
    def __init__(self) -> None:
        super().__init__("stream closed")


class StreamsExhausted(YamuxError):
    def __init__(self) -> None:
        super().__init__("streams exhausted")


class YamuxTimeout(YamuxError):
    def __init__(self) -> None:
        super().__init__("i/o deadline reached")


class ConnectionWriteTimeout(YamuxError):
    def __init__(self) -> None:
        super().__init__("connection write timeout")


class KeepAliveTimeout(YamuxError):
    def __init__(self) -> None:
        super().__init__("keepalive timeout")


class YamuxProtocolError(YamuxError):
    """The peer broke the framing rules; the session answers with a protocol-error GoAway."""


class CodecError(ProconsulError):
    """Bytes on an RPC stream that are not a net/rpc msgpack header and body."""


class RemoteError(RPCError):
    """The server answered the call with an error; `str()` is its Error string unchanged."""


class ConnectFailed(RPCError):
    """No stream to the server could be had: nothing of the call was sent."""


class CallFailed(RPCError):
    """The connection failed while the call was under way; the server may have acted on it."""


class RPCTimeout(CallFailed):
    """The caller's deadline passed before the answer arrived."""


class NoServers(RPCError):
    def __init__(self) -> None:
        super().__init__(ERR_NO_SERVERS)


def is_no_leader(err: BaseException) -> bool:
    return ERR_NO_LEADER in str(err)
