"""Evaluation of parsed filter expressions against API-shaped JSON values.

Consul evaluates filters with go-bexpr v0.1.2 by reflection over Go structs;
this package sees the same objects as the dicts and lists the HTTP layer is
about to encode, so Go's static types are recovered from the Python value
found at the end of a selector:

* ``bool`` fields coerce the literal with Go's ``strconv.ParseBool``;
  ``int`` fields with ``ParseInt(s, 0, 64)`` (so ``"0x1f"`` works when quoted);
  ``float`` with ``ParseFloat``; strings compare verbatim.  A literal that does
  not coerce is the same error Consul gives at evaluator creation, raised here
  when the first value of that type is met.
* Walking through a list before the selector ends fans out and is satisfied
  by ANY element, for every operator, negated ones included: on a health
  ServiceEntry ``Checks.Status != passing`` selects entries with at least one
  non-passing check, and ``not Checks.Status == passing`` those with none
  passing.  An empty list never matches.
* A key missing from a mapping (or a null mapping) answers False for ``==``,
  ``in``, ``contains`` and ``is not empty`` and True for every other operator,
  ``matches`` included; this is go-bexpr's map rule, applied here to absent
  struct fields too, since omitted JSON fields are the empty value in Consul.
* ``in``/``contains`` test element membership on lists, key membership on
  mappings and substring on strings; ``is empty`` tests length.
* Operators Consul's per-type validation forbids (``==`` on a list or map,
  ``contains`` on a number, ``matches`` on a bool, ...) raise FilterError
  with go-bexpr's validation text.

Regexes use Python's ``re`` with ``search`` semantics (Go's ``Match`` is
unanchored too); RE2-only syntax such as ``\\z`` or ``[[:alpha:]]`` is
reported as a compile error rather than accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from proconsul.filter.parser import And, Match, MatchOp, Node, Not, Or, go_quote


class EvaluationError(Exception):
    """A validation failure Consul would report; carries go-bexpr's text."""


_MISSING_FALSE = frozenset({MatchOp.EQUAL, MatchOp.IS_NOT_EMPTY, MatchOp.IN})
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_INT_CHARS = frozenset("0123456789abcdefABCDEF_")


def _selector_text(selector: tuple[str, ...]) -> str:
    return go_quote(".".join(selector))


def _go_int(raw: str) -> int:
    """strconv.ParseInt(raw, 0, 64): sign, base prefixes, underscores only with a prefix."""
    fail = f'strconv.ParseInt: parsing {go_quote(raw)}: invalid syntax'
    text = raw
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    lower = text.lower()
    base = 10
    if lower.startswith(("0x", "0b", "0o")):
        base = {"x": 16, "b": 2, "o": 8}[lower[1]]
        text = "0" + text[2:] if text[2:3] == "_" else text[2:]
    elif len(text) > 1 and text.startswith("0"):
        base = 8
    well_formed = (
        text != ""
        and all(ch in _INT_CHARS for ch in text)
        and "__" not in text
        and not text.endswith("_")
        and not text.startswith("_")
    )
    if not well_formed:
        raise EvaluationError(fail)
    try:
        value = sign * int(text.replace("_", ""), base)
    except ValueError:
        raise EvaluationError(fail)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise EvaluationError(f"strconv.ParseInt: parsing {go_quote(raw)}: value out of range")
    return value


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _go_bool(raw: str) -> bool:
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise EvaluationError(f"strconv.ParseBool: parsing {go_quote(raw)}: invalid syntax")


_FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)",
                    re.IGNORECASE)


def _go_float(raw: str) -> float:
    if not _FLOAT.fullmatch(raw):
        raise EvaluationError(f"strconv.ParseFloat: parsing {go_quote(raw)}: invalid syntax")
    value = float(raw)
    if math.isinf(value) and "inf" not in raw.lower():
        raise EvaluationError(f"strconv.ParseFloat: parsing {go_quote(raw)}: value out of range")
    return value


