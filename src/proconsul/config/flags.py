"""Command-line flags of `agent`, parsed with the rules of Go's `flag` package.

Scripts and service units written for Consul pass flags as Go parses them: one or two dashes,
`-flag=value` or `-flag value`, boolean flags that take no value (but accept `-dev=false`),
parsing that stops at the first non-flag argument or `--`. Each flag sets the config key it
stands for, so flag values become one more config source and go through the same checks as
a file; only `-dev`, `-config-file`/`-config-dir`, `-config-format` and `-hcl` steer loading.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proconsul.config.duration import go_quote
from proconsul.errors import ConfigError


class _Kind(enum.Enum):
    BOOL = "bool"
    INT = "int"
    STR = "string"
    LIST = "list"
    MAP = "map"


@dataclass(frozen=True)
class _Flag:
    kind: _Kind
    key: str  # dotted config key the flag sets


_FLAGS: dict[str, _Flag] = {
    "advertise": _Flag(_Kind.STR, "advertise_addr"),
    "advertise-wan": _Flag(_Kind.STR, "advertise_addr_wan"),
    "allow-write-http-from": _Flag(_Kind.LIST, "http_config.allow_write_http_from"),
    "alt-domain": _Flag(_Kind.STR, "alt_domain"),
    "auto-reload-config": _Flag(_Kind.BOOL, "auto_reload_config"),
    "bind": _Flag(_Kind.STR, "bind_addr"),
    "bootstrap": _Flag(_Kind.BOOL, "bootstrap"),
    "bootstrap-expect": _Flag(_Kind.INT, "bootstrap_expect"),
    "check_output_max_size": _Flag(_Kind.INT, "check_output_max_size"),
    "client": _Flag(_Kind.STR, "client_addr"),
    "data-dir": _Flag(_Kind.STR, "data_dir"),
    "datacenter": _Flag(_Kind.STR, "datacenter"),
    "default-query-time": _Flag(_Kind.STR, "default_query_time"),
    "disable-host-node-id": _Flag(_Kind.BOOL, "disable_host_node_id"),
    "disable-keyring-file": _Flag(_Kind.BOOL, "disable_keyring_file"),
    "dns-port": _Flag(_Kind.INT, "ports.dns"),
    "domain": _Flag(_Kind.STR, "domain"),
    "enable-local-script-checks": _Flag(_Kind.BOOL, "enable_local_script_checks"),
    "enable-script-checks": _Flag(_Kind.BOOL, "enable_script_checks"),
    "encrypt": _Flag(_Kind.STR, "encrypt"),
    "grpc-port": _Flag(_Kind.INT, "ports.grpc"),
    "grpc-tls-port": _Flag(_Kind.INT, "ports.grpc_tls"),
    "http-port": _Flag(_Kind.INT, "ports.http"),
    "https-port": _Flag(_Kind.INT, "ports.https"),
    "join": _Flag(_Kind.LIST, "start_join"),
    "join-wan": _Flag(_Kind.LIST, "start_join_wan"),
    "log-file": _Flag(_Kind.STR, "log_file"),
    "log-json": _Flag(_Kind.BOOL, "log_json"),
    "log-level": _Flag(_Kind.STR, "log_level"),
    "log-rotate-bytes": _Flag(_Kind.INT, "log_rotate_bytes"),
    "log-rotate-duration": _Flag(_Kind.STR, "log_rotate_duration"),
    "log-rotate-max-files": _Flag(_Kind.INT, "log_rotate_max_files"),
    "max-query-time": _Flag(_Kind.STR, "max_query_time"),
    "node": _Flag(_Kind.STR, "node_name"),
    "node-id": _Flag(_Kind.STR, "node_id"),
    "node-meta": _Flag(_Kind.MAP, "node_meta"),
    "non-voting-server": _Flag(_Kind.BOOL, "read_replica"),
    "partition": _Flag(_Kind.STR, "partition"),
    "pid-file": _Flag(_Kind.STR, "pid_file"),
    "primary-gateway": _Flag(_Kind.LIST, "primary_gateways"),
    "protocol": _Flag(_Kind.INT, "protocol"),
    "raft-protocol": _Flag(_Kind.INT, "raft_protocol"),
    "read-replica": _Flag(_Kind.BOOL, "read_replica"),
    "recursor": _Flag(_Kind.LIST, "recursors"),
    "rejoin": _Flag(_Kind.BOOL, "rejoin_after_leave"),
    "retry-interval": _Flag(_Kind.STR, "retry_interval"),
    "retry-interval-wan": _Flag(_Kind.STR, "retry_interval_wan"),
    "retry-join": _Flag(_Kind.LIST, "retry_join"),
    "retry-join-wan": _Flag(_Kind.LIST, "retry_join_wan"),
    "retry-max": _Flag(_Kind.INT, "retry_max"),
    "retry-max-wan": _Flag(_Kind.INT, "retry_max_wan"),
    "segment": _Flag(_Kind.STR, "segment"),
    "serf-lan-allowed-cidrs": _Flag(_Kind.LIST, "serf_lan_allowed_cidrs"),
    "serf-lan-bind": _Flag(_Kind.STR, "serf_lan"),
    "serf-lan-port": _Flag(_Kind.INT, "ports.serf_lan"),
    "serf-wan-allowed-cidrs": _Flag(_Kind.LIST, "serf_wan_allowed_cidrs"),
    "serf-wan-bind": _Flag(_Kind.STR, "serf_wan"),
    "serf-wan-port": _Flag(_Kind.INT, "ports.serf_wan"),
    "server": _Flag(_Kind.BOOL, "server"),
    "server-port": _Flag(_Kind.INT, "ports.server"),
    "syslog": _Flag(_Kind.BOOL, "enable_syslog"),
    "ui": _Flag(_Kind.BOOL, "ui_config.enabled"),
    "ui-content-path": _Flag(_Kind.STR, "ui_config.content_path"),
    "ui-dir": _Flag(_Kind.STR, "ui_config.dir"),
}

# Flags that steer loading rather than set a config key.
_LOADING_FLAGS = {"dev": _Kind.BOOL, "config-file": _Kind.LIST, "config-dir": _Kind.LIST,
                  "config-format": _Kind.STR, "hcl": _Kind.LIST}


@dataclass(frozen=True)
class AgentFlags:
    """What `agent`'s command line asked for.

    `values` holds the config keys set by flags, nested as in a config file, so the builder
    can treat them as one more source. `config_paths` keeps `-config-file` and `-config-dir`
    arguments interleaved in command-line order, which decides merge precedence.
    """

    dev: bool = False
    config_paths: tuple[str, ...] = ()
    config_format: str = ""
    hcl: tuple[str, ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)
    #: Set when `-h`/`-help` was given; parsing stopped there, as Go's flag package does.
    help: bool = False


def _parse_go_bool(text: str) -> bool | None:
    """`strconv.ParseBool`: the exact spellings Go accepts, nothing looser."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _parse_go_int(text: str) -> int | str:
    """`strconv.Atoi`: optional sign then decimal digits; a string result is Go's complaint."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return "invalid syntax"
    number = int(text)
    if not -(1 << 63) <= number < (1 << 63):
        return "value out of range"
    return number


def _set_nested(values: dict[str, Any], key: str, value: object) -> None:
    parts = key.split(".")
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _get_nested(values: dict[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class _Parser:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.dev = False
        self.config_paths: list[str] = []
        self.config_format = ""
        self.hcl: list[str] = []

    def apply(self, name: str, kind: _Kind, raw: str) -> None:
        value: object = raw
        if kind is _Kind.BOOL:
            parsed = _parse_go_bool(raw)
            if parsed is None:
                raise ConfigError(
                    f"invalid boolean value {go_quote(raw)} for -{name}: "
                    f"strconv.ParseBool: parsing {go_quote(raw)}: invalid syntax"
                )
            value = parsed
        elif kind is _Kind.INT:
            number = _parse_go_int(raw)
            if isinstance(number, str):
                raise ConfigError(
                    f"invalid value {go_quote(raw)} for flag -{name}: "
                    f"strconv.Atoi: parsing {go_quote(raw)}: {number}"
                )
            value = number
        if name in _LOADING_FLAGS:
            self._apply_loading(name, value)
            return
        spec = _FLAGS[name]
        if kind is _Kind.LIST:
            current = _get_nested(self.values, spec.key) or []
            _set_nested(self.values, spec.key, [*current, raw])
        elif kind is _Kind.MAP:
            meta_key, _, meta_value = raw.partition(":")
            current = dict(_get_nested(self.values, spec.key) or {})
            current[meta_key] = meta_value
            _set_nested(self.values, spec.key, current)
        else:
            _set_nested(self.values, spec.key, value)

    def _apply_loading(self, name: str, value: object) -> None:
        if name == "dev":
            self.dev = bool(value)
        elif name in ("config-file", "config-dir"):
            self.config_paths.append(str(value))
        elif name == "config-format":
            self.config_format = str(value)
        else:
            self.hcl.append(str(value))


def _kind_of(name: str) -> _Kind | None:
    if name in _LOADING_FLAGS:
        return _LOADING_FLAGS[name]
    spec = _FLAGS.get(name)
    return spec.kind if spec is not None else None


def parse_agent_flags(argv: Sequence[str]) -> AgentFlags:
    """Parse `agent`'s arguments; errors carry the messages Go's flag package prints."""
    parser = _Parser()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        dashes = 2 if arg[1] == "-" else 1
        name = arg[dashes:]
        if dashes == 2 and name == "":
            i += 1
            break
        if name == "" or name[0] in "-=":
            raise ConfigError(f"bad flag syntax: {arg}")
        i += 1
        has_value = "=" in name
        value = ""
        if has_value:
            name, value = name.split("=", 1)
        kind = _kind_of(name)
        if kind is None:
            if name in ("h", "help"):
                return AgentFlags(help=True)
            raise ConfigError(f"flag provided but not defined: -{name}")
        if kind is _Kind.BOOL:
            parser.apply(name, kind, value if has_value else "true")
            continue
        if not has_value:
            if i >= len(args):
                raise ConfigError(f"flag needs an argument: -{name}")
            value = args[i]
            i += 1
        parser.apply(name, kind, value)
    extra = args[i:]
    if extra:
        raise ConfigError(f"config: Unknown extra arguments: [{' '.join(extra)}]")
    return AgentFlags(
        dev=parser.dev,
        config_paths=tuple(parser.config_paths),
        config_format=parser.config_format,
        hcl=tuple(parser.hcl),
        values=parser.values,
    )


def flag_names() -> list[str]:
    """Every flag `agent` accepts, for help text and shell completion."""
    return sorted([*_FLAGS, *_LOADING_FLAGS])
