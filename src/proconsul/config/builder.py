"""Merging config sources in Consul's order and turning the result into a RuntimeConfig.

Precedence is Consul's (`agent/config/builder.go`), lowest first: built-in defaults, `-dev`
defaults, list values from flags, config files and directories in command-line order, scalar
and map values from flags, then each `-hcl` fragment. List-valued flags go before the files so
that, with lists appended on merge, `-retry-join` addresses come first, as in Consul. Scalars
later in the order win, lists are appended, maps are merged key by key.

Each merged leaf remembers the source that set it, so an error found only after merging
(`bootstrap` together with `bootstrap_expect`, a bad datacenter name) still names the file.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from proconsul.config import defaults as dflt
from proconsul.config import runtime as rt
from proconsul.config.defaults import HostInfo
from proconsul.config.duration import go_quote
from proconsul.config.flags import AgentFlags, parse_agent_flags
from proconsul.config.runtime import ConfigTree
from proconsul.config.schema import (
    LIST_KINDS,
    MAP_KINDS,
    TOP,
    Field,
    Section,
    SectionList,
    SectionMap,
)
from proconsul.config.source import (
    Decoded,
    Source,
    check_definitions,
    decode,
    hcl_fragments,
    load_files,
)
from proconsul.errors import ConfigError

FLAGS_SOURCE_NAME = "command-line flags"
_ANY_ADDRS = ("0.0.0.0", "::", "[::]")
_BASIC_NAME = re.compile(r"^[a-z0-9_-]+$")
_DNS_INVALID = re.compile(r"[^A-Za-z0-9\-]+")
_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")
_CONTENT_PATH = re.compile(r"^[A-Za-z0-9/_-]+$")
_HAS_VERSION = re.compile(r"^/v\d+/$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SCRIPT_CHECK_WARNING = (
    "using enable-script-checks without ACLs and without allow_write_http_from is DANGEROUS, "
    "use enable-local-script-checks instead, see "
    "https://www.hashicorp.com/blog/protecting-consul-from-rce-risk-in-specific-configurations/"
)


# ---------------------------------------------------------------------------------------------
# Sources and merging


def _flag_sources(values: Mapping[str, Any]) -> tuple[Source, Source]:
    """Split flag values into the list part (merged before files) and the rest (after)."""
    lists = {k: v for k, v in values.items() if isinstance(v, list)}
    rest = {k: v for k, v in values.items() if not isinstance(v, list)}
    return Source(FLAGS_SOURCE_NAME, lists), Source(FLAGS_SOURCE_NAME, rest)


def collect_sources(flags: AgentFlags, warnings: list[str]) -> list[Source]:
    """Sources lowest precedence first, so merging them in list order is Consul's precedence."""
    flag_lists, flag_rest = _flag_sources(flags.values)
    out = [dflt.default_source()]
    if flags.dev:
        out.append(dflt.dev_source())
    out.append(flag_lists)
    out.extend(load_files(flags.config_paths, flags.config_format, warnings))
    out.append(flag_rest)
    out.extend(hcl_fragments(flags.hcl))
    return out


@dataclass
class Merged:
    """The merged config tree and, for each dotted key, the name of the source that set it."""

    data: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)


def _merge_section(dst: dict[str, Any], src: Mapping[str, Any], spec: Section, path: str,
                   name: str, merged: Merged) -> None:
    """Consul's merge: scalars replaced, lists appended, maps overlaid, sections recursed."""
    for key, value in src.items():
        sub = spec.fields[key]
        key_path = f"{path}.{key}" if path else key
        if isinstance(sub, Section):
            _merge_section(dst.setdefault(key, {}), value, sub, key_path, name, merged)
            continue
        if isinstance(sub, SectionList) or (isinstance(sub, Field) and sub.kind in LIST_KINDS):
            current = dst.setdefault(key, [])
            for item in value:
                merged.origin[f"{key_path}[{len(current)}]"] = name
                current.append(item)
        elif isinstance(sub, SectionMap) or (isinstance(sub, Field) and sub.kind in MAP_KINDS):
            current_map = dst.setdefault(key, {})
            for entry, item in value.items():
                merged.origin[f"{key_path}.{entry}"] = name
                current_map[entry] = item
        else:
            dst[key] = value
        merged.origin[key_path] = name


def merge(decoded: Iterable[Decoded]) -> Merged:
    """Stack checked sources; provenance is kept so later errors can still name a file."""
    merged = Merged()
    for one in decoded:
        _merge_section(merged.data, one.data, TOP, "", one.name, merged)
    return merged


# ---------------------------------------------------------------------------------------------
# Deriving and checking values that depend on more than one key


def _is_any(addr: str | None) -> bool:
    return addr in _ANY_ADDRS


def _listeners(explicit: list[str], clients: list[str], port: int) -> tuple[rt.Address, ...]:
    """Consul's `makeAddrs`: explicit per-listener addresses, else the client addresses."""
    if port <= 0:
        return ()
    chosen = explicit or clients
    return tuple((a, 0) if a.startswith("unix://") else (a, port) for a in chosen)


