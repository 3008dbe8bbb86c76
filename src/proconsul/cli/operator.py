"""`consul operator raft ...` and `consul operator autopilot ...`: Raft membership and
autopilot by hand, with the texts and tables of Consul's command/operator packages (scripts
check `Removed peer with id "..."`, `Configuration updated!` and the list-peers columns)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from proconsul.cli import err, out
from proconsul.cli.api import APIError, Client, HTTPFlags, StatusError
from proconsul.cli.flags import Flag, FlagSet, format_duration, parse_args, parse_bool
from proconsul.cli.flags import parse_duration as parse_duration_ns
from proconsul.cli.members import columnize

OPERATOR_HELP = """
Usage: consul operator <subcommand> [options]

  Provides cluster-level tools for Consul operators, such as interacting with
  the Raft subsystem. NOTE: Use this command with extreme caution, as improper
  use could lead to a Consul outage and even loss of data.

  If ACLs are enabled then a token with operator privileges may be required in
  order to use this command. Requests are forwarded internally to the leader
  if required, so this can be run from any Consul node in a cluster.

  Run consul operator <subcommand> with no arguments for help on that
  subcommand."""

RAFT_HELP = """
Usage: consul operator raft <subcommand> [options]

  The Raft operator command is used to interact with Consul's Raft subsystem. The
  command can be used to verify Raft peers or in rare cases to recover quorum by
  removing invalid peers."""

AUTOPILOT_HELP = """
Usage: consul operator autopilot <subcommand> [options]

  The Autopilot operator command is used to interact with Consul's Autopilot
  subsystem. The command can be used to view or modify the current configuration."""

_D = "\x1f"


def help_operator() -> str:
    return OPERATOR_HELP.strip()


def help_raft() -> str:
    return RAFT_HELP.strip()


def help_autopilot() -> str:
    return AUTOPILOT_HELP.strip()


class _Cmd:
    """Flags of one subcommand: the HTTP client and server flags plus its own."""

    def __init__(self, usage: str) -> None:
        self.usage = usage
        self.fs = FlagSet()
        self.http = HTTPFlags(self.fs)

    def help(self) -> str:
        return self.fs.usage(self.usage)

    def client(self, argv: list[str]) -> Client | None:
        if parse_args(self.fs, argv) is None:
            return None
        try:
            return Client(self.http.config())
        except APIError as exc:
            err(f"Error initializing client: {exc}")
            return None

    def stale(self) -> list[tuple[str, str]]:
        return [("stale", "")] if self.http.stale else []


# -- raft list-peers --------------------------------------------------------------------------

LIST_HELP = """
Usage: consul operator raft list-peers [options]

  Displays the current Raft peer configuration."""


def help_list_peers() -> str:
    return _Cmd(LIST_HELP).help()


def list_peers_table(config: dict[str, Any], health: dict[str, Any]) -> str:
    """The table of command/operator/raft/listpeers (commit index and lag from autopilot)."""
    by_id = {s.get("ID"): s for s in health.get("Servers") or ()}
    leader_index = 0
    for s in config.get("Servers") or ():
        if s.get("Leader") and s.get("ID") in by_id:
            leader_index = int(by_id[s["ID"]].get("LastIndex") or 0)
    lines = [_D.join(["Node", "ID", "Address", "State", "Voter", "RaftProtocol",
                      "Commit Index", "Trails Leader By"])]
    for s in config.get("Servers") or ():
        proto = str(s.get("ProtocolVersion") or "") or "<=1"
        state = "leader" if s.get("Leader") else "follower"
        voter = "true" if s.get("Voter") else "false"
        cells = [str(s.get("Node", "")), str(s.get("ID", "")), str(s.get("Address", "")),
                 state, voter, proto]
        h = by_id.get(s.get("ID"))
        if h is None:
            cells.append("_")
        else:
            index = int(h.get("LastIndex") or 0)
            # Go's uint64 subtraction wraps when a follower is ahead of the leader's last view
            trails = (leader_index - index) % (1 << 64)
            if s.get("Leader"):
                text = "_"
            elif trails <= 1:
                text = f"{trails} Commit"
            else:
                text = f"{trails} Commits"
            cells += [str(index), text]
        lines.append(_D.join(cells))
    return columnize(lines)


def run_list_peers(argv: list[str]) -> int:
    cmd = _Cmd(LIST_HELP)
    client = cmd.client(argv)
    if client is None:
        return 1
    try:
        config, _ = client.query("/v1/operator/raft/configuration", cmd.stale())
    except APIError as exc:
        err(f"Error getting peers: Failed to retrieve raft configuration: {exc}")
        return 1
    try:
        resp = client.request("GET", "/v1/operator/autopilot/health", cmd.stale())
        if resp.status not in (200, 429):
            raise StatusError(resp.status, resp.body.decode("utf-8", "replace").strip())
        health = client.decode(resp) or {}
    except APIError as exc:
        err(f"Error getting peers: Failed to retrieve autopilot health: {exc}")
        return 1
    out(list_peers_table(config or {}, health))
    return 0


# -- raft remove-peer -------------------------------------------------------------------------

REMOVE_HELP = """
Usage: consul operator raft remove-peer [options]

  Remove the Consul server with given -address from the Raft configuration.

  There are rare cases where a peer may be left behind in the Raft quorum even
  though the server is no longer present and known to the cluster. This command
  can be used to remove the failed server so that it is no longer affects the Raft
  quorum. If the server still shows in the output of the "consul members" command,
  it is preferable to clean up by simply running "consul force-leave" instead of
  this command."""


def _remove_cmd() -> tuple[_Cmd, Flag[str], Flag[str]]:
    cmd = _Cmd(REMOVE_HELP)
    address = cmd.fs.str_flag("address", "", "The address to remove from the Raft configuration.")
    sid = cmd.fs.str_flag("id", "", "The ID to remove from the Raft configuration.")
    return cmd, address, sid


def help_remove_peer() -> str:
    return _remove_cmd()[0].help()


def run_remove_peer(argv: list[str]) -> int:
    cmd, address, sid = _remove_cmd()
    client = cmd.client(argv)
    if client is None:
        return 1
    if not address.value and not sid.value:
        err("Error removing peer: an address or id is required for the peer to remove")
        return 1
    if address.value and sid.value:
        err("Error removing peer: cannot give both an address and id")
        return 1
    param = ("address", address.value) if address.value else ("id", sid.value)
    try:
        client.write("DELETE", "/v1/operator/raft/peer", [param])
    except APIError as exc:
        err(f"Error removing peer: {exc}")
        return 1
    if address.value:
        out(f'Removed peer with address "{address.value}"')
    else:
        out(f'Removed peer with id "{sid.value}"')
    return 0


# -- raft transfer-leader ---------------------------------------------------------------------

TRANSFER_HELP = """
Usage: consul operator raft transfer-leader [options]

  Transfer raft leadership to another node."""


def _transfer_cmd() -> tuple[_Cmd, Flag[str]]:
    cmd = _Cmd(TRANSFER_HELP)
    sid = cmd.fs.str_flag("id", "", "The ID of the node to transfer leadership to.")
    return cmd, sid


def help_transfer_leader() -> str:
    return _transfer_cmd()[0].help()


def run_transfer_leader(argv: list[str]) -> int:
    cmd, sid = _transfer_cmd()
    client = cmd.client(argv)
    if client is None:
        return 1
    params = [("id", sid.value)] if sid.value else []
    try:
        reply = client.write("POST", "/v1/operator/raft/transfer-leader", params)
    except APIError as exc:
        err(f"Error transfering leadership: Failed to transfer leadership {exc}")
        return 1
    if not (isinstance(reply, dict) and reply.get("Success")):
        err("Error transfering leadership: Failed to transfer leadership")
        return 1
    out("Success")
    return 0


# -- autopilot get-config / set-config / state ------------------------------------------------

GET_HELP = """
Usage: consul operator autopilot get-config [options]

  Displays the current Autopilot configuration."""


def help_get_config() -> str:
    return _Cmd(GET_HELP).help()


def config_lines(conf: dict[str, Any]) -> list[str]:
    def text(value: Any) -> str:
        return "true" if value is True else "false" if value is False else str(value)

    return [
        f"CleanupDeadServers = {text(conf.get('CleanupDeadServers'))}",
        f"LastContactThreshold = {conf.get('LastContactThreshold')}",
        f"MaxTrailingLogs = {conf.get('MaxTrailingLogs')}",
        f"MinQuorum = {conf.get('MinQuorum')}",
        f"ServerStabilizationTime = {conf.get('ServerStabilizationTime')}",
        f"RedundancyZoneTag = {json.dumps(conf.get('RedundancyZoneTag') or '')}",
        f"DisableUpgradeMigration = {text(conf.get('DisableUpgradeMigration'))}",
        f"UpgradeVersionTag = {json.dumps(conf.get('UpgradeVersionTag') or '')}",
    ]


def run_get_config(argv: list[str]) -> int:
    cmd = _Cmd(GET_HELP)
    client = cmd.client(argv)
    if client is None:
        return 1
    try:
        conf, _ = client.query("/v1/operator/autopilot/configuration", cmd.stale())
    except APIError as exc:
        err(f"Error querying Autopilot configuration: {exc}")
        return 1
    out("\n".join(config_lines(conf or {})))
    return 0


SET_HELP = """
Usage: consul operator autopilot set-config [options]

  Modifies the current Autopilot configuration."""

#: flag -> (body field, parser); a flag left out keeps the current value
_SET_FLAGS: dict[str, tuple[str, Callable[[str], Any], str, str]] = {
    "cleanup-dead-servers": (
        "CleanupDeadServers", parse_bool, "true|false",
        "Controls whether Consul will automatically remove dead servers when new ones are "
        "successfully added. Must be one of `true|false`."),
    "max-trailing-logs": (
        "MaxTrailingLogs", lambda s: _uint(s), "value",
        "Controls the maximum number of log entries that a server can trail the leader by "
        "before being considered unhealthy."),
    "min-quorum": (
        "MinQuorum", lambda s: _uint(s), "value",
        "Sets the minimum number of servers required in a cluster before autopilot is allowed "
        "to prune dead servers."),
    "last-contact-threshold": (
        "LastContactThreshold", lambda s: format_duration(parse_duration_ns(s)), "200ms",
        "Controls the maximum amount of time a server can go without contact from the leader "
        "before being considered unhealthy. Must be a duration value such as `200ms`."),
    "server-stabilization-time": (
        "ServerStabilizationTime", lambda s: format_duration(parse_duration_ns(s)), "10s",
        "Controls the minimum amount of time a server must be stable in the 'healthy' state "
        "before being added to the cluster. Only takes effect if all servers are running Raft "
        "protocol version 3 or higher. Must be a duration value such as `10s`."),
    "redundancy-zone-tag": (
        "RedundancyZoneTag", str, "value",
        "(Enterprise-only) Controls the node_meta tag name used for separating servers into "
        "different redundancy zones."),
    "disable-upgrade-migration": (
        "DisableUpgradeMigration", parse_bool, "true|false",
        "(Enterprise-only) Controls whether Consul will avoid promoting new servers until it "
        "can perform a migration. Must be one of `true|false`."),
    "upgrade-version-tag": (
        "UpgradeVersionTag", str, "value",
        "(Enterprise-only) The node_meta tag to use for version info when performing upgrade "
        "migrations. If left blank, the Consul version will be used."),
}


def _uint(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    return int(text)


def _set_cmd() -> tuple[_Cmd, dict[str, Flag[str]]]:
    cmd = _Cmd(SET_HELP)
    flags = {name: cmd.fs.str_flag(name, "", usage, type_name=type_name)
             for name, (_, _, type_name, usage) in _SET_FLAGS.items()}
    return cmd, flags


def help_set_config() -> str:
    return _set_cmd()[0].help()


def run_set_config(argv: list[str]) -> int:
    cmd, flags = _set_cmd()
    # -flag value pairs are accepted with or without '=' (Consul rewrites them the same way)
    argv = _join_pairs(argv, set(flags))
    client = cmd.client(argv)
    if client is None:
        return 1
    changes: dict[str, Any] = {}
    for name, flag in flags.items():
        if flag.value == "":
            continue
        field, parse, _, _ = _SET_FLAGS[name]
        try:
            changes[field] = parse(flag.value)
        except ValueError as exc:
            err(f'Failed to parse args: invalid value "{flag.value}" for flag -{name}: {exc}')
            return 1
    try:
        conf, _ = client.query("/v1/operator/autopilot/configuration")
    except APIError as exc:
        err(f"Error querying Autopilot configuration: {exc}")
        return 1
    conf = {**(conf or {}), **changes}
    try:
        result = client.write("PUT", "/v1/operator/autopilot/configuration",
                              [("cas", str(int(conf.get("ModifyIndex") or 0)))],
                              json.dumps(conf).encode())
    except APIError as exc:
        err(f"Error setting Autopilot configuration: {exc}")
        return 1
    if result is True:
        out("Configuration updated!")
        return 0
    out("Configuration could not be atomically updated, please try again")
    return 1


def _join_pairs(argv: list[str], names: set[str]) -> list[str]:
    """`-min-quorum 3` and `-min-quorum = 3` read as `-min-quorum=3`."""
    out_args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        bare = arg.lstrip("-")
        if arg.startswith("-") and "=" not in arg and bare in names and i + 1 < len(argv):
            j = i + 1
            if argv[j] == "=" and j + 1 < len(argv):
                j += 1
            out_args.append(f"{arg}={argv[j].lstrip('=')}")
            i = j + 1
            continue
        out_args.append(arg)
        i += 1
    return out_args


STATE_HELP = """
Usage: consul operator autopilot state [options]

  Displays the current Autopilot state."""


def _state_cmd() -> tuple[_Cmd, Flag[str]]:
    cmd = _Cmd(STATE_HELP)
    fmt = cmd.fs.str_flag("format", "pretty",
                          "Output format {pretty|json}")
    return cmd, fmt


def help_state() -> str:
    return _state_cmd()[0].help()


def state_pretty(state: dict[str, Any]) -> str:
    """command/operator/autopilot/state's pretty formatter (servers sorted by ID)."""
    lines = [
        f"Healthy:                      {_b(state.get('Healthy'))}",
        f"Failure Tolerance:            {state.get('FailureTolerance', 0)}",
        f"Optimistic Failure Tolerance: {state.get('OptimisticFailureTolerance', 0)}",
        f"Leader:                       {state.get('Leader', '')}",
        "Voters:",
    ]
    lines += [f"   {v}" for v in state.get("Voters") or ()]
    lines.append("Servers:")
    servers = state.get("Servers") or {}
    for sid in sorted(servers):
        s = servers[sid]
        lines += [
            f"   {s.get('ID', '')}",
            f"      Name:            {s.get('Name', '')}",
            f"      Address:         {s.get('Address', '')}",
            f"      Version:         {s.get('Version', '')}",
            f"      Status:          {s.get('Status', '')}",
            f"      Node Type:       {s.get('NodeType', '')}",
            f"      Node Status:     {s.get('NodeStatus', '')}",
            f"      Healthy:         {_b(s.get('Healthy'))}",
            f"      Last Contact:    {s.get('LastContact', '0s')}",
            f"      Last Term:       {s.get('LastTerm', 0)}",
            f"      Last Index:      {s.get('LastIndex', 0)}",
        ]
        meta = s.get("Meta") or {}
        if meta:
            lines.append("      Meta")
            lines += [f"         {json.dumps(k)}: {json.dumps(meta[k])}" for k in sorted(meta)]
    return "\n".join(lines) + "\n"


def _b(value: Any) -> str:
    return "true" if value else "false"


def run_state(argv: list[str]) -> int:
    cmd, fmt = _state_cmd()
    client = cmd.client(argv)
    if client is None:
        return 1
    if fmt.value not in ("pretty", "json"):
        err(f"Error parsing output format: Unknown format: {fmt.value}")
        return 1
    try:
        state, _ = client.query("/v1/operator/autopilot/state", cmd.stale())
    except APIError as exc:
        err(f"Error querying Autopilot state: {exc}")
        return 1
    if fmt.value == "json":
        out(json.dumps(state, indent=4))
    else:
        out(state_pretty(state or {}))
    return 0
