"""Style and typing are part of the suite: ruff over the tree, strict mypy over the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff() -> None:
    pytest.importorskip("ruff")
    result = _run("ruff", "check", "src", "tests", "bench", "tools")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    pytest.importorskip("mypy")
    result = _run("mypy", "--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "src"))
    assert result.returncode == 0, result.stdout + result.stderr
