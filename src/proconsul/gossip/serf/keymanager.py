"""Cluster-wide keyring changes through Serf's internal queries (mirrors hashicorp/serf
serf/keymanager.go).

A key operation is a query (`_serf_install-key`, `_serf_use-key`, `_serf_remove-key`,
`_serf_list-keys`) that every member answers from its own keyring (serf_delegate.py holds the
answering side). The requester tallies the answers into one `KeyResponse`: how many members
hold each key, which key each uses as primary, and the message of every member that refused.
Operators act on that tally — a rotation is only safe to continue once every member reported
success — so an operation that heard from fewer members than memberlist knows, or from any
member that failed, raises `KeyManagerError` carrying the partial tally, with serf's wording
("2/3 nodes reported failure").

The new key travels inside the query, so it is gossiped encrypted with the current primary key;
a pool without encryption has no keyring to change, and its members say so.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from proconsul.errors import GossipError, ProconsulError
from proconsul.gossip.keyring import KeyringError, decode_key
from proconsul.gossip.serf import codec
from proconsul.gossip.serf.messages import KEY_RESPONSE_MSG, KeyRequest
from proconsul.gossip.serf.messages import KeyResponse as NodeKeyResponse
from proconsul.gossip.serf.query import QueryParam, QueryResponseCollector
from proconsul.gossip.serf.serf_delegate import INTERNAL_QUERY_PREFIX

if TYPE_CHECKING:
    from proconsul.gossip.serf.serf import Serf

__all__ = [
    "INSTALL_KEY_QUERY", "LIST_KEYS_QUERY", "REMOVE_KEY_QUERY", "USE_KEY_QUERY", "KeyManager",
    "KeyManagerError", "KeyResponse", "key_manager",
]

INSTALL_KEY_QUERY = "install-key"
USE_KEY_QUERY = "use-key"
REMOVE_KEY_QUERY = "remove-key"
LIST_KEYS_QUERY = "list-keys"


@dataclass
class KeyResponse:
    """The tally of one key operation (serf KeyResponse).

    `keys` maps each base64 key to the number of members holding it and `primary_keys` each
    primary key to the number of members using it; both are only filled by a listing, except
    that every decoded answer counts towards `primary_keys[""]` when it names no primary, as
    serf counts it. `messages` holds each member's error or warning by member name.
    """

    messages: dict[str, str] = field(default_factory=dict)
    #: members memberlist knew (alive or suspect) when the query went out
    num_nodes: int = 0
    num_resp: int = 0
    num_err: int = 0
    keys: dict[str, int] = field(default_factory=dict)
    primary_keys: dict[str, int] = field(default_factory=dict)


class KeyManagerError(ProconsulError):
    """A key operation that did not succeed everywhere; `response` holds what was gathered
    (empty when the request never went out, e.g. a key that is not base64)."""

    def __init__(self, message: str, response: KeyResponse) -> None:
        super().__init__(message)
        self.response = response


class _ReadWriteLock:
    """sync.RWMutex for coroutines: listings share it, changes hold it alone, and a waiting
    change keeps new listings out so a stream of listings cannot starve a rotation. Releases
    are synchronous, so a cancelled operation never leaves the lock held."""

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def _changed(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        while self._writer or self._writers_waiting:
            await self._changed()
        self._readers += 1
        try:
            yield
        finally:
            self._readers -= 1
            self._wake()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        self._writers_waiting += 1
        try:
            while self._writer or self._readers:
                await self._changed()
        finally:
            self._writers_waiting -= 1
        self._writer = True
        try:
            yield
        finally:
            self._writer = False
            self._wake()


def _go_bytes(data: bytes) -> str:
    """Go's `%v` of a []byte ("[8 129 ...]"), which serf puts in its complaints about an
    answer it cannot read."""
    return "[" + " ".join(str(b) for b in data) + "]"


class KeyManager:
    """Key operations over one Serf pool (serf's KeyManager); get it with `key_manager(serf)`
    so every caller on a pool shares the same lock."""

    def __init__(self, serf: Serf) -> None:
        self.serf = serf
        self._lock = _ReadWriteLock()

    async def install_key(self, key: str, relay_factor: int = 0) -> KeyResponse:
        """Add a base64 key to every member's keyring, for decryption only."""
        async with self._lock.write():
            return await self._request(key, INSTALL_KEY_QUERY, relay_factor)

    async def use_key(self, key: str, relay_factor: int = 0) -> KeyResponse:
        """Make an installed key every member's primary (the one that encrypts)."""
        async with self._lock.write():
            return await self._request(key, USE_KEY_QUERY, relay_factor)

    async def remove_key(self, key: str, relay_factor: int = 0) -> KeyResponse:
        """Drop a key that is no longer primary anywhere from every member's keyring."""
        async with self._lock.write():
            return await self._request(key, REMOVE_KEY_QUERY, relay_factor)

    async def list_keys(self, relay_factor: int = 0) -> KeyResponse:
        """Which keys the members hold and which they use as primary."""
        async with self._lock.read():
            return await self._request("", LIST_KEYS_QUERY, relay_factor)

    async def _request(self, key: str, query: str, relay_factor: int) -> KeyResponse:
        resp = KeyResponse()
        try:
            raw = decode_key(key, validate=False)
        except KeyringError as exc:
            raise KeyManagerError(str(exc), resp) from None
        payload = codec.encode(KeyRequest(raw))
        try:
            collector = self.serf.query(INTERNAL_QUERY_PREFIX + query, payload,
                                        QueryParam(relay_factor=relay_factor))
        except GossipError as exc:
            raise KeyManagerError(str(exc), resp) from None
        resp.num_nodes = self.serf.memberlist.num_members()
        await self._tally(resp, collector)
        if resp.num_err:
            raise KeyManagerError(f"{resp.num_err}/{resp.num_nodes} nodes reported failure",
                                  resp)
        if resp.num_resp != resp.num_nodes:
            raise KeyManagerError(f"{resp.num_resp}/{resp.num_nodes} nodes reported success",
                                  resp)
        return resp

    async def _tally(self, resp: KeyResponse, collector: QueryResponseCollector) -> None:
        """Count answers until every member answered or the query's deadline closed it."""
        while (answer := await collector.responses.get()) is not None:
            resp.num_resp += 1
            self._count(resp, answer.from_, answer.payload)
            if resp.num_resp == resp.num_nodes:
                return

    def _count(self, resp: KeyResponse, node: str, payload: bytes) -> None:
        if not payload or payload[0] != KEY_RESPONSE_MSG:
            resp.messages[node] = f"Invalid key query response type: {_go_bytes(payload)}"
            resp.num_err += 1
            return
        try:
            answer = codec.decode(payload)
        except GossipError:
            answer = None
        if not isinstance(answer, NodeKeyResponse):
            resp.messages[node] = f"Failed to decode key query response: {_go_bytes(payload)}"
            resp.num_err += 1
            return
        if not answer.result:
            resp.messages[node] = answer.message
            resp.num_err += 1
        elif answer.message:
            resp.messages[node] = answer.message
            self.serf.log.warning("serf: %s", answer.message)
        for key in answer.keys or ():
            resp.keys[key] = resp.keys.get(key, 0) + 1
        resp.primary_keys[answer.primary_key] = resp.primary_keys.get(answer.primary_key, 0) + 1


_MANAGERS: weakref.WeakKeyDictionary[Serf, KeyManager] = weakref.WeakKeyDictionary()


def key_manager(serf: Serf) -> KeyManager:
    """The pool's one KeyManager (serf.KeyManager()), created on first use."""
    manager = _MANAGERS.get(serf)
    if manager is None:
        manager = _MANAGERS[serf] = KeyManager(serf)
    return manager
