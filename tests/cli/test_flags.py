"""Unit tests of the CLI plumbing: Go flag grammar, help layout, dispatch, output formatting,
and the watch loop's change detection (against a scripted client)."""

from __future__ import annotations

import json
import re
from email.message import Message

import pytest

from proconsul.cli import log
from proconsul.cli import main as cli_main
from proconsul.cli.api import Client, ClientConfig, Params, Response
from proconsul.cli.flags import (
    COMMAND_GROUP,
    HTTP_GROUP,
    FlagError,
    FlagSet,
    HelpRequested,
    format_duration,
    parse_args,
    parse_bool,
    parse_duration,
    wrap,
)
from proconsul.cli.kv import go_clean, go_join, go_json, pretty_pair, tabwrite
from proconsul.cli.members import address, columnize, standard_lines
from proconsul.cli.watch import (
    PlanError,
    TokenBucket,
    Watcher,
    event_index,
    exit_text,
    kv_pair_view,
    parse_plan,
)


class _Flags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.detailed = self.fs.bool_flag("detailed", False, "Detailed.")
        self.name = self.fs.str_flag("name", "", "A name.")
        self.n = self.fs.int_flag("n", 1, "A count.")
        self.flags = self.fs.uint_flag("flags", 0, "Flags.")
        self.timeout = self.fs.duration_flag("timeout", 0, "Wait.")
        self.tag = self.fs.list_flag("tag", "Tags.")


def test_value_forms() -> None:
    f = _Flags()
    rest = f.fs.parse(["-name=a", "--n", "3", "--flags=7", "-detailed", "-timeout", "1m30s",
                       "-tag", "x", "-tag=y", "key", "-notaflag"])
    assert rest == ["key", "-notaflag"]
    assert f.name.value == "a" and f.name.is_set
    assert f.n.value == 3
    assert f.flags.value == 7
    assert f.detailed.value is True
    assert f.timeout.value == 90_000_000_000
    assert f.tag.value == ["x", "y"]


def test_bool_needs_equals_for_false_and_value_may_start_with_dash() -> None:
    f = _Flags()
    assert f.fs.parse(["-detailed=false", "false"]) == ["false"]
    assert f.detailed.value is False
    f = _Flags()
    assert f.fs.parse(["-name", "-x"]) == []
    assert f.name.value == "-x"


def test_stops_at_double_dash_and_single_dash() -> None:
    fs = _Flags().fs
    assert fs.parse(["--", "-detailed"]) == ["-detailed"]
    assert fs.parse(["-", "x"]) == ["-", "x"]
    assert fs.parse([]) == []


@pytest.mark.parametrize(("args", "message"), [
    (["-x"], "flag provided but not defined: -x"),
    (["--nope=1"], "flag provided but not defined: -nope"),
    (["-name"], "flag needs an argument: -name"),
    (["-detailed=maybe"], 'invalid boolean value "maybe" for -detailed: parse error'),
    (["-n=abc"], 'invalid value "abc" for flag -n: parse error'),
    (["-flags=-1"], 'invalid value "-1" for flag -flags: parse error'),
    (["-timeout=5"], 'invalid value "5" for flag -timeout: parse error'),
    (["---x"], "bad flag syntax: ---x"),
    (["-=x"], "bad flag syntax: -=x"),
])
def test_errors_are_go_worded(args: list[str], message: str) -> None:
    with pytest.raises(FlagError) as info:
        _Flags().fs.parse(args)
    assert str(info.value) == message


def test_help_flag_inside_parser() -> None:
    with pytest.raises(HelpRequested):
        _Flags().fs.parse(["-h"])


def test_parse_args_reports_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(_Flags().fs, ["-bogus"]) is None
    err = capsys.readouterr().err
    assert err.startswith("flag provided but not defined: -bogus\nUsage:\n")
    assert "  -detailed\n    \tDetailed.\n" in err
    assert "  -n int\n    \tA count. (default 1)\n" in err
    assert "  -name string\n" in err


def test_alias_writes_target() -> None:
    fs = FlagSet()
    timeout = fs.duration_flag("timeout", 0, "Wait.")
    fs.alias("try", timeout, "DEPRECATED.")
    fs.parse(["-try=2s"])
    assert timeout.value == 2_000_000_000


