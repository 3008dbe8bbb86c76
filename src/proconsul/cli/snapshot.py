"""`consul snapshot save|restore|inspect`: backups of the servers' state from the shell.

Backup jobs run these unattended and judge them by exit status and by Consul's lines (`Saved and
verified snapshot to index N`, `Restored snapshot`), so both follow Consul.  Two promises go
beyond a byte copy: `save` never leaves a damaged or partial file under the target name (the
download lands in `<file>.unverified`, is verified from disk, and only then renamed over the
target), and `restore` verifies the archive locally before sending it, so a damaged backup is
refused without the cluster ever seeing it.  `inspect` reads a file and needs no agent.
"""

from __future__ import annotations

import json
import os
from typing import Any

from proconsul.cli import err, out
from proconsul.cli.api import APIError, HTTPFlags, os_error_text
from proconsul.cli.flags import Flag, FlagSet, parse_args
from proconsul.cli.kv import go_json, tabwrite
from proconsul.errors import SnapshotError
from proconsul.snapshot.archive import DEFAULT_KV_DEPTH, inspect_state, read_archive

SNAPSHOT_HELP = """
Usage: consul snapshot <subcommand> [options] [args]

  This command has subcommands for saving, restoring, and inspecting the state
  of the Consul servers for disaster recovery. These are atomic, point-in-time
  snapshots which include key/value entries, service catalog, prepared queries,
  sessions, and ACLs.

  If ACLs are enabled, a management token must be supplied in order to perform
  snapshot operations.

  Create a snapshot:

      $ consul snapshot save backup.snap

  Restore a snapshot:

      $ consul snapshot restore backup.snap

  Inspect a snapshot:

      $ consul snapshot inspect backup.snap

  For more examples, ask for subcommand help or view the documentation.
"""

SAVE_HELP = """
Usage: consul snapshot save [options] FILE

  Retrieves an atomic, point-in-time snapshot of the state of the Consul servers
  which includes key/value entries, service catalog, prepared queries, sessions,
  and ACLs.

  If ACLs are enabled, a management token must be supplied in order to perform
  snapshot operations.

  To create a snapshot from the leader server and save it to "backup.snap":

    $ consul snapshot save backup.snap

  To create a potentially stale snapshot from any available server (useful if no
  leader is available):

    $ consul snapshot save -stale backup.snap

  For a full list of options and examples, please see the Consul documentation.
"""

RESTORE_HELP = """
Usage: consul snapshot restore [options] FILE

  Restores an atomic, point-in-time snapshot of the state of the Consul servers
  which includes key/value entries, service catalog, prepared queries, sessions,
  and ACLs.

  Restores involve a potentially dangerous low-level Raft operation that is not
  designed to handle server failures during a restore. This command is primarily
  intended to be used when recovering from a disaster, restoring into a fresh
  cluster of Consul servers.

  If ACLs are enabled, a management token must be supplied in order to perform
  snapshot operations.

  To restore a snapshot from the file "backup.snap":

    $ consul snapshot restore backup.snap

  For a full list of options and examples, please see the Consul documentation.
"""

INSPECT_HELP = """
Usage: consul snapshot inspect [options] FILE

  Displays information about a snapshot file on disk.

  To inspect the file "backup.snap":

    $ consul snapshot inspect backup.snap

  For a full list of options and examples, please see the Consul documentation.
"""

PRETTY_FORMAT = "pretty"
JSON_FORMAT = "json"
FORMATS = (PRETTY_FORMAT, JSON_FORMAT)

#: What `save` appends to the download while it is unverified (Consul's suffix).
UNVERIFIED_SUFFIX = ".unverified"


def help_snapshot() -> str:
    return SNAPSHOT_HELP.strip()


def _file_arg(args: list[str], expected: str) -> str | None:
    """The single FILE argument, or None after printing Consul's complaint."""
    if not args:
        err("Missing FILE argument")
        return None
    if len(args) > 1:
        err(f"Too many arguments (expected {expected}, got {len(args)})")
        return None
    return args[0]


