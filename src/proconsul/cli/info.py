"""`consul info`: the agent's `/v1/agent/self` Stats, in the layout operators grep.

Sections and keys are printed sorted, each key as `\\t<key> = <value>`, exactly as Consul prints
them, because monitoring scripts scrape lines such as `\\tleader = true`.
"""

from __future__ import annotations

import json

from proconsul.cli import err, out
from proconsul.cli.api import APIError, HTTPFlags
from proconsul.cli.flags import FlagSet, parse_args

HELP = """Usage: consul info [options]

  Provides debugging information for operators"""


def _flags() -> tuple[FlagSet, HTTPFlags]:
    fs = FlagSet()
    return fs, HTTPFlags(fs, server=False)


def help_text() -> str:
    fs, _ = _flags()
    return fs.usage(HELP)


def _text(value: object) -> str:
    """Go's `%s` of a decoded JSON value: strings bare, anything else in a readable form."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def run(argv: list[str]) -> int:
    fs, http = _flags()
    if parse_args(fs, argv) is None:
        return 1
    client = http.connect()
    if client is None:
        return 1
    try:
        self_info = client.agent_self()
    except APIError as exc:
        err(f"Error querying agent: {exc}")
        return 1
    stats = self_info.get("Stats")
    if not isinstance(stats, dict):
        err(f"Agent response did not contain 'Stats' key: {self_info}")
        return 1
    for section in sorted(stats):
        out(section + ":")
        values = stats[section]
        if not isinstance(values, dict):
            err(f"Got invalid subkey in stats: {values}")
            return 1
        for key in sorted(values):
            out(f"\t{key} = {_text(values[key])}")
    return 0
