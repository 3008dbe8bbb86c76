"""The state store: tables stamped with the Raft index, and watches for blocking queries."""

from proconsul.state.store import Store
from proconsul.state.watch import WatchSet

__all__ = ["Store", "WatchSet"]
