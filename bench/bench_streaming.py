#!/usr/bin/env python3
"""Streaming runtime: time to first byte and total time for a 100-chunk answer, streamed vs buffered;
throughput of a large streamed answer; the runtime's start-up vs awslambdaric's.

Every measurement runs real processes against the emulator's Runtime API (``local/runtime_api.py``),
each against a baseline measured in the same run:

1. A handler that yields 100 chunks, about 1 ms of work apart. Streamed: ``serverless-streaming`` (the
   exec wrapper) runs it; buffered: ``python -m awslambdaric`` runs the same generator joined into one
   string. TTFB is from queueing the invocation to the first body byte reaching the Runtime API; the gap
   is from the handler's first ``yield`` (a CLOCK_MONOTONIC stamp in the chunk) to that byte. DESIGN
   targets: TTFB >= 10x better than buffered, gap <= 10 ms.
2. 50 MiB in 64 KiB chunks through the runtime into the Runtime API, vs the same bytes written with
   ``sendall`` on a loopback socket to a sink that only reads (the practical ceiling).
3. Cold start: process spawn to the runtime's first ``GET /next``, ours vs ``python -m awslambdaric``.

Run: ``.venv/bin/python bench/bench_streaming.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "constructs"))
WRAPPER = ROOT / "lambda_src" / "streaming_runtime" / "serverless-streaming"
LAYER_PYTHON = ROOT / "lambda_src" / "streaming_runtime" / "python"

from cdk_serverless_patterns.local.runtime_api import ApiState, Invocation, RuntimeApi  # noqa: E402

APP = r"""
import time

def chunks(event, context):
    for i in range(event.get("n", 100)):
        if i:
            deadline = time.perf_counter() + event.get("work_s", 0.001)
            while time.perf_counter() < deadline:
                pass
        yield f"{time.monotonic():.6f}|" if i == 0 else "chunk %03d|" % i

def buffered(event, context):
    return "".join(chunks(event, context))

CHUNK = b"x" * 65536

def big(event, context):
    for _ in range(event["chunks"]):
        yield CHUNK

def plain(event, context):
    return "ok"
