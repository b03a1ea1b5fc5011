"""The streaming runtime client, as a real process behind its exec wrapper, against a strict Runtime API.

Each test starts ``serverless-streaming <python> -m awslambdaric app.<handler>`` (as Lambda runs an
exec wrapper) against :class:`conformance.ConformanceServer` and asserts what the server received,
byte for byte, and that the server found no breach of the protocol (``record.violations == []``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conformance import (
    REST_EVENT,
    URL_EVENT,
    WRAPPER,
    ConformanceServer,
    Fault,
    Record,
    output,
    start_runtime,
    stop,
)

from cdk_serverless_patterns.local.lambda_environment import wait_for

pytestmark = pytest.mark.slow

APP = r"""
import asyncio, json, logging, os, sys, time
from serverless_streaming import Event, Response, streaming
from serverless_streaming.core import StreamError

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK = b"x" * 65536


def _gate(name, timeout=10.0):
    path = os.path.join(HERE, name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(name)
        time.sleep(0.002)


def _mark(name, text=""):
    with open(os.path.join(HERE, name), "w") as f:
        f.write(text)


def hello(event, context):
    yield Response(201, {"x-trace": "abc"}, ["a=1; Secure", "b=2"])
    yield "hello "
    yield b"world"


def plain(event, context):
    return "just text"


def logs(event, context):
    logging.getLogger("app").warning("working on %s", event.get("item"))
    yield "logged"


def as_dict(event, context):
    return {"ok": True}


def empty(event, context):
    return
    yield


def handshake(event, context):
    for i in range(event["n"]):
        if i:
            _gate(f"gate.{i}")
        yield f"chunk {i};"


async def agen(event, context):
    for word in ("one", "two"):
        await asyncio.sleep(0)
        yield word


def late_error(event, context):
    yield "partial"
    def deep(n):
        if n == 0:
            raise ValueError("late " + "m" * event.get("size", 10))
        deep(n - 1)
    deep(event.get("depth", 0))


def early_error(event, context):
    raise KeyError("missing")
    yield


def bad_status(event, context):
    yield Response(status_code=700)
    yield "never"


def header_injection(event, context):
    yield Response(headers={"x-a": "ok\r\nset-cookie: evil=1"})
    yield "never"


@streaming(sse=True, keep_alive_seconds=0.1)
def sse_slow(event, context):
    yield "line one\nline two"
    _gate("gate.sse")
    yield Event("{}", event="tick", id="7")


@streaming(sse=True, keep_alive_seconds=0.05)
def sse_slow_start(event, context):
    time.sleep(0.3)  # six keep-alive periods before the first item
    yield Response(202, {"x-slow": "1"})
    time.sleep(0.12)
    yield "late"


@streaming(sse=True, keep_alive_seconds=None)
def sse_public_error(event, context):
    yield "first"
    raise StreamError("quota exceeded", "QuotaExceeded")


@streaming(sse=True, keep_alive_seconds=None)
def sse_secret_error(event, context):
    yield "first"
    raise RuntimeError("password=hunter2")


def endless(event, context):
    try:
        while True:
            yield CHUNK
    finally:
        _mark("closed", repr(sys.exc_info()[0]))


@streaming(sse=True, keep_alive_seconds=5)
def endless_sse(event, context):
    try:
        while True:
            yield CHUNK.decode()
    finally:
        _mark("closed_sse", repr(sys.exc_info()[0]))


def big(event, context):
    for _ in range(event["chunks"]):
        yield CHUNK


@streaming(sse=True, keep_alive_seconds=5)
def sse_stalls(event, context):
    try:
        yield "before"
        _gate("gate.stall", timeout=60)  # a model that stalls past the function's timeout
        yield "never"
    finally:
        _mark("stalled_closed", repr(sys.exc_info()[0]))


def trickle(event, context):
    while True:
        yield b"x"
        time.sleep(0.02)


def one_big(event, context):
    yield b"y" * (event["mb"] << 20)


def peak(event, context):
    status = open("/proc/self/status").read()
    return [line for line in status.splitlines() if line.startswith("VmHWM")][0]


def ctx(event, context):
    return {
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "tenant_id": context.tenant_id,
        "identity": context.identity and context.identity.cognito_identity_id,
        "client": context.client_context and context.client_context.client.app_title,
        "custom": context.client_context and context.client_context.custom,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "sys_path": sys.path[:3],
        "telemetry_fd": os.environ.get("_LAMBDA_TELEMETRY_LOG_FD"),
    }
"""


@pytest.fixture()
def server() -> Iterator[ConformanceServer]:
    srv = ConformanceServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture()
def task(tmp_path: Path) -> Path:
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "app.py").write_text(APP)
    return folder


Starter = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture()
def run(server: ConformanceServer, task: Path) -> Iterator[Starter]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(
        handler: str, env: dict[str, str] | None = None, srv: ConformanceServer | ScriptedApi | None = None
    ) -> Any:
        process = start_runtime((srv or server).address, f"app.{handler}", task, env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        stop(process)


def answered(record: Record, timeout: float = 15.0) -> Record:
    assert record.wait(timeout), "no answer in time"
    return record


# -- the wire format ------------------------------------------------------------------------------
def test_rest_event_gets_the_prelude_delimiter_and_chunks_byte_exact(server: ConformanceServer, run: Starter) -> None:
    run("hello")
    record = answered(server.invoke(REST_EVENT))
    assert record.violations == [] and server.violations == []
    assert record.content_type == "application/vnd.awslambda.http-integration-response"
    prelude = b'{"statusCode":201,"headers":{"x-trace":"abc","content-type":"application/octet-stream"},'
    prelude += b'"cookies":["a=1; Secure","b=2"]}'
    assert record.body == prelude + b"\0" * 8 + b"hello world"
    assert record.chunk_sizes[-2:] == [6, 5]  # one chunk per item, as produced
    assert record.answer == 202 and record.trailers == {} and record.path == "response"


def test_function_url_event_gets_the_prelude_and_sdk_invokes_get_the_raw_body(
    server: ConformanceServer, run: Starter
) -> None:
    run("hello")
    url = answered(server.invoke(URL_EVENT))
    raw = answered(server.invoke({"prompt": "hi"}))
    assert url.violations == [] and raw.violations == []
    assert url.prelude() == {
        "statusCode": 201,
        "headers": {"x-trace": "abc", "content-type": "application/octet-stream"},
        "cookies": ["a=1; Secure", "b=2"],
    }
    assert url.payload() == b"hello world"
    assert raw.body == b"hello world" and raw.content_type == "application/octet-stream"


def test_an_empty_http_answer_still_sends_the_prelude(server: ConformanceServer, run: Starter) -> None:
    run("empty")
    record = answered(server.invoke(REST_EVENT))
    assert record.violations == []
    assert record.body == b'{"statusCode":200,"headers":{"content-type":"application/octet-stream"}}' + b"\0" * 8
    raw = answered(server.invoke({}))
    assert raw.violations == [] and raw.body == b"" and raw.answer == 202


def test_plain_and_async_handlers_stream_too(server: ConformanceServer, run: Starter, task: Path) -> None:
    run("plain")
    assert answered(server.invoke({})).body == b"just text"
    run("agen", srv=(second := ConformanceServer()))
    try:
        record = answered(second.invoke({}))
        assert record.body == b"onetwo" and record.chunk_sizes == [3, 3] and record.violations == []
    finally:
        second.close()


def test_a_chunk_arrives_before_the_handler_may_yield_the_next(
    server: ConformanceServer, run: Starter, task: Path
) -> None:
    """Real streaming: the handler waits for a gate that the test opens only after reading the chunk."""
    run("handshake")
    record = server.invoke({"n": 4})
    seen = []
    for index in range(4):
        item = record.arrivals.get(timeout=10)
        assert item is not None, output(task)
        seen.append(item[1])
        (task / f"gate.{index + 1}").touch()
    answered(record)
    assert seen == [b"chunk 0;", b"chunk 1;", b"chunk 2;", b"chunk 3;"]
    assert record.violations == [] and record.answer == 202


# -- errors ---------------------------------------------------------------------------------------
def test_an_error_after_the_first_byte_ends_with_strict_trailers(server: ConformanceServer, run: Starter) -> None:
    run("late_error")
    record = answered(server.invoke({}))
    assert record.violations == []
    assert record.body == b"partial"
    assert record.error_type == "Function.ValueError"
    assert record.error is not None and record.error["errorType"] == "ValueError"
    assert record.error["errorMessage"] == "late mmmmmmmmmm"
    assert any("late_error" in line for line in record.error["stackTrace"])
    assert not any("serverless_streaming" in line for line in record.error["stackTrace"])


def test_huge_errors_are_cut_to_fit_the_trailers(server: ConformanceServer, run: Starter) -> None:
    run("late_error")
    record = answered(server.invoke({"size": 100_000, "depth": 300}))
    assert record.violations == []  # under 4 KB, strict base64, valid JSON
    assert record.trailer_bytes < 3100
    assert record.error is not None and record.error["errorMessage"].startswith("late mmm")
    encoded = record.trailers["lambda-runtime-function-error-body"]
    assert base64.b64encode(base64.b64decode(encoded)).decode() == encoded


def test_an_error_before_the_first_byte_goes_to_the_error_route(server: ConformanceServer, run: Starter) -> None:
    run("early_error")
    for event in (REST_EVENT, {}):
        record = answered(server.invoke(event))
        assert record.violations == [] and record.path == "error" and record.size == 0
        assert record.error_type == "Function.KeyError"
        assert record.error is not None and record.error["errorType"] == "KeyError"
        assert record.error["errorMessage"] == "'missing'"


@pytest.mark.parametrize("handler", ["bad_status", "header_injection"])
def test_an_invalid_response_is_an_error_before_the_first_byte(
    server: ConformanceServer, run: Starter, handler: str
) -> None:
    run(handler)
    record = answered(server.invoke(REST_EVENT))
    assert record.violations == [] and record.path == "error" and record.size == 0
    assert record.error is not None and record.error["errorType"] == "ValueError"


def test_sse_keep_alives_during_silence_then_done(server: ConformanceServer, run: Starter, task: Path) -> None:
    run("sse_slow")
    record = server.invoke(URL_EVENT)
    frames = []
    while True:
        item = record.arrivals.get(timeout=10)
        assert item is not None, output(task)
        frames.append(item[1])
        if item[1] == b": keep-alive\n\n":
            break  # the handler is blocked on the gate, and the client still hears from us
    (task / "gate.sse").touch()
    answered(record)
    assert record.violations == []
    assert record.prelude() == {
        "statusCode": 200,
        "headers": {"content-type": "text/event-stream", "cache-control": "no-cache"},
    }
    body = record.payload()
    assert body.startswith(b"data: line one\ndata: line two\n\n: keep-alive\n\n")
    assert body.endswith(b"event: tick\nid: 7\ndata: {}\n\nevent: done\ndata: \n\n")


def test_sse_keep_alives_wait_for_the_handlers_first_item(server: ConformanceServer, run: Starter) -> None:
    run("sse_slow_start")
    record = answered(server.invoke(REST_EVENT))
    assert record.violations == []
    assert record.prelude() == {
        "statusCode": 202,
        "headers": {"x-slow": "1", "content-type": "text/event-stream", "cache-control": "no-cache"},
    }
    body = record.payload()
    assert body.startswith(b": keep-alive\n\n") and body.count(b"\0" * 8) == 0
    assert body.endswith(b"data: late\n\nevent: done\ndata: \n\n")


def test_sse_error_after_the_first_byte_is_in_band_and_in_the_trailers(server: ConformanceServer, run: Starter) -> None:
    run("sse_public_error")
    record = answered(server.invoke(URL_EVENT))
    assert record.violations == []
    assert record.payload() == (
        b'data: first\n\nevent: error\ndata: {"errorType": "QuotaExceeded", "message": "quota exceeded"}\n\n'
    )
    assert record.error_type == "Function.StreamError"
    assert b"event: done" not in record.body


def test_sse_error_text_stays_out_of_the_stream(server: ConformanceServer, run: Starter) -> None:
    run("sse_secret_error")
    record = answered(server.invoke({}))
    assert record.violations == []
    assert b"event: error" in record.body and b"RuntimeError" in record.body
    assert b"hunter2" not in record.body  # the client sees the type; the log has the text
    assert record.error is not None and "hunter2" in record.error["errorMessage"]


# -- faults ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [413, 400])
def test_an_early_answer_mid_body_closes_the_generator_and_the_runtime_goes_on(
    server: ConformanceServer, run: Starter, task: Path, status: int
) -> None:
    run("endless")
    record = answered(server.invoke({}, fault=Fault(reject_after=1 << 20, reject_status=status)))
    assert record.answer == status
    assert wait_for(lambda: (task / "closed").exists(), timeout=10), output(task)
    assert (task / "closed").read_text() == "<class 'GeneratorExit'>"
    # the next invocation goes on a new connection and succeeds
    assert server.wait_next(2)
    assert "Runtime.StreamAborted" in output(task)


def test_a_dead_connection_closes_an_sse_generator_on_its_thread(
    server: ConformanceServer, run: Starter, task: Path
) -> None:
    run("endless_sse")
    record = answered(server.invoke({}, fault=Fault(reject_after=1 << 20)))
    assert record.answer == 413
    assert wait_for(lambda: (task / "closed_sse").exists(), timeout=10), output(task)
    assert (task / "closed_sse").read_text() == "<class 'GeneratorExit'>"
    assert server.wait_next(2)


def test_the_size_cap_answers_413(run: Starter, task: Path) -> None:
    capped = ConformanceServer(cap=3 << 20)
    try:
        run("big", srv=capped)
        record = answered(capped.invoke({"chunks": 100}))
        assert record.answer == 413 and record.size > 3 << 20
        assert capped.wait_next(2)
        ok = answered(capped.invoke({"chunks": 2}))
        assert ok.answer == 202 and ok.size == 2 * 65536
    finally:
        capped.close()


def test_a_server_that_closes_after_its_202_is_survived(server: ConformanceServer, run: Starter) -> None:
    run("hello")
    for _ in range(3):
        record = answered(server.invoke({}, fault=Fault(close_after_answer=True)))
        assert record.answer == 202 and record.body == b"hello world" and record.violations == []
    assert server.connections >= 3


def _peak_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])


def test_50_mb_stream_in_bounded_memory(server: ConformanceServer, run: Starter) -> None:
    process = run("big")
    assert answered(server.invoke({"chunks": 16})).answer == 202  # warm: imports and buffers in place
    before = _peak_kb(process.pid)
    record = answered(server.invoke({"chunks": 800}), timeout=60)  # 50 MiB in 64 KiB chunks
    grown_kb = _peak_kb(process.pid) - before
    assert record.answer == 202 and record.violations == [] and record.size == 800 * 65536
    expected = hashlib.sha256()
    for _ in range(800):
        expected.update(b"x" * 65536)
    assert record.digest.hexdigest() == expected.hexdigest()
    assert grown_kb < 8 * 1024, f"the runtime's peak memory grew by {grown_kb} KiB for a 50 MiB stream"


def test_one_huge_item_is_sent_without_copies(server: ConformanceServer, run: Starter) -> None:
    """A 32 MiB item costs the item itself: a partial send used to join and slice the parts (3 copies)."""
    process = run("one_big")
    assert answered(server.invoke({"mb": 1})).answer == 202
    before = _peak_kb(process.pid)
    record = answered(server.invoke({"mb": 32}), timeout=60)
    grown_kb = _peak_kb(process.pid) - before
    assert record.answer == 202 and record.violations == [] and record.size == 32 << 20
    assert record.digest.hexdigest() == hashlib.sha256(b"y" * (32 << 20)).hexdigest()
    assert grown_kb < 48 * 1024, f"peak memory grew by {grown_kb} KiB for one 32 MiB item"


def test_a_stalled_sse_stream_ends_with_a_timeout_event_before_the_deadline(
    server: ConformanceServer, run: Starter, task: Path
) -> None:
    """Lambda would cut it at the deadline (no event, no trailers); the runtime ends it itself, 0.5 s before."""
    run("sse_stalls")
    started = time.time()
    record = answered(server.invoke(REST_EVENT, timeout_s=2.0), timeout=10)
    assert time.time() - started < 2.0, "answered only after the deadline"
    assert record.violations == [] and record.answer == 202
    error = b'{"errorType": "StreamTimeout", "message": "the stream stopped before the function\'s timeout"}'
    assert record.payload() == b"data: before\n\nevent: error\ndata: " + error + b"\n\n"
    assert record.trailers["lambda-runtime-function-error-type"] == "Function.StreamTimeout"
    assert server.wait_next(2)  # ready for the next invocation while the stalled handler is still blocked
    (task / "gate.stall").touch()
    assert wait_for(lambda: (task / "stalled_closed").exists(), timeout=10), output(task)
    assert (task / "stalled_closed").read_text() == "<class 'GeneratorExit'>"


def test_a_raw_stream_still_running_at_its_deadline_ends_with_the_error_trailers(
    server: ConformanceServer, run: Starter
) -> None:
    run("trickle")
    started = time.time()
    record = answered(server.invoke({}, timeout_s=1.5), timeout=10)
    assert time.time() - started < 1.5
    assert record.violations == [] and record.answer == 202 and set(record.body) == {ord("x")}
    assert record.trailers["lambda-runtime-function-error-type"] == "Function.StreamTimeout"
    assert record.error is not None and record.error["errorType"] == "StreamTimeout"


class ScriptedApi:
    """A Runtime API that hands out invocations and answers ``/error`` with ``error_answer`` (garbage on purpose)."""

    def __init__(self, error_answer: bytes) -> None:
        self.error_answer = error_answer
        self.nexts = 0
        self.errors: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        rfile = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                try:
                    line = rfile.readline()
                except TimeoutError:
                    continue
                if not line:
                    return
                headers = {}
                while (header := rfile.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = rfile.read(int(headers.get("content-length", "0")))
                if b"/invocation/next" in line:
                    self.nexts += 1
                    if self.nexts > 1:
                        self._stop.wait()  # the runtime came back for more: that is all the test needs
                        return
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r-1\r\n"
                        b"Lambda-Runtime-Deadline-Ms: %d\r\nContent-Length: 2\r\n\r\n{}" % (time.time() * 1000 + 60_000)
                    )
                elif b"/error" in line:
                    self.errors.append(body)
                    conn.sendall(self.error_answer)
                    return
        finally:
            rfile.close()
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._sock.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 202 Accepted\r\nContent-Length: zz\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n{}",
    ],
)
def test_a_garbage_answer_from_the_runtime_api_is_logged_not_a_crash(run: Starter, task: Path, answer: bytes) -> None:
    """An unparsable answer to ``/error`` was a bare ValueError that killed the runtime; now it goes on to /next."""
    api = ScriptedApi(answer)
    process = None
    try:
        process = run("early_error", srv=api)
        assert wait_for(lambda: api.nexts >= 2 or process.poll() is not None, timeout=15), output(task)
        assert process.poll() is None and api.nexts == 2, output(task)
        assert json.loads(api.errors[0])["errorType"] == "KeyError"
        assert "Runtime.ApiError" in output(task) and "ValueError" not in output(task)
    finally:
        if process is not None:
            stop(process)
        api.close()


def test_context_and_sys_path_as_lambda_builds_them(server: ConformanceServer, run: Starter, task: Path) -> None:
    run("ctx", env={"_LAMBDA_TELEMETRY_LOG_FD": "3"})
    client_context = json.dumps({"client": {"app_title": "app"}, "custom": {"k": "v"}, "env": {}})
    record = answered(
        server.invoke(
            {},
            timeout_s=30,
            **{
                "Lambda-Runtime-Client-Context": client_context,
                "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "id-1"}),
                "Lambda-Runtime-Aws-Tenant-Id": "tenant-a",
            },
        )
    )
    assert record.violations == []
    seen = json.loads(record.body)
    assert seen["request_id"] == record.request_id and seen["tenant_id"] == "tenant-a"
    assert seen["function_name"] == "fn" and seen["function_version"] == "$LATEST" and seen["memory"] == "128"
    assert seen["log_group"] == "/aws/lambda/fn" and seen["arn"].endswith(":function:fn")
    assert 20_000 < seen["remaining"] <= 30_000
    assert seen["identity"] == "id-1" and seen["client"] == "app" and seen["custom"] == {"k": "v"}
    assert seen["trace"].startswith("Root=1-")
    assert seen["sys_path"] == [
        str(task),
        f"/opt/python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages",
        "/opt/python",
    ]
    assert seen["telemetry_fd"] is None


# -- start-up -------------------------------------------------------------------------------------
def test_a_missing_handler_is_an_init_error(server: ConformanceServer, run: Starter) -> None:
    process = run("nope")
    assert process.wait(10) == 1
    assert server.init_errors == [
        (
            "Runtime.HandlerNotFound",
            {
                "errorMessage": "Handler 'nope' missing on module 'app'",
                "errorType": "Runtime.HandlerNotFound",
                "stackTrace": [],
            },
        )
    ]


PYTHON_39 = Path.home() / ".pyenv" / "versions" / "3.9.18" / "bin" / "python3.9"


@pytest.mark.skipif(not PYTHON_39.exists(), reason="no Python 3.9 interpreter here")
def test_an_unsupported_python_is_a_clear_init_error(server: ConformanceServer, task: Path) -> None:
    """On Python 3.9 every invocation failed with 'unsupported operand type(s) for |'; now init says why."""
    process = subprocess.Popen(
        [str(WRAPPER), str(PYTHON_39), "/var/runtime/bootstrap.py"],
        env={"PATH": "/usr/bin:/bin", "AWS_LAMBDA_RUNTIME_API": server.address, "_HANDLER": "app.hello",
             "LAMBDA_TASK_ROOT": str(task)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.wait(10) == 1
    finally:
        stop(process)
    ((error_type, document),) = server.init_errors
    assert error_type == "Runtime.UnsupportedRuntime" and "3.10 or later" in document["errorMessage"]


def test_json_logs_carry_the_error_and_the_request_id(server: ConformanceServer, run: Starter, task: Path) -> None:
    run("late_error", env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    record = answered(server.invoke({}))
    assert wait_for(lambda: "errorType" in output(task), timeout=5)
    lines = [json.loads(line) for line in output(task).splitlines() if line.startswith("{")]
    errors = [line for line in lines if line.get("level") == "ERROR"]
    assert errors and errors[0]["errorType"] == "ValueError" and errors[0]["requestId"] == record.request_id


def test_user_log_lines_carry_the_request_id_in_both_formats(
    server: ConformanceServer, run: Starter, task: Path
) -> None:
    run("logs", env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    record = answered(server.invoke({"item": "order-1"}))
    assert record.body == b"logged"
    assert wait_for(lambda: "order-1" in output(task), timeout=5)
    line = json.loads(next(line for line in output(task).splitlines() if "order-1" in line))
    assert line["level"] == "WARNING" and line["message"] == "working on order-1"
    assert line["requestId"] == record.request_id and line["logger"] == "app"


def test_the_wrapper_falls_back_to_the_normal_runtime(server: ConformanceServer, run: Starter, tmp_path: Path) -> None:
    # the layer's python/ is on sys.path as /opt/python is in Lambda
    run("plain", env={"SERVERLESS_STREAMING_DISABLED": "1", "PYTHONPATH": str(WRAPPER.parent / "python")})
    record = answered(server.invoke({}))
    assert "lambda-runtime-function-response-mode" not in record.headers  # awslambdaric answered, buffered
    lone = tmp_path / "lone" / "serverless-streaming"
    lone.parent.mkdir()
    lone.write_bytes(WRAPPER.read_bytes())
    lone.chmod(0o755)
    done = subprocess.run([str(lone), sys.executable, "-c", "print('normal runtime')"], capture_output=True, timeout=10)
    assert done.stdout == b"normal runtime\n" and b"missing" in done.stderr
    assert subprocess.run([str(WRAPPER)], capture_output=True, timeout=10).returncode == 127
    not_python = subprocess.run([str(WRAPPER), "/bin/echo", "provided"], capture_output=True, timeout=10)
    assert not_python.stdout == b"provided\n" and b"not a Python interpreter" in not_python.stderr


def test_cold_start_is_quick(server: ConformanceServer, run: Starter) -> None:
    started = time.monotonic()
    run("plain")
    assert server.wait_next(1, timeout=10)
    assert time.monotonic() - started < 2.0  # generous: a loaded 2-core machine; bench/ measures it


# -- the conformance server catches what it must (so the tests above can fail) ----------------------
class RawClient:
    """A hand-written Runtime API client that can break the protocol on purpose."""

    def __init__(self, server: ConformanceServer) -> None:
        host, port = server.address.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.rfile = self.sock.makefile("rb")

    def next(self) -> str:
        self.sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        headers = self._answer()[1]
        return headers["lambda-runtime-aws-request-id"]

    def _answer(self) -> tuple[int, dict[str, str], bytes]:
        status = int(self.rfile.readline().split()[1])
        headers = {}
        while (line := self.rfile.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, self.rfile.read(int(headers.get("content-length", 0)))

    def post(self, request_id: str, head: str, body: bytes, *, answer: bool = True) -> int:
        path = f"/2018-06-01/runtime/invocation/{request_id}/response"
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body)
        return self._answer()[0] if answer else 0

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


STREAM_HEAD = (
    "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
    "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n"
)


@pytest.mark.parametrize(
    ("event", "head", "body", "status", "violation"),
    [
        ({}, "Content-Length: 2\r\n", b"hi", 400, "not exactly 'streaming'"),
        ({}, "Lambda-Runtime-Function-Response-Mode: Streaming\r\nContent-Length: 0\r\n", b"", 400, "exactly"),
        ({}, STREAM_HEAD, b"2\r\nhi\r\n", 400, "EOF before the last chunk"),
        ({}, STREAM_HEAD, b"2\r\nhiX\r\n0\r\n\r\n", 400, "not followed by CRLF"),
        ({}, STREAM_HEAD.replace(", Lambda-Runtime-Function-Error-Body", ""), b"0\r\n\r\n", 202, "trailers declared"),
        (REST_EVENT, STREAM_HEAD + "Content-Type: " + "application/vnd.awslambda.http-integration-response\r\n",
         b"2\r\nhi\r\n0\r\n\r\n", 202, "no 8-NUL delimiter"),
        (REST_EVENT, STREAM_HEAD + "Content-Type: text/plain\r\n", b"a\r\n{}" + b"\0" * 8 + b"\r\n0\r\n\r\n", 202,
         "content type 'text/plain'"),
        (REST_EVENT, STREAM_HEAD + "Content-Type: " + "application/vnd.awslambda.http-integration-response\r\n",
         b"12\r\n" + b'{"statusCode":"x"}' + b"\r\n8\r\n" + b"\0" * 8 + b"\r\n0\r\n\r\n", 202, "wrong type"),
        ({}, STREAM_HEAD, b"1\r\nx\r\n0\r\nLambda-Runtime-Function-Error-Type: Function.X\r\n"
         b"Lambda-Runtime-Function-Error-Body: not base64!\r\n\r\n", 202, "not strict base64"),
    ],
)  # fmt: skip
def test_the_conformance_server_flags_protocol_breaches(
    server: ConformanceServer, event: Any, head: str, body: bytes, status: int, violation: str
) -> None:
    client = RawClient(server)
    try:
        record = server.invoke(event)
        request_id = client.next()
        if "EOF before" in violation:
            client.post(request_id, head, body, answer=False)
            client.sock.shutdown(socket.SHUT_WR)
            client._answer()
        else:
            assert client.post(request_id, head, body) == status
        answered(record)
        assert any(violation in v for v in record.violations), record.violations
        assert record.answer == status
    finally:
        client.close()


def test_the_conformance_server_refuses_a_second_answer(server: ConformanceServer) -> None:
    client = RawClient(server)
    try:
        record = server.invoke({})
        request_id = client.next()
        assert client.post(request_id, STREAM_HEAD, b"0\r\n\r\n") == 202
        assert client.post(request_id, STREAM_HEAD, b"0\r\n\r\n") == 403
        assert any("second answer" in v for v in record.violations)
    finally:
        client.close()
