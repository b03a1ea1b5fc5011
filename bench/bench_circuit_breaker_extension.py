#!/usr/bin/env python3
"""Circuit-breaker extension under load and under a hung DynamoDB, each against a baseline of the same run.

1. Lookup latency under concurrency: ``GET /circuits/payments`` answered from the extension's
   cache, p50 and p99, by 16 concurrent callers (a keep-alive connection and a thread each)
   versus one caller. The ratio says what contention in the extension's server and cache costs.
2. Time to answer while DynamoDB hangs: moto's port is taken over by a server that accepts
   connections and never answers. With a 100 ms cache TTL every lookup finds the entry stale;
   the time to answer then (from the cache, flagged stale) is compared with the same stale lookup
   against a healthy DynamoDB (one GetItem against moto on localhost), and with the function's
   client timeout (the bound the answer must stay well under). Also: the time to the 503
   ("UNKNOWN", the client's policy decides) for a circuit with nothing cached.

The callers speak raw HTTP on keep-alive sockets (what the function's client sends), so that a
client-side memo cannot hide the extension's own latency. The extension runs as a real process
(the layer's launcher) against a small Extensions API in this script; the callers are threads of
this process, so part of the 16-caller cost is this process's own GIL.

Run: ``.venv/bin/python bench/bench_circuit_breaker_extension.py [--lookups N] [--callers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "lambda_src" / "circuit_breaker_extension"
LAUNCHER = LAYER / "extensions" / "circuit-breaker"
sys.path.insert(0, str(LAYER / "python"))
sys.path.insert(0, str(ROOT / "constructs"))

for name, value in {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(name, value)

HOST = "127.0.0.1"


# The same held Extensions API and percentile as the start-up benchmark beside this one.
from bench_circuit_breaker import TimingExtensionsApi, percentile  # noqa: E402


class Caller:
    """One keep-alive connection to the extension, speaking the client's request."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.token = token

    def get(self, circuit_id: str) -> tuple[int, dict[str, Any]]:
        self.sock.sendall(
            f"GET /circuits/{circuit_id} HTTP/1.1\r\nHost: {HOST}\r\nX-Circuit-Breaker-Token: {self.token}\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )
        buffer = b""
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += self.sock.recv(65536)
        head, body = buffer[:end].decode("latin-1"), buffer[end + 4 :]
        length = next(
            int(line.split(":")[1]) for line in head.split("\r\n") if line.lower().startswith("content-length")
        )
        while len(body) < length:
            body += self.sock.recv(65536)
        return int(head.split(" ")[1]), json.loads(body)

    def timed_get(self, circuit_id: str) -> tuple[float, int, dict[str, Any]]:
        started = time.perf_counter()
        status, body = self.get(circuit_id)
        return (time.perf_counter() - started) * 1000, status, body

    def close(self) -> None:
        self.sock.close()


def concurrency(port: int, token: str, callers: int, lookups: int) -> tuple[list[float], list[float]]:
    """Latencies (ms) of cached lookups by one caller, then by ``callers`` callers at once."""
    single = Caller(port, token)
    for _ in range(200):
        single.get("payments")
    one = [single.timed_get("payments")[0] for _ in range(lookups)]
    single.close()

    connections = [Caller(port, token) for _ in range(callers)]
    barrier = threading.Barrier(callers)

    def run(caller: Caller) -> list[float]:
        for _ in range(50):
            caller.get("payments")
        barrier.wait()
        return [caller.timed_get("payments")[0] for _ in range(lookups // callers * 2)]

    with ThreadPoolExecutor(callers) as pool:
        many = [ms for samples in pool.map(run, connections) for ms in samples]
    for caller in connections:
        caller.close()
    return one, many


def stale_lookups(caller: Caller, ttl_ms: int, count: int) -> tuple[list[float], set[tuple[str, bool]]]:
    """Lookups each made once the entry is past its TTL; their latencies and (state, stale) seen."""
    samples, seen = [], set()
    for _ in range(count):
        time.sleep(ttl_ms / 1000 + 0.01)
        ms, status, body = caller.timed_get("payments")
        samples.append(ms)
        seen.add((body.get("state", str(status)), bool(body.get("stale"))))
    return samples, seen


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--lookups", type=int, default=4000, help="cached lookups per measurement (default 4000)")
    parser.add_argument("--callers", type=int, default=16, help="concurrent callers (default 16)")
    parser.add_argument("--stale", type=int, default=25, help="stale lookups per DynamoDB condition (default 25)")
    args = parser.parse_args()

    import logging

    import circuit_breaker_client
    from circuit_breaker_ext import store as store_module

    from cdk_serverless_patterns.local.server import BlackHoleServer, MotoServer, free_port
    from cdk_serverless_patterns.testing.moto import create_circuit_table

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = MotoServer().start()
    table = "circuit-breaker-bench-extension"
    dynamodb = moto.client("dynamodb")
    create_circuit_table(dynamodb, table)
    dynamodb.put_item(
        TableName=table, Item={"circuitId": {"S": "payments"}, "state": {"S": "CLOSED"}, "version": {"N": "1"}}
    )
    api = TimingExtensionsApi()
    token = secrets.token_urlsafe(24)
    ttl_ms = 100

    def start_extension(cache_ttl_ms: int) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_SESSION_TOKEN": token,
            "AWS_ENDPOINT_URL_DYNAMODB": moto.endpoint,
            "CIRCUIT_BREAKER_TABLE": table,
            "CIRCUIT_BREAKER_PORT": str(port),
            "CIRCUIT_BREAKER_CACHE_TTL_MS": str(cache_ttl_ms),
            "CIRCUIT_BREAKER_CIRCUITS": "payments",
        }
        api.reset()  # a new extension registers and waits for its next event
        process = subprocess.Popen([str(LAUNCHER)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not api.ready.wait(10):
            process.kill()
            raise RuntimeError("the extension did not start")
        return process, port

    processes: list[subprocess.Popen[bytes]] = []
    started = time.perf_counter()
    try:
        # 1. Concurrency, over a long TTL (every lookup a cache hit).
        process, port = start_extension(3_600_000)
        processes.append(process)
        one, many = concurrency(port, token, args.callers, args.lookups)

        # 2. A hung DynamoDB, over a short TTL (every lookup finds the entry stale).
        process, port = start_extension(ttl_ms)
        processes.append(process)
        caller = Caller(port, token)
        for _ in range(50):
            caller.get("payments")
        healthy, healthy_seen = stale_lookups(caller, ttl_ms, args.stale)
        moto.stop()
        with BlackHoleServer(moto.port) as hole:
            hung, hung_seen = stale_lookups(caller, ttl_ms, args.stale)
            unknown = []
            for index in range(5):
                ms, status, _ = caller.timed_get(f"never-seen-{index}")
                assert status == 503, status
                unknown.append(ms)
            connections = hole.connections
        caller.close()
    finally:
        api.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        moto.stop()
    elapsed = time.perf_counter() - started

    p50_1, p99_1 = percentile(one, 50), percentile(one, 99)
    p50_n, p99_n = percentile(many, 50), percentile(many, 99)
    print(f"cached lookups through the extension (raw keep-alive HTTP, {args.lookups} each)")
    print(f"  1 caller        p50 {p50_1:7.3f} ms   p99 {p99_1:7.3f} ms   (baseline)")
    print(f"  {args.callers:2d} callers      p50 {p50_n:7.3f} ms   p99 {p99_n:7.3f} ms")
    print(f"  ratio {args.callers} : 1      p50 {p50_n / p50_1:6.2f}x      p99 {p99_n / p99_1:6.2f}x")
    client_timeout_ms = circuit_breaker_client.DEFAULT_TIMEOUT_S * 1000
    h50, hmax = percentile(healthy, 50), max(healthy)
    g50, g99, gmax = percentile(hung, 50), percentile(hung, 99), max(hung)
    print(f"a lookup past the TTL ({ttl_ms} ms), {args.stale} each; the client waits {client_timeout_ms:.0f} ms")
    print(f"  healthy DynamoDB   p50 {h50:7.2f} ms   max {hmax:7.2f} ms   (baseline: one GetItem)   saw {healthy_seen}")
    print(f"  hung DynamoDB      p50 {g50:7.2f} ms   p99 {g99:7.2f} ms   max {gmax:7.2f} ms   saw {hung_seen}")
    print(
        f"  ratio hung : healthy   p50 {g50 / h50:6.2f}x   max {gmax / hmax:6.2f}x;   "
        f"worst hung answer = {gmax / client_timeout_ms:.1%} of the client's timeout "
        f"(bound: STALE_WAIT_MS = {store_module.STALE_WAIT_MS} ms)"
    )
    print(
        f"  nothing cached, hung DynamoDB: 503 in p50 {percentile(unknown, 50):7.1f} ms, max {max(unknown):7.1f} ms "
        f"(bound: FIRST_READ_WAIT_MS = {store_module.FIRST_READ_WAIT_MS} ms); "
        f"{connections} connections reached the hung DynamoDB (one read at a time per circuit)"
    )
    print(f"total {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
