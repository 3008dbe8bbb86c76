"""`consul maint`: put the node or one service in or out of maintenance, or show which are.

Deploy scripts drain a node with `consul maint -enable` and grep the listing to learn whether
a drain is still in place, so the messages, the listing layout (empty when nothing is under
maintenance) and the flag conflicts follow `command/maint/maint.go`.
"""

from __future__ import annotations

import json

from proconsul.cli import err, out
from proconsul.cli.api import APIError, HTTPFlags
from proconsul.cli.flags import Flag, FlagSet, parse_args

HELP = """
Usage: consul maint [options]

  Places a node or service into maintenance mode. During maintenance mode,
  the node or service will be excluded from all queries through the DNS
  or API interfaces, effectively taking it out of the pool of available
  nodes. This is done by registering an additional critical health check.

  When enabling maintenance mode for a node or service, you may optionally
  specify a reason string. This string will appear in the "Notes" field
  of the critical health check which is registered against the node or
  service. If no reason is provided, a default value will be used.

  Maintenance mode is persistent, and will be restored in the event of an
  agent restart. It is therefore required to disable maintenance mode on
  a given node or service before it will be placed back into the pool.

  By default, we operate on the node as a whole. By specifying the
  "-service" argument, this behavior can be changed to enable or disable
  only a specific service.

  If no arguments are given, the agent's maintenance status will be shown.
  This will return blank if nothing is currently under maintenance.
"""

NODE_MAINT_CHECK = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"


class _Flags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.http = HTTPFlags(self.fs, server=False)
        self.enable: Flag[bool] = self.fs.bool_flag("enable", False, "Enable maintenance mode.")
        self.disable: Flag[bool] = self.fs.bool_flag("disable", False,
                                                     "Disable maintenance mode.")
        self.reason: Flag[str] = self.fs.str_flag("reason", "",
                                                  "Text describing the maintenance reason.")
        self.service: Flag[str] = self.fs.str_flag(
            "service", "", "Control maintenance mode for a specific service ID.")


def help_text() -> str:
    return _Flags().fs.usage(HELP)


def go_quote(text: str) -> str:
    """Go's %q for the service ID in the confirmation line."""
    return json.dumps(text, ensure_ascii=False)


def _listing(checks: dict[str, dict[str, object]], node_name: str) -> None:
    """The maintenance blocks, in the agent's check order (Go ranges over the returned map,
    which our agent serves sorted by check ID)."""
    for check_id in sorted(checks):
        check = checks[check_id]
        notes = str(check.get("Notes") or "")
        if check_id == NODE_MAINT_CHECK:
            out("Node:")
            out("  Name:   " + node_name)
            out("  Reason: " + notes)
            out("")
        elif check_id.startswith(SERVICE_MAINT_PREFIX):
            out("Service:")
            out("  ID:     " + str(check.get("ServiceID") or ""))
            out("  Reason: " + notes)
            out("")


def run(argv: list[str]) -> int:
    f = _Flags()
    if parse_args(f.fs, argv) is None:
        return 1
    enable, disable, reason, service = (f.enable.value, f.disable.value, f.reason.value,
                                        f.service.value)
    if enable and disable:
        err("Only one of -enable or -disable may be provided")
        return 1
    if not enable and reason:
        err("Reason may only be provided with -enable")
        return 1
    if not enable and not disable and service:
        err("Service requires either -enable or -disable")
        return 1
    client = f.http.connect()
    if client is None:
        return 1
    try:
        node_name = client.agent_node_name()
    except APIError as exc:
        err(f"Error querying Consul agent: {exc}")
        return 1

    if not enable and not disable:
        try:
            checks, _ = client.query("/v1/agent/checks")
        except APIError as exc:
            err(f"Error getting checks: {exc}")
            return 1
        _listing(checks or {}, node_name)
        return 0

    state = "enabled" if enable else "disabled"
    params = [("enable", "true" if enable else "false")]
    if enable:
        params.append(("reason", reason))
    path = f"/v1/agent/service/maintenance/{service}" if service else "/v1/agent/maintenance"
    verb = "enabling" if enable else "disabling"
    try:
        client.write("PUT", path, params)
    except APIError as exc:
        what = "service" if service else "node"
        err(f"Error {verb} {what} maintenance: {exc}")
        return 1
    if service:
        out(f"Service maintenance is now {state} for {go_quote(service)}")
    else:
        out(f"Node maintenance is now {state}")
    return 0