def _coerce(raw: str, sample: Any, selector: tuple[str, ...]) -> Any:
    """Convert the literal to the type of `sample`, as Consul's field config does."""
    try:
        if isinstance(sample, bool):
            return _go_bool(raw)
        if isinstance(sample, int):
            return _go_int(raw)
        if isinstance(sample, float):
            return _go_float(raw)
    except EvaluationError as err:
        raise EvaluationError(
            f"Failed to coerce value {go_quote(raw)} for selector {_selector_text(selector)}: {err}"
        )
    return raw


def _bad_op(op: MatchOp, selector: tuple[str, ...]) -> EvaluationError:
    return EvaluationError(
        f"Invalid match operator {go_quote(op.value)} for selector {_selector_text(selector)}"
    )


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str)


def _equal(match: Match, value: Any) -> bool:
    if value is None:
        return False
    if not _is_scalar(value):
        raise _bad_op(match.op, match.selector)
    assert match.value is not None
    return bool(_coerce(match.value, value, match.selector) == value)


def _contains(match: Match, value: Any) -> bool:
    assert match.value is not None
    if value is None:
        return False
    if isinstance(value, str):
        return match.value in value
    if isinstance(value, Mapping):
        return match.value in value
    if isinstance(value, list):
        for item in value:
            if item is None:
                continue
            if not _is_scalar(item):
                raise _bad_op(match.op, match.selector)
            if _coerce(match.value, item, match.selector) == item:
                return True
        return False
    raise _bad_op(match.op, match.selector)


def _empty(match: Match, value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str | list | Mapping):
        return len(value) == 0
    raise _bad_op(match.op, match.selector)


def _leaf(match: Match, value: Any, regex: re.Pattern[str] | None) -> bool:
    op = match.op
    if op is MatchOp.EQUAL:
        return _equal(match, value)
    if op is MatchOp.NOT_EQUAL:
        return not _equal(match, value)
    if op is MatchOp.IN:
        return _contains(match, value)
    if op is MatchOp.NOT_IN:
        return not _contains(match, value)
    if op is MatchOp.IS_EMPTY:
        return _empty(match, value)
    if op is MatchOp.IS_NOT_EMPTY:
        return not _empty(match, value)
    if value is None:
        found = False
    elif isinstance(value, str):
        assert regex is not None
        found = regex.search(value) is not None
    else:
        raise _bad_op(op, match.selector)
    return found if op is MatchOp.MATCHES else not found


def _walk(match: Match, depth: int, value: Any, regex: re.Pattern[str] | None) -> bool:
    if depth >= len(match.selector):
        return _leaf(match, value, regex)
    if isinstance(value, list):
        return any(_walk(match, depth, item, regex) for item in value)
    if value is None or isinstance(value, Mapping):
        key = match.selector[depth]
        if value is None or key not in value:
            return match.op not in _MISSING_FALSE
        return _walk(match, depth + 1, value[key], regex)
    raise EvaluationError(
        f"Value at selector {_selector_text(match.selector[:depth])} with type "
        f"{_go_kind(value)} does not support nested field selection"
    )


def _go_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    return "string"


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile at creation time, as go-bexpr's validation does."""
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as err:
        raise EvaluationError(
            f"Failed to compile regular expression {go_quote(pattern)}: error parsing regexp: {err}"
        )


def evaluate(node: Node, obj: Any, regexes: Mapping[int, re.Pattern[str]]) -> bool:
    """Short-circuit like go-bexpr so errors in an untaken branch stay silent.

    `regexes` maps id() of each `matches` node to its compiled pattern.
    """
    while True:
        if isinstance(node, Match):
            return _walk(node, 0, obj, regexes.get(id(node)))
        if isinstance(node, Not):
            return not evaluate(node.operand, obj, regexes)
        if isinstance(node, And):
            if not evaluate(node.left, obj, regexes):
                return False
            node = node.right
            continue
        if isinstance(node, Or):
            if evaluate(node.left, obj, regexes):
                return True
            node = node.right
            continue
        raise EvaluationError("Invalid AST node")
