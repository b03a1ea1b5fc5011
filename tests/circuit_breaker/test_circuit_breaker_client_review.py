"""Regressions of the client found in review: an interrupted lookup, fork, a shared HALF_OPEN permit,
a bad report killing the sender, async callables in disguise, a reused Guard, class/static methods.

The extension is a small HTTP/1.1 server on a real socket (``FakeExtension``) that answers as the
real one does (``circuitId`` in every answer, keep-alive), and can be told to be slow, to hand out a
limited number of HALF_OPEN permits, or to answer for the wrong circuit. Fork runs in a real child
process of a real subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdk_serverless_patterns.testing.moto import load_runtime_module

cb = load_runtime_module("circuit_breaker_extension", "circuit_breaker_client")
CLIENT_DIR = str(Path(str(cb.__file__)).parent)


class FakeExtension:
    """``GET /circuits/{id}[?acquire=1]`` and ``POST /circuits/{id}/outcomes`` on 127.0.0.1, keep-alive."""

    def __init__(self, states: dict[str, str], *, permits: dict[str, int] | None = None) -> None:
        self.states = states
        self.permits = dict(permits or {})
        self.delay: dict[str, float] = {}  # circuit -> seconds before its lookup is answered
        self.wrong_id = False  # answer lookups for another circuit
        self.acquired = 0
        self.outcomes: list[tuple[str, dict[str, Any]]] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _answer(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        path, _, query = target.partition("?")
        circuit_id = path.split("/")[2]
        if method == "POST":
            with self._lock:
                self.outcomes.append((circuit_id, json.loads(body)))
            return 202, {"circuitId": circuit_id, "accepted": True}
        time.sleep(self.delay.get(circuit_id, 0.0))
        state = self.states.get(circuit_id, "CLOSED")
        permitted = state in ("CLOSED", "DISABLED")
        if state == "HALF_OPEN":
            with self._lock:
                permitted = self.permits.get(circuit_id, 0) > 0
                if permitted and query == "acquire=1":
                    self.permits[circuit_id] -= 1
                    self.acquired += 1
        answered_for = f"not-{circuit_id}" if self.wrong_id else circuit_id
        return 200, {"circuitId": answered_for, "state": state, "version": 1, "cached": True, "permitted": permitted}

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError, ValueError):
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                status, payload = self._answer(method, target, body)
                data = json.dumps(payload).encode()
                conn.sendall(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                    f"Connection: keep-alive\r\n\r\n".encode()
                    + data
                )

    def close(self) -> None:
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def extension() -> Iterator[Callable[..., FakeExtension]]:
    started: list[FakeExtension] = []

    def start(states: dict[str, str] | None = None, **kwargs: Any) -> FakeExtension:
        started.append(FakeExtension(states or {}, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def clients() -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(server: FakeExtension, **kwargs: Any) -> Any:
        made.append(cb.CircuitBreakerClient(port=server.port, token="t", **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()


class CallTimeout(Exception):
    """What a handler's own signal-based deadline raises (not an OSError)."""


@contextlib.contextmanager
def alarm_after(seconds: float, error: type[BaseException]) -> Iterator[None]:
    def on_alarm(*_: Any) -> None:
        raise error()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- 1. an interrupted lookup must not leave its answer on the connection --------------------------
@pytest.mark.parametrize("interruption", [CallTimeout, KeyboardInterrupt])
def test_interrupted_lookup_does_not_desynchronize_the_connection(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any], interruption: type[BaseException]
) -> None:
    server = extension({"open-one": "OPEN", "closed-one": "CLOSED"})
    client = clients(server, memo_ttl=0)
    assert client.status("closed-one").state == "CLOSED"  # the keep-alive connection exists
    server.delay["open-one"] = 0.3
    with pytest.raises(interruption), alarm_after(0.05, interruption):
        client.status("open-one")
    assert client._sock is None  # the connection with the unread answer is gone
    server.delay.clear()
    time.sleep(0.35)  # the late answer has been written by now
    for circuit in ["closed-one", "open-one"] * 10:
        assert client.status(circuit).state == ("OPEN" if circuit == "open-one" else "CLOSED"), circuit


