"""`consul services register|deregister`: manage services on the local agent from the shell.

Provisioning tools register the very files they would drop into a config directory, so service
files go through the agent's own config loading (`proconsul.config`): the same HCL/JSON
grammar, `service {}` and `services []` blocks, key checks and error texts as `consul agent`.
Flags fill in whatever a file leaves out, as in `command/services/register/register.go`, and the
confirmation lines and argument rules follow Consul's commands.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from proconsul.cli import err, out
from proconsul.cli.api import APIError, Client, HTTPFlags
from proconsul.cli.catalog import map_flag
from proconsul.cli.flags import Flag, FlagSet, parse_args
from proconsul.config import decode, load_files, merge
from proconsul.errors import ConfigError

HELP_SERVICES = """
Usage: consul services <subcommand> [options] [args]

  This command has subcommands for interacting with services. The subcommands
  default to working with services registered with the local agent. Please see
  the "consul catalog" command for interacting with the entire catalog.

  For more examples, ask for subcommand help or view the documentation.
"""

HELP_REGISTER = """
Usage: consul services register [options] [FILE...]

  Register one or more services using the local agent API. Services can
  be registered from standard Consul configuration files (HCL or JSON) or
  using flags. The service is registered and the command returns. The caller
  must remember to call "consul services deregister" or a similar API to
  deregister the service when complete.

      $ consul services register web.json

  Additional flags and more advanced use cases are detailed below.
"""

HELP_DEREGISTER = """
Usage: consul services deregister [options] [FILE...]

  Deregister one or more services that were previously registered with
  the local agent.

      $ consul services deregister web.json db.json

  The -id flag may be used to deregister a single service by ID:

      $ consul services deregister -id=web

  Services are deregistered from the local agent catalog. This command must
  be run against the same agent where the service was registered.
"""

_ENTERPRISE_USAGE = {
    "namespace": "Specifies the namespace to query. If not provided, the namespace will be "
                 "inferred from the request's ACL token, or will default to the `default` "
                 "namespace. Namespaces are a Consul Enterprise feature.",
    "partition": "Specifies the admin partition to query. If not provided, the admin partition "
                 "will be inferred from the request's ACL token, or will default to the "
                 "`default` admin partition. Admin Partitions are a Consul Enterprise feature.",
}


def go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def services_from_files(paths: list[str]) -> list[dict[str, Any]]:
    """Service blocks of the files, merged in order as the agent would load them (snake_case
    keys; the agent's register endpoint folds case and underscores, so they are sent as is)."""
    decoded = [decode(source) for source in load_files(paths)]
    services = merge(decoded).data.get("services") or []
    return [dict(svc) for svc in services if isinstance(svc, Mapping)]


def _tenancy(fs: FlagSet, names: tuple[str, ...]) -> dict[str, Flag[str]]:
    return {name: fs.str_flag(name, "", _ENTERPRISE_USAGE[name]) for name in names}


def _connect(http: HTTPFlags, tenancy: dict[str, Flag[str]]) -> Client | None:
    """The client with any `-namespace`/`-partition` applied, or None after Consul's error."""
    try:
        cfg = http.config()
        for name, flag in tenancy.items():
            if flag.value:
                setattr(cfg, name, flag.value)
        return Client(cfg)
    except APIError as exc:
        err(f"Error connecting to Consul agent: {exc}")
        return None


# ----------------------------------------------------------------------------------------------
# register


class _RegisterFlags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        fs = self.fs
        self.id: Flag[str] = fs.str_flag(
            "id", "", "ID of the service to register for arg-based registration. If this isn't "
            "set, it will default to the -name value.")
        self.name: Flag[str] = fs.str_flag(
            "name", "", "Name of the service to register for arg-based registration.")
        self.address: Flag[str] = fs.str_flag(
            "address", "", "Address of the service to register for arg-based registration.")
        self.port: Flag[int] = fs.int_flag(
            "port", 0, "Port of the service to register for arg-based registration.")
        self.socket: Flag[str] = fs.str_flag(
            "socket", "", "Path to the Unix domain socket to register for arg-based "
            "registration (conflicts with address and port).")
        self.meta = map_flag(
            fs, "meta", "Metadata to set on the service, formatted as key=value. This flag may "
            "be specified multiple times to set multiple meta fields.")
        self.tag: Flag[list[str]] = fs.list_flag(
            "tag", "Tag to add to the service. This flag can be specified multiple times to set "
            "multiple tags.")
        self.tagged_address = map_flag(
            fs, "tagged-address", "Tagged address to set on the service, formatted as "
            "key=value. This flag may be specified multiple times to set multiple addresses.")
        self.kind: Flag[str] = fs.str_flag("kind", "", "The services 'kind'")
        self.http = HTTPFlags(fs)
        self.tenancy = _tenancy(fs, ("namespace", "partition"))


def help_services() -> str:
    return HELP_SERVICES.strip()


def help_register() -> str:
    return _RegisterFlags().fs.usage(HELP_REGISTER)


def parse_service_addr(text: str) -> dict[str, Any]:
    """api.ParseServiceAddr: `host:port`, `[v6]:port` or a bare host with port 0."""
    host, port = text, 0
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"address {text}: missing ']' in address")
        host, rest = text[1:close], text[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"address {text}: missing port in address")
            port = _port(rest[1:])
    elif text.count(":") == 1:
        host, raw = text.split(":", 1)
        port = _port(raw)
    return {"Address": host, "Port": port}


