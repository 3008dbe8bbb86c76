"""Reading configuration text (JSON or HCL files, directories, `-hcl` fragments) into dicts,
and checking each one against the key table before anything is merged.

Errors have to name where a bad key came from, so each parsed document travels as a `Source`
that keeps its name: the file path, `flags-0.hcl` for the first `-hcl` fragment, or a label for
built-in sources, and `decode` checks one source at a time. Directory handling follows Consul:
one level only, entries sorted by name, and only `.json`/`.hcl` files unless `-config-format`
says how to read the rest.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hcl.parser import HclParser

from proconsul.config.duration import go_quote, parse_duration_ns
from proconsul.config.schema import (
    LIST_KINDS,
    MAP_KINDS,
    TLS_LEGACY_VERSIONS,
    TOP,
    Field,
    Kind,
    Section,
    SectionList,
    SectionMap,
    Spec,
    deprecation_warning,
    enterprise_warning,
)
from proconsul.errors import ConfigError

FORMATS = ("json", "hcl")


@dataclass(frozen=True)
class Source:
    """One parsed document; `name` is what error messages call it."""

    name: str
    data: Mapping[str, Any]
    format: str = "literal"
    #: True when read from a config file or directory (what a reload re-reads).
    from_file: bool = False


def _os_reason(err: OSError) -> str:
    """Go prints syscall errors in lower case (`no such file or directory`); so do we."""
    reason = err.strerror or str(err)
    return reason[:1].lower() + reason[1:]


def format_from_name(name: str) -> str:
    """The format a file's extension implies, or "" when the extension says nothing."""
    if name.endswith(".json"):
        return "json"
    if name.endswith(".hcl"):
        return "hcl"
    return ""


