"""Reading files and directories, and checking one source against the key table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proconsul.config.source import Source, decode, load_files, parse_text, read_file
from proconsul.errors import ConfigError


def _write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _decode(data: dict[str, Any], name: str = "/etc/consul.d/a.json") -> dict[str, Any]:
    return decode(Source(name, data)).data


def _decode_error(data: dict[str, Any], name: str = "/etc/consul.d/a.json") -> str:
    with pytest.raises(ConfigError) as err:
        decode(Source(name, data))
    return str(err.value)


# -- reading


def test_parse_json_and_hcl() -> None:
    assert parse_text("a.json", '{"datacenter": "dc2"}', "json") == Source(
        "a.json", {"datacenter": "dc2"}, "json")
    src = parse_text("a.hcl", 'datacenter = "dc2"\nports { http = 1 }', "hcl")
    assert src is not None
    assert src.data == {"datacenter": "dc2", "ports": {"http": 1}}


def test_empty_text_is_skipped() -> None:
    assert parse_text("a.json", "", "json") is None


@pytest.mark.parametrize(("text", "fmt"), [('{"a": }', "json"), ("a = ", "hcl"),
                                           ('a = "x', "hcl")])
def test_syntax_errors_name_the_file(text: str, fmt: str) -> None:
    with pytest.raises(ConfigError, match=r"^failed to parse /etc/x\.conf: "):
        parse_text("/etc/x.conf", text, fmt)


def test_json_top_level_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="cannot unmarshal array"):
        parse_text("a.json", "[1]", "json")


def test_directory_is_sorted_flat_and_filtered(tmp_path: Path) -> None:
    _write(tmp_path, "b.hcl", 'node_name = "b"')
    _write(tmp_path, "a.json", '{"node_name": "a"}')
    _write(tmp_path, "c.txt", "not config")
    _write(tmp_path, "empty.json", "")
    sub = tmp_path / "sub"
    sub.mkdir()
    _write(sub, "z.json", '{"node_name": "z"}')
    warnings: list[str] = []
    sources = load_files([str(tmp_path)], warnings=warnings)
    assert [Path(s.name).name for s in sources] == ["a.json", "b.hcl"]
    assert all(s.from_file for s in sources)
    assert warnings == [f"skipping file {tmp_path / 'c.txt'}, extension must be .hcl or .json, "
                        "or config format must be set"]


def test_config_format_reads_every_file(tmp_path: Path) -> None:
    _write(tmp_path, "a.conf", 'node_name = "a"')
    sources = load_files([str(tmp_path)], config_format="hcl")
    assert [s.data for s in sources] == [{"node_name": "a"}]


def test_paths_keep_command_line_order(tmp_path: Path) -> None:
    first = _write(tmp_path, "z.json", '{"node_name": "z"}')
    second = _write(tmp_path, "a.json", '{"node_name": "a"}')
    assert [s.name for s in load_files([first, second])] == [first, second]


def test_single_file_with_unknown_extension_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.conf", "{}")
    with pytest.raises(ConfigError, match=r"has unknown extension; must be \.hcl or \.json"):
        load_files([path])


def test_missing_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(ConfigError) as err:
        load_files([missing])
    assert str(err.value) == (
        f"config: Open failed on {missing}. open {missing}: no such file or directory")


def test_bad_config_format() -> None:
    with pytest.raises(ConfigError, match="-config-format must be either 'hcl' or 'json'"):
        load_files([], config_format="yaml")


def test_read_file_marks_file_sources(tmp_path: Path) -> None:
    src = read_file(_write(tmp_path, "a.hcl", 'server = true'))
    assert src is not None and src.from_file and src.data == {"server": True}


# -- checking against the key table


def test_unknown_keys_name_file_and_key() -> None:
    message = _decode_error({"foo": 1, "ports": {"bar": 2}})
    assert message == ("failed to parse /etc/consul.d/a.json: 2 errors occurred:\n"
                       "\t* invalid config key foo\n\t* invalid config key ports.bar\n\n")


def test_single_unknown_key_uses_consul_wording() -> None:
    assert _decode_error({"foo": 1}) == (
        "failed to parse /etc/consul.d/a.json: 1 error occurred:\n"
        "\t* invalid config key foo\n\n")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"ports": {"http": "abc"}},
         "'ports.http' expected type 'int', got unconvertible type 'string', value: 'abc'"),
        ({"server": "true"}, "'server' expected type 'bool', got unconvertible type 'string'"),
        ({"bootstrap_expect": 1.5},
         "'bootstrap_expect' expected type 'int', got unconvertible type 'float64'"),
        ({"retry_join": "1.2.3.4"},
         "'retry_join': source data must be an array or slice, got string"),
        ({"retry_join": ["a", 2]}, "'retry_join[1]' expected type 'string'"),
        ({"ports": 8500}, "'ports' expected a map, got 'int'"),
        ({"node_meta": {"a": 1}}, "'node_meta[a]' expected type 'string'"),
        ({"session_ttl_min": "10x"},
         'session_ttl_min: invalid duration: "10x": time: unknown unit "x" in duration "10x"'),
        ({"ports": {"http": 70000}}, "ports.http: invalid port: 70000"),
        ({"limits": {"kv_max_value_size": -1}},
         "cannot parse 'limits.kv_max_value_size', -1 overflows uint"),
        ({"log_level": "loud"}, 'log_level: invalid log level: "loud"'),
        ({"dns_config": {"recursor_strategy": "fast"}},
         'dns_config.recursor_strategy: invalid strategy: "fast"'),
        ({"acl": {"default_policy": "maybe"}},
         'acl.default_policy: invalid default policy: "maybe"'),
        ({"services": [{"name": "a", "port": "80"}]}, "'services[0].port' expected type 'int'"),
        ({"service": {"name": "a", "check": {"interval": "bad"}}},
         'service.check.interval: invalid duration: "bad"'),
        ({"service": [{"name": "a"}, {"name": "b", "bogus": 1}]},
         "invalid config key service[1].bogus"),
    ],
)
def test_bad_values_name_file_and_key(data: dict[str, Any], fragment: str) -> None:
    message = _decode_error(data)
    assert message.startswith("failed to parse /etc/consul.d/a.json: 1 error occurred:")
    assert fragment in message


def test_all_problems_reported_together() -> None:
    message = _decode_error({"foo": 1, "server": "yes", "retry_interval": "x"})
    assert "3 errors occurred" in message


def test_integral_floats_and_null_values_are_accepted() -> None:
    assert _decode({"ports": {"http": 8500.0}, "datacenter": None}) == {"ports": {"http": 8500}}


def test_keys_match_case_insensitively_and_by_alias() -> None:
    data = _decode({"Datacenter": "dc1", "Service": {"Name": "web", "Check": {
        "ScriptArgs": ["x"], "ServiceID": "web", "TLSSkipVerify": True}}})
    assert data == {"datacenter": "dc1", "services": [{"name": "web", "checks": [
        {"args": ["x"], "service_id": "web", "tls_skip_verify": True}]}]}


def test_singular_service_and_check_fold_into_lists() -> None:
    data = _decode({"services": [{"name": "a"}], "service": {"name": "b"},
                    "check": {"id": "c"}, "checks": [{"id": "d"}]})
    assert data["services"] == [{"name": "a"}, {"name": "b"}]
    assert data["checks"] == [{"id": "d"}, {"id": "c"}]


def test_repeated_hcl_blocks_are_normalised() -> None:
    src = parse_text("a.hcl", """
