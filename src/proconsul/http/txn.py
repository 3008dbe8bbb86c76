"""/v1/txn (Consul's agent/txn_endpoint.go): KV operations applied atomically."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from proconsul.errors import HTTPError
from proconsul.http import encode
from proconsul.http.app import APIApp, text_response
from proconsul.http.params import check_enterprise_meta, parse_query, parse_token
from proconsul.http.request import Request, Response
from proconsul.structs import kvs as K
from proconsul.structs.kvs import KVEntry

if TYPE_CHECKING:
    from proconsul.http.backend import TxnBackend

#: Most operations one transaction may hold (Consul's maxTxnOps).
MAX_TXN_OPS = 128


class BodyError(HTTPError):
    status = 400


def _parse_error(detail: str) -> BodyError:
    return BodyError(f"Failed to parse body: {detail}")


def _uint(op: dict[str, Any], name: str) -> int:
    value = op.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _parse_error(f"json: cannot unmarshal into Go struct field KVTxnOp.{name} of type"
                           " uint64")
    return value


def _str(op: dict[str, Any], name: str, field: str) -> str:
    value = op.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _parse_error(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field "
            f"KVTxnOp.{field} of type string"
        )
    return value


def decode_ops(raw: bytes) -> list[dict[str, Any]]:
    try:
        ops = encode.loads(raw) if raw.strip() else None
    except encode.JSONDecodeError as err:
        raise _parse_error(str(err)) from None
    if ops is None:
        return []
    if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
        raise _parse_error("json: cannot unmarshal object into Go value of type api.TxnOps")
    return [encode.fold_keys(o) for o in ops]


class TxnHandlers:
    def __init__(self, app: APIApp, txn: TxnBackend) -> None:
        self.app = app
        self.txn = txn
        app.add("/v1/txn", ("PUT",), self.handle)

    def _convert(self, ops: list[dict[str, Any]]) -> tuple[list[tuple[str, KVEntry]], int]:
        max_kv = self.app.kv_max_value_size
        converted: list[tuple[str, KVEntry]] = []
        writes = 0
        total = 0
        for i, op in enumerate(ops):
            kv = op.get("kv")
            if not isinstance(kv, dict):
                kinds = ", ".join(sorted(op)) or "empty"
                raise HTTPError(
                    f"Operation {i} ({kinds}) is not supported: only KV operations are "
                    "available in transactions", 400
                )
            value = kv.get("value")
            data: bytes | None = None
            if value is not None:
                if not isinstance(value, str):
                    raise _parse_error(f"unexpected value type: {type(value).__name__}")
                try:
                    data = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError) as err:
                    raise _parse_error(f"failed to decode value: {err}") from None
            key = _str(kv, "key", "Key")
            size = len(data or b"")
            if size > max_kv:
                raise HTTPError(
                    f'Value for key "{key}" is too large ({size} > {max_kv} bytes)', 413
                )
            total += size
            verb = _str(kv, "verb", "Verb")
            if verb in K.KV_WRITE_VERBS:
                writes += 1
            converted.append((verb, KVEntry(
                key=key, value=data, flags=_uint(kv, "flags"),
                session=_str(kv, "session", "Session"), modify_index=_uint(kv, "index"),
            )))
        if total > max_kv:
            raise HTTPError(
                f"Cumulative size of key data is too large ({total} > {max_kv} bytes)", 413
            )
        return converted, writes

    async def handle(self, req: Request) -> Response:
        ops = decode_ops(req.body)
        if len(ops) > MAX_TXN_OPS:
            return text_response(
                413, f"Transaction contains too many operations ({len(ops)} > {MAX_TXN_OPS})"
            )
        converted, writes = self._convert(ops)
        headers: list[tuple[str, str]] = []
        extra: dict[str, Any] = {}
        if writes == 0:
            opts = parse_query(req)
            meta, (results, errors) = await self.txn.read(converted, opts)
            headers = [
                ("X-Consul-Knownleader", "true" if meta.known_leader else "false"),
                ("X-Consul-Lastcontact", str(meta.last_contact_ms)),
            ]
            # the read reply embeds its query metadata in the body, as Consul's does
            extra = {
                "Index": max(meta.index, 1), "LastContact": meta.last_contact_ms,
                "KnownLeader": meta.known_leader, "ConsistencyLevel": "",
                "NotModified": False, "Backend": 0, "ResultsFilteredByACLs": False,
            }
        else:
            parse_token(req)
            check_enterprise_meta(req)
            results, errors = await self.txn.apply(converted)
        body = {
            "Results": (
                [{"KV": r["KV"].to_api()} for r in results] if results is not None else None
            ),
            "Errors": errors,
            **extra,
        }
        resp = self.app.json(req, body, status=409 if errors else 200, headers=headers)
        if errors:
            resp.headers[0] = ("Content-Type", "application/json; charset=utf-8")
        return resp
