"""Go-style flag parsing and Consul-style help text for the `proconsul` commands.

Consul's commands parse their arguments with Go's `flag` package, and scripts depend on its
grammar: one or two dashes, `-flag=value` or `-flag value`, bare booleans, parsing stops at the
first non-flag argument or at `--`.  Errors and help pages are worded the way Go and Consul word
them so that wrappers matching on those texts keep working.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

#: Help sections in Consul's usage pages; HTTP client flags are listed apart from the command's own.
HTTP_GROUP = "http"
COMMAND_GROUP = "command"


class FlagError(Exception):
    """A command line that Go's flag package would reject; the message is Go's wording."""


class HelpRequested(Exception):
    """`-h`/`-help` reached the parser itself (the dispatcher normally answers it first)."""


# ----------------------------------------------------------------------------------------------
# Go value syntaxes


_BOOL_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_BOOL_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(text: str) -> bool:
    """strconv.ParseBool: `-flag=T` and `CONSUL_HTTP_SSL=1` must mean what they mean in Go."""
    if text in _BOOL_TRUE:
        return True
    if text in _BOOL_FALSE:
        return False
    raise ValueError("parse error")


_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]+)")


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_duration(text: str) -> int:
    """time.ParseDuration in integer nanoseconds; the error texts are Go's."""
    orig = text
    if not text:
        raise ValueError(f"time: invalid duration {_go_quote(orig)}")
    sign = 1
    if text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f"time: invalid duration {_go_quote(orig)}")
    total = 0
    pos = 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            if re.fullmatch(r"[0-9.]+", text[pos:]):
                raise ValueError(f"time: missing unit in duration {_go_quote(orig)}")
            raise ValueError(f"time: invalid duration {_go_quote(orig)}")
        number, unit = m.group(1), m.group(2)
        if number in ("", "."):
            raise ValueError(f"time: invalid duration {_go_quote(orig)}")
        scale = _UNIT_NS.get(unit)
        if scale is None:
            raise ValueError(f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(orig)}")
        whole, _, frac = number.partition(".")
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // (10 ** len(frac))
        pos = m.end()
    if total > (1 << 63) - 1:
        raise ValueError(f"time: invalid duration {_go_quote(orig)}")
    return sign * total


