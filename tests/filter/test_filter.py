"""Filter expressions: grammar, go-bexpr semantics on API JSON, and error text."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proconsul.errors import RPCError
from proconsul.filter import FilterError, compile_filter
from proconsul.filter.parser import And, Match, MatchOp, Not, Or, parse

PREFIX = "Failed to create boolean expression evaluator: "

AGENT_SERVICE: dict[str, Any] = {
    "ID": "web1",
    "Service": "web",
    "Tags": ["primary", "v1"],
    "Meta": {"env": "prod", "team.name": "core"},
    "Port": 8080,
    "Address": "10.0.0.1",
    "Weights": {"Passing": 1, "Warning": 1},
    "EnableTagOverride": False,
    "TaggedAddresses": None,
}

HEALTH_ENTRY: dict[str, Any] = {
    "Node": {"Node": "n1", "Meta": {"rack": "r1"}},
    "Service": {"Service": "api-gw", "Port": 9000, "Tags": []},
    "Checks": [
        {"CheckID": "serfHealth", "Status": "passing"},
        {"CheckID": "service:api", "Status": "critical"},
    ],
}


def ok(expr: str, obj: dict[str, Any]) -> bool:
    return compile_filter(expr).matches(obj)


def leaf(expr: str) -> Match:
    tree = parse(expr)
    assert isinstance(tree, Match)
    return tree


def err(expr: str) -> str:
    with pytest.raises(FilterError) as info:
        compile_filter(expr)
    message = str(info.value)
    assert message.startswith(PREFIX)
    return message[len(PREFIX):]


# -- the reference examples ------------------------------------------------------


def test_reference_examples() -> None:
    assert ok("Service == web", AGENT_SERVICE)
    assert ok('"primary" in Tags', AGENT_SERVICE)
    assert ok('Meta.env == "prod"', AGENT_SERVICE)
    assert ok("Checks.Status != passing", HEALTH_ENTRY)
    assert ok('Service.Service matches "^api-"', HEALTH_ENTRY)
    assert ok('ServiceName matches "^api-"', {"ServiceName": "api-internal"})
    assert not ok('ServiceName matches "^api-"', {"ServiceName": "web-api-"})


def test_greater_than_is_a_parse_error() -> None:
    # go-bexpr has only ==/!= for numbers; `>` fails where the operator is expected.
    detail = err('Node.Meta["rack"] == "r1" and Service.Port > 8000')
    assert detail == (
        '1:44 (43): no match found, expected: "!=", "==", "contains", "in", "is", '
        '"matches", "not" or [ \\t\\r\\n]'
    )
    assert ok('Node.Meta["rack"] == "r1" and Service.Port == 9000', HEALTH_ENTRY)


# -- grammar -----------------------------------------------------------------------


def test_precedence_and_binds_tighter_than_or() -> None:
    tree = parse("a == 1 and not b is empty or c is not empty")
    assert tree == Or(
        And(Match(("a",), MatchOp.EQUAL, "1"), Not(Match(("b",), MatchOp.IS_EMPTY, None))),
        Match(("c",), MatchOp.IS_NOT_EMPTY, None),
    )
    obj = {"a": "2", "b": "", "c": "x"}
    assert ok("a == 1 and b is empty or c is not empty", obj)
    assert not ok("a == 1 and (b is empty or c is not empty)", obj)


def test_double_not_collapses_and_parentheses_nest() -> None:
    assert parse("not not a == 1") == Match(("a",), MatchOp.EQUAL, "1")
    assert parse("((((((((((((((((((((a==1))))))))))))))))))))") == Match(
        ("a",), MatchOp.EQUAL, "1"
    )
    assert parse(" ( a == 1 ) ") == Match(("a",), MatchOp.EQUAL, "1")


def test_contains_folds_into_in() -> None:
    assert parse("Tags contains v1") == Match(("Tags",), MatchOp.IN, "v1")
    assert parse("Tags not contains v1") == Match(("Tags",), MatchOp.NOT_IN, "v1")
    assert parse('"v1" not in Tags') == Match(("Tags",), MatchOp.NOT_IN, "v1")


def test_quoting_forms() -> None:
    assert leaf('a == "x\\ty\\u00e9"').value == "x\ty\u00e9"
    assert leaf("a == `x\\ty`").value == "x\\ty"
    assert leaf("a == -1.5").value == "-1.5"
    assert leaf("a == b.c").value == "b.c"
    assert leaf('a == b["c d"]').value == "b.c d"
    assert leaf('Meta["team.name"] == core').selector == (
        "Meta", "team.name"
    )
    assert leaf("Meta[ `k` ].x == 1").selector == ("Meta", "k", "x")
    assert ok('Meta["team.name"] == core', AGENT_SERVICE)


def test_bare_values_are_selectors_only() -> None:
    # Identifiers are [a-zA-Z][a-zA-Z0-9_]*: hyphens and dotted IPs need quotes.
    assert err("Service == my-svc").startswith("1:14 (13): no match found")
    assert err("Address == 10.0.0.1") == '1:16 (15): rule "number": Invalid number literal'
    assert ok('Address == "10.0.0.1"', AGENT_SERVICE)


def test_word_operators_need_whitespace() -> None:
    assert err("not(a == 1)") == (
        '1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \\t\\r\\n] or [a-zA-Z0-9_]'
    )
    assert parse("a==1") == Match(("a",), MatchOp.EQUAL, "1")


# -- error text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "detail"),
    [
        ("Service = web", '1:9 (8): no match found, expected: "!=", "==", "contains", '
                          '"in", "is", "matches", "not" or [ \\t\\r\\n]'),
        ("", '1:1 (0): no match found, expected: "(", "-", "0", "\\"", "`", "not", '
             "[ \\t\\r\\n], [1-9] or [a-zA-Z]"),
        ("a\n== b c", '2:6 (7): no match found, expected: "and", "or", [ \\t\\r\\n] or EOF'),
        ("Port == 80x", '1:11 (10): rule "number": Invalid number literal'),
        ("(a == 1", '1:8 (7): rule "grouping": Unmatched parentheses'),
        ('a in "x"', '1:6 (5): rule "match": Invalid selector'),
        ('Meta["a" == 1', '1:10 (9): rule "index": Unclosed index expression'),
        ("Meta[1] == 1", '1:6 (5): rule "index": Invalid index'),
        ('a == "abc', '1:10 (9): rule "string": Unterminated string literal'),
        ('a == "\\q"', '1:6 (5): rule "string": invalid syntax'),
        ('a matches "("', 'Failed to compile regular expression "(": error parsing regexp: '
                          "missing ), unterminated subpattern at position 0"),
    ],
)
def test_error_text(expr: str, detail: str) -> None:
    assert err(expr) == detail


def test_filter_error_is_a_500() -> None:
    with pytest.raises(RPCError) as info:
        compile_filter("Service ==")
    assert info.value.status == 500
    assert isinstance(info.value, FilterError)


def test_unknown_selector_root_with_fields() -> None:
    fields = {"ID", "Service", "Tags", "Meta", "Port"}
    assert compile_filter("Meta.env == prod", fields).matches(AGENT_SERVICE)
    with pytest.raises(FilterError) as info:
        compile_filter("Nope == 1", fields)
    assert str(info.value) == PREFIX + 'Selector "Nope" is not valid'
    assert not compile_filter("Nope == 1").matches(AGENT_SERVICE)


# -- semantics ---------------------------------------------------------------------


def test_collections_match_any_element_for_every_operator() -> None:
    assert ok("Checks.Status == passing", HEALTH_ENTRY)
    assert ok("Checks.Status == critical", HEALTH_ENTRY)
    assert ok("Checks.Status != passing", HEALTH_ENTRY)
    assert not ok("not Checks.Status == passing", HEALTH_ENTRY)
    all_passing = {"Checks": [{"Status": "passing"}, {"Status": "passing"}]}
    assert not ok("Checks.Status != passing", all_passing)
    assert ok("not Checks.Status != passing", all_passing)
    assert not ok("Checks.Status != passing", {"Checks": []})
    assert ok("Checks is not empty", HEALTH_ENTRY)
    assert ok("Checks is empty", {"Checks": None})


def test_in_on_lists_maps_and_strings() -> None:
    assert ok("primary in Tags", AGENT_SERVICE)
    assert not ok("secondary in Tags", AGENT_SERVICE)
    assert ok("secondary not in Tags", AGENT_SERVICE)
    assert ok("env in Meta", AGENT_SERVICE)
    assert not ok("prod in Meta", AGENT_SERVICE)
    assert ok("Service contains we", AGENT_SERVICE)
    assert ok('"0.0" in Address', AGENT_SERVICE)
    assert ok("2 in Ports", {"Ports": [1, 2]})


def test_missing_keys() -> None:
    for expr, expected in [
        ("Meta.zone == x", False), ("Meta.zone != x", True),
        ("Meta.zone is empty", True), ("Meta.zone is not empty", False),
        ("x in Meta.zone", False), ("x not in Meta.zone", True),
        ('Meta.zone matches "x"', True), ('Meta.zone not matches "x"', True),
        ("TaggedAddresses.lan == x", False), ("TaggedAddresses is empty", True),
    ]:
        assert ok(expr, AGENT_SERVICE) is expected, expr


def test_is_empty() -> None:
    assert ok("Service.Tags is empty", HEALTH_ENTRY)
    assert ok("Tags is not empty", AGENT_SERVICE)
    assert ok("Meta is not empty", AGENT_SERVICE)
    assert ok('Empty is empty', {"Empty": ""})


def test_numeric_and_bool_coercion() -> None:
    assert ok("Port == 8080", AGENT_SERVICE)
    assert ok('Port == "0x1f90"', AGENT_SERVICE)
    assert ok("Port != 80", AGENT_SERVICE)
    assert ok("Weights.Passing == 1", AGENT_SERVICE)
    assert ok("EnableTagOverride == false", AGENT_SERVICE)
    assert ok("EnableTagOverride == F", AGENT_SERVICE)
    assert not ok("EnableTagOverride == true", AGENT_SERVICE)
    assert ok("Ratio == 0.5", {"Ratio": 0.5})
    with pytest.raises(FilterError) as info:
        ok("Port == abc", AGENT_SERVICE)
    assert str(info.value) == PREFIX + (
        'Failed to coerce value "abc" for selector "Port": '
        'strconv.ParseInt: parsing "abc": invalid syntax'
    )
    with pytest.raises(FilterError):
        ok("EnableTagOverride == yes", AGENT_SERVICE)


def test_operators_rejected_by_type() -> None:
    with pytest.raises(FilterError) as info:
        ok("Tags == primary", AGENT_SERVICE)
    assert str(info.value) == PREFIX + 'Invalid match operator "Equal" for selector "Tags"'
    with pytest.raises(FilterError):
        ok("Port contains 8", AGENT_SERVICE)
    with pytest.raises(FilterError):
        ok('Port matches "8"', AGENT_SERVICE)
    with pytest.raises(FilterError):
        ok("Port is empty", AGENT_SERVICE)


def test_short_circuit_hides_errors_in_untaken_branches() -> None:
    assert ok("Service == web or Tags == x", AGENT_SERVICE)
    assert not ok("Service == db and Tags == x", AGENT_SERVICE)


def test_select_and_select_map() -> None:
    flt = compile_filter("Meta.env == prod")
    other = dict(AGENT_SERVICE, ID="web2", Meta={"env": "qa"})
    assert flt.select([AGENT_SERVICE, other]) == [AGENT_SERVICE]
    assert flt.select_map({"web1": AGENT_SERVICE, "web2": other}) == {"web1": AGENT_SERVICE}


def test_long_filters_parse() -> None:
    expr = " or ".join(f'Meta.k{i} == "v{i}"' for i in range(1000))
    assert ok(expr, {"Meta": {"k999": "v999"}})
    assert not ok(expr, {"Meta": {}})


def test_compiled_filters_are_cached() -> None:
    assert compile_filter("Service == web") is compile_filter("Service == web")
    assert compile_filter("Service == web", ["Service"]) is compile_filter(
        "Service == web", ("Service",)
    )


# -- robustness --------------------------------------------------------------------


_ALPHABET = st.sampled_from([
    *"abcABC019 ._-\"`\\[]()!=\n\t",
    "and", "or", "not", "in", "is", "empty", "contains", "matches", "==", "!=", "\u00e9",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=30).map("".join))
def test_fuzz_grammar_tokens_only_raise_filter_error(expr: str) -> None:
    try:
        flt = compile_filter(expr)
    except FilterError:
        return
    try:
        flt.matches({"a": "x", "b": [1, {"c": True}], "A": {"k": None}})
    except FilterError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_fuzz_random_text_only_raises_filter_error(expr: str) -> None:
    try:
        compile_filter(expr).matches(AGENT_SERVICE)
    except FilterError:
        pass
