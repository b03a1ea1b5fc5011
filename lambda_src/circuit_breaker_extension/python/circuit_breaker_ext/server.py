"""The local HTTP/1.1 keep-alive server on 127.0.0.1:$CIRCUIT_BREAKER_PORT.

Plain sockets and one thread per connection: the function's client keeps one persistent
connection, so a lookup is one ``send`` and one ``recv`` on each side with no event loop in
between (``http.server`` is ~4x slower per round trip; ``asyncio`` costs ~40 ms to import).

Routes (every request must carry ``X-Circuit-Breaker-Token`` equal to the function's
``AWS_SESSION_TOKEN``, compared in constant time; otherwise 403):

- ``GET /circuits/{id}`` -> 200 ``{"circuitId", "state", "version", "cached", "ageMs", "stale",
  "permitted"}``; 404 ``{"circuitId", "state": "UNKNOWN"}`` for a circuit not in the table; 503
  when nothing is cached and DynamoDB is unreachable or slower than the store's bound; 503
  ``{"circuitId", "state": "UNKNOWN", "error": "BadItem: ...", "errorType": "BadItem", "message"}``
  when the circuit's item has a ``state`` or ``version`` it cannot understand (the client's policy
  decides; never a guessed state).
  ``?acquire=1`` takes one of the HALF_OPEN trial permits (``permitted`` says whether one was left).
- ``POST /circuits/{id}/outcomes`` with ``{"success": bool, "durationMs": number}`` -> 202.

Connections cannot hold the server: a request must arrive whole within REQUEST_TIMEOUT_S of its
first byte (else 408); a connection waiting between requests is idle, and when all
MAX_CONNECTIONS slots are taken the longest-idle one is closed to make room (the client retries a
request on a closed keep-alive connection); only when every slot is mid-request does a new caller
get 503, and nothing a caller does (resetting, never reading) can stop the accept loop. Malformed
requests get a 4xx and a close (see ``_read_request``), never a dead thread.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import Settings
from .logs import log
from .store import UNKNOWN, BadItemError, CircuitStore, StoreUnavailableError

TOKEN_HEADER = "x-circuit-breaker-token"
MAX_HEAD_BYTES = 16 * 1024
MAX_LINE_BYTES = 8 * 1024
MAX_HEADER_FIELDS = 64
MAX_BODY_BYTES = 16 * 1024
MAX_CONNECTIONS = 64
#: A request must arrive whole (head and body) within this many seconds of its first byte: a
#: deadline for the whole request, not for each read. Past it the answer is 408 and the
#: connection is closed. (The client sends a request in one write on the loopback interface.)
REQUEST_TIMEOUT_S = 1.0
#: Writing an answer may take at most this long (a caller that does not read cannot hold a thread).
SEND_TIMEOUT_S = 1.0
#: After a 4xx that closes the connection, what the client still sends is read and dropped for
#: at most this long (and this many bytes), so that it can read the answer before the close.
LINGER_S = 0.2
LINGER_BYTES = 256 * 1024
CIRCUIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods and header names
_DIGITS = re.compile(r"[0-9]{1,9}")  # a Content-Length we read: ASCII digits only, below 1 GB
_SINGLE = ("content-length", "transfer-encoding", "connection", "host", TOKEN_HEADER)
REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _Rejected(Exception):
    """A request the server answers with a 4xx and then closes the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Connection:
    """One accepted connection; ``idle_since`` is set while it waits for a request (it may then be
    closed to make room), None while a request is under way."""

    __slots__ = ("evicted", "idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle_since: float | None = time.monotonic()  # nothing sent yet: idle
        self.evicted = False


class _Request:
    __slots__ = ("body", "headers", "method", "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body


class LocalServer:
    def __init__(
        self, settings: Settings, store: CircuitStore, schedule_trip: Callable[[str], None], listener: socket.socket
    ) -> None:
        """``listener``: a socket bound to 127.0.0.1:$CIRCUIT_BREAKER_PORT and listening."""
        self.settings = settings
        self.store = store
        self.schedule_trip = schedule_trip
        self._token = settings.token.encode()
        self._socket = listener
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.refused = 0  # connections answered 503 because every slot was busy (for logs and tests)
        self.evicted = 0  # idle connections closed to make room for a new one

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, name="circuit-breaker-accept", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):  # wakes the accept() under way: close() alone would not
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()

    # -- connections ---------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.01)  # out of descriptors or memory: do not spin
                continue
            try:
                self._admit(conn)
            except Exception as error:  # nothing one connection does may end the accept loop
                log("ERROR", "could not take a connection", error=f"{type(error).__name__}: {error}")
                _close(conn)

    def _admit(self, conn: socket.socket) -> None:
        """Serves ``conn`` in a thread of its own. When every slot is taken, the longest-idle
        connection is closed to make room; when all of them are in the middle of a request, 503."""
        record = _Connection(conn)
        victim: _Connection | None = None
        with self._lock:
            live = [c for c in self._connections if not c.evicted]
            if len(live) >= MAX_CONNECTIONS:
                idle = sorted((c for c in live if c.idle_since is not None), key=lambda c: c.idle_since or 0.0)
                victim = next((c for c in idle if not _has_input(c.sock)), None)
                if victim is None:
                    self.refused += 1
                    record.evicted = True  # not admitted
                else:
                    victim.evicted = True
                    self.evicted += 1
            if not record.evicted:
                self._connections.add(record)
        if record.evicted:
            try:  # the caller may already be gone (reset): that costs this answer, nothing else
                conn.settimeout(SEND_TIMEOUT_S)
                _send(conn, 503, {"error": "too many connections"}, keep_alive=False)
            except OSError:
                pass
            finally:
                _close(conn)
            return
        if victim is not None:
            with contextlib.suppress(OSError):  # its thread sees end-of-stream and exits
                victim.sock.shutdown(socket.SHUT_RDWR)
        try:
            threading.Thread(target=self._serve, args=(record,), name="circuit-breaker-conn", daemon=True).start()
        except BaseException:
            with self._lock:
                self._connections.discard(record)
            raise

    def _serve(self, record: _Connection) -> None:
        conn = record.sock
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve_requests(record)
        except OSError:
            pass  # the client went away, or did not read its answer
        except Exception as error:  # a bug must cost this connection, not its slot
            log("ERROR", "connection failed", error=f"{type(error).__name__}: {error}")
        finally:
            with self._lock:
                self._connections.discard(record)
            _close(conn)

    def _serve_requests(self, record: _Connection) -> None:
        conn = record.sock
        buffer = b""
        while True:
            if not buffer:  # idle between requests: wait for the next one, evictable meanwhile
                with self._lock:
                    if record.evicted:
                        return
                    record.idle_since = time.monotonic()
                conn.settimeout(None)
                try:
                    buffer = conn.recv(65536)
                finally:
                    with self._lock:
                        record.idle_since = None
                        evicted = record.evicted
                if evicted or not buffer:
                    return  # an evicted client sends its request again on a new connection
            deadline = time.monotonic() + REQUEST_TIMEOUT_S
            try:
                request, buffer = _read_request(conn, buffer, deadline)
            except _Rejected as rejected:
                conn.settimeout(SEND_TIMEOUT_S)
                _send(conn, rejected.status, {"error": str(rejected)}, keep_alive=False)
                self._linger(record)
                return
            except TimeoutError:
                conn.settimeout(SEND_TIMEOUT_S)
                late = {"error": f"the request did not arrive within {REQUEST_TIMEOUT_S:g} s"}
                _send(conn, 408, late, keep_alive=False)
                self._linger(record)
                return
            if request is None:
                return  # the client closed the connection in the middle of a request
            connection = request.headers.get("connection", "").lower()
            keep_alive = connection != "close" if request.version == "HTTP/1.1" else connection == "keep-alive"
            try:
                status, payload = self.handle(request.method, request.target, request.headers, request.body)
            except Exception as error:  # a bug must cost one answer, not the connection or the process
                log("ERROR", "request failed", target=request.target, error=f"{type(error).__name__}: {error}")
                status, payload = 500, {"error": "internal error in the circuit-breaker extension"}
            conn.settimeout(SEND_TIMEOUT_S)
            _send(conn, status, payload, keep_alive=keep_alive)
            if not keep_alive:
                return

    def _linger(self, record: _Connection) -> None:
        with self._lock:
            record.evicted = True  # a closing connection no longer holds a slot
        _linger(record.sock)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Routes one request; returns the status and the JSON payload."""
        if not self._token:
            return 403, {"error": "the extension has no AWS_SESSION_TOKEN to check callers against"}
        if not hmac.compare_digest(headers.get(TOKEN_HEADER, "").encode(), self._token):
            return 403, {"error": "missing or wrong X-Circuit-Breaker-Token"}
        path, _, query = target.partition("?")
        parts = path.split("/")
        # "/circuits/{id}" -> ["", "circuits", id]; "/circuits/{id}/outcomes" -> [..., "outcomes"]
        if len(parts) < 3 or parts[1] != "circuits" or not CIRCUIT_ID.fullmatch(parts[2]):
            return 404, {"error": f"no route for {path!r}"}
        circuit_id = parts[2]
        if len(parts) == 3:
            if method != "GET":
                return 405, {"error": "use GET"}
            return self._get(circuit_id, acquire="acquire=1" in query.split("&"))
        if len(parts) == 4 and parts[3] == "outcomes":
            if method != "POST":
                return 405, {"error": "use POST"}
            return self._post_outcome(circuit_id, body)
        return 404, {"error": f"no route for {path!r}"}

    def _get(self, circuit_id: str, *, acquire: bool) -> tuple[int, dict[str, Any]]:
        try:
            lookup = self.store.lookup(circuit_id, acquire=acquire)
        except StoreUnavailableError as error:
            return 503, {"circuitId": circuit_id, "state": UNKNOWN, "error": f"DynamoDB unreachable: {error}"}
        except BadItemError as error:  # logged once per circuit by the store
            return 503, {
                "circuitId": circuit_id,
                "state": UNKNOWN,
                "error": f"BadItem: {error}",
                "errorType": "BadItem",
                "message": str(error),
            }
        return (200 if lookup.found else 404), lookup.as_json()

    def _post_outcome(self, circuit_id: str, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            outcome = json.loads(body or b"null")
        except ValueError:
            return 400, {"error": "the body is not JSON"}
        if not isinstance(outcome, dict):
            return 400, {"error": 'expected {"success": bool, "durationMs": number}'}
        success = outcome.get("success")
        duration = outcome.get("durationMs", 0)
        if not isinstance(success, bool):
            return 400, {"error": '"success" must be true or false'}
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0:
            return 400, {"error": '"durationMs" must be a non-negative number'}
        try:
            if self.store.record(circuit_id, success, float(duration)):
                self.schedule_trip(circuit_id)
        except Exception as error:  # never fail the function's call because of the bookkeeping
            log("ERROR", "could not record an outcome", circuitId=circuit_id, error=f"{type(error).__name__}: {error}")
        return 202, {"circuitId": circuit_id, "accepted": True}


def _recv(conn: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("request deadline passed")
    conn.settimeout(remaining)
    return conn.recv(65536)


def _read_request(conn: socket.socket, buffer: bytes, deadline: float) -> tuple[_Request | None, bytes]:
    """Reads one whole request (``buffer`` holds what already arrived) before ``deadline``; returns
    it and what follows it, or None at end-of-stream. Raises _Rejected or TimeoutError."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise _Rejected(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
        chunk = _recv(conn, deadline)
        if not chunk:
            return None, b""
        buffer += chunk
    if end > MAX_HEAD_BYTES:
        raise _Rejected(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
    lines = buffer[:end].split(b"\r\n")
    rest = buffer[end + 4 :]
    if len(lines[0]) > MAX_LINE_BYTES:
        raise _Rejected(414, f"request line longer than {MAX_LINE_BYTES} bytes")
    if len(lines) - 1 > MAX_HEADER_FIELDS:
        raise _Rejected(431, f"more than {MAX_HEADER_FIELDS} header fields")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise _Rejected(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _Rejected(400, "only HTTP/1.1 and HTTP/1.0 are spoken here")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        if len(raw) > MAX_LINE_BYTES:
            raise _Rejected(431, f"header field longer than {MAX_LINE_BYTES} bytes")
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise _Rejected(400, "bad header field")
        key = name.lower()
        if key in headers and key in _SINGLE:
            raise _Rejected(400, f"more than one {name} header")
        headers[key] = value.strip(" \t")
    if "transfer-encoding" in headers:
        raise _Rejected(411, "send Content-Length, not chunked bodies")
    length_text = headers.get("content-length", "0")
    if not _DIGITS.fullmatch(length_text):
        huge = length_text.isascii() and length_text.isdigit()  # 10 digits or more
        raise _Rejected(413 if huge else 400, f"bad Content-Length {length_text[:20]!r}: decimal digits only")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise _Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    while len(rest) < length:
        chunk = _recv(conn, deadline)
        if not chunk:
            return None, b""
        rest += chunk
    return _Request(method, target, version, headers, rest[:length]), rest[length:]


def _linger(conn: socket.socket) -> None:
    """After an error answer: stop sending and read (and drop) what the client still sends, for a
    moment, so that closing with unread input does not reset the connection before the client
    has read the answer. Bounded by LINGER_S and LINGER_BYTES."""
    deadline = time.monotonic() + LINGER_S
    drained = 0
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        while drained < LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
            conn.settimeout(remaining)
            chunk = conn.recv(65536)
            if not chunk:
                return
            drained += len(chunk)


def _has_input(conn: socket.socket) -> bool:
    """Whether a request has arrived on ``conn`` that its thread has not read yet (not idle, then)."""
    try:
        return bool(conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False  # nothing there: idle
    except OSError:
        return False  # broken: as good as idle


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def _send(conn: socket.socket, status: int, payload: dict[str, Any], *, keep_alive: bool) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    conn.sendall(head.encode("latin-1") + body)
