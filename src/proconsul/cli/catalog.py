"""`consul catalog datacenters|nodes|services`: read-only views of the catalog.

Inventory scripts split these listings on whitespace and rely on their quirks: `nodes` shortens
IDs to the first UUID group unless `-detailed`, `services -tags` aligns with Go's tabwriter (not
columnize), an empty result is a message on stderr with exit status 0, and a failing
`datacenters` query still exits 0.  The layouts follow `command/catalog/` in Consul.
"""

from __future__ import annotations

import sys
from typing import Any

from proconsul.cli import err, out
from proconsul.cli.api import APIError, Client, HTTPFlags
from proconsul.cli.flags import COMMAND_GROUP, Flag, FlagSet, parse_args
from proconsul.cli.members import columnize

HELP_CATALOG = """
Usage: consul catalog <subcommand> [options] [args]

  This command has subcommands for interacting with Consul's catalog. The
  catalog should not be confused with the agent, although the APIs and
  responses may be similar.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  List all datacenters:

      $ consul catalog datacenters

  List all nodes:

      $ consul catalog nodes

  List all services:

      $ consul catalog services

  For more examples, ask for subcommand help or view the documentation.
"""

HELP_DATACENTERS = """
Usage: consul catalog datacenters [options]

  Retrieves the list of all known datacenters. This datacenters are sorted in
  ascending order based on the estimated median round trip time from the servers
  in this datacenter to the servers in the other datacenters.

  To retrieve the list of datacenters:

      $ consul catalog datacenters

  For a full list of options and examples, please see the Consul documentation.
"""

HELP_NODES = """
Usage: consul catalog nodes [options]

  Retrieves the list nodes registered in a given datacenter. By default, the
  datacenter of the local agent is queried.

  To retrieve the list of nodes:

      $ consul catalog nodes

  To print detailed information including full node IDs, tagged addresses, and
  metadata information:

      $ consul catalog nodes -detailed

  To list nodes which are running a particular service:

      $ consul catalog nodes -service=web

  To filter by node metadata:

      $ consul catalog nodes -node-meta="foo=bar"

  To sort nodes by estimated round-trip time from node-web:

      $ consul catalog nodes -near=node-web

  For a full list of options and examples, please see the Consul documentation.
"""

HELP_SERVICES = """
Usage: consul catalog services [options]

  Retrieves the list services registered in a given datacenter. By default, the
  datacenter of the local agent is queried.

  To retrieve the list of services:

      $ consul catalog services

  To include the services' tags in the output:

      $ consul catalog services -tags

  To list services which run on a particular node:

      $ consul catalog services -node=web

  To filter services on node metadata:

      $ consul catalog services -node-meta="foo=bar"

  For a full list of options and examples, please see the Consul documentation.
"""

_DELIM = "\x1f"


def map_flag(fs: FlagSet, name: str, usage: str) -> Flag[dict[str, str]]:
    """Consul's FlagMapValue: repeated `key=value`, refused at parse time without an `=`."""

    def put(flag: Flag[dict[str, str]], raw: str) -> None:
        key, sep, value = raw.partition("=")
        if not sep:
            raise ValueError(f'Missing "=" value in argument: {raw}')
        flag.value = {**flag.value, key: value}

    def text(flag: Flag[dict[str, str]]) -> str:
        return "map[" + " ".join(f"{k}:{flag.value[k]}" for k in sorted(flag.value)) + "]"

    flag: Flag[dict[str, str]] = Flag(name, {}, usage, put, "value", False, COMMAND_GROUP,
                                      "map[]", "map[]", text=text)
    return fs._add(flag)


def node_meta_params(meta: dict[str, str]) -> list[tuple[str, str]]:
    """The Go client sends node metadata filters as repeated `node-meta=key:value`."""
    return [("node-meta", f"{k}:{meta[k]}") for k in sorted(meta)]


