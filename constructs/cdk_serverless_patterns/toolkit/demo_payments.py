"""The demo's stand-in for the sample's downstream "payments" service, on ``127.0.0.1``.

``serverless-patterns demo`` deploys the circuit-breaker sample with its ``payments_base_url``
context pointing here, so the deployed health checker and checkout function (real processes run by
the emulator's Lambda runner) call a real HTTP service that the demo can break and repair:

- ``GET /health``: ``200 {"status": "ok"}`` while up; ``503`` while down; while slow, answers after
  ``slow_seconds`` (longer than the sample's 4 s probe timeout by default, so a probe times out).
- ``POST /charges`` with ``{"orderId": str, "amountCents": int > 0}`` (what the sample's checkout
  sends): ``201`` with a charge while up (the ``Idempotency-Key`` header makes a retry return the same
  charge), ``400`` for a body that is not such an order, ``503`` while down, delayed while slow.
- anything else: ``404``; a body over :data:`MAX_BODY` bytes: ``413``.

It counts what it answered per route and mode (``requests``), so a test can assert that the circuit
breaker kept calls away from it. Standard library only; one thread per connection; ``stop`` wakes
slow handlers and closes the socket. Every answer is JSON; no input can stop the server.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
MODES = ("up", "down", "slow")
#: How long a slow answer takes by default: beyond the sample's 4 s health-check timeout.
DEFAULT_SLOW_SECONDS = 6.0
MAX_BODY = 64 * 1024
#: How long one connection may sit idle before its thread gives up on it.
SOCKET_TIMEOUT_S = 10.0


class PaymentsService:
    """A switchable payments service: ``start()``, ``set_mode("down")``, ``url``, ``stop()``."""

    def __init__(self, *, port: int = 0, slow_seconds: float = DEFAULT_SLOW_SECONDS) -> None:
        self._requested_port = port
        self.slow_seconds = slow_seconds
        self._mode = "up"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._charges: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> PaymentsService:
        """Listens on ``127.0.0.1`` (a free port unless one was given); raises OSError if it is taken."""
        if self._server is not None:
            return self
        service = self

        class Handler(_Handler):
            payments = service

        server = ThreadingHTTPServer((HOST, self._requested_port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="demo-payments", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, wakes slow answers and closes the socket (idempotent)."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> PaymentsService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the demo reads and switches -----------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the payments service is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL the sample is deployed with (``http://localhost:<port>``)."""
        return f"http://localhost:{self.port}"

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    def set_mode(self, mode: str) -> None:
        """``up``, ``down`` (503 to everything) or ``slow`` (answers after ``slow_seconds``)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        with self._lock:
            self._mode = mode

    def count(self, route: str, mode: str | None = None) -> int:
        """How many requests ``route`` (``health``, ``charges``) answered, in ``mode`` or in any mode."""
        with self._lock:
            if mode is not None:
                return self.requests[f"{route}:{mode}"]
            return sum(n for key, n in self.requests.items() if key.split(":", 1)[0] == route)

    @property
    def charges(self) -> dict[str, dict[str, Any]]:
        """The charges made, by idempotency key (a copy)."""
        with self._lock:
            return dict(self._charges)

    # -- behaviour ----------------------------------------------------------------------------------
    def _enter(self, route: str) -> str:
        with self._lock:
            mode = self._mode
            self.requests[f"{route}:{mode}"] += 1
        if mode == "slow":
            self._stopping.wait(self.slow_seconds)
        return mode

    def _charge(self, key: str, order_id: str, amount: int) -> tuple[int, dict[str, Any]]:
        with self._lock:
            existing = self._charges.get(key)
            if existing is not None:
                if (existing["orderId"], existing["amountCents"]) != (order_id, amount):
                    return 409, {"message": f"Idempotency-Key {key!r} was used for another order"}
                return 201, existing
            charge = {"chargeId": f"ch_{uuid.uuid4().hex[:16]}", "orderId": order_id, "amountCents": amount}
            self._charges[key] = charge
            return 201, charge


class _Handler(BaseHTTPRequestHandler):
    payments: PaymentsService
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    server_version = "demo-payments/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the demo prints its own progress lines."""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        if self._path() != "/health":
            self._answer(404, {"message": f"no route GET {self._path()[:100]}"})
            return
        if self.payments._enter("health") == "down":
            self._answer(503, {"status": "down"})
            return
        self._answer(200, {"status": "ok"})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._answer(413 if length > MAX_BODY else 400, {"message": f"Content-Length must be 0-{MAX_BODY}"})
            return
        body = self.rfile.read(length)
        if self._path() != "/charges":
            self._answer(404, {"message": f"no route POST {self._path()[:100]}"})
            return
        if self.payments._enter("charges") == "down":
            self._answer(503, {"message": "payments is down"})
            return
        try:
            order = json.loads(body)
        except ValueError:
            order = None
        order_id = order.get("orderId") if isinstance(order, dict) else None
        amount = order.get("amountCents") if isinstance(order, dict) else None
        valid_amount = isinstance(amount, int) and not isinstance(amount, bool) and amount > 0
        if not isinstance(order_id, str) or not order_id or not valid_amount:
            self._answer(400, {"message": 'the body must be {"orderId": non-empty string, "amountCents": int > 0}'})
            return
        assert isinstance(amount, int)
        key = self.headers.get("Idempotency-Key") or uuid.uuid4().hex
        status, answer = self.payments._charge(key, order_id, amount)
        self._answer(status, answer)

    def do_PUT(self) -> None:
        self._answer(405, {"message": "only GET /health and POST /charges"})

    do_DELETE = do_PATCH = do_PUT