"""


class Environment:
    """One runtime process against its own Runtime API."""

    def __init__(self, task: Path, handler: str, *, streaming: bool) -> None:
        self.state = ApiState(function_name="bench", handler=handler, log=lambda line: None)
        self.api = RuntimeApi(self.state)
        self.api._server.handle_error = lambda *args: None  # type: ignore[method-assign]  # a killed runtime's reset
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(task),
            "PYTHONPATH": str(LAYER_PYTHON),
            "AWS_LAMBDA_FUNCTION_NAME": "bench",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        }
        argv = [sys.executable, "-m", "awslambdaric", handler]
        if streaming:
            argv = [str(WRAPPER), *argv]
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, env=env, cwd=task, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_next(self, calls: int = 1, timeout: float = 20.0) -> float:
        """Seconds since the spawn when the runtime had called /next ``calls`` times."""
        deadline = time.monotonic() + timeout
        with self.state.cond:
            while self.state.runtime_next_calls < calls:
                if time.monotonic() > deadline:
                    raise TimeoutError("the runtime did not call /next")
                self.state.cond.wait(0.001)
        return time.monotonic() - self.started

    def invoke(self, event: dict[str, object], timeout: float = 60.0) -> tuple[float, float, float, bytes]:
        """(queued at, first chunk at, end at, body): CLOCK_MONOTONIC seconds."""
        invocation = Invocation(
            request_id=str(uuid.uuid4()),
            payload=json.dumps(event).encode(),
            deadline_ms=int(time.time() * 1000 + timeout * 1000),
            function_arn="arn:aws:lambda:us-east-1:123456789012:function:bench",
            streaming=True,
        )
        queued = time.monotonic()
        self.state.invoke(invocation)
        first = 0.0
        while True:
            chunk = invocation.chunks.get(timeout=timeout)
            if chunk is None:
                break
            if not first:
                first = time.monotonic()
        end = time.monotonic()
        if invocation.error_type:
            raise RuntimeError(f"{invocation.error_type}: {invocation.error_body}")
        return queued, first or end, end, bytes(invocation.body)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.api.close()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def bench_ttfb(task: Path, runs: int) -> None:
    print(f"\n1. 100-chunk answer, ~1 ms of work between chunks (median of {runs} warm invokes)")
    results: dict[str, dict[str, list[float]]] = {}
    for name, handler, streaming in (("streamed", "app.chunks", True), ("buffered", "app.buffered", False)):
        env = Environment(task, handler, streaming=streaming)
        try:
            env.wait_next()
            env.invoke({"n": 3})  # warm
            samples: dict[str, list[float]] = {"ttfb": [], "total": [], "gap": []}
            for _ in range(runs):
                queued, first, end, body = env.invoke({"n": 100})
                samples["ttfb"].append(first - queued)
                samples["total"].append(end - queued)
                samples["gap"].append(first - float(body.split(b"|", 1)[0].strip(b'"')))
            results[name] = samples
        finally:
            env.close()
    for name, samples in results.items():
        print(
            f"  {name:<9} TTFB {ms(statistics.median(samples['ttfb']))}"
            f"   total {ms(statistics.median(samples['total']))}"
            f"   first yield -> first byte {ms(statistics.median(samples['gap']))}"
        )
    ratio = statistics.median(results["buffered"]["ttfb"]) / statistics.median(results["streamed"]["ttfb"])
    gap = statistics.median(results["streamed"]["gap"])
    print(f"  => streamed TTFB is {ratio:.0f}x better than buffered (target >= 10x)")
    print(
        f"  => the first chunk reaches the Runtime API {gap * 1000:.2f} ms after the handler yields it"
        " (target <= 10 ms)"
    )
    raw_gap = raw_server_gap(task, runs)
    print(
        f"  => against a raw-socket Runtime API (tests/streaming/conformance.py) the gap is {raw_gap * 1000:.2f} ms: "
        "the rest is the emulator's http.server parsing the POST's headers"
    )
    overhead = statistics.median(results["streamed"]["total"]) / statistics.median(results["buffered"]["total"])
    print(f"  => total time streamed / buffered: {overhead:.2f}x")


def raw_server_gap(task: Path, runs: int) -> float:
    """Median first-yield-to-first-byte gap against the strict raw-socket server of the conformance tests."""
    sys.path.insert(0, str(ROOT / "tests" / "streaming"))
    from conformance import ConformanceServer, start_runtime, stop  # type: ignore[import-not-found]

    server = ConformanceServer()
    process = start_runtime(server.address, "app.chunks", task, {"PYTHONPATH": str(LAYER_PYTHON)})
    gaps = []
    try:
        for _ in range(runs + 1):
            record = server.invoke({"n": 2, "work_s": 0})
            item = record.arrivals.get(timeout=20)
            if item is None or not record.wait(20):
                raise RuntimeError(f"no answer: {record.violations}")
            gaps.append(item[0] - float(item[1].split(b"|", 1)[0]))
    finally:
        stop(process)
        server.close()
    return float(statistics.median(gaps[1:]))


def sink_throughput(size: int) -> float:
    """Seconds to push ``size`` bytes through a loopback socket with sendall, 64 KiB at a time."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def drain() -> None:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 20):
                pass
        done.set()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    chunk = b"x" * 65536
    with socket.create_connection(server.getsockname()) as client:
        started = time.monotonic()
        for _ in range(size // len(chunk)):
            client.sendall(chunk)
    done.wait(30)
    elapsed = time.monotonic() - started
    server.close()
    return elapsed


def bench_throughput(task: Path) -> None:
    chunks = 800
    size = chunks * 65536
    print(f"\n2. {size >> 20} MiB in 64 KiB chunks")
    env = Environment(task, "app.big", streaming=True)
    try:
        env.wait_next()
        env.invoke({"chunks": 4})
        queued, _, end, body = env.invoke({"chunks": chunks})
        assert len(body) == size, len(body)
    finally:
        env.close()
    ours = size / (end - queued) / 1e6
    ceiling = size / sink_throughput(size) / 1e6
    print(f"  runtime -> emulator's Runtime API   {ours:8.0f} MB/s")
    print(f"  sendall -> loopback sink (ceiling)  {ceiling:8.0f} MB/s")
    print(f"  => {ours / ceiling:.2f}x of a bare loopback socket (the Runtime API parses every chunk in Python)")


def bench_start(task: Path, runs: int) -> None:
    print(f"\n3. cold start: spawn -> first GET /next (median of {runs})")
    results: dict[str, list[float]] = {"serverless-streaming": [], "awslambdaric": []}
    for _ in range(runs):  # interleaved, so that a busy moment costs both alike
        for name, streaming in (("serverless-streaming", True), ("awslambdaric", False)):
            env = Environment(task, "app.plain", streaming=streaming)
            try:
                results[name].append(env.wait_next())
            finally:
                env.close()
    for name, samples in results.items():
        print(f"  {name:<22} {ms(statistics.median(samples))}   (min {ms(min(samples)).strip()})")
    ratio = statistics.median(results["awslambdaric"]) / statistics.median(results["serverless-streaming"])
    print(f"  => the streaming runtime starts {ratio:.1f}x as fast as awslambdaric")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as folder:
        task = Path(folder)
        (task / "app.py").write_text(APP)
        bench_ttfb(task, args.runs)
        bench_throughput(task)
        bench_start(task, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
