"""`consul kv get|put|delete|export|import`: the KV store from the shell.

Shell scripts are the main users of these commands, so every byte they print follows Consul:
values are written raw (they need not be text), `-detailed` is a Go tabwriter table, `export`
is tab-indented JSON with Go's HTML-safe escaping, and each success or failure line is Consul's.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from typing import Any

from proconsul.cli import err, out, out_bytes
from proconsul.cli.api import APIError, HTTPFlags, os_error_text
from proconsul.cli.flags import Flag, FlagSet, parse_args

# ----------------------------------------------------------------------------------------------
# Go formatting shared with `lock` and `watch`


def go_clean(path: str) -> str:
    """Go's path.Clean: lexical `.`/`..` and duplicate-slash removal, `.` for an empty result."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = ("/" if rooted else "") + "/".join(parts)
    return cleaned or "."


def go_join(*elems: str) -> str:
    """Go's path.Join: empty elements are skipped and an all-empty join is the empty string."""
    kept = [e for e in elems if e]
    return go_clean("/".join(kept)) if kept else ""


def go_json(value: Any, indent: str | None = None) -> str:
    """encoding/json output: HTML-sensitive characters escaped as Go escapes them."""
    if indent is None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(value, ensure_ascii=False, indent=indent, separators=(",", ": "))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def tabwrite(text: str, padding: int = 6) -> str:
    """text/tabwriter with minwidth 0 and space padding: tab-terminated cells become columns."""
    lines = [line.split("\t") for line in text.split("\n")]
    tabs = [len(cells) - 1 for cells in lines]
    widths: list[list[int]] = [[0] * t for t in tabs]
    for column in range(max(tabs, default=0)):
        i = 0
        while i < len(lines):
            if tabs[i] <= column:
                i += 1
                continue
            j = i
            width = 0
            while j < len(lines) and tabs[j] > column:
                width = max(width, len(lines[j][column]) + padding)
                j += 1
            for k in range(i, j):
                widths[k][column] = width
            i = j
    rendered = []
    for cells, cell_widths in zip(lines, widths, strict=True):
        padded = [cell.ljust(w) for cell, w in zip(cells, cell_widths, strict=False)]
        rendered.append("".join(padded) + cells[-1])
    return "\n".join(rendered)


def value_bytes(pair: dict[str, Any]) -> bytes:
    raw = pair.get("Value")
    return base64.b64decode(raw) if raw else b""


def _raw_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _raw_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def pretty_pair(pair: dict[str, Any], b64: bool) -> bytes:
    """`kv get -detailed`: the aligned field table Consul prints for one pair."""
    data = value_bytes(pair)
    value = base64.b64encode(data).decode() if b64 else _raw_text(data)
    session = pair.get("Session") or "-"
    text = (f"CreateIndex\t{pair.get('CreateIndex', 0)}\n"
            f"Flags\t{pair.get('Flags', 0)}\n"
            f"Key\t{pair.get('Key', '')}\n"
            f"LockIndex\t{pair.get('LockIndex', 0)}\n"
            f"ModifyIndex\t{pair.get('ModifyIndex', 0)}\n"
            f"Session\t{session}\n"
            f"Value\t{value}")
    return _raw_bytes(tabwrite(text))


def _single_key(args: list[str]) -> str | None:
    if len(args) > 1:
        err(f"Too many arguments (expected 1, got {len(args)})")
        return None
    key = args[0] if args else ""
    return key[1:] if key.startswith("/") else key


