"""Shared fixtures: real agent processes, and the twin selector for compiled/pure modules."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from proconsul._compat import NO_EXTENSIONS
from tests.support import AgentProcess


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-c-extensions", action="store_true",
                     help="run only the pure-Python twins")


def twin_params(compiled: str, pure: str) -> list[object]:
    """Parameters for a fixture that yields both twins of one module."""
    return [
        pytest.param(compiled, id="c", marks=pytest.mark.c_extension),
        pytest.param(pure, id="py"),
    ]


def load_twin(request: pytest.FixtureRequest, name: str) -> ModuleType:
    """Import one twin; the compiled one is skipped only when extensions are off."""
    if request.node.get_closest_marker("c_extension") and (
        NO_EXTENSIONS or request.config.getoption("--no-c-extensions")
    ):
        pytest.skip("compiled twins disabled")
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One -dev agent process shared by the tests of a module."""
    workdir: Path = tmp_path_factory.mktemp("agent")
    proc = AgentProcess(workdir).start()
    try:
        yield proc
    finally:
        proc.stop()