service { name = "a" }
service {
  name = "b"
  meta { x = "1" }
  meta { y = "2" }
  check { ttl = "10s" }
  check { tcp = "localhost:1" interval = "5s" }
}
config_entries { bootstrap { kind = "proxy-defaults" name = "global" } }
""", "hcl")
    assert src is not None
    data = decode(src).data
    assert data["services"] == [
        {"name": "a"},
        {"name": "b", "meta": {"x": "1", "y": "2"},
         "checks": [{"ttl": "10s"}, {"tcp": "localhost:1", "interval": "5s"}]},
    ]
    assert data["config_entries"] == {
        "bootstrap": [{"kind": "proxy-defaults", "name": "global"}]}


def test_repeated_section_blocks_merge() -> None:
    src = parse_text("a.hcl", "ports { http = 1 }\nports { dns = 2 }\nnode_name = \"a\"\n"
                     "node_name = \"b\"", "hcl")
    assert src is not None
    assert decode(src).data == {"ports": {"http": 1, "dns": 2}, "node_name": "b"}


def test_single_element_list_unwraps_for_sections_and_scalars() -> None:
    assert _decode({"ports": [{"http": 1}], "datacenter": ["dc9"]}) == {
        "ports": {"http": 1}, "datacenter": "dc9"}


def test_full_service_shape_is_accepted() -> None:
    service = {
        "id": "web-1", "name": "web", "tags": ["v1"], "address": "10.0.0.1", "port": 8080,
        "meta": {"env": "prod"}, "enable_tag_override": True,
        "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 8080}},
        "weights": {"passing": 3, "warning": 1}, "token": "t",
        "checks": [{"http": "http://localhost:8080/health", "interval": "10s", "timeout": "1s",
                    "header": {"X-A": ["b"]}, "success_before_passing": 2,
                    "deregister_critical_service_after": "90m", "h2ping_use_tls": True}],
        "connect": {"sidecar_service": {"port": 21000, "proxy": {"upstreams": [
            {"destination_name": "db", "local_bind_port": 9191, "config": {"any": [1]}}]}}},
    }
    assert _decode({"services": [service]})["services"] == [service]


@pytest.mark.parametrize(
    ("data", "expected", "warning"),
    [
        ({"acl_master_token": "m"}, {"acl": {"tokens": {"initial_management": "m"}}},
         "The 'acl_master_token' field is deprecated. Use the "
         "'acl.tokens.initial_management' field instead."),
        ({"acl": {"tokens": {"master": "m"}}}, {"acl": {"tokens": {"initial_management": "m"}}},
         "The 'acl.tokens.master' field is deprecated. Use the "
         "'acl.tokens.initial_management' field instead."),
        ({"acl_token": "t"}, {"acl": {"tokens": {"default": "t"}}},
         "The 'acl_token' field is deprecated. Use the 'acl.tokens.default' field instead."),
        ({"acl_datacenter": "dc0"}, {"primary_datacenter": "dc0", "acl": {"enabled": True}},
         "The 'acl_datacenter' field is deprecated."),
        ({"start_join": ["x"], "retry_join": ["y"]}, {"retry_join": ["y", "x"]},
         "The 'start_join' field is deprecated. Use the 'retry_join' field instead."),
        ({"ui": True}, {"ui_config": {"enabled": True}}, "The 'ui' field is deprecated."),
        ({"verify_incoming": True},
         {"tls": {"defaults": {"verify_incoming": True}, "grpc": {"verify_incoming": False}}},
         "Use the 'tls.defaults.verify_incoming' field instead."),
        ({"tls_min_version": "tls12"}, {"tls": {"defaults": {"tls_min_version": "TLSv1_2"}}},
         "'tls_min_version' value 'tls12' is deprecated, please specify 'TLSv1_2' instead"),
    ],
)
def test_deprecated_keys_move_with_warning(
    data: dict[str, Any], expected: dict[str, Any], warning: str
) -> None:
    decoded = decode(Source("a.json", data))
    assert decoded.data == expected
    assert any(warning in w for w in decoded.warnings)


def test_new_spelling_in_same_source_wins_over_deprecated() -> None:
    data = _decode({"acl_master_token": "old", "acl": {"tokens": {"initial_management": "new"}}})
    assert data == {"acl": {"tokens": {"initial_management": "new"}}}


def test_ignored_keys_only_warn() -> None:
    decoded = decode(Source("a.json", {"acl_enforce_version_8": True}))
    assert decoded.data == {}
    assert decoded.warnings == [
        'config key "acl_enforce_version_8" is deprecated and should be removed']


def test_enterprise_keys_warn() -> None:
    decoded = decode(Source("a.json", {"segment": "alpha", "non_voting_server": True}))
    assert decoded.data == {"segment": "alpha", "read_replica": True}
    assert decoded.warnings == [
        '"segment" is a Consul Enterprise configuration and will have no effect',
        '"read_replica" is a Consul Enterprise configuration and will have no effect',
    ]
