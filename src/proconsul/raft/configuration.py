"""Cluster membership: which servers exist and which of them vote (hashicorp/raft
configuration.go).

A configuration travels as a CONFIGURATION log entry and inside snapshot metadata, in the plain
form the single-voter node already writes (`{"Servers": [{"Suffrage", "ID", "Address"}]}`), so
stores written by either read the same. Changes are made one server at a time: each is a new
configuration derived from the latest one, and the next may start only once it is committed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from proconsul.raft.errors import ConfigurationError


class Suffrage(enum.StrEnum):
    VOTER = "Voter"
    NONVOTER = "Nonvoter"
    #: in hashicorp/raft's enum but never assigned by its own changes; accepted when read
    STAGING = "Staging"


@dataclass(slots=True, frozen=True)
class Server:
    id: str
    address: str
    suffrage: Suffrage = Suffrage.VOTER

    @property
    def voter(self) -> bool:
        return self.suffrage is Suffrage.VOTER

    def go_string(self) -> str:
        """As Go's `%+v` prints a raft.Server (the `latest_configuration` stat)."""
        return f"{{Suffrage:{self.suffrage.value} ID:{self.id} Address:{self.address}}}"


@dataclass(slots=True, frozen=True)
class Configuration:
    servers: tuple[Server, ...] = ()

    @classmethod
    def of(cls, servers: Iterable[Server]) -> Configuration:
        return cls(tuple(servers))

    def voters(self) -> list[Server]:
        return [s for s in self.servers if s.voter]

    def get(self, server_id: str) -> Server | None:
        for server in self.servers:
            if server.id == server_id:
                return server
        return None

    def has_vote(self, server_id: str) -> bool:
        server = self.get(server_id)
        return server is not None and server.voter

    def quorum(self) -> int:
        return len(self.voters()) // 2 + 1

    def go_string(self) -> str:
        return "[" + " ".join(s.go_string() for s in self.servers) + "]"

    def to_data(self) -> dict[str, Any]:
        return {"Servers": [
            {"Suffrage": s.suffrage.value, "ID": s.id, "Address": s.address}
            for s in self.servers
        ]}

    @classmethod
    def from_data(cls, data: Any) -> Configuration:
        if not data:
            return cls()
        servers = []
        for raw in data.get("Servers") or ():
            suffrage = raw.get("Suffrage", "Voter")
            if isinstance(suffrage, int):  # hashicorp/raft's numbering
                suffrage = ("Voter", "Nonvoter", "Staging")[suffrage]
            servers.append(Server(str(raw["ID"]), str(raw["Address"]), Suffrage(suffrage)))
        return cls(tuple(servers))

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(self.to_data(), use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, data: bytes) -> Configuration:
        if not data:
            return cls()
        return cls.from_data(msgpack.unpackb(data, raw=False))


def check_configuration(configuration: Configuration) -> None:
    """hashicorp/raft's checkConfiguration: unique non-empty IDs and addresses, one voter."""
    ids: set[str] = set()
    addresses: set[str] = set()
    for server in configuration.servers:
        if not server.id:
            raise ConfigurationError(f"empty ID in configuration: {configuration.go_string()}")
        if not server.address:
            raise ConfigurationError(f"empty address in configuration: {server.go_string()}")
        if server.id in ids:
            raise ConfigurationError(f"found duplicate ID in configuration: {server.id}")
        ids.add(server.id)
        if server.address in addresses:
            raise ConfigurationError(
                f"found duplicate address in configuration: {server.address}")
        addresses.add(server.address)
    if not configuration.voters():
        raise ConfigurationError(
            f"need at least one voter in configuration: {configuration.go_string()}")


class Change(enum.Enum):
    ADD_VOTER = "AddVoter"
    ADD_NONVOTER = "AddNonvoter"
    DEMOTE_VOTER = "DemoteVoter"
    REMOVE_SERVER = "RemoveServer"


def next_configuration(
    current: Configuration, current_index: int, change: Change, server_id: str,
    address: str = "", prev_index: int = 0,
) -> Configuration:
    """The configuration after one change to `current` (hashicorp/raft nextConfiguration).

    `prev_index`, when not 0, must equal the index of `current`, so a caller that read the
    configuration can make a change that fails if anyone changed it in between."""
    if prev_index and prev_index != current_index:
        raise ConfigurationError(
            f"configuration changed since {prev_index} (latest is {current_index})")
    servers = list(current.servers)
    at = next((i for i, s in enumerate(servers) if s.id == server_id), -1)
    if change is Change.ADD_VOTER:
        new = Server(server_id, address, Suffrage.VOTER)
        if at < 0:
            servers.append(new)
        else:
            servers[at] = new
    elif change is Change.ADD_NONVOTER:
        if at < 0:
            servers.append(Server(server_id, address, Suffrage.NONVOTER))
        else:
            # an existing voter keeps its vote; only its address changes
            servers[at] = Server(server_id, address, servers[at].suffrage)
    elif change is Change.DEMOTE_VOTER:
        if at >= 0:
            servers[at] = Server(server_id, servers[at].address, Suffrage.NONVOTER)
    elif change is Change.REMOVE_SERVER and at >= 0:
        del servers[at]
    result = Configuration(tuple(servers))
    check_configuration(result)
    return result
