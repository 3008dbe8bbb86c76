"""Sessions on the server (Consul's agent/consul/session_endpoint.go and session_ttl.go):
validation, ID generation, and the TTL timers the leader keeps."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

from proconsul.config.duration import format_duration, format_duration_ns, parse_duration_ns
from proconsul.errors import ConfigError, RPCError
from proconsul.server.commands import MessageType, encode
from proconsul.structs.session import (
    BEHAVIOR_RELEASE,
    SESSION_BEHAVIORS,
    SESSION_TTL_MAX_S,
    SESSION_TTL_MULTIPLIER,
    Session,
)

if TYPE_CHECKING:
    from proconsul.server.server import Server
    from proconsul.state.store import Store
    from proconsul.state.watch import WatchSet
    from proconsul.structs.query import QueryMeta, QueryOptions

log = logging.getLogger("proconsul.server.session")


def session_ttl_seconds(ttl: str) -> float:
    """The TTL of a stored session in seconds (0 for none)."""
    if ttl in ("", "0", "0s", "0m", "0h"):
        return 0.0
    return parse_duration_ns(ttl) / 1e9


class SessionEndpoint:
    def __init__(self, server: Server) -> None:
        self._srv = server
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # -- writes -------------------------------------------------------------------------------

    async def create(self, sess: Session) -> str:
        if not sess.node:
            raise RPCError("Must provide Node")
        behavior = sess.behavior or BEHAVIOR_RELEASE
        if behavior not in SESSION_BEHAVIORS:
            raise RPCError(f"Invalid Behavior setting '{behavior}'")
        if sess.ttl:
            try:
                ttl_ns = parse_duration_ns(sess.ttl)
            except ConfigError as err:
                raise RPCError(f"Session TTL '{sess.ttl}' invalid: {err}") from None
            ttl_min = self._srv.session_ttl_min
            if ttl_ns != 0 and (ttl_ns < ttl_min * 1e9 or ttl_ns > SESSION_TTL_MAX_S * 1e9):
                raise RPCError(
                    f"Invalid Session TTL '{ttl_ns}', must be between "
                    f"[{format_duration(ttl_min)}={format_duration(SESSION_TTL_MAX_S)}]"
                )
        store = self._srv.store
        sid = str(uuid.uuid4())
        while sid in store.sessions:
            sid = str(uuid.uuid4())
        sess = replace(sess, id=sid, behavior=behavior)
        await self._srv.apply(
            encode(MessageType.SESSION, {"Op": "create", "Session": sess.to_wire()}),
            "apply failed: ",
        )
        self.reset_timer(sid, sess.ttl)
        return sid

    async def destroy(self, sid: str) -> None:
        if not sid:
            raise RPCError("Must provide ID")
        sid = sid.lower()
        if sid not in self._srv.store.sessions:
            return
        self.clear_timer(sid)
        await self._srv.apply(
            encode(MessageType.SESSION, {"Op": "destroy", "Session": {"ID": sid}}),
            "apply failed: ",
        )

    async def renew(self, sid: str) -> list[Session]:
        sess = self._srv.store.sessions.get(sid.lower())
        if sess is None:
            return []
        self.reset_timer(sid, sess.ttl)
        return [sess]

    # -- TTL timers (leader duty) -----------------------------------------------------------

    def reset_timer(self, sid: str, ttl: str) -> None:
        """(Re)arm the invalidation timer at TTL x 2, the grace Consul gives clients."""
        self.clear_timer(sid)
        seconds = session_ttl_seconds(ttl)
        if seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        self._timers[sid] = loop.call_later(
            seconds * SESSION_TTL_MULTIPLIER, self._expire, sid
        )

    def clear_timer(self, sid: str) -> None:
        handle = self._timers.pop(sid, None)
        if handle is not None:
            handle.cancel()

    def clear_all_timers(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def initialize_timers(self) -> None:
        """Arm a timer for every TTL session (on gaining leadership or after a restore)."""
        for sess in list(self._srv.store.sessions.values()):
            self.reset_timer(sess.id, sess.ttl)

    def _expire(self, sid: str) -> None:
        self._timers.pop(sid, None)
        self._srv.spawn(self._invalidate(sid))

    async def _invalidate(self, sid: str) -> None:
        log.debug("session %s TTL expired, invalidating", sid)
        try:
            await self._srv.apply(
                encode(MessageType.SESSION, {"Op": "destroy", "Session": {"ID": sid}})
            )
        except Exception as err:  # the timer must not die with the apply
            log.error("failed to invalidate expired session %s: %s", sid, err)

    def timers(self) -> int:
        return len(self._timers)

    # -- reads --------------------------------------------------------------------------------

    async def get(self, sid: str, opts: QueryOptions) -> tuple[QueryMeta, list[Session]]:
        found: list[list[Session]] = [[]]
        sid = sid.lower()

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, sess = store.session_get(ws, sid)
            found[0] = [sess] if sess is not None else []
            return index, sess is None

        meta = await self._srv.read(opts, query)
        return meta, found[0]

    async def list_all(self, opts: QueryOptions) -> tuple[QueryMeta, list[Session]]:
        found: list[list[Session]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, found[0] = store.session_list(ws)
            return index, False

        meta = await self._srv.read(opts, query)
        return meta, found[0]

    async def node_sessions(
        self, node: str, opts: QueryOptions
    ) -> tuple[QueryMeta, list[Session]]:
        found: list[list[Session]] = [[]]

        def query(ws: WatchSet | None, store: Store) -> tuple[int, bool]:
            index, found[0] = store.node_sessions(ws, node)
            return index, False

        meta = await self._srv.read(opts, query)
        return meta, found[0]


__all__ = ["SessionEndpoint", "format_duration_ns", "session_ttl_seconds"]
