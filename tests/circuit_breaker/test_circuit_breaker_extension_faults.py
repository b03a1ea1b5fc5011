"""The circuit-breaker extension under faults and hostile input, as a real process.

- DynamoDB that hangs: moto's port taken over by a server that accepts connections and never
  answers (``local.server.BlackHoleServer``). The cache answers within its documented bound, the
  DynamoDB client makes exactly one attempt, a stale read happens once at a time in the background.
- Idle, half-sent, reset and malformed connections against the extension's port: raw sockets
  against the extension running in the Runtime Interface Emulator (as in
  ``test_circuit_breaker_extension.py``), and a hypothesis fuzz of raw request bytes.
- Start-up failures: the layer's launcher as a subprocess against a small Extensions API served
  by this test (the Extensions API is a local HTTP protocol: register, event/next, init/error,
  exit/error), or the emulator's own.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdk_serverless_patterns._paths import asset_path
from cdk_serverless_patterns.local.lambda_environment import wait_for
from cdk_serverless_patterns.local.server import HOST, BlackHoleServer, free_port
from cdk_serverless_patterns.testing.circuit_breaker import CircuitMoto, ProtectedFunction
from cdk_serverless_patterns.testing.moto import load_runtime_module

pytestmark = pytest.mark.slow

LAYER = asset_path("circuit_breaker_extension")
LAUNCHER = LAYER / "extensions" / "circuit-breaker"
config = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.config")
store_module = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.store")
server_module = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.server")
client_module = load_runtime_module("circuit_breaker_extension", "circuit_breaker_client")

#: What the function's client waits for the extension: every bound below must be well under it.
CLIENT_TIMEOUT_S = client_module.DEFAULT_TIMEOUT_S
STALE_WAIT_S = store_module.STALE_WAIT_MS / 1000
FIRST_READ_WAIT_S = store_module.FIRST_READ_WAIT_MS / 1000
REQUEST_TIMEOUT_S = server_module.REQUEST_TIMEOUT_S
MAX_CONNECTIONS = server_module.MAX_CONNECTIONS


@contextlib.contextmanager
def frozen(moto: CircuitMoto) -> Iterator[BlackHoleServer]:
    """DynamoDB freezes: moto's port now accepts connections and never answers; then it comes back."""
    moto.stop()
    with BlackHoleServer(moto.port) as hole:
        yield hole
    moto.restart()


@pytest.fixture
def own_moto() -> Iterator[CircuitMoto]:
    """A moto server of the test's own (it is frozen and restarted)."""
    with CircuitMoto() as server:
        yield server


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call(*args, **kwargs)
    return result, time.monotonic() - started


# -- 1. DynamoDB that hangs: the cache, in process -------------------------------------------------
def test_the_lookup_bounds_stay_well_under_the_clients_timeout() -> None:
    """The client gives up after its timeout and lets its policy decide: the extension's own
    bounds must leave it an answer well before that (at most half of it once boto3 is loaded)."""
    client_ms = CLIENT_TIMEOUT_S * 1000
    assert client_ms / 4 >= store_module.STALE_WAIT_MS
    assert client_ms / 2 >= store_module.FIRST_READ_WAIT_MS
    assert client_ms > store_module.COLD_WAIT_MS
    assert client_ms / 2 >= REQUEST_TIMEOUT_S * 1000
    # One DynamoDB attempt is bounded too (it only ever runs in the background).
    assert store_module.DYNAMODB_ATTEMPTS == 1
    assert (store_module.DYNAMODB_CONNECT_TIMEOUT_S, store_module.DYNAMODB_READ_TIMEOUT_S) == (0.5, 1.0)


def store_over(moto: CircuitMoto, monkeypatch: pytest.MonkeyPatch, cache_ttl_ms: int) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint)
    return store_module.CircuitStore(config.Settings(table=moto.table, cache_ttl_ms=cache_ttl_ms))


