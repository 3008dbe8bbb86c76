"""Go duration parsing and printing must match `time.ParseDuration` and `Duration.String()`."""

from __future__ import annotations

import pytest

from proconsul.config.duration import (
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)
from proconsul.errors import ConfigError

MS = 1_000_000
S = 1000 * MS


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("0s", 0),
        ("10s", 10 * S),
        ("1m30s", 90 * S),
        ("500ms", 500 * MS),
        ("1.5h", 5400 * S),
        ("0.001s", 1 * MS),
        ("72h", 72 * 3600 * S),
        ("1h2m3.5s", 3723 * S + 500 * MS),
        ("-1.5s", -1500 * MS),
        ("+3ms", 3 * MS),
        ("1ns", 1),
        ("1us", 1000),
        ("1\u00b5s", 1000),
        ("1\u03bcs", 1000),
        (".5s", 500 * MS),
        ("5.s", 5 * S),
        ("1h1h", 2 * 3600 * S),
        ("9223372036854775807ns", 9223372036854775807),
        ("-9223372036854775808ns", -9223372036854775808),
        ("0.000000001s", 1),
        ("1.0000000001s", S),  # digits past nanosecond precision are dropped, as in Go
    ],
)
def test_parse(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("abc", 'time: invalid duration "abc"'),
        ("s", 'time: invalid duration "s"'),
        ("-", 'time: invalid duration "-"'),
        (".s", 'time: invalid duration ".s"'),
        ("10", 'time: missing unit in duration "10"'),
        ("1.2.3s", 'time: missing unit in duration "1.2.3s"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("1 s", 'time: unknown unit " s" in duration "1 s"'),
        ("10S", 'time: unknown unit "S" in duration "10S"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_duration_ns(text)
    assert str(err.value) == message


def test_parse_seconds() -> None:
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("0.001s") == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1500, "1.5\u00b5s"),
        (500 * MS, "500ms"),
        (1 * MS + 500_000, "1.5ms"),
        (15 * S, "15s"),
        (90 * S, "1m30s"),
        (60 * S, "1m0s"),
        (3600 * S, "1h0m0s"),
        (72 * 3600 * S, "72h0m0s"),
        (3723 * S + 500 * MS, "1h2m3.5s"),
        (-1500 * MS, "-1.5s"),
        (9223372036854775807, "2562047h47m16.854775807s"),
    ],
)
def test_format(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text


@pytest.mark.parametrize("text", ["15s", "1m30s", "500ms", "0s", "72h0m0s", "1h2m3.5s", "2ms"])
def test_format_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
