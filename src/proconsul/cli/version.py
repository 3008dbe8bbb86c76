"""`consul version`: which Consul this build answers as, in the layout tools parse.

Provisioning tools and wrappers read the first line (`Consul v1.17.0`) to gate features, so it
names the Consul version whose interfaces are implemented; the revision line says which
proconsul release it really is.  `-format=json` keeps Consul's field names and 3-space indent.
"""

from __future__ import annotations

import datetime
import json
import os

import proconsul
from proconsul.cli import err, out
from proconsul.cli.flags import Flag, FlagSet, parse_args

#: RPC protocol versions of the Consul release answered as (agent/consul DefaultRPCProtocol etc.).
RPC_DEFAULT = 2
RPC_MIN = 2
RPC_MAX = 3

HELP = """
Usage: consul version [options]
"""


def revision() -> str:
    return f"proconsul-{proconsul.__version__}"


def build_date() -> str:
    """The package's install time, RFC 3339 in UTC, standing in for Consul's build stamp."""
    stamp = os.path.getmtime(proconsul.__file__)
    moment = datetime.datetime.fromtimestamp(int(stamp), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pretty() -> str:
    supplement = ""
    if RPC_DEFAULT < RPC_MAX:
        supplement = (f" (agent will automatically use protocol >{RPC_DEFAULT} when speaking "
                      "to compatible agents)")
    return (f"Consul v{proconsul.CONSUL_COMPAT_VERSION}\n"
            f"Revision {revision()}\n"
            f"Build Date {build_date()}\n"
            f"Protocol {RPC_DEFAULT} spoken by default, understands {RPC_MIN} to {RPC_MAX}"
            f"{supplement}\n")


def as_json() -> str:
    info = {
        "Version": proconsul.CONSUL_COMPAT_VERSION,
        "Revision": revision(),
        "Prerelease": "",
        "BuildDate": build_date(),
        "RPC": {"Default": RPC_DEFAULT, "Min": RPC_MIN, "Max": RPC_MAX},
    }
    return json.dumps(info, indent=3)


def _flags() -> tuple[FlagSet, Flag[str]]:
    fs = FlagSet()
    fmt = fs.str_flag("format", "pretty", "Output format {pretty|json}")
    return fs, fmt


def help_text() -> str:
    fs, _ = _flags()
    return fs.usage(HELP)


def run(argv: list[str]) -> int:
    fs, fmt = _flags()
    if parse_args(fs, argv) is None:
        return 1
    if fmt.value == "pretty":
        out(pretty())
    elif fmt.value == "json":
        out(as_json())
    else:
        err(f"Unknown format: {fmt.value}")
        return 1
    return 0
