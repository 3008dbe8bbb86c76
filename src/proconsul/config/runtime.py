"""The agent's resolved configuration: typed, defaulted, validated and immutable.

Everything above the config layer reads settings from a `RuntimeConfig` and never from raw
config dicts, so defaults, derived values (addresses built from `client_addr` and ports, the
leave-on-terminate default that depends on server mode) and validation exist in one place.
It is frozen because a reload builds a fresh one and the agent compares old and new to decide
what it can apply live. Durations are float seconds; lists are tuples.

Addresses are `(host, port)` pairs. A unix socket listener is `("unix:///path", 0)`.

`ConfigTree` at the end reads the merged config tree into these types; most dataclass fields
are named after the config key they come from, so one generic fill serves most sections.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from proconsul.config.defaults import DEFAULT_SOURCE_NAME
from proconsul.config.duration import format_duration, go_quote, parse_duration
from proconsul.config.flags import AgentFlags
from proconsul.config.schema import LIST_KINDS, MAP_KINDS, Field, Kind, spec_at
from proconsul.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T", bound="DataclassInstance")

Address = tuple[str, int]


@dataclass(frozen=True)
class Ports:
    """Listener ports; -1 means the listener is off (Consul maps 0 and negatives to -1)."""

    dns: int = 8600
    http: int = 8500
    https: int = -1
    serf_lan: int = 8301
    serf_wan: int = 8302
    server: int = 8300
    grpc: int = -1
    grpc_tls: int = -1
    proxy_min_port: int = 20000
    proxy_max_port: int = 20255
    sidecar_min_port: int = 21000
    sidecar_max_port: int = 21255
    expose_min_port: int = 21500
    expose_max_port: int = 21755


@dataclass(frozen=True)
class Limits:
    http_max_conns_per_client: int = 200
    https_handshake_timeout: float = 5.0
    rpc_handshake_timeout: float = 5.0
    rpc_client_timeout: float = 60.0
    rpc_max_burst: int = 1000
    rpc_max_conns_per_client: int = 100
    #: Requests per second; `inf` when unlimited (a negative value in the config).
    rpc_rate: float = float("inf")
    kv_max_value_size: int = 524288
    txn_max_req_len: int = 524288
    request_limits_mode: str = "disabled"
    request_limits_read_rate: float = float("inf")
    request_limits_write_rate: float = float("inf")


@dataclass(frozen=True)
class ACLTokens:
    initial_management: str = ""
    agent: str = ""
    agent_recovery: str = ""
    default: str = ""
    replication: str = ""
    config_file_service_registration: str = ""
    dns: str = ""


@dataclass(frozen=True)
class ACLConfig:
    enabled: bool = False
    default_policy: str = "allow"
    down_policy: str = "extend-cache"
    policy_ttl: float = 30.0
    role_ttl: float = 30.0
    token_ttl: float = 30.0
    enable_token_persistence: bool = False
    enable_key_list_policy: bool = False
    enable_token_replication: bool = False
    tokens: ACLTokens = field(default_factory=ACLTokens)


@dataclass(frozen=True)
class SOAConfig:
    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    min_ttl: int = 0


@dataclass(frozen=True)
class DNSConfig:
    allow_stale: bool = True
    max_stale: float = 87600 * 3600.0
    node_ttl: float = 0.0
    #: Per-service TTLs; the key `*` is the wildcard, and keys may end in `*` as prefixes.
    service_ttl: Mapping[str, float] = field(default_factory=dict)
    udp_answer_limit: int = 3
    a_record_limit: int = 0
    enable_truncate: bool = False
    only_passing: bool = False
    disable_compression: bool = False
    recursor_timeout: float = 2.0
    recursor_strategy: str = "sequential"
    enable_additional_node_meta_txt: bool = True
    soa: SOAConfig = field(default_factory=SOAConfig)
    use_cache: bool = False
    cache_max_age: float = 0.0
    prefer_namespace: bool = False


@dataclass(frozen=True)
class Performance:
    raft_multiplier: int = 5
    leave_drain_time: float = 5.0
    rpc_hold_timeout: float = 7.0


@dataclass(frozen=True)
class Autopilot:
    cleanup_dead_servers: bool = True
    last_contact_threshold: float = 0.2
    max_trailing_logs: int = 250
    min_quorum: int = 0
    server_stabilization_time: float = 10.0
    redundancy_zone_tag: str = ""
    disable_upgrade_migration: bool = False
    upgrade_version_tag: str = ""


@dataclass(frozen=True)
class Telemetry:
    prometheus_retention_time: float = 0.0
    disable_hostname: bool = False
    statsd_address: str = ""
    statsite_address: str = ""
    dogstatsd_addr: str = ""
    dogstatsd_tags: tuple[str, ...] = ()
    metrics_prefix: str = "consul"
    prefix_filter: tuple[str, ...] = ()
    allowed_prefixes: tuple[str, ...] = ()
    blocked_prefixes: tuple[str, ...] = ()
    filter_default: bool = True
    retry_failed_connection: bool = True
    enable_host_metrics: bool = False
    circonus: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HTTPConfig:
    block_endpoints: tuple[str, ...] = ()
    response_headers: Mapping[str, str] = field(default_factory=dict)
    #: CIDRs (normalised network text) allowed to call write endpoints; empty allows all.
    allow_write_http_from: tuple[str, ...] = ()
    use_cache: bool = True
    max_header_bytes: int = 0


@dataclass(frozen=True)
class UIMetricsProxy:
    base_url: str = ""
    add_headers: tuple[tuple[str, str], ...] = ()
    path_allowlist: tuple[str, ...] = ()


@dataclass(frozen=True)
class UIConfig:
    enabled: bool = False
    dir: str = ""
    content_path: str = "/ui/"
    metrics_provider: str = ""
    metrics_provider_files: tuple[str, ...] = ()
    metrics_provider_options_json: str = ""
    metrics_proxy: UIMetricsProxy = field(default_factory=UIMetricsProxy)
    dashboard_url_templates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GossipConfig:
    gossip_interval: float
    gossip_nodes: int
    probe_interval: float
    probe_timeout: float
    suspicion_mult: int
    retransmit_mult: int


@dataclass(frozen=True)
class TLSProtocolConfig:
    """One listener's TLS settings after `tls.defaults` was applied beneath it."""

    ca_file: str = ""
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_min_version: str = "TLSv1_2"
    tls_cipher_suites: tuple[str, ...] = ()
    verify_incoming: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False
    use_auto_cert: bool = False


