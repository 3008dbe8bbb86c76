"""Keyring operations over every gossip pool this agent is part of (Consul's agent/keyring.go
and the KeyringOperation endpoint of agent/consul/internal_endpoint.go).

Consul keeps the keyrings of its pools in lock-step: one operator request is applied to the WAN
pool (servers only) and then to the LAN pool of every segment, and the answer holds one entry
per pool, shaped as Consul's structs.KeyringResponse (`WAN`, `Datacenter`, `Segment`,
`Partition`, `Messages`, `Keys`, `PrimaryKeys`, `NumNodes`, `Error`). A pool that failed does not
stop the others: its entry carries the error, and the HTTP layer turns the entries with errors
into Consul's error text. `local_only` (listing only) skips the WAN pool, as does an agent without
one.

Consul also forwards the request to one server of every other datacenter; this agent joins no
other datacenter, so there is nothing to forward to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from proconsul.errors import RPCError
from proconsul.gossip.serf.keymanager import KeyManagerError, KeyResponse, key_manager

if TYPE_CHECKING:
    from proconsul.gossip.serf.serf import Serf

__all__ = ["KEYRING_INSTALL", "KEYRING_LIST", "KEYRING_OPS", "KEYRING_REMOVE", "KEYRING_USE",
           "KeyringOperator", "KeyringPool", "keyring_response"]

#: structs.KeyringOp values
KEYRING_LIST = "list"
KEYRING_INSTALL = "install"
KEYRING_USE = "use"
KEYRING_REMOVE = "remove"
KEYRING_OPS = (KEYRING_LIST, KEYRING_INSTALL, KEYRING_USE, KEYRING_REMOVE)

NOT_A_SERVER = "keyring operations must run against a server node"
LOCAL_ONLY_MISUSE = "argument error: LocalOnly can only be used for List operations"


class KeyringPool(NamedTuple):
    """One gossip pool a keyring operation reaches: the WAN pool, or the LAN pool of a
    segment ("" for the default one)."""

    serf: Serf
    wan: bool
    datacenter: str
    segment: str = ""


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    # Go encodes maps with sorted keys; the answers should not depend on arrival order
    return {key: counts[key] for key in sorted(counts)}


def keyring_response(pool: KeyringPool, resp: KeyResponse, error: str = "") -> dict[str, Any]:
    """One pool's entry of the answer, field for field as Consul encodes it (`Partition`,
    `Messages` and `Error` are left out when empty)."""
    out: dict[str, Any] = {"WAN": pool.wan, "Datacenter": pool.datacenter,
                           "Segment": pool.segment}
    if resp.messages:
        out["Messages"] = {node: resp.messages[node] for node in sorted(resp.messages)}
    out["Keys"] = _sorted(resp.keys)
    out["PrimaryKeys"] = _sorted(resp.primary_keys)
    out["NumNodes"] = resp.num_nodes
    if error:
        out["Error"] = error
    return out


class KeyringOperator:
    """Runs keyring operations across the agent's pools.

    `pools` is asked for the current pools on every operation, so pools that come and go with
    the agent's lifecycle are always the ones reached. A client agent (`server=False`) refuses,
    as Consul does: keyring changes are driven from servers, which hold the WAN pool too.
    """

    def __init__(self, pools: Callable[[], Sequence[KeyringPool]], *, server: bool = True) -> None:
        self.pools = pools
        self.server = server

    async def operation(self, op: str, key: str = "", relay_factor: int = 0,
                        local_only: bool = False) -> list[dict[str, Any]]:
        """Apply `op` (list, install, use, remove) to the WAN pool first, then every LAN pool;
        one entry per pool, errors inside the entries. Raises RPCError only for a request that
        cannot run at all."""
        if op not in KEYRING_OPS:
            raise ValueError(f"Invalid keyring operation {op!r}")
        if not self.server:
            raise RPCError(NOT_A_SERVER)
        if local_only and op != KEYRING_LIST:
            raise RPCError(LOCAL_ONLY_MISUSE)
        pools = list(self.pools())
        lan = [pool for pool in pools if not pool.wan]
        wan = [pool for pool in pools if pool.wan]
        chosen = lan if local_only or not wan else wan + lan
        return [await self._apply(pool, op, key, relay_factor) for pool in chosen]

    async def list_keys(self, relay_factor: int = 0,
                        local_only: bool = False) -> list[dict[str, Any]]:
        return await self.operation(KEYRING_LIST, "", relay_factor, local_only)

    async def install_key(self, key: str, relay_factor: int = 0) -> list[dict[str, Any]]:
        return await self.operation(KEYRING_INSTALL, key, relay_factor)

    async def use_key(self, key: str, relay_factor: int = 0) -> list[dict[str, Any]]:
        return await self.operation(KEYRING_USE, key, relay_factor)

    async def remove_key(self, key: str, relay_factor: int = 0) -> list[dict[str, Any]]:
        return await self.operation(KEYRING_REMOVE, key, relay_factor)

    @staticmethod
    async def _apply(pool: KeyringPool, op: str, key: str,
                     relay_factor: int) -> dict[str, Any]:
        manager = key_manager(pool.serf)
        try:
            if op == KEYRING_LIST:
                resp = await manager.list_keys(relay_factor)
            elif op == KEYRING_INSTALL:
                resp = await manager.install_key(key, relay_factor)
            elif op == KEYRING_USE:
                resp = await manager.use_key(key, relay_factor)
            else:
                resp = await manager.remove_key(key, relay_factor)
        except KeyManagerError as exc:
            return keyring_response(pool, exc.response, str(exc))
        return keyring_response(pool, resp)
