"""The local HTTP/1.1 keep-alive server on 127.0.0.1:$CIRCUIT_BREAKER_PORT.

Plain sockets and one thread per connection: the function's client keeps one persistent
connection, so a lookup is one ``send`` and one ``recv`` on each side with no event loop in
between (``http.server`` is ~4x slower per round trip; ``asyncio`` costs ~40 ms to import).

Routes (every request must carry ``X-Circuit-Breaker-Token`` equal to the function's
``AWS_SESSION_TOKEN``, compared in constant time; otherwise 403):

- ``GET /circuits/{id}`` -> 200 ``{"circuitId", "state", "version", "cached", "ageMs", "stale",
  "permitted"}``; 404 ``{"circuitId", "state": "UNKNOWN"}`` for a circuit not in the table; 503
  when DynamoDB is unreachable and nothing is cached. ``?acquire=1`` takes one of the HALF_OPEN
  trial permits (``permitted`` says whether one was left).
- ``POST /circuits/{id}/outcomes`` with ``{"success": bool, "durationMs": number}`` -> 202.
"""

from __future__ import annotations

import hmac
import json
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

from .config import Settings
from .logs import log
from .store import UNKNOWN, CircuitStore, StoreUnavailableError

TOKEN_HEADER = "x-circuit-breaker-token"
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024
MAX_CONNECTIONS = 64
CIRCUIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


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
        self._connections = 0
        self._count_lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, name="circuit-breaker-accept", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._socket.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                if self._closed:
                    return
                continue
            with self._count_lock:
                full = self._connections >= MAX_CONNECTIONS
                if not full:
                    self._connections += 1
            if full:
                _send(conn, 503, {"error": "too many connections"}, keep_alive=False)
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="circuit-breaker-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve_requests(conn)
        except OSError:
            pass  # the client went away
        finally:
            with self._count_lock:
                self._connections -= 1
            conn.close()

    def _serve_requests(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            end = buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    _send(conn, 431, {"error": "request head too large"}, keep_alive=False)
                    return
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                end = buffer.find(b"\r\n\r\n")
            head, buffer = buffer[:end], buffer[end + 4 :]
            lines = head.decode("latin-1").split("\r\n")
            request_line = lines[0].split(" ")
            if len(request_line) != 3:
                _send(conn, 400, {"error": "bad request line"}, keep_alive=False)
                return
            method, target, version = request_line
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                _send(conn, 411, {"error": "send Content-Length, not chunked bodies"}, keep_alive=False)
                return
            length_text = headers.get("content-length", "0") or "0"
            if not length_text.isdigit():
                _send(conn, 400, {"error": "bad Content-Length"}, keep_alive=False)
                return
            length = int(length_text)
            if length > MAX_BODY_BYTES:
                _send(conn, 413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"}, keep_alive=False)
                return
            while len(buffer) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
            connection = headers.get("connection", "").lower()
            keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
            try:
                status, payload = self.handle(method, target, headers, body)
            except Exception as error:  # a bug must cost one answer, not the connection or the process
                log("ERROR", "request failed", target=target, error=f"{type(error).__name__}: {error}")
                status, payload = 500, {"error": "internal error in the circuit-breaker extension"}
            _send(conn, status, payload, keep_alive=keep_alive)
            if not keep_alive:
                return

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


def _send(conn: socket.socket, status: int, payload: dict[str, Any], *, keep_alive: bool) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    conn.sendall(head.encode("latin-1") + body)