@dataclass(frozen=True)
class TLSConfig:
    internal_rpc: TLSProtocolConfig = field(default_factory=TLSProtocolConfig)
    https: TLSProtocolConfig = field(default_factory=TLSProtocolConfig)
    grpc: TLSProtocolConfig = field(default_factory=TLSProtocolConfig)


@dataclass(frozen=True)
class ConnectConfig:
    enabled: bool = True
    ca_provider: str = ""
    ca_config: Mapping[str, Any] = field(default_factory=dict)
    enable_mesh_gateway_wan_federation: bool = False


@dataclass(frozen=True)
class RaftLogStore:
    backend: str = "boltdb"
    disable_log_cache: bool = False
    verification_enabled: bool = False
    verification_interval: float = 0.0
    boltdb_no_freelist_sync: bool = False
    wal_segment_size_mb: int = 64


@dataclass(frozen=True)
class RuntimeConfig:
    """Every setting the agent acts on. Build one with `proconsul.config.build`."""

    # -- identity and role
    dev: bool
    server: bool
    bootstrap: bool
    bootstrap_expect: int
    datacenter: str
    primary_datacenter: str
    node_name: str
    #: Lower-cased UUID, or "" when the agent should load or create one in `data_dir`.
    node_id: str
    node_meta: Mapping[str, str]
    data_dir: str
    read_replica: bool
    segment: str
    partition: str
    server_name: str

    # -- cluster addresses
    bind_addr: str
    advertise_addr: str
    advertise_addr_ipv4: str
    advertise_addr_ipv6: str
    advertise_addr_wan: str
    advertise_addr_wan_ipv4: str
    advertise_addr_wan_ipv6: str
    rpc_bind_addr: Address
    rpc_advertise_addr: Address
    serf_bind_addr_lan: Address
    serf_advertise_addr_lan: Address
    #: None when the WAN pool is off (`ports.serf_wan` <= 0).
    serf_bind_addr_wan: Address | None
    serf_advertise_addr_wan: Address | None
    tagged_addresses: Mapping[str, str]
    serf_lan_allowed_cidrs: tuple[str, ...]
    serf_wan_allowed_cidrs: tuple[str, ...]

    # -- client listeners
    client_addrs: tuple[str, ...]
    http_addrs: tuple[Address, ...]
    https_addrs: tuple[Address, ...]
    dns_addrs: tuple[Address, ...]
    grpc_addrs: tuple[Address, ...]
    grpc_tls_addrs: tuple[Address, ...]
    ports: Ports
    unix_sockets: Mapping[str, str]

    # -- DNS
    domain: str
    alt_domain: str
    recursors: tuple[str, ...]
    dns_config: DNSConfig

    # -- joining and leaving
    retry_join: tuple[str, ...]
    retry_interval: float
    retry_max: int
    retry_join_wan: tuple[str, ...]
    retry_interval_wan: float
    retry_max_wan: int
    rejoin_after_leave: bool
    leave_on_terminate: bool
    skip_leave_on_interrupt: bool
    reconnect_timeout: float
    reconnect_timeout_wan: float
    advertise_reconnect_timeout: float
    primary_gateways: tuple[str, ...]
    primary_gateways_interval: float
    gossip_lan: GossipConfig
    gossip_wan: GossipConfig

    # -- gossip encryption
    encrypt: str
    encrypt_verify_incoming: bool
    encrypt_verify_outgoing: bool
    disable_keyring_file: bool

    # -- logging
    log_level: str
    log_json: bool
    log_file: str
    log_rotate_bytes: int
    log_rotate_duration: float
    log_rotate_max_files: int
    log_sublevels: Mapping[str, str]
    enable_syslog: bool
    syslog_facility: str

    # -- definitions interpreted by the agent layer (snake_case dicts as in config files)
    services: tuple[Mapping[str, Any], ...]
    checks: tuple[Mapping[str, Any], ...]
    watches: tuple[Mapping[str, Any], ...]
    config_entries_bootstrap: tuple[Mapping[str, Any], ...]

    # -- features and safety switches
    enable_script_checks: bool
    enable_local_script_checks: bool
    disable_remote_exec: bool
    enable_debug: bool
    enable_agent_tls_for_checks: bool
    enable_central_service_config: bool
    ui_config: UIConfig
    #: Dev agents indent every JSON response, as Consul's do.
    pretty_json: bool
    connect: ConnectConfig
    peering_enabled: bool
    use_streaming_backend: bool
    rpc_enable_streaming: bool
    auto_encrypt: Mapping[str, Any]
    auto_config: Mapping[str, Any]
    experiments: tuple[str, ...]

    # -- tuning sections
    performance: Performance
    limits: Limits
    acl: ACLConfig
    autopilot: Autopilot
    telemetry: Telemetry
    http_config: HTTPConfig
    tls: TLSConfig

    # -- raft and server timings (seconds; raft timeouts already scaled by raft_multiplier)
    raft_protocol: int
    raft_snapshot_threshold: int
    raft_snapshot_interval: float
    raft_trailing_logs: int
    raft_logstore: RaftLogStore
    raft_election_timeout: float
    raft_heartbeat_timeout: float
    raft_leader_lease_timeout: float
    server_health_interval: float
    server_rejoin_age_max: float
    coordinate_update_period: float
    coordinate_update_batch_size: int
    coordinate_update_max_batches: int

    # -- agent behaviour
    session_ttl_min: float
    check_update_interval: float
    check_output_max_size: int
    discard_check_output: bool
    default_query_time: float
    max_query_time: float
    discovery_max_stale: float
    translate_wan_addrs: bool
    disable_coordinates: bool
    disable_update_check: bool
    disable_host_node_id: bool
    disable_anonymous_signature: bool
    disable_http_unprintable_char_filter: bool
    pid_file: str
    protocol: int
    auto_reload_config: bool
    ae_interval: float
    check_deregister_interval_min: float
    check_reap_interval: float
    sync_coordinate_rate_target: float
    sync_coordinate_interval_min: float
    cache_entry_fetch_rate: float
    cache_entry_fetch_max_burst: int
    xds_update_max_per_second: float

    # -- where it came from, for reload and file watching
    #: Every config file read, in merge order (directories expanded to their files).
    sources: tuple[str, ...]
    #: The `-config-file`/`-config-dir` arguments, which a file watcher should follow.
    config_paths: tuple[str, ...]
    #: The flags this configuration was built from; `reload(cfg.flags)` re-reads the same files.
    flags: AgentFlags
    #: The merged config tree (snake_case, config-file form) for keys without a typed field.
    raw: Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# Reading the merged config tree into these types


