"""Entry point of `proconsul` (and of `consul`, a symlink to it): Consul's command dispatch.

Consul dispatches with mitchellh/cli, and wrappers rely on its conventions: `-h`/`-help`/`--help`
anywhere before `--` prints the command's help, `-v`/`--version` before the command prints the
version, nested commands (`kv get`) resolve by longest prefix, and an unknown command prints the
command list and exits 127.  Command modules are imported only when run, so `proconsul kv get`
does not pay for loading the agent.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from proconsul.cli import err

APP = "consul"


@dataclass(frozen=True)
class Entry:
    """Where a command lives and what `consul -h` says about it."""

    module: str
    run: str
    help: str | None
    synopsis: str


COMMANDS: dict[str, Entry] = {
    "agent": Entry("proconsul.cli.agent", "run", None, "Runs a Consul agent"),
    "catalog": Entry("proconsul.cli.catalog", "", "help_catalog",
                     "Interact with the catalog"),
    "catalog datacenters": Entry("proconsul.cli.catalog", "run_datacenters", "help_datacenters",
                                 "Lists all known datacenters"),
    "catalog nodes": Entry("proconsul.cli.catalog", "run_nodes", "help_nodes",
                           "Lists all nodes in the given datacenter"),
    "catalog services": Entry("proconsul.cli.catalog", "run_services", "help_services",
                              "Lists all registered services in a datacenter"),
    "event": Entry("proconsul.cli.event", "run", "help_text", "Fire a new event"),
    "force-leave": Entry("proconsul.cli.join", "run_force_leave", "help_force_leave",
                         "Forces a member of the cluster to enter the \"left\" state"),
    "info": Entry("proconsul.cli.info", "run", "help_text",
                  "Provides debugging information for operators."),
    "join": Entry("proconsul.cli.join", "run_join", "help_join",
                  "Tell Consul agent to join cluster"),
    "keyring": Entry("proconsul.cli.keyring", "run", "help_text",
                     "Manages gossip layer encryption keys"),
    "kv": Entry("proconsul.cli.kv", "", "help_kv", "Interact with the key-value store"),
    "kv delete": Entry("proconsul.cli.kv", "run_delete", "help_delete",
                       "Removes data from the KV store"),
    "kv export": Entry("proconsul.cli.kv", "run_export", "help_export",
                       "Exports a tree from the KV store as JSON"),
    "kv get": Entry("proconsul.cli.kv", "run_get", "help_get",
                    "Retrieves or lists data from the KV store"),
    "kv import": Entry("proconsul.cli.kv", "run_import", "help_import",
                       "Imports a tree stored as JSON to the KV store"),
    "kv put": Entry("proconsul.cli.kv", "run_put", "help_put",
                    "Sets or updates data in the KV store"),
    "leave": Entry("proconsul.cli.leave", "run", "help_text",
                   "Gracefully leaves the Consul cluster and shuts down"),
    "lock": Entry("proconsul.cli.lock", "run", "help_text", "Execute a command holding a lock"),
    "maint": Entry("proconsul.cli.maint", "run", "help_text",
                   "Controls node or service maintenance mode"),
    "members": Entry("proconsul.cli.members", "run", "help_text",
                     "Lists the members of a Consul cluster"),
    "reload": Entry("proconsul.cli.reload", "run", "help_text",
                    "Triggers the agent to reload configuration files"),
    "rtt": Entry("proconsul.cli.rtt", "run", "help_text",
                 "Estimates network round trip time between nodes"),
    "services": Entry("proconsul.cli.services", "", "help_services",
                      "Interact with services"),
    "services deregister": Entry("proconsul.cli.services", "run_deregister", "help_deregister",
                                 "Deregister services with the local agent"),
    "services register": Entry("proconsul.cli.services", "run_register", "help_register",
                               "Register services with the local agent"),
    "operator": Entry("proconsul.cli.operator", "", "help_operator",
                      "Provides cluster-level tools for Consul operators"),
    "operator autopilot": Entry("proconsul.cli.operator", "", "help_autopilot",
                                "Provides tools for modifying Autopilot configuration"),
    "operator autopilot get-config": Entry(
        "proconsul.cli.operator", "run_get_config", "help_get_config",
        "Display the current Autopilot configuration"),
    "operator autopilot set-config": Entry(
        "proconsul.cli.operator", "run_set_config", "help_set_config",
        "Modify the current Autopilot configuration"),
    "operator autopilot state": Entry("proconsul.cli.operator", "run_state", "help_state",
                                      "Display the current Autopilot state"),
    "operator raft": Entry("proconsul.cli.operator", "", "help_raft",
                           "Provides cluster-level tools for Consul operators"),
    "operator raft list-peers": Entry("proconsul.cli.operator", "run_list_peers",
                                      "help_list_peers",
                                      "Display the current Raft peer configuration"),
    "operator raft remove-peer": Entry("proconsul.cli.operator", "run_remove_peer",
                                       "help_remove_peer",
                                       "Remove a Consul server from the Raft configuration"),
    "operator raft transfer-leader": Entry("proconsul.cli.operator", "run_transfer_leader",
                                           "help_transfer_leader",
                                           "Transfer raft leadership to another node"),
    "snapshot": Entry("proconsul.cli.snapshot", "", "help_snapshot",
                      "Saves, restores and inspects snapshots of Consul server state"),
    "snapshot inspect": Entry("proconsul.cli.snapshot", "run_inspect", "help_inspect",
                              "Displays information about a Consul snapshot file"),
    "snapshot restore": Entry("proconsul.cli.snapshot", "run_restore", "help_restore",
                              "Restores snapshot of Consul server state"),
    "snapshot save": Entry("proconsul.cli.snapshot", "run_save", "help_save",
                           "Saves snapshot of Consul server state"),
    "validate": Entry("proconsul.cli.validate", "run", "help_text",
                      "Validate config files/directories"),
    "version": Entry("proconsul.cli.version", "run", "help_text", "Prints the Consul version"),
    "watch": Entry("proconsul.cli.watch", "run", "help_text", "Watch for changes in Consul"),
}

_HELP_FLAGS = {"-h", "-help", "--help"}
_VERSION_FLAGS = {"-v", "-version", "--version"}


def command_list() -> str:
    """mitchellh/cli's BasicHelpFunc page: every top-level command with its synopsis."""
    names = sorted(name for name in COMMANDS if " " not in name)
    width = max(len(name) for name in names)
    lines = [f"Usage: {APP} [--version] [--help] <command> [<args>]", "", "Available commands are:"]
    lines += [f"    {name.ljust(width)}    {COMMANDS[name].synopsis}" for name in names]
    return "\n".join(lines) + "\n"


