"""The item layout of the contract, exercised from both sides on one moto table.

The health checker (this pattern's runtime) and the extension's store (``circuit_breaker_ext``,
from the layer) write and read the same items: what one writes, the other must understand. The
downstream service is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cdk_serverless_patterns._paths import asset_path
from cdk_serverless_patterns.circuit_breaker import contract
from cdk_serverless_patterns.testing.moto import create_circuit_table, load_runtime_module

TABLE = "circuit-state"
Settings = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.config").Settings
CircuitStore = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.store").CircuitStore

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


# -- the runtime's copies of the contract ------------------------------------------------------------
def test_the_contract_imports_without_the_cdk() -> None:
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys\n"
        "import cdk_serverless_patterns.circuit_breaker.contract\n"
        "import cdk_serverless_patterns.circuit_breaker\n"
        "import cdk_serverless_patterns.toolkit.circuit\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('aws_cdk', 'jsii', 'constructs'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_the_extension_keeps_the_contracts_names() -> None:
    package = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext")
    server = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.server")
    store = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.store")
    config = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.config")
    assert package.EXTENSION_NAME == contract.EXTENSION_NAME
    assert (asset_path(contract.EXTENSION_ASSET) / "extensions" / contract.EXTENSION_NAME).is_file()
    assert config.DEFAULT_PORT == contract.EXTENSION_PORT
    assert contract.TOKEN_HEADER.lower() == server.TOKEN_HEADER
    assert server.CIRCUIT_ID.pattern == contract.CIRCUIT_ID_PATTERN.pattern
    assert (store.CLOSED, store.OPEN, store.HALF_OPEN, store.FORCED_OPEN, store.DISABLED) == contract.CIRCUIT_STATES
    assert store.UPDATED_BY == contract.UPDATED_BY_EXTENSION


def test_the_extension_reads_the_environment_the_construct_sets() -> None:
    settings = Settings.from_env(
        {
            contract.ENV_TABLE: "states",
            contract.ENV_PORT: "5001",
            contract.ENV_CACHE_TTL_MS: "7",
            contract.ENV_CIRCUITS: "a,b",
            contract.ENV_FAILURE_RATE: "20",
            contract.ENV_MIN_CALLS: "3",
            contract.ENV_WINDOW_MS: "9000",
            contract.ENV_SLOW_CALL_MS: "11",
        }
    )
    assert (settings.table, settings.port, settings.cache_ttl_ms, settings.circuits) == ("states", 5001, 7, ("a", "b"))
    assert (settings.failure_rate, settings.min_calls, settings.window_ms, settings.slow_call_ms) == (20.0, 3, 9000, 11)


def test_the_client_keeps_the_contracts_names(monkeypatch: pytest.MonkeyPatch) -> None:
    client = load_runtime_module("circuit_breaker_extension", "circuit_breaker_client")
    assert (client.DEFAULT_PORT, client.TOKEN_HEADER) == (contract.EXTENSION_PORT, contract.TOKEN_HEADER)
    assert client.CIRCUIT_ID.pattern == contract.CIRCUIT_ID_PATTERN.pattern
    assert client.POLICIES == contract.ON_EXTENSION_ERROR and client.FAIL_OPEN == contract.FAIL_OPEN
    assert client.PASSING_STATES == contract.PASSING_STATES
    monkeypatch.setenv(contract.ENV_PORT, "5002")
    monkeypatch.setenv(contract.ENV_ON_EXTENSION_ERROR, contract.FAIL_CLOSED)
    configured = client.CircuitBreakerClient()
    assert (configured.port, configured.policy) == (5002, contract.FAIL_CLOSED)
    configured.close()


def test_the_health_checker_keeps_the_contracts_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hc.STATES == contract.CIRCUIT_STATES and hc.OPERATOR_STATES == contract.OPERATOR_STATES
    assert (hc.EVENT_SOURCE, hc.EVENT_DETAIL_TYPE) == (contract.EVENT_SOURCE, contract.EVENT_DETAIL_TYPE)
    assert hc.DEFAULT_METRIC_NAMESPACE == contract.METRIC_NAMESPACE
    assert hc.UPDATED_BY == contract.UPDATED_BY_HEALTH_CHECKER
    monkeypatch.setenv(contract.ENV_TABLE, "states")
    monkeypatch.setenv(contract.ENV_EVENT_BUS, "bus")
    monkeypatch.setenv(contract.ENV_METRIC_NAMESPACE, "Team/Breakers")
    monkeypatch.setattr(hc, "_checker", None)
    checker = hc._default_checker()
    assert (checker.table_name, checker.event_bus_name, checker.metric_namespace) == ("states", "bus", "Team/Breakers")
    monkeypatch.setattr(hc, "_checker", None)


def test_the_construct_sets_only_the_contracts_environment(sample_templates: dict[str, dict[str, Any]]) -> None:
    declared = {value for key, value in vars(contract).items() if key.startswith("ENV_")}
    template = sample_templates["ServerlessPatternsCircuitBreaker"]
    seen = set()
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            names = {n for n in resource["Properties"].get("Environment", {}).get("Variables", {}) if "CIRCUIT" in n}
            assert names <= declared, names - declared
            seen |= names
    assert seen == declared  # the checker's and a protected function's variables, together, are the whole contract
    tables = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table"]
    assert [t["KeySchema"] for t in tables] == [[{"AttributeName": contract.TABLE_KEY, "KeyType": "HASH"}]]
