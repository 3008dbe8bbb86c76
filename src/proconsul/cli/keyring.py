"""`consul keyring`: list, install, use and remove gossip encryption keys cluster-wide.

Key rotation scripts run `-install`, `-use`, `-remove` in turn and stop at the first non-zero
exit, and read `-list` to confirm every member holds the new key (`  <key> [<n>/<total>]`), so
the one-action rule, the `==> ` progress lines, the per-pool blocks and the `error: ...` lines
follow `command/keyring/keyring.go`. Keys are printed in sorted order (Go prints them in map
order, which scripts cannot rely on either).
"""

from __future__ import annotations

import json
from typing import Any

from proconsul.cli import err, out
from proconsul.cli.api import APIError, Client, HTTPFlags, Params
from proconsul.cli.flags import Flag, FlagSet, parse_args

HELP = """
Usage: consul keyring [options]

  Manages encryption keys used for gossip messages. Gossip encryption is
  optional. When enabled, this command may be used to examine active encryption
  keys in the cluster, add new keys, and remove old ones. When combined, this
  functionality provides the ability to perform key rotation cluster-wide,
  without disrupting the cluster.

  All operations performed by this command can only be run against server nodes,
  and affect both the LAN and WAN keyrings in lock-step.

  All variations of the keyring command return 0 if all nodes reply and there
  are no errors. If any node fails to reply or reports failure, the exit code
  will be 1.
"""

SYNOPSIS = "Manages gossip layer encryption keys"

INFO = "==> "


class _Flags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.install: Flag[str] = self.fs.str_flag(
            "install", "",
            "Install a new encryption key. This will broadcast the new key to all members in "
            "the cluster.")
        self.use: Flag[str] = self.fs.str_flag(
            "use", "",
            "Change the primary encryption key, which is used to encrypt messages. The key must "
            "already be installed before this operation can succeed.")
        self.remove: Flag[str] = self.fs.str_flag(
            "remove", "",
            "Remove the given key from the cluster. This operation may only be performed on "
            "keys which are not currently the primary key.")
        self.list: Flag[bool] = self.fs.bool_flag(
            "list", False, "List all keys currently in use within the cluster.")
        self.list_primary: Flag[bool] = self.fs.bool_flag(
            "list-primary", False, "List all primary keys currently in use within the cluster.")
        self.relay: Flag[int] = self.fs.int_flag(
            "relay-factor", 0,
            "Setting this to a non-zero value will cause nodes to relay their response to the "
            "operation through this many randomly-chosen other nodes in the cluster. The "
            "maximum allowed value is 5.")
        self.local: Flag[bool] = self.fs.bool_flag(
            "local-only", False,
            "Setting this to true will force the keyring query to only hit local servers (no "
            "WAN traffic). This flag can only be set for list queries.")
        self.http = HTTPFlags(self.fs, server=False)


def help_text() -> str:
    return _Flags().fs.usage(HELP)


def pool_name(resp: dict[str, Any]) -> str:
    """`WAN:` or `<dc> (LAN):`, with the segment or a non-default partition in brackets."""
    pool = "WAN" if resp.get("WAN") else f"{resp.get('Datacenter', '')} (LAN)"
    segment, partition = resp.get("Segment") or "", resp.get("Partition") or ""
    if segment:
        pool += f" [{segment}]"
    elif partition not in ("", "default"):
        pool += f" [partition: {partition}]"
    return pool + ":"


def format_response(resp: dict[str, Any], keys: dict[str, int]) -> str:
    """One pool's block: a blank line, the pool, members' messages, then each key with how many
    of the pool's members hold it."""
    lines = ["", pool_name(resp)]
    messages = resp.get("Messages") or {}
    lines += [f"  ===> {node}: {messages[node]}" for node in sorted(messages)]
    total = int(resp.get("NumNodes") or 0)
    lines += [f"  {key} [{keys[key]}/{total}]" for key in sorted(keys)]
    return "\n".join(lines).rstrip("\n")


def _list(client: Client, params: Params, primary: bool) -> int:
    what = "primary encryption keys" if primary else "encryption keys"
    out(f"{INFO}Gathering installed {what}...")
    try:
        responses, _ = client.query("/v1/operator/keyring", params)
    except APIError as exc:
        err(f"error: {exc}")
        return 1
    for resp in responses or []:
        keys = resp.get("PrimaryKeys" if primary else "Keys") or {}
        out(format_response(resp, keys))
    return 0


def _change(client: Client, method: str, key: str, params: Params, banner: str) -> int:
    out(INFO + banner)
    try:
        client.write(method, "/v1/operator/keyring", params, json.dumps({"Key": key}).encode())
    except APIError as exc:
        err(f"error: {exc}")
        return 1
    return 0


def run(argv: list[str]) -> int:
    f = _Flags()
    if parse_args(f.fs, argv) is None:
        return 1
    actions = sum((f.list.value, f.list_primary.value, bool(f.install.value),
                   bool(f.use.value), bool(f.remove.value)))
    if actions == 0:
        err(help_text())
        return 1
    if actions > 1:
        err("Only a single action is allowed")
        return 1
    if not 0 <= f.relay.value <= 5:
        err("Error parsing relay factor: Relay factor must be in range: [0, 5]")
        return 1
    # Consul checks -local-only against -list alone, so -list-primary refuses it as well
    if f.local.value and not f.list.value:
        err("Error validating local-only: local-only can only be set for list requests")
        return 1
    client = f.http.connect()
    if client is None:
        return 1
    params: Params = []
    if f.relay.value:
        params.append(("relay-factor", str(f.relay.value)))
    if f.list.value or f.list_primary.value:
        if f.local.value:
            params.append(("local-only", "true"))
        return _list(client, params, primary=f.list_primary.value)
    if f.install.value:
        return _change(client, "POST", f.install.value, params,
                       "Installing new gossip encryption key...")
    if f.use.value:
        return _change(client, "PUT", f.use.value, params,
                       "Changing primary gossip encryption key...")
    return _change(client, "DELETE", f.remove.value, params, "Removing gossip encryption key...")