def test_the_dynamodb_client_makes_exactly_one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's ``max_attempts`` counts retries: one call against a frozen DynamoDB must cost one
    connection and one read timeout, not two."""
    with BlackHoleServer() as hole:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", hole.endpoint)
        store = store_module.CircuitStore(config.Settings(table="t"))
        client = store.client()
        assert client.meta.config.retries == {"total_max_attempts": 1, "mode": "standard"}
        from botocore.exceptions import ReadTimeoutError

        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            store._get_item("payments")
        assert time.monotonic() - started < 2 * store_module.DYNAMODB_READ_TIMEOUT_S  # one timeout, not two
        assert hole.connections == 1
        time.sleep(0.2)
        assert hole.connections == 1  # and nothing was retried after the timeout either


def test_a_stale_lookup_answers_from_cache_within_the_bound_while_dynamodb_hangs(
    own_moto: CircuitMoto, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_moto.put_circuit("payments", "OPEN", 4)
    store = store_over(own_moto, monkeypatch, cache_ttl_ms=100)
    assert (store.lookup("payments").state, store.lookup("payments").stale) == ("OPEN", False)
    with frozen(own_moto) as hole:
        time.sleep(0.15)  # the entry is now past its TTL
        answers = []
        for _ in range(20):
            answer, elapsed = timed(store.lookup, "payments")
            answers.append((answer.state, answer.version, answer.stale, answer.cached, answer.permitted))
            assert elapsed < STALE_WAIT_S + 0.5 < CLIENT_TIMEOUT_S, elapsed  # bounded by the wait, not the read
        assert set(answers) == {("OPEN", 4, True, True, False)}
        assert hole.connections == 1, "one read at a time (single-flight), however many lookups"

        # Sixteen callers at once: all answered from the cache, within the bound, still one read.
        time.sleep(1.2)  # the hung read timed out; the next one starts after the back-off
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: timed(store.lookup, "payments"), range(64)))
        assert {(a.state, a.stale) for a, _ in results} == {("OPEN", True)}
        assert max(elapsed for _, elapsed in results) < STALE_WAIT_S + 0.5
        assert hole.connections <= 2

        # Nothing cached: UNKNOWN (the server answers 503, the client applies its policy) in time.
        started = time.monotonic()
        with pytest.raises(store_module.StoreUnavailableError, match="did not answer within"):
            store.lookup("also-never-seen")
        assert time.monotonic() - started < FIRST_READ_WAIT_S + 0.5 < CLIENT_TIMEOUT_S
    own_moto.put_circuit("payments", "CLOSED", 5)
    # DynamoDB is back: within the back-off and a read, the state is fresh again.
    fresh = wait_for(lambda: (a := store.lookup("payments")).stale is False and a, timeout=5)
    assert fresh and (fresh.state, fresh.version) == ("CLOSED", 5)


def test_a_healthy_dynamodb_is_still_read_before_answering(
    own_moto: CircuitMoto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound does not turn the TTL into a guess: past the TTL, a lookup waits for a healthy
    DynamoDB and answers the new state (not the cached one)."""
    own_moto.put_circuit("search", "CLOSED", 1)
    store = store_over(own_moto, monkeypatch, cache_ttl_ms=50)
    assert store.lookup("search").state == "CLOSED"
    own_moto.put_circuit("search", "OPEN", 2)
    time.sleep(0.06)
    answer = store.lookup("search")
    assert (answer.state, answer.version, answer.cached, answer.stale) == ("OPEN", 2, False, False)


def test_a_read_that_predates_a_trip_does_not_undo_it(own_moto: CircuitMoto, monkeypatch: pytest.MonkeyPatch) -> None:
    own_moto.put_circuit("ledger", "CLOSED", 1)
    store = store_over(own_moto, monkeypatch, cache_ttl_ms=60_000)
    entry = store.entry("ledger")
    assert store.lookup("ledger").version == 1
    began = store_module._now_ms()
    old = {"circuitId": "ledger", "state": "CLOSED", "version": 1}
    with entry.lock:
        store._store(entry, {"circuitId": "ledger", "state": "OPEN", "version": 2})  # the trip's write
    done = threading.Event()
    store._finish(entry, done, old, None, began)  # a read that started before it ends after it
    assert done.is_set() and (entry.state, entry.version) == ("OPEN", 2)


