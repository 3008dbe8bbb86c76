"""Health check runners, one per Consul check type, behind a single factory.

Local state calls `make_runner` and receives objects with `start()`/`stop()`; results arrive
through the `CheckStatusSink` it passed in, already filtered by the check's thresholds.
"""

from __future__ import annotations

from .base import DEFAULT_OUTPUT_MAX_SIZE, CheckDefinition, CheckRunner, CheckStatusSink
from .docker import DockerCheck, DockerClient
from .factory import CheckTypeError, UnsupportedCheckTypeError, make_runner
from .grpc import GRPCCheck, H2PingCheck
from .http import HTTPCheck
from .monitor import MIN_INTERVAL, IntervalCheck, go_duration, random_stagger
from .output import TailBuffer, truncate_ttl_output
from .script import SCRIPTS_DISABLED_MESSAGE, ScriptCheck, ScriptChecksDisabledError
from .tcp import TCPCheck
from .threshold import ThresholdSink
from .ttl import TTLCheck
from .udp import UDPCheck

__all__ = [
    "DEFAULT_OUTPUT_MAX_SIZE",
    "MIN_INTERVAL",
    "SCRIPTS_DISABLED_MESSAGE",
    "CheckDefinition",
    "CheckRunner",
    "CheckStatusSink",
    "CheckTypeError",
    "DockerCheck",
    "DockerClient",
    "GRPCCheck",
    "H2PingCheck",
    "HTTPCheck",
    "IntervalCheck",
    "ScriptCheck",
    "ScriptChecksDisabledError",
    "TCPCheck",
    "TTLCheck",
    "TailBuffer",
    "ThresholdSink",
    "UDPCheck",
    "UnsupportedCheckTypeError",
    "go_duration",
    "make_runner",
    "random_stagger",
    "truncate_ttl_output",
]