class _HclParser(HclParser):  # type: ignore[misc]  # pyhcl ships no type information
    """pyhcl's grammar, with repeated keys kept as lists instead of merged.

    pyhcl merges a repeated block into the first one key by key, and when a later block has a
    nested object it lands in the wrong block (`service { name = "a" }` followed by
    `service { name = "b"  meta { x = "1" } }` gives service "a" the meta). HCL1 as Consul
    reads it keeps each block: repeated objects become a list, in file order; a repeated
    plain assignment keeps the last value.
    """

    def objectlist_flat(self, lt: list[tuple[str, Any]], replace: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in lt:
            previous = out.get(key)
            if isinstance(value, dict) and isinstance(previous, dict):
                out[key] = [previous, value]
            elif (isinstance(value, dict) and isinstance(previous, list) and previous
                  and all(isinstance(item, dict) for item in previous)):
                out[key] = [*previous, value]
            else:
                out[key] = value
        return out


_hcl_lock = threading.Lock()
_hcl_parser: _HclParser | None = None


def _parse_hcl(text: str) -> Any:
    """Parse HCL1 (or the JSON that HCL1 also accepts), keeping repeated blocks apart."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    global _hcl_parser
    with _hcl_lock:
        if _hcl_parser is None:
            _hcl_parser = _HclParser()
        return _hcl_parser.parse(text)


def parse_text(name: str, text: str, fmt: str) -> Source | None:
    """Parse one document; None for empty text, which Consul skips rather than refuses."""
    if not text:
        return None
    if fmt not in FORMATS:
        raise ConfigError(f"failed to parse {name}: invalid format: {fmt}")
    try:
        data = json.loads(text) if fmt == "json" else _parse_hcl(text)
    except ValueError as err:
        raise ConfigError(f"failed to parse {name}: {err}") from None
    if not isinstance(data, dict):
        kind = "array" if isinstance(data, list) else type(data).__name__
        raise ConfigError(
            f"failed to parse {name}: json: cannot unmarshal {kind} into Go value of type "
            "map[string]interface {}"
        )
    return Source(name=name, data=data, format=fmt)


def read_file(path: str, config_format: str = "") -> Source | None:
    """Read and parse one file, choosing the format from `config_format` or the extension."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as err:
        raise ConfigError(f"config: failed to read {path}: {_os_reason(err)}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"failed to parse {path}: {err}") from None
    src = parse_text(path, text, config_format or format_from_name(path))
    return None if src is None else Source(src.name, src.data, src.format, from_file=True)


def _readable(path: str, config_format: str) -> bool:
    return bool(config_format) or format_from_name(path) != ""


def sources_from_path(
    path: str, config_format: str = "", warnings: list[str] | None = None
) -> list[Source]:
    """Sources for one `-config-file`/`-config-dir` argument (either may name a file or a dir)."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError as err:
        reason = _os_reason(err)
        raise ConfigError(f"config: Open failed on {path}. open {path}: {reason}") from None
    if not is_dir:
        if not _readable(path, config_format):
            raise ConfigError(
                f"file {path} has unknown extension; must be .hcl or .json, "
                "or config format must be set"
            )
        src = read_file(path, config_format)
        return [src] if src is not None else []
    try:
        names = sorted(os.listdir(path))
    except OSError as err:
        raise ConfigError(f"config: Readdir failed on {path}. {_os_reason(err)}") from None
    out: list[Source] = []
    for name in names:
        full = os.path.join(path, name)
        if os.path.islink(full):
            full = os.path.realpath(full)
        if os.path.isdir(full):
            continue
        if not _readable(full, config_format):
            if warnings is not None:
                warnings.append(
                    f"skipping file {full}, extension must be .hcl or .json, "
                    "or config format must be set"
                )
            continue
        src = read_file(full, config_format)
        if src is not None:
            out.append(src)
    return out


def load_files(
    paths: Iterable[str], config_format: str = "", warnings: list[str] | None = None
) -> list[Source]:
    """Sources for `-config-file`/`-config-dir` arguments; their order is merge precedence."""
    if config_format not in ("", *FORMATS):
        raise ConfigError("config: -config-format must be either 'hcl' or 'json'")
    out: list[Source] = []
    for path in paths:
        out.extend(sources_from_path(path, config_format, warnings))
    return out


def hcl_fragments(fragments: Iterable[str]) -> list[Source]:
    """`-hcl` arguments, named as Consul names them so errors point at the right one."""
    out: list[Source] = []
    for i, text in enumerate(fragments):
        src = parse_text(f"flags-{i}.hcl", text, "hcl")
        if src is not None:
            out.append(src)
    return out


# ---------------------------------------------------------------------------------------------
# Checking one source against the key table


@dataclass
class Decoded:
    """One source after its keys were matched, its values type-checked and renames applied."""

    name: str
    data: dict[str, Any]
    warnings: list[str]


_WANT = {
    Kind.STR: "string", Kind.BOOL: "bool", Kind.INT: "int", Kind.UINT: "uint",
    Kind.FLOAT: "float64", Kind.DURATION: "string", Kind.PORT: "int",
}


def _go_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "slice"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def _go_value(value: object) -> str:
    """`%v` formatting, so type errors show values the way Consul users see them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_value(v)}" for k, v in value.items()) + "]"
    return str(value)


_INVALID = object()


