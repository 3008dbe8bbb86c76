"""`consul keyring` end to end: the command talks HTTP to a real HTTP server whose
/v1/operator/keyring runs on a KeyringOperator over our Serf pools (a WAN pool of two, a LAN
pool of three, in-memory networks), all on an event loop in a background thread. Checks the
output of every action, a whole rotation, the flag rules and the error lines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from proconsul.cli import keyring
from proconsul.gossip.serf import codec
from proconsul.gossip.serf.messages import KeyResponse as NodeKeyResponse
from proconsul.gossip.serf.query import QueryEvent
from proconsul.http.protocol import HttpServer
from tests.http.test_operator_keyring import KEY1, KEY2, MISSING, Cluster, cluster

T = TypeVar("T")


class Agent:
    """The cluster and its HTTP listener, served from their own loop and thread."""

    def __init__(self, encrypted: bool) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cluster: Cluster = self.call(cluster(encrypted=encrypted))
        self.http = HttpServer(self.cluster.app)
        listener = self.call(self.http.listen("127.0.0.1", 0))
        self.address = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self) -> None:
        async def down() -> None:
            await self.http.shutdown(1.0)
            await self.cluster.stop()

        try:
            self.call(down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def _agent(monkeypatch: pytest.MonkeyPatch, encrypted: bool) -> Iterator[Agent]:
    for name in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL", "CONSUL_HTTP_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    agent = Agent(encrypted)
    monkeypatch.setenv("CONSUL_HTTP_ADDR", agent.address)
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def keyring_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Agent]:
    yield from _agent(monkeypatch, encrypted=True)


@pytest.fixture
def plain_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Agent]:
    yield from _agent(monkeypatch, encrypted=False)


def keyring_cmd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = keyring.run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def blocks(*pools: tuple[str, dict[str, str]]) -> str:
    out = ""
    for name, keys in pools:
        out += f"\n{name}:\n" + "".join(f"  {k} {v}\n" for k, v in sorted(keys.items()))
    return out


def test_list_shows_every_pool(keyring_agent: Agent,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = keyring_cmd(capsys, "-list")
    assert (code, err) == (0, "")
    assert out == "==> Gathering installed encryption keys...\n" + blocks(
        ("WAN", {KEY1: "[2/2]"}), ("dc1 (LAN)", {KEY1: "[3/3]"}))
    code, out, _ = keyring_cmd(capsys, "-list", "-local-only")
    assert code == 0
    assert out == "==> Gathering installed encryption keys...\n" + blocks(
        ("dc1 (LAN)", {KEY1: "[3/3]"}))
    code, out, _ = keyring_cmd(capsys, "-list", "-relay-factor=2")
    assert code == 0 and out.count("[3/3]") == 1 and out.count("[2/2]") == 1


def test_rotation(keyring_agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    assert keyring_cmd(capsys, "-install", KEY2) == (
        0, "==> Installing new gossip encryption key...\n", "")
    _, out, _ = keyring_cmd(capsys, "-list")
    assert out.endswith(blocks(("WAN", {KEY1: "[2/2]", KEY2: "[2/2]"}),
                               ("dc1 (LAN)", {KEY1: "[3/3]", KEY2: "[3/3]"})))
    assert keyring_cmd(capsys, "-use=" + KEY2) == (
        0, "==> Changing primary gossip encryption key...\n", "")
    code, out, _ = keyring_cmd(capsys, "-list-primary")
    assert code == 0
    assert out == "==> Gathering installed primary encryption keys...\n" + blocks(
        ("WAN", {KEY2: "[2/2]"}), ("dc1 (LAN)", {KEY2: "[3/3]"}))
    assert keyring_cmd(capsys, "-remove", KEY1, "-relay-factor", "1") == (
        0, "==> Removing gossip encryption key...\n", "")
    _, out, _ = keyring_cmd(capsys, "-list")
    assert out.endswith(blocks(("WAN", {KEY2: "[2/2]"}), ("dc1 (LAN)", {KEY2: "[3/3]"})))


def test_member_warnings_are_listed(keyring_agent: Agent,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    warning = "truncated key list response, showing first 1 of 2 keys"

    def truncated(kind: str, event: QueryEvent) -> None:
        event.respond(codec.encode(NodeKeyResponse(True, warning, [KEY1], KEY1)))

    keyring_agent.cluster.lan[2].delegate._key_query = truncated  # type: ignore[method-assign]
    code, out, _ = keyring_cmd(capsys, "-list")
    assert code == 0
    assert out.endswith(f"\ndc1 (LAN):\n  ===> c2: {warning}\n  {KEY1} [3/3]\n")


def test_failures(keyring_agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = keyring_cmd(capsys, "-use", MISSING)
    msg = "Requested key is not in the keyring"
    assert (code, out) == (1, "==> Changing primary gossip encryption key...\n")
    assert err == (
        "error: Unexpected response code: 500 (7 errors occurred:\n"
        "\t* WAN error: 2/2 nodes reported failure\n"
        f"\t* s1.dc1: {msg}\n\t* s2.dc1: {msg}\n"
        "\t* dc1 (LAN) error: 3/3 nodes reported failure\n"
        f"\t* c1: {msg}\n\t* c2: {msg}\n\t* s1: {msg})\n")
    code, _, err = keyring_cmd(capsys, "-install", "c2hvcnQ=")
    assert code == 1 and "c1: key size must be 16, 24 or 32 bytes" in err


def test_unencrypted_pools(plain_agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = keyring_cmd(capsys, "-list")
    assert (code, out) == (1, "==> Gathering installed encryption keys...\n")
    assert err.startswith("error: Unexpected response code: 500 (7 errors occurred:\n"
                          "\t* WAN error: 2/2 nodes reported failure\n")
    code, _, err = keyring_cmd(capsys, "-install", KEY2)
    assert code == 1 and err.count("No keyring to modify (encryption not enabled)") == 5


def test_flag_rules(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # none of these reach an agent: nothing listens on port 1
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
    code, out, err = keyring_cmd(capsys)
    assert (code, out) == (1, "")
    assert err == keyring.help_text() + "\n"
    assert err.startswith("Usage: consul keyring [options]\n")
    for args in (("-list", "-list-primary"), ("-install", KEY1, "-use", KEY2),
                 ("-list", "-remove", KEY1)):
        assert keyring_cmd(capsys, *args) == (1, "", "Only a single action is allowed\n")
    for factor in ("6", "-1"):
        assert keyring_cmd(capsys, "-list", "-relay-factor", factor) == (
            1, "", "Error parsing relay factor: Relay factor must be in range: [0, 5]\n")
    refused = "Error validating local-only: local-only can only be set for list requests\n"
    assert keyring_cmd(capsys, "-install", KEY1, "-local-only") == (1, "", refused)
    assert keyring_cmd(capsys, "-list-primary", "-local-only") == (1, "", refused)
    code, _, err = keyring_cmd(capsys, "-relay-factor=x", "-list")
    assert code == 1
    assert err.startswith('invalid value "x" for flag -relay-factor: parse error\n')
    code, out, err = keyring_cmd(capsys, "-list")
    assert (code, out) == (1, "==> Gathering installed encryption keys...\n")
    assert err == ('error: Get "http://127.0.0.1:1/v1/operator/keyring": dial tcp '
                   "127.0.0.1:1: connect: connection refused\n")