def _basic_name(r: ConfigTree, label: str, value: str, path: str, allow_empty: bool) -> None:
    if not value:
        if allow_empty:
            return
        raise r.fail(f"{label} cannot be empty", path)
    if not _BASIC_NAME.match(value):
        raise r.fail(f"{label} can only contain lowercase alphanumeric, - or _ characters. "
                     f"received: {go_quote(value)}", path)


def _check_node_meta(r: ConfigTree, meta: Mapping[str, str]) -> None:
    def bad(reason: str, key: str) -> ConfigError:
        return r.fail(f"node_meta invalid: {reason}", f"node_meta.{key}")

    if len(meta) > 64:
        raise r.fail("node_meta invalid: Node metadata cannot contain more than 64 key/value "
                     "pairs", "node_meta")
    for key, value in meta.items():
        if key == "":
            raise bad("Key cannot be blank", key)
        if not _META_KEY.match(key):
            raise bad("Key contains invalid characters", key)
        if len(key) > 128:
            raise bad("Key is too long (limit: 128 characters)", key)
        if key.startswith("consul-"):
            raise bad("Key prefix 'consul-' is reserved for internal use", key)
        if len(value) > 512:
            raise bad("Value is too long (limit: 512 characters)", key)


def _check_encrypt(r: ConfigTree, key: str) -> None:
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError) as err:
        raise r.fail(f"encrypt has invalid key: {err}", "encrypt") from None
    if len(raw) not in (16, 24, 32):
        raise r.fail("encrypt has invalid key: key size must be 16, 24 or 32 bytes", "encrypt")


def _check_node_id(r: ConfigTree, node_id: str) -> None:
    if node_id and not _UUID.match(node_id):
        reason = ("uuid string is wrong length" if len(node_id) != 36
                  else "uuid is improperly formatted")
        raise r.fail(f"node_id: {reason}", "node_id")


def _absolute_url_path(p: str) -> bool:
    parts = urlsplit(p)
    return (p.startswith("/") and not parts.scheme and not parts.netloc and not parts.query
            and not parts.fragment and parts.path == p)


def _check_ui(r: ConfigTree, ui: rt.UIConfig, dev: bool) -> None:
    if not _CONTENT_PATH.match(ui.content_path):
        raise r.fail("ui-content-path can only contain alphanumeric, -, _, or /. received: "
                     f"{go_quote(ui.content_path)}", "ui_config.content_path")
    if _HAS_VERSION.match(ui.content_path):
        raise r.fail("ui-content-path cannot have 'v[0-9]'. received: "
                     f"{go_quote(ui.content_path)}", "ui_config.content_path")
    _basic_name(r, "ui_config.metrics_provider", ui.metrics_provider,
                "ui_config.metrics_provider", True)
    if ui.metrics_provider_options_json:
        try:
            parsed = json.loads(ui.metrics_provider_options_json)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise r.fail("ui_config.metrics_provider_options_json must be empty or a string "
                         "containing a valid JSON object. received: "
                         f"{go_quote(ui.metrics_provider_options_json)}",
                         "ui_config.metrics_provider_options_json")
    base = ui.metrics_proxy.base_url
    if base and urlsplit(base).scheme not in ("http", "https"):
        raise r.fail("ui_config.metrics_proxy.base_url must be a valid http or https URL. "
                     f"received: {go_quote(base)}", "ui_config.metrics_proxy.base_url")
    for allowed in ui.metrics_proxy.path_allowlist:
        if not _absolute_url_path(allowed):
            raise r.fail("ui_config.metrics_proxy.path_allowlist: path "
                         f"{go_quote(allowed)} is not an absolute path",
                         "ui_config.metrics_proxy.path_allowlist")
    for name, url in ui.dashboard_url_templates.items():
        _basic_name(r, "ui_config.dashboard_url_templates key names", name,
                    "ui_config.dashboard_url_templates", False)
        if urlsplit(url).scheme not in ("http", "https"):
            raise r.fail("ui_config.dashboard_url_templates values must be a valid http or "
                         f"https URL. received: {go_quote(url)}",
                         f"ui_config.dashboard_url_templates.{name}")
    if not dev and ui.enabled and ui.dir:
        raise r.fail(
            "Both the ui_config.enabled and ui_config.dir (or -ui and -ui-dir) were specified, "
            "please provide only one.\nIf trying to use your own web UI resources, use "
            "ui_config.dir or the -ui-dir flag.\nThe web UI is included in the binary so use "
            "ui_config.enabled or the -ui flag to enable it",
            "ui_config.enabled", "ui_config.dir")


def _content_path(value: str) -> str:
    return "/" + value.strip("/") + "/" if value else "/ui/"


