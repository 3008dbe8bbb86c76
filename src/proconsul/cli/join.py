"""`consul join` and `consul force-leave`: pool membership changes through the local agent
(Consul's command/join and command/forceleave)."""

from __future__ import annotations

from urllib.parse import quote

from proconsul.cli import err, out
from proconsul.cli.api import APIError, HTTPFlags
from proconsul.cli.flags import Flag, FlagSet, parse_args

JOIN_HELP = """
Usage: consul join [options] address ...

  Tells a running Consul agent (with "consul agent") to join the cluster
  by specifying at least one existing member.
"""

FORCE_LEAVE_HELP = """
Usage: consul force-leave [options] name

  Forces a member of a Consul cluster to enter the "left" state. Note
  that if the member is still actually alive, it will eventually rejoin
  the cluster. This command is most useful for cleaning out "failed" nodes
  that are never coming back. If you do not force leave a failed node,
  Consul will attempt to reconnect to those failed nodes for some period of
  time before eventually reaping them.
"""


def _join_flags() -> tuple[FlagSet, HTTPFlags, Flag[bool]]:
    fs = FlagSet()
    http = HTTPFlags(fs, server=False)
    wan = fs.bool_flag("wan", False, "Joins a server to another server in the WAN pool.")
    return fs, http, wan


def _leave_flags() -> tuple[FlagSet, HTTPFlags, Flag[bool], Flag[bool]]:
    fs = FlagSet()
    http = HTTPFlags(fs, server=False)
    prune = fs.bool_flag("prune", False,
                         "Remove agent completely from list of members")
    wan = fs.bool_flag("wan", False,
                       "Exclusively leave the agent from the WAN serf pool.")
    return fs, http, prune, wan


def help_join() -> str:
    return _join_flags()[0].usage(JOIN_HELP)


def help_force_leave() -> str:
    return _leave_flags()[0].usage(FORCE_LEAVE_HELP)


def run_join(argv: list[str]) -> int:
    fs, http, wan = _join_flags()
    addrs = parse_args(fs, argv)
    if addrs is None:
        return 1
    if not addrs:
        err("At least one address to join must be specified.")
        out(fs.usage(JOIN_HELP))
        return 1
    client = http.connect()
    if client is None:
        return 1
    params = [("wan", "1")] if wan.value else []
    joined = 0
    for addr in addrs:
        try:
            client.write("PUT", "/v1/agent/join/" + quote(addr, safe=":[]"), params)
        except APIError as exc:
            err(f"Error joining address '{addr}': {exc}")
            continue
        joined += 1
    if joined == 0:
        err("Failed to join any nodes.")
        return 1
    out(f"Successfully joined cluster by contacting {joined} nodes.")
    return 0


def run_force_leave(argv: list[str]) -> int:
    fs, http, prune, wan = _leave_flags()
    nodes = parse_args(fs, argv)
    if nodes is None:
        return 1
    if len(nodes) != 1:
        err("A single node name must be specified to force leave.")
        out(fs.usage(FORCE_LEAVE_HELP))
        return 1
    client = http.connect()
    if client is None:
        return 1
    params = []
    if prune.value:
        params.append(("prune", "1"))
    if wan.value:
        params.append(("wan", "1"))
    try:
        client.write("PUT", "/v1/agent/force-leave/" + quote(nodes[0], safe=""), params)
    except APIError as exc:
        err(f"Error force leaving: {exc}")
        return 1
    return 0
