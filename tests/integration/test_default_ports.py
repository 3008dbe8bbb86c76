"""The form tools that embed Consul use: `consul agent -config-file F -data-dir D` with F holding
only `"server": true, "bootstrap": true`, so every port is Consul's default.

Default ports are fixed numbers, so the agent runs in a network namespace of its own (created
and removed by the test) where 8500 is free whatever else runs on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to create a network namespace",
)

PROBE = (
    "import json, sys, urllib.request\n"
    "url = 'http://127.0.0.1:8500' + sys.argv[1]\n"
    "req = urllib.request.Request(url, data=sys.argv[2].encode() if len(sys.argv) > 2 else None,"
    " method='PUT' if len(sys.argv) > 2 else 'GET')\n"
    "print(urllib.request.urlopen(req, timeout=2).read().decode())\n"
)


def in_ns(ns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout)


def test_config_file_server_bootstrap_on_default_ports(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    ns, outside, inside = f"pc-{tag}", f"pco{tag}", f"pci{tag}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    proc: subprocess.Popen[bytes] | None = None
    try:
        # a private address for the agent to advertise, as on a real host; loopback for HTTP
        subprocess.run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside,
                        "netns", ns], check=True, timeout=10)
        in_ns(ns, "ip", "addr", "add", "10.200.0.2/24", "dev", inside)
        in_ns(ns, "ip", "link", "set", inside, "up")
        in_ns(ns, "ip", "link", "set", "lo", "up")
        conf = tmp_path / "consul.json"
        conf.write_text(json.dumps({"server": True, "bootstrap": True}))
        with open(tmp_path / "agent.log", "wb") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "proconsul", "agent",
                 "-config-file", str(conf), "-data-dir", str(tmp_path / "data")],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        leader = ""
        while time.monotonic() < deadline and proc.poll() is None:
            out = in_ns(ns, sys.executable, "-c", PROBE, "/v1/status/leader")
            if out.returncode == 0 and json.loads(out.stdout):
                leader = json.loads(out.stdout)
                break
            time.sleep(0.2)
        assert leader == "10.200.0.2:8300", (tmp_path / "agent.log").read_text()
        put = in_ns(ns, sys.executable, "-c", PROBE, "/v1/kv/embedded", "yes")
        assert put.stdout.strip() == "true"
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(15)
        subprocess.run(["ip", "link", "delete", outside], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "delete", ns], timeout=10)
