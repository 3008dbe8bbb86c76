"""Broadcasts piggybacked on gossip (mirrors hashicorp/memberlist queue.go).

Each queued message is sent a bounded number of times (RetransmitMult x ceil(log10(n + 1))),
fewest-sent first, then longest, then newest, packed into whatever room a packet has left. A
broadcast with a name (memberlist's alive/suspect/dead about one node) replaces any queued one of
the same name, so only the newest news about a node spreads; unnamed ones (Serf's events) are
never replaced.
"""

from __future__ import annotations

from collections.abc import Callable

from sortedcontainers import SortedList

from proconsul.gossip.config import retransmit_limit


class Broadcast:
    """One message to spread; `finished` is called once when it is sent out or replaced."""

    __slots__ = ("finished", "message", "name")

    def __init__(self, message: bytes, name: str | None = None,
                 finished: Callable[[], None] | None = None) -> None:
        self.message = message
        self.name = name
        self.finished = finished

    def done(self) -> None:
        if self.finished is not None:
            self.finished()


#: below every `-id` in an item key, so a bisection lands before all items of a length
_BEFORE_ANY_ID = float("-inf")


class _Item:
    __slots__ = ("broadcast", "id", "transmits")

    def __init__(self, broadcast: Broadcast, transmits: int, id_: int) -> None:
        self.broadcast = broadcast
        self.transmits = transmits
        self.id = id_

    def key(self) -> tuple[int, int, int]:
        return (self.transmits, -len(self.broadcast.message), -self.id)


class TransmitLimitedQueue:
    def __init__(self, retransmit_mult: int, num_nodes: Callable[[], int]) -> None:
        self.retransmit_mult = retransmit_mult
        self._num_nodes = num_nodes
        self._items: SortedList = SortedList(key=_Item.key)
        self._named: dict[str, _Item] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(self, broadcast: Broadcast) -> None:
        """Add a broadcast; one with the same name as a queued one replaces it."""
        if broadcast.name is not None:
            old = self._named.pop(broadcast.name, None)
            if old is not None:
                self._items.remove(old)
                old.broadcast.done()
        self._next_id += 1
        item = _Item(broadcast, 0, self._next_id)
        self._items.add(item)
        if broadcast.name is not None:
            self._named[broadcast.name] = item

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """As many queued messages as fit `limit` bytes with `overhead` bytes each, counting
        one more transmission for each; those sent enough times leave the queue.

        memberlist's order: tier by tier of transmission count, in each tier the largest
        message that still fits (the newest among equals), until the room is used up. Each
        pick is a bisection, not a scan, so the cost per packet does not grow with the queue:
        after a join burst every node holds hundreds of queued alives, and every ping, ack and
        gossip round asks for broadcasts.
        """
        items = self._items
        if not items:
            return []
        max_transmits = retransmit_limit(self.retransmit_mult, self._num_nodes())
        used = 0
        out: list[bytes] = []
        sent: list[_Item] = []
        tier = items[0].transmits
        while items:
            free = limit - used - overhead
            if free <= 0:
                break
            # the first item of this tier no longer than `free` (keys are
            # (transmits, -length, -id), so that is the largest, then newest, that fits)
            i = items.bisect_key_left((tier, -free, _BEFORE_ANY_ID))
            if i >= len(items):
                break
            item = items[i]
            if item.transmits != tier:
                tier = item.transmits  # nothing more fits in this tier: try the next one
                continue
            del items[i]
            message = item.broadcast.message
            used += len(message) + overhead
            out.append(message)
            sent.append(item)
        # back into the queue only now, so an item cannot be picked twice in one packet
        for item in sent:
            item.transmits += 1
            if item.transmits >= max_transmits:
                if item.broadcast.name is not None:
                    self._named.pop(item.broadcast.name, None)
                item.broadcast.done()
            else:
                items.add(item)
        return out

    def prune(self, max_retain: int) -> None:
        """Keep at most `max_retain` broadcasts, dropping the most transmitted ones first."""
        while len(self._items) > max_retain:
            item = self._items.pop()
            if item.broadcast.name is not None:
                self._named.pop(item.broadcast.name, None)
            item.broadcast.done()

    def reset(self) -> None:
        for item in self._items:
            item.broadcast.done()
        self._items.clear()
        self._named.clear()