def _tls_config(r: ConfigTree) -> rt.TLSConfig:
    for stanza in ("defaults", "https", "grpc"):
        if r.is_set(f"tls.{stanza}.verify_server_hostname"):
            raise r.fail("verify_server_hostname is only valid in the tls.internal_rpc stanza",
                         f"tls.{stanza}.verify_server_hostname")
    if r.is_set("tls.grpc.verify_outgoing"):
        raise r.fail("verify_outgoing is not valid in the tls.grpc stanza",
                     "tls.grpc.verify_outgoing")
    for stanza in ("defaults", "https", "internal_rpc"):
        if r.is_set(f"tls.{stanza}.use_auto_cert"):
            raise r.fail("use_auto_cert is only valid in the tls.grpc stanza",
                         f"tls.{stanza}.use_auto_cert")

    def pick(stanza: str, key: str) -> Any:
        own = r.get(f"tls.{stanza}.{key}")
        return own if own is not None else r.get(f"tls.defaults.{key}")

    def protocol(stanza: str) -> rt.TLSProtocolConfig:
        version = pick(stanza, "tls_min_version") or "TLSv1_2"
        suites_text = pick(stanza, "tls_cipher_suites")
        suites: tuple[str, ...] = ()
        if suites_text is not None and suites_text.strip():
            if version == "TLSv1_3":
                raise r.fail(f"tls.{stanza}.tls_cipher_suites: TLS 1.3 cipher suites are not "
                             "configurable", f"tls.{stanza}.tls_cipher_suites")
            suites = tuple(s.strip() for s in suites_text.split(","))
        outgoing = False if stanza == "grpc" else bool(pick(stanza, "verify_outgoing"))
        hostname = stanza == "internal_rpc" and r.b("tls.internal_rpc.verify_server_hostname")
        return rt.TLSProtocolConfig(
            ca_file=pick(stanza, "ca_file") or "", ca_path=pick(stanza, "ca_path") or "",
            cert_file=pick(stanza, "cert_file") or "", key_file=pick(stanza, "key_file") or "",
            tls_min_version=version, tls_cipher_suites=suites,
            verify_incoming=bool(pick(stanza, "verify_incoming")),
            # Setting only verify_server_hostname must still force TLS (CVE-2018-19653).
            verify_outgoing=outgoing or hostname, verify_server_hostname=hostname,
            use_auto_cert=stanza == "grpc" and r.b("tls.grpc.use_auto_cert"),
        )

    return rt.TLSConfig(internal_rpc=protocol("internal_rpc"), https=protocol("https"),
                        grpc=protocol("grpc"))


def _telemetry(r: ConfigTree) -> rt.Telemetry:
    """Split `prefix_filter` rules into allowed and blocked prefixes, warning on bad rules."""
    prefix = r.s("telemetry.metrics_prefix")
    allowed: list[str] = []
    blocked: list[str] = []
    rpc_metric = f"{prefix}.rpc.server.call"
    mentioned = False
    for rule in r.strs("telemetry.prefix_filter"):
        if not rule:
            r.warnings.append("Cannot have empty filter rule in prefix_filter")
        elif rule[0] in "+-":
            mentioned = mentioned or rule[1:] == rpc_metric
            (allowed if rule[0] == "+" else blocked).append(rule[1:])
        else:
            r.warnings.append(f"Filter rule must begin with either '+' or '-': {go_quote(rule)}")
    if not mentioned:
        # Consul keeps this high-cardinality metric off unless a rule names it.
        blocked.append(rpc_metric)
    circonus = {k: v for k, v in r.get("telemetry", {}).items() if k.startswith("circonus_")}
    return r.fill(rt.Telemetry, "telemetry", allowed_prefixes=tuple(allowed),
                  blocked_prefixes=tuple(blocked), circonus=circonus)


def _service_id(service: Mapping[str, Any]) -> str:
    return str(service.get("id") or service.get("name") or "")


