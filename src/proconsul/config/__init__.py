"""Consul-compatible agent configuration: flags, JSON/HCL files, defaults, and validation.

The rest of the package reads settings only from a `RuntimeConfig`, which `build` produces
from parsed `agent` flags, so that an existing Consul deployment's command lines and config
directories work unchanged. `validate_paths` is what `consul validate` runs.
"""

from __future__ import annotations

from proconsul.config.builder import (
    FLAGS_SOURCE_NAME,
    build,
    collect_sources,
    load,
    merge,
    reload,
    validate_paths,
)
from proconsul.config.defaults import HostInfo, default_source, dev_source
from proconsul.config.duration import (
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)
from proconsul.config.flags import AgentFlags, flag_names, parse_agent_flags
from proconsul.config.runtime import (
    ACLConfig,
    ACLTokens,
    Address,
    Autopilot,
    ConfigTree,
    ConnectConfig,
    DNSConfig,
    GossipConfig,
    HTTPConfig,
    Limits,
    Performance,
    Ports,
    RaftLogStore,
    RuntimeConfig,
    SOAConfig,
    Telemetry,
    TLSConfig,
    TLSProtocolConfig,
    UIConfig,
    UIMetricsProxy,
)
from proconsul.config.source import Decoded, Source, decode, load_files, parse_text

__all__ = [
    "FLAGS_SOURCE_NAME",
    "ACLConfig",
    "ACLTokens",
    "Address",
    "AgentFlags",
    "Autopilot",
    "ConfigTree",
    "ConnectConfig",
    "DNSConfig",
    "Decoded",
    "GossipConfig",
    "HTTPConfig",
    "HostInfo",
    "Limits",
    "Performance",
    "Ports",
    "RaftLogStore",
    "RuntimeConfig",
    "SOAConfig",
    "Source",
    "TLSConfig",
    "TLSProtocolConfig",
    "Telemetry",
    "UIConfig",
    "UIMetricsProxy",
    "build",
    "collect_sources",
    "decode",
    "default_source",
    "dev_source",
    "flag_names",
    "format_duration",
    "format_duration_ns",
    "load",
    "load_files",
    "merge",
    "parse_agent_flags",
    "parse_duration",
    "parse_duration_ns",
    "parse_text",
    "reload",
    "validate_paths",
]
