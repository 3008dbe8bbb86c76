"""Merging sources in Consul's order and resolving them into a RuntimeConfig."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from proconsul.config import (
    AgentFlags,
    HostInfo,
    RuntimeConfig,
    build,
    load,
    parse_agent_flags,
    reload,
    validate_paths,
)
from proconsul.errors import ConfigError

HOST = HostInfo(hostname=lambda: "node-a", private_ipv4=lambda: ["10.1.2.3"],
                public_ipv6=lambda: [])


def _write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    path = tmp_path / "data"
    path.mkdir()
    return str(path)


def _load(argv: list[str], host: HostInfo = HOST) -> tuple[RuntimeConfig, list[str]]:
    return load(argv, host=host)


def _error(argv: list[str], host: HostInfo = HOST) -> str:
    with pytest.raises(ConfigError) as err:
        load(argv, host=host)
    return str(err.value)


# -- precedence and merging


def test_directory_merge_appends_lists_merges_maps_overrides_scalars(
        tmp_path: Path, data_dir: str) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    _write(conf, "10-base.json", """{
        "datacenter": "east", "log_level": "info", "retry_join": ["a"],
        "node_meta": {"rack": "r1", "zone": "z1"}, "ports": {"http": 9000},
        "http_config": {"response_headers": {"X-One": "1"}}
    }""")
    _write(conf, "20-more.hcl", """
        log_level = "warn"
        retry_join = ["b"]
        node_meta { zone = "z2" }
        ports { dns = 9600 }
        http_config { response_headers { "X-Two" = "2" } }
    """)
    cfg, _ = _load(["-config-dir", str(conf), "-data-dir", data_dir])
    assert cfg.datacenter == "east"
    assert cfg.log_level == "WARN"
    assert cfg.retry_join == ("a", "b")
    assert cfg.node_meta == {"rack": "r1", "zone": "z2"}
    assert (cfg.ports.http, cfg.ports.dns) == (9000, 9600)
    assert cfg.http_config.response_headers == {"X-One": "1", "X-Two": "2"}
    assert cfg.sources == (str(conf / "10-base.json"), str(conf / "20-more.hcl"))


def test_files_merge_in_command_line_order(tmp_path: Path, data_dir: str) -> None:
    later = _write(tmp_path, "a.json", '{"node_name": "from-a"}')
    earlier = _write(tmp_path, "z.json", '{"node_name": "from-z"}')
    cfg, _ = _load(["-config-file", earlier, "-config-file", later, "-data-dir", data_dir])
    assert cfg.node_name == "from-a"


def test_flags_override_files_and_list_flags_come_first(tmp_path: Path, data_dir: str) -> None:
    path = _write(tmp_path, "a.json",
                  '{"datacenter": "file-dc", "retry_join": ["file"], "recursors": ["8.8.8.8"]}')
    cfg, _ = _load(["-config-file", path, "-datacenter=flag-dc", "-retry-join=flag",
                    "-recursor=1.1.1.1", "-data-dir", data_dir])
    assert cfg.datacenter == "flag-dc"
    assert cfg.retry_join == ("flag", "file")
    assert cfg.recursors == ("1.1.1.1", "8.8.8.8")


def test_hcl_fragments_come_last(tmp_path: Path, data_dir: str) -> None:
    path = _write(tmp_path, "a.json", '{"node_name": "file", "retry_join": ["file"]}')
    cfg, _ = _load(["-config-file", path, "-node=flag", "-data-dir", data_dir,
                    "-hcl", 'node_name = "hcl-1"', "-hcl", 'node_name = "hcl-2"',
                    "-hcl", 'retry_join = ["hcl"]'])
    assert cfg.node_name == "hcl-2"
    assert cfg.retry_join == ("file", "hcl")


def test_services_checks_and_watches_accumulate(tmp_path: Path, data_dir: str) -> None:
    first = _write(tmp_path, "a.hcl", """
        service { name = "web" port = 80 check { http = "http://x/" interval = "10s" } }
        service { name = "api" }
        check { id = "disk" name = "disk" ttl = "30s" }
        watches = [{ type = "key" key = "k" args = ["/bin/true"] }]
    """)
    second = _write(tmp_path, "b.json", """{
        "services": [{"name": "db", "tags": ["primary"]}],
        "checks": [{"id": "mem", "name": "mem", "args": ["/bin/mem"], "interval": "1m"}],
        "watches": [{"type": "nodes", "handler_type": "http",
                     "http_handler_config": {"path": "http://h/"}}]
    }""")
    cfg, _ = _load(["-config-file", first, "-config-file", second, "-data-dir", data_dir])
    assert [s["name"] for s in cfg.services] == ["web", "api", "db"]
    assert cfg.services[0]["checks"] == [{"http": "http://x/", "interval": "10s"}]
    assert [c["id"] for c in cfg.checks] == ["disk", "mem"]
    assert [w["type"] for w in cfg.watches] == ["key", "nodes"]


def test_duplicate_service_ids_across_files(tmp_path: Path, data_dir: str) -> None:
    first = _write(tmp_path, "a.json", '{"service": {"name": "web"}}')
    second = _write(tmp_path, "b.json", '{"service": {"name": "other", "id": "web"}}')
    message = _error(["-config-file", first, "-config-file", second, "-data-dir", data_dir])
    assert 'duplicate service ID "web"' in message
    assert first in message and second in message


# -- dev mode


def test_dev_overrides() -> None:
    cfg, _ = _load(["-dev"])
    assert cfg.dev and cfg.server and cfg.pretty_json
    assert cfg.bootstrap is False
    assert cfg.bind_addr == "127.0.0.1" and cfg.advertise_addr == "127.0.0.1"
    assert cfg.client_addrs == ("127.0.0.1",)
    assert cfg.log_level == "DEBUG"
    assert cfg.ui_config.enabled and cfg.enable_debug and cfg.disable_keyring_file
    assert cfg.ports.grpc == 8502 and cfg.grpc_addrs == (("127.0.0.1", 8502),)
    assert cfg.performance.raft_multiplier == 1
    assert cfg.raft_election_timeout == pytest.approx(0.052)
    assert cfg.gossip_lan.probe_interval == pytest.approx(0.1)
    assert cfg.data_dir == ""
    assert cfg.node_name == "node-a"
    assert cfg.http_addrs == (("127.0.0.1", 8500),)


def test_dev_values_yield_to_user_config() -> None:
    cfg, _ = _load(["-dev", "-log-level=info", "-hcl", 'ui_config { enabled = false }'])
    assert cfg.log_level == "INFO" and not cfg.ui_config.enabled


def test_non_dev_defaults(data_dir: str) -> None:
    cfg, warnings = _load(["-data-dir", data_dir])
    assert warnings == []
    assert not cfg.dev and not cfg.server and not cfg.pretty_json
    assert cfg.datacenter == "dc1" and cfg.primary_datacenter == "dc1"
    assert cfg.bind_addr == "0.0.0.0" and cfg.advertise_addr == "10.1.2.3"
    assert cfg.advertise_addr_wan == "10.1.2.3"
    assert cfg.tagged_addresses == {"lan": "10.1.2.3", "wan": "10.1.2.3",
                                    "lan_ipv4": "10.1.2.3", "wan_ipv4": "10.1.2.3"}
    assert cfg.rpc_bind_addr == ("0.0.0.0", 8300)
    assert cfg.serf_advertise_addr_lan == ("10.1.2.3", 8301)
    assert cfg.ports.grpc == -1 and cfg.ports.grpc_tls == -1 and cfg.grpc_addrs == ()
    assert cfg.ports.https == -1 and cfg.https_addrs == ()
    assert cfg.dns_addrs == (("127.0.0.1", 8600),)
    assert cfg.log_level == "INFO" and cfg.domain == "consul."
    assert cfg.session_ttl_min == 10.0
    assert (cfg.default_query_time, cfg.max_query_time) == (300.0, 600.0)
    assert cfg.limits.kv_max_value_size == 524288 and cfg.limits.txn_max_req_len == 524288
    assert cfg.limits.http_max_conns_per_client == 200
    assert cfg.limits.rpc_rate == float("inf")
    assert cfg.check_update_interval == 300.0 and cfg.check_output_max_size == 4096
    assert cfg.raft_snapshot_threshold == 16384 and cfg.raft_trailing_logs == 10240
    assert cfg.raft_snapshot_interval == 30.0 and cfg.raft_election_timeout == 5.0
    assert cfg.reconnect_timeout == 72 * 3600.0
    assert cfg.disable_remote_exec and cfg.disable_host_node_id
    assert cfg.leave_on_terminate and not cfg.skip_leave_on_interrupt
    assert cfg.acl.default_policy == "allow" and cfg.acl.down_policy == "extend-cache"
    assert cfg.acl.token_ttl == 30.0 and not cfg.acl.enabled
    assert cfg.autopilot.last_contact_threshold == pytest.approx(0.2)
    assert cfg.dns_config.udp_answer_limit == 3 and cfg.dns_config.allow_stale
    assert cfg.dns_config.recursor_timeout == 2.0 and cfg.dns_config.soa.refresh == 3600
    assert cfg.http_config.use_cache and cfg.ui_config.content_path == "/ui/"
    assert cfg.telemetry.metrics_prefix == "consul"


def test_server_role_defaults(data_dir: str) -> None:
    cfg, _ = _load(["-server", "-data-dir", data_dir])
    assert not cfg.leave_on_terminate and cfg.skip_leave_on_interrupt
    assert cfg.ports.grpc_tls == 8503


def test_data_dir_is_required_outside_dev() -> None:
    assert _error(["-server"]) == "data_dir cannot be empty"


def test_data_dir_must_be_a_directory(tmp_path: Path) -> None:
    path = _write(tmp_path, "file", "x")
    assert f'data_dir "{path}" is not a directory' in _error(["-data-dir", path])


# -- addresses


def test_client_and_listener_addresses(data_dir: str) -> None:
    cfg, _ = _load(["-data-dir", data_dir, "-client", "127.0.0.1 ::1", "-http-port=8501",
                    "-hcl", 'addresses { dns = "127.0.0.2" }', "-https-port=8443"])
    assert cfg.client_addrs == ("127.0.0.1", "::1")
    assert cfg.http_addrs == (("127.0.0.1", 8501), ("::1", 8501))
    assert cfg.https_addrs == (("127.0.0.1", 8443), ("::1", 8443))
    assert cfg.dns_addrs == (("127.0.0.2", 8600),)


def test_port_minus_one_disables_listener(data_dir: str) -> None:
    cfg, _ = _load(["-data-dir", data_dir, "-http-port=-1", "-dns-port=0"])
    assert cfg.http_addrs == () and cfg.ports.http == -1
    assert cfg.dns_addrs == () and cfg.ports.dns == -1


def test_unix_socket_http_listener(data_dir: str) -> None:
    cfg, _ = _load(["-data-dir", data_dir, "-hcl", 'addresses { http = "unix:///tmp/c.sock" }'])
    assert cfg.http_addrs == (("unix:///tmp/c.sock", 0),)


def test_listener_clash(data_dir: str) -> None:
    message = _error(["-data-dir", data_dir, "-http-port=8600"])
    assert message == "HTTP address 127.0.0.1:8600 already configured for DNS"


def test_advertise_detection_errors(data_dir: str) -> None:
    two = HostInfo(hostname=lambda: "n", private_ipv4=lambda: ["10.0.0.1", "10.0.0.2"])
    assert _error(["-data-dir", data_dir], host=two) == (
        "Multiple private IPv4 addresses found. Please configure one with 'bind' and/or "
        "'advertise'.")
    none = HostInfo(hostname=lambda: "n", private_ipv4=lambda: [])
    assert _error(["-data-dir", data_dir], host=none) == "No private IPv4 address found"
    cfg, _ = _load(["-data-dir", data_dir, "-advertise", "192.0.2.7"], host=none)
    assert cfg.advertise_addr == "192.0.2.7" and cfg.rpc_advertise_addr == ("192.0.2.7", 8300)


def test_advertise_any_address_rejected(data_dir: str) -> None:
    assert _error(["-data-dir", data_dir, "-advertise=0.0.0.0"]).startswith(
        "Advertise address cannot be 0.0.0.0, :: or [::]")


def test_bad_bind_address_names_source(tmp_path: Path, data_dir: str) -> None:
    path = _write(tmp_path, "a.hcl", 'bind_addr = "not-an-ip"')
    message = _error(["-config-file", path, "-data-dir", data_dir])
    assert message == f"bind_addr: invalid ip address: not-an-ip (bind_addr set in {path})"


def test_node_name_from_config_beats_hostname(data_dir: str) -> None:
    cfg, warnings = _load(["-data-dir", data_dir, "-node", "web.example"])
    assert cfg.node_name == "web.example"
    assert any("will not be discoverable via DNS" in w for w in warnings)


# -- validation errors name the file and the key


def test_unknown_key_in_config_dir_names_file(tmp_path: Path, data_dir: str) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    _write(conf, "a.json", '{"datacenter": "dc1"}')
    bad = _write(conf, "b.hcl", 'serverr = true')
    assert _error(["-config-dir", str(conf), "-data-dir", data_dir]) == (
        f"failed to parse {bad}: 1 error occurred:\n\t* invalid config key serverr\n\n")


def test_invalid_datacenter_names_file_and_key(tmp_path: Path, data_dir: str) -> None:
    path = _write(tmp_path, "dc.json", '{"datacenter": "my dc"}')
    assert _error(["-config-file", path, "-data-dir", data_dir]) == (
        'datacenter can only contain lowercase alphanumeric, - or _ characters. '
        f'received: "my dc" (datacenter set in {path})')


def test_datacenter_is_lower_cased(data_dir: str) -> None:
    cfg, _ = _load(["-data-dir", data_dir, "-datacenter=EAST-1"])
    assert cfg.datacenter == "east-1"


def test_bootstrap_and_bootstrap_expect_conflict(tmp_path: Path, data_dir: str) -> None:
    first = _write(tmp_path, "a.json", '{"server": true, "bootstrap": true}')
    second = _write(tmp_path, "b.hcl", "bootstrap_expect = 3")
    assert _error(["-config-file", first, "-config-file", second, "-data-dir", data_dir]) == (
        "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive "
        f"(bootstrap_expect set in {second}; bootstrap set in {first})")


def test_bootstrap_expect_one_means_bootstrap(data_dir: str) -> None:
    cfg, warnings = _load(["-server", "-bootstrap-expect=1", "-data-dir", data_dir])
    assert cfg.bootstrap and cfg.bootstrap_expect == 0
    assert "BootstrapExpect is set to 1; this is the same as Bootstrap mode." in warnings


def test_bootstrap_expect_rules() -> None:
    assert _error(["-dev", "-bootstrap-expect=3"]) == (
        "'bootstrap_expect > 0' not allowed in dev mode "
        "(bootstrap_expect set in command-line flags)")
    assert "'bootstrap = true' requires 'server = true'" in _error(
        ["-bootstrap", "-data-dir=/"])


@pytest.mark.parametrize(
    ("hcl", "fragment"),
    [
        ("performance { raft_multiplier = 11 }",
         "performance.raft_multiplier cannot be 11. Must be between 1 and 10"),
        ('reconnect_timeout = "1h"',
         "reconnect_timeout: duration '1h' cannot be less than: 8h0m0s"),
        ('encrypt = "abc"', "encrypt has invalid key"),
        ('node_meta { "consul-x" = "1" }',
         "node_meta invalid: Key prefix 'consul-' is reserved for internal use"),
        ("raft_protocol = 2", "raft_protocol version 2 is not supported"),
        ('node_id = "nope"', "node_id: uuid string is wrong length"),
        ("check_output_max_size = 0", "check_output_max_size must be positive"),
        ('alt_domain = "service.example"', "alt_domain cannot start with"),
        ('retry_interval = "soon"', 'retry_interval: invalid duration: "soon"'),
    ],
)
def test_bad_values_name_the_source(hcl: str, fragment: str, data_dir: str) -> None:
    message = _error(["-data-dir", data_dir, "-hcl", hcl])
    assert fragment in message
    assert "flags-0.hcl" in message


def test_flag_durations_checked_with_flag_source(data_dir: str) -> None:
    message = _error(["-data-dir", data_dir, "-retry-interval=soon"])
    assert message.startswith("failed to parse command-line flags: 1 error occurred:")
    assert 'retry_interval: invalid duration: "soon"' in message


def test_hcl_fragment_syntax_error_names_fragment() -> None:
    assert _error(["-dev", "-hcl", 'node_name = "a"', "-hcl", "x = "]).startswith(
        "failed to parse flags-1.hcl: ")


def test_valid_encrypt_key(data_dir: str) -> None:
    key = base64.b64encode(bytes(32)).decode()
    cfg, _ = _load(["-data-dir", data_dir, "-encrypt", key])
    assert cfg.encrypt == key


# -- deprecated spellings


@pytest.mark.parametrize(
    "hcl",
    ['acl { tokens { initial_management = "root" } }',
     'acl { tokens { master = "root" } }',
     'acl_master_token = "root"'],
)
def test_initial_management_spellings(hcl: str) -> None:
    cfg, warnings = _load(["-dev", "-hcl", hcl])
    assert cfg.acl.tokens.initial_management == "root"
    assert bool(warnings) == ("initial_management" not in hcl)


def test_later_source_wins_between_spellings(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.json", '{"acl": {"tokens": {"initial_management": "new"}}}')
    second = _write(tmp_path, "b.json", '{"acl_master_token": "old"}')
    cfg, _ = _load(["-dev", "-config-file", first, "-config-file", second])
    assert cfg.acl.tokens.initial_management == "old"


def test_other_acl_renames() -> None:
    cfg, warnings = _load(["-dev", "-hcl", 'acl_token = "d"', "-hcl", 'acl_agent_token = "a"',
                           "-hcl", 'acl { tokens { agent_master = "r" } }',
                           "-hcl", 'acl_datacenter = "dc0"'])
    tokens = cfg.acl.tokens
    assert (tokens.default, tokens.agent, tokens.agent_recovery) == ("d", "a", "r")
    assert cfg.primary_datacenter == "dc0" and cfg.acl.enabled
    assert len(warnings) == 4


def test_join_flag_maps_to_retry_join() -> None:
    cfg, warnings = _load(["-dev", "-join=10.0.0.9"])
    assert cfg.retry_join == ("10.0.0.9",)
    assert warnings == ["The 'start_join' field is deprecated. Use the 'retry_join' field instead."]


# -- typed sections and raw access


def test_sections_from_config(data_dir: str) -> None:
    cfg, _ = _load(["-data-dir", data_dir, "-hcl", """
        telemetry { prometheus_retention_time = "24h" prefix_filter = ["+consul.raft", "-x"] }
        http_config {
          block_endpoints = ["/v1/acl"]
          allow_write_http_from = ["127.0.0.0/8", "10.1.2.3/16"]
          max_header_bytes = 4096
        }
        limits { kv_max_value_size = 1024 rpc_rate = 50 }
        dns_config { service_ttl { "*" = "5s" web = "1m" } node_ttl = "10s" soa { min_ttl = 5 } }
        acl { enabled = true default_policy = "deny" }
        ui_config { content_path = "console" }
        autopilot { min_quorum = 3 }
    """])
    assert cfg.telemetry.prometheus_retention_time == 86400.0
    assert cfg.telemetry.allowed_prefixes == ("consul.raft",)
    assert cfg.telemetry.blocked_prefixes == ("x", "consul.rpc.server.call")
    assert cfg.http_config.block_endpoints == ("/v1/acl",)
    assert cfg.http_config.allow_write_http_from == ("127.0.0.0/8", "10.1.0.0/16")
    assert cfg.http_config.max_header_bytes == 4096
    assert cfg.limits.kv_max_value_size == 1024 and cfg.limits.rpc_rate == 50.0
    assert cfg.dns_config.service_ttl == {"*": 5.0, "web": 60.0}
    assert cfg.dns_config.node_ttl == 10.0 and cfg.dns_config.soa.min_ttl == 5
    assert cfg.acl.enabled and cfg.acl.default_policy == "deny"
    assert cfg.ui_config.content_path == "/console/"
    assert cfg.autopilot.min_quorum == 3
    assert cfg.raw["autopilot"]["min_quorum"] == 3


def test_script_check_warning(data_dir: str) -> None:
    _, warnings = _load(["-data-dir", data_dir, "-enable-script-checks"])
    assert any("enable-script-checks without ACLs" in w for w in warnings)


def test_enterprise_keys_only_warn() -> None:
    cfg, warnings = _load(["-dev", "-hcl", 'segment = "alpha"'])
    assert cfg.segment == "alpha"
    assert warnings == ['"segment" is a Consul Enterprise configuration and will have no effect']


# -- reload and validate


def test_reload_rereads_the_same_files(tmp_path: Path, data_dir: str) -> None:
    path = _write(tmp_path, "a.json", '{"log_level": "info"}')
    flags = parse_agent_flags(["-config-file", path, "-data-dir", data_dir])
    first, _ = build(flags, host=HOST)
    assert first.flags == flags and first.config_paths == (path,)
    _write(tmp_path, "a.json", '{"log_level": "debug", "node_meta": {"v": "2"}}')
    second, _ = reload(first.flags, host=HOST)
    assert (first.log_level, second.log_level) == ("INFO", "DEBUG")
    assert second.node_meta == {"v": "2"}


def test_reload_surfaces_new_errors(tmp_path: Path, data_dir: str) -> None:
    path = _write(tmp_path, "a.json", "{}")
    flags = parse_agent_flags(["-config-file", path, "-data-dir", data_dir])
    build(flags, host=HOST)
    _write(tmp_path, "a.json", '{"bogus": true}')
    with pytest.raises(ConfigError, match="invalid config key bogus"):
        reload(flags, host=HOST)


def test_validate_paths(tmp_path: Path, data_dir: str) -> None:
    good = _write(tmp_path, "good.hcl", f'data_dir = "{data_dir}"\nserver = true')
    cfg, _ = validate_paths([good], host=HOST)
    assert cfg.server and cfg.sources == (good,)
    bad = _write(tmp_path, "bad.conf", "server = 1")
    with pytest.raises(ConfigError, match=r"failed to parse .*bad\.conf"):
        validate_paths([bad], config_format="hcl", host=HOST)


def test_build_accepts_flags_object(data_dir: str) -> None:
    cfg, _ = build(AgentFlags(values={"data_dir": data_dir, "ports": {"http": 18500}}), host=HOST)
    assert cfg.http_addrs == (("127.0.0.1", 18500),)


def test_bad_service_definition_names_file_and_entry(tmp_path: Path, data_dir: str) -> None:
    good = _write(tmp_path, "a.hcl", 'service { name = "web" port = 80 }')
    bad = _write(tmp_path, "b.hcl", 'service { port = 81 }\nservice { name = "x" '
                 'address = "0.0.0.0" }')
    with pytest.raises(ConfigError) as info:
        _load(["-config-file", good, "-config-file", bad, "-data-dir", data_dir])
    text = str(info.value)
    assert text.startswith(f"failed to parse {bad}: 2 errors occurred:")
    assert "services[0]: Missing service name" in text
    assert "services[1]: Invalid service address" in text