def _check_services(r: ConfigTree, services: Sequence[Mapping[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for index, service in enumerate(services):
        sid = _service_id(service)
        if not sid:
            continue
        if sid in seen:
            raise r.fail(f"service {go_quote(sid)}: duplicate service ID {go_quote(sid)}",
                         f"services[{seen[sid]}]", f"services[{index}]")
        seen[sid] = index
        if ("port" in service or "address" in service) and "socket_path" in service:
            raise r.fail(f"service {service.get('name', '')} cannot have both socket path "
                         f"{service['socket_path']} and address/port", f"services[{index}]")
        connect = service.get("connect") or {}
        sidecar = connect.get("sidecar_service")
        if sidecar is not None:
            if "id" in sidecar:
                raise r.fail("sidecar_service can't specify an ID", f"services[{index}]")
            if (sidecar.get("connect") or {}).get("sidecar_service") is not None:
                raise r.fail("sidecar_service can't have a nested sidecar_service",
                             f"services[{index}]")


@dataclass(frozen=True)
class _Network:
    bind: str
    advertise_lan: str
    advertise_wan: str
    lan_ipv4: str
    lan_ipv6: str
    wan_ipv4: str
    wan_ipv6: str


def _detect(any_addr: str, host: HostInfo) -> str:
    """Consul advertises the one private (IPv6: public) address when bound to the any-address."""
    v6 = ipaddress.ip_address(any_addr).version == 6
    kind = "public IPv6" if v6 else "private IPv4"
    try:
        found = (host.public_ipv6 if v6 else host.private_ipv4)()
    except OSError as err:
        raise ConfigError(f"Error detecting {kind} address: {err}") from None
    if not found:
        raise ConfigError(f"No {kind} address found")
    if len(found) > 1:
        raise ConfigError(f"Multiple {kind} addresses found. Please configure one with 'bind' "
                          "and/or 'advertise'.")
    return found[0]


def _family_ip(r: ConfigTree, path: str, fallback: str | None, version: int) -> str:
    value = r.first_ip(path)
    if value is None:
        if fallback is None or ipaddress.ip_address(fallback).version != version:
            return ""
        return fallback
    if ipaddress.ip_address(value).version != version:
        raise r.fail(f"{path} must be an ipv{version} address", path)
    return value


def _network(r: ConfigTree, host: HostInfo) -> _Network:
    binds = r.addrs("bind_addr")
    if not binds:
        raise r.fail("bind_addr cannot be empty", "bind_addr")
    if len(binds) > 1:
        raise r.fail("bind_addr cannot contain multiple addresses. Use "
                     "'addresses.{dns,http,https}' instead.", "bind_addr")
    if binds[0].startswith("unix://"):
        raise r.fail("bind_addr cannot be a unix socket", "bind_addr")
    if _is_any(r.s("advertise_addr")):
        raise r.fail("Advertise address cannot be 0.0.0.0, :: or [::]", "advertise_addr")
    if _is_any(r.s("advertise_addr_wan")):
        raise r.fail("Advertise WAN address cannot be 0.0.0.0, :: or [::]",
                     "advertise_addr_wan")
    bind = binds[0]
    lan = r.first_ip("advertise_addr") or bind
    if _is_any(lan):
        lan = _detect(lan, host)
    wan = r.first_ip("advertise_addr_wan") or lan
    return _Network(
        bind=bind, advertise_lan=lan, advertise_wan=wan,
        lan_ipv4=_family_ip(r, "advertise_addr_ipv4", lan, 4),
        lan_ipv6=_family_ip(r, "advertise_addr_ipv6", lan, 6),
        wan_ipv4=_family_ip(r, "advertise_addr_wan_ipv4", wan, 4),
        wan_ipv6=_family_ip(r, "advertise_addr_wan_ipv6", wan, 6),
    )


def _ports(r: ConfigTree) -> rt.Ports:
    grpc_tls = r.port("ports.grpc_tls")
    if not r.is_set("ports.grpc_tls") and r.b("server"):
        grpc_tls = dflt.SERVER_GRPC_TLS_PORT
    ports = rt.Ports(
        dns=r.port("ports.dns"), http=r.port("ports.http"), https=r.port("ports.https"),
        serf_lan=r.port("ports.serf_lan"), serf_wan=r.port("ports.serf_wan"),
        server=r.port("ports.server"), grpc=r.port("ports.grpc"), grpc_tls=grpc_tls,
        proxy_min_port=r.port("ports.proxy_min_port"),
        proxy_max_port=r.port("ports.proxy_max_port"),
        sidecar_min_port=r.port("ports.sidecar_min_port"),
        sidecar_max_port=r.port("ports.sidecar_max_port"),
        expose_min_port=r.port("ports.expose_min_port"),
        expose_max_port=r.port("ports.expose_max_port"),
    )
    if ports.server <= 0:
        raise r.fail("server-port must be greater than zero", "ports.server")
    if ports.serf_lan <= 0:
        raise r.fail("serf-lan-port must be greater than zero", "ports.serf_lan")
    for kind in ("proxy", "sidecar", "expose"):
        low, high = f"ports.{kind}_min_port", f"ports.{kind}_max_port"
        if getattr(ports, f"{kind}_max_port") < getattr(ports, f"{kind}_min_port"):
            raise r.fail(f"{kind}_min_port must be less than {kind}_max_port. To disable, set "
                         "both to zero.", low, high)
    return ports


def _recursors(r: ConfigTree) -> tuple[str, ...]:
    out: list[str] = []
    for entry in r.strs("recursors"):
        for addr in entry.split():
            if addr.startswith("unix://"):
                raise r.fail(f"DNS Recursors cannot be unix sockets: {addr}", "recursors")
            if _is_any(addr):
                raise r.fail("DNS recursor address cannot be 0.0.0.0, :: or [::]", "recursors")
            if addr not in out:
                out.append(addr)
    return tuple(out)


def _unique_listeners(groups: Sequence[tuple[str, str, Iterable[rt.Address]]]) -> None:
    """Consul refuses two listeners on one address and port; name the clash as Consul does."""
    in_use: dict[str, str] = {}
    for label, network, addrs in groups:
        for host, port in addrs:
            shown = host if host.startswith("unix://") else (
                f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            key = f"{network}:{shown}"
            if key in in_use:
                raise ConfigError(f"{label} address {shown} already configured for "
                                  f"{in_use[key]}")
            in_use[key] = label


def _warn_bootstrap(r: ConfigTree, server: bool, dev: bool, bootstrap: bool, expect: int) -> None:
    if server and not dev and not bootstrap and expect == 2:
        r.warnings.append(
            "bootstrap_expect = 2: A cluster with 2 servers will provide no failure tolerance. "
            "See https://www.consul.io/docs/internals/consensus.html#deployment-table")
    if server and not bootstrap and expect > 2 and expect % 2 == 0:
        r.warnings.append(
            "bootstrap_expect is even number: A cluster with an even number of servers does not "
            "achieve optimum fault tolerance. See "
            "https://www.consul.io/docs/internals/consensus.html#deployment-table")
    if server and bootstrap and expect == 0:
        r.warnings.append("bootstrap = true: do not enable unless necessary")
    if server and not dev and not bootstrap and expect > 1:
        r.warnings.append(f"bootstrap_expect > 0: expecting {expect} servers")


def _check_role(r: ConfigTree, server: bool, dev: bool, bootstrap: bool, expect: int) -> None:
    if bootstrap and not server:
        raise r.fail("'bootstrap = true' requires 'server = true'", "bootstrap", "server")
    if expect < 0:
        raise r.fail(f"bootstrap_expect cannot be {expect}. Must be greater than or equal to "
                     "zero", "bootstrap_expect")
    if expect > 0 and not server:
        raise r.fail("'bootstrap_expect > 0' requires 'server = true'", "bootstrap_expect",
                     "server")
    if expect > 0 and dev:
        raise r.fail("'bootstrap_expect > 0' not allowed in dev mode", "bootstrap_expect")
    if expect > 0 and bootstrap:
        raise r.fail("'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive",
                     "bootstrap_expect", "bootstrap")


def _check_data_dir(r: ConfigTree, data_dir: str, dev: bool) -> None:
    if dev:
        return
    if not data_dir:
        raise ConfigError("data_dir cannot be empty")
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise r.fail(f"data_dir {go_quote(data_dir)} is not a directory", "data_dir")


def _node_name(r: ConfigTree, host: HostInfo) -> str:
    name = r.s("node_name")
    if not name:
        try:
            name = host.hostname()
        except OSError as err:
            raise ConfigError(f"node_name: {err}") from None
    name = name.strip()
    if not name:
        raise ConfigError("node_name cannot be empty")
    if _DNS_INVALID.search(name):
        r.warnings.append(f"Node name {go_quote(name)} will not be discoverable via DNS due to "
                          "invalid characters. Valid characters include all alpha-numerics "
                          "and dashes.")
    elif len(name) > 63:
        r.warnings.append(f"Node name {go_quote(name)} will not be discoverable via DNS due to "
                          "it being too long. Valid lengths are between 1 and 63 bytes.")
    return name


def _alt_domain_ok(domain: str, datacenter: str) -> bool:
    dc = re.escape(datacenter)
    return re.match(rf"^(service|connect|node|query|addr|{dc})\.({dc}\.)?", domain) is None


def _check_cluster(r: ConfigTree, server: bool, federation: bool, connect_enabled: bool,
                   datacenter: str, primary_dc: str) -> None:
    """Checks on server-only and federation settings, in Consul's order."""
    if federation and not connect_enabled:
        raise r.fail("'connect.enable_mesh_gateway_wan_federation=true' requires "
                     "'connect.enabled=true'", "connect.enable_mesh_gateway_wan_federation")
    if federation and not server:
        raise r.fail("'connect.enable_mesh_gateway_wan_federation = true' requires "
                     "'server = true'", "connect.enable_mesh_gateway_wan_federation")
    if federation and r.strs("retry_join_wan"):
        raise r.fail("'retry_join_wan' is incompatible with "
                     "'connect.enable_mesh_gateway_wan_federation = true'", "retry_join_wan")
    if r.strs("primary_gateways") and not server:
        raise r.fail("'primary_gateways' requires 'server = true'", "primary_gateways")
    if r.strs("primary_gateways") and primary_dc == datacenter:
        raise r.fail("'primary_gateways' should only be configured in a secondary datacenter",
                     "primary_gateways")
    ca_provider = r.s("connect.ca_provider")
    if ca_provider not in ("", "consul", "vault", "aws-pca"):
        raise r.fail(f"{ca_provider} is not a valid CA provider", "connect.ca_provider")
    if server and r.s("raft_logstore.backend") not in ("boltdb", "wal"):
        raise r.fail("raft_logstore.backend must be one of 'boltdb' or 'wal'",
                     "raft_logstore.backend")
    if server and not 1 <= r.i("raft_logstore.wal.segment_size_mb") <= 1024:
        raise r.fail("raft_logstore.wal.segment_size_mb must be between 1 and 1024 (1GiB)",
                     "raft_logstore.wal.segment_size_mb")
    if server and r.b("auto_encrypt.tls"):
        raise r.fail("auto_encrypt.tls can only be used on a client.", "auto_encrypt.tls")
    if not server and r.b("auto_encrypt.allow_tls"):
        raise r.fail("auto_encrypt.allow_tls can only be used on a server.",
                     "auto_encrypt.allow_tls")
    if server and r.d("advertise_reconnect_timeout"):
        raise r.fail("advertise_reconnect_timeout can only be used on a client",
                     "advertise_reconnect_timeout")
    if r.b("auto_config.enabled") and r.b("auto_encrypt.tls"):
        raise r.fail("both auto_encrypt.tls and auto_config.enabled cannot be set to true.",
                     "auto_config.enabled", "auto_encrypt.tls")


def _check_limits(r: ConfigTree) -> None:
    """Counts that Consul requires to be positive or non-negative."""
    if r.i("check_output_max_size") < 1:
        raise r.fail("check_output_max_size must be positive, to discard check output use the "
                     "discard_check_output flag", "check_output_max_size")
    for path in ("autopilot.max_trailing_logs", "dns_config.udp_answer_limit",
                 "dns_config.a_record_limit"):
        if r.i(path) < 0:
            raise r.fail(f"{path} cannot be {r.i(path)}. Must be greater than or equal to zero",
                         path)
    for path in ("cache.entry_fetch_max_burst", "cache.entry_fetch_rate"):
        value = r.get(path)
        if value is not None and value <= 0:
            raise r.fail(f"{path} must be strictly positive, was: {value:g}", path)


def _section_values(r: ConfigTree, server: bool) -> dict[str, Any]:
    """The nested sections of RuntimeConfig, each filled from its config section."""
    allow_write = r.cidrs("http_config.allow_write_http_from", "allow_write_http_from")
    multiplier = r.i("performance.raft_multiplier")
    if not 1 <= multiplier <= dflt.MAX_RAFT_MULTIPLIER:
        raise r.fail(f"performance.raft_multiplier cannot be {multiplier}. Must be between 1 "
                     f"and {dflt.MAX_RAFT_MULTIPLIER}", "performance.raft_multiplier")
    return {
        "dns_config": r.fill(rt.DNSConfig, "dns_config", soa=r.fill(rt.SOAConfig, "dns_config.soa"),
                             recursor_strategy=r.s("dns_config.recursor_strategy") or "sequential"),
        "gossip_lan": r.fill(rt.GossipConfig, "gossip_lan"),
        "gossip_wan": r.fill(rt.GossipConfig, "gossip_wan"),
        "performance": r.fill(rt.Performance, "performance"),
        "limits": r.fill(
            rt.Limits, "limits", rpc_rate=r.rate("limits.rpc_rate"),
            request_limits_mode=r.s("limits.request_limits.mode"),
            request_limits_read_rate=r.rate("limits.request_limits.read_rate"),
            request_limits_write_rate=r.rate("limits.request_limits.write_rate")),
        "acl": r.fill(rt.ACLConfig, "acl", tokens=r.fill(rt.ACLTokens, "acl.tokens")),
        "autopilot": r.fill(rt.Autopilot, "autopilot"),
        "telemetry": _telemetry(r),
        "http_config": r.fill(rt.HTTPConfig, "http_config", allow_write_http_from=allow_write),
        "tls": _tls_config(r),
        "raft_logstore": rt.RaftLogStore(
            backend=r.s("raft_logstore.backend"),
            disable_log_cache=r.b("raft_logstore.disable_log_cache"),
            verification_enabled=r.b("raft_logstore.verification.enabled"),
            verification_interval=r.d("raft_logstore.verification.interval"),
            boltdb_no_freelist_sync=r.b("raft_logstore.boltdb.no_freelist_sync"),
            wal_segment_size_mb=r.i("raft_logstore.wal.segment_size_mb")),
        "unix_sockets": r.smap("unix_sockets"),
        "auto_encrypt": dict(r.get("auto_encrypt", {})),
        "auto_config": dict(r.get("auto_config", {})),
        "peering_enabled": r.b("peering.enabled"),
        "use_streaming_backend": r.b("use_streaming_backend", True),
        "rpc_enable_streaming": r.b("rpc.enable_streaming", server),
        "config_entries_bootstrap": tuple(r.get("config_entries.bootstrap", ())),
        "cache_entry_fetch_rate": r.f("cache.entry_fetch_rate", float("inf")),
        "cache_entry_fetch_max_burst": r.i("cache.entry_fetch_max_burst", 2),
        "xds_update_max_per_second": r.f("xds.update_max_per_second"),
    }


def _timing_values(r: ConfigTree, dev: bool) -> dict[str, Any]:
    """Intervals users cannot set, and Raft timeouts scaled by the raft multiplier."""
    timings = dflt.DEV_SERVER_TIMINGS if dev else dflt.SERVER_TIMINGS
    scale = r.i("performance.raft_multiplier")
    fixed = dflt.AGENT_INTERVALS
    return {
        "raft_election_timeout": timings.raft_election_timeout * scale,
        "raft_heartbeat_timeout": timings.raft_heartbeat_timeout * scale,
        "raft_leader_lease_timeout": timings.raft_leader_lease_timeout * scale,
        "server_health_interval": timings.server_health_interval,
        "coordinate_update_period": timings.coordinate_update_period,
        "coordinate_update_batch_size": timings.coordinate_update_batch_size,
        "coordinate_update_max_batches": timings.coordinate_update_max_batches,
        "ae_interval": fixed.ae_interval,
        "check_deregister_interval_min": fixed.check_deregister_interval_min,
        "check_reap_interval": fixed.check_reap_interval,
        # internal knobs Consul still reads from user config (its tests shorten them)
        "sync_coordinate_rate_target": (r.f("sync_coordinate_rate_target")
                                        if r.is_set("sync_coordinate_rate_target")
                                        else fixed.sync_coordinate_rate_target),
        "sync_coordinate_interval_min": (r.d("sync_coordinate_interval_min")
                                         if r.is_set("sync_coordinate_interval_min")
                                         else fixed.sync_coordinate_interval_min),
        "reconnect_timeout": r.min_duration("reconnect_timeout", dflt.MIN_RECONNECT_TIMEOUT),
        "reconnect_timeout_wan": r.min_duration("reconnect_timeout_wan",
                                                dflt.MIN_RECONNECT_TIMEOUT),
        "server_rejoin_age_max": r.min_duration("server_rejoin_age_max",
                                                dflt.MIN_SERVER_REJOIN_AGE_MAX),
    }


def _address_values(r: ConfigTree, host: HostInfo, ports: rt.Ports) -> dict[str, Any]:
    """Bind, advertise and listener addresses, derived as Consul derives them."""
    net = _network(r, host)
    clients = r.ips("client_addr")
    if not clients:
        r.warnings.append("client_addr is empty, client services (DNS, HTTP, HTTPS, GRPC) will "
                          "not be listening for connections")
    listeners = {name: _listeners(r.addrs(f"addresses.{name}"), clients, getattr(ports, name))
                 for name in ("dns", "http", "https", "grpc", "grpc_tls")}
    if any(h.startswith("unix://") for h, _ in listeners["dns"]):
        raise r.fail("DNS address cannot be a unix socket", "addresses.dns")
    wan_on = ports.serf_wan > 0
    rpc_advertise = (net.advertise_lan, ports.server)
    serf_adv_lan = (net.advertise_lan, ports.serf_lan)
    serf_adv_wan = (net.advertise_wan, ports.serf_wan) if wan_on else None
    _unique_listeners([
        ("DNS", "tcp", listeners["dns"]), ("DNS", "udp", listeners["dns"]),
        ("HTTP", "tcp", listeners["http"]), ("HTTPS", "tcp", listeners["https"]),
        ("RPC Advertise", "tcp", [rpc_advertise]),
        ("Serf Advertise LAN", "tcp", [serf_adv_lan]),
        ("Serf Advertise WAN", "tcp", [serf_adv_wan] if serf_adv_wan else []),
    ])
    tagged = r.smap("tagged_addresses")
    tagged.update(lan=net.advertise_lan, wan=net.advertise_wan)
    for key, value in (("lan_ipv4", net.lan_ipv4), ("lan_ipv6", net.lan_ipv6),
                       ("wan_ipv4", net.wan_ipv4), ("wan_ipv6", net.wan_ipv6)):
        if value:
            tagged[key] = value
    return {
        "bind_addr": net.bind, "advertise_addr": net.advertise_lan,
        "advertise_addr_ipv4": net.lan_ipv4, "advertise_addr_ipv6": net.lan_ipv6,
        "advertise_addr_wan": net.advertise_wan, "advertise_addr_wan_ipv4": net.wan_ipv4,
        "advertise_addr_wan_ipv6": net.wan_ipv6,
        "rpc_bind_addr": (net.bind, ports.server), "rpc_advertise_addr": rpc_advertise,
        "serf_bind_addr_lan": (r.first_ip("serf_lan") or net.bind, ports.serf_lan),
        "serf_advertise_addr_lan": serf_adv_lan,
        "serf_bind_addr_wan": (r.first_ip("serf_wan") or net.bind, ports.serf_wan)
        if wan_on else None,
        "serf_advertise_addr_wan": serf_adv_wan, "tagged_addresses": tagged,
        "serf_lan_allowed_cidrs": r.cidrs("serf_lan_allowed_cidrs", "serf_lan_allowed_cidrs"),
        "serf_wan_allowed_cidrs": r.cidrs("serf_wan_allowed_cidrs", "serf_wan_allowed_cidrs"),
        "client_addrs": tuple(clients), "http_addrs": listeners["http"],
        "https_addrs": listeners["https"], "dns_addrs": listeners["dns"],
        "grpc_addrs": listeners["grpc"], "grpc_tls_addrs": listeners["grpc_tls"],
        "ports": ports, "recursors": _recursors(r),
    }


def _resolve(r: ConfigTree, flags: AgentFlags, host: HostInfo,
             sources: Sequence[str]) -> rt.RuntimeConfig:
    """Derive every runtime value from the merged tree, checking what needs the whole tree."""
    dev, server = flags.dev, r.b("server")
    if r.i("raft_protocol") != 3:
        raise r.fail(f"raft_protocol version {r.i('raft_protocol')} is not supported by this "
                     "version of Consul", "raft_protocol")
    datacenter = r.s("datacenter").lower()
    _basic_name(r, "datacenter", datacenter, "datacenter", False)
    _check_data_dir(r, r.s("data_dir"), dev)
    addresses = _address_values(r, host, _ports(r))
    bootstrap, expect = r.b("bootstrap"), r.i("bootstrap_expect")
    if expect == 1:
        bootstrap, expect = True, 0
        r.warnings.append("BootstrapExpect is set to 1; this is the same as Bootstrap mode.")
    _check_role(r, server, dev, bootstrap, expect)
    primary_dc = r.s("primary_datacenter").lower() or datacenter
    _basic_name(r, "primary_datacenter", primary_dc, "primary_datacenter", True)
    if not _alt_domain_ok(r.s("alt_domain"), datacenter):
        raise r.fail("alt_domain cannot start with {service,connect,node,query,addr,"
                     f"{datacenter}}}", "alt_domain")
    _check_node_meta(r, r.smap("node_meta"))
    if r.s("encrypt"):
        _check_encrypt(r, r.s("encrypt"))
    node_id = r.s("node_id").lower()
    _check_node_id(r, node_id)
    _check_limits(r)
    connect_enabled = (r.b("connect.enabled") or r.b("auto_encrypt.allow_tls")
                       or r.b("auto_config.enabled"))
    federation = r.b("connect.enable_mesh_gateway_wan_federation")
    _check_cluster(r, server, federation, connect_enabled, datacenter, primary_dc)
    ui = r.fill(
        rt.UIConfig, "ui_config", content_path=_content_path(r.s("ui_config.content_path")),
        metrics_proxy=rt.UIMetricsProxy(
            base_url=r.s("ui_config.metrics_proxy.base_url"),
            add_headers=tuple((h.get("name", ""), h.get("value", ""))
                              for h in r.get("ui_config.metrics_proxy.add_headers", ())),
            path_allowlist=r.strs("ui_config.metrics_proxy.path_allowlist") or (
                ("/api/v1/query", "/api/v1/query_range")
                if r.s("ui_config.metrics_provider") == "prometheus" else ())))
    _check_ui(r, ui, dev)
    services = tuple(r.get("services", ()))
    _check_services(r, services)
    sections = _section_values(r, server)
    script_checks = r.b("enable_script_checks")
    allow_write = sections["http_config"].allow_write_http_from
    if script_checks and not r.b("acl.enabled") and not allow_write:
        r.warnings.append(_SCRIPT_CHECK_WARNING)
    _warn_bootstrap(r, server, dev, bootstrap, expect)
    tls = sections["tls"]
    if ((tls.grpc.cert_file or tls.grpc.use_auto_cert) and addresses["ports"].grpc > 0
            and not r.is_set("ports.grpc_tls")):
        raise r.fail("the `ports.grpc` listener no longer supports TLS. Use `ports.grpc_tls` "
                     "instead. This message is appearing because GRPC is configured to use "
                     "TLS, but `ports.grpc_tls` is not defined", "ports.grpc")
    return r.fill(
        rt.RuntimeConfig, "", dev=dev, server=server, bootstrap=bootstrap,
        bootstrap_expect=expect, datacenter=datacenter, primary_datacenter=primary_dc,
        node_name=_node_name(r, host), node_id=node_id, log_level=r.s("log_level").upper(),
        leave_on_terminate=r.b("leave_on_terminate", not server),
        skip_leave_on_interrupt=r.b("skip_leave_on_interrupt", server),
        services=services, checks=tuple(r.get("checks", ())),
        enable_local_script_checks=r.b("enable_local_script_checks", script_checks),
        ui_config=ui, pretty_json=dev,
        connect=r.fill(rt.ConnectConfig, "connect", enabled=connect_enabled,
                       enable_mesh_gateway_wan_federation=federation),
        sources=tuple(sources), config_paths=flags.config_paths, flags=flags, raw=r.data,
        **addresses, **sections, **_timing_values(r, dev),
    )


# ---------------------------------------------------------------------------------------------
# Public entry points


def build(flags: AgentFlags, *, host: HostInfo | None = None
          ) -> tuple[rt.RuntimeConfig, list[str]]:
    """Load every source the flags name and resolve them; returns the config and warnings."""
    warnings: list[str] = []
    sources = collect_sources(flags, warnings)
    decoded = []
    for source in sources:
        one = decode(source)
        warnings.extend(one.warnings)
        check_definitions(one)
        decoded.append(one)
    merged = merge(decoded)
    resolver = ConfigTree(merged.data, merged.origin, warnings)
    files = [s.name for s in sources if s.from_file]
    config = _resolve(resolver, flags, host or HostInfo(), files)
    return config, warnings


def load(argv: Sequence[str] | AgentFlags, *, host: HostInfo | None = None
         ) -> tuple[rt.RuntimeConfig, list[str]]:
    """`build` for a raw `agent` argument list (or already parsed flags)."""
    flags = argv if isinstance(argv, AgentFlags) else parse_agent_flags(argv)
    return build(flags, host=host)


def reload(previous_flags: AgentFlags, *, host: HostInfo | None = None
           ) -> tuple[rt.RuntimeConfig, list[str]]:
    """Re-read the same flags' files; the agent compares the result with what it runs."""
    return build(previous_flags, host=host)


def validate_paths(paths: Sequence[str], config_format: str = "", *,
                   host: HostInfo | None = None) -> tuple[rt.RuntimeConfig, list[str]]:
    """What `consul validate` checks: the files alone, with no flags and no dev defaults."""
    return build(AgentFlags(config_paths=tuple(paths), config_format=config_format), host=host)
