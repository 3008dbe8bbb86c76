"""The table of every configuration key Consul's agent accepts: its shape, type and default.

Consul refuses unknown keys and values of the wrong type, so a drop-in has to know the whole
key space, including keys it does not act on (enterprise stanzas, cloud settings, the
non-user tuning knobs), or configs written for Consul would be rejected. The table is data:
`source.decode` walks it once per source, `defaults.py` reads the defaults from it, and the
builder reads each key's kind to convert merged values into RuntimeConfig fields.

Shapes follow Consul's `agent/config/config.go`: sections are nested objects, lists are
appended when sources merge, string maps are merged key by key. Deprecated keys carry the
key that replaced them, so old spellings keep working with a warning.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TypeAlias


class Kind(enum.Enum):
    """Value types a leaf key can hold; each names the Go type Consul decodes into."""

    STR = "string"
    BOOL = "bool"
    INT = "int"
    UINT = "uint"
    FLOAT = "float64"
    DURATION = "duration"
    PORT = "port"
    STR_LIST = "[]string"
    STR_MAP = "map[string]string"
    STR_LIST_MAP = "map[string][]string"
    DURATION_MAP = "map[string]duration"
    ANY_MAP = "map[string]interface{}"
    MAP_LIST = "[]map[string]interface{}"


LIST_KINDS = frozenset({Kind.STR_LIST, Kind.MAP_LIST})
MAP_KINDS = frozenset({Kind.STR_MAP, Kind.STR_LIST_MAP, Kind.DURATION_MAP, Kind.ANY_MAP})


@dataclass(frozen=True)
class Field:
    """One leaf key. `default` is in config-file form (durations as Go strings)."""

    kind: Kind
    default: object = None
    #: Accepted values, when the key is an enumeration; `noun` names it in errors.
    choices: tuple[str, ...] = ()
    noun: str = "value"
    fold_case: bool = False
    #: For a deprecated key: the dotted path of the key that replaced it.
    replaced_by: str | None = None
    #: The deprecated list is appended to its replacement instead of filling it.
    append: bool = False
    #: Paths forced to a value whenever the deprecated key is present.
    forces: tuple[tuple[str, object], ...] = ()
    #: Paths given a value only when the source left them unset.
    fills: tuple[tuple[str, object], ...] = ()
    #: A warning that replaces the standard deprecation sentence.
    warning: str | None = None
    #: Consul Enterprise keys are accepted and warned about, as Consul CE does.
    enterprise: bool = False


@dataclass(frozen=True)
class Section:
    """A nested object with a fixed key set; `aliases` maps other spellings to keys."""

    fields: dict[str, Spec]
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: A singular key whose value is appended to a plural list key (`service` → `services`).
    folds: Mapping[str, str] = field(default_factory=dict)

    def lookup(self, key: str) -> str | None:
        """Match a key the way Consul's decoder does: exactly, then case-insensitively."""
        if key in self.fields:
            return key
        if key in self.aliases:
            return self.aliases[key]
        lowered = key.lower()
        for name in self.fields:
            if name.lower() == lowered:
                return name
        for alias, name in self.aliases.items():
            if alias.lower() == lowered:
                return name
        return None


@dataclass(frozen=True)
class SectionList:
    """A list of objects of one shape (services, checks, upstreams); merged by appending."""

    item: Section


@dataclass(frozen=True)
class SectionMap:
    """A map from free-form names to objects of one shape (tagged addresses, audit sinks)."""

    item: Section


Spec: TypeAlias = Field | Section | SectionList | SectionMap


def _s(
    default: str | None = None, choices: tuple[str, ...] = (), noun: str = "value",
    fold_case: bool = False,
) -> Field:
    return Field(Kind.STR, default, choices=choices, noun=noun, fold_case=fold_case)


def _b(default: bool | None = None) -> Field:
    return Field(Kind.BOOL, default)


def _i(default: int | None = None) -> Field:
    return Field(Kind.INT, default)


def _u(default: int | None = None) -> Field:
    return Field(Kind.UINT, default)


def _f(default: float | None = None) -> Field:
    return Field(Kind.FLOAT, default)


def _d(default: str | None = None) -> Field:
    return Field(Kind.DURATION, default)


def _p(default: int | None = None) -> Field:
    return Field(Kind.PORT, default)


def _sl() -> Field:
    return Field(Kind.STR_LIST)


