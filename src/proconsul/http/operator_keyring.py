"""/v1/operator/keyring: list (GET), install (POST), use (PUT) and remove (DELETE) gossip
encryption keys across every pool (Consul's OperatorKeyringEndpoint in
agent/operator_endpoint.go).

The body of a change is Consul's `keyringArgs` (`{"Key": "<base64>"}`; `Token`, `RelayFactor`
and `LocalOnly` are accepted too), decoded as Go's encoding/json does with unknown fields
refused, so a misspelt field is a 400 rather than a silently empty key. `?relay-factor=` (0..5)
and `?local-only=` (listing only) override the body. Any pool that reports an error turns the
whole answer into a 500 whose text lists each failing pool and each member's message in
go-multierror's layout, which `consul keyring` prints as is.
"""

from __future__ import annotations

import json
import re
import string
from typing import Any, Protocol

from proconsul.errors import BadRequest, RPCError
from proconsul.http.app import APIApp
from proconsul.http.request import Request, Response

__all__ = ["KeyringBackend", "OperatorKeyringHandlers", "decode_keyring_args", "keyring_errors",
           "multierror_text"]

_OPS = {"GET": "list", "POST": "install", "PUT": "use", "DELETE": "remove"}
_INT64 = 1 << 63
_ATOI = re.compile(r"[+-]?[0-9]+")
_GO_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_GO_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


class KeyringBackend(Protocol):
    """The agent's keyring operator (agent/keyring_ops.py)."""

    async def operation(self, op: str, key: str = "", relay_factor: int = 0,
                        local_only: bool = False) -> list[dict[str, Any]]:
        """One entry per pool, shaped as Consul's KeyringResponse; errors inside entries."""
        ...


class KeyringArgs:
    __slots__ = ("key", "local_only", "relay_factor", "token")

    def __init__(self) -> None:
        self.key = ""
        self.token = ""
        self.relay_factor = 0
        self.local_only = False


# -- the body, as Go's json.Decoder with DisallowUnknownFields reads it -----------------------

class _Number(str):
    """A JSON number kept as written: Go quotes the literal when it does not fit."""


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs in document order."""


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


_CHAR_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                 "\v": "\\v", "\\": "\\\\", "'": "\\'"}


def _quote_char(ch: str) -> str:
    """Go's quoteChar for the character a syntax error points at."""
    if ch in _CHAR_ESCAPES:
        return f"'{_CHAR_ESCAPES[ch]}'"
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"'\\x{ord(ch):02x}'"
    return f"'{ch}'"


def _in_array(text: str, pos: int) -> bool:
    """Whether the innermost container open at `pos` is an array."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return bool(stack) and stack[-1] == "["


def _syntax_error(text: str, exc: json.JSONDecodeError) -> str:
    """Go's text for the common syntax errors (json.SyntaxError, or io.ErrUnexpectedEOF when the
    body ends inside a value)."""
    if exc.pos >= len(text.rstrip(" \t\r\n")) or exc.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    ch = _quote_char(text[exc.pos])
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {ch} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {ch} after object key"
    if exc.msg.startswith("Expecting ','"):
        where = "array element" if _in_array(text, exc.pos) else "object key:value pair"
        return f"invalid character {ch} after {where}"
    if exc.msg.startswith("Invalid control character"):
        return f"invalid character {ch} in string literal"
    if exc.msg.startswith("Invalid \\u"):  # Python points at the 'u', Go at the bad digit
        digits = text[exc.pos + 1:exc.pos + 5]
        bad = next((i for i, d in enumerate(digits) if d not in string.hexdigits), len(digits))
        if exc.pos + 1 + bad >= len(text):
            return "unexpected EOF"
        return (f"invalid character {_quote_char(text[exc.pos + 1 + bad])} in \\u hexadecimal "
                "character escape")
    if exc.msg.startswith("Invalid \\escape"):
        return f"invalid character {_quote_char(text[exc.pos + 1])} in string escape code"
    for literal in ("true", "false", "null"):
        if text[exc.pos] == literal[0]:
            return _literal_error(text, exc.pos, literal)
    return f"invalid character {ch} looking for beginning of value"


def _literal_error(text: str, pos: int, literal: str) -> str:
    """A misspelt true/false/null: Go names the first wrong character and the one expected."""
    for i, want in enumerate(literal):
        if pos + i >= len(text):
            return "unexpected EOF"
        if text[pos + i] != want:
            return (f"invalid character {_quote_char(text[pos + i])} in literal {literal} "
                    f"(expecting {_quote_char(want)})")
    return f"invalid character {_quote_char(text[pos])} looking for beginning of value"


#: What Go's scanner says on meeting each constant Python's decoder would accept.
_CONSTANT_ERRORS = {
    "NaN": "invalid character 'N' looking for beginning of value",
    "Infinity": "invalid character 'I' looking for beginning of value",
    "-Infinity": "invalid character 'I' in numeric literal",
}


def _kind(value: Any) -> str:
    """The JSON kind Go names in an UnmarshalTypeError."""
    if isinstance(value, _Number):
        return "number"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _Object):
        return "object"
    return "array"


def _mismatch(value: str, field: str, go_type: str) -> BadRequest:
    return BadRequest(f"Request decode failed: json: cannot unmarshal {value} into Go struct "
                      f"field keyringArgs.{field} of type {go_type}")


def decode_keyring_args(body: bytes, args: KeyringArgs) -> None:
    """Fill `args` from a request body, with Go's error texts (400 "Request decode failed:
    ..."). Only the first JSON value counts; what follows it is ignored, as Go's Decoder
    ignores it."""
    text = body.decode("utf-8", "replace")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise BadRequest("Request decode failed: EOF")
    constants: list[str] = []  # NaN and Infinity are not JSON to Go: the first one fails
    decoder = json.JSONDecoder(object_pairs_hook=_Object, parse_int=_Number,
                               parse_float=_Number, parse_constant=constants.append)
    try:
        doc, _ = decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        error = _CONSTANT_ERRORS[constants[0]] if constants else _syntax_error(text, exc)
        raise BadRequest(f"Request decode failed: {error}") from None
    if constants:
        raise BadRequest(f"Request decode failed: {_CONSTANT_ERRORS[constants[0]]}")
    if doc is None:
        return
    if not isinstance(doc, _Object):
        raise BadRequest(f"Request decode failed: json: cannot unmarshal {_kind(doc)} into Go "
                         "value of type agent.keyringArgs")
    for name, value in doc:
        field = name.lower()
        if field not in ("key", "token", "relayfactor", "localonly"):
            raise BadRequest(f"Request decode failed: json: unknown field {_go_quote(name)}")
        if value is None:
            continue
        if field in ("key", "token"):
            if not isinstance(value, str) or isinstance(value, _Number):
                raise _mismatch(_kind(value), "Key" if field == "key" else "Token", "string")
            setattr(args, field, str(value))
        elif field == "relayfactor":
            if not isinstance(value, _Number):
                raise _mismatch(_kind(value), "RelayFactor", "uint8")
            if not value.isdigit() or int(value) > 255:
                raise _mismatch(f"number {value}", "RelayFactor", "uint8")
            args.relay_factor = int(value)
        else:
            if not isinstance(value, bool):
                raise _mismatch(_kind(value), "LocalOnly", "bool")
            args.local_only = value


# -- query parameters ----------------------------------------------------------------------------

def _atoi(text: str) -> int:
    """strconv.Atoi, raising ValueError with Go's text."""
    if not _ATOI.fullmatch(text):
        raise ValueError(f"strconv.Atoi: parsing {_go_quote(text)}: invalid syntax")
    value = int(text)
    if not -_INT64 <= value < _INT64:
        raise ValueError(f"strconv.Atoi: parsing {_go_quote(text)}: value out of range")
    return value


