"""Go `time.Duration` text, read and written exactly as Consul does.

Consul configuration stores every timeout as a Go duration string (`"10s"`, `"1m30s"`, `"72h"`),
and its HTTP API and logs print durations with `time.Duration.String()`. Matching Go's parser
keeps config files portable (the same inputs are accepted or refused, with the same messages),
and matching its formatter keeps output byte-identical for tools that compare it.
"""

from __future__ import annotations

from proconsul.errors import ConfigError

NANOSECOND = 1
MICROSECOND = 1000 * NANOSECOND
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

# Go accepts both the micro sign (U+00B5) and the Greek small mu (U+03BC) for microseconds.
_UNITS: dict[str, int] = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,
    "\u03bcs": MICROSECOND,
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}

_MAX_MAGNITUDE = 1 << 63  # int64 range: the negative side reaches one further than the positive


def go_quote(text: str) -> str:
    """Go's `%q` for the printable text found in config files and command lines."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _invalid(orig: str) -> ConfigError:
    return ConfigError(f"time: invalid duration {go_quote(orig)}")


def _leading_int(s: str) -> tuple[int, str, bool]:
    """Digits at the front of `s`; the flag reports int64 overflow, which Go treats as invalid."""
    value = 0
    i = 0
    while i < len(s) and "0" <= s[i] <= "9":
        value = value * 10 + (ord(s[i]) - 48)
        if value > _MAX_MAGNITUDE:
            return 0, s, False
        i += 1
    return value, s[i:], True


def _leading_fraction(s: str) -> tuple[int, float, str]:
    """Fraction digits after the dot; digits past int64 precision are consumed but ignored."""
    value = 0
    scale = 1.0
    overflow = False
    i = 0
    while i < len(s) and "0" <= s[i] <= "9":
        if not overflow:
            if value > (_MAX_MAGNITUDE - 1) // 10:
                overflow = True
            else:
                candidate = value * 10 + (ord(s[i]) - 48)
                if candidate > _MAX_MAGNITUDE:
                    overflow = True
                else:
                    value = candidate
                    scale *= 10
        i += 1
    return value, scale, s[i:]


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration into integer nanoseconds, refusing what `time.ParseDuration` refuses."""
    orig = text
    s = text
    negative = False
    if s and s[0] in "+-":
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise _invalid(orig)
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise _invalid(orig)
        before = len(s)
        whole, s, ok = _leading_int(s)
        if not ok:
            raise _invalid(orig)
        has_whole = before != len(s)
        frac, scale, has_frac = 0, 1.0, False
        if s.startswith("."):
            s = s[1:]
            before = len(s)
            frac, scale, s = _leading_fraction(s)
            has_frac = before != len(s)
        if not has_whole and not has_frac:
            raise _invalid(orig)
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise ConfigError(f"time: missing unit in duration {go_quote(orig)}")
        unit_name, s = s[:i], s[i:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise ConfigError(
                f"time: unknown unit {go_quote(unit_name)} in duration {go_quote(orig)}")
        if whole > _MAX_MAGNITUDE // unit:
            raise _invalid(orig)
        value = whole * unit
        if frac > 0:
            value += int(float(frac) * (float(unit) / scale))
            if value > _MAX_MAGNITUDE:
                raise _invalid(orig)
        total += value
        if total > _MAX_MAGNITUDE:
            raise _invalid(orig)
    if negative:
        return -total
    if total > _MAX_MAGNITUDE - 1:
        raise _invalid(orig)
    return total


def parse_duration(text: str) -> float:
    """Parse a Go duration into float seconds, the unit every RuntimeConfig timeout uses."""
    return parse_duration_ns(text) / SECOND


def _fraction_text(value: int, precision: int) -> tuple[str, int]:
    """Split `value` into the integer part and a trimmed decimal fraction of `precision` digits."""
    whole, rest = divmod(value, 10**precision)
    if rest == 0:
        return "", whole
    digits = str(rest).rjust(precision, "0").rstrip("0")
    return "." + digits, whole


def format_duration_ns(ns: int) -> str:
    """Write nanoseconds the way Go's `time.Duration.String()` does (`1m30s`, `500ms`, `0s`)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = -ns if ns < 0 else ns
    if u < SECOND:
        if u < MICROSECOND:
            return f"{sign}{u}ns"
        if u < MILLISECOND:
            frac, whole = _fraction_text(u, 3)
            return f"{sign}{whole}{frac}\u00b5s"
        frac, whole = _fraction_text(u, 6)
        return f"{sign}{whole}{frac}ms"
    frac, secs = _fraction_text(u, 9)
    text = f"{secs % 60}{frac}s"
    minutes = secs // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        hours = minutes // 60
        if hours:
            text = f"{hours}h{text}"
    return sign + text


def format_duration(seconds: float) -> str:
    """Write float seconds as Go would print the equivalent `time.Duration`."""
    return format_duration_ns(round(seconds * SECOND))