def _sm() -> Field:
    return Field(Kind.STR_MAP)


def _am() -> Field:
    return Field(Kind.ANY_MAP)


def _ml() -> Field:
    return Field(Kind.MAP_LIST)


def _ent(f: Field) -> Field:
    return replace(f, enterprise=True)


def _dep(
    f: Field, replaced_by: str | None, *, append: bool = False,
    forces: tuple[tuple[str, object], ...] = (), fills: tuple[tuple[str, object], ...] = (),
    warning: str | None = None,
) -> Field:
    return replace(f, replaced_by=replaced_by, append=append, forces=forces, fills=fills,
                   warning=warning)


TLS_VERSIONS = ("", "TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3")
#: Spellings the top-level `tls_min_version` used before Consul 1.12, and what they mean now.
TLS_LEGACY_VERSIONS = {
    "tls10": "TLSv1_0", "tls11": "TLSv1_1", "tls12": "TLSv1_2", "tls13": "TLSv1_3",
}
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR", "ERROR")


def _tls_protocol() -> Section:
    return Section({
        "ca_file": _s(), "ca_path": _s(), "cert_file": _s(), "key_file": _s(),
        "tls_min_version": _s(choices=TLS_VERSIONS, noun="TLS version"),
        "tls_cipher_suites": _s(),
        "verify_incoming": _b(), "verify_outgoing": _b(), "verify_server_hostname": _b(),
        "use_auto_cert": _b(),
    })


def _gossip(interval: str, nodes: int, probe: str, timeout: str, suspicion: int) -> Section:
    return Section({
        "gossip_nodes": _i(nodes), "gossip_interval": _d(interval),
        "probe_interval": _d(probe), "probe_timeout": _d(timeout),
        "suspicion_mult": _i(suspicion), "retransmit_mult": _i(4),
    })


_NAME_META = {"namespace": _s(), "partition": _s()}

CHECK = Section(
    {
        "id": _s(), "name": _s(), "notes": _s(), "service_id": _s(), "token": _s(),
        "status": _s(), "args": _sl(), "http": _s(), "header": Field(Kind.STR_LIST_MAP),
        "method": _s(), "body": _s(), "disable_redirects": _b(), "output_max_size": _i(),
        "tcp": _s(), "tcp_use_tls": _b(), "udp": _s(), "interval": _d(),
        "docker_container_id": _s(), "shell": _s(), "grpc": _s(), "grpc_use_tls": _b(),
        "tls_server_name": _s(), "tls_skip_verify": _b(), "alias_node": _s(),
        "alias_service": _s(), "timeout": _d(), "ttl": _d(), "h2ping": _s(),
        "h2ping_use_tls": _b(), "os_service": _s(), "success_before_passing": _i(),
        "failures_before_warning": _i(), "failures_before_critical": _i(),
        "deregister_critical_service_after": _d(), **_NAME_META,
    },
    aliases={
        "serviceid": "service_id", "scriptargs": "args",
        "dockercontainerid": "docker_container_id", "tlsskipverify": "tls_skip_verify",
        "deregistercriticalserviceafter": "deregister_critical_service_after",
    },
)

_MESH_GATEWAY = Section({"mode": _s()})

_UPSTREAM = Section({
    "destination_type": _s(), "destination_namespace": _s(), "destination_partition": _s(),
    "destination_peer": _s(), "destination_name": _s(), "datacenter": _s(),
    "local_bind_address": _s(), "local_bind_port": _i(), "local_bind_socket_path": _s(),
    "local_bind_socket_mode": _s(), "config": _am(), "mesh_gateway": _MESH_GATEWAY,
})

_PROXY = Section({
    "destination_service_name": _s(), "destination_service_id": _s(),
    "local_service_address": _s(), "local_service_port": _i(),
    "local_service_socket_path": _s(),
    "transparent_proxy": Section({"outbound_listener_port": _i(), "dialed_directly": _b()}),
    "mode": _s(), "config": _am(), "upstreams": SectionList(_UPSTREAM),
    "mesh_gateway": _MESH_GATEWAY,
    "expose": Section({
        "checks": _b(), "port": _i(),
        "paths": SectionList(Section({
            "listener_port": _i(), "path": _s(), "protocol": _s(), "local_path_port": _i(),
        })),
    }),
})