def _parse_bool(text: str) -> bool:
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError(f"strconv.ParseBool: parsing {_go_quote(text)}: invalid syntax")


# -- errors ----------------------------------------------------------------------------------

def multierror_text(errors: list[str]) -> str:
    """go-multierror's ListFormatFunc."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {error}" for error in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


def keyring_errors(responses: list[dict[str, Any]]) -> str | None:
    """Consul's keyringErrorsOrNil: each failing pool, then each of its members' messages."""
    errors: list[str] = []
    for resp in responses:
        if not resp.get("Error"):
            continue
        pool = "WAN" if resp.get("WAN") else f"{resp.get('Datacenter', '')} (LAN)"
        segment, partition = resp.get("Segment") or "", resp.get("Partition") or ""
        if segment:
            pool += f" [segment: {segment}]"
        elif partition not in ("", "default"):
            pool += f" [partition: {partition}]"
        errors.append(f"{pool} error: {resp['Error']}")
        for node, message in (resp.get("Messages") or {}).items():
            errors.append(f"{node}: {message}")
    return multierror_text(errors) if errors else None


class OperatorKeyringHandlers:
    def __init__(self, app: APIApp, keyring: KeyringBackend) -> None:
        self.app = app
        self.keyring = keyring
        app.add("/v1/operator/keyring", ("GET", "POST", "PUT", "DELETE"), self.endpoint)

    async def endpoint(self, req: Request) -> Response:
        args = KeyringArgs()
        if req.method != "GET":
            decode_keyring_args(req.body, args)
        relay = req.arg("relay-factor")
        if relay:
            try:
                factor = _atoi(relay)
            except ValueError as exc:
                raise BadRequest(f"Error parsing relay factor: {exc}") from None
            if not 0 <= factor <= 5:
                raise BadRequest("Invalid relay-factor: Relay factor must be in range: [0, 5]")
            args.relay_factor = factor
        local = req.arg("local-only")
        if local:
            try:
                args.local_only = _parse_bool(local)
            except ValueError as exc:
                raise BadRequest(f"Error parsing local-only: {exc}") from None
            if args.local_only and req.method != "GET":
                raise BadRequest("Invalid use of local-only: local-only can only be set for "
                                 "list requests")
        responses = await self.keyring.operation(_OPS[req.method], args.key, args.relay_factor,
                                                 args.local_only)
        errors = keyring_errors(responses)
        if errors is not None:
            raise RPCError(errors)
        if req.method == "GET":
            return self.app.json(req, responses)
        return Response(200, b"", [])