def test_integer_bases() -> None:
    f = _Flags()
    f.fs.parse(["-flags=0x10", "-n=010"])
    assert f.flags.value == 16
    assert f.n.value == 8
    with pytest.raises(FlagError, match="value out of range"):
        _Flags().fs.parse([f"-flags={1 << 64}"])


def test_parse_bool() -> None:
    assert parse_bool("T") and parse_bool("1") and not parse_bool("False")
    with pytest.raises(ValueError):
        parse_bool("yes")


@pytest.mark.parametrize(("text", "ns"), [
    ("0", 0), ("15s", 15_000_000_000), ("1m30s", 90_000_000_000), ("500ms", 500_000_000),
    ("1.5h", 5_400_000_000_000), ("-2s", -2_000_000_000), ("3us", 3_000), ("3\u00b5s", 3_000),
    ("10ns", 10), (".5s", 500_000_000),
])
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(("text", "message"), [
    ("", 'time: invalid duration ""'),
    ("5", 'time: missing unit in duration "5"'),
    ("5x", 'time: unknown unit "x" in duration "5x"'),
    ("s", 'time: invalid duration "s"'),
])
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0s"), (5_000_000_000, "5s"), (90_000_000_000, "1m30s"), (1_500_000_000, "1.5s"),
    (3_600_000_000_000, "1h0m0s"), (500_000_000, "500ms"), (1_500, "1.5\u00b5s"), (7, "7ns"),
])
def test_format_duration(ns: int, text: str) -> None:
    assert format_duration(ns) == text


def test_usage_sections_and_wrapping() -> None:
    fs = FlagSet()
    fs.str_flag("http-addr", "", "The `address` and port of the agent.", HTTP_GROUP, "value")
    fs.bool_flag("recurse", False, "Recursively look at all keys prefixed with the given path. "
                 "The default value is false.", COMMAND_GROUP)
    text = fs.usage("\nUsage: consul kv get [options]\n")
    assert text == (
        "Usage: consul kv get [options]\n\n"
        "HTTP API Options\n\n"
        "  -http-addr=<address>\n"
        "     The `address` and port of the agent. ()\n\n"
        "Command Options\n\n"
        "  -recurse\n"
        "     Recursively look at all keys prefixed with the given path. The\n"
        "     default value is false. (false)"
    )


def test_wrap_limits_line_length() -> None:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    for line in wrap(words, 20).split("\n"):
        assert len(line) <= 20
    assert wrap(words, 200) == words


# ----------------------------------------------------------------------------------------------
# Dispatch


def test_no_args_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main([]) == 127
    text = capsys.readouterr().out
    assert text.startswith("Usage: consul [--version] [--help] <command> [<args>]\n\n"
                           "Available commands are:\n")
    # names are padded to the longest top-level command, then four spaces (mitchellh/cli)
    width = max(len(name) for name in cli_main.COMMANDS if " " not in name)
    assert f"    {'kv'.ljust(width)}    Interact with the key-value store\n" in text
    assert "kv get" not in text


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["frobnicate"]) == 127
    assert "Available commands are:" in capsys.readouterr().out


def test_help_and_version_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["--help"]) == 0
    assert "Available commands are:" in capsys.readouterr().out
    assert cli_main.main(["-v"]) == 0
    assert capsys.readouterr().out.startswith("Consul v")
    assert cli_main.main(["-bogus", "members"]) == 1
    assert capsys.readouterr().out.startswith("Invalid flags before the subcommand.")