# -- 1. DynamoDB that hangs: the real extension ----------------------------------------------------
def test_the_extension_answers_from_cache_while_dynamodb_hangs(
    own_moto: CircuitMoto, tmp_path: Path, lambda_environment: Any
) -> None:
    own_moto.put_circuit("payments", "OPEN", 9)
    with lambda_environment(tmp_path, own_moto, CIRCUIT_BREAKER_CACHE_TTL_MS="200") as env:
        assert env.invoke({"circuits": ["payments"]})[0]["state"] == "OPEN"
        with frozen(own_moto) as hole:
            time.sleep(0.3)
            conn = env.connection()
            for _ in range(10):
                (status, body), elapsed = timed(env.ask, "GET", "/circuits/payments", conn=conn)
                assert (status, body["state"], body["version"], body["stale"]) == (200, "OPEN", 9, True)
                assert elapsed < STALE_WAIT_S + 0.5 < CLIENT_TIMEOUT_S, elapsed
            conn.close()
            # Through the client in the function: the cached state decides, not the policy.
            (seen,), elapsed = timed(env.invoke, {"circuits": ["payments"]})
            assert (seen["state"], seen["stale"], seen["permitted"], seen["decided_by"]) == (
                "OPEN",
                True,
                False,
                "extension",
            )
            # Nothing cached: 503 before the client's timeout, so the policy decides in time.
            (status, body), elapsed = timed(env.ask, "GET", "/circuits/never-seen")
            assert status == 503 and body["state"] == "UNKNOWN"
            assert elapsed < FIRST_READ_WAIT_S + 0.5 < CLIENT_TIMEOUT_S, elapsed
            (never,) = env.invoke({"circuits": ["never-seen"]})
            assert (never["decided_by"], never["permitted"]) == ("policy", True)
            assert hole.connections >= 1  # the extension did reach the frozen DynamoDB
        log = env.log()
        assert log.count("DynamoDB unreachable, serving the cached state") == 1  # once per outage, not per lookup


# -- 3. idle, half-sent, reset and malformed connections ----------------------------------------------
@pytest.fixture(scope="module")
def ext(moto: CircuitMoto, tmp_path_factory: pytest.TempPathFactory, lambda_environment: Any) -> Iterator[Any]:
    """One extension for the connection tests; no trips (the fuzz posts outcomes)."""
    moto.put_circuit("payments", "CLOSED", 3)
    with lambda_environment(
        tmp_path_factory.mktemp("rie-faults"),
        moto,
        CIRCUIT_BREAKER_CIRCUITS="payments",
        CIRCUIT_BREAKER_MIN_CALLS="1000000",
        CIRCUIT_BREAKER_CACHE_TTL_MS="60000",
    ) as environment:
        environment.invoke({"circuits": ["payments"]})
        yield environment