class ConfigTree:
    """Typed reads of the merged config tree, for filling the dataclasses above.

    `origin` maps each dotted key to the source that set it, so every error raised here names
    the file (or flag, or `-hcl` fragment) to fix. Warnings found while reading are appended to
    `warnings`, which the builder returns to the caller.
    """

    def __init__(self, data: dict[str, Any], origin: Mapping[str, str],
                 warnings: list[str]) -> None:
        self.data = data
        self.origin = origin
        self.warnings = warnings

    def get(self, path: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def is_set(self, path: str) -> bool:
        return self.get(path) is not None

    def fail(self, message: str, *paths: str) -> ConfigError:
        """An error naming, for each key involved that a user set, the source that set it."""
        by_source: dict[str, list[str]] = {}
        for path in paths:
            name = self.origin.get(path, DEFAULT_SOURCE_NAME)
            if name != DEFAULT_SOURCE_NAME:
                by_source.setdefault(name, []).append(path)
        if by_source:
            where = "; ".join(f"{', '.join(keys)} set in {name}"
                              for name, keys in by_source.items())
            message = f"{message} ({where})"
        return ConfigError(message)

    def s(self, path: str) -> str:
        return str(self.get(path, ""))

    def b(self, path: str, default: bool = False) -> bool:
        return bool(self.get(path, default))

    def i(self, path: str, default: int = 0) -> int:
        return int(self.get(path, default))

    def f(self, path: str, default: float = 0.0) -> float:
        return float(self.get(path, default))

    def d(self, path: str) -> float:
        value = self.get(path)
        return parse_duration(value) if value else 0.0

    def strs(self, path: str) -> tuple[str, ...]:
        return tuple(self.get(path, ()))

    def smap(self, path: str) -> dict[str, str]:
        return dict(self.get(path, {}))

    def rate(self, path: str) -> float:
        """Consul's rate limits: a negative value means no limit."""
        value = self.f(path)
        return float("inf") if value < 0 else value

    def port(self, path: str) -> int:
        value = self.get(path)
        return -1 if value is None or value <= 0 else int(value)

    def fill(self, cls: type[_T], prefix: str, **overrides: Any) -> _T:
        """Build a runtime dataclass whose field names are the config keys under `prefix`.

        Each field not given in `overrides` is read from the key of the same name and converted
        by the key's kind (durations to seconds, lists to tuples); an unset key takes the
        field's own default, or the kind's zero value.
        """
        values: dict[str, Any] = {}
        for fld in dataclasses.fields(cls):
            if fld.name in overrides:
                continue
            path = f"{prefix}.{fld.name}" if prefix else fld.name
            spec = spec_at(path)
            if not isinstance(spec, Field):
                raise TypeError(f"{cls.__name__}.{fld.name} has no config key; pass it")
            raw = self.get(path)
            if raw is not None:
                values[fld.name] = _convert(spec.kind, raw)
            elif fld.default is not dataclasses.MISSING:
                values[fld.name] = fld.default
            elif fld.default_factory is not dataclasses.MISSING:
                values[fld.name] = fld.default_factory()
            else:
                values[fld.name] = _ZERO[spec.kind]
        return cls(**values, **overrides)

    # -- addresses

    def addrs(self, path: str) -> list[str]:
        """Space-separated IPs and `unix://` paths, as Consul's address fields allow."""
        text = self.s(path)
        if "{{" in text:
            raise self.fail(f"{path}: error parsing {go_quote(text)}: "
                            "go-sockaddr templates are not supported", path)
        out = []
        for item in text.split():
            if item.startswith("unix://"):
                out.append(item)
                continue
            try:
                out.append(str(ipaddress.ip_address("::" if item == "[::]" else item)))
            except ValueError:
                raise self.fail(f"{path}: invalid ip address: {item}", path) from None
        return out

    def ips(self, path: str) -> list[str]:
        out = self.addrs(path)
        if any(a.startswith("unix://") for a in out):
            raise self.fail(f"{path} cannot be a unix socket", path)
        return out

    def first_ip(self, path: str) -> str | None:
        out = self.ips(path)
        if len(out) > 1:
            raise self.fail(f"{path}: multiple addresses found: {' '.join(out)}", path)
        return out[0] if out else None

    def cidrs(self, path: str, label: str) -> tuple[str, ...]:
        out = []
        for item in self.strs(path):
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise self.fail(f"{label}: invalid cidr: {item}", path) from None
        return tuple(out)

    def min_duration(self, path: str, minimum: float) -> float:
        value = self.d(path)
        if value < minimum:
            raise self.fail(f"{path}: duration '{self.s(path)}' cannot be less than: "
                            f"{format_duration(minimum)}", path)
        return value


_ZERO: dict[Kind, Any] = {
    Kind.STR: "", Kind.BOOL: False, Kind.INT: 0, Kind.UINT: 0, Kind.PORT: 0, Kind.FLOAT: 0.0,
    Kind.DURATION: 0.0, Kind.STR_LIST: (), Kind.MAP_LIST: (), Kind.STR_MAP: {},
    Kind.STR_LIST_MAP: {}, Kind.DURATION_MAP: {}, Kind.ANY_MAP: {},
}


def _convert(kind: Kind, raw: Any) -> Any:
    """A merged config value in the form RuntimeConfig holds it."""
    if kind is Kind.DURATION:
        return parse_duration(raw)
    if kind is Kind.DURATION_MAP:
        return {k: parse_duration(v) for k, v in raw.items()}
    if kind is Kind.FLOAT:
        return float(raw)
    if kind in LIST_KINDS:
        return tuple(raw)
    if kind in MAP_KINDS:
        return dict(raw)
    return raw
