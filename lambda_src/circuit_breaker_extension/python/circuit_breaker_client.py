"""Function-side client of the circuit-breaker extension (standard library only).

The extension layer puts this module on the function's path (``/opt/python``); it imports
without CDK or boto3 (nor asyncio, which it imports only once an ``async def`` is called), so a
user's own tests can import it too. Typical use::

    from circuit_breaker_client import CircuitOpenError, guard, is_call_permitted, protected

    @protected("payments", fallback=lambda order: {"status": "queued"},
               failure_exceptions=(TimeoutError, ConnectionError),
               is_failure=lambda response: response.status >= 500)
    def charge(order): ...               # short-circuits to the fallback while payments is OPEN

    @protected("payments")
    async def charge_async(order): ...   # coroutine functions too; lookups never block the loop

    with guard("payments"):              # raises CircuitOpenError while OPEN (also `async with`)
        call_payments()                  # exceptions are reported as failures, and re-raised

    if is_call_permitted("payments"): ...  # then report with record_outcome(...)

States: CLOSED and DISABLED let calls pass; OPEN and FORCED_OPEN short-circuit; HALF_OPEN lets a
limited number of trial calls through (the extension hands out the permits; one call takes one
permit, also when ``is_call_permitted`` is followed by ``guard`` or ``protected``).

Hot path: an answer of the extension for a CLOSED, DISABLED, OPEN or FORCED_OPEN circuit is
memoized in the process for ``memo_ttl`` (0.25 s by default: the staleness it adds on top of
the extension's own cache), so a protected call costs microseconds, not a socket round trip;
HALF_OPEN answers are never memoized (each call needs a permit), and a reported failure drops
the circuit's memo. Outcomes of ``protected`` and ``guard`` go to a bounded in-process queue that
a background thread sends to the extension: a call never waits for its report (see
``CircuitBreakerClient.flush`` for the delivery guarantee).

When the extension cannot answer (not running, wrong token, timeout, too busy, or a circuit it
does not know) the *policy* decides: ``fail_open`` (the default: calls pass, so a broken breaker
never takes down a healthy service) or ``fail_closed`` (calls go to the fallback). The policy
comes from the ``on_extension_error`` argument, else ``$CIRCUIT_BREAKER_ON_EXTENSION_ERROR``, else
``fail_open``. An extension that refused, timed out, rejected the token or was busy is not asked
again for ``retry_after`` (5 s by default): meanwhile the policy decides at once. Each reason for
deciding by policy is logged once per process (a WARNING of the ``circuit_breaker_client``
logger, with the reason in ``record.reason``), not once per call.

A lookup interrupted mid-answer (a signal-based timeout, KeyboardInterrupt) closes its connection;
after ``os.fork()`` the child's clients get their own connections, memo, queue and sender thread.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import CoroutineType, TracebackType
from typing import Any, ParamSpec, TypeVar, cast

__all__ = [
    "FAIL_CLOSED",
    "FAIL_OPEN",
    "CircuitBreakerClient",
    "CircuitOpenError",
    "CircuitStatus",
    "Guard",
    "default_client",
    "flush_outcomes",
    "guard",
    "is_call_permitted",
    "protected",
    "record_outcome",
]

FAIL_OPEN = "fail_open"
FAIL_CLOSED = "fail_closed"
POLICIES = (FAIL_OPEN, FAIL_CLOSED)
DEFAULT_PORT = 4243
DEFAULT_TIMEOUT_S = 2.0
#: How long an answer of the extension is reused in the process (the staleness it adds).
DEFAULT_MEMO_TTL_S = 0.25
#: How long an extension that failed (refused, timed out, wrong token, busy) is not asked again.
DEFAULT_RETRY_AFTER_S = 5.0
#: Outcome reports waiting for the background sender; beyond that they are dropped and counted.
DEFAULT_OUTCOME_QUEUE = 1000
#: A HALF_OPEN permit taken by ``is_call_permitted`` is used by the next ``guard``/``protected`` of
#: the same circuit in the same thread or task within this many seconds, instead of a second one.
PERMIT_HOLD_S = 10.0
#: Outcome reports the background sender writes at once (HTTP/1.1 pipelining on its connection).
SEND_BATCH = 64
TOKEN_HEADER = "X-Circuit-Breaker-Token"
CIRCUIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # what the construct accepts
_CO_GENERATOR = 0x20  # inspect.CO_GENERATOR, without importing inspect on the function's cold start
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE
_CO_ASYNC_GENERATOR = 0x200  # inspect.CO_ASYNC_GENERATOR
PASSING_STATES = ("CLOSED", "DISABLED")
MEMOIZED_STATES = ("CLOSED", "DISABLED", "OPEN", "FORCED_OPEN")
HALF_OPEN = "HALF_OPEN"

# Why the policy decided (``CircuitStatus.reason`` and the ``reason`` of the log record).
REASON_WRONG_TOKEN = "wrong token"
REASON_REFUSED = "refused"
REASON_TIMED_OUT = "timed out"
REASON_BUSY = "busy"
REASON_CONNECTION = "connection failed"
REASON_PROTOCOL = "bad answer"
REASON_UNKNOWN_CIRCUIT = "unknown circuit"
REASON_UNAVAILABLE = "state unavailable"
REASON_SERVER_ERROR = "extension error"
#: Reasons that say the extension itself is unusable: it is not asked again for ``retry_after``.
EXTENSION_DOWN_REASONS = frozenset(
    {REASON_WRONG_TOKEN, REASON_REFUSED, REASON_TIMED_OUT, REASON_BUSY, REASON_CONNECTION, REASON_PROTOCOL}
)

P = ParamSpec("P")
R = TypeVar("R")
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]

logger = logging.getLogger("circuit_breaker_client")
_logged: set[str] = set()
_logged_lock = threading.Lock()


def _log_once(key: str, message: str, **fields: Any) -> None:
    """Logs ``message`` the first time ``key`` is seen in this process (execution environment)."""
    if key in _logged:
        return
    with _logged_lock:
        if key in _logged:
            return
        _logged.add(key)
    logger.warning(message, extra=fields)


class CircuitOpenError(RuntimeError):
    """The circuit does not let the call through (OPEN, FORCED_OPEN, no trial left, or policy).

    Raised inside a call protected by another circuit, it passes through that circuit without
    counting as its failure (nor its success), and that circuit's fallback does not run."""

    def __init__(self, status: CircuitStatus) -> None:
        super().__init__(f"circuit {status.circuit_id!r} is {status.state}: call short-circuited")
        self.status = status