def _read_data(arg: str) -> bytes:
    """A DATA argument: `@file` reads the file, `-` reads stdin, anything else is the value."""
    if arg.startswith("@"):
        try:
            with open(arg[1:], "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise ValueError(f"Failed to read file: {os_error_text('open', arg[1:], exc)}")
    if arg == "-":
        try:
            return sys.stdin.buffer.read()
        except OSError as exc:
            raise ValueError(f"Failed to read stdin: {exc}")
    return os.fsencode(arg)


# ----------------------------------------------------------------------------------------------
# kv


KV_HELP = """
Usage: consul kv <subcommand> [options] [args]

  This command has subcommands for interacting with Consul's key-value
  store. Here are some simple examples, and more detailed examples are
  available in the subcommands or the documentation.

  Create or update the key named "redis/config/connections" with the value "5":

      $ consul kv put redis/config/connections 5

  Read this value back:

      $ consul kv get redis/config/connections

  Or get detailed key information:

      $ consul kv get -detailed redis/config/connections

  Finally, delete the key:

      $ consul kv delete redis/config/connections

  For more examples, ask for subcommand help or view the documentation.
"""


def help_kv() -> str:
    return KV_HELP.strip()


# ----------------------------------------------------------------------------------------------
# kv get


GET_HELP = """
Usage: consul kv get [options] [KEY_OR_PREFIX]

  Retrieves the value stored at KEY. A missing key is an error; a key with no
  data prints nothing. -detailed adds the key's metadata, -recurse treats the
  argument as a prefix and prints "key:value" lines, and -keys lists only key
  names (folded at -separator).

      $ consul kv get foo
      $ consul kv get -detailed foo
      $ consul kv get -recurse foo
      $ consul kv get -keys foo
"""


class _GetFlags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.http = HTTPFlags(self.fs)
        self.base64: Flag[bool] = self.fs.bool_flag(
            "base64", False, "Base64 encode the value. The default value is false.")
        self.detailed: Flag[bool] = self.fs.bool_flag(
            "detailed", False,
            "Provide additional metadata about the key in addition to the value such as the "
            "ModifyIndex and any flags that may have been set on the key. The default value is "
            "false.")
        self.keys: Flag[bool] = self.fs.bool_flag(
            "keys", False,
            "List keys which start with the given prefix, but not their values. This is "
            "especially useful if you only need the key names themselves. This option is "
            "commonly combined with the -separator option. The default value is false.")
        self.recurse: Flag[bool] = self.fs.bool_flag(
            "recurse", False,
            "Recursively look at all keys prefixed with the given path. The default value is "
            "false.")
        self.separator: Flag[str] = self.fs.str_flag(
            "separator", "/",
            "String to use as a separator between keys. The default value is \"/\", but this "
            "option is only taken into account when paired with the -keys flag.")


def help_get() -> str:
    return _GetFlags().fs.usage(GET_HELP)


def run_get(argv: list[str]) -> int:
    f = _GetFlags()
    args = parse_args(f.fs, argv)
    if args is None:
        return 1
    key = _single_key(args)
    if key is None:
        return 1
    if not key and not (f.recurse.value or f.keys.value):
        err("Error! Missing KEY argument")
        return 1
    client = f.http.connect()
    if client is None:
        return 1
    stale = f.http.stale
    try:
        if f.keys.value:
            for name in client.kv_keys(key, f.separator.value, stale) or []:
                out(name)
            return 0
        if f.recurse.value:
            found, _ = client.kv_list(key, stale=stale)
            pairs = found or []
            for i, entry in enumerate(pairs):
                if f.detailed.value:
                    out_bytes(pretty_pair(entry, f.base64.value))
                    if i < len(pairs) - 1:
                        out("")
                    continue
                data = value_bytes(entry)
                if f.base64.value:
                    data = base64.b64encode(data)
                out_bytes(_raw_bytes(str(entry.get("Key", ""))) + b":" + data)
            return 0
        pair, _ = client.kv_get(key, stale=stale)
    except APIError as exc:
        err(f"Error querying Consul agent: {exc}")
        return 1
    if pair is None:
        err(f"Error! No key exists at: {key}")
        return 1
    if f.detailed.value:
        out_bytes(pretty_pair(pair, f.base64.value))
    else:
        out_bytes(value_bytes(pair))
    return 0


# ----------------------------------------------------------------------------------------------
# kv put


PUT_HELP = """
Usage: consul kv put [options] KEY [DATA]

  Writes DATA to KEY in the key-value store. DATA may be given inline, read
  from a file with "@path", or read from stdin with "-"; without DATA the key
  is written empty. -base64 decodes DATA first. -cas with -modify-index writes
  only if the key is unchanged since that index.

      $ consul kv put config/redis/maxconns 5
      $ consul kv put config/program/license @license.lic
      $ echo "abcd1234" | consul kv put config/program/license -
      $ consul kv put -cas -modify-index=844 config/redis/maxconns 5
"""


class _PutFlags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.http = HTTPFlags(self.fs)
        self.cas: Flag[bool] = self.fs.bool_flag(
            "cas", False,
            "Perform a Check-And-Set operation. Specifying this value also requires the "
            "-modify-index flag to be set. The default value is false.")
        self.flags: Flag[int] = self.fs.uint_flag(
            "flags", 0,
            "Unsigned integer value to assign to this key-value pair. This value is not read by "
            "Consul, so clients can use this value however makes sense for their use case. The "
            "default value is 0 (no flags).")
        self.base64: Flag[bool] = self.fs.bool_flag(
            "base64", False, "Treat the data as base 64 encoded. The default value is false.")
        self.modify_index: Flag[int] = self.fs.uint_flag(
            "modify-index", 0,
            "Unsigned integer representing the ModifyIndex of the key. This is used in "
            "combination with the -cas flag.")
        self.session: Flag[str] = self.fs.str_flag(
            "session", "",
            "User-defined identifer for this session as a string. This is commonly used with the "
            "-acquire and -release operations to build robust locking, but it can be set on any "
            "key. The default value is empty (no session).")
        self.acquire: Flag[bool] = self.fs.bool_flag(
            "acquire", False,
            "Obtain a lock on the key. If the key does not exist, this operation will create the "
            "key and obtain the lock. The session must already exist and be specified via the "
            "-session flag. The default value is false.")
        self.release: Flag[bool] = self.fs.bool_flag(
            "release", False,
            "Forfeit the lock on the key at the given path. This requires the -session flag to "
            "be set. The key must be held by the session in order to be unlocked. The default "
            "value is false.")


def help_put() -> str:
    return _PutFlags().fs.usage(PUT_HELP)


def _b64_decode(data: bytes) -> bytes:
    """base64.StdEncoding.DecodeString, reporting the first bad byte as Go does."""
    cleaned = data.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        bad = next((i for i, c in enumerate(cleaned) if c not in alphabet and c != ord("=")),
                   len(cleaned) - len(cleaned) % 4)
        raise ValueError(f"illegal base64 data at input byte {bad}") from None


def run_put(argv: list[str]) -> int:
    f = _PutFlags()
    args = parse_args(f.fs, argv)
    if args is None:
        return 1
    if not args:
        err("Error! Missing KEY argument")
        return 1
    if len(args) > 2:
        err(f"Error! Too many arguments (expected 1 or 2, got {len(args)})")
        return 1
    key = args[0]
    try:
        data = _read_data(args[1]) if len(args) == 2 and args[1] else b""
    except ValueError as exc:
        err(f"Error! {exc}")
        return 1
    if f.base64.value:
        try:
            data = _b64_decode(data)
        except ValueError as exc:
            err(f"Error! Cannot base 64 decode data: {exc}")
            return 1
    if (f.release.value or f.acquire.value) and not f.session.value:
        err("Error! Missing -session (required with -acquire and -release)")
        return 1
    if f.cas.value and f.modify_index.value == 0:
        err("Must specify -modify-index with -cas!")
        return 1
    client = f.http.connect()
    if client is None:
        return 1

    if f.cas.value:
        try:
            ok = client.kv_put(key, data, f.flags.value, [("cas", str(f.modify_index.value))])
        except APIError as exc:
            err(f"Error! Did not write to {key}: {exc}")
            return 1
        if not ok:
            err(f"Error! Did not write to {key}: CAS failed")
            return 1
        out(f"Success! Data written to: {key}")
        return 0
    if f.acquire.value or f.release.value:
        verb = "acquire" if f.acquire.value else "release"
        try:
            ok = client.kv_put(key, data, f.flags.value, [(verb, f.session.value)])
        except APIError as exc:
            err(f"Error! Failed writing data: {exc if verb == 'acquire' else key}")
            return 1
        if not ok:
            err("Error! Did not acquire lock" if verb == "acquire" else
                "Error! Did not release lock")
            return 1
        past = "acquired" if verb == "acquire" else "released"
        out(f"Success! Lock {past} on: {key}")
        return 0
    try:
        client.kv_put(key, data, f.flags.value)
    except APIError as exc:
        err(f"Error! Failed writing data: {exc}")
        return 1
    out(f"Success! Data written to: {key}")
    return 0


# ----------------------------------------------------------------------------------------------
# kv delete


DELETE_HELP = """
Usage: consul kv delete [options] KEY_OR_PREFIX

  Removes KEY from the key-value store; a missing key is not an error.
  -recurse removes every key that starts with the given prefix, and -cas with
  -modify-index removes the key only if it is unchanged since that index.

      $ consul kv delete foo
      $ consul kv delete -recurse foo
"""


class _DeleteFlags:
    def __init__(self) -> None:
        self.fs = FlagSet()
        self.http = HTTPFlags(self.fs)
        self.cas: Flag[bool] = self.fs.bool_flag(
            "cas", False,
            "Perform a Check-And-Set operation. Specifying this value also requires the "
            "-modify-index flag to be set. The default value is false.")
        self.modify_index: Flag[int] = self.fs.uint_flag(
            "modify-index", 0,
            "Unsigned integer representing the ModifyIndex of the key. This is used in "
            "combination with the -cas flag.")
        self.recurse: Flag[bool] = self.fs.bool_flag(
            "recurse", False,
            "Recursively delete all keys with the path. The default value is false.")


def help_delete() -> str:
    return _DeleteFlags().fs.usage(DELETE_HELP)


def run_delete(argv: list[str]) -> int:
    f = _DeleteFlags()
    args = parse_args(f.fs, argv)
    if args is None:
        return 1
    key = _single_key(args)
    if key is None:
        return 1
    if not key and not f.recurse.value:
        err("Error! Missing KEY argument")
        return 1
    if f.cas.value and f.modify_index.value == 0:
        err("Cannot delete a key that does not exist. Provide a -modify-index greater than "
            "than 0.")
        return 1
    if f.modify_index.value != 0 and not f.cas.value:
        err("Cannot specify -modify-index without -cas!")
        return 1
    if f.recurse.value and f.cas.value:
        err("Cannot specify both -cas and -recurse!")
        return 1
    client = f.http.connect()
    if client is None:
        return 1
    if f.recurse.value:
        try:
            client.kv_delete(key, [("recurse", "")])
        except APIError as exc:
            err(f"Error! Did not delete prefix {key}: {exc}")
            return 1
        out(f"Success! Deleted keys with prefix: {key}")
        return 0
    if f.cas.value:
        try:
            ok = client.kv_delete(key, [("cas", str(f.modify_index.value))])
        except APIError as exc:
            err(f"Error! Did not delete key {key}: {exc}")
            return 1
        if not ok:
            err(f"Error! Did not delete key {key}: CAS failed")
            return 1
        out(f"Success! Deleted key: {key}")
        return 0
    try:
        client.kv_delete(key)
    except APIError as exc:
        err(f"Error deleting key {key}: {exc}")
        return 1
    out(f"Success! Deleted key: {key}")
    return 0


# ----------------------------------------------------------------------------------------------
# kv export / import


EXPORT_HELP = """
Usage: consul kv export [KEY_OR_PREFIX]

  Writes every key-value pair under the prefix to stdout as JSON, in the form
  "consul kv import" reads back, so whole trees can move between clusters.

      $ consul kv export vault
"""

IMPORT_HELP = """
Usage: consul kv import [DATA]

  Writes the key-value pairs of a "consul kv export" document into the store.
  DATA may be given inline, read from a file with "@path", or read from stdin
  with "-".

      $ consul kv import @filename.json
      $ cat filename.json | consul kv import -
"""


def export_entry(pair: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": pair.get("Key", ""),
        "flags": pair.get("Flags", 0),
        "value": base64.b64encode(value_bytes(pair)).decode(),
    }
    for field, name in (("Namespace", "namespace"), ("Partition", "partition")):
        if pair.get(field):
            entry[name] = pair[field]
    return entry


def _export_flags() -> tuple[FlagSet, HTTPFlags]:
    fs = FlagSet()
    return fs, HTTPFlags(fs)


def help_export() -> str:
    return _export_flags()[0].usage(EXPORT_HELP)


def run_export(argv: list[str]) -> int:
    fs, http = _export_flags()
    args = parse_args(fs, argv)
    if args is None:
        return 1
    key = _single_key(args)
    if key is None:
        return 1
    client = http.connect()
    if client is None:
        return 1
    try:
        pairs, _ = client.kv_list(key, stale=http.stale)
    except APIError as exc:
        err(f"Error querying Consul agent: {exc}")
        return 1
    out(go_json([export_entry(p) for p in pairs or []], indent="\t"))
    return 0


def _import_flags() -> tuple[FlagSet, HTTPFlags, Flag[str]]:
    fs = FlagSet()
    http = HTTPFlags(fs)
    prefix = fs.str_flag("prefix", "", "Key prefix for imported data")
    return fs, http, prefix


def help_import() -> str:
    return _import_flags()[0].usage(IMPORT_HELP)


def _entries(doc: Any) -> list[dict[str, Any]]:
    """Decode export entries as Go's json.Unmarshal would: field names match case-insensitively."""
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ValueError("json: cannot unmarshal object into Go value of type []*impexp.Entry")
    entries = []
    for item in doc:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise ValueError("json: cannot unmarshal value into Go value of type impexp.Entry")
        lowered = {str(k).lower(): v for k, v in item.items()}
        flags = lowered.get("flags") or 0
        if not isinstance(flags, int) or isinstance(flags, bool) or flags < 0:
            raise ValueError("json: cannot unmarshal value into Go struct field Entry.flags of "
                             "type uint64")
        entries.append({"key": str(lowered.get("key") or ""), "flags": flags,
                        "value": str(lowered.get("value") or "")})
    return entries


def run_import(argv: list[str]) -> int:
    fs, http, prefix = _import_flags()
    args = parse_args(fs, argv)
    if args is None:
        return 1
    if not args:
        err("Error! Missing DATA argument")
        return 1
    if len(args) > 1:
        err(f"Error! Too many arguments (expected 1, got {len(args)})")
        return 1
    if not args[0]:
        err("Error! Empty DATA argument")
        return 1
    try:
        data = _read_data(args[0])
    except ValueError as exc:
        err(f"Error! {exc}")
        return 1
    client = http.connect()
    if client is None:
        return 1
    try:
        entries = _entries(json.loads(data))
    except ValueError as exc:
        err(f"Cannot unmarshal data: {exc}")
        return 1
    for entry in entries:
        try:
            value = _b64_decode(entry["value"].encode())
        except ValueError as exc:
            err(f"Error base 64 decoding value for key {entry['key']}: {exc}")
            return 1
        key = go_join(prefix.value, entry["key"])
        if entry["key"].endswith("/"):
            key += "/"
        try:
            client.kv_put(key, value, entry["flags"])
        except APIError as exc:
            err(f"Error! Failed writing data for key {key}: {exc}")
            return 1
        out(f"Imported: {key}")
    return 0
