"""The client against extensions that hang, refuse, reject the token or are busy (raw sockets, no extension).

What is asserted: the policy decides at once while a failed extension cools down (bounded time for
many calls, generous upper bounds only), the extension is asked again after ``retry_after``, each
reason is logged exactly once per process, and outcome reports never block the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cdk_serverless_patterns.local.server import free_port
from cdk_serverless_patterns.testing.moto import load_runtime_module

cb = load_runtime_module("circuit_breaker_extension", "circuit_breaker_client")

Answer = Callable[[bytes], bytes | None]  # request head -> raw response (None: never answer)


def _http(status: int, body: bytes, *, close: bool = False) -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    ).encode() + body


class RawExtension:
    """A TCP server on 127.0.0.1 that reads HTTP requests and answers what ``answer`` says (or nothing)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.requests.append(head)
                response = self.answer(head)
                if response is None:
                    continue  # a black hole: read on, never answer
                conn.sendall(response)
                if b"Connection: close" in response:
                    conn.close()
                    return
        except OSError:
            return

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop_connections()

    def drop_connections(self) -> None:
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def raw_extension() -> Iterator[Callable[[Answer], RawExtension]]:
    servers: list[RawExtension] = []

    def start(answer: Answer) -> RawExtension:
        servers.append(RawExtension(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def fresh_log_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "Once per process": each test starts as a new execution environment would."""
    monkeypatch.setattr(cb, "_logged", set())


def _policy_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(r, "reason", "") for r in caplog.records if r.name == "circuit_breaker_client"]


def _calls(breaker: cb.CircuitBreakerClient, n: int) -> list[str]:
    """n calls, each through both protected and guard (what used to pay the timeout twice)."""
    results = []
    charge = breaker.protected("payments", fallback=lambda: "fallback")(lambda: "called")
    for _ in range(n):
        results.append(charge())
        try:
            with breaker.guard("payments"):
                results.append("guarded")
        except cb.CircuitOpenError:
            results.append("short-circuited")
    return results


def test_a_hanging_extension_costs_one_timeout_then_the_policy_decides_at_once(
    raw_extension: Callable[[Answer], RawExtension], caplog: pytest.LogCaptureFixture
) -> None:
    hole = raw_extension(lambda head: None)  # accepts, reads, never answers
    breaker = cb.CircuitBreakerClient(port=hole.port, token="t", on_extension_error="fail_open", timeout=0.3)
    started = time.monotonic()
    results = _calls(breaker, 200)
    elapsed = time.monotonic() - started
    assert results == ["called", "guarded"] * 200
    assert elapsed < 2.0, elapsed  # 400 lookups; without the cool-down: 400 x 0.3 s
    assert len([r for r in hole.requests if r.startswith(b"GET")]) == 1  # asked once in retry_after (5 s)
    status = breaker.status("payments")
    assert (status.decided_by, status.reason, status.permitted) == ("policy", "timed out", True)
    assert _policy_logs(caplog) == ["timed out"]  # one record for 400 policy decisions


def test_fail_closed_sends_calls_to_the_fallback_at_once_while_the_extension_hangs(
    raw_extension: Callable[[Answer], RawExtension], caplog: pytest.LogCaptureFixture
) -> None:
    hole = raw_extension(lambda head: None)
    breaker = cb.CircuitBreakerClient(port=hole.port, token="t", on_extension_error="fail_closed", timeout=0.3)
    started = time.monotonic()
    assert _calls(breaker, 100) == ["fallback", "short-circuited"] * 100
    assert time.monotonic() - started < 2.0


def test_a_timeout_bounds_the_whole_request_not_each_read(raw_extension: Callable[[Answer], RawExtension]) -> None:
    """An extension that trickles its answer a byte every 50 ms still costs about one timeout, not one per read."""
    server = raw_extension(lambda head: None)

    def serve_trickling(conn: socket.socket) -> None:
        conn.recv(65536)
        for byte in _http(200, b'{"state":"CLOSED","permitted":true}'):
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.05)

    server._serve = serve_trickling  # type: ignore[method-assign]
    breaker = cb.CircuitBreakerClient(port=server.port, token="t", timeout=0.4)
    started = time.monotonic()
    status = breaker.status("payments")
    assert time.monotonic() - started < 1.5  # the whole answer would take ~5 s
    assert (status.decided_by, status.reason) == ("policy", "timed out")


def test_a_refusing_port_is_not_asked_again_during_the_cool_down(caplog: pytest.LogCaptureFixture) -> None:
    breaker = cb.CircuitBreakerClient(port=free_port(), token="t", on_extension_error="fail_open", timeout=0.5)
    started = time.monotonic()
    assert _calls(breaker, 500) == ["called", "guarded"] * 500
    assert time.monotonic() - started < 2.0
    assert breaker.status("payments").reason == "refused"
    assert _policy_logs(caplog) == ["refused"]


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (_http(403, b'{"error":"missing or wrong X-Circuit-Breaker-Token"}'), "wrong token"),
        (_http(503, b'{"error":"too many connections"}', close=True), "busy"),
    ],
)
def test_a_wrong_token_or_a_busy_extension_is_remembered_and_logged_once(
    raw_extension: Callable[[Answer], RawExtension], caplog: pytest.LogCaptureFixture, response: bytes, reason: str
) -> None:
    server = raw_extension(lambda head: response)
    breaker = cb.CircuitBreakerClient(port=server.port, token="t", on_extension_error="fail_closed")
    assert _calls(breaker, 50) == ["fallback", "short-circuited"] * 50
    assert len(server.requests) == 1
    other = cb.CircuitBreakerClient(port=server.port, token="t", on_extension_error="fail_closed")
    assert other.is_call_permitted("payments") is False  # a second client: asked, but not logged again
    assert _policy_logs(caplog) == [reason]
    assert other.status("payments").reason == reason


def test_per_circuit_answers_do_not_silence_the_extension(
    raw_extension: Callable[[Answer], RawExtension], caplog: pytest.LogCaptureFixture
) -> None:
    """404 (unknown circuit) and a 503 for one circuit (DynamoDB unreachable, nothing cached) are not the
    extension failing: the next call asks again (each reason still logged once)."""

    def answer(head: bytes) -> bytes:
        if b"/circuits/nowhere" in head:
            return _http(404, b'{"circuitId":"nowhere","state":"UNKNOWN"}')
        return _http(503, b'{"circuitId":"cold","state":"UNKNOWN","error":"DynamoDB unreachable"}')

    server = raw_extension(answer)
    breaker = cb.CircuitBreakerClient(port=server.port, token="t", on_extension_error="fail_open")
    for _ in range(3):
        assert breaker.status("nowhere").reason == "unknown circuit"
        assert breaker.status("cold").reason == "state unavailable"
    assert len(server.requests) == 6
    assert sorted(_policy_logs(caplog)) == ["state unavailable", "unknown circuit"]


def test_the_extension_is_asked_again_after_retry_after(raw_extension: Callable[[Answer], RawExtension]) -> None:
    healthy = threading.Event()

    def answer(head: bytes) -> bytes:
        if healthy.is_set():
            return _http(200, b'{"circuitId":"payments","state":"OPEN","version":3,"permitted":false}')
        return _http(503, b'{"error":"too many connections"}', close=True)

    server = raw_extension(answer)
    breaker = cb.CircuitBreakerClient(port=server.port, token="t", retry_after=0.2, memo_ttl=0)
    assert breaker.status("payments").decided_by == "policy"
    healthy.set()
    assert breaker.status("payments").decided_by == "policy"  # still cooling down: not asked
    assert len(server.requests) == 1
    time.sleep(0.3)
    status = breaker.status("payments")
    assert (status.decided_by, status.state, status.permitted) == ("extension", "OPEN", False)
    assert len(server.requests) == 2


def test_outcome_reports_never_block_and_a_full_queue_drops_and_counts(
    raw_extension: Callable[[Answer], RawExtension], caplog: pytest.LogCaptureFixture
) -> None:
    hole = raw_extension(lambda head: None)  # the sender hangs on its first report
    breaker = cb.CircuitBreakerClient(port=hole.port, token="t", timeout=0.2, outcome_queue_size=5)
    started = time.monotonic()
    queued = [breaker.report("payments", success=False, duration_ms=1) for _ in range(100)]
    assert time.monotonic() - started < 0.2  # 100 reports to a hung extension, none waited for it
    # at most the queue (5) plus the batch the sender took before it hung
    assert 5 <= queued.count(True) <= 5 + cb.SEND_BATCH and breaker.outcomes_dropped == queued.count(False)
    assert queued.count(False) >= 100 - 5 - cb.SEND_BATCH
    assert [r for r in _policy_logs(caplog) if r == "outcome queue full"] == ["outcome queue full"]
    assert breaker.flush(timeout=0.1) is False  # bounded: it does not wait for the hung extension
    assert breaker.flush(timeout=10) is True  # each batch: two attempts of 0.2 s, then counted as failed
    assert breaker.outcomes_failed == queued.count(True) and breaker.outcomes_sent == 0
    assert "outcome not delivered" in _policy_logs(caplog)


def test_the_sender_reconnects_when_the_extension_closed_its_idle_connection(
    raw_extension: Callable[[Answer], RawExtension],
) -> None:
    """What happens after a Lambda freeze: the extension has dropped the idle connection meanwhile."""
    server = raw_extension(lambda head: _http(202, b'{"accepted":true}'))
    breaker = cb.CircuitBreakerClient(port=server.port, token="t")
    assert breaker.report("payments", success=True, duration_ms=3) is True
    assert breaker.flush(timeout=5) and breaker.outcomes_sent == 1
    server.drop_connections()  # the server side closes every connection
    assert breaker.report("payments", success=False, duration_ms=3) is True
    assert breaker.flush(timeout=5) and (breaker.outcomes_sent, breaker.outcomes_failed) == (2, 0)
    assert server.connections == 2
    bodies = [head.split(b"\r\n")[0] for head in server.requests]
    assert bodies == [b"POST /circuits/payments/outcomes HTTP/1.1"] * 2


def test_log_records_carry_the_reason_and_the_policy(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="circuit_breaker_client")
    breaker = cb.CircuitBreakerClient(port=free_port(), token="t", on_extension_error="fail_closed")
    breaker.is_call_permitted("payments")
    (record,) = [r for r in caplog.records if r.name == "circuit_breaker_client"]
    assert record.levelno == logging.WARNING
    assert (getattr(record, "reason", None), getattr(record, "policy", None)) == ("refused", "fail_closed")
    assert "fail_closed" in record.getMessage() and "refused" in record.getMessage()


# -- the in-process memo and async callers, counted at the socket ------------------------------
def _state_server(raw_extension: Callable[[Answer], RawExtension], states: dict[str, str]) -> RawExtension:
    def answer(head: bytes) -> bytes:
        if head.startswith(b"POST"):
            return _http(202, b'{"accepted":true}')
        circuit_id = head.split(b" ")[1].split(b"/")[2].split(b"?")[0].decode()
        state = states[circuit_id]
        permitted = "true" if state in ("CLOSED", "DISABLED", "HALF_OPEN") else "false"
        return _http(
            200, f'{{"circuitId":"{circuit_id}","state":"{state}","version":1,"permitted":{permitted}}}'.encode()
        )

    return raw_extension(answer)


def _lookups(server: RawExtension) -> int:
    return len([r for r in server.requests if r.startswith(b"GET")])


def test_the_memo_answers_repeated_lookups_in_process_for_at_most_memo_ttl(
    raw_extension: Callable[[Answer], RawExtension],
) -> None:
    states = {"payments": "CLOSED", "broken": "OPEN", "probing": "HALF_OPEN"}
    server = _state_server(raw_extension, states)
    breaker = cb.CircuitBreakerClient(port=server.port, token="t", memo_ttl=0.3)
    charge = breaker.protected("payments")(lambda: "called")
    assert [charge() for _ in range(1000)] == ["called"] * 1000
    assert _lookups(server) == 1  # one round trip, then the memo
    assert breaker.status("payments").memoized is True
    states["payments"] = "OPEN"
    assert (
        wait_until(lambda: not breaker.is_call_permitted("payments"), timeout=3.0) < 0.3 + 1.5
    )  # bounded staleness (generous)
    for _ in range(100):
        assert breaker.is_call_permitted("broken") is False
    assert _lookups(server) == 3  # OPEN is memoized too
    for _ in range(5):
        breaker.is_call_permitted("probing")
    assert _lookups(server) == 8  # HALF_OPEN never: every call needs its own permit


def test_a_reported_failure_drops_the_memo(raw_extension: Callable[[Answer], RawExtension]) -> None:
    server = _state_server(raw_extension, {"payments": "CLOSED"})
    breaker = cb.CircuitBreakerClient(port=server.port, token="t", memo_ttl=60)

    @breaker.protected("payments")
    def charge(fail: bool) -> str:
        if fail:
            raise ConnectionError("down")
        return "ok"

    charge(False)
    charge(False)
    assert _lookups(server) == 1
    with pytest.raises(ConnectionError):
        charge(True)
    charge(False)  # asks the extension again: it may have tripped the circuit on that failure
    assert _lookups(server) == 2


def test_memo_ttl_zero_asks_every_time(raw_extension: Callable[[Answer], RawExtension]) -> None:
    server = _state_server(raw_extension, {"payments": "CLOSED"})
    breaker = cb.CircuitBreakerClient(port=server.port, token="t", memo_ttl=0)
    for _ in range(20):
        assert breaker.is_call_permitted("payments")
    assert _lookups(server) == 20


def test_an_async_lookup_to_a_hanging_extension_does_not_block_the_event_loop(
    raw_extension: Callable[[Answer], RawExtension],
) -> None:
    hole = raw_extension(lambda head: None)
    breaker = cb.CircuitBreakerClient(port=hole.port, token="t", timeout=0.5, on_extension_error="fail_open")

    @breaker.protected("payments")
    async def charge() -> str:
        return "called"

    async def main() -> tuple[list[str], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        results = [await charge()]
        async with breaker.guard("payments"):
            results.append("guarded")
        done.set()
        await task
        return results, ticks

    started = time.monotonic()
    results, ticks = asyncio.run(main())
    assert results == ["called", "guarded"]
    assert time.monotonic() - started < 2.0  # one timeout (0.5 s), then the cool-down
    assert ticks >= 10  # the loop kept running while the lookup waited in a worker thread


def wait_until(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``predicate()`` held (polling every 5 ms); fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "never held"
        time.sleep(0.005)
    return time.monotonic() - started


def test_reports_are_pipelined_and_the_unanswered_rest_is_sent_again(
    raw_extension: Callable[[Answer], RawExtension],
) -> None:
    answered = []

    def answer(head: bytes) -> bytes:
        answered.append(head)
        # the first answer closes the connection: the requests pipelined behind it are never answered
        return _http(202, b'{"accepted":true}', close=len(answered) == 1)

    server = raw_extension(answer)
    breaker = cb.CircuitBreakerClient(port=server.port, token="t")
    for index in range(40):
        breaker.report("payments", success=index % 2 == 0, duration_ms=index)
    assert breaker.flush(timeout=5) is True
    assert (breaker.outcomes_sent, breaker.outcomes_failed, breaker.outcomes_dropped) == (40, 0, 0)
    assert len(answered) == 40  # each report answered once: none lost, none sent twice after an answer
    assert server.connections <= 3  # the first, then one or two for the rest: never one per report
