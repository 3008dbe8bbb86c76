"""Docker checks: run a plugin inside a container through the Docker Engine API.

Talking to the Engine API directly over its socket (`DOCKER_HOST`, default
`unix:///var/run/docker.sock`) avoids a Docker SDK dependency; it is the same three calls
Consul makes (create exec, start it attached, inspect its exit code). When no daemon is
reachable the check goes critical with Consul's `create exec failed for container ...` text,
so the cause is visible in the check's Output.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote, urlsplit

import orjson

from .base import CheckDefinition, CheckStatusSink
from .http import HTTPProbeError, Response, build_request, read_response
from .monitor import IntervalCheck
from .script import exit_status
from .tcp import close_writer, go_dial_error

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
#: the Engine replies are small JSON documents; the exec stream is capped by OutputMaxSize
_API_REPLY_MAX = 64 * 1024


class DockerError(Exception):
    """A failed Engine API call, worded as Consul words it."""


class DockerClient:
    """Just enough of the Engine API for exec-based health checks."""

    def __init__(self, host: str = "") -> None:
        self.host = host or os.environ.get("DOCKER_HOST", "") or DEFAULT_DOCKER_HOST
        proto, sep, addr = self.host.partition("://")
        if not sep:
            raise DockerError(f"unable to parse docker host `{self.host}`")
        self.proto = proto
        self.addr = addr if proto == "unix" else (urlsplit("tcp://" + addr).netloc)

    async def call(self, method: str, uri: str, payload: object | None,
                   max_body: int = _API_REPLY_MAX) -> Response:
        go_method = method[:1] + method[1:].lower()
        where = f'{go_method} "http://docker{uri}"' if self.proto == "unix" else \
            f'{go_method} "http://{self.addr}{uri}"'
        try:
            if self.proto == "unix":
                reader, writer = await asyncio.open_unix_connection(self.addr)
            else:
                host, _, port = self.addr.rpartition(":")
                reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            raise DockerError(f"{where}: {go_dial_error(self.proto, self.addr, exc)}") from None
        body = orjson.dumps(payload) if payload is not None else b""
        headers = {"Content-Type": ["application/json"]} if payload is not None else {}
        try:
            writer.write(build_request(method, uri, "docker", headers, body))
            await writer.drain()
            return await read_response(reader, method, max_body)
        except (OSError, HTTPProbeError) as exc:
            raise DockerError(f"{where}: {exc}") from None
        finally:
            await close_writer(writer)

    async def create_exec(self, container: str, cmd: list[str]) -> str:
        uri = f"/containers/{quote(container, safe='')}/exec"
        payload = {"AttachStdin": False, "AttachStdout": True, "AttachStderr": True,
                   "Tty": False, "Cmd": cmd}
        try:
            resp = await self.call("POST", uri, payload)
        except DockerError as exc:
            raise DockerError(f"create exec failed for container {container}: {exc}") from None
        text = resp.body.text() if resp.body else ""
        if resp.status == 201:
            try:
                return str(orjson.loads(text)["Id"])
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise DockerError(f"create exec response for container {container} "
                                  f"cannot be parsed: {exc}") from None
        if resp.status == 404:
            raise DockerError(f"create exec failed for unknown container {container}")
        if resp.status == 409:
            raise DockerError(f"create exec failed since container {container} "
                              "is paused or stopped")
        raise DockerError(f"create exec failed for container {container} with status "
                          f"{resp.status}: {text}")

    async def start_exec(self, container: str, exec_id: str, max_output: int) -> Response:
        try:
            resp = await self.call("POST", f"/exec/{exec_id}/start",
                                   {"Detach": False, "Tty": True}, max_output)
        except DockerError as exc:
            raise DockerError(f"start exec failed for container {container}: {exc}") from None
        if resp.status == 200:
            return resp
        if resp.status == 404:
            raise DockerError(f"start exec failed for container {container}: "
                              f"invalid exec id {exec_id}")
        if resp.status == 409:
            raise DockerError(f"start exec failed since container {container} "
                              "is paused or stopped")
        text = resp.body.text() if resp.body else ""
        raise DockerError(f"start exec failed for container {container} with status "
                          f"{resp.status}: body: {text} err: <nil>")

    async def inspect_exec(self, container: str, exec_id: str) -> int:
        try:
            resp = await self.call("GET", f"/exec/{exec_id}/json", None)
        except DockerError as exc:
            raise DockerError(f"inspect exec failed for container {container}: {exc}") from None
        text = resp.body.text() if resp.body else ""
        if resp.status == 200:
            try:
                return int(orjson.loads(text)["ExitCode"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DockerError(f"inspect exec response for container {container} "
                                  f"cannot be parsed: {exc}") from None
        if resp.status == 404:
            raise DockerError(f"inspect exec failed for container {container}: "
                              f"invalid exec id {exec_id}")
        raise DockerError(f"inspect exec failed for container {container} with status "
                          f"{resp.status}: {text}")


class DockerCheck(IntervalCheck):
    """Exit codes map as for script checks; Consul sets no timeout of its own here, so only
    an explicit Timeout bounds a run (the schedule never overlaps runs either way)."""

    default_timeout = 0.0

    def __init__(self, defn: CheckDefinition, sink: CheckStatusSink,
                 loop: asyncio.AbstractEventLoop | None = None,
                 first_delay: float | None = None, docker_host: str = "") -> None:
        super().__init__(defn, sink, loop, first_delay)
        self.docker_host = docker_host
        self.cmd = list(defn.args)

    async def probe(self) -> tuple[str, str]:
        if self.timeout > 0:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exec()
            except TimeoutError:
                return "critical", "Timed out running check"
        return await self._exec()

    async def _exec(self) -> tuple[str, str]:
        container = self.defn.docker_container_id
        if not self.cmd:
            return "critical", f"docker check for container {container} has no Args to run"
        try:
            client = DockerClient(self.docker_host)
            exec_id = await client.create_exec(container, self.cmd)
            resp = await client.start_exec(container, exec_id, self.defn.output_max_size)
            code = await client.inspect_exec(container, exec_id)
        except DockerError as exc:
            return "critical", str(exc)
        out = resp.body.captured_text() if resp.body else ""
        return exit_status(code), out