def _load(entry: Entry, attr: str) -> Callable[..., object]:
    module = importlib.import_module(entry.module)
    func: Callable[..., object] = getattr(module, attr)
    return func


def command_help(name: str) -> str:
    """The help page of one command, with its subcommands listed as mitchellh/cli lists them."""
    entry = COMMANDS[name]
    text = str(_load(entry, entry.help)()) if entry.help else ""
    children = sorted(k for k in COMMANDS if k.startswith(name + " ") and k.count(" ") == 1 +
                      name.count(" "))
    if children:
        width = max(len(k.rsplit(" ", 1)[1]) for k in children)
        text += "\n\nSubcommands:"
        for child in children:
            short = child.rsplit(" ", 1)[1]
            text += f"\n    {short.ljust(width)}    {COMMANDS[child].synopsis}"
    return text + "\n"


@dataclass
class _Parsed:
    command: str = ""
    args: list[str] = field(default_factory=list)
    is_help: bool = False
    is_version: bool = False
    top_flags: list[str] = field(default_factory=list)


def _resolve(argv: list[str]) -> _Parsed:
    """mitchellh/cli's processArgs: find help/version flags and the (possibly nested) command."""
    parsed = _Parsed()
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in _HELP_FLAGS:
            parsed.is_help = True
            continue
        if parsed.command:
            continue
        if arg in _VERSION_FLAGS:
            parsed.is_version = True
            continue
        if arg.startswith("-"):
            parsed.top_flags.append(arg)
            continue
        if not arg:
            continue
        words = argv[i:]
        best = arg
        for n in range(len(words), 1, -1):
            candidate = " ".join(words[:n])
            if candidate in COMMANDS:
                best = candidate
                break
        parsed.command = best
        consumed = i + best.count(" ") + 1
        parsed.args = argv[consumed:]
    return parsed


def main(argv: list[str] | None = None) -> int:
    """Run one `consul` command line and return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parsed = _resolve(args)
    if argv is None and parsed.command != "agent":
        # As a process, die quietly on a closed pipe or Ctrl-C as Go programs do; lock and
        # watch install their own handlers on top of these.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    if parsed.is_version:
        return _run("version", [])
    if parsed.is_help and not parsed.command:
        sys.stdout.write(command_list())
        return 0
    if parsed.top_flags:
        sys.stdout.write("Invalid flags before the subcommand. If these flags are for\n"
                         "the subcommand, please put them after the subcommand.\n\n")
        sys.stdout.write(command_list())
        return 1
    if parsed.command not in COMMANDS:
        sys.stdout.write(command_list())
        return 127

    entry = COMMANDS[parsed.command]
    if parsed.is_help:
        if entry.help is None:
            return _run(parsed.command, ["-h"])
        sys.stdout.write(command_help(parsed.command))
        return 0
    return _run(parsed.command, parsed.args)


def _run(name: str, args: list[str]) -> int:
    entry = COMMANDS[name]
    if not entry.run:
        err(command_help(name).rstrip("\n"))
        return 1
    try:
        command = _load(entry, entry.run)
    except ImportError as exc:
        err(f"Error executing CLI: {exc}")
        return 1
    code = command(args)
    return int(code) if isinstance(code, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
