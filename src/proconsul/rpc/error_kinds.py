"""Which exception a server's error string becomes on the client side.

net/rpc carries only an error's text, and Consul's HTTP layer (agent/http.go `wrap`) picks the
status from that text: "Permission denied" and "ACL not found" answer 403, the RPC rate limit
429, anything else 500. A client agent re-raises each remote error as the exception class that
the same failure raises on a server, so `APIApp` answers with the same status and body whether
the endpoint ran in-process or behind an RPC: "No cluster leader" becomes `NoLeader`, the
others an `HTTPError` of the status Consul gives that text, the text unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from proconsul.errors import Forbidden, HTTPError, NoLeader, RPCError
from proconsul.rpc.errors import ERR_NO_LEADER, RemoteError

#: acl.errPermissionDenied and acl.errNotFound, matched by substring as acl.IsErr* do
ERR_PERMISSION_DENIED = "Permission denied"
ERR_ACL_NOT_FOUND = "ACL not found"
#: the RPC rate limiter's refusal (Consul answers it with 429)
ERR_RATE_LIMITED = "rate limit exceeded"


class TooManyRequests(HTTPError):
    status = 429


#: (substring of the error text, the exception class it becomes), first match wins
KINDS: tuple[tuple[str, Callable[[str], HTTPError]], ...] = (
    (ERR_PERMISSION_DENIED, Forbidden),
    (ERR_ACL_NOT_FOUND, Forbidden),
    (ERR_RATE_LIMITED, TooManyRequests),
)


def from_remote(text: str) -> HTTPError:
    """The exception a server's error `text` stands for, its message the text unchanged: an
    RPCError (500) unless the text is one Consul answers otherwise."""
    if text == ERR_NO_LEADER:
        return NoLeader()
    for needle, make in KINDS:
        if needle in text:
            return make(text)
    return RemoteError(text)


def translate(err: RPCError) -> HTTPError:
    """A failed call's error as the HTTP layer should see it: remote errors by their text,
    transport failures (no servers, broken connections) as they are (500 with their text)."""
    if isinstance(err, RemoteError):
        return from_remote(str(err))
    return err