def raw(env: ProtectedFunction, data: bytes = b"", timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((HOST, env.port), timeout=timeout)
    if data:
        sock.sendall(data)
    return sock


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout`` passes)."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def statuses(data: bytes) -> list[int]:
    """The status codes of the HTTP responses in ``data``."""
    return [int(line.split(b" ")[1]) for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def lookup_request(env: ProtectedFunction, circuit_id: str = "payments", extra: bytes = b"") -> bytes:
    return (
        f"GET /circuits/{circuit_id} HTTP/1.1\r\nHost: x\r\nX-Circuit-Breaker-Token: {env.token}\r\n".encode()
        + extra
        + b"\r\n"
    )


def assert_serves(env: ProtectedFunction, within: float = 2.0) -> None:
    (status, body), elapsed = timed(env.ask, "GET", "/circuits/payments")
    assert (status, body["state"]) == (200, "CLOSED")
    assert elapsed < within, elapsed


def test_idle_connections_do_not_hold_the_slots(ext: ProtectedFunction) -> None:
    client = client_module.CircuitBreakerClient(port=ext.port, token=ext.token, on_extension_error="fail_closed")
    assert client.status("payments").decided_by == "extension"  # the function's keep-alive connection
    idle = [raw(ext) for _ in range(MAX_CONNECTIONS + 16)]  # connect and send nothing, ever
    try:
        time.sleep(0.2)
        for _ in range(5):
            assert_serves(ext, within=1.0)  # each new caller gets a slot at once
        # The function's own connection was the longest idle: it was closed to make room, and the
        # client asks again on a new connection.
        status = client.status("payments")
        assert (status.decided_by, status.state) == ("extension", "CLOSED")
        closed = 0
        for sock in idle:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                closed += sock.recv(1) == b""
        assert closed >= 16  # the oldest idle connections were the ones closed
    finally:
        client.close()
        for sock in idle:
            sock.close()


def test_half_sent_requests_get_408_within_the_request_deadline(ext: ProtectedFunction) -> None:
    half = lookup_request(ext)[:30]
    socks = [raw(ext, half) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        # Every slot holds a request under way: a new caller gets 503 at once, not a hang.
        late = raw(ext, lookup_request(ext))
        assert statuses(read_all(late, timeout=1.0)) == [503]
        late.close()
        started = time.monotonic()
        answers = [statuses(read_all(sock, timeout=REQUEST_TIMEOUT_S + 3)) for sock in socks]
        assert answers == [[408]] * MAX_CONNECTIONS
        assert time.monotonic() - started < REQUEST_TIMEOUT_S + 2
        assert_serves(ext)
    finally:
        for sock in socks:
            sock.close()


def test_a_request_trickling_in_is_bounded_by_one_deadline_not_per_read(ext: ProtectedFunction) -> None:
    sock = raw(ext)
    started = time.monotonic()
    answer = b""
    try:
        for byte in lookup_request(ext)[:-2]:  # a byte every 50 ms: each read is quick, the whole is not
            sock.sendall(bytes([byte]))
            time.sleep(0.05)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            sock.setblocking(True)
            if answer:
                break
        answer += read_all(sock, timeout=2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    assert statuses(answer) == [408]
    assert time.monotonic() - started < REQUEST_TIMEOUT_S + 1.5


def test_a_caller_resetting_while_the_server_is_full_does_not_stop_the_accept_loop(ext: ProtectedFunction) -> None:
    half = lookup_request(ext)[:30]
    socks = [raw(ext, half) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        for _ in range(30):  # connect and reset at once: the 503 meets a dead socket
            sock = socket.create_connection((HOST, ext.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        for sock in socks:
            read_all(sock, timeout=REQUEST_TIMEOUT_S + 3)
        assert_serves(ext)  # the accept loop is alive
        late = raw(ext, lookup_request(ext, extra=b"Connection: close\r\n"))
        assert statuses(read_all(late)) == [200]
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"+5", 400),
        (b"0x10", 400),
        ("٣".encode(), 400),  # an Arabic-Indic digit: str.isdigit() says yes, HTTP says no
        ("²".encode("latin-1"), 400),  # isdigit() but int() refuses it
        (b"-1", 400),
        (b"1_0", 400),
        (b"5, 5", 400),
        (b"", 400),
        (b"99999999999999999999", 413),
        (b"9" * 5000, 413),  # int() of more than 4300 digits raises
    ],
)
def test_a_non_decimal_content_length_gets_4xx(ext: ProtectedFunction, value: bytes, expected: int) -> None:
    request = (
        f"POST /circuits/payments/outcomes HTTP/1.1\r\nX-Circuit-Breaker-Token: {ext.token}\r\n".encode()
        + b"Content-Length: "
        + value
        + b"\r\n\r\n{}"
    )
    sock = raw(ext, request)
    assert statuses(read_all(sock)) == [expected]  # answered, then closed
    sock.close()
    assert_serves(ext)


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GET /circuits/payments HTTP/1.1\r\n" + b"X-Flood: 1\r\n" * 100 + b"\r\n", 431),
        (b"GET /circuits/payments HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /circuits/payments HTTP/1.1\r\nX-Endless: " + b"a" * 20_000, 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /circuits/payments\r\n\r\n", 400),
        (b"GET /circuits/payments HTTP/2.0\r\n\r\n", 400),
        (b"G\xc3\x89T /circuits/payments HTTP/1.1\r\n\r\n", 400),
        (b"GET /circuits/payments HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /circuits/payments HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        (b"GET /circuits/payments HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", 400),
        (b"POST /circuits/payments/outcomes HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
        (b"POST /circuits/payments/outcomes HTTP/1.1\r\nContent-Length: 20000\r\n\r\n", 413),
        (b"\r\n\r\n", 400),
    ],
)
def test_hostile_heads_get_4xx(ext: ProtectedFunction, request_bytes: bytes, expected: int) -> None:
    sock = raw(ext, request_bytes)
    assert statuses(read_all(sock)) == [expected]
    sock.close()
    assert_serves(ext)


_header_text = st.text(st.characters(max_codepoint=0x2FF, blacklist_categories=("Cs",)), max_size=40)
_raw_bytes = st.binary(max_size=1500)


@st.composite
def requests(draw: st.DrawFn, token: str) -> bytes:
    """A request that is nearly right: real methods and routes, the right token or not, odd headers."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "G ET", ""]) | _header_text)
    circuit = draw(st.sampled_from(["payments", "fuzz-circuit", "", "..", "a" * 70, "%00"]) | _header_text)
    suffix = draw(st.sampled_from(["", "/outcomes", "/outcomes/x", "?acquire=1", "?acquire=1&acquire=1"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "http/1.1", ""]))
    headers = draw(st.lists(st.tuples(_header_text, _header_text), max_size=6))
    if draw(st.booleans()):
        headers.append(("X-Circuit-Breaker-Token", token))
    body = draw(st.sampled_from([b"", b'{"success": false, "durationMs": 1}', b"null", b"[]", b"{"]) | _raw_bytes)
    length = draw(st.sampled_from([str(len(body)), str(len(body) + 5), "-1", "+1", "0x1", "\u0661"]) | _header_text)
    head = f"{method} /circuits/{circuit}{suffix} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    head += f"Content-Length: {length}\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_requests_get_4xx_or_a_close_and_change_nothing(ext: ProtectedFunction, data: st.DataObject) -> None:
    payload = data.draw(_raw_bytes | requests(ext.token), label="request")
    sock = raw(ext)
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # nothing more is coming: the server must not wait for it
        answer = read_all(sock, timeout=REQUEST_TIMEOUT_S + 3)
    finally:
        sock.close()
    codes = statuses(answer)
    assert all(code < 500 for code in codes), (payload, answer)
    if not payload.startswith((b"GET ", b"POST ")) or ext.token.encode() not in payload:
        assert all(400 <= code < 500 for code in codes), (payload, answer)  # no route without the token
    # The server still serves, and nothing the fuzz sent changed the circuit.
    status, body = ext.ask("GET", "/circuits/payments")
    assert (status, body["state"], body["version"]) == (200, "CLOSED", 3)


# -- 4. start-up failures, SIGTERM ---------------------------------------------------------------
class ExtensionsApi:
    """The Extensions API of one execution environment, as Lambda serves it (the parts an extension
    uses): register (answering ``register_status``), event/next (held until ``shutdown``), and
    init/error and exit/error, recorded with their headers and bodies."""

    def __init__(self, register_status: int = 200) -> None:
        self.calls: list[tuple[str, str, dict[str, str], bytes]] = []
        self.waiting = threading.Event()
        self.release = threading.Event()
        self.register_status = register_status
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                api.calls.append((self.command, self.path, headers, body))

            def do_POST(self) -> None:
                self._record()
                if self.path == "/2020-01-01/extension/register":
                    if api.register_status != 200:
                        self._answer(api.register_status, {"errorType": "Extension.Refused", "errorMessage": "no"})
                        return
                    self._answer(200, {"functionName": "f"}, {"Lambda-Extension-Identifier": "ext-id-1"})
                else:
                    self._answer(202, {"status": "OK"})

            def do_GET(self) -> None:
                self._record()
                api.waiting.set()
                api.release.wait(30)
                self._answer(200, {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0})

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.address = f"{HOST}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path.rsplit("/extension/", 1)[-1] for _, path, _, _ in self.calls]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[ExtensionsApi]:
    server = ExtensionsApi()
    yield server
    server.close()


def launch(address: str, tmp_path: Path, python_dir: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
    """The layer's launcher, as Lambda starts it (``python3`` from PATH, the layer's own ``python/``)."""
    environment = {
        "PATH": f"{python_dir or Path(sys.executable).parent}:/usr/bin:/bin",
        "AWS_LAMBDA_RUNTIME_API": address,
        "AWS_SESSION_TOKEN": "token",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",  # Lambda sets both; botocore reads this one
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_DYNAMODB": f"http://{HOST}:{free_port()}",  # nothing listens: never reached
        "CIRCUIT_BREAKER_TABLE": "states",
        "CIRCUIT_BREAKER_PORT": str(free_port()),
        **env,
    }
    return subprocess.Popen(
        [str(LAUNCHER)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path
    )


def finished(process: subprocess.Popen[bytes], timeout: float = 10.0) -> tuple[int, list[str]]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out.decode(errors="replace").splitlines()


def one_error_line(lines: list[str], error_type: str) -> dict[str, Any]:
    assert len(lines) == 1, lines  # one line, no traceback
    record: dict[str, Any] = json.loads(lines[0])
    assert (record["level"], record["errorType"]) == ("ERROR", error_type)
    return record


@pytest.fixture
def no_boto3_python(tmp_path: Path) -> Path:
    """A folder whose ``python3`` is this interpreter without site-packages (``-S``): no boto3."""
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    wrapper.chmod(0o755)
    probe = subprocess.run([str(wrapper), "-c", "import boto3"], capture_output=True, env={"PYTHONPATH": ""})
    assert probe.returncode != 0, "boto3 must not be importable here"
    return folder


def test_an_unreachable_extensions_api_ends_with_one_line(tmp_path: Path) -> None:
    address = f"{HOST}:{free_port()}"  # nothing listens
    (code, lines), elapsed = timed(finished, launch(address, tmp_path))
    assert code == 1
    record = one_error_line(lines, "Extension.RegisterFailed")
    assert address in record["message"] and "ConnectionRefusedError" in record["message"]
    assert elapsed < 5


@pytest.mark.parametrize("status", [403, 500])
def test_a_refused_registration_ends_with_one_line(tmp_path: Path, status: int) -> None:
    api = ExtensionsApi(register_status=status)
    try:
        code, lines = finished(launch(api.address, tmp_path))
    finally:
        api.close()
    assert code == 1
    record = one_error_line(lines, "Extension.RegisterFailed")
    assert f"register answered {status}" in record["message"]
    assert api.paths() == ["register"]  # without an identifier there is nothing more to call


def test_an_interpreter_without_boto3_reports_an_init_error(
    api: ExtensionsApi, tmp_path: Path, no_boto3_python: Path
) -> None:
    code, lines = finished(launch(api.address, tmp_path, python_dir=no_boto3_python, PYTHONPATH=""))
    assert code == 1
    record = one_error_line(lines, "Extension.MissingDependency")
    assert "boto3" in record["message"]
    assert api.paths() == ["register", "init/error"]  # never ready: no event/next
    _, _, headers, body = api.calls[1]
    assert headers["lambda-extension-identifier"] == "ext-id-1"
    assert headers["lambda-extension-function-error-type"] == "Extension.MissingDependency"
    assert json.loads(body)["errorType"] == "Extension.MissingDependency"
    assert "boto3" in json.loads(body)["errorMessage"]


def test_bad_configuration_reports_an_init_error_with_its_type(api: ExtensionsApi, tmp_path: Path) -> None:
    code, lines = finished(launch(api.address, tmp_path, CIRCUIT_BREAKER_TABLE=""))
    assert code == 1
    assert "CIRCUIT_BREAKER_TABLE is not set" in one_error_line(lines, "Extension.ConfigError")["message"]
    assert api.paths() == ["register", "init/error"]
    assert api.calls[1][2]["lambda-extension-function-error-type"] == "Extension.ConfigError"


def test_lambda_reports_the_missing_boto3_as_the_init_error(
    moto: CircuitMoto, tmp_path: Path, lambda_environment: Any, no_boto3_python: Path
) -> None:
    """In the Runtime Interface Emulator: the invoke fails in the init phase with our error type."""
    path = f"{no_boto3_python}:{Path(sys.executable).parent}:/usr/bin:/bin"
    with lambda_environment(tmp_path, moto, PATH=path) as env:
        with pytest.raises(urllib.error.HTTPError) as failed:
            env.invoke({"circuits": []})
        assert failed.value.code == 502
        assert wait_for(lambda: "Extension.MissingDependency" in env.log())
        assert "Traceback" not in env.log()


def test_sigterm_exits_cleanly(api: ExtensionsApi, tmp_path: Path) -> None:
    port = free_port()
    process = launch(api.address, tmp_path, CIRCUIT_BREAKER_PORT=str(port))
    try:
        assert api.waiting.wait(10), "the extension never asked for an event"
        assert wait_for(lambda: _answers(port))  # serving
        process.send_signal(signal.SIGTERM)
        code, lines = finished(process, timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    records = [json.loads(line) for line in lines]
    assert records[-1]["message"] == "shutdown" and records[-1]["reason"] == "SIGTERM"
    assert not [r for r in records if r["level"] == "ERROR"]
    assert not _answers(port)  # the port closed with the process


def test_sigterm_before_the_server_runs_also_exits_cleanly(tmp_path: Path) -> None:
    """A register call that is still under way when SIGTERM comes: exit 0, nothing printed."""
    with BlackHoleServer() as hole:  # an Extensions API that never answers the register call
        process = launch(f"{HOST}:{hole.port}", tmp_path)
        assert wait_for(lambda: hole.received > 0, timeout=10)
        process.send_signal(signal.SIGTERM)
        code, lines = finished(process, timeout=5)
    assert (code, lines) == (0, [])


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/circuits/x", headers={"X-Circuit-Breaker-Token": "token"})
        return conn.getresponse().status in (200, 404, 503)
    except OSError:
        return False
    finally:
        conn.close()


def test_the_start_up_check_for_boto3_imports_nothing() -> None:
    """The boto3 check finds the package without importing it (boto3 costs ~250 ms of cold start)."""
    probe = (
        "import sys\n"
        "import circuit_breaker_ext.main as m\n"
        "print(m._importable('boto3'), m._importable('no_such_module_here'), 'boto3' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(LAYER / "python")}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False", "False"]