def test_nested_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["kv", "get", "-h"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Usage: consul kv get [options] [KEY_OR_PREFIX]")
    assert "HTTP API Options" in text and "  -recurse\n" in text
    assert cli_main.main(["kv", "-help"]) == 0
    text = capsys.readouterr().out
    assert "Subcommands:\n    delete    Removes data from the KV store\n" in text
    assert cli_main.main(["kv"]) == 1
    assert "Subcommands:" in capsys.readouterr().err


def test_version_output(capsys: pytest.CaptureFixture[str]) -> None:
    import proconsul

    assert cli_main.main(["version"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == f"Consul v{proconsul.CONSUL_COMPAT_VERSION}"
    assert lines[1].startswith("Revision ")
    assert lines[2].startswith("Build Date ") and lines[2].endswith("Z")
    assert lines[3].startswith("Protocol 2 spoken by default, understands 2 to 3")
    assert cli_main.main(["version", "-format=json"]) == 0
    text = capsys.readouterr().out
    assert text.startswith('{\n   "Version": "') and '"RPC": {\n      "Default": 2' in text
    assert cli_main.main(["version", "-format=xml"]) == 1
    assert capsys.readouterr().err == "Unknown format: xml\n"


def test_flag_error_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["kv", "get", "-nope", "k"]) == 1
    assert capsys.readouterr().err.startswith("flag provided but not defined: -nope\n")


def test_kv_argument_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["kv", "get"]) == 1
    assert capsys.readouterr().err == "Error! Missing KEY argument\n"
    assert cli_main.main(["kv", "get", "a", "b"]) == 1
    assert capsys.readouterr().err == "Too many arguments (expected 1, got 2)\n"
    assert cli_main.main(["kv", "put", "-cas", "k", "v"]) == 1
    assert capsys.readouterr().err == "Must specify -modify-index with -cas!\n"
    assert cli_main.main(["kv", "put", "-acquire", "k"]) == 1
    assert "Missing -session" in capsys.readouterr().err
    assert cli_main.main(["kv", "delete", "-modify-index=3", "k"]) == 1
    assert capsys.readouterr().err == "Cannot specify -modify-index without -cas!\n"
    assert cli_main.main(["kv", "import"]) == 1
    assert capsys.readouterr().err == "Error! Missing DATA argument\n"
    assert cli_main.main(["lock", "prefix"]) == 1
    assert capsys.readouterr().err == "Key prefix and child command must be specified\n"
    assert cli_main.main(["lock", "-n=0", "p", "true"]) == 1
    assert capsys.readouterr().err == "Lock holder limit must be positive\n"
    assert cli_main.main(["watch"]) == 1
    assert capsys.readouterr().err.startswith("Watch type must be specified\n\n")
    assert cli_main.main(["validate"]) == 1
    assert capsys.readouterr().err == "Must specify at least one config file or directory\n"


# ----------------------------------------------------------------------------------------------
# Output formatting


def test_columnize() -> None:
    text = columnize(["Node\x1fAddress\x1fStatus", "n1\x1f10.0.0.1:8301\x1falive"])
    assert text == "Node  Address        Status\nn1    10.0.0.1:8301  alive"


def test_members_table_rows() -> None:
    member = {"Name": "s1", "Addr": "::1", "Port": 8301, "Status": 1,
              "Tags": {"role": "consul", "build": "1.17.0:abc", "vsn": "2", "dc": "dc1",
                       "ap": "default", "segment": "<all>"}}
    lines = standard_lines([member])
    assert lines[1].split("\x1f") == ["s1", "[::1]:8301", "alive", "server", "1.17.0", "2",
                                      "dc1", "default", "<all>"]
    assert address({"Addr": "nonsense", "Port": 1}) == ":1"
    odd = dict(member, Tags={"role": "other"})
    assert standard_lines([odd])[1].endswith("unknown\x1f\x1f\x1f\x1f\x1f")


def test_tabwriter_matches_detailed_layout() -> None:
    pair = {"CreateIndex": 5, "Flags": 0, "Key": "foo", "LockIndex": 0, "ModifyIndex": 7,
            "Session": "", "Value": "YmFy"}
    assert pretty_pair(pair, False).decode() == (
        "CreateIndex      5\n"
        "Flags            0\n"
        "Key              foo\n"
        "LockIndex        0\n"
        "ModifyIndex      7\n"
        "Session          -\n"
        "Value            bar")
    assert tabwrite("a\tb\tc\nxx\ty\nno tabs\nq\tr") == (
        "a       b      c\nxx      y\nno tabs\nq      r")


def test_go_paths_and_json() -> None:
    assert go_join("", "") == ""
    assert go_join("pre", "a//b/") == "pre/a/b"
    assert go_join("", ".lock") == ".lock"
    assert go_clean("/../a/./b/..") == "/a"
    assert go_json({"k": "<&>"}) == '{"k":"\\u003c\\u0026\\u003e"}'
    assert go_json([{"key": "a"}], indent="\t") == '[\n\t{\n\t\t"key": "a"\n\t}\n]'
    assert go_json([], indent="\t") == "[]"


def test_watch_plans() -> None:
    plan = parse_plan({"type": "key", "key": "a/b", "token": "t", "datacenter": "dc1"})
    assert plan.path == "/v1/kv/a/b" and plan.not_found_ok
    plan = parse_plan({"type": "keyprefix", "prefix": "a/", "stale": True})
    assert plan.params == [("recurse", "")] and plan.stale
    assert parse_plan({"type": "checks"}).path == "/v1/health/state/any"
    plan = parse_plan({"type": "service", "service": "web", "tag": ["a"], "passingonly": True})
    assert plan.params == [("tag", "a"), ("passing", "1")]
    for params, message in (
        ({"type": "key"}, "Must specify a single key to watch"),
        ({"type": "bogus"}, "Unsupported watch type: bogus"),
        ({"type": "key", "key": "k", "prefix": "p"}, "Invalid parameters: [prefix]"),
        ({"type": "checks", "service": "s", "state": "any"}, "Cannot specify service and state"),
        ({"type": "event", "stale": True}, "Invalid parameters: [stale]"),
    ):
        with pytest.raises(PlanError) as info:
            parse_plan(params)
        assert str(info.value) == message


def test_log_line_layout(capsys: pytest.CaptureFixture[str]) -> None:
    log("ERROR", "watch", "Watch errored", type="key", error='say "hi"', retry="5s")
    line = capsys.readouterr().err
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4}) \[ERROR\] watch: '
                        r'Watch errored: type=key error="say \\"hi\\"" retry=5s\n', line)


