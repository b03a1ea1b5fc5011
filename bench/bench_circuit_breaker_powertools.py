#!/usr/bin/env python3
"""Circuit breaker: our client + extension side by side with Powertools' ``circuit_breaker``.

Both run over the same moto DynamoDB (``local.server.MotoServer`` on localhost) and protect the same
downstream: a keep-alive HTTP server on localhost whose answers the benchmark switches between 200
and 503 (a 503 raises ``DownstreamError`` in the protected function). Ours is the real extension
process (the layer's ``extensions/circuit-breaker`` launcher, with a small Extensions API from
``bench_circuit_breaker.py``) and ``circuit_breaker_client``; Powertools is
``aws_lambda_powertools.utilities.circuit_breaker`` with ``CircuitBreakerDynamoDBPersistence``.

Measured, each against a baseline from the same run:

1. Hot path: time per protected call of a healthy downstream (ours: memo hit; ours with
   ``memo_ttl=0``: one round trip to the extension per call; Powertools: its 5 s local cache) as a
   ratio to the same call unprotected, and the time each adds per call.
2. Calls that reach a failing downstream before the circuit opens, in a tight loop and paced
   (one call every 2 ms). Ours trips from reported outcomes (minimum 5 calls, 50% failures, so 5
   failures like Powertools' default ``failure_threshold=5``); the trip is asynchronous.
3. Time until calls flow again after the downstream recovers: to the first call that reaches it,
   and until 20 consecutive calls do. Powertools probes with live calls after ``recovery_timeout``
   (1 s here); ours waits for the health checker (cool-down 1 s, run every 0.25 s here instead of
   Scheduler's 1 minute minimum) and then the extension's cache TTL (2 s, the default).
4. (issue 14) Calls that reach a failing downstream before the circuit opens with outcome reports
   versus with health checks alone (3 failed probes), paced; the health-check case is measured with
   the checker run every 0.25 s and extrapolated to the default 1-minute schedule.

Powertools is a dev dependency, used only here. Run: ``.venv/bin/python bench/bench_circuit_breaker_powertools.py``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "lambda_src" / "circuit_breaker_health_checker"))

from bench_circuit_breaker import LAUNCHER, TimingExtensionsApi, extension_env, free_port  # noqa: E402

PACE_S = 0.002
CHECK_EVERY_S = 0.25
COOL_DOWN_S = 1
EXTENSION_CACHE_TTL_MS = 2000
HOT_CALLS = 3000
NO_OP_CALLS = 50_000


class DownstreamError(Exception):
    """The downstream answered 5xx."""


DOWNSTREAM_SERVER = """
import json, socket
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
status, hits = {}, Counter()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_hits":
            return self._answer(200, json.dumps(hits).encode())
        hits[self.path] += 1
        self._answer(status.get(self.path, 200), b"{}")

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status.update(json.loads(body))
        self._answer(200, b"{}")

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Downstream:
    """A keep-alive HTTP server on localhost in a process of its own (so that it does not share the
    caller's interpreter lock, as a real downstream would not): ``set_status`` says what a path
    answers, ``hits`` counts the requests that reached each path."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DOWNSTREAM_SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn  # type: ignore[no-any-return]

    def call(self, path: str) -> int:
        conn = self._connection()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status >= 500:
            raise DownstreamError(f"{path} answered {response.status}")
        return response.status

    def set_status(self, paths: dict[str, int]) -> None:
        conn = self._connection()
        conn.request("PUT", "/_status", body=json.dumps(paths))
        conn.getresponse().read()

    def hits(self) -> dict[str, int]:
        conn = self._connection()
        conn.request("GET", "/_hits")
        return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def progress(stage: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {stage}...", file=sys.stderr, flush=True)


def per_call_us(variants: dict[str, Callable[[], object]], n: int, rounds: int = 15) -> dict[str, float]:
    """Median time per call of each variant, measured in interleaved rounds (the machine's load drifts)."""
    for call in variants.values():
        for _ in range(200):
            call()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, call in variants.items():
            started = time.perf_counter()
            for _ in range(n // rounds):
                call()
            samples[name].append((time.perf_counter() - started) / (n // rounds) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def until_open(call: Callable[[], str], pace: float, limit: int = 3000) -> int:
    """Calls until the first short-circuit ("fallback"); returns how many calls were made before."""
    for made in range(limit):
        try:
            if call() == "fallback":
                return made
        except DownstreamError:
            pass
        if pace:
            time.sleep(pace)
    return limit


def until_flowing(call: Callable[[], str], flowing: int = 20, limit_s: float = 20.0) -> tuple[float, float]:
    """Seconds to the first call that reached the downstream, and until ``flowing`` did in a row."""
    started = time.monotonic()
    first = -1.0
    streak = 0
    while time.monotonic() - started < limit_s:
        try:
            reached = call() != "fallback"
        except DownstreamError:
            reached = True
        if reached and first < 0:
            first = time.monotonic() - started
        streak = streak + 1 if reached else 0
        if streak >= flowing:
            return first, time.monotonic() - started
        time.sleep(PACE_S)
    return first, float("inf")


class CheckerLoop:
    """Runs the real health checker for some circuits every ``CHECK_EVERY_S`` (Scheduler, compressed)."""

    def __init__(self, checker: Any, configs: list[Any]) -> None:
        self.checker, self.configs = checker, configs
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(CHECK_EVERY_S):
            for config in self.configs:
                try:
                    self.checker.check(config)
                except Exception as error:
                    print(f"  (health check of {config.circuit_id} failed: {type(error).__name__}: {error})")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def main() -> int:
    os.environ.setdefault("AWS_REGION", "us-east-1")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("circuit_breaker_client").setLevel(logging.ERROR)
    logging.getLogger("aws_lambda_powertools").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")

    import circuit_breaker_client as cb
    import health_checker as hc
    from aws_lambda_powertools.utilities.circuit_breaker import CircuitBreakerConfig, circuit_breaker
    from aws_lambda_powertools.utilities.circuit_breaker.persistence import CircuitBreakerDynamoDBPersistence

    from cdk_serverless_patterns.local.server import MotoServer

    moto = MotoServer().start()
    api = TimingExtensionsApi()
    downstream = Downstream()
    process: subprocess.Popen[bytes] | None = None
    loops: list[CheckerLoop] = []
    try:
        dynamodb = moto.client("dynamodb")
        table, pt_table = "circuit-breaker-bench", "powertools-circuit-breaker-bench"
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "circuitId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "circuitId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.create_table(
            TableName=pt_table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ours = ["hot", "tight", "paced", "checks-only", "window-only"]
        for circuit_id in ours:
            item = {"circuitId": {"S": circuit_id}, "state": {"S": "CLOSED"}, "version": {"N": "1"}}
            dynamodb.put_item(TableName=table, Item=item)

        token = secrets.token_urlsafe(24)
        port = free_port()
        env = extension_env(api, moto.endpoint, table, port, token)
        env.update(
            {
                "CIRCUIT_BREAKER_CACHE_TTL_MS": str(EXTENSION_CACHE_TTL_MS),
                "CIRCUIT_BREAKER_CIRCUITS": ",".join(ours),
                "CIRCUIT_BREAKER_MIN_CALLS": "5",
                "CIRCUIT_BREAKER_FAILURE_RATE": "50",
            }
        )
        process = subprocess.Popen([str(LAUNCHER)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not api.ready.wait(10):
            raise RuntimeError("the extension did not start")
        client = cb.CircuitBreakerClient(port=port, token=token, on_extension_error="fail_closed")
        no_memo = cb.CircuitBreakerClient(port=port, token=token, on_extension_error="fail_closed", memo_ttl=0)
        deadline = time.monotonic() + 10
        while client.status("hot").decided_by != "extension" and time.monotonic() < deadline:
            time.sleep(0.05)  # the extension imports boto3 and prefetches in the background

        persistence = CircuitBreakerDynamoDBPersistence(table_name=pt_table, boto3_client=dynamodb)
        pt_config = CircuitBreakerConfig(failure_threshold=5, recovery_timeout=COOL_DOWN_S, success_threshold=3)

        def fallback(*args: Any, **kwargs: Any) -> str:
            return "fallback"

        def ours_call(circuit_id: str, breaker: Any = client) -> Callable[[], str]:
            @breaker.protected(circuit_id, fallback=fallback, failure_exceptions=DownstreamError)
            def call() -> str:
                downstream.call(f"/ours/{circuit_id}")
                return "called"

            return call  # type: ignore[no-any-return]

        def powertools_call(name: str) -> Callable[[], str]:
            @circuit_breaker(name=name, persistence_store=persistence, on_circuit_open=fallback, config=pt_config)
            def call() -> str:
                downstream.call(f"/pt/{name}")
                return "called"

            return call

        progress("1. Hot pat")
        # 1. Hot path.
        hot = per_call_us(
            {
                "bare": lambda: downstream.call("/bare"),
                "ours": ours_call("hot"),
                "ours_round_trip": ours_call("hot", no_memo),
                "powertools": powertools_call("pt-hot"),
            },
            HOT_CALLS,
        )
        bare, ours_hot, ours_round_trip, pt_hot = (hot[k] for k in ("bare", "ours", "ours_round_trip", "powertools"))
        client.status("hot")
        assert client.status("hot").memoized, "the hot path must be answered from the memo"
        client.flush(10)
        sent_before, dropped_before = client.outcomes_sent, client.outcomes_dropped
        no_op = per_call_us(
            {
                "bare": lambda: None,
                "ours": client.protected("hot")(lambda: None),
                "powertools": circuit_breaker(name="pt-hot", persistence_store=persistence, config=pt_config)(
                    lambda: None
                ),
            },
            NO_OP_CALLS,
        )
        noop, ours_noop, pt_noop = no_op["bare"], no_op["ours"], no_op["powertools"]
        client.flush(10)
        noop_reports = NO_OP_CALLS + 600
        noop_dropped = client.outcomes_dropped - dropped_before
        noop_sent = client.outcomes_sent - sent_before
        client.flush(5)

        progress("2. Calls t")
        # 2. Calls that reach a failing downstream before the circuit opens.
        for circuit_id in ("tight", "paced"):
            downstream.set_status({f"/ours/{circuit_id}": 503, f"/pt/pt-{circuit_id}": 503})
        ours_tight = until_open(ours_call("tight"), 0)
        pt_tight = until_open(powertools_call("pt-tight"), 0)
        ours_paced = until_open(ours_call("paced"), PACE_S)
        pt_paced = until_open(powertools_call("pt-paced"), PACE_S)
        hits = downstream.hits()
        reached = {key: hits.get(key, 0) for key in ("/ours/tight", "/pt/pt-tight", "/ours/paced", "/pt/pt-paced")}

        progress("3. Recover")
        # 3. Recovery: the downstream answers 200 again right after the circuit opened.
        events = moto.client("events")
        checker = hc.HealthChecker(table_name=table, dynamodb=dynamodb, events=events, emit=lambda line: None)
        health_url = f"http://127.0.0.1:{downstream.port}/health/tight"

        def config(circuit_id: str, url: str) -> Any:
            return hc.CircuitConfig.from_event(
                {
                    "circuitId": circuit_id,
                    "url": url,
                    "allowHttp": True,
                    "timeoutMs": 500,
                    "failureThreshold": 3,
                    "coolDownMs": COOL_DOWN_S * 1000,
                    "halfOpenTrials": 2,
                }
            )

        downstream.set_status({"/ours/tight": 200})
        loops.append(CheckerLoop(checker, [config("tight", health_url)]))
        ours_first, ours_flowing = until_flowing(ours_call("tight"))
        downstream.set_status({"/pt/pt-tight": 200})
        pt_first, pt_flowing = until_flowing(powertools_call("pt-tight"))

        progress("4. Outcome")
        # 4. Outcome window vs health checks alone (paced calls, the same failure from t0).
        downstream.set_status({"/ours/checks-only": 503})
        downstream.set_status({"/ours/window-only": 503})
        downstream.set_status({"/health/checks-only": 503})
        loops.append(
            CheckerLoop(checker, [config("checks-only", f"http://127.0.0.1:{downstream.port}/health/checks-only")])
        )
        started = time.monotonic()
        checks_only = 0
        while client.status("checks-only").permitted and time.monotonic() - started < 15:
            with contextlib.suppress(DownstreamError):  # outcome never reported: only the checks can open it
                downstream.call("/ours/checks-only")
            checks_only += 1
            time.sleep(PACE_S)
        checks_only_s = time.monotonic() - started
        window_only = until_open(ours_call("window-only"), PACE_S)
    finally:
        for loop in loops:
            loop.close()
        if process is not None:
            api.release.set()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        api.close()
        downstream.close()
        moto.stop()

    print(
        "hot path: protected call of a healthy localhost HTTP downstream "
        f"(median of 15 interleaved rounds of {HOT_CALLS // 15} calls)"
    )
    print(f"  unprotected call                        {bare:8.1f} us   (baseline)")
    for name, value in (
        ("ours (client memo hit)", ours_hot),
        ("ours, memo_ttl=0 (round trip each)", ours_round_trip),
        ("Powertools circuit_breaker", pt_hot),
    ):
        print(f"  {name:38s}  {value:8.1f} us   {value / bare:5.2f}x unprotected")
    print(f"added per call to a no-op function ({NO_OP_CALLS:,} calls in a tight loop, caller's thread)")
    print(
        f"  ours {ours_noop - noop:6.2f} us   Powertools {pt_noop - noop:6.2f} us   "
        f"(Powertools / ours: {(pt_noop - noop) / max(ours_noop - noop, 1e-9):.1f}x)"
    )
    print(
        f"  ours' background sender delivered {noop_sent:,} of {noop_reports:,} outcome reports "
        f"and dropped {noop_dropped:,} (queue of {client.outcome_queue_size}): one POST per report "
        "cannot keep up with a loop that makes no I/O"
    )
    print("calls that reached a failing downstream before the circuit opened (threshold: 5 failures)")
    print(
        f"  tight loop   ours {ours_tight:5d} (downstream saw {reached['/ours/tight']})   "
        f"Powertools {pt_tight:5d} (downstream saw {reached['/pt/pt-tight']})"
    )
    print(
        f"  paced {PACE_S * 1000:.0f} ms   ours {ours_paced:5d} (downstream saw {reached['/ours/paced']})   "
        f"Powertools {pt_paced:5d} (downstream saw {reached['/pt/pt-paced']})"
    )
    print(f"time until calls flow again after the downstream recovered (cool-down / recovery_timeout {COOL_DOWN_S} s)")
    print(
        f"  ours        first call through {ours_first:5.2f} s   20 in a row {ours_flowing:5.2f} s   "
        f"(health checks every {CHECK_EVERY_S} s here; Scheduler's minimum is 60 s)"
    )
    print(
        f"  Powertools  first call through {pt_first:5.2f} s   20 in a row {pt_flowing:5.2f} s   "
        f"(ratio ours / Powertools: {ours_flowing / pt_flowing:.1f}x)"
    )
    rate = 1 / PACE_S
    print(f"calls that reached a failing downstream before the circuit opened, one call every {PACE_S * 1000:.0f} ms")
    print(f"  outcome window (5 calls, 50%)               {window_only:7d}")
    print(
        f"  health checks alone (3 probes, every {CHECK_EVERY_S} s)  {checks_only:7d}   in {checks_only_s:.2f} s "
        f"({checks_only / max(window_only, 1):.0f}x the outcome window)"
    )
    extrapolated = rate * (3 * 60 + EXTENSION_CACHE_TTL_MS / 1000)
    print(
        f"  health checks alone, 1-minute schedule      ~{extrapolated:,.0f}   (extrapolated: {rate:.0f} calls/s x "
        f"(3 x 60 s + {EXTENSION_CACHE_TTL_MS / 1000:.0f} s cache TTL))"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
