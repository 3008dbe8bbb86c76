"""`proconsul agent`: load the configuration, print Consul's banner, and run the agent."""

from __future__ import annotations

import asyncio
import resource
import sys
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from proconsul import CONSUL_COMPAT_VERSION, __version__
from proconsul import log as logsetup
from proconsul.config.builder import build
from proconsul.config.flags import AgentFlags, parse_agent_flags
from proconsul.config.runtime import RuntimeConfig
from proconsul.errors import ConfigError, ProconsulError


def _raise_fd_limit() -> None:
    """Blocking queries hold one connection each; allow as many as the hard limit permits."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def banner(cfg: RuntimeConfig, node_id: str) -> str:
    ports = cfg.ports
    rows = [
        ("Version", f"'{CONSUL_COMPAT_VERSION}' (proconsul {__version__})"),
        ("Node ID", f"'{node_id}'"),
        ("Node name", f"'{cfg.node_name}'"),
        ("Datacenter", f"'{cfg.datacenter}' (Segment: '<all>')"),
        ("Server", f"{str(cfg.server).lower()} (Bootstrap: {str(cfg.bootstrap).lower()})"),
        ("Client Addr", f"[{' '.join(cfg.client_addrs)}] (HTTP: {ports.http}, HTTPS: "
                        f"{ports.https}, gRPC: {ports.grpc}, gRPC-TLS: {ports.grpc_tls}, "
                        f"DNS: {ports.dns})"),
        ("Cluster Addr", f"{cfg.advertise_addr} (LAN: {ports.serf_lan}, WAN: "
                         f"{ports.serf_wan})"),
        ("Gossip Encryption", str(bool(cfg.encrypt)).lower()),
        ("Auto-Encrypt-TLS", "false"),
        ("ACL Enabled", str(cfg.acl.enabled).lower()),
        ("Reporting Enabled", "false"),
        ("ACL Default Policy", cfg.acl.default_policy),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["==> Starting Consul agent..."]
    lines += [f"{k.rjust(width)}: {v}" for k, v in rows]
    lines += ["", "==> Log data will now stream in as it occurs:", ""]
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    try:
        flags: AgentFlags = parse_agent_flags(argv)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 1
    if flags.help:
        print("Usage: proconsul agent [options]\n\n  Starts the agent and runs until an "
              "interrupt is received. The agent represents a single node in a cluster.")
        return 0
    try:
        cfg, warnings = build(flags)
    except ConfigError as err:
        print(f"==> {err}", file=sys.stderr)
        return 1
    logsetup.setup(cfg.log_level, cfg.log_json)
    import logging

    log = logging.getLogger("proconsul")
    for w in warnings:
        log.warning("%s", w)
    _raise_fd_limit()

    def reloader() -> RuntimeConfig:
        new, new_warnings = build(flags)
        for w in new_warnings:
            log.warning("%s", w)
        return new

    from proconsul.agent.agent import Agent

    try:
        agent = Agent(cfg, reloader)
    except ProconsulError as err:
        print(f"==> {err}", file=sys.stderr)
        return 1
    print(banner(cfg, agent.node_id or str(uuid.uuid4())), flush=True)
    runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    try:
        return int(runner(agent.run()))
    except ProconsulError as err:
        log.error("%s", err)
        return 1
    except OSError as err:
        log.error("Error starting agent: %s", err)
        return 1
