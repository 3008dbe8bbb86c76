"""The agent's data directory: an exclusive lock so two agents never share one, and the node
ID that must survive restarts (Consul keeps it in `data_dir/node-id`)."""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path

from proconsul.errors import ConfigError, DataDirLocked

LOCK_NAME = "agent.lock"
NODE_ID_NAME = "node-id"


class DataDir:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the directory for this process; fails at once if another agent holds it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"Error creating data_dir {self.path}: {err.strerror}") from None
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(
                f"data_dir {self.path} is in use by another agent (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def node_id(self, configured: str) -> str:
        """The configured node ID, else the persisted one, else a new one that is persisted."""
        path = self.path / NODE_ID_NAME
        if configured:
            return configured
        try:
            existing = path.read_text().strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            return existing
        node_id = str(uuid.uuid4())
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(node_id)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return node_id

    def raft_dir(self) -> Path:
        path = self.path / "raft"
        path.mkdir(parents=True, exist_ok=True)
        return path
