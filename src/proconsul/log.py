"""Logging in Consul's (hclog's) format, so operators' log parsers keep working:

    2024-01-01T00:00:00.000Z [INFO]  agent: Started HTTP server: address=127.0.0.1:8500

`-log-json` switches to one JSON object per line with hclog's keys (@level, @message,
@module, @timestamp).
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

#: Consul's level names; Python's WARNING and CRITICAL map onto WARN and ERROR.
LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "err": logging.ERROR, "error": logging.ERROR}
_NAMES = {5: "TRACE", logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN",
          logging.ERROR: "ERROR", logging.CRITICAL: "ERROR"}

logging.addLevelName(5, "TRACE")


def module_name(logger: str) -> str:
    """`proconsul.http` -> `agent.http`: Consul names every subsystem under `agent`."""
    if logger.startswith("proconsul."):
        return "agent." + logger[len("proconsul."):]
    if logger == "proconsul":
        return "agent"
    return logger


def _timestamp(created: float) -> str:
    ms = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


class HCLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = _NAMES.get(record.levelno, record.levelname)
        text = f"{_timestamp(record.created)} [{level}] {' ' * (5 - len(level))}" \
               f"{module_name(record.name)}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps({
            "@level": _NAMES.get(record.levelno, record.levelname).lower(),
            "@message": record.getMessage(),
            "@module": module_name(record.name),
            "@timestamp": _timestamp(record.created),
        }).decode()


def parse_level(name: str) -> int:
    level = LEVELS.get(name.strip().lower())
    if level is None:
        raise ValueError(f"Invalid log level: {name}")
    return level


def setup(level: str = "info", json: bool = False, stream: object = None) -> logging.Handler:
    """Install one handler on the `proconsul` logger and return it (reload changes its level)."""
    handler = logging.StreamHandler(stream or sys.stdout)  # type: ignore[arg-type]
    handler.setFormatter(JSONFormatter() if json else HCLogFormatter())
    root = logging.getLogger("proconsul")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    root.propagate = False
    return handler


def set_level(level: str) -> None:
    logging.getLogger("proconsul").setLevel(parse_level(level))
