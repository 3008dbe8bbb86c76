"""Consul's `?filter=` boolean expressions (go-bexpr v0.1.2 dialect).

Endpoints compile the query parameter once with `compile_filter` and apply
the result to the top-level elements they are about to return: `select` for
JSON arrays, `select_map` for the agent's ID-keyed maps.  Every failure, at
parse time or when a value's type rejects an operator, is a FilterError: a
500 whose body is exactly what Consul sends, ``Failed to create boolean
expression evaluator: <detail>``.  Consul detects type mismatches when it
creates the evaluator, before touching data; lacking Go types, this package
detects them on the first value of the offending type, so an empty result
set can succeed where Consul would already have failed.

Compiled filters are cached because blocking queries repeat the same filter
string on every wake-up.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

from proconsul.errors import RPCError
from proconsul.filter.evaluate import EvaluationError, compile_regex, evaluate
from proconsul.filter.parser import And, Match, MatchOp, Node, Not, Or, ParseError, go_quote, parse

__all__ = ["Filter", "FilterError", "compile_filter"]

_PREFIX = "Failed to create boolean expression evaluator: "
_CACHE_SIZE = 256

T = TypeVar("T")
V = TypeVar("V")


class FilterError(RPCError):
    """An unusable filter; Consul answers these with 500, not 400 (#7338)."""

    def __init__(self, detail: str) -> None:
        super().__init__(_PREFIX + detail)
        self.detail = detail


def _matches_of(node: Node) -> Iterable[Match]:
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Match):
            yield current
        elif isinstance(current, Not):
            stack.append(current.operand)
        elif isinstance(current, And | Or):
            stack.extend((current.right, current.left))


class Filter:
    """A compiled expression; immutable, so one instance serves every request."""

    __slots__ = ("_regexes", "_root", "expression")

    def __init__(self, expression: str, root: Node, regexes: dict[int, re.Pattern[str]]) -> None:
        self.expression = expression
        self._root = root
        self._regexes = regexes

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether one API object passes; raises FilterError on type mismatches."""
        try:
            return evaluate(self._root, obj, self._regexes)
        except EvaluationError as err:
            raise FilterError(str(err))
        except RecursionError:
            raise FilterError("expression nesting is too deep")

    def select(self, items: Iterable[T]) -> list[T]:
        """Keep the elements of a JSON array response that pass, in order."""
        return [item for item in items if self.matches(item)]  # type: ignore[arg-type]

    def select_map(self, d: Mapping[str, V]) -> dict[str, V]:
        """Filter an ID-keyed map by its values, as /v1/agent/services does."""
        return {key: value for key, value in d.items() if self.matches(value)}  # type: ignore[arg-type]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(expr: str, fields: frozenset[str] | None) -> Filter:
    try:
        root = parse(expr)
    except ParseError as err:
        raise FilterError(str(err))
    except RecursionError:
        raise FilterError("expression nesting is too deep")
    regexes: dict[int, re.Pattern[str]] = {}
    for match in _matches_of(root):
        if fields is not None and match.selector[0] not in fields:
            raise FilterError(f"Selector {go_quote(match.selector[0])} is not valid")
        if match.op in (MatchOp.MATCHES, MatchOp.NOT_MATCHES):
            assert match.value is not None
            try:
                regexes[id(match)] = compile_regex(match.value)
            except EvaluationError as err:
                raise FilterError(str(err))
    return Filter(expr, root, regexes)


def compile_filter(expr: str, fields: Collection[str] | None = None) -> Filter:
    """Parse and validate `expr`; `fields` lists the endpoint's top-level selectors.

    Without `fields` any selector is accepted and resolves to "missing" when
    absent; with it, an unknown first segment fails like Consul's validation.
    """
    return _compile(expr, None if fields is None else frozenset(fields))