class _Walker:
    """Walks one source; collects every problem so one message can list them all."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.renamed: list[tuple[str, Field, object]] = []
        self.enterprise: list[str] = []

    def _type_error(self, path: str, want: str, value: object) -> object:
        self.errors.append(
            f"'{path}' expected type '{want}', got unconvertible type '{_go_kind(value)}', "
            f"value: '{_go_value(value)}'"
        )
        return _INVALID

    def _as_map(self, path: str, value: object) -> dict[str, Any] | None:
        """A mapping, merging the list of blocks that repeated HCL stanzas decode into."""
        if isinstance(value, dict):
            return value
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            merged: dict[str, Any] = {}
            for item in value:
                merged.update(item)
            return merged
        self.errors.append(f"'{path}' expected a map, got '{_go_kind(value)}'")
        return None

    def _as_list(self, path: str, value: object, single_ok: bool) -> list[Any] | None:
        if isinstance(value, list):
            return value
        if single_ok and isinstance(value, dict):
            return [value]
        self.errors.append(
            f"'{path}': source data must be an array or slice, got {_go_kind(value)}")
        return None

    def section(self, spec: Section, value: object, path: str) -> object:
        raw = self._as_map(path, value)
        if raw is None:
            return _INVALID
        out: dict[str, Any] = {}
        for key, item in raw.items():
            sub_path = f"{path}.{key}" if path else str(key)
            if item is None:
                continue
            name = spec.lookup(str(key))
            if name is None:
                self.errors.append(f"invalid config key {sub_path}")
                continue
            sub_path = f"{path}.{name}" if path else name
            checked = self.value(spec.fields[name], item, sub_path)
            if checked is not _INVALID:
                out[name] = checked
        for singular, plural in spec.folds.items():
            if singular in out:
                out[plural] = out.get(plural, []) + out.pop(singular)
        return out

    def value(self, spec: Spec, value: object, path: str) -> object:
        if isinstance(spec, Section):
            return self.section(spec, value, path)
        if isinstance(spec, SectionList):
            items = self._as_list(path, value, single_ok=True)
            if items is None:
                return _INVALID
            # A lone block is named without an index, as the user wrote it.
            paths = [path] if isinstance(value, dict) else [
                f"{path}[{i}]" for i in range(len(items))]
            out = [self.section(spec.item, v, p) for v, p in zip(items, paths, strict=True)]
            return [v for v in out if v is not _INVALID]
        if isinstance(spec, SectionMap):
            raw = self._as_map(path, value)
            if raw is None:
                return _INVALID
            entries = {k: self.section(spec.item, v, f"{path}.{k}") for k, v in raw.items()}
            return {k: v for k, v in entries.items() if v is not _INVALID}
        checked = self.field(spec, value, path)
        if checked is not _INVALID:
            if spec.replaced_by is not None or spec.warning is not None:
                self.renamed.append((path, spec, checked))
            if spec.enterprise:
                self.enterprise.append(path)
        return checked

    def field(self, spec: Field, value: object, path: str) -> object:
        kind = spec.kind
        if kind in MAP_KINDS:
            return self._map_field(spec, value, path)
        if kind in LIST_KINDS:
            items = self._as_list(path, value, single_ok=kind is Kind.MAP_LIST)
            if items is None:
                return _INVALID
            want_map = kind is Kind.MAP_LIST
            for i, item in enumerate(items):
                if want_map and not isinstance(item, dict):
                    self.errors.append(f"'{path}[{i}]' expected a map, got '{_go_kind(item)}'")
                    return _INVALID
                if not want_map and not isinstance(item, str):
                    return self._type_error(f"{path}[{i}]", "string", item)
            return list(items)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        return self._scalar(spec, value, path)

    def _scalar(self, spec: Field, value: object, path: str) -> object:
        kind = spec.kind
        if kind in (Kind.STR, Kind.DURATION):
            if not isinstance(value, str):
                return self._type_error(path, "string", value)
            if kind is Kind.DURATION:
                try:
                    parse_duration_ns(value)
                except ConfigError as err:
                    self.errors.append(f"{path}: invalid duration: {go_quote(value)}: {err}")
                    return _INVALID
            elif spec.choices and not self._chosen(spec, value):
                self.errors.append(f"{path}: invalid {spec.noun}: {go_quote(value)}")
                return _INVALID
            return value
        if kind is Kind.BOOL:
            return value if isinstance(value, bool) else self._type_error(path, "bool", value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self._type_error(path, _WANT[kind], value)
        if kind is Kind.FLOAT:
            return float(value)
        if isinstance(value, float):
            if not value.is_integer():
                return self._type_error(path, _WANT[kind], value)
            value = int(value)
        if kind is Kind.UINT and value < 0:
            self.errors.append(f"cannot parse '{path}', {value} overflows uint")
            return _INVALID
        if kind is Kind.PORT and value > 65535:
            self.errors.append(f"{path}: invalid port: {value}")
            return _INVALID
        return value

    @staticmethod
    def _chosen(spec: Field, value: str) -> bool:
        if spec.fold_case:
            return value.upper() in spec.choices
        return value in spec.choices

    def _map_field(self, spec: Field, value: object, path: str) -> object:
        raw = self._as_map(path, value)
        if raw is None:
            return _INVALID
        if spec.kind is Kind.ANY_MAP:
            return dict(raw)
        out: dict[str, Any] = {}
        for key, item in raw.items():
            entry = f"{path}[{key}]"
            if spec.kind is Kind.STR_LIST_MAP:
                checked = self.field(Field(Kind.STR_LIST), item, entry)
            elif spec.kind is Kind.DURATION_MAP:
                checked = self._scalar(Field(Kind.DURATION), item, entry)
            else:
                checked = self._scalar(Field(Kind.STR), item, entry)
            if checked is _INVALID:
                return _INVALID
            out[str(key)] = checked
        return out


def multierror(errors: list[str]) -> str:
    """Format a list the way hashicorp/go-multierror does; Consul prints errors that way."""
    head = "1 error occurred" if len(errors) == 1 else f"{len(errors)} errors occurred"
    return f"{head}:\n\t" + "\n\t".join(f"* {e}" for e in errors) + "\n\n"


def _has(data: Mapping[str, Any], path: str) -> bool:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _set(data: dict[str, Any], path: str, value: object) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _delete(data: dict[str, Any], path: str) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        node = node[part]
    del node[parts[-1]]
    if len(parts) > 1 and not node:
        _delete(data, ".".join(parts[:-1]))


def _apply_renames(data: dict[str, Any], renamed: list[tuple[str, Field, object]]) -> list[str]:
    """Move deprecated keys onto their replacements; a replacement set in the same source wins."""
    warnings: list[str] = []
    for path, spec, value in renamed:
        new = spec.replaced_by
        warnings.append(spec.warning or deprecation_warning(path, new or ""))
        if path == "tls_min_version" and isinstance(value, str) and value in TLS_LEGACY_VERSIONS:
            current = TLS_LEGACY_VERSIONS[value]
            warnings.append(f"'tls_min_version' value '{value}' is deprecated, please specify "
                            f"'{current}' instead")
            value = current
        _delete(data, path)
        if new is not None:
            if spec.append:
                _set(data, new, [*_get_list(data, new), *_as_str_list(value)])
            elif not _has(data, new):
                _set(data, new, value)
        for force_path, forced in spec.forces:
            _set(data, force_path, forced)
        for fill_path, filled in spec.fills:
            if not _has(data, fill_path):
                _set(data, fill_path, filled)
    return warnings


def _get_list(data: Mapping[str, Any], path: str) -> list[Any]:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return []
        node = node[part]
    return list(node) if isinstance(node, list) else []


def _as_str_list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def decode(source: Source) -> Decoded:
    """Check one source against the table; every problem in it is reported in one error."""
    walker = _Walker()
    data = walker.section(TOP, source.data, "")
    if walker.errors or not isinstance(data, dict):
        raise ConfigError(f"failed to parse {source.name}: {multierror(walker.errors)}")
    warnings = [enterprise_warning(path) for path in walker.enterprise]
    warnings.extend(_apply_renames(data, walker.renamed))
    return Decoded(name=source.name, data=data, warnings=warnings)


def check_definitions(one: Decoded) -> None:
    """Refuse a service or check definition the agent could not register, naming the file and
    the entry, so a bad file stops a start or a reload before anything changes."""
    from proconsul.agent.definitions import decode_check, decode_service
    from proconsul.errors import HTTPError

    problems: list[str] = []
    for key, decoder in (("services", decode_service), ("checks", decode_check)):
        for i, body in enumerate(one.data.get(key) or ()):
            try:
                if decoder is decode_service:
                    decode_service(body, node="")
                else:
                    decode_check(body)
            except (HTTPError, ValueError) as err:
                problems.append(f"{key}[{i}]: {err}")
    if problems:
        raise ConfigError(f"failed to parse {one.name}: {multierror(problems)}")