class _ExtensionError(Exception):
    """The extension could not be asked (connection, protocol, token or server error)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CircuitStatus:
    """What the client learned about a circuit, and whether a call may go through."""

    circuit_id: str
    state: str  # CLOSED | OPEN | HALF_OPEN | FORCED_OPEN | DISABLED | UNKNOWN
    permitted: bool
    version: int | None = None
    stale: bool = False  # the extension served a cached state because DynamoDB was unreachable
    cached: bool = False  # the extension answered from its cache
    decided_by: str = "extension"  # "extension", or "policy" when the extension could not decide
    error: str | None = None
    reason: str | None = None  # when decided by policy: one of the REASON_* values
    memoized: bool = False  # reused from the client's in-process memo (at most memo_ttl old)


class _Outcomes:
    """Which outcomes of a protected call count as failures of the service."""

    __slots__ = ("failure_exceptions", "ignored_exceptions", "is_failure")

    def __init__(
        self,
        failure_exceptions: ExceptionTypes | None,
        ignored_exceptions: ExceptionTypes | None,
        is_failure: Callable[[Any], bool] | None,
        failure_on: ExceptionTypes | None = None,
    ) -> None:
        if failure_on is not None and failure_exceptions is not None:
            raise ValueError("give failure_exceptions or its older name failure_on, not both")
        self.failure_exceptions = _exception_types(
            failure_exceptions if failure_exceptions is not None else failure_on, "failure_exceptions", (Exception,)
        )
        self.ignored_exceptions = _exception_types(ignored_exceptions, "ignored_exceptions", ())
        if is_failure is not None and not callable(is_failure):
            raise ValueError(f"is_failure must be a callable taking the result, got {is_failure!r}")
        self.is_failure = is_failure

    def failed(self, error: BaseException | None, result: Any) -> bool | None:
        """True: a failure; False: a success; None: not counted at all."""
        if error is None:
            if self.is_failure is None or result is _NO_RESULT:
                return False
            try:
                return bool(self.is_failure(result))
            except Exception as predicate_error:
                _log_once(
                    "is_failure raised",
                    f"is_failure raised {type(predicate_error).__name__}: {predicate_error}; counted as a success",
                    reason="is_failure raised",
                )
                return False
        if isinstance(error, CircuitOpenError) or not isinstance(error, Exception):
            return None  # an inner circuit short-circuited, or cancelled / interrupted: says nothing
        if self.ignored_exceptions and isinstance(error, self.ignored_exceptions):
            return None
        return isinstance(error, self.failure_exceptions)


def _exception_types(
    value: ExceptionTypes | None, name: str, default: tuple[type[BaseException], ...]
) -> tuple[type[BaseException], ...]:
    if value is None:
        return default
    types = (value,) if isinstance(value, type) else value
    if not isinstance(types, tuple) or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise ValueError(f"{name} must be an exception type or a tuple of them, got {value!r}")
    return types


_NO_RESULT: Any = object()
_DEFAULT_OUTCOMES = _Outcomes(None, None, None)


def _owner() -> tuple[int, int, int]:
    """Who is calling: the process, the thread and the asyncio task (0 outside of one)."""
    task = 0
    asyncio = sys.modules.get("asyncio")  # not imported: no task can be running
    if asyncio is not None:
        try:
            current = asyncio.current_task()
        except RuntimeError:  # no running event loop in this thread
            current = None
        task = id(current) if current is not None else 0
    return os.getpid(), threading.get_ident(), task


class _HeldPermit:
    """A HALF_OPEN permit taken by ``is_call_permitted``: used once, by the thread or task that took it.

    Context variables are copied into child tasks and ``asyncio.to_thread``; the owner check and the
    one-shot claim make sure that a copy never lets a second call through on the same permit."""

    __slots__ = ("_claim", "owner", "status", "taken_at")

    def __init__(self, status: CircuitStatus) -> None:
        self.status = status
        self.taken_at = time.monotonic()
        self.owner = _owner()
        self._claim = threading.Lock()

    def claim(self) -> CircuitStatus | None:
        """The permit's status the first time the owner claims it in time; None otherwise."""
        if self.owner != _owner() or not self._claim.acquire(blocking=False):
            return None
        return self.status if time.monotonic() - self.taken_at < PERMIT_HOLD_S else None