SERVICE = Section(
    {
        "kind": _s(), "id": _s(), "name": _s(), "tags": _sl(), "address": _s(),
        "tagged_addresses": SectionMap(Section({"address": _s(), "port": _i()})),
        "meta": _sm(), "port": _i(), "socket_path": _s(),
        "check": SectionList(CHECK), "checks": SectionList(CHECK), "token": _s(),
        "weights": Section({"passing": _i(), "warning": _i()}),
        "enable_tag_override": _b(), "proxy": _PROXY,
        "locality": Section({"region": _s(), "zone": _s()}), **_NAME_META,
    },
    folds={"check": "checks"},
)
# A sidecar is itself a service definition, so the shape refers to itself.
SERVICE.fields["connect"] = Section({"native": _b(), "sidecar_service": SERVICE})


def _deprecated_keys() -> dict[str, Spec]:
    """Top-level keys Consul still reads but renamed; each maps onto its replacement."""
    tokens = "acl.tokens."
    return {
        "acl_agent_master_token": _dep(_s(), tokens + "agent_recovery"),
        "acl_agent_token": _dep(_s(), tokens + "agent"),
        "acl_token": _dep(_s(), tokens + "default"),
        "acl_enable_key_list_policy": _dep(_b(), "acl.enable_key_list_policy"),
        "acl_master_token": _dep(_s(), tokens + "initial_management"),
        "acl_replication_token": _dep(
            _s(), tokens + "replication", forces=(("acl.enable_token_replication", True),)),
        "enable_acl_replication": _dep(_b(), "acl.enable_token_replication"),
        "acl_datacenter": _dep(_s(), "primary_datacenter", forces=(("acl.enabled", True),)),
        "acl_default_policy": _dep(_s(), "acl.default_policy"),
        "acl_down_policy": _dep(_s(), "acl.down_policy"),
        "acl_ttl": _dep(_d(), "acl.token_ttl"),
        "acl_enforce_version_8": _dep(
            _b(), None,
            warning='config key "acl_enforce_version_8" is deprecated and should be removed'),
        "ca_file": _dep(_s(), "tls.defaults.ca_file"),
        "ca_path": _dep(_s(), "tls.defaults.ca_path"),
        "cert_file": _dep(_s(), "tls.defaults.cert_file"),
        "key_file": _dep(_s(), "tls.defaults.key_file"),
        "tls_cipher_suites": _dep(_s(), "tls.defaults.tls_cipher_suites"),
        "tls_min_version": _dep(
            _s(choices=TLS_VERSIONS + tuple(TLS_LEGACY_VERSIONS), noun="TLS version"),
            "tls.defaults.tls_min_version"),
        "verify_incoming": _dep(
            _b(), "tls.defaults.verify_incoming", fills=(("tls.grpc.verify_incoming", False),)),
        "verify_incoming_https": _dep(_b(), "tls.https.verify_incoming"),
        "verify_incoming_rpc": _dep(_b(), "tls.internal_rpc.verify_incoming"),
        "verify_outgoing": _dep(_b(), "tls.defaults.verify_outgoing"),
        "verify_server_hostname": _dep(_b(), "tls.internal_rpc.verify_server_hostname"),
        "tls_prefer_server_cipher_suites": _dep(
            _b(), None,
            warning="The 'tls_prefer_server_cipher_suites' field is deprecated "
                    "and will be ignored."),
        "start_join": _dep(_sl(), "retry_join", append=True),
        "start_join_wan": _dep(_sl(), "retry_join_wan", append=True),
        "raft_boltdb": Section({
            "no_freelist_sync": _dep(_b(), "raft_logstore.boltdb.no_freelist_sync"),
        }),
        "ui": _dep(_b(), "ui_config.enabled"),
        "ui_dir": _dep(_s(), "ui_config.dir"),
        "ui_content_path": _dep(_s(), "ui_config.content_path"),
    }


