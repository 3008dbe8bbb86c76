"""Serve the -dev API application through one of two HTTP stacks, for bench/http_kv.py.

The HTTP stack of the agent was chosen by measurement: a maintained asyncio server library on
uvloop (aiohttp) against our protocol on httptools (`proconsul.http.protocol.HttpServer`, with the
per-request `wire` module compiled or pure). To compare only the stack, every variant serves the
same objects: a -dev `Agent` is started with its own HTTP listener disabled (`-http-port=-1`), and
the API application is built from its server exactly as `Agent.start` builds it (same `APIApp`
arguments, same `build_app(Backend(server, agent), app)`), except that `--pretty` chooses the JSON
indentation (the agent indents in -dev; the stack comparison uses compact JSON so that encoding
does not hide the difference between stacks).

Stacks:

- ``httptools``: `HttpServer(app, limits)` with the limits `Agent.start` uses. `--pure` sets
  PROCONSUL_NO_EXTENSIONS=1 before proconsul is imported, so the pure twin of `wire` is used.
- ``aiohttp``: an aiohttp web server with one catch-all route that turns aiohttp's request into a
  `proconsul.http.request.Request` (aiohttp's own path, query and header parsing), awaits
  `APIApp.handle()`, and turns the `Response` back into an aiohttp response. No access log.

Both run on uvloop. When listening, one line is printed to stdout:
``READY stack=<stack> wire=<c|py> pretty=<bool> port=<port>``; SIGTERM or SIGINT stops it.

    python bench/serve_stack.py --stack httptools --port 18600 [--pure] [--pretty]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ports import free_dual_port

if TYPE_CHECKING:
    from aiohttp import web

    from proconsul.agent.agent import Agent
    from proconsul.http.app import APIApp
    from proconsul.http.limits import HttpLimits
    from proconsul.http.request import Response

STACKS = ("httptools", "aiohttp")




def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=STACKS, required=True)
    parser.add_argument("--port", type=int, required=True, help="HTTP port on 127.0.0.1")
    parser.add_argument("--pure", action="store_true",
                        help="use the pure-Python twin of the wire module")
    parser.add_argument("--pretty", action="store_true",
                        help="indent JSON answers as the -dev agent does")
    return parser.parse_args(argv)


def api_for(agent: Agent, pretty: bool) -> tuple[APIApp, HttpLimits]:
    """The API application and HTTP limits, built from the agent's server as Agent.start does."""
    return agent.http_api(pretty)


def aiohttp_application(api: APIApp) -> web.Application:
    """An aiohttp application whose single catch-all route hands every request to `api`."""
    from aiohttp import web
    from multidict import CIMultiDict

    from proconsul.http.app import DEFAULT_BODY_LIMIT
    from proconsul.http.request import Request

    async def send(request: web.Request, resp: Response) -> web.StreamResponse:
        headers = CIMultiDict(resp.headers)
        if resp.stream is None:
            return web.Response(status=resp.status, body=resp.body, headers=headers)
        out = web.StreamResponse(status=resp.status, headers=headers)
        out.enable_chunked_encoding()
        await out.prepare(request)
        async for chunk in resp.stream:
            await out.write(chunk)
        await out.write_eof()
        return out

    async def handle(request: web.Request) -> web.StreamResponse:
        method = request.method
        path = request.path
        limit = api.body_limit(method, path)
        length = request.content_length
        if length is not None and length > limit:
            return await send(request, api.too_large(method, path, length, limit))
        body = await request.read() if request.body_exists else b""
        if len(body) > limit:
            return await send(request, api.too_large(method, path, len(body), limit))
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            previous = headers.get(key)
            headers[key] = value if previous is None else previous + ", " + value
        query: dict[str, list[str]] = {}
        for name, value in request.query.items():
            values = query.get(name)
            if values is None:
                query[name] = [value]
            else:
                values.append(value)
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        remote = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 \
            else None
        version = f"{request.version.major}.{request.version.minor}"
        req = Request(method, path, request.raw_path.partition("?")[0], query, headers, body,
                      remote, version)
        return await send(request, await api.handle(req))

    # Bodies are bounded per route above, so aiohttp's own 1 MiB cap must not cut in first.
    application = web.Application(client_max_size=DEFAULT_BODY_LIMIT)
    application.router.add_route("*", "/{tail:.*}", handle)
    return application


async def serve(args: argparse.Namespace) -> int:
    from proconsul.agent.agent import Agent
    from proconsul.config.builder import load
    from proconsul.http import wire

    cfg, _ = load(["-dev", "-http-port=-1", "-dns-port=-1", "-node=bench",
                   f"-server-port={free_dual_port()}", f"-serf-lan-port={free_dual_port()}",
                   f"-serf-wan-port={free_dual_port()}"])
    agent = Agent(cfg)
    await agent.start()
    api, limits = api_for(agent, args.pretty)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    closers: list[Any] = []
    if args.stack == "httptools":
        from proconsul.http.protocol import HttpServer

        server = HttpServer(api, limits)
        await server.listen("127.0.0.1", args.port)
        closers.append(server.shutdown)
    else:
        from aiohttp import web

        runner = web.AppRunner(aiohttp_application(api), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
        await site.start()
        closers.append(runner.cleanup)
    wire_impl = "-" if args.stack == "aiohttp" else wire.IMPLEMENTATION
    print(f"READY stack={args.stack} wire={wire_impl} pretty={args.pretty} port={args.port}",
          flush=True)
    try:
        await stop.wait()
    finally:
        for close in closers:
            await close()
        await agent.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The selector reads this when proconsul is first imported, which happens only below.
    if args.pure:
        os.environ["PROCONSUL_NO_EXTENSIONS"] = "1"
    else:
        os.environ.pop("PROCONSUL_NO_EXTENSIONS", None)
    import uvloop

    return int(uvloop.run(serve(args)))


if __name__ == "__main__":
    sys.exit(main())
