"""The entry point run under the name `consul` (a symlink) behaves as `proconsul` does, so tools
that spawn `consul ...` work unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import AgentProcess


@pytest.fixture()
def consul_link(tmp_path: Path) -> Path:
    script = Path(sys.executable).parent / "proconsul"
    if not script.exists():
        found = shutil.which("proconsul")
        if found is None:
            pytest.skip("the proconsul console script is not installed")
        script = Path(found)
    link = tmp_path / "bin" / "consul"
    link.parent.mkdir()
    link.symlink_to(script)
    return link


def test_symlink_named_consul(consul_link: Path, agent: AgentProcess) -> None:
    env = {**os.environ, "CONSUL_HTTP_ADDR": agent.http_addr}
    out = subprocess.run([str(consul_link), "version"], capture_output=True, text=True,
                         timeout=30, env=env)
    assert out.returncode == 0 and out.stdout.startswith("Consul v")
    put = subprocess.run([str(consul_link), "kv", "put", "via/consul", "yes"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert put.stdout.strip() == "Success! Data written to: via/consul"
    get = subprocess.run([str(consul_link), "kv", "get", "via/consul"], capture_output=True,
                         text=True, timeout=30, env=env)
    assert get.stdout == "yes\n"


def test_consul_agent_dev_through_the_symlink(consul_link: Path, tmp_path: Path) -> None:
    proc = AgentProcess(tmp_path)
    proc.args = [str(consul_link), *proc.args[3:]]
    proc.start()
    try:
        assert "Consul agent running!" in proc.read_log()
    finally:
        proc.stop()
