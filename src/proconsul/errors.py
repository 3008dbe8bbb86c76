"""Every exception the package raises on purpose, shared by pure and compiled twins.

HTTP maps these to Consul's status codes: the message of each is the exact body Consul sends.
"""


class ProconsulError(Exception):
    """Base of every error raised on purpose."""


class ConfigError(ProconsulError):
    """A configuration source is invalid; the message names the file and the key."""


class HTTPError(ProconsulError):
    """An error with an HTTP status; `str(err)` is the plain-text body Consul answers with."""

    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequest(HTTPError):
    status = 400


class NotFound(HTTPError):
    status = 404


class MethodNotAllowed(HTTPError):
    status = 405


class PayloadTooLarge(HTTPError):
    status = 413


class Forbidden(HTTPError):
    status = 403


class Unauthorized(HTTPError):
    status = 401


class RPCError(HTTPError):
    """An error from the server side of a request (Consul answers these with 500)."""

    status = 500


class NoLeader(RPCError):
    def __init__(self) -> None:
        super().__init__("No cluster leader")


class CommandError(ProconsulError):
    """An FSM command could not be decoded or has an unknown type byte."""


class HTTPParseError(ProconsulError):
    """A malformed HTTP request; the connection answers 400 and closes."""


class ConnectionLimit(ProconsulError):
    """A request exceeded a size or time limit; carries the status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class StateError(RPCError):
    """A write the state store refused (e.g. a lock with an unknown session)."""


class StorageError(ProconsulError):
    """Raft storage failed (I/O error, full disk); the write was not acknowledged."""


class DiskFull(StorageError):
    """No space left for the log or a snapshot; the store stays as it was before the write."""


class LogNotFound(StorageError):
    """The log entry asked for is not in the store (compacted or never written)."""


class LogCorruption(StorageError):
    """A log segment is damaged before its tail; the message names the segment and offset."""


class DataDirLocked(ProconsulError):
    """Another agent holds the data directory."""


class SnapshotError(ProconsulError):
    """A snapshot or snapshot archive is missing, damaged or does not match its checksums."""


class DNSFormatError(ValueError):
    """A DNS message that cannot be parsed; the server answers FORMERR (or drops it when not
    even the header is readable) and keeps serving."""


class RecurseError(ProconsulError):
    """One attempt at one DNS recursor failed (timeout, socket error); the next one is tried."""


class GossipError(ProconsulError):
    """A gossip message or stream that cannot be used; it is dropped and logged, never fatal."""


class GossipFormatError(GossipError, ValueError):
    """Bytes that do not decode as the memberlist or Serf message they claim to be."""


class GossipDecryptError(GossipError):
    """No key in the keyring opens the message (or it is plaintext where encryption is required)."""
