"""`agent` flags follow Go's flag package, so Consul command lines parse the same way."""

from __future__ import annotations

import pytest

from proconsul.config.flags import AgentFlags, flag_names, parse_agent_flags
from proconsul.errors import ConfigError


def test_dash_styles_and_value_forms() -> None:
    flags = parse_agent_flags(
        ["-datacenter=dc2", "--node", "n1", "-http-port", "9000", "--dns-port=9600"])
    assert flags.values == {
        "datacenter": "dc2", "node_name": "n1", "ports": {"http": 9000, "dns": 9600},
    }


def test_bool_flags_take_no_value_but_accept_one() -> None:
    assert parse_agent_flags(["-dev"]).dev is True
    assert parse_agent_flags(["-dev=true"]).dev is True
    assert parse_agent_flags(["-dev=false"]).dev is False
    assert parse_agent_flags(["--dev=T"]).dev is True
    flags = parse_agent_flags(["-server", "-ui", "-bootstrap=0"])
    assert flags.values == {"server": True, "ui_config": {"enabled": True}, "bootstrap": False}


def test_bool_flag_does_not_consume_next_argument() -> None:
    with pytest.raises(ConfigError, match=r"Unknown extra arguments: \[false\]"):
        parse_agent_flags(["-dev", "false"])


def test_repeatable_flags_keep_order() -> None:
    flags = parse_agent_flags([
        "-retry-join=a", "-retry-join", "b", "-recursor=8.8.8.8", "-recursor=1.1.1.1",
        "-node-meta=rack:r1", "-node-meta", "zone:z:1", "-node-meta=bare",
        "-hcl", 'a = "1"', "-hcl=b = 2",
    ])
    assert flags.values["retry_join"] == ["a", "b"]
    assert flags.values["recursors"] == ["8.8.8.8", "1.1.1.1"]
    assert flags.values["node_meta"] == {"rack": "r1", "zone": "z:1", "bare": ""}
    assert flags.hcl == ('a = "1"', "b = 2")


def test_config_file_and_dir_interleave_in_command_line_order() -> None:
    flags = parse_agent_flags(
        ["-config-file=a.json", "-config-dir", "d1", "-config-file", "b.hcl", "-config-dir=d2"])
    assert flags.config_paths == ("a.json", "d1", "b.hcl", "d2")


def test_config_format_and_join_flags() -> None:
    flags = parse_agent_flags(["-config-format=hcl", "-join=x", "-join-wan=y"])
    assert flags.config_format == "hcl"
    assert flags.values == {"start_join": ["x"], "start_join_wan": ["y"]}


def test_value_may_start_with_dash() -> None:
    assert parse_agent_flags(["-node", "-weird"]).values == {"node_name": "-weird"}


def test_empty_value_with_equals() -> None:
    assert parse_agent_flags(["-datacenter="]).values == {"datacenter": ""}


def test_double_dash_stops_parsing() -> None:
    with pytest.raises(ConfigError, match=r"Unknown extra arguments: \[-server\]"):
        parse_agent_flags(["-dev", "--", "-server"])
    assert parse_agent_flags(["-dev", "--"]).dev is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-x"], "flag provided but not defined: -x"),
        (["--nope=1"], "flag provided but not defined: -nope"),
        (["-node"], "flag needs an argument: -node"),
        (["---server"], "bad flag syntax: ---server"),
        (["-=x"], "bad flag syntax: -=x"),
        (["-http-port=abc"],
         'invalid value "abc" for flag -http-port: strconv.Atoi: parsing "abc": invalid syntax'),
        (["-http-port", "1.5"],
         'invalid value "1.5" for flag -http-port: strconv.Atoi: parsing "1.5": invalid syntax'),
        (["-retry-max=99999999999999999999"],
         'invalid value "99999999999999999999" for flag -retry-max: strconv.Atoi: parsing '
         '"99999999999999999999": value out of range'),
        (["-dev=yes"],
         'invalid boolean value "yes" for -dev: strconv.ParseBool: parsing "yes": invalid syntax'),
        (["-dev", "extra", "args"], "config: Unknown extra arguments: [extra args]"),
    ],
)
def test_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_agent_flags(argv)
    assert str(err.value) == message


def test_help_stops_parsing() -> None:
    assert parse_agent_flags(["-dev", "-h", "-bogus"]) == AgentFlags(help=True)
    assert parse_agent_flags(["--help"]).help is True


def test_signed_integers() -> None:
    assert parse_agent_flags(["-https-port=-1"]).values == {"ports": {"https": -1}}
    assert parse_agent_flags(["-retry-max=+3"]).values == {"retry_max": 3}


def test_flag_names_lists_loading_flags() -> None:
    names = flag_names()
    assert {"dev", "config-file", "config-dir", "hcl", "retry-join", "node-meta"} <= set(names)