def _fmt_frac(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    text = str(whole)
    if frac:
        text += "." + str(frac).rjust(digits, "0").rstrip("0")
    return text


def format_duration(ns: int) -> str:
    """time.Duration.String, used where Consul prints durations (help defaults, retry logs)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_fmt_frac(ns, 3)}\u00b5s"
    if ns < 1_000_000_000:
        return f"{sign}{_fmt_frac(ns, 6)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _fmt_frac(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _parse_int(text: str, bits: int, signed: bool) -> int:
    """strconv.ParseInt/ParseUint with base 0 (so `0x10`, `0o7` and `010` work as in Go)."""
    body = text
    try:
        if re.fullmatch(r"[+-]?0[0-7_]+", body):
            value = int(body.replace("_", ""), 8)
        else:
            value = int(body, 0)
    except ValueError:
        raise ValueError("parse error") from None
    low = -(1 << (bits - 1)) if signed else 0
    high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    if not signed and body.startswith("-"):
        raise ValueError("parse error")
    if not low <= value <= high:
        raise ValueError("value out of range")
    return value


# ----------------------------------------------------------------------------------------------
# Flags


@dataclass
class Flag(Generic[T]):
    """One named flag; `value` holds the parsed value, `is_set` whether the user gave it."""

    name: str
    value: T
    usage: str
    setter: Callable[[Flag[T], str], None]
    type_name: str
    is_bool: bool = False
    group: str = COMMAND_GROUP
    default_text: str = ""
    zero_text: str = ""
    quote_default: bool = False
    is_set: bool = False
    text: Callable[[Flag[T]], str] = field(default=lambda f: str(f.value))

    def set(self, raw: str) -> None:
        self.setter(self, raw)
        self.is_set = True


def _assign(convert: Callable[[str], T]) -> Callable[[Flag[T], str], None]:
    def setter(flag: Flag[T], raw: str) -> None:
        flag.value = convert(raw)

    return setter


class FlagSet:
    """Go's flag.FlagSet for one command: definitions, parsing, and both help layouts."""

    def __init__(self) -> None:
        self.flags: dict[str, Flag[object]] = {}

    def _add(self, flag: Flag[T]) -> Flag[T]:
        self.flags[flag.name] = flag  # type: ignore[assignment]
        return flag

    def bool_flag(self, name: str, default: bool, usage: str,
                  group: str = COMMAND_GROUP) -> Flag[bool]:
        return self._add(Flag(name, default, usage, _assign(parse_bool), "", True, group,
                              str(default).lower(), "false",
                              text=lambda f: str(f.value).lower()))

    def str_flag(self, name: str, default: str, usage: str, group: str = COMMAND_GROUP,
                 type_name: str = "string") -> Flag[str]:
        return self._add(Flag(name, default, usage, _assign(str), type_name, False, group,
                              default, "", quote_default=type_name == "string"))

    def int_flag(self, name: str, default: int, usage: str,
                 group: str = COMMAND_GROUP) -> Flag[int]:
        return self._add(Flag(name, default, usage, _assign(lambda s: _parse_int(s, 64, True)),
                              "int", False, group, str(default), "0"))

    def uint_flag(self, name: str, default: int, usage: str,
                  group: str = COMMAND_GROUP) -> Flag[int]:
        return self._add(Flag(name, default, usage, _assign(lambda s: _parse_int(s, 64, False)),
                              "uint", False, group, str(default), "0"))

    def duration_flag(self, name: str, default_ns: int, usage: str,
                      group: str = COMMAND_GROUP) -> Flag[int]:
        def convert(raw: str) -> int:
            try:
                return parse_duration(raw)
            except ValueError:
                raise ValueError("parse error") from None

        return self._add(Flag(name, default_ns, usage, _assign(convert), "duration", False, group,
                              format_duration(default_ns), "0s",
                              text=lambda f: format_duration(int(f.value))))

    def list_flag(self, name: str, usage: str, group: str = COMMAND_GROUP) -> Flag[list[str]]:
        def append(flag: Flag[list[str]], raw: str) -> None:
            flag.value = [*flag.value, raw]

        return self._add(Flag(name, [], usage, append, "value", False, group, "", "",
                              text=lambda f: ",".join(f.value)))

    def alias(self, name: str, target: Flag[T], usage: str) -> Flag[T]:
        """A second name writing into `target` (Consul keeps `-try` as a spelling of `-timeout`)."""

        def setter(_flag: Flag[T], raw: str) -> None:
            target.set(raw)

        return self._add(Flag(name, target.value, usage, setter, target.type_name, target.is_bool,
                              target.group, target.default_text, target.zero_text,
                              target.quote_default, text=lambda _f: target.text(target)))

    # ------------------------------------------------------------------------------------------

    def parse(self, args: Iterable[str]) -> list[str]:
        """Consume leading flags and return the remaining arguments, as flag.FlagSet.Parse does."""
        rest = list(args)
        while rest:
            arg = rest[0]
            if len(arg) < 2 or arg[0] != "-":
                break
            dashes = 1
            if arg[1] == "-":
                dashes = 2
                if len(arg) == 2:
                    rest.pop(0)
                    break
            name = arg[dashes:]
            if not name or name[0] in "-=":
                raise FlagError(f"bad flag syntax: {arg}")
            rest.pop(0)
            has_value = "=" in name
            value = ""
            if has_value:
                name, value = name.split("=", 1)
            flag = self.flags.get(name)
            if flag is None:
                if name in ("help", "h"):
                    raise HelpRequested()
                raise FlagError(f"flag provided but not defined: -{name}")
            if flag.is_bool:
                raw = value if has_value else "true"
                try:
                    flag.set(raw)
                except ValueError as exc:
                    raise FlagError(
                        f"invalid boolean value {_go_quote(raw)} for -{name}: {exc}") from None
                continue
            if not has_value:
                if not rest:
                    raise FlagError(f"flag needs an argument: -{name}")
                value = rest.pop(0)
            try:
                flag.set(value)
            except ValueError as exc:
                raise FlagError(
                    f"invalid value {_go_quote(value)} for flag -{name}: {exc}") from None
        return rest

    # ------------------------------------------------------------------------------------------

    def _sorted(self) -> list[Flag[object]]:
        return [self.flags[name] for name in sorted(self.flags)]

    @staticmethod
    def _unquote_usage(flag: Flag[object]) -> tuple[str, str]:
        """flag.UnquoteUsage: a back-quoted word in the usage names the value."""
        m = re.search(r"`([^`]*)`", flag.usage)
        if m:
            return m.group(1), flag.usage[: m.start()] + m.group(1) + flag.usage[m.end():]
        return ("" if flag.is_bool else flag.type_name), flag.usage

    def defaults(self) -> str:
        """flag.PrintDefaults, which Go prints after a parse error."""
        out: list[str] = []
        for flag in self._sorted():
            name, usage = self._unquote_usage(flag)
            line = f"  -{flag.name}"
            if name:
                line += " " + name
            line += "\t" if len(line) <= 4 else "\n    \t"
            line += usage.replace("\n", "\n    \t")
            if flag.default_text != flag.zero_text:
                shown = _go_quote(flag.default_text) if flag.quote_default else flag.default_text
                line += f" (default {shown})"
            out.append(line + "\n")
        return "".join(out)

    def parse_error_text(self, err: FlagError) -> str:
        """What Go's flag package writes to stderr for a rejected command line."""
        return f"{err}\nUsage:\n{self.defaults()}"

    def usage(self, text: str) -> str:
        """Consul's flags.Usage page: the command's text, then HTTP API and command options."""
        out = text.strip() + "\n\n"
        groups = {HTTP_GROUP: "HTTP API Options", COMMAND_GROUP: "Command Options"}
        for group, title in groups.items():
            members = [f for f in self._sorted() if f.group == group]
            if not members:
                continue
            out += title + "\n\n"
            for flag in members:
                example, _ = self._unquote_usage(flag)
                out += f"  -{flag.name}=<{example}>\n" if example else f"  -{flag.name}\n"
                body = f"{flag.usage} ({flag.text(flag)})"
                out += "\n".join(" " * 5 + line for line in wrap(body, 72 - 5).split("\n"))
                out += "\n\n"
        return out.rstrip("\n")


# ----------------------------------------------------------------------------------------------
# Text wrapping with minimal raggedness (the layout of Consul's help pages)


def wrap(text: str, limit: int) -> str:
    """Wrap words into lines of at most `limit` runes, minimising the squared slack."""
    words = text.strip().replace("\n", " ").split(" ")
    n = len(words)
    penalty = 100_000
    prefix = [0]
    for w in words:
        prefix.append(prefix[-1] + len(w))

    def length(i: int, j: int) -> int:
        return prefix[j + 1] - prefix[i] + (j - i)

    cost = [1 << 62] * n
    nbrk = [0] * n
    for i in range(n - 1, -1, -1):
        if length(i, n - 1) <= limit:
            cost[i] = 0
            nbrk[i] = n
            continue
        for j in range(i + 1, n):
            slack = limit - length(i, j - 1)
            c = slack * slack + cost[j]
            if length(i, j - 1) > limit:
                c += penalty
            if c < cost[i]:
                cost[i] = c
                nbrk[i] = j
    lines = []
    i = 0
    while i < n:
        lines.append(" ".join(words[i:nbrk[i]]))
        i = nbrk[i]
    return "\n".join(lines)


def parse_args(fs: FlagSet, argv: Iterable[str]) -> list[str] | None:
    """Parse a command's arguments, or print Go's complaint and return None (exit status 1)."""
    try:
        return fs.parse(argv)
    except FlagError as exc:
        sys.stderr.write(fs.parse_error_text(exc))
    except HelpRequested:
        sys.stderr.write("Usage:\n" + fs.defaults())
    sys.stderr.flush()
    return None
