"""Vivaldi network coordinates, as hashicorp/serf `coordinate/` (and the ack payload of
`serf/ping_delegate.go`).

Serf nodes put their coordinate in every direct probe ack; the prober feeds it, with the
measured RTT, to its `CoordinateClient`, and over time every node holds a position from which
the RTT to any other node can be estimated without probing it (Consul's `?near=` sorting and
`consul rtt` read these). The arithmetic follows the Go code step for step, including its
round trip through `time.Duration` (whole nanoseconds, truncated) wherever Go measures a
distance, so estimates agree with a Go peer's to the bit. The only randomness is Go's: the
direction to push a node that sits exactly on top of another (an injectable `random.Random`).

All values are seconds. On the wire a coordinate is a msgpack map `Adjustment, Error,
Height, Vec` of float64s, and the ack payload is `[0x01]` (the ping version) followed by it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from proconsul.errors import GossipFormatError, ProconsulError
from proconsul.gossip.serf.codec import pack, unpack

__all__ = [
    "MAX_RTT", "PING_VERSION", "Coordinate", "CoordinateClient", "CoordinateConfig",
    "CoordinateRejected", "decode_coordinate", "decode_ping_payload", "encode_coordinate",
    "encode_ping_payload",
]

#: First byte of a Serf ack payload; any other version is ignored by serf.
PING_VERSION = 1
#: RTT samples beyond this many seconds (or negative) are rejected.
MAX_RTT = 10.0

_SECOND_NS = 1_000_000_000
_MAX_RTT_NS = 10 * _SECOND_NS
#: Below this two positions coincide (and a zero RTT counts as this much).
_ZERO_THRESHOLD = 1.0e-6
_I64_MIN = -(1 << 63)
_I64_LIMIT = float(1 << 63)
#: Used when no generator is injected (Go uses its global math/rand source).
_RNG = random.Random()


class CoordinateRejected(ProconsulError, ValueError):
    """An RTT sample or coordinate the client refuses (serf counts these as
    `serf.coordinate.rejected` and carries on)."""


@dataclass(frozen=True, slots=True)
class CoordinateConfig:
    """Tuning of the Vivaldi client; defaults are serf's `DefaultConfig`.

    :param dimensionality: Euclidean dimensions (Serf's wire coordinates have 8).
    :param vivaldi_error_max: the error a fresh or reset coordinate starts with.
    :param vivaldi_ce: how fast the error estimate follows new samples.
    :param vivaldi_cc: how far one sample moves the coordinate.
    :param adjustment_window_size: samples in the mean of the adjustment term (0 disables it).
    :param height_min: the smallest height, seconds.
    :param latency_filter_size: RTT samples per peer in the moving median.
    :param gravity_rho: strength of the pull back towards the origin (larger is weaker).
    """

    dimensionality: int = 8
    vivaldi_error_max: float = 1.5
    vivaldi_ce: float = 0.25
    vivaldi_cc: float = 0.25
    adjustment_window_size: int = 20
    height_min: float = 10.0e-6
    latency_filter_size: int = 3
    gravity_rho: float = 150.0


# -- Go time.Duration arithmetic -------------------------------------------------------------

def _duration(seconds: float) -> int:
    """Go `time.Duration(seconds * 1e9)`: truncates toward zero; NaN and out-of-range values
    become the minimum int64, as on amd64."""
    ns = seconds * 1.0e9
    if math.isnan(ns) or not -_I64_LIMIT <= ns < _I64_LIMIT:
        return _I64_MIN
    return int(ns)


def _seconds(ns: int) -> float:
    """Go `Duration.Seconds()`: whole seconds plus the nanosecond remainder, both as floats."""
    whole, rest = divmod(abs(ns), _SECOND_NS)
    if ns < 0:
        whole, rest = -whole, -rest
    return float(whole) + float(rest) / 1.0e9


# -- vector helpers --------------------------------------------------------------------------

def _magnitude(vec: Sequence[float]) -> float:
    total = 0.0
    for value in vec:
        total += value * value
    return math.sqrt(total)


def _diff(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def _unit_vector_at(a: Sequence[float], b: Sequence[float],
                    rng: random.Random) -> tuple[list[float], float]:
    """A unit vector pointing at `a` from `b`, and their distance. Coincident points get a
    random direction (distance 0); if even that degenerates, the first axis."""
    ret = _diff(a, b)
    mag = _magnitude(ret)
    if mag > _ZERO_THRESHOLD:
        return [x * (1.0 / mag) for x in ret], mag
    ret = [rng.random() - 0.5 for _ in ret]
    mag = _magnitude(ret)
    if mag > _ZERO_THRESHOLD:
        return [x * (1.0 / mag) for x in ret], 0.0
    ret = [0.0] * len(ret)
    ret[0] = 1.0
    return ret, 0.0


def _valid(value: float) -> bool:
    return not (math.isinf(value) or math.isnan(value))


@dataclass(slots=True)
class Coordinate:
    """A Vivaldi position: Euclidean `vec`, confidence `error`, the `adjustment` offset learnt
    from recent samples, and a `height` for the access link. Seconds throughout."""

    vec: list[float] = field(default_factory=lambda: [0.0] * 8)
    error: float = 1.5
    adjustment: float = 0.0
    height: float = 10.0e-6

    @classmethod
    def new(cls, config: CoordinateConfig | None = None) -> Coordinate:
        """A coordinate at the origin with the config's initial error and minimum height."""
        config = config or CoordinateConfig()
        return cls([0.0] * config.dimensionality, config.vivaldi_error_max, 0.0,
                   config.height_min)

    def clone(self) -> Coordinate:
        return Coordinate(list(self.vec), self.error, self.adjustment, self.height)

    def is_valid(self) -> bool:
        """False if any component is NaN or infinite."""
        return (all(_valid(x) for x in self.vec) and _valid(self.error)
                and _valid(self.adjustment) and _valid(self.height))

    def is_compatible_with(self, other: Coordinate) -> bool:
        return len(self.vec) == len(other.vec)

    def _check(self, other: Coordinate) -> None:
        if not self.is_compatible_with(other):
            raise CoordinateRejected("coordinate dimensionality does not match")

    def apply_force(self, config: CoordinateConfig, force: float, other: Coordinate,
                    rng: random.Random | None = None) -> Coordinate:
        """A copy moved by `force` seconds along the line from `other` (away from it when
        positive); the height grows or shrinks in proportion, never below the minimum."""
        self._check(other)
        ret = self.clone()
        unit, mag = _unit_vector_at(self.vec, other.vec, rng or _RNG)
        ret.vec = [x + u * force for x, u in zip(ret.vec, unit, strict=True)]
        if mag > _ZERO_THRESHOLD:
            ret.height = (ret.height + other.height) * force / mag + ret.height
            ret.height = max(ret.height, config.height_min)
        return ret

    def raw_distance_to(self, other: Coordinate) -> float:
        """‖a − b‖ + both heights, seconds, without the adjustments."""
        return _magnitude(_diff(self.vec, other.vec)) + self.height + other.height

    def distance_to_ns(self, other: Coordinate) -> int:
        """The estimated RTT as a Go Duration (nanoseconds): the raw distance plus both
        adjustments when that stays positive."""
        self._check(other)
        dist = self.raw_distance_to(other)
        adjusted = dist + self.adjustment + other.adjustment
        if adjusted > 0.0:
            dist = adjusted
        return _duration(dist)

    def distance_to(self, other: Coordinate) -> float:
        """The estimated RTT to `other`, seconds (whole nanoseconds, as Go's Duration)."""
        return _seconds(self.distance_to_ns(other))


# -- wire ------------------------------------------------------------------------------------

def encode_coordinate(coord: Coordinate) -> bytes:
    """msgpack `{Adjustment, Error, Height, Vec}` as go-msgpack writes the Go struct."""
    return pack({
        b"Adjustment": float(coord.adjustment),
        b"Error": float(coord.error),
        b"Height": float(coord.height),
        b"Vec": [float(x) for x in coord.vec],
    })


def _float(value: Any, where: str) -> float:
    if value is None:
        return 0.0
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise GossipFormatError(f"Coordinate.{where}: unexpected {type(value).__name__}")


def _from_obj(obj: Any) -> Coordinate:
    if type(obj) is not dict:
        raise GossipFormatError("Coordinate: expected a msgpack map")
    vec_obj = obj.get(b"Vec")
    if vec_obj is None:
        vec: list[float] = []
    elif type(vec_obj) is list:
        vec = [_float(x, "Vec") for x in vec_obj]
    else:
        raise GossipFormatError("Coordinate.Vec: expected an array")
    return Coordinate(vec, _float(obj.get(b"Error"), "Error"),
                      _float(obj.get(b"Adjustment"), "Adjustment"),
                      _float(obj.get(b"Height"), "Height"))


def decode_coordinate(buf: bytes) -> Coordinate:
    """A coordinate from its msgpack map (missing fields are zero, as in Go)."""
    return _from_obj(unpack(buf)[0])


def encode_ping_payload(coord: Coordinate) -> bytes:
    """What a Serf node puts in its acks: `[PING_VERSION]` + the coordinate."""
    return bytes((PING_VERSION,)) + encode_coordinate(coord)


def decode_ping_payload(payload: bytes) -> Coordinate:
    """The coordinate in an ack payload. Serf ignores empty payloads and other versions;
    both are GossipFormatError here so the caller can do the same."""
    if not payload:
        raise GossipFormatError("empty ping payload")
    if payload[0] != PING_VERSION:
        raise GossipFormatError(f"unsupported ping version {payload[0]}")
    return _from_obj(unpack(payload, 1)[0])


# -- the client ------------------------------------------------------------------------------

class CoordinateClient:
    """This node's coordinate, updated from (peer coordinate, RTT) samples with serf's
    Vivaldi variant: a per-peer median latency filter, the Vivaldi spring step with adaptive
    error, an adjustment term averaged over a window of samples, and gravity towards the
    origin. A step that yields NaN or infinity resets the coordinate (counted in `resets`)."""

    __slots__ = ("_adjustment_index", "_adjustment_samples", "_coord", "_latency",
                 "_origin", "_rng", "config", "resets")

    def __init__(self, config: CoordinateConfig | None = None,
                 rng: random.Random | None = None) -> None:
        config = config or CoordinateConfig()
        if config.dimensionality <= 0:
            raise ValueError("dimensionality must be >0")
        self.config = config
        self._coord = Coordinate.new(config)
        self._origin = Coordinate.new(config)
        self._adjustment_index = 0
        self._adjustment_samples = [0.0] * config.adjustment_window_size
        self._latency: dict[str, list[float]] = {}
        self._rng = rng or _RNG
        #: How many times an update produced an invalid coordinate and we started over.
        self.resets = 0

    def get_coordinate(self) -> Coordinate:
        """A copy of the current coordinate."""
        return self._coord.clone()

    def set_coordinate(self, coord: Coordinate) -> None:
        """Force the coordinate to a known state (CoordinateRejected if unusable)."""
        self._check(coord)
        self._coord = coord.clone()

    def forget_node(self, node: str) -> None:
        """Drop a departed peer's latency samples."""
        self._latency.pop(node, None)

    def distance_to(self, other: Coordinate) -> float:
        """Estimated RTT from this node to `other`, seconds."""
        return self._coord.distance_to(other)

    def _check(self, coord: Coordinate) -> None:
        if not self._coord.is_compatible_with(coord):
            raise CoordinateRejected("dimensions aren't compatible")
        if not coord.is_valid():
            raise CoordinateRejected("coordinate is invalid")

    def latency_filter(self, node: str, rtt: float) -> float:
        """Add a sample for `node` and return the median of its last few."""
        samples = self._latency.setdefault(node, [])
        samples.append(rtt)
        if len(samples) > self.config.latency_filter_size:
            del samples[0]
        ordered = sorted(samples)
        return ordered[len(ordered) // 2]

    def _update_vivaldi(self, other: Coordinate, rtt: float) -> None:
        config = self.config
        dist = self._coord.distance_to(other)
        rtt = max(rtt, _ZERO_THRESHOLD)
        wrongness = abs(dist - rtt) / rtt
        total_error = self._coord.error + other.error
        if total_error < _ZERO_THRESHOLD:
            total_error = _ZERO_THRESHOLD
        weight = self._coord.error / total_error
        error = (config.vivaldi_ce * weight * wrongness
                 + self._coord.error * (1.0 - config.vivaldi_ce * weight))
        self._coord.error = min(error, config.vivaldi_error_max)
        force = config.vivaldi_cc * weight * (rtt - dist)
        self._coord = self._coord.apply_force(config, force, other, self._rng)

    def _update_adjustment(self, other: Coordinate, rtt: float) -> None:
        window = self.config.adjustment_window_size
        if window == 0:
            return
        self._adjustment_samples[self._adjustment_index] = (
            rtt - self._coord.raw_distance_to(other))
        self._adjustment_index = (self._adjustment_index + 1) % window
        total = 0.0
        for sample in self._adjustment_samples:
            total += sample
        self._coord.adjustment = total / (2.0 * window)

    def _update_gravity(self) -> None:
        dist = self._origin.distance_to(self._coord)
        force = -1.0 * math.pow(dist / self.config.gravity_rho, 2.0)
        self._coord = self._coord.apply_force(self.config, force, self._origin, self._rng)

    def update(self, node: str, other: Coordinate, rtt: float) -> Coordinate:
        """Take one sample: `other` is `node`'s coordinate from its ack, `rtt` the measured
        round trip in seconds. Returns the new coordinate; CoordinateRejected (nothing
        changes) for an incompatible or invalid coordinate or an RTT outside [0, 10 s]."""
        self._check(other)
        if math.isnan(rtt):
            raise CoordinateRejected("round trip time not in valid range")
        rtt_ns = round(rtt * 1.0e9) if math.isfinite(rtt) else (-1 if rtt < 0 else 1 << 63)
        if rtt_ns < 0 or rtt_ns > _MAX_RTT_NS:
            raise CoordinateRejected(
                f"round trip time not in valid range, duration {rtt}s is not a positive "
                f"value less than {MAX_RTT:g}s")
        sample = self.latency_filter(node, _seconds(rtt_ns))
        self._update_vivaldi(other, sample)
        self._update_adjustment(other, sample)
        self._update_gravity()
        if not self._coord.is_valid():
            self.resets += 1
            self._coord = Coordinate.new(self.config)
        return self._coord.clone()
