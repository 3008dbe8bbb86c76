"""`consul members`: the gossip member list as Consul's aligned table.

Scripts parse this table by whitespace columns and test the exit status (2 when `-status`
filters every member out), so the columns, their order, the sort and the tag-derived cells follow
`command/members/members.go`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from proconsul.cli import err, out
from proconsul.cli.api import APIError, Client, HTTPFlags
from proconsul.cli.flags import Flag, FlagSet, parse_args

HELP = """
Usage: consul members [options]

  Outputs the members of a running Consul agent.
"""

ALL_SEGMENTS = "_all"
_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
_DELIM = "\x1f"


def columnize(lines: list[str], delim: str = _DELIM, glue: str = "  ") -> str:
    """ryanuber/columnize: left-aligned columns joined by at least two spaces, last one unpadded."""
    rows = [[cell.strip() for cell in line.split(delim)] for line in lines]
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row):
            if i >= len(widths):
                widths.append(len(cell))
            else:
                widths[i] = max(widths[i], len(cell))
    rendered = []
    for row in rows:
        parts = [cell.ljust(widths[i]) + glue for i, cell in enumerate(row[:-1])]
        rendered.append("".join(parts) + (row[-1] if row else ""))
    return "\n".join(rendered)


def status_text(status: object) -> str:
    if isinstance(status, int) and not isinstance(status, bool):
        return _STATUS.get(status, "unknown")
    return str(status).lower()


def address(member: dict[str, Any]) -> str:
    """net.TCPAddr's text: IPv6 in brackets, an unparsable IP left out."""
    raw = str(member.get("Addr") or "")
    port = int(member.get("Port") or 0)
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        return f":{port}"
    if ip.version == 6 and ip.ipv4_mapped is None:
        return f"[{ip}]:{port}"
    host = str(ip.ipv4_mapped) if ip.version == 6 and ip.ipv4_mapped else str(ip)
    return f"{host}:{port}"


def _is_default(partition: str) -> bool:
    return partition in ("", "default")


def _sort_key(member: dict[str, Any]) -> tuple[int, int, str, str, str]:
    tags = member["Tags"]
    partition = tags.get("ap", "")
    return (0 if tags.get("role") == "consul" else 1,
            0 if _is_default(partition) else 1,
            tags.get("segment", ""), partition, str(member.get("Name", "")))


def standard_lines(members: list[dict[str, Any]]) -> list[str]:
    d = _DELIM
    lines = [d.join(["Node", "Address", "Status", "Type", "Build", "Protocol", "DC",
                     "Partition", "Segment"])]
    for member in members:
        tags = member["Tags"]
        build = tags.get("build", "")
        build = "< 0.3" if not build else build.split(":", 1)[0]
        name, addr, status = str(member.get("Name", "")), address(member), status_text(
            member.get("Status"))
        role = tags.get("role", "")
        kind = {"node": "client", "consul": "server"}.get(role)
        if kind is None:
            lines.append(d.join([name, addr, status, "unknown", "", "", "", "", ""]))
            continue
        lines.append(d.join([name, addr, status, kind, build, tags.get("vsn", ""),
                             tags.get("dc", ""), tags.get("ap", ""), tags.get("segment", "")]))
    return lines


def detailed_lines(members: list[dict[str, Any]]) -> list[str]:
    lines = [_DELIM.join(["Node", "Address", "Status", "Tags"])]
    for member in members:
        tags = member["Tags"]
        joined = ",".join(f"{k}={tags[k]}" for k in sorted(tags))
        lines.append(_DELIM.join([str(member.get("Name", "")), address(member),
                                  status_text(member.get("Status")), joined]))
    return lines


class _Flags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.http = HTTPFlags(self.fs, server=False)
        self.detailed: Flag[bool] = self.fs.bool_flag(
            "detailed", False, "Provides detailed information about nodes.")
        self.wan: Flag[bool] = self.fs.bool_flag(
            "wan", False,
            "If the agent is in server mode, this can be used to return the other peers in the "
            "WAN pool.")
        self.status: Flag[str] = self.fs.str_flag(
            "status", ".*",
            "If provided, output is filtered to only nodes matching the regular expression for "
            "status.")
        self.segment: Flag[str] = self.fs.str_flag(
            "segment", ALL_SEGMENTS,
            "(Enterprise-only) If provided, output is filtered to only nodes inthe given segment.")
        self.filter: Flag[str] = self.fs.str_flag("filter", "", "Filter to use with the request")
        self.partition: Flag[str] = self.fs.str_flag(
            "partition", "",
            "Specifies the admin partition to query. If not provided, the admin partition will be "
            "inferred from the request's ACL token, or will default to the `default` admin "
            "partition. Admin Partitions are a Consul Enterprise feature.")


def help_text() -> str:
    return _Flags().fs.usage(HELP)


def run(argv: list[str]) -> int:
    f = _Flags()
    if parse_args(f.fs, argv) is None:
        return 1
    try:
        status_re = re.compile(f.status.value)
    except re.error as exc:
        err(f"Failed to compile status regexp: {exc}")
        return 1
    try:
        cfg = f.http.config()
        if f.partition.value:
            cfg.partition = f.partition.value
        client = Client(cfg)
    except APIError as exc:
        err(f"Error connecting to Consul agent: {exc}")
        return 1
    params = [("segment", f.segment.value)]
    if f.wan.value:
        params.append(("wan", "1"))
    if f.filter.value:
        params.append(("filter", f.filter.value))
    try:
        members, _ = client.query("/v1/agent/members", params, timeout=60.0)
    except APIError as exc:
        err(f"Error retrieving members: {exc}")
        return 1

    kept = []
    for member in members or []:
        tags = member.get("Tags") or {}
        member["Tags"] = tags
        if not tags.get("ap"):
            tags["ap"] = "default"
        if _is_default(tags["ap"]):
            if f.segment.value == ALL_SEGMENTS and tags.get("role") == "consul":
                tags["segment"] = "<all>"
            elif not tags.get("segment"):
                tags["segment"] = "<default>"
        else:
            tags["segment"] = ""
        if status_re.search(status_text(member.get("Status"))):
            kept.append(member)
    if not kept:
        return 2
    kept.sort(key=_sort_key)
    lines = detailed_lines(kept) if f.detailed.value else standard_lines(kept)
    out(columnize(lines))
    return 0
