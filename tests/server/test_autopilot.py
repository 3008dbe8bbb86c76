"""Autopilot's rules (server/autopilot.py), its replicated configuration (state, FSM,
snapshot) and its loop against a fake Raft."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proconsul.raft.configuration import Configuration, Suffrage
from proconsul.raft.configuration import Server as RaftServer
from proconsul.server.autopilot import (
    Autopilot,
    KnownServer,
    RaftMember,
    RaftStats,
    is_healthy,
    next_state,
    parse_stats,
    promotions,
    removals,
    rfc3339,
)
from proconsul.server.commands import MessageType, encode
from proconsul.server.fsm import FSM
from proconsul.state.autopilot import AutopilotConfig

CONF = AutopilotConfig()
LEADER = RaftStats(0.0, 5, 1000)


def known(*ids: str, status: str = "alive") -> dict[str, KnownServer]:
    return {i: KnownServer(i, f"node-{i}", f"127.0.0.1:{8300 + n}", status, "1.17.0")
            for n, i in enumerate(ids)}


def members(voters: str, nonvoters: str = "") -> list[RaftMember]:
    return ([RaftMember(i, f"127.0.0.1:{8300 + n}", True) for n, i in enumerate(voters)]
            + [RaftMember(i, f"127.0.0.1:{8400 + n}", False) for n, i in enumerate(nonvoters)])


# -- health -----------------------------------------------------------------------------------

def test_healthy_follower_within_every_limit() -> None:
    assert is_healthy(CONF, RaftStats(0.05, 5, 990), LEADER, "alive")


@pytest.mark.parametrize("stats,status", [
    (RaftStats(0.05, 5, 990), "failed"),       # gossip says failed
    (RaftStats(0.05, 5, 990), "left"),
    (RaftStats(0.25, 5, 990), "alive"),        # no contact within 200ms
    (RaftStats(None, 5, 990), "alive"),        # never heard the leader
    (RaftStats(0.05, 4, 990), "alive"),        # an older term
    (RaftStats(0.05, 5, 749), "alive"),        # trails by more than 250 entries
    (None, "alive"),                           # stats could not be fetched
])
def test_unhealthy_cases(stats: RaftStats | None, status: str) -> None:
    assert not is_healthy(CONF, stats, LEADER, status)


def test_trailing_rule_only_applies_once_the_log_is_longer_than_the_limit() -> None:
    assert is_healthy(CONF, RaftStats(0.0, 5, 0), RaftStats(0.0, 5, 200), "alive")
    assert is_healthy(CONF, RaftStats(0.0, 5, 750), LEADER, "alive")


def test_parse_stats_reads_raft_last_contact_texts() -> None:
    assert parse_stats({"LastContact": "0", "LastTerm": 3, "LastIndex": 9}) == RaftStats(
        0.0, 3, 9)
    assert parse_stats({"LastContact": "27.3ms"}).last_contact == pytest.approx(0.0273)
    assert parse_stats({"LastContact": "never"}).last_contact is None
    assert parse_stats({}).last_contact is None


def test_rfc3339_matches_go_time_json() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1.5) == "1970-01-01T00:00:01.5Z"


# -- state ------------------------------------------------------------------------------------

def test_state_failure_tolerance_and_overall_health() -> None:
    ms = members("abc")
    stats = {"a": LEADER, "b": RaftStats(0.01, 5, 999), "c": RaftStats(0.01, 5, 998)}
    s = next_state(CONF, ms, "a", known("a", "b", "c"), stats, None, 100.0)
    assert s.healthy and s.failure_tolerance == 1 and s.voters == ["a", "b", "c"]
    assert s.servers["a"].leader and s.servers["a"].to_state()["Status"] == "leader"
    assert s.servers["b"].to_state()["Status"] == "voter"
    health = s.to_health()
    assert [h["Name"] for h in health["Servers"]] == ["node-a", "node-b", "node-c"]
    assert health["Servers"][1]["LastContact"] == "10ms"

    # c fails: the cluster is unhealthy and tolerates nothing more
    k = known("a", "b", "c")
    k["c"] = KnownServer("c", "node-c", "127.0.0.1:8302", "failed")
    s2 = next_state(CONF, ms, "a", k, {**stats, "c": None}, s, 130.0)
    assert not s2.healthy and s2.failure_tolerance == 0
    assert s2.servers["c"].stable_since == 130.0       # the verdict changed
    assert s2.servers["b"].stable_since == 100.0       # unchanged verdicts keep their time
    assert s2.servers["c"].stats == stats["c"]          # last known stats are still shown


def test_five_voters_tolerate_two() -> None:
    ms = members("abcde")
    stats = {i: RaftStats(0.0, 5, 1000) for i in "abcde"}
    assert next_state(CONF, ms, "a", known(*"abcde"), stats, None, 1.0).failure_tolerance == 2


def test_non_voters_do_not_count_toward_tolerance() -> None:
    ms = members("abc", "d")
    stats = {i: RaftStats(0.0, 5, 1000) for i in "abcd"}
    s = next_state(CONF, ms, "a", known(*"abcd"), stats, None, 1.0)
    assert s.failure_tolerance == 1 and s.voters == ["a", "b", "c"]
    assert s.servers["d"].to_state()["Status"] == "non-voter"


# -- promotion and removal --------------------------------------------------------------------

def test_non_voter_promoted_after_stabilization_time() -> None:
    ms = members("abc", "d")
    stats = {i: RaftStats(0.0, 5, 1000) for i in "abcd"}
    s = next_state(CONF, ms, "a", known(*"abcd"), stats, None, 100.0)
    assert promotions(CONF, s, 105.0) == []
    assert promotions(CONF, s, 110.0) == ["d"]
    # an unhealthy non-voter waits
    lagging = {**stats, "d": RaftStats(0.0, 5, 10)}
    s2 = next_state(CONF, ms, "a", known(*"abcd"), lagging, s, 111.0)
    assert promotions(CONF, s2, 200.0) == []


def _state_with(status: dict[str, str], voters: str, nonvoters: str = ""):  # type: ignore[no-untyped-def]
    ms = members(voters, nonvoters)
    k = {m.id: KnownServer(m.id, m.id, m.address, status.get(m.id, "alive")) for m in ms}
    stats = {m.id: RaftStats(0.0, 5, 1000) for m in ms}
    return next_state(CONF, ms, ms[0].id, k, stats, None, 1.0)


def test_failed_voter_removed_while_a_majority_remains() -> None:
    s = _state_with({"c": "failed"}, "abc")
    assert removals(CONF, s, []) == ["c"]
    # with two failed of three, removing either would leave a minority deciding
    s2 = _state_with({"b": "failed", "c": "failed"}, "abc")
    assert removals(CONF, s2, []) == ["b"]


def test_removals_respect_min_quorum_and_the_switch() -> None:
    s = _state_with({"c": "failed"}, "abc")
    assert removals(AutopilotConfig(min_quorum=3), s, []) == []
    assert removals(AutopilotConfig(cleanup_dead_servers=False), s, []) == []


def test_removals_order_and_non_voters_always_go() -> None:
    s = _state_with({"d": "failed", "c": "left", "e": "failed"}, "abc", "de")
    out = removals(CONF, s, ["b"])
    # stale voter b first, then failed non-voters, then failed voters within tolerance
    assert out[:1] == ["b"] and set(out[1:3]) == {"d", "e"}
    assert "c" not in out  # b already used the one removal a 3-voter cluster allows


def test_leader_never_removed() -> None:
    s = _state_with({"a": "failed"}, "abc")
    assert removals(CONF, s, ["a"]) == []


# -- replicated configuration -----------------------------------------------------------------

def _apply(fsm: FSM, index: int, config: AutopilotConfig, cas: bool = False) -> Any:
    return fsm.apply(index, encode(MessageType.AUTOPILOT,
                                   {"Config": config.to_wire(), "CAS": cas}))


def test_fsm_set_and_cas() -> None:
    fsm = FSM()
    # CAS against a missing record fails, as Consul's does
    assert _apply(fsm, 3, AutopilotConfig(modify_index=0), cas=True) is False
    assert fsm.store.autopilot_get_config()[1] is None
    _apply(fsm, 4, AutopilotConfig(min_quorum=3))
    index, conf = fsm.store.autopilot_get_config()
    assert index == 4 and conf is not None
    assert (conf.min_quorum, conf.create_index, conf.modify_index) == (3, 4, 4)
    assert _apply(fsm, 5, AutopilotConfig(min_quorum=5, modify_index=3), cas=True) is False
    assert _apply(fsm, 6, AutopilotConfig(min_quorum=5, modify_index=4), cas=True) is True
    conf = fsm.store.autopilot_get_config()[1]
    assert conf is not None and (conf.min_quorum, conf.create_index, conf.modify_index) == (
        5, 4, 6)


def test_config_survives_snapshot_restore_and_wire() -> None:
    fsm = FSM()
    original = AutopilotConfig(cleanup_dead_servers=False, last_contact_threshold=0.3,
                               server_stabilization_time=2.5, min_quorum=3)
    _apply(fsm, 7, original)
    other = FSM()
    other.restore(fsm.snapshot())
    conf = other.store.autopilot_get_config()[1]
    assert conf is not None and conf.last_contact_threshold == pytest.approx(0.3)
    assert conf.to_api()["ServerStabilizationTime"] == "2.5s"
    assert AutopilotConfig.from_wire(conf.to_wire()) == conf


# -- the loop against a fake Raft ---------------------------------------------------------------

class FakeRaft:
    server_id = "a"

    def __init__(self) -> None:
        self.conf = Configuration.of([RaftServer("a", "127.0.0.1:1"),
                                      RaftServer("b", "127.0.0.1:2"),
                                      RaftServer("c", "127.0.0.1:3"),
                                      RaftServer("d", "127.0.0.1:4", Suffrage.NONVOTER)])
        self.calls: list[tuple[str, str]] = []

    def is_leader(self) -> bool:
        return True

    def leader_id(self) -> str:
        return "a"

    def stats(self) -> dict[str, str]:
        return {"last_contact": "0", "last_log_term": "2", "last_log_index": "40"}

    def get_configuration(self) -> tuple[Configuration, int]:
        return self.conf, 1

    async def add_voter(self, server_id: str, address: str, prev_index: int = 0) -> int:
        self.calls.append(("add_voter", server_id))
        return 1

    async def remove_server(self, server_id: str, prev_index: int = 0) -> int:
        self.calls.append(("remove", server_id))
        return 1


def test_loop_promotes_and_prunes() -> None:
    raft = FakeRaft()
    gossip = {"a": "alive", "b": "alive", "c": "failed", "d": "alive"}

    def known_now() -> dict[str, KnownServer]:
        return {i: KnownServer(i, i, "", st) for i, st in gossip.items()}

    async def fetch(address: str, timeout: float) -> dict[str, Any]:
        if address.endswith(":3"):
            raise OSError("connection refused")
        return {"LastContact": "5ms", "LastTerm": 2, "LastIndex": 40}

    async def scenario() -> None:
        ap = Autopilot(raft, lambda: AutopilotConfig(server_stabilization_time=0.0),
                       known_now, fetch)
        state = await ap.update()
        assert state.servers["c"].healthy is False
        assert state.servers["d"].healthy and not state.servers["d"].voter
        assert state.to_health()["Healthy"] is False
        await ap.reconcile()

    asyncio.run(scenario())
    assert raft.calls == [("add_voter", "d"), ("remove", "c")]