def _go_quote(text: str) -> str:
    """Go's %q for the file names in error lines."""
    return json.dumps(text, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------
# save


def _save_flags() -> tuple[FlagSet, HTTPFlags, Flag[str]]:
    fs = FlagSet()
    http = HTTPFlags(fs)
    append = fs.str_flag(
        "append-filename", "",
        "Append filename flag takes two possible values. 1. version, 2. dc. It appends consul "
        "version and datacenter to filename given in command", type_name="value")
    return fs, http, append


def help_save() -> str:
    return _save_flags()[0].usage(SAVE_HELP)


def _go_ext(path: str) -> str:
    """Go's filepath.Ext: from the last dot of the last path element (so `.snap` is all ext)."""
    for i in range(len(path) - 1, -1, -1):
        if path[i] == "/":
            break
        if path[i] == ".":
            return path[i:]
    return ""


def appended_filename(file: str, wanted: list[str], config: dict[str, Any]) -> str:
    """`-append-filename=version,dc`: the agent's version, then its datacenter, before the ext.

    The order is fixed (version first) whatever order the flag lists them in, as in Consul.
    """
    ext = _go_ext(file)
    stem = file[: len(file) - len(ext)]
    for word, field in (("version", "Version"), ("dc", "Datacenter")):
        value = config.get(field)
        if word in wanted and isinstance(value, str):
            stem += "-" + value
    return stem + ext


def _write_synced(path: str, data: bytes) -> None:
    """Write `data` to a new 0600 file and make it durable before anyone renames it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(path: str) -> None:
    """Make a rename inside the directory of `path` durable (best effort where unsupported)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _verify_file(path: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        meta, _ = read_archive(fh)
    return meta


def _store_verified(data: bytes, file: str) -> dict[str, Any] | None:
    """Land `data` as `file` only if it verifies; nothing is left behind when it does not."""
    unverified = file + UNVERIFIED_SUFFIX
    try:
        try:
            _write_synced(unverified, data)
        except OSError as exc:
            err(f"Error writing unverified snapshot file: {os_error_text('open', unverified, exc)}")
            return None
        try:
            meta = _verify_file(unverified)
        except SnapshotError as exc:
            err(f"Error verifying snapshot file: {exc}")
            return None
        except OSError as exc:
            err(f"Error opening snapshot file for verify: {os_error_text('open', unverified, exc)}")
            return None
        try:
            os.replace(unverified, file)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            err(f"Error renaming {_go_quote(unverified)} to {_go_quote(file)}: rename "
                f"{unverified} {file}: {reason[:1].lower()}{reason[1:]}")
            return None
        _sync_dir(file)
        return meta
    finally:
        try:
            os.unlink(unverified)
        except OSError:
            pass


def run_save(argv: list[str]) -> int:
    fs, http, append = _save_flags()
    args = parse_args(fs, argv)
    if args is None:
        return 1
    file = _file_arg(args, "1 or 3")
    if file is None:
        return 1
    client = http.connect()
    if client is None:
        return 1
    wanted = [w for w in append.value.split(",") if w]
    if wanted:
        try:
            config = client.agent_self().get("Config") or {}
        except APIError as exc:
            err(f"Error connecting to Consul agent and fetching datacenter/version: {exc}")
            return 1
        file = appended_filename(file, wanted, config if isinstance(config, dict) else {})
    try:
        resp = client.require_ok(client.request("GET", "/v1/snapshot",
                                                client.read_params(stale=http.stale)))
    except APIError as exc:
        err(f"Error saving snapshot: {exc}")
        return 1
    meta = _store_verified(resp.body, file)
    if meta is None:
        return 1
    index = client.meta(resp).last_index or int(meta.get("Index", 0))
    out(f"Saved and verified snapshot to index {index}")
    return 0


# ----------------------------------------------------------------------------------------------
# restore


def _restore_flags() -> tuple[FlagSet, HTTPFlags]:
    fs = FlagSet()
    return fs, HTTPFlags(fs)


def help_restore() -> str:
    return _restore_flags()[0].usage(RESTORE_HELP)


def run_restore(argv: list[str]) -> int:
    fs, http = _restore_flags()
    args = parse_args(fs, argv)
    if args is None:
        return 1
    file = _file_arg(args, "1")
    if file is None:
        return 1
    client = http.connect()
    if client is None:
        return 1
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        err(f"Error opening snapshot file: {os_error_text('open', file, exc)}")
        return 1
    try:
        read_archive(data)
    except SnapshotError as exc:
        err(f"Error verifying snapshot file: {exc}")
        return 1
    try:
        client.require_ok(client.request("PUT", "/v1/snapshot", body=data,
                                         content_type="application/octet-stream"))
    except APIError as exc:
        err(f"Error restoring snapshot: {exc}")
        return 1
    out("Restored snapshot")
    return 0


# ----------------------------------------------------------------------------------------------
# inspect


def _inspect_flags() -> tuple[FlagSet, Flag[bool], Flag[int], Flag[str], Flag[str]]:
    fs = FlagSet()
    details = fs.bool_flag(
        "kvdetails", False,
        "Provides a detailed KV space usage breakdown for any KV data that's been stored.")
    depth = fs.int_flag(
        "kvdepth", DEFAULT_KV_DEPTH,
        "Can only be used with -kvdetails. The key prefix depth used to breakdown KV store "
        "data. Defaults to 2.")
    prefix = fs.str_flag(
        "kvfilter", "",
        "Can only be used with -kvdetails. Limits KV key breakdown using this prefix filter.")
    fmt = fs.str_flag("format", PRETTY_FORMAT, f"Output format {{{'|'.join(FORMATS)}}}")
    return fs, details, depth, prefix, fmt


def help_inspect() -> str:
    return _inspect_flags()[0].usage(INSPECT_HELP)


def byte_size(size: int) -> str:
    """Consul's inspect ByteSize: binary units, one decimal, a trailing `.0` dropped."""
    if size == 0:
        return "0"
    value = float(size)
    unit = "B"
    for name, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            unit, value = name, size / scale
            break
    text = f"{value:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + unit


def _stat_lines(heading: str, rows: list[dict[str, Any]], total: int) -> str:
    text = f"\n {heading}\tCount\tSize\n ----\t----\t----"
    for row in rows:
        text += f"\n {row['Name']}\t{row['Count']}\t{byte_size(int(row['Sum']))}"
    return text + f"\n ----\t----\t----\n Total\t\t{byte_size(total)}"


def format_pretty(info: dict[str, Any]) -> str:
    """The tabwriter layout of Consul's inspect (minwidth 8, padding 6, space-padded).

    Every column here has a header cell of at least four characters, so the minimum width never
    wins over padding and the shared tabwriter (minwidth 0) renders the same bytes.
    """
    meta = info["Meta"]
    text = (f" ID\t{meta['ID']}\n Size\t{meta['Size']}\n Index\t{meta['Index']}"
            f"\n Term\t{meta['Term']}\n Version\t{meta['Version']}\n")
    text += _stat_lines("Type", info["Stats"], info["TotalSize"])
    if info.get("StatsKV") is not None:
        text += "\n" + _stat_lines("Key Name", info["StatsKV"], info["TotalSizeKV"])
    return tabwrite(text, padding=6)


def format_json(info: dict[str, Any]) -> str:
    """json.MarshalIndent with a three-space indent, Go's field order and escaping."""
    return go_json(info, indent="   ")


def _load_raw_state(file: str) -> tuple[dict[str, Any], bytes] | None:
    """A snapshot directory's own state.bin, with the meta.json beside it (Consul allows this)."""
    try:
        with open(file, "rb") as fh:
            state = fh.read()
    except OSError as exc:
        err(f"Error opening snapshot file: {os_error_text('open', file, exc)}")
        return None
    meta_path = os.path.join(os.path.dirname(file), "meta.json")
    try:
        with open(meta_path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        err("Error reading meta.json from internal snapshot dir: "
            f"{os_error_text('open', meta_path, exc)}")
        return None
    try:
        meta = json.loads(raw)
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        err(f"Error parsing meta.json from internal snapshot dir: {exc}")
        return None
    return meta, state


def _load_archive(file: str) -> tuple[dict[str, Any], bytes] | None:
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        err(f"Error opening snapshot file: {os_error_text('open', file, exc)}")
        return None
    try:
        return read_archive(data)
    except SnapshotError as exc:
        err(f"Error reading snapshot: {exc}")
        return None


def run_inspect(argv: list[str]) -> int:
    fs, details, depth, prefix, fmt = _inspect_flags()
    args = parse_args(fs, argv)
    if args is None:
        return 1
    file = _file_arg(args, "1")
    if file is None:
        return 1
    if os.path.basename(file).lower() == "state.bin":
        loaded = _load_raw_state(file)
    else:
        loaded = _load_archive(file)
    if loaded is None:
        return 1
    meta, state = loaded
    try:
        info = inspect_state(meta, state, kv_details=details.value, kv_depth=depth.value,
                             kv_filter=prefix.value)
    except (SnapshotError, ValueError) as exc:
        err(f"Error extracting snapshot data: {exc}")
        return 1
    if fmt.value == PRETTY_FORMAT:
        out(format_pretty(info))
    elif fmt.value == JSON_FORMAT:
        out(format_json(info))
    else:
        err(f"Error outputting enhanced snapshot data: Unknown format: {fmt.value}")
        return 1
    return 0
