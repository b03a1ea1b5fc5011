#!/usr/bin/env python3
"""Circuit breaker: state lookup through the extension vs DynamoDB GetItem, and extension start-up.

Two measurements, each against a baseline measured in the same run:

1. Lookup latency: ``CircuitBreakerClient.status("payments")`` answered from the extension's
   cache (keep-alive connection to 127.0.0.1, the client's memo off) vs ``get_item`` of the same
   item with boto3 from moto server on localhost. p50 and p99; the DESIGN target is >= 15x faster
   at p50. Beside it, the same lookup answered from the client's in-process memo.
2. Start-up: the layer's ``extensions/circuit-breaker`` launcher, from process start to its
   ``register`` call reaching the Extensions API, and to its first ``event/next`` (bound and
   serving), vs a bare ``python3 -c pass`` start (and ``python3 -c "import boto3"`` to show what
   registering after boto3 would cost). The DESIGN target: <= 50 ms added to a cold start.

The extension runs as a real process. Its Extensions API here is a small timing endpoint in
this script (register, then event/next held until the benchmark sends SHUTDOWN): it records
when each call arrives. The tests run the extension under the real Lambda Runtime Interface
Emulator instead (cdk_serverless_patterns.local.lambda_environment); the emulator's own start-up and
logging would blur a millisecond measurement of ours.

Run: ``.venv/bin/python bench/bench_circuit_breaker.py [--lookups N] [--starts N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "lambda_src" / "circuit_breaker_extension"
LAUNCHER = LAYER / "extensions" / "circuit-breaker"
sys.path.insert(0, str(LAYER / "python"))

os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class TimingExtensionsApi:
    """register -> 200 with an identifier; event/next -> held until shutdown(), then SHUTDOWN."""

    def __init__(self) -> None:
        self.registered_at: float | None = None
        self.ready_at: float | None = None
        self.registered = threading.Event()
        self.ready = threading.Event()
        self.release = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                now = time.perf_counter()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/extension/register"):
                    api.registered_at = now
                    api.registered.set()
                    self._answer({"functionName": "bench"}, {"Lambda-Extension-Identifier": secrets.token_hex(8)})
                else:  # init/error or exit/error
                    self._answer({"status": "OK"})

            def do_GET(self) -> None:
                if api.ready_at is None:
                    api.ready_at = time.perf_counter()
                    api.ready.set()
                api.release.wait()
                self._answer({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.registered_at = self.ready_at = None
        self.registered.clear()
        self.ready.clear()
        self.release.clear()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


def extension_env(api: TimingExtensionsApi, endpoint: str, table: str, port: int, token: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_SESSION_TOKEN": token,
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
            "CIRCUIT_BREAKER_TABLE": table,
            "CIRCUIT_BREAKER_PORT": str(port),
            "CIRCUIT_BREAKER_CACHE_TTL_MS": "3600000",
            "CIRCUIT_BREAKER_CIRCUITS": "payments",
        }
    )
    return env


def measure_starts(api: TimingExtensionsApi, env: dict[str, str], runs: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"bare": [], "boto3": [], "registered": [], "ready": []}
    python = str(Path(sys.executable).parent / "python3")
    for _ in range(runs):
        for name, code in (("bare", "pass"), ("boto3", "import boto3")):
            started = time.perf_counter()
            subprocess.run([python, "-c", code], check=True, env=env)
            results[name].append((time.perf_counter() - started) * 1000)
        api.reset()
        env = {**env, "CIRCUIT_BREAKER_PORT": str(free_port())}
        started = time.perf_counter()
        process = subprocess.Popen([str(LAUNCHER)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not api.ready.wait(10):
            process.kill()
            raise RuntimeError("the extension did not call event/next within 10 s")
        assert api.registered_at is not None and api.ready_at is not None
        results["registered"].append((api.registered_at - started) * 1000)
        results["ready"].append((api.ready_at - started) * 1000)
        api.release.set()
        process.wait(timeout=10)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lookups", type=int, default=3000, help="extension lookups to time (default 3000)")
    parser.add_argument("--get-items", type=int, default=400, help="moto GetItem calls to time (default 400)")
    parser.add_argument("--starts", type=int, default=15, help="start-ups of each kind to time (default 15)")
    args = parser.parse_args()

    import logging

    import boto3
    import circuit_breaker_client
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server's per-request lines

    moto_port = free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    api = TimingExtensionsApi()
    process: subprocess.Popen[bytes] | None = None
    try:
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        table = "circuit-breaker-bench"
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "circuitId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "circuitId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        item = {"circuitId": {"S": "payments"}, "state": {"S": "CLOSED"}, "version": {"N": "1"}}
        dynamodb.put_item(TableName=table, Item=item)

        # 1. Lookup latency.
        token = secrets.token_urlsafe(24)
        port = free_port()
        env = extension_env(api, endpoint, table, port, token)
        process = subprocess.Popen([str(LAUNCHER)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not api.ready.wait(10):
            raise RuntimeError("the extension did not start")
        # memo_ttl=0: every lookup is a round trip to the extension (the memo is measured apart below)
        client = circuit_breaker_client.CircuitBreakerClient(
            port=port, token=token, on_extension_error="fail_closed", memo_ttl=0
        )
        for _ in range(200):  # warm-up: boto3 imported, item cached, connection open
            status = client.status("payments")
        assert status.decided_by == "extension" and status.state == "CLOSED" and status.cached, status
        lookups = []
        for _ in range(args.lookups):
            started = time.perf_counter()
            client.status("payments")
            lookups.append((time.perf_counter() - started) * 1000)
        memo_client = circuit_breaker_client.CircuitBreakerClient(
            port=port, token=token, on_extension_error="fail_closed"
        )
        memo_client.status("payments")
        memoized = []  # the client's in-process memo (memo_ttl 0.25 s): no round trip at all
        for _ in range(args.lookups):
            started = time.perf_counter()
            memo_client.status("payments")
            memoized.append((time.perf_counter() - started) * 1000)
        memo_client.close()
        fresh = []  # the same lookup on a new TCP connection each time: what keep-alive saves
        for _ in range(max(args.lookups // 10, 50)):
            client.close()
            started = time.perf_counter()
            client.status("payments")
            fresh.append((time.perf_counter() - started) * 1000)
        for _ in range(20):
            dynamodb.get_item(TableName=table, Key={"circuitId": {"S": "payments"}})
        get_items = []
        for _ in range(args.get_items):
            started = time.perf_counter()
            dynamodb.get_item(TableName=table, Key={"circuitId": {"S": "payments"}})
            get_items.append((time.perf_counter() - started) * 1000)
        client.close()
        api.release.set()
        process.wait(timeout=10)
        process = None

        # 2. Start-up.
        starts = measure_starts(api, env, args.starts)
    finally:
        if process is not None:
            process.kill()
        api.close()
        moto.stop()

    ext50, ext99 = percentile(lookups, 50), percentile(lookups, 99)
    ddb50, ddb99 = percentile(get_items, 50), percentile(get_items, 99)
    print("circuit-state lookup (cache hit through the extension) vs DynamoDB GetItem (moto server, localhost)")
    print(f"  extension  p50 {ext50:7.3f} ms   p99 {ext99:7.3f} ms   ({args.lookups} lookups)")
    print(f"  extension, new connection each lookup: p50 {percentile(fresh, 50):7.3f} ms   (keep-alive saves the rest)")
    memo50 = percentile(memoized, 50)
    print(
        f"  client memo hit  p50 {memo50 * 1000:7.2f} us   p99 {percentile(memoized, 99) * 1000:7.2f} us   "
        f"({ext50 / memo50:.0f}x faster than a round trip to the extension)"
    )
    print(f"  GetItem    p50 {ddb50:7.3f} ms   p99 {ddb99:7.3f} ms   ({args.get_items} calls)")
    print(f"  ratio      p50 {ddb50 / ext50:6.1f}x faster   p99 {ddb99 / ext99:6.1f}x faster   (target: >= 15x at p50)")
    med = {name: statistics.median(values) for name, values in starts.items()}
    print(f"extension start-up (median of {args.starts} starts each)")
    print(f"  bare python3 -c pass          {med['bare']:6.1f} ms   (baseline)")
    print(f"  python3 -c 'import boto3'     {med['boto3']:6.1f} ms   (what registering after boto3 would cost)")
    print(
        f"  extension: start -> registered {med['registered']:6.1f} ms   ({med['registered'] / med['bare']:.2f}x bare)"
    )
    print(f"  extension: start -> event/next {med['ready']:6.1f} ms   ({med['ready'] / med['bare']:.2f}x bare)")
    added = med["ready"] - med["bare"]
    print(f"  added over a bare interpreter to event/next: {added:.1f} ms   (target: <= 50 ms added to a cold start)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
