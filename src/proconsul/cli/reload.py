"""`consul reload`: make the agent re-read its configuration, as SIGHUP would.

The agent validates the new configuration before applying it; a rejected one comes back as a 500
whose body names the problem, and is reported as `Error reloading: ...`.
"""

from __future__ import annotations

from proconsul.cli import err, out
from proconsul.cli.api import APIError, HTTPFlags
from proconsul.cli.flags import FlagSet, parse_args

HELP = """
Usage: consul reload

  Causes the agent to reload configurations. This can be used instead
  of sending the SIGHUP signal to the agent.
"""


def _flags() -> tuple[FlagSet, HTTPFlags]:
    fs = FlagSet()
    return fs, HTTPFlags(fs, server=False)


def help_text() -> str:
    fs, _ = _flags()
    return fs.usage(HELP)


def run(argv: list[str]) -> int:
    fs, http = _flags()
    if parse_args(fs, argv) is None:
        return 1
    client = http.connect()
    if client is None:
        return 1
    try:
        client.write("PUT", "/v1/agent/reload")
    except APIError as exc:
        err(f"Error reloading: {exc}")
        return 1
    out("Configuration reload triggered")
    return 0