def _port(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f'strconv.Atoi: parsing {go_quote(raw)}: invalid syntax') from None


def _flag_service(f: _RegisterFlags, tagged: dict[str, Any]) -> dict[str, Any]:
    svc: dict[str, Any] = {"Kind": f.kind.value, "ID": f.id.value, "Name": f.name.value,
                           "Address": f.address.value, "Port": f.port.value,
                           "SocketPath": f.socket.value}
    svc = {k: v for k, v in svc.items() if v}
    if f.tag.value:
        svc["Tags"] = list(f.tag.value)
    if f.meta.value:
        svc["Meta"] = dict(f.meta.value)
    if tagged:
        svc["TaggedAddresses"] = tagged
    return svc


def combine(file_svc: dict[str, Any], flags_svc: dict[str, Any]) -> dict[str, Any]:
    """CombineArgs: scalar flags fill what the file leaves empty; meta, tagged addresses and
    tags from flags are added on top of the file's."""
    out_svc = dict(file_svc)
    for api_key, file_key in (("ID", "id"), ("Name", "name"), ("Address", "address"),
                              ("Port", "port"), ("Kind", "kind"),
                              ("SocketPath", "socket_path")):
        if flags_svc.get(api_key) and not out_svc.get(file_key):
            out_svc[file_key] = flags_svc[api_key]
    out_svc["meta"] = {**(out_svc.get("meta") or {}), **flags_svc.get("Meta", {})}
    out_svc["tagged_addresses"] = {**(out_svc.get("tagged_addresses") or {}),
                                   **flags_svc.get("TaggedAddresses", {})}
    out_svc["tags"] = [*(out_svc.get("tags") or []), *flags_svc.get("Tags", [])]
    return out_svc


def _name(svc: Mapping[str, Any]) -> str:
    return str(svc.get("Name") or svc.get("name") or "")


def run_register(argv: list[str]) -> int:
    f = _RegisterFlags()
    args = parse_args(f.fs, argv)
    if args is None:
        return 1
    tagged: dict[str, Any] = {}
    for key in sorted(f.tagged_address.value):
        try:
            tagged[key] = parse_service_addr(f.tagged_address.value[key])
        except ValueError as exc:
            err(f"Invalid Tagged Address: {exc}")
            return 1
    flags_svc = _flag_service(f, tagged)
    if not args and not f.name.value:
        err("Service registration requires at least one argument or flags.")
        return 1
    if args and f.name.value:
        err("Service registration requires arguments or -id, not both.")
        return 1
    svcs: list[dict[str, Any]] = [flags_svc]
    if args:
        try:
            from_files = services_from_files(args)
        except ConfigError as exc:
            err(f"Error: {exc}")
            return 1
        if from_files:
            svcs = [combine(svc, flags_svc) for svc in from_files]
    client = _connect(f.http, f.tenancy)
    if client is None:
        return 1
    for svc in svcs:
        try:
            client.write("PUT", "/v1/agent/service/register", [], json.dumps(svc).encode())
        except APIError as exc:
            err(f"Error registering service {go_quote(_name(svc))}: {exc}")
            return 1
        out(f"Registered service: {_name(svc)}")
    return 0


# ----------------------------------------------------------------------------------------------
# deregister


class _DeregisterFlags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.id: Flag[str] = self.fs.str_flag(
            "id", "", "ID to delete. This must not be set if arguments are given.")
        self.http = HTTPFlags(self.fs)
        self.tenancy = _tenancy(self.fs, ("namespace",))


def help_deregister() -> str:
    return _DeregisterFlags().fs.usage(HELP_DEREGISTER)


def run_deregister(argv: list[str]) -> int:
    f = _DeregisterFlags()
    args = parse_args(f.fs, argv)
    if args is None:
        return 1
    if not args and not f.id.value:
        err("Service deregistration requires at least one argument or -id.")
        return 1
    if args and f.id.value:
        err("Service deregistration requires arguments or -id, not both.")
        return 1
    svcs: list[dict[str, Any]] = [{"id": f.id.value}]
    if args:
        try:
            svcs = services_from_files(args)
        except ConfigError as exc:
            err(f"Error: {exc}")
            return 1
    client = _connect(f.http, f.tenancy)
    if client is None:
        return 1
    for svc in svcs:
        sid = str(svc.get("id") or svc.get("name") or "")
        if not sid:
            continue
        try:
            client.write("PUT", f"/v1/agent/service/deregister/{sid}")
        except APIError as exc:
            # Consul's deregister reuses the register command's wording here.
            err(f"Error registering service {go_quote(str(svc.get('name') or ''))}: {exc}")
            return 1
        out(f"Deregistered service: {sid}")
    return 0
