"""The item layout of the contract, exercised from both sides on one moto table.

The health checker (this pattern's runtime) and the extension's store (``circuit_breaker_ext``,
from the layer) write and read the same items: what one writes, the other must understand. The
downstream service is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cdk_serverless_patterns.testing.moto import create_circuit_table, load_runtime_module

ROOT = Path(__file__).resolve().parents[2]
TABLE = "circuit-state"
sys.path.insert(0, str(ROOT / "lambda_src" / "circuit_breaker_extension" / "python"))

from circuit_breaker_ext.config import Settings  # noqa: E402
from circuit_breaker_ext.store import CircuitStore  # noqa: E402

hc = load_runtime_module(
    "circuit_breaker_health_checker", "health_checker", name="circuit_breaker_health_checker_contract_test"
)


@pytest.fixture(scope="module")
def service() -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/health"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_circuit_table(client, TABLE)
        yield client


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def store(cache_ttl_ms: int = 0, **env: str) -> Any:
    settings = Settings.from_env(
        {"CIRCUIT_BREAKER_TABLE": TABLE, "CIRCUIT_BREAKER_CACHE_TTL_MS": str(cache_ttl_ms), **env}
    )
    return CircuitStore(settings)


def test_the_extension_follows_the_health_checkers_transitions(table: Any, service: dict[str, Any]) -> None:
    clock = Clock()
    checker = hc.HealthChecker(
        table_name=TABLE, dynamodb=table, events=boto3.client("events", region_name="us-east-1"), clock=clock
    )
    config = hc.CircuitConfig.from_event(
        {
            "circuitId": "payments",
            "url": service["url"],
            "allowHttp": True,
            "timeoutMs": 500,
            "failureThreshold": 2,
            "coolDownMs": 10_000,
            "halfOpenTrials": 2,
        }
    )
    extension = store()
    service["status"] = 200
    checker.check(config)
    closed = extension.lookup("payments")
    assert (closed.state, closed.permitted, closed.found) == ("CLOSED", True, True)

    service["status"] = 503
    checker.check(config)
    checker.check(config)
    opened = extension.lookup("payments")
    assert (opened.state, opened.permitted) == ("OPEN", False)

    service["status"] = 200
    clock.now += 11
    checker.check(config)  # OPEN -> HALF_OPEN; this probe was the first trial, one trial left
    assert extension.lookup("payments").state == "HALF_OPEN"
    assert extension.lookup("payments", acquire=True).permitted is True
    assert extension.lookup("payments", acquire=True).permitted is False, "the item leaves one trial call"

    clock.now += 60
    checker.check(config)
    assert extension.lookup("payments").state == "CLOSED"


def test_the_health_checker_cools_down_a_circuit_the_extension_tripped(table: Any, service: dict[str, Any]) -> None:
    clock = Clock()
    checker = hc.HealthChecker(
        table_name=TABLE, dynamodb=table, events=boto3.client("events", region_name="us-east-1"), clock=clock
    )
    config = hc.CircuitConfig.from_event(
        {
            "circuitId": "payments",
            "url": service["url"],
            "allowHttp": True,
            "timeoutMs": 500,
            "failureThreshold": 3,
            "coolDownMs": 1,
            "halfOpenTrials": 1,
        }
    )
    service["status"] = 200
    checker.check(config)
    extension = store(CIRCUIT_BREAKER_MIN_CALLS="2", CIRCUIT_BREAKER_FAILURE_RATE="50")
    extension.lookup("payments")
    assert extension.record("payments", False, 5.0) is False
    assert extension.record("payments", False, 5.0) is True  # 2 of 2 failed: trip
    assert extension.trip("payments") is True
    item = hc._from_dynamodb(table.get_item(TableName=TABLE, Key={"circuitId": {"S": "payments"}})["Item"])
    assert item["state"] == "OPEN" and item["updatedBy"] == "extension" and item["version"] == 2

    assert item["openedAt"] <= time.time() * 1000, "openedAt is epoch milliseconds, like the checker's clock"
    clock.now = time.time() + 1  # cool-down (1 ms) over; the service is healthy: one trial closes it
    summary = checker.check(config)
    assert [(t["from"], t["to"]) for t in summary["transitions"]] == [("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
    assert summary["version"] == 3
