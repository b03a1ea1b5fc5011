"""The sample checkout function (integ/functions/circuit_breaker_checkout/, deployed by
integ/sample_circuit_breaker.py) with the real function-side client from the breaker's layer.

The payments service is a real HTTP server on 127.0.0.1. The extension is played by a small HTTP
server speaking the local protocol of the contract (GET /circuits/{id}, POST .../outcomes, token
header): the extension itself is tested as a real process in its own tests; here the question is
what the sample does with each answer, and what it reports.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cdk_serverless_patterns.testing.moto import load_runtime_module

#: Sample-only Lambda code lives beside the sample stacks, not in lambda_src/ (which ships in the wheel).
CHECKOUT = Path(__file__).resolve().parents[2] / "integ" / "functions" / "circuit_breaker_checkout" / "checkout.py"
TOKEN = "session-token-of-the-function"


def _load_checkout() -> Any:
    """The sample's handler module, loaded as Lambda would (the layer's python/ folder already on the path).

    The same mechanism as ``load_runtime_module`` for a function asset, which serves only ``lambda_src/``.
    """
    spec = importlib.util.spec_from_file_location("circuit_breaker_sample_checkout_under_test", CHECKOUT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# The layer first: its python/ folder is /opt/python on Lambda, where the sample imports the client from.
client_module = load_runtime_module("circuit_breaker_extension", "circuit_breaker_client")
checkout = _load_checkout()


class Server:
    """A real HTTP server on 127.0.0.1 whose answers the test decides."""

    def __init__(self, respond: Any) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                status, payload = respond(self.command, self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Payments:
    def __init__(self) -> None:
        self.status = 200
        self.server = Server(lambda *request: (self.status, {"paymentId": "pay-1"}))


class Extension:
    """Plays the extension's side of the local protocol; ``state`` is what it serves."""

    def __init__(self) -> None:
        self.state = "CLOSED"
        self.outcomes: list[dict[str, Any]] = []
        self.server = Server(self.respond)

    def respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if headers.get("X-Circuit-Breaker-Token") != TOKEN:
            return 403, {"error": "bad token"}
        circuit = path.split("?")[0].split("/")[2]
        if method == "POST":
            self.outcomes.append({"circuit": circuit, **json.loads(body)})
            return 202, {}
        permitted = self.state in ("CLOSED", "DISABLED")
        return 200, {"circuitId": circuit, "state": self.state, "version": 3, "permitted": permitted, "cached": True}


@pytest.fixture(scope="module")
def payments() -> Iterator[Payments]:
    service = Payments()
    yield service
    service.server.close()


@pytest.fixture(scope="module")
def extension() -> Iterator[Extension]:
    served = Extension()
    yield served
    served.server.close()


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, payments: Payments, extension: Extension) -> Iterator[None]:
    payments.status, payments.server.requests[:] = 200, []
    extension.state, extension.outcomes[:] = "CLOSED", []
    monkeypatch.setenv("PAYMENTS_URL", f"http://127.0.0.1:{payments.server.port}/charges")
    monkeypatch.setenv("CIRCUIT_BREAKER_PORT", str(extension.server.port))
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.delenv("CIRCUIT_BREAKER_ON_EXTENSION_ERROR", raising=False)
    monkeypatch.setattr(client_module, "_default", None)  # a client per test, from this environment
    yield
    if client_module._default is not None:
        client_module._default.close()


ORDER = {"orderId": "o-1", "amountCents": 1299}


def test_closed_circuit_charges_and_reports_a_success(payments: Payments, extension: Extension) -> None:
    result = checkout.handler(ORDER, None)
    assert result == {"orderId": "o-1", "status": "charged", "payment": {"paymentId": "pay-1"}}
    [(method, path, headers, body)] = payments.server.requests
    assert (method, path, headers["Idempotency-Key"]) == ("POST", "/charges", "o-1")
    assert json.loads(body) == ORDER
    assert client_module.flush_outcomes(timeout=5)  # reports go out in the background
    [outcome] = extension.outcomes
    assert outcome["circuit"] == "payments" and outcome["success"] is True and outcome["durationMs"] >= 0


@pytest.mark.parametrize("state", ["OPEN", "FORCED_OPEN"])
def test_open_circuit_queues_without_calling_payments(payments: Payments, extension: Extension, state: str) -> None:
    extension.state = state
    result = checkout.handler(ORDER, None)
    assert result["status"] == "queued" and result["orderId"] == "o-1"
    assert client_module.flush_outcomes(timeout=5)
    assert payments.server.requests == [] and extension.outcomes == []


def test_a_5xx_is_reported_as_a_failure(payments: Payments, extension: Extension) -> None:
    payments.status = 503
    result = checkout.handler(ORDER, None)
    assert result == {"orderId": "o-1", "status": "failed", "reason": "payments failed: HTTP 503"}
    assert client_module.flush_outcomes(timeout=5)
    assert [o["success"] for o in extension.outcomes] == [False]


def test_a_rejected_order_does_not_count_against_the_service(payments: Payments, extension: Extension) -> None:
    payments.status = 402
    result = checkout.handler(ORDER, None)
    assert result["status"] == "rejected" and "HTTP 402" in result["reason"]
    assert client_module.flush_outcomes(timeout=5)
    assert [o["success"] for o in extension.outcomes] == [True]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_extension_down_fail_open_by_default(payments: Payments, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCUIT_BREAKER_PORT", str(_free_port()))
    assert checkout.handler(ORDER, None)["status"] == "charged"
    assert len(payments.server.requests) == 1


def test_extension_down_fail_closed_queues(payments: Payments, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCUIT_BREAKER_PORT", str(_free_port()))
    monkeypatch.setenv("CIRCUIT_BREAKER_ON_EXTENSION_ERROR", "fail_closed")
    assert checkout.handler(ORDER, None)["status"] == "queued"
    assert payments.server.requests == []


def test_bad_input_is_rejected_without_any_call(payments: Payments, extension: Extension) -> None:
    assert checkout.handler({"orderId": "", "amountCents": -1}, None)["status"] == "invalid"
    assert client_module.flush_outcomes(timeout=5)
    assert payments.server.requests == [] and extension.outcomes == []
