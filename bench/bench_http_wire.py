"""Compiled vs pure timing of the per-request HTTP path, plus a tiny server for load tests.

python bench/bench_http_wire.py [--rounds N]
    times both twins of proconsul.http.wire on a typical Consul request head and JSON
    answer, and prints per-operation microseconds with the pure/compiled ratio.

python bench/bench_http_wire.py --serve PORT
    serves a fixed KV-style JSON answer through HttpProtocol on uvloop, for wrk:
        taskset -c 0 python bench/bench_http_wire.py --serve 8081
        taskset -c 1 wrk -t1 -c64 -d5s --latency http://127.0.0.1:8081/v1/kv/x
    PROCONSUL_NO_EXTENSIONS=1 serves with the pure twin; --eager sets
    HttpLimits.eager_handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import time
from collections import deque
from collections.abc import Callable
from types import ModuleType

from proconsul.http.request import Request, Response

REQUEST = (
    b"GET /v1/kv/some/key?index=12&wait=5s HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8500\r\n"
    b"User-Agent: Go-http-client/1.1\r\n"
    b"X-Consul-Token: 9d1ac6c4-0d7a-4f0c-a1a3-8e0c4a5f1b2e\r\n"
    b"Accept-Encoding: gzip\r\n"
    b"Accept: application/json\r\n\r\n"
)
BODY = (
    b'[{"LockIndex":0,"Key":"some/key","Flags":0,"Value":"aGVsbG8gd29ybGQ=",'
    b'"CreateIndex":12,"ModifyIndex":12}]'
)
HEADERS = [
    ("Content-Type", "application/json"),
    ("Vary", "Accept-Encoding"),
    ("X-Consul-Default-Acl-Policy", "allow"),
    ("X-Consul-Effective-Consistency", "leader"),
    ("X-Consul-Index", "12"),
    ("X-Consul-Knownleader", "true"),
    ("X-Consul-Lastcontact", "0"),
]
TWINS = {"py": "proconsul.http.wire_py", "c": "proconsul._speedups.http_wire"}


def _no_limit(method: str, path: str) -> int:
    return 1 << 20


def parse_op(wire: ModuleType) -> Callable[[], object]:
    queue: deque[tuple[Request, bool]] = deque()
    reader = wire.RequestReader(queue, ("127.0.0.1", 50000), _no_limit, 1 << 20)

    def op() -> object:
        reader.feed(REQUEST)
        return queue.popleft()

    return op


def encode_op(wire: ModuleType) -> Callable[[], object]:
    encode = wire.encode_response
    return lambda: encode(200, HEADERS, BODY, True)


def split_op(wire: ModuleType) -> Callable[[], object]:
    split = wire.split_target
    return lambda: split(b"/v1/health/service/web?passing&index=1234&wait=30s&dc=dc1")


OPS = {
    "parse request head -> Request": parse_op,
    "encode JSON response": encode_op,
    "split target + query": split_op,
}


def per_op_us(op: Callable[[], object], rounds: int) -> float:
    """Best of five timed loops, in microseconds per call."""
    for _ in range(min(rounds, 2000)):
        op()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            op()
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e6


def bench(rounds: int) -> None:
    modules: dict[str, ModuleType] = {}
    for label, name in TWINS.items():
        try:
            modules[label] = importlib.import_module(name)
        except ImportError:
            print(f"({name} not available: build with setup.py build_ext --inplace)")
    print(f"{'operation':34} {'pure µs':>9} {'compiled µs':>12} {'pure/compiled':>14}")
    for title, make in OPS.items():
        py = per_op_us(make(modules["py"]), rounds)
        if "c" in modules:
            c = per_op_us(make(modules["c"]), rounds)
            print(f"{title:34} {py:9.3f} {c:12.3f} {py / c:13.2f}x")
        else:
            print(f"{title:34} {py:9.3f} {'-':>12} {'-':>14}")


class KVApp:
    """Answers every request with one fixed KV read, as a GET /v1/kv/<key> would."""

    def body_limit(self, method: str, path: str) -> int:
        return 512 * 1024

    def too_large(self, method: str, path: str, size: int, limit: int) -> Response:
        return Response(413, b"too large")

    async def handle(self, request: Request) -> Response:
        return Response(200, BODY, HEADERS)


async def serve_forever(port: int, eager: bool) -> None:
    from proconsul.http import wire
    from proconsul.http.limits import HttpLimits
    from proconsul.http.protocol import HttpServer

    server = HttpServer(KVApp(), HttpLimits(max_conns_per_client=0, eager_handlers=eager))
    await server.listen("127.0.0.1", port)
    mode = "eager" if eager else "task"
    print(f"serving on 127.0.0.1:{port}: {wire.IMPLEMENTATION} twin, {mode} handlers", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50000)
    parser.add_argument("--serve", type=int, metavar="PORT")
    parser.add_argument("--eager", action="store_true")
    args = parser.parse_args()
    if args.serve is None:
        bench(args.rounds)
        return
    import uvloop

    uvloop.run(serve_forever(args.serve, args.eager))


if __name__ == "__main__":
    main()
