"""`consul leave`: ask the agent at the HTTP address to leave the cluster gracefully.

The agent answers only once it has left, so the success line means the node is really gone from
the member list (and, for a server, from the Raft peers).
"""

from __future__ import annotations

from proconsul.cli import err, out
from proconsul.cli.api import APIError, HTTPFlags
from proconsul.cli.flags import FlagSet, parse_args

HELP = """
Usage: consul leave [options]

  Causes the agent to gracefully leave the Consul cluster and shutdown.
"""


def _flags() -> tuple[FlagSet, HTTPFlags]:
    fs = FlagSet()
    return fs, HTTPFlags(fs, server=False)


def help_text() -> str:
    fs, _ = _flags()
    return fs.usage(HELP)


def run(argv: list[str]) -> int:
    fs, http = _flags()
    rest = parse_args(fs, argv)
    if rest is None:
        return 1
    if rest:
        err(f"Error found unexpected args: [{' '.join(rest)}]")
        out(fs.usage(HELP))
        return 1
    client = http.connect()
    if client is None:
        return 1
    try:
        client.write("PUT", "/v1/agent/leave")
    except APIError as exc:
        err(f"Error leaving: {exc}")
        return 1
    out("Graceful leave complete")
    return 0