def load_data_source(data: str) -> str:
    """helpers.LoadDataSource: `@file` reads a file, a lone `-` reads stdin, else literal."""
    if data.startswith("@"):
        try:
            with open(data[1:], encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError as exc:
            raise APIError(f"Failed to read file: open {data[1:]}: "
                           f"{(exc.strerror or str(exc)).lower()}") from None
    if data == "-":
        try:
            return sys.stdin.read()
        except OSError as exc:
            raise APIError(f"Failed to read stdin: {exc}") from None
    return data


def _too_many(args: list[str]) -> bool:
    if args:
        err(f"Too many arguments (expected 0, got {len(args)})")
        return True
    return False


# ----------------------------------------------------------------------------------------------
# datacenters


def _dc_flags() -> tuple[FlagSet, HTTPFlags]:
    fs = FlagSet()
    return fs, HTTPFlags(fs)


def help_catalog() -> str:
    return HELP_CATALOG.strip()


def help_datacenters() -> str:
    return _dc_flags()[0].usage(HELP_DATACENTERS)


def run_datacenters(argv: list[str]) -> int:
    fs, http = _dc_flags()
    args = parse_args(fs, argv)
    if args is None or _too_many(args):
        return 1
    client = http.connect()
    if client is None:
        return 1
    try:
        dcs, _ = client.query("/v1/catalog/datacenters")
    except APIError as exc:
        # Consul reports the failure but falls through with an empty list and exit status 0.
        err(f"Error listing datacenters: {exc}")
        return 0
    for dc in dcs or []:
        out(str(dc))
    return 0


# ----------------------------------------------------------------------------------------------
# nodes


class _NodeFlags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.filter: Flag[str] = self.fs.str_flag("filter", "", "Filter to use with the request")
        self.detailed: Flag[bool] = self.fs.bool_flag(
            "detailed", False,
            "Output detailed information about the nodes including their addresses and "
            "metadata.")
        self.near: Flag[str] = self.fs.str_flag(
            "near", "",
            "Node name to sort the node list in ascending order based on estimated round-trip "
            'time from that node. Passing "_agent" will use this agent\'s node for sorting.')
        self.node_meta = map_flag(
            self.fs, "node-meta",
            "Metadata to filter nodes with the given `key=value` pairs. This flag may be "
            "specified multiple times to filter on multiple sources of metadata.")
        self.service: Flag[str] = self.fs.str_flag(
            "service", "",
            "Service `id or name` to filter nodes. Only nodes which are providing the given "
            "service will be returned.")
        self.http = HTTPFlags(self.fs)
        self.partition: Flag[str] = self.fs.str_flag(
            "partition", "",
            "Specifies the admin partition to query. If not provided, the admin partition will be "
            "inferred from the request's ACL token, or will default to the `default` admin "
            "partition. Admin Partitions are a Consul Enterprise feature.")


def help_nodes() -> str:
    return _NodeFlags().fs.usage(HELP_NODES)


def _kv_text(value: Any) -> str:
    """mapToKV: `k=v` pairs sorted by key, joined by a comma and a space."""
    pairs = value if isinstance(value, dict) else {}
    return ", ".join(f"{k}={pairs[k]}" for k in sorted(pairs))


def node_rows(nodes: list[dict[str, Any]], detailed: bool) -> list[str]:
    """The rows Consul columnizes: a header, then one row per node in the order received."""
    if detailed:
        rows = [_DELIM.join(["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"])]
    else:
        rows = [_DELIM.join(["Node", "ID", "Address", "DC"])]
    for node in nodes:
        node_id = str(node.get("ID") or "")
        cells = [str(node.get("Node") or ""), node_id, str(node.get("Address") or ""),
                 str(node.get("Datacenter") or "")]
        if detailed:
            cells += [_kv_text(node.get("TaggedAddresses")), _kv_text(node.get("Meta"))]
        else:
            dash = node_id.find("-")
            if dash > 0:
                cells[1] = node_id[:dash]
        rows.append(_DELIM.join(cells))
    return rows


def _service_nodes(client: Client, service: str, params: list[tuple[str, str]]
                   ) -> list[dict[str, Any]]:
    entries, _ = client.query(f"/v1/catalog/service/{service}", params)
    return [{"ID": e.get("ID"), "Node": e.get("Node"), "Address": e.get("Address"),
             "Datacenter": e.get("Datacenter"), "TaggedAddresses": e.get("TaggedAddresses"),
             "Meta": e.get("NodeMeta")} for e in entries or []]


def run_nodes(argv: list[str]) -> int:
    f = _NodeFlags()
    args = parse_args(f.fs, argv)
    if args is None or _too_many(args):
        return 1
    try:
        cfg = f.http.config()
        if f.partition.value:
            cfg.partition = f.partition.value
        client = Client(cfg)
    except APIError as exc:
        err(f"Error connecting to Consul agent: {exc}")
        return 1
    filter_text = f.filter.value
    if filter_text:
        try:
            filter_text = load_data_source(filter_text)
        except APIError as exc:
            err(f"Could not process filter argument: {exc}")
            return 1
    params = node_meta_params(f.node_meta.value)
    if f.near.value:
        params.append(("near", f.near.value))
    if filter_text:
        params.append(("filter", filter_text))
    if f.http.stale:
        params.append(("stale", ""))
    try:
        if f.service.value:
            nodes = _service_nodes(client, f.service.value, params)
        else:
            found, _ = client.query("/v1/catalog/nodes", params)
            nodes = list(found or [])
    except APIError as exc:
        what = "nodes for service" if f.service.value else "nodes"
        err(f"Error listing {what}: {exc}")
        return 1
    if not nodes:
        err("No nodes match the given query - try expanding your search.")
        return 0
    out(columnize(node_rows(nodes, f.detailed.value), _DELIM))
    return 0


# ----------------------------------------------------------------------------------------------
# services


class _ServiceFlags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.node: Flag[str] = self.fs.str_flag(
            "node", "", "Node `id or name` for which to list services.")
        self.node_meta = map_flag(
            self.fs, "node-meta",
            "Metadata to filter nodes with the given `key=value` pairs. If specified, only "
            "services running on nodes matching the given metadata will be returned. This flag "
            "may be specified multiple times to filter on multiple sources of metadata.")
        self.tags: Flag[bool] = self.fs.bool_flag(
            "tags", False,
            "Display each service's tags as a comma-separated list beside each service entry.")
        self.http = HTTPFlags(self.fs)


def help_services() -> str:
    return _ServiceFlags().fs.usage(HELP_SERVICES)


def tabwriter_two_columns(rows: list[tuple[str, str]], padding: int = 6) -> str:
    """Go's tabwriter with minwidth 0 and the given padding over `name\\ttags\\n` lines."""
    width = max((len(name) for name, _ in rows), default=0) + padding
    return "".join(f"{name.ljust(width)}{tags}\n" for name, tags in rows)


def run_services(argv: list[str]) -> int:
    f = _ServiceFlags()
    args = parse_args(f.fs, argv)
    if args is None or _too_many(args):
        return 1
    client = f.http.connect()
    if client is None:
        return 1
    params = node_meta_params(f.node_meta.value)
    if f.http.stale:
        params.append(("stale", ""))
    services: dict[str, list[str]] = {}
    try:
        if f.node.value:
            found, _ = client.query(f"/v1/catalog/node/{f.node.value}", params)
            if found:
                for svc in (found.get("Services") or {}).values():
                    services.setdefault(str(svc.get("Service", "")), []).extend(
                        svc.get("Tags") or [])
        else:
            listed, _ = client.query("/v1/catalog/services", params)
            services = {str(k): list(v or []) for k, v in (listed or {}).items()}
    except APIError as exc:
        what = "services for node" if f.node.value else "services"
        err(f"Error listing {what}: {exc}")
        return 1
    if not services:
        err("No services match the given query - try expanding your search.")
        return 0
    order = sorted(services)
    if f.tags.value:
        rows = [(name, ",".join(sorted(services[name]))) for name in order]
        out(tabwriter_two_columns(rows).strip())
    else:
        for name in order:
            out(name)
    return 0
