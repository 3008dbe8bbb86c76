"""`consul event`: fire a user event through the local agent (Consul's command/event/event.go).

Scripts read the `Event ID: <uuid>` line (and feed the ID to watchers), so it and the error
lines are worded as Consul words them. Filters are checked here before anything is sent, the
same way the agent checks them again.
"""

from __future__ import annotations

import re

from proconsul.cli import err, out
from proconsul.cli.api import APIError, Client, HTTPFlags
from proconsul.cli.flags import Flag, FlagSet, parse_args

HELP = """
Usage: consul event [options] [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using
  regular expressions on node name, service, and tag definitions.
"""


class _Flags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.name: Flag[str] = self.fs.str_flag("name", "", "Name of the event.")
        self.node: Flag[str] = self.fs.str_flag(
            "node", "", "Regular expression to filter on node names.")
        self.service: Flag[str] = self.fs.str_flag(
            "service", "", "Regular expression to filter on service instances.")
        self.tag: Flag[str] = self.fs.str_flag(
            "tag", "", "Regular expression to filter on service tags. Must be used with "
            "-service.")
        self.http = HTTPFlags(self.fs, server=False)


def help_text() -> str:
    return _Flags().fs.usage(HELP)


def fire(client: Client, name: str, payload: bytes | None, node: str, service: str,
         tag: str) -> str:
    """PUT the event as the Go api client's Event().Fire does; the new event's ID."""
    params = [(key, value) for key, value in (("node", node), ("service", service),
                                             ("tag", tag)) if value]
    resp = client.require_ok(client.request(
        "PUT", "/v1/event/fire/" + name, params, payload, timeout=60.0,
        content_type="application/octet-stream"))
    event = client.decode(resp)
    return str(event.get("ID", "")) if isinstance(event, dict) else ""


def run(argv: list[str]) -> int:
    f = _Flags()
    # the help page is rendered before parsing, as Consul's init() does, so it shows defaults
    usage = f.fs.usage(HELP)
    rest = parse_args(f.fs, argv)
    if rest is None:
        return 1
    if not f.name.value:
        err("Event name must be specified")
        err("")
        err(usage)
        return 1
    for kind, pattern in (("node", f.node.value), ("service", f.service.value),
                          ("tag", f.tag.value)):
        if pattern:
            try:
                re.compile(pattern)
            except (re.error, RecursionError, OverflowError) as exc:
                err(f"Failed to compile {kind} filter regexp: error parsing regexp: {exc}")
                return 1
    if f.tag.value and not f.service.value:
        err("Cannot provide tag filter without service filter.")
        return 1
    payload: bytes | None = None
    if len(rest) == 1:
        payload = rest[0].encode("utf-8", "surrogateescape")
    elif len(rest) > 1:
        err("Too many command line arguments.")
        err("")
        err(usage)
        return 1
    client = f.http.connect()
    if client is None:
        return 1
    try:
        client.agent_node_name()
    except APIError as exc:
        err(f"Error querying Consul agent: {exc}")
        return 1
    try:
        event_id = fire(client, f.name.value, payload, f.node.value, f.service.value,
                        f.tag.value)
    except APIError as exc:
        err(f"Error firing event: {exc}")
        return 1
    out(f"Event ID: {event_id}")
    return 0

