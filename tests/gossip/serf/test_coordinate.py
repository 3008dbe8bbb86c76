"""Vivaldi coordinates: the wire form equals serf's ack payloads, the arithmetic matches
serf's coordinate tests, bad samples are rejected, and simulated clusters converge (the
scenarios of serf's performance_test.go)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from proconsul.errors import GossipFormatError
from proconsul.gossip.serf import coordinate as coordinate_module
from proconsul.gossip.serf.coordinate import (
    Coordinate,
    CoordinateClient,
    CoordinateConfig,
    CoordinateRejected,
    decode_coordinate,
    decode_ping_payload,
    encode_coordinate,
    encode_ping_payload,
)
from tests.gossip.serf.vectors import files

Truth = list[list[float]]


def _captured_acks() -> list[tuple[bytes, dict[str, object]]]:
    out = []
    for entry in files("udp"):
        for msg in entry["messages"]:
            if msg.get("type") == "ack" and msg["body"]["Payload"]:
                payload = bytes.fromhex(msg["body"]["Payload"].removeprefix("hex:"))
                out.append((payload, msg["annotations"]["Payload"]["coordinate"]))
    return out


ACKS = _captured_acks()


def test_captured_ack_payloads_decode_and_reencode() -> None:
    assert len(ACKS) >= 10
    for payload, expected in ACKS:
        assert len(payload) == 130
        coord = decode_ping_payload(payload)
        assert {"Adjustment": coord.adjustment, "Error": coord.error, "Height": coord.height,
                "Vec": coord.vec} == expected
        assert encode_ping_payload(coord) == payload
        assert encode_coordinate(coord) == payload[1:]
        assert decode_coordinate(payload[1:]) == coord


def test_fresh_coordinate_is_the_first_ack_serf_sends() -> None:
    fresh = encode_ping_payload(Coordinate.new())
    assert any(payload == fresh for payload, _ in ACKS)
    assert fresh.hex().startswith("0184aa41646a7573746d656e74cb0000000000000000")
    assert "a6486569676874cb3ee4f8b588e368f1" in fresh.hex()
    client = CoordinateClient()
    assert encode_ping_payload(client.get_coordinate()) == fresh


def test_bad_ping_payloads() -> None:
    good = encode_ping_payload(Coordinate.new())
    for bad in (b"", b"\x02" + good[1:], b"\x01", b"\x01\x90", b"\x01\x81\xa3Vec\x01",
                b"\x01\x81\xa5Error\xa1x", b"\x01\x81\xa3Vec\x91\xa1x"):
        with pytest.raises(GossipFormatError):
            decode_ping_payload(bad)


def test_new_client() -> None:
    with pytest.raises(ValueError, match="dimensionality"):
        CoordinateClient(CoordinateConfig(dimensionality=0))
    config = CoordinateConfig(dimensionality=7)
    assert CoordinateClient(config).get_coordinate() == Coordinate.new(config)
    defaults = CoordinateConfig()
    assert (defaults.dimensionality, defaults.vivaldi_error_max, defaults.vivaldi_ce,
            defaults.vivaldi_cc, defaults.adjustment_window_size, defaults.height_min,
            defaults.latency_filter_size, defaults.gravity_rho) == (
        8, 1.5, 0.25, 0.25, 20, 10.0e-6, 3, 150.0)


def test_update_moves_away_and_set_coordinate() -> None:
    config = CoordinateConfig(dimensionality=3)
    client = CoordinateClient(config)
    assert client.get_coordinate().vec == [0.0, 0.0, 0.0]
    other = Coordinate.new(config)
    other.vec[2] = 0.001
    coord = client.update("node", other, 2.0 * other.vec[2])
    assert coord.vec[2] < 0.0
    coord.vec[2] = 99.0
    client.set_coordinate(coord)
    assert client.get_coordinate().vec[2] == 99.0


@pytest.mark.parametrize("rtt", [float(1 << 63), -35.0, 11.0, 10.000000001, math.inf,
                                 -math.inf, math.nan])
def test_out_of_range_rtts_are_rejected(rtt: float) -> None:
    config = CoordinateConfig(dimensionality=3)
    client = CoordinateClient(config)
    other = Coordinate.new(config)
    other.vec[2] = 0.001
    before = client.distance_to(other)
    with pytest.raises(CoordinateRejected, match="round trip time not in valid range"):
        client.update("node", other, rtt)
    assert client.distance_to(other) == before


def test_boundary_rtts_are_accepted() -> None:
    client = CoordinateClient(CoordinateConfig(dimensionality=3))
    other = Coordinate.new(CoordinateConfig(dimensionality=3))
    client.update("a", other, 0.0)
    client.update("a", other, 10.0)
    assert client.get_coordinate().is_valid()


def test_distance_to_is_a_go_duration() -> None:
    config = CoordinateConfig(dimensionality=3, height_min=0.0)
    client = CoordinateClient(config)
    other = Coordinate.new(config)
    other.vec[2] = 12.345
    assert client.get_coordinate().distance_to_ns(other) == int(12.345 * 1e9)
    assert client.distance_to(other) == 12.345
    # whole nanoseconds, truncated
    other.vec[2] = 1.9e-9
    assert client.get_coordinate().distance_to_ns(other) == 1
    assert client.distance_to(other) == 1e-9


def test_latency_filter_is_a_moving_median() -> None:
    client = CoordinateClient()
    steps = [("alice", 0.201, 0.201), ("alice", 0.200, 0.201), ("alice", 0.207, 0.201),
             ("alice", 1.9, 0.207), ("alice", 0.203, 0.207), ("alice", 0.199, 0.203),
             ("alice", 0.211, 0.203), ("bob", 0.310, 0.310)]
    for node, sample, median in steps:
        assert client.latency_filter(node, sample) == median
    client.forget_node("alice")
    assert client.latency_filter("alice", 0.888) == 0.888


def test_nan_defense_and_reset() -> None:
    config = CoordinateConfig(dimensionality=3)
    client = CoordinateClient(config)
    other = Coordinate.new(config)
    other.vec[0] = math.nan
    assert not other.is_valid()
    with pytest.raises(CoordinateRejected, match="coordinate is invalid"):
        client.update("node", other, 0.25)
    with pytest.raises(CoordinateRejected, match="coordinate is invalid"):
        client.set_coordinate(other)
    assert client.get_coordinate().is_valid()
    other.vec = [0.0] * 6
    with pytest.raises(CoordinateRejected, match="dimensions aren't compatible"):
        client.update("node", other, 0.25)
    with pytest.raises(CoordinateRejected, match="dimensions aren't compatible"):
        client.set_coordinate(other)
    # poison our own state: the next update must start over
    client._coord.vec[0] = math.nan
    coord = client.update("node", Coordinate.new(config), 0.25)
    assert coord.is_valid()
    assert coord == Coordinate.new(config)
    assert client.resets == 1


def test_wire_dimensionality_mismatch_is_rejected() -> None:
    client = CoordinateClient()
    short = decode_ping_payload(encode_ping_payload(Coordinate.new(
        CoordinateConfig(dimensionality=4))))
    with pytest.raises(CoordinateRejected):
        client.update("peer", short, 0.001)


def test_is_valid_checks_every_component() -> None:
    coord = Coordinate.new()
    for name in ("error", "adjustment", "height"):
        for bad in (math.nan, math.inf, -math.inf):
            probe = coord.clone()
            setattr(probe, name, bad)
            assert not probe.is_valid()
    for i in range(8):
        probe = coord.clone()
        probe.vec[i] = math.inf
        assert not probe.is_valid()
    clone = coord.clone()
    clone.vec[0] = 1.0
    assert coord.vec[0] == 0.0


def test_apply_force() -> None:
    config = CoordinateConfig(dimensionality=3, height_min=0.0)
    origin = Coordinate.new(config)
    above = Coordinate.new(config)
    above.vec = [0.0, 0.0, 2.9]
    c = origin.apply_force(config, 5.3, above)
    assert c.vec == pytest.approx([0.0, 0.0, -5.3])
    right = Coordinate.new(config)
    right.vec = [3.4, 0.0, -5.3]
    c = c.apply_force(config, 2.0, right)
    assert c.vec == pytest.approx([-2.0, 0.0, -5.3])
    c = origin.apply_force(config, 1.0, origin, random.Random(3))
    assert origin.distance_to(c) == pytest.approx(1.0, abs=1e-6)

    config = CoordinateConfig(dimensionality=3, height_min=10.0e-6)
    origin = Coordinate.new(config)
    c = origin.apply_force(config, 5.3, above)
    assert c.vec == pytest.approx([0.0, 0.0, -5.3])
    assert c.height == pytest.approx(config.height_min + 5.3 * config.height_min / 2.9)
    c = origin.apply_force(config, -5.3, above)
    assert c.vec == pytest.approx([0.0, 0.0, 5.3])
    assert c.height == config.height_min
    bad = c.clone()
    bad.vec = [0.0] * 4
    with pytest.raises(CoordinateRejected):
        c.apply_force(config, 1.0, bad)


def test_distances() -> None:
    config = CoordinateConfig(dimensionality=3, height_min=0.0)
    c1, c2 = Coordinate.new(config), Coordinate.new(config)
    c1.vec = [-0.5, 1.3, 2.4]
    c2.vec = [1.2, -2.3, 3.4]
    assert c1.distance_to(c1) == 0.0
    assert c1.distance_to(c2) == c2.distance_to(c1)
    assert c1.distance_to(c2) == pytest.approx(4.104875150354758, abs=1e-9)
    assert c1.raw_distance_to(c2) == 4.104875150354758
    c1.adjustment = -1.0e6
    assert c1.distance_to(c2) == pytest.approx(4.104875150354758, abs=1e-9)
    c1.adjustment, c2.adjustment = 0.1, 0.2
    assert c1.distance_to(c2) == pytest.approx(4.104875150354758 + 0.3, abs=1e-9)
    c1.height, c2.height = 0.7, 0.1
    assert c1.distance_to(c2) == pytest.approx(4.104875150354758 + 0.3 + 0.8, abs=1e-9)
    assert c1.raw_distance_to(c2) == pytest.approx(4.104875150354758 + 0.8)
    bad = c1.clone()
    bad.vec = [0.0] * 4
    with pytest.raises(CoordinateRejected):
        c1.distance_to(bad)


def test_unit_vector() -> None:
    unit, mag = coordinate_module._unit_vector_at([1.0, 2.0, 3.0], [0.5, 0.6, 0.7],
                                                  random.Random(1))
    assert unit == pytest.approx([0.18257418583505536, 0.511207720338155, 0.8398412548412546])
    assert mag == pytest.approx(coordinate_module._magnitude([0.5, 1.4, 2.3]))
    unit, mag = coordinate_module._unit_vector_at([1.0, 2.0, 3.0], [1.0, 2.0, 3.0],
                                                  random.Random(1))
    assert coordinate_module._magnitude(unit) == pytest.approx(1.0)
    assert mag == 0.0

    class Stuck(random.Random):
        def random(self) -> float:
            return 0.5

    unit, mag = coordinate_module._unit_vector_at([0.0, 0.0], [0.0, 0.0], Stuck())
    assert (unit, mag) == ([1.0, 0.0], 0.0)
    assert coordinate_module._magnitude([1.0, -2.0, 3.0]) == 3.7416573867739413


def test_go_duration_conversions() -> None:
    duration, seconds = coordinate_module._duration, coordinate_module._seconds
    assert duration(1.9999999999) == 1999999999
    assert duration(-1.5) == -1500000000
    assert duration(math.nan) == duration(1e300) == -(1 << 63)
    assert seconds(-1500000000) == -1.5
    assert seconds(12344999999) == 12.344999999


# -- convergence (serf coordinate/performance_test.go scenarios) ----------------------------

def _simulate(clients: list[CoordinateClient], truth: Truth, cycles: int,
              rng: random.Random) -> None:
    nodes = len(clients)
    for _ in range(cycles):
        for i, client in enumerate(clients):
            j = rng.randrange(nodes)
            if j != i:
                client.update(f"node_{j}", clients[j].get_coordinate(), truth[i][j])


def _evaluate(clients: list[CoordinateClient], truth: Truth) -> tuple[float, float]:
    errors = []
    for i, client in enumerate(clients):
        for j in range(i + 1, len(clients)):
            estimate = client.distance_to(clients[j].get_coordinate())
            errors.append(abs(estimate - truth[i][j]) / truth[i][j])
    return sum(errors) / len(errors), max(errors)


def _matrix(nodes: int, rtt: Callable[[int, int], float]) -> Truth:
    truth = [[0.0] * nodes for _ in range(nodes)]
    for i in range(nodes):
        for j in range(i + 1, nodes):
            truth[i][j] = truth[j][i] = rtt(i, j)
    return truth


def _line(nodes: int, spacing: float) -> Truth:
    return _matrix(nodes, lambda i, j: (j - i) * spacing)


def _grid(nodes: int, spacing: float) -> Truth:
    n = int(math.sqrt(nodes))
    return _matrix(nodes, lambda i, j: math.hypot(j % n - i % n, j // n - i // n) * spacing)


def _split(nodes: int, lan: float, wan: float) -> Truth:
    half = nodes // 2
    return _matrix(nodes, lambda i, j: lan + (wan if (i <= half) != (j <= half) else 0.0))


def _circle(nodes: int, radius: float) -> Truth:
    def rtt(i: int, j: int) -> float:
        if i == 0:
            return 2 * radius
        a, b = 2 * math.pi * i / nodes, 2 * math.pi * j / nodes
        return math.hypot(math.cos(b) - math.cos(a), math.sin(b) - math.sin(a)) * radius
    return _matrix(nodes, rtt)


def _random(nodes: int, mean: float, deviation: float) -> Truth:
    rng = random.Random(1)
    return _matrix(nodes, lambda i, j: rng.gauss(0.0, 1.0) * deviation + mean)


def _run(truth: Truth, config: CoordinateConfig, cycles: int = 1000,
         seed: int = 1) -> list[CoordinateClient]:
    rng = random.Random(seed)
    clients = [CoordinateClient(config, rng) for _ in truth]
    _simulate(clients, truth, cycles, rng)
    return clients


# serf's bounds were tuned to Go's random stream (serf master loosened some when it moved to
# a seeded per-config source); ours is Python's, so each bound carries a factor of two. With
# seed 1 the results sit near serf's own bounds: line and split inside, grid and random
# within 20 % over.
@pytest.mark.parametrize(("truth", "avg_bound", "max_bound"), [
    (_line(10, 0.010), 0.0018, 0.0092),
    (_grid(25, 0.010), 0.0015, 0.022),
    (_split(25, 0.001, 0.010), 0.000060, 0.00048),
    (_random(25, 0.100, 0.010), 0.075, 0.33),
], ids=["line", "grid", "split", "random"])
def test_convergence(truth: Truth, avg_bound: float, max_bound: float) -> None:
    avg, worst = _evaluate(_run(truth, CoordinateConfig()), truth)
    assert avg < 2 * avg_bound
    assert worst < 2 * max_bound


def test_convergence_height() -> None:
    radius = 0.100
    truth = _circle(25, radius)
    clients = _run(truth, CoordinateConfig(dimensionality=2))
    for i, client in enumerate(clients):
        height = client.get_coordinate().height
        if i == 0:
            assert height >= 0.97 * radius
        else:
            assert height <= 0.03 * radius
    avg, worst = _evaluate(clients, truth)
    assert avg < 2 * 0.0025
    assert worst < 2 * 0.064


def test_gravity_counters_drift() -> None:
    dist = 0.5
    config = CoordinateConfig(dimensionality=2)
    rng = random.Random(1)
    clients = [CoordinateClient(config, rng) for _ in range(4)]
    for client, vec in zip(clients, ([0.0, 0.0], [0.0, dist], [dist, dist], [dist, dist]),
                           strict=True):
        coord = client.get_coordinate()
        coord.vec = list(vec)
        client.set_coordinate(coord)
    truth = _matrix(4, lambda i, j: dist * (math.sqrt(2) if i % 2 == 0 and j % 2 == 0
                                            else 1.0))

    def center_error() -> float:
        coords = [c.get_coordinate().vec for c in clients]
        mid = [min(v[k] for v in coords) + (max(v[k] for v in coords)
                                           - min(v[k] for v in coords)) / 2
               for k in range(2)]
        return coordinate_module._magnitude(mid)

    _simulate(clients, truth, 1000, rng)
    baseline = center_error()
    _simulate(clients, truth, 10000, rng)
    assert center_error() <= 0.8 * baseline
