"""Function-side client of the circuit-breaker extension (standard library only).

The extension layer puts this module on the function's path (``/opt/python``); it imports
without CDK or boto3, so a user's own tests can import it too. Typical use::

    from circuit_breaker_client import CircuitOpenError, guard, is_call_permitted, protected

    @protected("payments", fallback=lambda order: {"status": "queued"})
    def charge(order): ...               # short-circuits to the fallback while payments is OPEN

    with guard("payments"):              # raises CircuitOpenError while OPEN
        call_payments()                  # exceptions are recorded as failures, and re-raised

    if is_call_permitted("payments"): ...  # then report with record_outcome(...)

States: CLOSED and DISABLED let calls pass; OPEN and FORCED_OPEN short-circuit; HALF_OPEN lets a
limited number of trial calls through (the extension hands out the permits). Each call made
through ``protected`` or ``guard`` reports its outcome (success and duration) to the extension,
which trips the circuit when the failure or slow-call rate gets too high.

When the extension cannot answer (not running, wrong token, timeout, or a circuit it does not
know) the *policy* decides: ``fail_open`` (the default: calls pass, so a broken breaker never
takes down a healthy service) or ``fail_closed`` (calls go to the fallback). The policy comes
from the ``on_extension_error`` argument, else ``$CIRCUIT_BREAKER_ON_EXTENSION_ERROR``, else
``fail_open``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "FAIL_CLOSED",
    "FAIL_OPEN",
    "CircuitBreakerClient",
    "CircuitOpenError",
    "CircuitStatus",
    "default_client",
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
TOKEN_HEADER = "X-Circuit-Breaker-Token"
CIRCUIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # what the construct accepts
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect on the function's cold start
PASSING_STATES = ("CLOSED", "DISABLED")

P = ParamSpec("P")
R = TypeVar("R")


class CircuitOpenError(RuntimeError):
    """The circuit does not let the call through (OPEN, FORCED_OPEN, no trial left, or policy)."""

    def __init__(self, status: CircuitStatus) -> None:
        super().__init__(f"circuit {status.circuit_id!r} is {status.state}: call short-circuited")
        self.status = status


class _ExtensionError(Exception):
    """The extension could not be asked (connection, protocol, token or server error)."""


@dataclass(frozen=True)
class CircuitStatus:
    """What the client learned about a circuit, and whether a call may go through."""

    circuit_id: str
    state: str  # CLOSED | OPEN | HALF_OPEN | FORCED_OPEN | DISABLED | UNKNOWN
    permitted: bool
    version: int | None = None
    stale: bool = False  # the extension served a cached state because DynamoDB was unreachable
    cached: bool = False
    decided_by: str = "extension"  # "extension", or "policy" when the extension could not decide
    error: str | None = None


class CircuitBreakerClient:
    """A persistent keep-alive connection to the extension on 127.0.0.1. Thread-safe."""

    def __init__(
        self,
        *,
        port: int | None = None,
        token: str | None = None,
        on_extension_error: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        host: str = "127.0.0.1",
    ) -> None:
        """
        Args:
            port: The extension's port. Default: ``$CIRCUIT_BREAKER_PORT``, else 4243.
            token: The token the extension checks. Default: ``$AWS_SESSION_TOKEN`` (the function's).
            on_extension_error: ``"fail_open"`` or ``"fail_closed"``, see the module docstring.
                Default: ``$CIRCUIT_BREAKER_ON_EXTENSION_ERROR``, else ``"fail_open"``.
            timeout: Seconds to wait for the extension (a cold extension may still be reading
                DynamoDB). Default: 2.
            host: Default: 127.0.0.1 (the extension listens nowhere else).
        """
        policy = on_extension_error or os.environ.get("CIRCUIT_BREAKER_ON_EXTENSION_ERROR", "").strip() or FAIL_OPEN
        if policy not in POLICIES:
            raise ValueError(f"on_extension_error must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.policy = policy
        self.port = port if port is not None else int(os.environ.get("CIRCUIT_BREAKER_PORT", "") or DEFAULT_PORT)
        self.host = host
        self.timeout = timeout
        token_value = token if token is not None else os.environ.get("AWS_SESSION_TOKEN", "")
        self._header_tail = f"Host: {host}:{self.port}\r\n{TOKEN_HEADER}: {token_value}\r\n"
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    # -- asking the extension -----------------------------------------------------------------
    def status(self, circuit_id: str, *, acquire: bool = False) -> CircuitStatus:
        """The circuit's state and whether a call may go through; never raises for the extension.

        ``acquire=True`` takes a HALF_OPEN trial permit when one is left (what a caller about to
        make the call wants); without it the answer only says whether one is left.
        """
        _check_id(circuit_id)
        path = f"/circuits/{circuit_id}" + ("?acquire=1" if acquire else "")
        try:
            status_code, payload = self._request("GET", path, b"")
        except _ExtensionError as error:
            return self._by_policy(circuit_id, "UNKNOWN", str(error))
        state = str(payload.get("state", "UNKNOWN"))
        if status_code == 404:
            return self._by_policy(circuit_id, state, f"the extension does not know circuit {circuit_id!r}")
        if status_code != 200:
            return self._by_policy(circuit_id, state, f"the extension answered {status_code}: {payload.get('error')}")
        permitted = payload.get("permitted")
        if not isinstance(permitted, bool):
            permitted = state in PASSING_STATES
        version = payload.get("version")
        return CircuitStatus(
            circuit_id=circuit_id,
            state=state,
            permitted=permitted,
            version=version if isinstance(version, int) else None,
            stale=bool(payload.get("stale")),
            cached=bool(payload.get("cached")),
        )

    def is_call_permitted(self, circuit_id: str) -> bool:
        """True when a call to the circuit's service may go through now (takes a trial permit)."""
        return self.status(circuit_id, acquire=True).permitted

    def record(self, circuit_id: str, *, success: bool, duration_ms: float) -> bool:
        """Reports one call's outcome; False if the extension did not take it (never raises)."""
        _check_id(circuit_id)
        body = json.dumps({"success": bool(success), "durationMs": max(float(duration_ms), 0.0)}).encode()
        try:
            status_code, _ = self._request("POST", f"/circuits/{circuit_id}/outcomes", body)
        except _ExtensionError:
            return False
        return status_code == 202

    # -- wrapping calls -----------------------------------------------------------------------
    @contextmanager
    def guard(
        self, circuit_id: str, *, failure_on: tuple[type[BaseException], ...] = (Exception,)
    ) -> Iterator[CircuitStatus]:
        """Context manager: raises CircuitOpenError when the call may not go through, else runs the
        block and reports its outcome (an exception of a ``failure_on`` type is a failure)."""
        status = self.status(circuit_id, acquire=True)
        if not status.permitted:
            raise CircuitOpenError(status)
        started = time.perf_counter()
        try:
            yield status
        except failure_on:
            self.record(circuit_id, success=False, duration_ms=(time.perf_counter() - started) * 1000.0)
            raise
        except BaseException:
            self.record(circuit_id, success=True, duration_ms=(time.perf_counter() - started) * 1000.0)
            raise
        self.record(circuit_id, success=True, duration_ms=(time.perf_counter() - started) * 1000.0)

    def protected(
        self,
        circuit_id: str,
        *,
        fallback: Callable[P, R] | None = None,
        failure_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: while the circuit does not let calls through, returns ``fallback(*args,
        **kwargs)`` (or raises CircuitOpenError without a fallback); otherwise calls the function
        and reports its outcome. Exceptions of the function are reported and re-raised."""

        _check_id(circuit_id)

        def decorate(function: Callable[P, R]) -> Callable[P, R]:
            _check_not_async(function)

            @functools.wraps(function)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                try:
                    with self.guard(circuit_id, failure_on=failure_on):
                        return function(*args, **kwargs)
                except CircuitOpenError:
                    if fallback is None:
                        raise
                return fallback(*args, **kwargs)

            return wrapper

        return decorate

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- the wire -----------------------------------------------------------------------------
    def _by_policy(self, circuit_id: str, state: str, error: str) -> CircuitStatus:
        return CircuitStatus(
            circuit_id=circuit_id, state=state, permitted=self.policy == FAIL_OPEN, decided_by="policy", error=error
        )

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _request(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        request = (
            f"{method} {path} HTTP/1.1\r\n{self._header_tail}Content-Length: {len(body)}\r\n"
            + ("Content-Type: application/json\r\n\r\n" if body else "\r\n")
        ).encode("latin-1") + body
        with self._lock:
            for attempt in range(2):
                reused = self._sock is not None
                try:
                    if self._sock is None:
                        self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._sock.sendall(request)
                    status_code, payload, keep_alive = _read_response(self._sock)
                except (OSError, ValueError, IndexError) as error:  # IndexError: a garbled status line
                    self._drop()
                    if reused and attempt == 0 and not isinstance(error, TimeoutError):
                        continue  # the extension closed an idle connection: once more on a new one
                    raise _ExtensionError(f"{type(error).__name__}: {error}") from error
                if not keep_alive:
                    self._drop()
                if status_code == 403:
                    raise _ExtensionError(f"the extension refused the token: {payload.get('error')}")
                return status_code, payload
        raise _ExtensionError("unreachable")  # pragma: no cover


def _check_id(circuit_id: str) -> None:
    if not isinstance(circuit_id, str) or not CIRCUIT_ID.fullmatch(circuit_id):
        raise ValueError(f"{circuit_id!r} is not a circuit id: letters, digits, '_', '.', '-' (at most 63)")


def _check_not_async(function: Callable[..., object]) -> None:
    code = getattr(function, "__code__", None)
    if code is not None and code.co_flags & _CO_COROUTINE:
        raise TypeError(
            f"{getattr(function, '__qualname__', function)!r} is a coroutine function: the decorator would time "
            "the creation of the coroutine, not the call; use `with guard(...)` inside it instead"
        )


def _read_response(sock: socket.socket) -> tuple[int, dict[str, Any], bool]:
    buffer = b""
    end = -1
    while end < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the extension closed the connection")
        buffer += chunk
        end = buffer.find(b"\r\n\r\n")
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
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the extension closed the connection mid-response")
        body += chunk
    payload = json.loads(body[:length]) if length else {}
    if not isinstance(payload, dict):
        raise ValueError("the extension did not answer with a JSON object")
    return status_code, payload, keep_alive


# -- module-level helpers over one default client (created on first use) ---------------------
_default: CircuitBreakerClient | None = None
_default_lock = threading.Lock()


def default_client() -> CircuitBreakerClient:
    """The client the module-level helpers use, configured from the environment."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = CircuitBreakerClient()
    return _default


def is_call_permitted(circuit_id: str) -> bool:
    """True when a call to ``circuit_id``'s service may go through now."""
    return default_client().is_call_permitted(circuit_id)


def record_outcome(circuit_id: str, *, success: bool, duration_ms: float) -> bool:
    """Reports a call made after ``is_call_permitted``; False if the extension did not take it."""
    return default_client().record(circuit_id, success=success, duration_ms=duration_ms)


def protected(
    circuit_id: str,
    *,
    fallback: Callable[P, R] | None = None,
    failure_on: tuple[type[BaseException], ...] = (Exception,),
    client: CircuitBreakerClient | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator over the default client (or ``client``): see ``CircuitBreakerClient.protected``.

    The client is looked up on each call, so decorating at import time costs nothing."""

    _check_id(circuit_id)

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        _check_not_async(function)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            breaker = client or default_client()
            return breaker.protected(circuit_id, fallback=fallback, failure_on=failure_on)(function)(*args, **kwargs)

        return wrapper

    return decorate


@contextmanager
def guard(
    circuit_id: str,
    *,
    failure_on: tuple[type[BaseException], ...] = (Exception,),
    client: CircuitBreakerClient | None = None,
) -> Iterator[CircuitStatus]:
    """Context manager over the default client (or ``client``): see ``CircuitBreakerClient.guard``."""
    with (client or default_client()).guard(circuit_id, failure_on=failure_on) as status:
        yield status