def test_watch_shapes() -> None:
    server = {"LockIndex": 0, "Key": "k", "Flags": 0, "Value": None, "CreateIndex": 3,
              "ModifyIndex": 4}
    assert list(kv_pair_view(server)) == ["Key", "CreateIndex", "ModifyIndex", "LockIndex",
                                          "Flags", "Value", "Session"]
    assert event_index("00000000-0000-0001-0000-000000000003") == 1 ^ 3
    assert exit_text(3) == "exit status 3"
    assert exit_text(-9) == "signal: killed"


class _ScriptedClient(Client):
    """Answers each blocking query from a script of (index, body) and records the index sent."""

    def __init__(self, script: list[tuple[int, object]]) -> None:
        super().__init__(ClientConfig())
        self.script = list(script)
        self.sent: list[int] = []

    def request(self, method: str, path: str, params: Params | None = None,
                body: bytes | None = None, timeout: float | None = None) -> Response:
        sent = dict(params or [])
        self.sent.append(int(sent.get("index", "0")))
        if not self.script:
            raise _Done()
        index, doc = self.script.pop(0)
        headers = Message()
        headers["X-Consul-Index"] = str(index)
        return Response(200, headers, json.dumps(doc).encode())


class _Done(Exception):
    pass


def _watch(kind: str, script: list[tuple[int, object]]) -> tuple[list[tuple[int, object]],
                                                                 list[int]]:
    client = _ScriptedClient(script)
    calls: list[tuple[int, object]] = []
    plan = parse_plan({"type": kind, "name": "e"} if kind == "event" else {"type": kind})
    def handler(index: int, result: object) -> bool:
        calls.append((index, result))
        return True

    watcher = Watcher(client, plan, handler)
    watcher.bucket = TokenBucket(rate=1e6, burst=1e6)
    with pytest.raises(_Done):
        watcher.run()
    return calls, client.sent


def test_watcher_fires_on_first_result_and_real_changes_only() -> None:
    calls, sent = _watch("services", [
        (5, {"a": []}),
        (5, {"a": []}),            # timeout: same index
        (6, {"a": []}),            # spurious wake-up: new index, same data
        (7, {"a": [], "b": []}),   # a change
        (3, {"a": [], "b": []}),   # index went backwards: reset, no call
        (4, {"c": []}),
    ])
    assert calls == [(5, {"a": []}), (7, {"a": [], "b": []}), (4, {"c": []})]
    assert sent == [0, 5, 5, 6, 7, 0, 4]


def test_watcher_prunes_seen_events() -> None:
    first = {"ID": "00000000-0000-0001-0000-000000000003", "Name": "e"}
    second = {"ID": "00000000-0000-0002-0000-000000000001", "Name": "e"}
    calls, sent = _watch("event", [(event_index(first["ID"]), [first]),
                                   (event_index(second["ID"]), [first, second])])
    assert calls == [(2, [first]), (3, [second])]
    assert sent == [0, 2, 3]
