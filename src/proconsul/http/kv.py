"""/v1/kv (Consul's agent/kvs_endpoint.go)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proconsul.errors import BadRequest, RPCError
from proconsul.http.app import APIApp, go_query_encode, meta_headers, text_response
from proconsul.http.params import go_uint_error, parse_query, parse_token, parse_uint
from proconsul.http.request import Request, Response
from proconsul.structs import kvs as K
from proconsul.structs.kvs import KVEntry

if TYPE_CHECKING:
    from proconsul.http.backend import KVSBackend

PREFIX = "/v1/kv/"


def conflicting(req: Request, *flags: str) -> bool:
    return sum(1 for f in flags if req.has(f)) > 1


def uint_param(req: Request, name: str) -> int:
    """A uint64 query parameter; a bad one is an error with Go's strconv text (Consul
    returns it unwrapped, hence 500)."""
    text = req.arg(name) or ""
    value = parse_uint(text)
    if value is None:
        raise RPCError(go_uint_error(text))
    return value


class KVHandlers:
    def __init__(self, app: APIApp, kvs: KVSBackend) -> None:
        self.app = app
        self.kvs = kvs
        app.add(PREFIX, ("GET", "PUT", "DELETE"), self.endpoint)

    async def endpoint(self, req: Request) -> Response:
        key = req.path[len(PREFIX):]
        if req.method in ("GET", "HEAD"):
            if req.has("keys"):
                return await self.get_keys(req, key)
            return await self.get(req, key)
        if req.method == "PUT":
            return await self.put(req, key)
        return await self.delete(req, key)

    async def get(self, req: Request, key: str) -> Response:
        opts = parse_query(req)
        if req.has("recurse"):
            meta, entries = await self.kvs.list_prefix(key, opts)
        else:
            if not key:
                raise BadRequest("Missing key name")
            meta, entry = await self.kvs.get(key, opts)
            entries = [entry] if entry is not None else []
        if not entries:
            return Response(404, b"", meta_headers(meta))
        if req.has("raw") and not req.has("recurse"):
            return Response(200, entries[0].value or b"", [
                *meta_headers(meta),
                ("Content-Type", "text/plain"),
                ("X-Content-Type-Options", "nosniff"),
                ("Content-Security-Policy", "sandbox"),
            ])
        return self.app.json(req, [e.to_api() for e in entries], meta)

    async def get_keys(self, req: Request, prefix: str) -> Response:
        opts = parse_query(req)
        separator = ""
        if req.has("seperator"):
            separator = req.arg("seperator") or ""
        if req.has("separator"):
            separator = req.arg("separator") or ""
        meta, keys = await self.kvs.list_keys(prefix, separator, opts)
        if not keys and prefix:
            return Response(404, b"", meta_headers(meta))
        return self.app.json(req, keys, meta)

    async def put(self, req: Request, key: str) -> Response:
        parse_token(req)
        parse_query(req)
        if not key:
            raise BadRequest("Missing key name")
        if conflicting(req, "cas", "acquire", "release"):
            return text_response(400, "Conflicting flags: " + go_query_encode(req.query) + "\n")
        op = K.KV_SET
        flags = uint_param(req, "flags") if req.has("flags") else 0
        cas = 0
        if req.has("cas"):
            cas = uint_param(req, "cas")
            op = K.KV_CAS
        session = ""
        if req.has("acquire"):
            session, op = req.arg("acquire") or "", K.KV_LOCK
        if req.has("release"):
            session, op = req.arg("release") or "", K.KV_UNLOCK
        entry = KVEntry(key=key, value=req.body, flags=flags, session=session,
                        modify_index=cas)
        ok = await self.kvs.apply(op, entry)
        return self.app.json(req, True if op == K.KV_SET else ok)

    async def delete(self, req: Request, key: str) -> Response:
        parse_query(req)
        if conflicting(req, "recurse", "cas"):
            return text_response(400, "Conflicting flags: " + go_query_encode(req.query) + "\n")
        op = K.KV_DELETE
        if req.has("recurse"):
            op = K.KV_DELETE_TREE
        elif not key:
            raise BadRequest("Missing key name")
        cas = 0
        if req.has("cas"):
            cas = uint_param(req, "cas")
            op = K.KV_DELETE_CAS
        ok = await self.kvs.apply(op, KVEntry(key=key, modify_index=cas))
        return self.app.json(req, ok if op == K.KV_DELETE_CAS else True)
