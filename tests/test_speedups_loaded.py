"""Guard: a built compiled twin must be the one its selector hands out.

A selector falls back to the pure twin silently when the compiled import fails (wrong ABI, a
missing symbol, a stale build), and everything still passes, only slower. This test turns that
into a failure whenever a compiled module exists in the installed package (or
PROCONSUL_REQUIRE_EXTENSIONS=1 says one must), and checks that PROCONSUL_NO_EXTENSIONS=1 really
keeps it out. Each new compiled module adds one line to SPEEDUPS.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys

import pytest

from proconsul._compat import NO_EXTENSIONS

#: (selector module, compiled module) for every compiled twin.
SPEEDUPS = [
    ("proconsul.dns.wire", "proconsul._speedups.dns_wire"),
    ("proconsul.gossip.codec", "proconsul._speedups.gossip_codec"),
    ("proconsul.gossip.lzw", "proconsul._speedups.gossip_lzw"),
    ("proconsul.http.wire", "proconsul._speedups.http_wire"),
    ("proconsul.raft.log_codec", "proconsul._speedups.raft_log"),
]

REQUIRED = os.environ.get("PROCONSUL_REQUIRE_EXTENSIONS") == "1"


@pytest.mark.parametrize(("selector", "compiled"), SPEEDUPS)
def test_selector_uses_the_compiled_twin(
    request: pytest.FixtureRequest, selector: str, compiled: str
) -> None:
    if NO_EXTENSIONS or request.config.getoption("--no-c-extensions"):
        if REQUIRED:
            pytest.fail("PROCONSUL_REQUIRE_EXTENSIONS=1 but compiled twins are switched off")
        pytest.skip("compiled twins disabled")
    spec = importlib.util.find_spec(compiled)
    if spec is None:
        if REQUIRED:
            pytest.fail(f"{compiled} was not built")
        pytest.skip(f"{compiled} not built")
    assert spec.origin is not None
    assert spec.origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), spec.origin
    module = importlib.import_module(compiled)  # an import error here is the real failure
    chosen = importlib.import_module(selector)
    public = [name for name in module.__all__ if callable(getattr(module, name))]
    assert public, f"{compiled} exports nothing callable"
    wrong = [name for name in public if getattr(chosen, name, None) is not getattr(module, name)]
    assert not wrong, f"{selector} did not take {wrong} from {compiled}"


@pytest.mark.parametrize(("selector", "compiled"), SPEEDUPS)
def test_no_extensions_switch_keeps_compiled_twins_out(selector: str, compiled: str) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({selector!r})\n"
        f"sys.exit(2 if {compiled!r} in sys.modules else 0)\n"
    )
    env = {**os.environ, "PROCONSUL_NO_EXTENSIONS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=60, check=False)
    assert done.returncode == 0, f"{selector} loaded {compiled} despite PROCONSUL_NO_EXTENSIONS"