def test_interrupted_pipeline_drops_the_connection(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension()
    client = clients(server)
    wire = client._sender_wire
    assert wire.pipeline([wire.outcome_request("a", True, 1.0)]) == [202]
    assert wire.sock is not None

    def interrupt_on_receive(*_: Any) -> bytes:
        raise KeyboardInterrupt

    real_sock = wire.sock
    wire.sock = _RecvRaises(real_sock, interrupt_on_receive)
    with pytest.raises(KeyboardInterrupt):
        wire.pipeline([wire.outcome_request("a", True, 1.0)])
    assert wire.sock is None
    assert real_sock.fileno() == -1  # closed, not left with an answer in it


class _RecvRaises:
    """A real socket whose ``recv`` is interrupted (what a signal handler raising does)."""

    def __init__(self, sock: socket.socket, recv: Callable[..., bytes]) -> None:
        self._sock = sock
        self.recv = recv

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_answer_for_another_circuit_is_not_trusted_nor_memoized(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension({"payments": "OPEN"})
    client = clients(server, on_extension_error="fail_open")
    server.wrong_id = True
    status = client.status("payments")
    assert (status.decided_by, status.reason, status.state, status.permitted) == (
        "policy",
        "bad answer",
        "UNKNOWN",
        True,
    )
    assert server.connections == 2  # asked once more on a new connection, then gave up
    assert "payments" not in client._memo
    server.wrong_id = False
    assert client.status("payments").state == "OPEN"  # not cooling down: the next lookup asks again


# -- 2. fork ---------------------------------------------------------------------------------------
FORK_SCRIPT = """
import json, os, sys
sys.path.insert(0, {client_dir!r})
from circuit_breaker_client import CircuitBreakerClient
client = CircuitBreakerClient(port={port}, token="t", memo_ttl=0)
assert client.status("a").state == "CLOSED"           # the keep-alive lookup connection exists
client.report("a", success=True, duration_ms=1.0)     # and the sender thread
assert client.flush(2.0)
read, write = os.pipe()
pid = os.fork()
me, circuit, expect = ("child", "b", "OPEN") if pid == 0 else ("parent", "a", "CLOSED")
wrong = sum(client.status(circuit).state != expect for _ in range(200))
result = {{"me": me, "wrong": wrong}}
if pid == 0:
    for _ in range(5):
        client.report("b", success=False, duration_ms=2.0)
    result["flushed"] = client.flush(2.0)
    result["sender_alive"] = client._sender is not None and client._sender.is_alive()
    os.write(write, json.dumps(result).encode())
    os._exit(0)
os.close(write)
os.waitpid(pid, 0)
child = json.loads(os.read(read, 65536))
result["parent_still_works"] = client.status("a").state == "CLOSED"
print(json.dumps([result, child]))
"""


@pytest.mark.slow
def test_fork_child_gets_its_own_connection_and_sender(extension: Callable[..., FakeExtension]) -> None:
    server = extension({"a": "CLOSED", "b": "OPEN"})
    server.delay = {"a": 0.001, "b": 0.001}  # answers long enough in flight to cross if shared
    script = FORK_SCRIPT.format(client_dir=CLIENT_DIR, port=server.port)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    parent, child = json.loads(done.stdout)
    assert parent["wrong"] == 0 and child["wrong"] == 0, (parent, child)
    assert parent["parent_still_works"]
    assert child["flushed"] and child["sender_alive"], child
    assert [o for o in server.outcomes if o[0] == "b"] == [("b", {"success": False, "durationMs": 2.0})] * 5


# -- 3. one HALF_OPEN permit is one call -------------------------------------------------------------
def test_held_permit_is_not_shared_with_child_tasks(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension({"p": "HALF_OPEN"}, permits={"p": 1})
    client = clients(server)
    calls = 0

    @client.protected("p", fallback=lambda i: "fallback")
    async def trial(i: int) -> str:
        nonlocal calls
        calls += 1
        return "called"

    async def main() -> tuple[bool, list[str]]:
        permitted = client.is_call_permitted("p")
        return permitted, list(await asyncio.gather(*(trial(i) for i in range(10))))

    permitted, results = asyncio.run(main())
    assert permitted and server.acquired == 1
    assert calls <= 1 and results.count("called") == calls  # never more calls than permits


def test_held_permit_is_not_shared_with_to_thread(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension({"p": "HALF_OPEN"}, permits={"p": 1})
    client = clients(server)
    trial = client.protected("p", fallback=lambda: "fallback")(lambda: "called")

    async def main() -> list[str]:
        assert client.is_call_permitted("p")
        return list(await asyncio.gather(*(asyncio.to_thread(trial) for _ in range(5))))

    assert asyncio.run(main()).count("called") == 0  # the permit stays with the task that took it
    assert server.acquired == 1


def test_held_permit_is_used_once_by_its_owner(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension({"p": "HALF_OPEN"}, permits={"p": 1})
    client = clients(server)
    trial = client.protected("p", fallback=lambda: "fallback")(lambda: "called")
    assert client.is_call_permitted("p")
    assert [trial(), trial()] == ["called", "fallback"]
    assert server.acquired == 1


# -- 4. a bad report is refused in the caller; the sender never dies ----------------------------------
@pytest.mark.parametrize(
    ("success", "duration_ms", "error", "names"),
    [
        (True, None, TypeError, "duration_ms"),
        (True, "12", TypeError, "duration_ms"),
        (True, float("nan"), ValueError, "duration_ms"),
        (True, float("inf"), ValueError, "duration_ms"),
        ("yes", 1.0, TypeError, "success"),
        (None, 1.0, TypeError, "success"),
    ],
)
def test_bad_report_raises_in_the_caller(
    extension: Callable[..., FakeExtension],
    clients: Callable[..., Any],
    success: Any,
    duration_ms: Any,
    error: type[Exception],
    names: str,
) -> None:
    client = clients(extension())
    for send in (client.report, client.record):
        with pytest.raises(error, match=names):
            send("a", success=success, duration_ms=duration_ms)
    assert not client._outcomes


def test_sender_survives_an_unencodable_report(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension()
    client = clients(server)
    client._report("a", True, None)  # slipped past validation: only that report may be lost
    failing = client.protected("a")(functools.partial(_raise, ConnectionError("down")))
    for _ in range(20):
        with pytest.raises(ConnectionError):
            failing()
    assert client.flush(2.0)
    assert client._sender.is_alive()
    assert (client.outcomes_sent, client.outcomes_failed) == (20, 1)
    assert len(server.outcomes) == 20


def _raise(error: Exception) -> None:
    raise error


# -- 5. async callables the decorator cannot recognize by their code flags ---------------------------
async def _charge(order: int) -> None:
    await asyncio.sleep(0.05)
    raise ConnectionError("payments down")


class _Charger:
    async def __call__(self, order: int) -> None:
        await _charge(order)


def _plain_decorator(function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        return function(*args)

    return wrapper


@pytest.mark.parametrize(
    "function",
    [functools.partial(_charge), _Charger(), _plain_decorator(_charge)],
    ids=["partial", "async __call__", "plain decorator"],
)
def test_async_callable_in_disguise_is_awaited_and_reported(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any], function: Callable[..., Any]
) -> None:
    server = extension()
    client = clients(server)
    wrapped = client.protected("pay")(function)
    with pytest.raises(ConnectionError):
        asyncio.run(wrapped(1))
    assert client.flush(2.0)
    assert [circuit for circuit, _ in server.outcomes] == ["pay"]
    outcome = server.outcomes[0][1]
    assert outcome["success"] is False
    assert outcome["durationMs"] >= 40  # the awaiting was timed, not the creation of the coroutine


def test_partial_and_async_call_give_a_coroutine_function(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    client = clients(extension())
    for function in (functools.partial(_charge), _Charger()):
        assert asyncio.iscoroutinefunction(client.protected("pay")(function))


# -- 7. one Guard used by many at once ---------------------------------------------------------------
def test_reused_guard_times_each_concurrent_task(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension()
    client = clients(server)
    payments = client.guard("p")

    async def call(delay: float, start_after: float) -> None:
        await asyncio.sleep(start_after)
        async with payments:
            await asyncio.sleep(delay)

    async def main() -> None:
        await asyncio.gather(call(0.4, 0), call(0.0, 0.3))  # a slow call, an instant one started within it

    asyncio.run(main())
    assert client.flush(2.0)
    durations = sorted(o["durationMs"] for _, o in server.outcomes)
    assert durations[0] < 250 and durations[1] >= 380, durations  # the slow call is reported as slow


def test_reused_guard_times_each_thread_and_nested_use(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension()
    client = clients(server)
    payments = client.guard("p")
    entered = threading.Event()

    def slow() -> None:
        with payments:
            entered.set()
            time.sleep(0.4)

    thread = threading.Thread(target=slow)
    thread.start()
    assert entered.wait(2)
    time.sleep(0.1)
    with payments:  # another thread, while the slow one is inside
        time.sleep(0.1)
        with payments:  # nested use of the same guard
            pass
    thread.join()
    assert client.flush(2.0)
    inner, outer, slow_one = sorted(o["durationMs"] for _, o in server.outcomes)
    assert inner < 250 and outer >= 90 and slow_one >= 380, (inner, outer, slow_one)  # each timed itself


def test_guards_exited_out_of_order_each_time_themselves(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension()
    client = clients(server)
    first, second = client.guard("first"), client.guard("second")
    first.__enter__()
    time.sleep(0.2)
    second.__enter__()
    first.__exit__(None, None, None)  # not the innermost: its own start time, and second's stays
    time.sleep(0.1)
    second.__exit__(None, None, None)
    second.__exit__(None, None, None)  # exited once more without entering: nothing to report
    assert client.flush(2.0)
    durations = {circuit: outcome["durationMs"] for circuit, outcome in server.outcomes}
    assert len(server.outcomes) == 2 and durations["first"] >= 190 and durations["second"] >= 90, durations


# -- 9. class and static methods -----------------------------------------------------------------------
def test_protected_over_classmethod_and_staticmethod(
    extension: Callable[..., FakeExtension], clients: Callable[..., Any]
) -> None:
    server = extension()
    client = clients(server)

    class Service:
        @client.protected("p")
        @classmethod
        def class_method(cls, x: int) -> tuple[type, int]:
            return cls, x

        @client.protected("p")
        @staticmethod
        def static_method(x: int) -> int:
            return x

    assert Service.class_method(1) == (Service, 1)
    assert Service().class_method(2) == (Service, 2)
    assert Service.static_method(3) == 3
    assert Service().static_method(4) == 4
    assert client.flush(2.0)
    assert len(server.outcomes) == 4