TOP = Section(
    {
        "acl": Section({
            "enabled": _b(), "enable_token_replication": _b(),
            "policy_ttl": _d("30s"), "role_ttl": _d("30s"), "token_ttl": _d("30s"),
            "down_policy": _s("extend-cache", noun="down policy",
                              choices=("allow", "deny", "extend-cache", "async-cache")),
            "default_policy": _s("allow", choices=("allow", "deny"), noun="default policy"),
            "enable_key_list_policy": _b(), "enable_token_persistence": _b(),
            "msp_disable_bootstrap": _ent(_b()),
            "tokens": Section({
                "initial_management": _s(), "replication": _s(), "agent_recovery": _s(),
                "default": _s(), "agent": _s(), "config_file_service_registration": _s(),
                "dns": _s(),
                "managed_service_provider": SectionList(
                    Section({"accessor_id": _s(), "secret_id": _s()})),
                "master": _dep(_s(), "acl.tokens.initial_management"),
                "agent_master": _dep(_s(), "acl.tokens.agent_recovery"),
            }),
        }),
        "addresses": Section({n: _s() for n in ("dns", "http", "https", "grpc", "grpc_tls")}),
        "advertise_addr": _s(), "advertise_addr_ipv4": _s(), "advertise_addr_ipv6": _s(),
        "advertise_addr_wan": _s(), "advertise_addr_wan_ipv4": _s(),
        "advertise_addr_wan_ipv6": _s(), "advertise_reconnect_timeout": _d(),
        "audit": Section({
            "enabled": _ent(_b()),
            "sink": SectionMap(Section({
                "type": _s(), "format": _s(), "path": _s(), "delivery_guarantee": _s(),
                "mode": _s(), "rotate_bytes": _i(), "rotate_duration": _d(),
                "rotate_max_files": _i(),
            })),
        }),
        "auto_config": Section({
            "enabled": _b(), "intro_token": _s(), "intro_token_file": _s(),
            "server_addresses": _sl(), "dns_sans": _sl(), "ip_sans": _sl(),
            "authorization": Section({
                "enabled": _b(),
                "static": Section({
                    "claim_assertions": _sl(), "allow_reuse": _b(),
                    "jwt_supported_algs": _sl(), "bound_audiences": _sl(),
                    "claim_mappings": _sm(), "list_claim_mappings": _sm(),
                    "oidc_discovery_url": _s(), "oidc_discovery_ca_cert": _s(),
                    "jwks_url": _s(), "jwks_ca_cert": _s(), "jwt_validation_pub_keys": _sl(),
                    "bound_issuer": _s(), "expiration_leeway": _d(),
                    "not_before_leeway": _d(), "clock_skew_leeway": _d(),
                }),
            }),
        }),
        "auto_encrypt": Section({
            "tls": _b(), "dns_san": _sl(), "ip_san": _sl(), "allow_tls": _b(),
        }),
        "auto_reload_config": _b(),
        "autopilot": Section({
            "cleanup_dead_servers": _b(True), "last_contact_threshold": _d("200ms"),
            "max_trailing_logs": _i(250), "min_quorum": _u(),
            "server_stabilization_time": _d("10s"),
            "disable_upgrade_migration": _ent(_b()), "redundancy_zone_tag": _ent(_s()),
            "upgrade_version_tag": _ent(_s()),
        }),
        "bind_addr": _s("0.0.0.0"), "bootstrap": _b(False), "bootstrap_expect": _i(0),
        "cache": Section({"entry_fetch_max_burst": _i(), "entry_fetch_rate": _f()}),
        "check": SectionList(CHECK), "checks": SectionList(CHECK),
        "check_output_max_size": _i(4096), "check_update_interval": _d("5m"),
        "client_addr": _s("127.0.0.1"),
        "cloud": Section({n: _s() for n in (
            "resource_id", "client_id", "client_secret", "hostname", "auth_url",
            "scada_address")}),
        "config_entries": Section({"bootstrap": _ml()}),
        "connect": Section({
            "enabled": _b(True), "ca_provider": _s(), "ca_config": _am(),
            "enable_mesh_gateway_wan_federation": _b(), "test_ca_leaf_root_change_spread": _d(),
        }),
        "data_dir": _s(), "datacenter": _s("dc1"), "default_query_time": _d("300s"),
        "disable_anonymous_signature": _b(), "disable_coordinates": _b(False),
        "disable_host_node_id": _b(True), "disable_http_unprintable_char_filter": _b(),
        "disable_keyring_file": _b(), "disable_remote_exec": _b(True),
        "disable_update_check": _b(), "discard_check_output": _b(),
        "discovery_max_stale": _d(),
        "dns_config": Section({
            "allow_stale": _b(True), "a_record_limit": _i(0), "disable_compression": _b(),
            "enable_truncate": _b(), "max_stale": _d("87600h"), "node_ttl": _d(),
            "only_passing": _b(),
            "recursor_strategy": _s(choices=("", "sequential", "random"), noun="strategy"),
            "recursor_timeout": _d("2s"), "service_ttl": Field(Kind.DURATION_MAP),
            "udp_answer_limit": _i(3), "enable_additional_node_meta_txt": _b(),
            "soa": Section({"refresh": _u(), "retry": _u(), "expire": _u(), "min_ttl": _u()}),
            "use_cache": _b(), "cache_max_age": _d(), "prefer_namespace": _ent(_b()),
        }),
        "domain": _s("consul."), "alt_domain": _s(), "recursors": _sl(),
        "enable_agent_tls_for_checks": _b(), "enable_central_service_config": _b(True),
        "enable_debug": _b(), "enable_script_checks": _b(), "enable_local_script_checks": _b(),
        "enable_syslog": _b(), "encrypt": _s(), "encrypt_verify_incoming": _b(True),
        "encrypt_verify_outgoing": _b(True), "experiments": _sl(),
        "gossip_lan": _gossip("200ms", 3, "1s", "500ms", 4),
        "gossip_wan": _gossip("500ms", 3, "5s", "3s", 6),
        "http_config": Section({
            "block_endpoints": _sl(), "allow_write_http_from": _sl(),
            "response_headers": _sm(), "use_cache": _b(), "max_header_bytes": _i(),
        }),
        "leave_on_terminate": _b(), "license_path": _ent(_s()),
        "limits": Section({
            "http_max_conns_per_client": _i(200), "https_handshake_timeout": _d("5s"),
            "request_limits": Section({
                "mode": _s("disabled", choices=("disabled", "permissive", "enforcing"),
                           noun="mode"),
                "read_rate": _f(-1), "write_rate": _f(-1),
            }),
            "rpc_client_timeout": _d("60s"), "rpc_handshake_timeout": _d("5s"),
            "rpc_max_burst": _i(1000), "rpc_max_conns_per_client": _i(100),
            "rpc_rate": _f(-1), "kv_max_value_size": _u(524288), "txn_max_req_len": _u(524288),
        }),
        "locality": Section({"region": _s(), "zone": _s()}),
        "log_level": _s("INFO", choices=LOG_LEVELS, noun="log level", fold_case=True),
        "log_sublevels": _sm(), "log_json": _b(), "log_file": _s(),
        "log_rotate_duration": _d(), "log_rotate_bytes": _i(), "log_rotate_max_files": _i(),
        "max_query_time": _d("600s"), "node_id": _s(), "node_meta": _sm(), "node_name": _s(),
        "peering": Section({"enabled": _b(True), "test_allow_peer_registrations": _b()}),
        "performance": Section({
            "leave_drain_time": _d("5s"), "raft_multiplier": _i(5), "rpc_hold_timeout": _d("7s"),
        }),
        "pid_file": _s(),
        "ports": Section({
            "dns": _p(8600), "http": _p(8500), "https": _p(-1), "serf_lan": _p(8301),
            "serf_wan": _p(8302), "server": _p(8300), "grpc": _p(-1), "grpc_tls": _p(),
            "proxy_min_port": _p(20000), "proxy_max_port": _p(20255),
            "sidecar_min_port": _p(21000), "sidecar_max_port": _p(21255),
            "expose_min_port": _p(21500), "expose_max_port": _p(21755),
        }),
        "primary_datacenter": _s(), "primary_gateways": _sl(),
        "primary_gateways_interval": _d("30s"), "protocol": _i(2), "raft_protocol": _i(3),
        "raft_snapshot_threshold": _i(16384), "raft_snapshot_interval": _d("30s"),
        "raft_trailing_logs": _i(10240),
        "raft_logstore": Section({
            "backend": _s("boltdb"), "disable_log_cache": _b(),
            "verification": Section({"enabled": _b(), "interval": _d()}),
            "boltdb": Section({"no_freelist_sync": _b()}),
            "wal": Section({"segment_size_mb": _i(64)}),
        }),
        "read_replica": _ent(_b()),
        "reconnect_timeout": _d("72h"), "reconnect_timeout_wan": _d("72h"),
        "rejoin_after_leave": _b(), "reporting": Section({
            "license": Section({"enabled": _ent(_b())}),
        }),
        "retry_interval": _d("30s"), "retry_interval_wan": _d("30s"), "retry_join": _sl(),
        "retry_join_wan": _sl(), "retry_max": _i(0), "retry_max_wan": _i(0),
        "rpc": Section({"enable_streaming": _b()}),
        "segment": _ent(_s()),
        "segments": SectionList(Section({
            "advertise": _s(), "bind": _s(), "name": _s(), "port": _i(), "rpc_listener": _b(),
        })),
        "partition": _ent(_s()),
        "serf_lan": _s(), "serf_wan": _s(), "serf_lan_allowed_cidrs": _sl(),
        "serf_wan_allowed_cidrs": _sl(), "server": _b(False), "server_name": _s(),
        "server_rejoin_age_max": _d("168h"),
        "service": SectionList(SERVICE), "services": SectionList(SERVICE),
        "session_ttl_min": _d("10s"), "skip_leave_on_interrupt": _b(),
        "snapshot_agent": _am(), "syslog_facility": _s("LOCAL0"), "tagged_addresses": _sm(),
        "telemetry": Section({
            **{name: _s() for name in (
                "circonus_api_app", "circonus_api_token", "circonus_api_url",
                "circonus_broker_id", "circonus_broker_select_tag",
                "circonus_check_display_name", "circonus_check_force_metric_activation",
                "circonus_check_id", "circonus_check_instance_id", "circonus_check_search_tag",
                "circonus_check_tags", "circonus_submission_interval",
                "circonus_submission_url")},
            "disable_hostname": _b(), "dogstatsd_addr": _s(), "dogstatsd_tags": _sl(),
            "retry_failed_connection": _b(True), "filter_default": _b(True),
            "prefix_filter": _sl(), "metrics_prefix": _s("consul"),
            "prometheus_retention_time": _d(), "statsd_address": _s(),
            "statsite_address": _s(), "enable_host_metrics": _b(),
        }),
        "tls": Section({
            "defaults": _tls_protocol(), "internal_rpc": _tls_protocol(),
            "https": _tls_protocol(), "grpc": _tls_protocol(),
        }),
        "translate_wan_addrs": _b(),
        "ui_config": Section({
            "enabled": _b(), "dir": _s(), "content_path": _s(), "metrics_provider": _s(),
            "metrics_provider_files": _sl(), "metrics_provider_options_json": _s(),
            "metrics_proxy": Section({
                "base_url": _s(),
                "add_headers": SectionList(Section({"name": _s(), "value": _s()})),
                "path_allowlist": _sl(),
            }),
            "dashboard_url_templates": _sm(),
        }),
        "unix_sockets": Section({"group": _s(), "mode": _s(), "user": _s()}),
        "use_streaming_backend": _b(),
        "watches": _ml(),
        "xds": Section({"update_max_per_second": _f(250)}),
        # Keys Consul reads but overrides with fixed values; accepted so such configs load.
        "ae_interval": _d(), "check_deregister_interval_min": _d(), "check_reap_interval": _d(),
        "consul": Section({
            "coordinate": Section({
                "update_batch_size": _i(), "update_max_batches": _i(), "update_period": _d(),
            }),
            "raft": Section({
                "election_timeout": _d(), "heartbeat_timeout": _d(),
                "leader_lease_timeout": _d(),
            }),
            "server": Section({"health_interval": _d()}),
        }),
        "segment_limit": _i(), "segment_name_limit": _i(),
        "sync_coordinate_interval_min": _d(), "sync_coordinate_rate_target": _f(),
        "revision": _s(), "version": _s(), "version_prerelease": _s(),
        "version_metadata": _s(),
        **_deprecated_keys(),
    },
    aliases={"non_voting_server": "read_replica"},
    folds={"service": "services", "check": "checks"},
)


def spec_at(path: str, root: Section = TOP) -> Spec | None:
    """The spec of a dotted path through sections, or None when the path is not a known key."""
    spec: Spec = root
    for part in path.split("."):
        if not isinstance(spec, Section) or part not in spec.fields:
            return None
        spec = spec.fields[part]
    return spec


def deprecation_warning(old: str, new: str) -> str:
    """Consul's wording, which operators grep their logs for."""
    return f"The '{old}' field is deprecated. Use the '{new}' field instead."


def enterprise_warning(path: str) -> str:
    return f'"{path}" is a Consul Enterprise configuration and will have no effect'

