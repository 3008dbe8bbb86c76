"""A full disk fails writes with a clear error and leaves the store consistent.

The data dir lives on a small tmpfs mounted by the test (root only), so the log runs out of
space for real: the failing PUT is answered 500 naming the cause, every write acknowledged
before it is still readable, the refused key is absent, and the agent keeps serving.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import consul
import pytest

from tests.integration.test_crash import server_agent
from tests.support import free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs"
)


def test_writes_fail_cleanly_when_the_disk_is_full(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                      capture_output=True, timeout=10).returncode != 0:
        pytest.skip("tmpfs mount not permitted here")
    try:
        agent = server_agent(tmp_path, mnt / "data", free_port()).start(timeout=60)
        try:
            c = consul.Consul(port=agent.http_port)
            value = os.urandom(48 * 1024)
            written: list[str] = []
            error = ""
            for i in range(200):
                key = f"fill/{i:04d}"
                try:
                    assert c.kv.put(key, value) is True
                except consul.ConsulException as err:
                    error = str(err)
                    refused = key
                    break
                written.append(key)
            assert error, "the disk never filled up"
            assert "no space left on device" in error.lower(), error
            assert len(written) > 5, error
            for key in written:
                assert c.kv.get(key)[1]["Value"] == value
            assert c.kv.get(refused)[1] is None
            assert c.status.leader()
        finally:
            agent.stop()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=10)