#: HALF_OPEN permits taken by is_call_permitted, per thread or task: circuit id -> permit.
_held_permits: ContextVar[dict[str, _HeldPermit] | None] = ContextVar("circuit_breaker_held_permits", default=None)
#: Every client of the process, to reset in the child after ``os.fork()``.
_clients: weakref.WeakSet[CircuitBreakerClient] = weakref.WeakSet()
#: Start times of the guards entered in this thread or task, a linked stack (innermost first) of
#: (guard, perf_counter() or -1, the frame below).
_GuardFrame = tuple[Any, float, Any]
_guard_starts: ContextVar[_GuardFrame | None] = ContextVar("circuit_breaker_guard_starts", default=None)


class _Wire:
    """One keep-alive HTTP/1.1 connection to the extension; ``lock`` serializes its use."""

    def __init__(self, host: str, port: int, header_tail: str, timeout: float) -> None:
        self.host = host
        self.port = port
        self.header_tail = header_tail
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()

    def drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def forget(self) -> None:
        """In a forked child: closes the child's copy of the parent's connection (no shutdown, which
        would end it for the parent too) and replaces a lock another thread may have held at the fork."""
        self.lock = threading.Lock()
        self.drop()

    def request(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """One request, bounded as a whole by ``timeout`` (call with ``lock`` held)."""
        request = (
            f"{method} {path} HTTP/1.1\r\n{self.header_tail}Content-Length: {len(body)}\r\n"
            + ("Content-Type: application/json\r\n\r\n" if body else "\r\n")
        ).encode("latin-1") + body
        deadline = time.monotonic() + self.timeout
        for attempt in range(2):
            reused = self.sock is not None
            try:
                if self.sock is None:
                    self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _remaining(self.sock, deadline)
                self.sock.sendall(request)
                status_code, payload, keep_alive, _ = _read_response(self.sock, deadline)
            except (OSError, ValueError, IndexError) as error:  # IndexError: a garbled status line
                self.drop()
                if reused and attempt == 0 and not isinstance(error, TimeoutError) and time.monotonic() < deadline:
                    continue  # the extension closed an idle connection: once more on a new one
                raise _ExtensionError(_reason_of(error), f"{type(error).__name__}: {error}") from error
            except BaseException:
                # Interrupted between send and answer (a signal-based timeout, KeyboardInterrupt): the
                # answer would be left unread and taken for the next request's, so the connection goes.
                self.drop()
                raise
            if not keep_alive:
                self.drop()
            if status_code == 403:
                raise _ExtensionError(REASON_WRONG_TOKEN, f"the extension refused the token: {payload.get('error')}")
            if status_code == 503 and "circuitId" not in payload:
                raise _ExtensionError(REASON_BUSY, f"the extension is busy: {payload.get('error')}")
            return status_code, payload
        raise _ExtensionError(REASON_CONNECTION, "unreachable")  # pragma: no cover

    def pipeline(self, requests: list[bytes]) -> list[int]:
        """Sends ``requests`` in one write and reads their answers in order, all within ``timeout``
        (call with ``lock`` held). Returns the statuses of the requests answered, a prefix of them;
        raises _ExtensionError when none was."""
        deadline = time.monotonic() + self.timeout
        statuses: list[int] = []
        try:
            if self.sock is None:
                self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _remaining(self.sock, deadline)
            self.sock.sendall(b"".join(requests))
            buffer = b""
            while len(statuses) < len(requests):
                status_code, _, keep_alive, buffer = _read_response(self.sock, deadline, buffer)
                statuses.append(status_code)
                if not keep_alive:
                    self.drop()
                    break
        except (OSError, ValueError, IndexError) as error:
            self.drop()
            if not statuses:
                raise _ExtensionError(_reason_of(error), f"{type(error).__name__}: {error}") from error
        except BaseException:
            self.drop()  # interrupted: unread answers must not be taken for the next requests'
            raise
        return statuses

    def outcome_request(self, circuit_id: str, success: bool, duration_ms: float) -> bytes:
        body = _outcome_body(success, duration_ms)
        return (
            f"POST /circuits/{circuit_id}/outcomes HTTP/1.1\r\n{self.header_tail}Content-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\n\r\n"
        ).encode("latin-1") + body


def _reason_of(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return REASON_TIMED_OUT
    if isinstance(error, ConnectionRefusedError):
        return REASON_REFUSED
    if isinstance(error, OSError):
        return REASON_CONNECTION
    return REASON_PROTOCOL


def _remaining(sock: socket.socket, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(left)


class CircuitBreakerClient:
    """Keep-alive connections to the extension on 127.0.0.1, an in-process memo and a background
    outcome sender. Thread-safe; one per process is enough (``default_client()``)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        token: str | None = None,
        on_extension_error: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        host: str = "127.0.0.1",
        memo_ttl: float = DEFAULT_MEMO_TTL_S,
        retry_after: float = DEFAULT_RETRY_AFTER_S,
        outcome_queue_size: int = DEFAULT_OUTCOME_QUEUE,
    ) -> None:
        """
        Args:
            port: The extension's port. Default: ``$CIRCUIT_BREAKER_PORT``, else 4243.
            token: The token the extension checks. Default: ``$AWS_SESSION_TOKEN`` (the function's).
            on_extension_error: ``"fail_open"`` or ``"fail_closed"``, see the module docstring.
                Default: ``$CIRCUIT_BREAKER_ON_EXTENSION_ERROR``, else ``"fail_open"``.
            timeout: Seconds one request to the extension may take in all (connect, send, answer;
                a cold extension may still be reading DynamoDB). Default: 2.
            host: Default: 127.0.0.1 (the extension listens nowhere else).
            memo_ttl: Seconds an answer for a CLOSED, DISABLED, OPEN or FORCED_OPEN circuit is reused
                without asking the extension; 0 asks every time. Default: 0.25.
            retry_after: Seconds the policy decides at once after the extension refused, timed out,
                rejected the token or was busy, before it is asked again. Default: 5.
            outcome_queue_size: Outcome reports waiting to be sent; more are dropped and counted
                in ``outcomes_dropped``. Default: 1000.
        """
        policy = on_extension_error or os.environ.get("CIRCUIT_BREAKER_ON_EXTENSION_ERROR", "").strip() or FAIL_OPEN
        if policy not in POLICIES:
            raise ValueError(f"on_extension_error must be one of {', '.join(POLICIES)}, got {policy!r}")
        for name, value in (("timeout", timeout), ("memo_ttl", memo_ttl), ("retry_after", retry_after)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != value:
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be above 0, got {timeout!r}")
        if isinstance(outcome_queue_size, bool) or not isinstance(outcome_queue_size, int) or outcome_queue_size < 1:
            raise ValueError(f"outcome_queue_size must be a positive integer, got {outcome_queue_size!r}")
        self.policy = policy
        self.port = port if port is not None else int(os.environ.get("CIRCUIT_BREAKER_PORT", "") or DEFAULT_PORT)
        self.host = host
        self.timeout = float(timeout)
        self.memo_ttl = float(memo_ttl)
        self.retry_after = float(retry_after)
        self.outcome_queue_size = outcome_queue_size
        token_value = token if token is not None else os.environ.get("AWS_SESSION_TOKEN", "")
        header_tail = f"Host: {host}:{self.port}\r\n{TOKEN_HEADER}: {token_value}\r\n"
        self._wire = _Wire(host, self.port, header_tail, self.timeout)  # lookups (and record())
        self._sender_wire = _Wire(host, self.port, header_tail, self.timeout)  # background outcome reports
        self._memo: dict[str, tuple[float, CircuitStatus]] = {}
        self._down_until = 0.0
        self._down_reason = ""
        self._down_error = ""
        self._outcomes: deque[tuple[str, bool, float]] = deque()
        self._wake = threading.Event()
        self._sender: threading.Thread | None = None
        self._sender_lock = threading.Lock()
        self._sending = False
        #: Outcome reports the extension took, that were dropped because the queue was full, and
        #: that could not be delivered (the extension down or not answering, after one retry).
        self.outcomes_sent = 0
        self.outcomes_dropped = 0
        self.outcomes_failed = 0
        _clients.add(self)

    def _after_fork_in_child(self) -> None:
        """The child of ``os.fork()`` gets its own connections, memo, outcome queue and sender thread:
        the parent's connections would cross answers, and its sender thread does not exist in the child.
        Reports the parent had queued are the parent's to send: the child drops them."""
        self._wire.forget()
        self._sender_wire.forget()
        self._memo = {}
        self._outcomes = deque()
        self._wake = threading.Event()
        self._sender = None
        self._sender_lock = threading.Lock()
        self._sending = False

    @property
    def _sock(self) -> socket.socket | None:
        """The lookup connection (for tests: keep-alive means it stays the same)."""
        return self._wire.sock

    # -- asking the extension -----------------------------------------------------------------
    def status(self, circuit_id: str, *, acquire: bool = False) -> CircuitStatus:
        """The circuit's state and whether a call may go through; never raises for the extension.

        ``acquire=True`` takes a HALF_OPEN trial permit when one is left (what a caller about to
        make the call wants); without it the answer only says whether one is left.
        """
        _check_id(circuit_id)
        return self._status(circuit_id, acquire)

    def _fast_status(self, circuit_id: str) -> CircuitStatus | None:
        """The answer without I/O when there is one: the memo, or the policy while the extension is down."""
        now = time.monotonic()
        memo = self._memo.get(circuit_id)
        if memo is not None and memo[0] > now:
            return memo[1]
        if now < self._down_until:
            return self._by_policy(circuit_id, "UNKNOWN", self._down_reason, self._down_error)
        return None

    def _status(self, circuit_id: str, acquire: bool) -> CircuitStatus:
        fast = self._fast_status(circuit_id)
        if fast is not None:
            return fast
        path = f"/circuits/{circuit_id}" + ("?acquire=1" if acquire else "")
        wire = self._wire
        with wire.lock:
            if time.monotonic() < self._down_until:  # another thread just found the extension down
                return self._by_policy(circuit_id, "UNKNOWN", self._down_reason, self._down_error)
            for attempt in range(2):
                try:
                    status_code, payload = wire.request("GET", path, b"")
                except _ExtensionError as error:
                    if error.reason in EXTENSION_DOWN_REASONS and self.retry_after > 0:
                        self._down_reason, self._down_error = error.reason, str(error)
                        self._down_until = time.monotonic() + self.retry_after
                    return self._by_policy(circuit_id, "UNKNOWN", error.reason, str(error))
                answered_for = payload.get("circuitId", circuit_id)
                if answered_for == circuit_id:
                    break
                # The answer of another request (a connection out of step): never trust nor memoize
                # it; the connection goes, and the question is asked once more on a new one.
                wire.drop()
                if attempt:
                    return self._by_policy(
                        circuit_id,
                        "UNKNOWN",
                        REASON_PROTOCOL,
                        f"the extension answered for circuit {answered_for!r} when asked for {circuit_id!r}",
                    )
        state = str(payload.get("state", "UNKNOWN"))
        if status_code == 404:
            return self._by_policy(
                circuit_id, state, REASON_UNKNOWN_CIRCUIT, f"the extension does not know circuit {circuit_id!r}"
            )
        if status_code == 503:
            return self._by_policy(
                circuit_id, state, REASON_UNAVAILABLE, f"the extension answered 503: {payload.get('error')}"
            )
        if status_code != 200:
            return self._by_policy(
                circuit_id, state, REASON_SERVER_ERROR, f"the extension answered {status_code}: {payload.get('error')}"
            )
        permitted = payload.get("permitted")
        if not isinstance(permitted, bool):
            permitted = state in PASSING_STATES
        version = payload.get("version")
        status = CircuitStatus(
            circuit_id=circuit_id,
            state=state,
            permitted=permitted,
            version=version if isinstance(version, int) and not isinstance(version, bool) else None,
            stale=bool(payload.get("stale")),
            cached=bool(payload.get("cached")),
        )
        if self.memo_ttl > 0 and state in MEMOIZED_STATES:
            self._memo[circuit_id] = (time.monotonic() + self.memo_ttl, replace(status, memoized=True))
        return status

    def is_call_permitted(self, circuit_id: str) -> bool:
        """True when a call to the circuit's service may go through now (takes a trial permit).

        In HALF_OPEN, the permit is held for the next ``guard``/``protected`` of the same circuit in
        the same thread or task (within ``PERMIT_HOLD_S``), which uses it instead of taking another;
        child tasks and ``asyncio.to_thread`` that copied the context never use it, and it is used once."""
        _check_id(circuit_id)
        status = self._status(circuit_id, True)
        if status.permitted and status.state == HALF_OPEN and status.decided_by == "extension":
            held = dict(_held_permits.get() or {})
            held[circuit_id] = _HeldPermit(status)
            _held_permits.set(held)
        return status.permitted

    def _take_held(self, circuit_id: str) -> CircuitStatus | None:
        held = _held_permits.get()
        if not held or circuit_id not in held:
            return None
        permit = held[circuit_id]
        rest = dict(held)
        del rest[circuit_id]
        _held_permits.set(rest)
        return permit.claim()

    def _acquire(self, circuit_id: str) -> CircuitStatus:
        return self._take_held(circuit_id) or self._status(circuit_id, True)

    async def _acquire_async(self, circuit_id: str) -> CircuitStatus:
        status = self._take_held(circuit_id) or self._fast_status(circuit_id)
        if status is not None:
            return status
        import asyncio  # only here: the caller's event loop has imported it already

        return await asyncio.get_running_loop().run_in_executor(None, self._status, circuit_id, True)

    def record(self, circuit_id: str, *, success: bool, duration_ms: float) -> bool:
        """Reports one call's outcome and waits for the extension to take it; False if it did not
        (never raises). ``guard`` and ``protected`` use the non-blocking background sender instead."""
        _check_id(circuit_id)
        _check_outcome(success, duration_ms)
        self._take_held(circuit_id)
        if not success:
            self._memo.pop(circuit_id, None)
        if time.monotonic() < self._down_until:
            return False
        try:
            with self._wire.lock:
                status_code, _ = self._wire.request(
                    "POST", f"/circuits/{circuit_id}/outcomes", _outcome_body(success, duration_ms)
                )
        except _ExtensionError:
            return False
        return status_code == 202

    def report(self, circuit_id: str, *, success: bool, duration_ms: float) -> bool:
        """Queues one call's outcome for the background sender and returns at once: True if queued,
        False if the queue was full (the report is dropped and counted in ``outcomes_dropped``)."""
        _check_id(circuit_id)
        _check_outcome(success, duration_ms)
        self._take_held(circuit_id)
        return self._report(circuit_id, success, duration_ms)

    def _report(self, circuit_id: str, success: bool, duration_ms: float) -> bool:
        if not success:
            self._memo.pop(circuit_id, None)  # the next call asks the extension, which may have tripped
        outcomes = self._outcomes
        if len(outcomes) >= self.outcome_queue_size:
            with self._sender_lock:
                self.outcomes_dropped += 1
            _log_once(
                "outcome queue full",
                f"outcome reports are dropped: {self.outcome_queue_size} are already waiting for the extension",
                reason="outcome queue full",
            )
            return False
        outcomes.append((circuit_id, success, duration_ms))
        if self._sender is None:
            self._start_sender()
        if not self._wake.is_set():
            self._wake.set()
        return True

    def _start_sender(self) -> None:
        with self._sender_lock:
            if self._sender is None:
                sender = threading.Thread(target=self._send_loop, name="circuit-breaker-outcomes", daemon=True)
                sender.start()
                self._sender = sender

    def _send_loop(self) -> None:
        outcomes, wake, wire = self._outcomes, self._wake, self._sender_wire
        while True:
            wake.wait()
            wake.clear()
            try:
                while outcomes:
                    self._sending = True
                    self._send_batch(outcomes, wire)
            except Exception as error:  # never let the sender die: later reports must still go out
                with self._sender_lock:
                    self.outcomes_failed += 1
                _log_once(
                    "outcome sender error",
                    f"the outcome sender hit {type(error).__name__}: {error}; it goes on (logged once)",
                    reason="outcome sender error",
                )
            finally:
                self._sending = False

    def _send_batch(self, outcomes: deque[tuple[str, bool, float]], wire: _Wire) -> None:
        batch: list[bytes] = []
        while outcomes and len(batch) < SEND_BATCH:
            circuit_id, success, duration_ms = outcomes.popleft()
            try:
                batch.append(wire.outcome_request(circuit_id, success, duration_ms))
            except (TypeError, ValueError) as error:  # a bad report: it alone is lost, and counted
                with self._sender_lock:
                    self.outcomes_failed += 1
                _log_once(
                    "outcome not encodable",
                    f"an outcome report could not be encoded ({type(error).__name__}: {error}); it is dropped",
                    reason="outcome not encodable",
                )
        if not batch:
            return
        delivered, reason = 0, self._down_reason
        if time.monotonic() >= self._down_until:
            pending = batch
            for _ in range(2):  # the rest once more on a new connection, e.g. after a freeze mid-send
                try:
                    with wire.lock:
                        statuses = wire.pipeline(pending)
                except _ExtensionError as error:
                    reason = error.reason
                    continue
                delivered += statuses.count(202)
                if any(code != 202 for code in statuses):
                    reason = f"answered {sorted(set(statuses) - {202})}"
                pending = pending[len(statuses) :]
                if not pending:
                    break
        with self._sender_lock:
            self.outcomes_sent += delivered
            self.outcomes_failed += len(batch) - delivered
        if delivered < len(batch):
            _log_once(
                "outcome not delivered",
                f"outcome reports did not reach the extension ({reason}); they are not retried",
                reason="outcome not delivered",
            )

    def flush(self, timeout: float = 1.0) -> bool:
        """Waits up to ``timeout`` seconds until the queued outcome reports are sent; True if none is left.

        Delivery is at most once: a report is sent by a background thread, retried once on a new
        connection, then counted in ``outcomes_failed``. Lambda freezes the environment after the
        handler returns; reports still queued then are sent when it thaws for the next invocation,
        and are lost if it is shut down instead. Call ``flush()`` at the end of the handler when
        every report must reach the extension before the invocation ends."""
        deadline = time.monotonic() + timeout
        while self._outcomes or self._sending:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True

    # -- wrapping calls -----------------------------------------------------------------------
    def guard(
        self,
        circuit_id: str,
        *,
        failure_exceptions: ExceptionTypes | None = None,
        ignored_exceptions: ExceptionTypes | None = None,
        failure_on: ExceptionTypes | None = None,
    ) -> Guard:
        """Context manager (``with`` or ``async with``): raises CircuitOpenError when the call may not go
        through, else runs the block and reports its outcome, see ``protected`` for which count."""
        _check_id(circuit_id)
        return Guard(self, circuit_id, _outcomes(failure_exceptions, ignored_exceptions, None, failure_on))

    def protected(
        self,
        circuit_id: str,
        *,
        fallback: Callable[..., Any] | None = None,
        failure_exceptions: ExceptionTypes | None = None,
        ignored_exceptions: ExceptionTypes | None = None,
        is_failure: Callable[[Any], bool] | None = None,
        failure_on: ExceptionTypes | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: while the circuit does not let calls through, returns ``fallback(*args,
        **kwargs)`` (or raises CircuitOpenError without a fallback); otherwise calls the function
        and reports its outcome. Works on ``async def`` functions (an async fallback is awaited).

        Outcomes: an exception of ``failure_exceptions`` (default: any ``Exception``; ``failure_on``
        is its older name) is a failure; another exception is a success (the service answered);
        an exception of ``ignored_exceptions``, a ``CircuitOpenError`` of an inner circuit, and a
        ``BaseException`` that is no ``Exception`` (cancellation) are not reported at all. A result
        for which ``is_failure(result)`` is true (an HTTP 5xx returned without raising) is a failure.
        Exceptions are always re-raised; results always returned."""
        _check_id(circuit_id)
        outcomes = _outcomes(failure_exceptions, ignored_exceptions, is_failure, failure_on)
        return _decorator(lambda: self, circuit_id, fallback, outcomes)

    def close(self) -> None:
        """Closes the connections (they are opened again when needed)."""
        for wire in (self._wire, self._sender_wire):
            with wire.lock:
                wire.drop()

    # -- the calls themselves -------------------------------------------------------------------
    def _call(
        self,
        circuit_id: str,
        outcomes: _Outcomes,
        fallback: Callable[..., Any] | None,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        status = self._acquire(circuit_id)
        if not status.permitted:
            if fallback is None:
                raise CircuitOpenError(status)
            return fallback(*args, **kwargs)
        if status.decided_by != "extension":
            return function(*args, **kwargs)  # nobody to report to
        started = time.perf_counter()
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            self._settle(circuit_id, outcomes, started, error, _NO_RESULT)
            raise
        if isinstance(result, CoroutineType):  # an async function in disguise: the work is in the awaiting
            return self._settle_awaited(circuit_id, outcomes, started, result)
        self._settle(circuit_id, outcomes, started, None, result)
        return result

    async def _settle_awaited(
        self, circuit_id: str, outcomes: _Outcomes, started: float, coroutine: Coroutine[Any, Any, Any]
    ) -> Any:
        try:
            result = await coroutine
        except BaseException as error:
            self._settle(circuit_id, outcomes, started, error, _NO_RESULT)
            raise
        self._settle(circuit_id, outcomes, started, None, result)
        return result

    async def _call_async(
        self,
        circuit_id: str,
        outcomes: _Outcomes,
        fallback: Callable[..., Any] | None,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        status = await self._acquire_async(circuit_id)
        if not status.permitted:
            if fallback is None:
                raise CircuitOpenError(status)
            answer = fallback(*args, **kwargs)
            return (await answer) if hasattr(answer, "__await__") else answer
        if status.decided_by != "extension":
            return await function(*args, **kwargs)  # nobody to report to
        started = time.perf_counter()
        try:
            result = await function(*args, **kwargs)
        except BaseException as error:
            self._settle(circuit_id, outcomes, started, error, _NO_RESULT)
            raise
        self._settle(circuit_id, outcomes, started, None, result)
        return result

    def _settle(
        self, circuit_id: str, outcomes: _Outcomes, started: float, error: BaseException | None, result: Any
    ) -> None:
        failed = outcomes.failed(error, result)
        if failed is not None:
            self._report(circuit_id, not failed, (time.perf_counter() - started) * 1000.0)

    # -- deciding by policy ---------------------------------------------------------------------
    def _by_policy(self, circuit_id: str, state: str, reason: str, error: str) -> CircuitStatus:
        _log_once(
            f"policy:{reason}",
            f"circuit breaker: deciding by policy {self.policy} ({reason}): {error}; circuit {circuit_id!r}"
            + (
                f"; the extension is not asked again for {self.retry_after:g} s"
                if reason in EXTENSION_DOWN_REASONS
                else ""
            )
            + " (logged once per reason)",
            reason=reason,
            circuitId=circuit_id,
            policy=self.policy,
        )
        return CircuitStatus(
            circuit_id=circuit_id,
            state=state,
            permitted=self.policy == FAIL_OPEN,
            decided_by="policy",
            error=error,
            reason=reason,
        )


class Guard:
    """What ``guard()`` returns: a context manager for ``with`` and for ``async with``."""

    __slots__ = ("_circuit_id", "_client", "_outcomes")

    def __init__(
        self, client: CircuitBreakerClient | Callable[[], CircuitBreakerClient], circuit_id: str, outcomes: _Outcomes
    ) -> None:
        self._client = client
        self._circuit_id = circuit_id
        self._outcomes = outcomes

    # The start time lives in the thread's or task's context, not on the instance: one Guard kept in
    # a module (``PAYMENTS = guard("payments")``) may be in use by many at once, and nested.
    def _push(self, status: CircuitStatus) -> None:
        _guard_starts.set(
            (self, time.perf_counter() if status.decided_by == "extension" else -1.0, _guard_starts.get())
        )

    def _pop(self) -> float:
        top = _guard_starts.get()
        if top is not None and top[0] is self:  # the usual case: the innermost guard exits
            _guard_starts.set(top[2])
            return top[1]
        above: list[_GuardFrame] = []  # exited out of order (an ExitStack): unlink this guard's frame
        frame = top
        while frame is not None and frame[0] is not self:
            above.append(frame)
            frame = frame[2]
        if frame is None:
            return -1.0  # not entered in this context: nothing to time
        rest = frame[2]
        for kept in reversed(above):
            rest = (kept[0], kept[1], rest)
        _guard_starts.set(rest)
        return frame[1]

    def _breaker(self) -> CircuitBreakerClient:
        client = self._client
        return client if isinstance(client, CircuitBreakerClient) else client()

    def __enter__(self) -> CircuitStatus:
        status = self._breaker()._acquire(self._circuit_id)
        if not status.permitted:
            raise CircuitOpenError(status)
        _guard_starts.set(  # inline: the hot path of `with guard(...)`
            (self, time.perf_counter() if status.decided_by == "extension" else -1.0, _guard_starts.get())
        )
        return status

    def __exit__(
        self, exc_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        top = _guard_starts.get()
        if top is not None and top[0] is self:  # inline: the usual case of _pop
            _guard_starts.set(top[2])
            started = top[1]
        else:
            started = self._pop()
        if started >= 0:  # -1: the policy let the call through, there is nobody to report to
            self._breaker()._settle(self._circuit_id, self._outcomes, started, error, _NO_RESULT)

    async def __aenter__(self) -> CircuitStatus:
        status = await self._breaker()._acquire_async(self._circuit_id)
        if not status.permitted:
            raise CircuitOpenError(status)
        self._push(status)
        return status

    async def __aexit__(
        self, exc_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, error, traceback)


def _outcomes(
    failure_exceptions: ExceptionTypes | None,
    ignored_exceptions: ExceptionTypes | None,
    is_failure: Callable[[Any], bool] | None,
    failure_on: ExceptionTypes | None,
) -> _Outcomes:
    if failure_exceptions is None and ignored_exceptions is None and is_failure is None and failure_on is None:
        return _DEFAULT_OUTCOMES
    return _Outcomes(failure_exceptions, ignored_exceptions, is_failure, failure_on)


def _decorator(
    client: Callable[[], CircuitBreakerClient],
    circuit_id: str,
    fallback: Callable[..., Any] | None,
    outcomes: _Outcomes,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        if isinstance(function, classmethod | staticmethod):  # @protected over @classmethod / @staticmethod
            return cast(Callable[P, R], type(function)(decorate(function.__func__)))
        flags = _code_flags(function)
        if flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR):
            raise TypeError(
                f"{getattr(function, '__qualname__', function)!r} is a generator function: the decorator would time "
                "the creation of the generator, not the work; use `with guard(...)` inside it instead"
            )
        if flags & _CO_COROUTINE:
            coroutine_function = cast(Callable[..., Coroutine[Any, Any, Any]], function)

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await client()._call_async(circuit_id, outcomes, fallback, coroutine_function, args, kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return cast(R, client()._call(circuit_id, outcomes, fallback, function, args, kwargs))

        return wrapper

    return decorate


def _code_flags(function: Any) -> int:
    """The code flags of what runs when ``function`` is called: through ``functools.partial``, and of
    ``__call__`` for other callable objects. (``__wrapped__`` is not followed: a sync decorator may
    well run the async function it wraps to completion; an async function under a plain decorator is
    caught by its result instead, see ``_call``.)"""
    for _ in range(100):  # bounded
        if isinstance(function, functools.partial):
            function = function.func
            continue
        code = getattr(function, "__code__", None)
        if code is not None:
            return int(getattr(code, "co_flags", 0))
        call = getattr(type(function), "__call__", None)  # noqa: B004 (the method, not callability)
        if call is None or isinstance(function, type) or not hasattr(call, "__code__"):
            return 0
        function = call
    return 0


def _outcome_body(success: bool, duration_ms: float) -> bytes:
    return json.dumps({"success": bool(success), "durationMs": max(float(duration_ms), 0.0)}).encode()


def _check_outcome(success: bool, duration_ms: float) -> None:
    """Bad arguments of a report raise here, in the caller, not later in the background sender."""
    if not isinstance(success, bool):
        raise TypeError(f"success must be True or False, got {success!r}")
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int | float):
        raise TypeError(f"duration_ms must be a number of milliseconds, got {duration_ms!r}")
    if not math.isfinite(duration_ms):
        raise ValueError(f"duration_ms must be a finite number of milliseconds, got {duration_ms!r}")


def _check_id(circuit_id: str) -> None:
    if not isinstance(circuit_id, str) or not CIRCUIT_ID.fullmatch(circuit_id):
        raise ValueError(f"{circuit_id!r} is not a circuit id: letters, digits, '_', '.', '-' (at most 63)")


def _read_response(
    sock: socket.socket, deadline: float, buffer: bytes = b""
) -> tuple[int, dict[str, Any], bool, bytes]:
    """One answer from ``buffer`` and the socket; returns it with the bytes after it (pipelined answers)."""
    end = buffer.find(b"\r\n\r\n")
    while end < 0:
        _remaining(sock, deadline)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the extension closed the connection")
        buffer += chunk
        end = buffer.find(b"\r\n\r\n")
        if end < 0 and len(buffer) > 65536:
            raise ValueError("the extension sent an oversized head")
    head, body = buffer[:end].decode("latin-1"), buffer[end + 4 :]
    status_line, *header_lines = head.split("\r\n")
    status_code = int(status_line.split(" ", 2)[1])
    length = 0
    keep_alive = True
    for line in header_lines:
        name, _, value = line.partition(":")
        lowered = name.strip().lower()
        if lowered == "content-length":
            length = int(value.strip())
        elif lowered == "connection":
            keep_alive = value.strip().lower() != "close"
    if length < 0 or length > 1 << 20:
        raise ValueError(f"the extension sent a bad Content-Length {length}")
    while len(body) < length:
        _remaining(sock, deadline)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the extension closed the connection mid-response")
        body += chunk
    payload = json.loads(body[:length]) if length else {}
    if not isinstance(payload, dict):
        raise ValueError("the extension did not answer with a JSON object")
    return status_code, payload, keep_alive, body[length:]


# -- module-level helpers over one default client (created on first use) ---------------------
_default: CircuitBreakerClient | None = None
_default_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _default_lock, _logged_lock
    _default_lock = threading.Lock()
    _logged_lock = threading.Lock()
    _held_permits.set(None)  # the parent's permits are the parent's
    for client in list(_clients):
        client._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)


def default_client() -> CircuitBreakerClient:
    """The client the module-level helpers use, configured from the environment."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = CircuitBreakerClient()
    return _default


def is_call_permitted(circuit_id: str) -> bool:
    """True when a call to ``circuit_id``'s service may go through now (see ``CircuitBreakerClient``)."""
    return default_client().is_call_permitted(circuit_id)


def record_outcome(circuit_id: str, *, success: bool, duration_ms: float, wait: bool = True) -> bool:
    """Reports a call made after ``is_call_permitted``. ``wait=True`` (default) waits for the extension
    and returns False if it did not take the report; ``wait=False`` queues it for the background
    sender and returns at once (False only if the queue is full)."""
    client = default_client()
    if wait:
        return client.record(circuit_id, success=success, duration_ms=duration_ms)
    return client.report(circuit_id, success=success, duration_ms=duration_ms)


def flush_outcomes(timeout: float = 1.0) -> bool:
    """Waits up to ``timeout`` seconds for the default client's queued reports, see ``CircuitBreakerClient.flush``."""
    return default_client().flush(timeout) if _default is not None else True


def protected(
    circuit_id: str,
    *,
    fallback: Callable[..., Any] | None = None,
    failure_exceptions: ExceptionTypes | None = None,
    ignored_exceptions: ExceptionTypes | None = None,
    is_failure: Callable[[Any], bool] | None = None,
    failure_on: ExceptionTypes | None = None,
    client: CircuitBreakerClient | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator over the default client (or ``client``): see ``CircuitBreakerClient.protected``.

    The client is looked up on each call, so decorating at import time costs nothing."""
    _check_id(circuit_id)
    outcomes = _outcomes(failure_exceptions, ignored_exceptions, is_failure, failure_on)
    return _decorator((lambda: client) if client is not None else default_client, circuit_id, fallback, outcomes)


def guard(
    circuit_id: str,
    *,
    failure_exceptions: ExceptionTypes | None = None,
    ignored_exceptions: ExceptionTypes | None = None,
    failure_on: ExceptionTypes | None = None,
    client: CircuitBreakerClient | None = None,
) -> Guard:
    """Context manager over the default client (or ``client``): see ``CircuitBreakerClient.guard``."""
    _check_id(circuit_id)
    outcomes = _outcomes(failure_exceptions, ignored_exceptions, None, failure_on)
    return Guard(client if client is not None else default_client, circuit_id, outcomes)
