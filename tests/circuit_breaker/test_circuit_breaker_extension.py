"""The circuit-breaker extension as a real process in a real (emulated) Lambda environment.

Each environment is the AWS Lambda Runtime Interface Emulator running ``awslambdaric`` with the
extension layer mounted at ``/opt`` (``cdk_serverless_patterns.testing.circuit_breaker``); DynamoDB is moto
server on localhost. The tests talk to the extension's port as the function would, and invoke
the function to drive INVOKE events; SIGTERM to the emulator sends SHUTDOWN.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cdk_serverless_patterns._paths import asset_path
from cdk_serverless_patterns.local.lambda_environment import wait_for
from cdk_serverless_patterns.testing.circuit_breaker import CircuitMoto, ProtectedFunction
from cdk_serverless_patterns.testing.moto import load_runtime_module

pytestmark = pytest.mark.slow

TTL_MS = 1500  # long enough that a loaded machine cannot outrun it between two lookups


@pytest.fixture(scope="module")
def env(
    moto: CircuitMoto, tmp_path_factory: pytest.TempPathFactory, lambda_environment: Any
) -> Iterator[ProtectedFunction]:
    """One environment for the module: short TTL, small outcome window (4 calls, 50%, 200 ms slow)."""
    for circuit_id in ("payments", "inventory"):
        moto.put_circuit(circuit_id, "CLOSED", 1)
    with lambda_environment(
        tmp_path_factory.mktemp("rie"),
        moto,
        CIRCUIT_BREAKER_CACHE_TTL_MS=str(TTL_MS),
        CIRCUIT_BREAKER_CIRCUITS="payments,inventory",
        CIRCUIT_BREAKER_MIN_CALLS="4",
        CIRCUIT_BREAKER_FAILURE_RATE="50",
        CIRCUIT_BREAKER_WINDOW_MS="30000",
        CIRCUIT_BREAKER_SLOW_CALL_MS="200",
    ) as environment:
        environment.invoke({"circuits": ["payments"]})  # the init phase: extension registers, then runtime
        yield environment


def test_registers_under_its_file_name_for_invoke_and_shutdown(env: ProtectedFunction) -> None:
    log = env.log()
    assert "External agent circuit-breaker" in log and "registered, subscribed to [INVOKE SHUTDOWN]" in log
    assert len(env.extension_pids()) == 1
    assert '"message": "ready"' in log


def test_many_lookups_cost_one_get_item_until_the_ttl_passes(env: ProtectedFunction, moto: CircuitMoto) -> None:
    moto.put_circuit("cache-hit", "CLOSED", 7)
    before = moto.get_item_calls
    conn = env.connection()  # one keep-alive connection, as the client keeps
    answers = [env.ask("GET", "/circuits/cache-hit", conn=conn) for _ in range(50)]
    assert moto.get_item_calls - before == 1
    assert {(status, body["state"], body["version"]) for status, body in answers} == {(200, "CLOSED", 7)}
    assert answers[0][1]["cached"] is False
    assert all(body["cached"] and not body["stale"] for _, body in answers[1:])

    # A change in the table does not show while the entry is fresh...
    moto.put_circuit("cache-hit", "OPEN", 8)
    status, body = env.ask("GET", "/circuits/cache-hit", conn=conn)
    assert (status, body["state"], body["version"], body["cached"]) == (200, "CLOSED", 7, True)
    assert moto.get_item_calls - before == 1
    # ...and shows once the TTL has passed: the expired entry is read again, once.
    time.sleep(TTL_MS / 1000 + 0.1)
    status, body = env.ask("GET", "/circuits/cache-hit", conn=conn)
    assert (status, body["state"], body["version"], body["cached"], body["permitted"]) == (200, "OPEN", 8, False, False)
    assert moto.get_item_calls - before == 2
    assert body["ageMs"] < TTL_MS
    conn.close()


def test_invoke_refreshes_stale_prefetched_circuits(env: ProtectedFunction, moto: CircuitMoto) -> None:
    moto.put_circuit("inventory", "FORCED_OPEN", 2)
    time.sleep(TTL_MS / 1000 + 0.1)
    before = moto.get_item_calls
    env.invoke({"circuits": []})  # an INVOKE event, and the function asks for nothing
    assert wait_for(lambda: moto.get_item_calls - before >= 2)  # both prefetched circuits, re-read
    status, body = env.ask("GET", "/circuits/inventory")
    assert (status, body["state"], body["cached"], body["permitted"]) == (200, "FORCED_OPEN", True, False)


def test_concurrent_callers_share_one_read(env: ProtectedFunction, moto: CircuitMoto) -> None:
    """Eight connections at once (a thread each on the extension's side): all answered, one GetItem."""
    moto.put_circuit("concurrent", "CLOSED", 3)
    before = moto.get_item_calls
    barrier = threading.Barrier(8)

    def caller() -> set[tuple[int, str]]:
        conn = env.connection()
        barrier.wait()
        try:
            return {
                (status, body["state"])
                for status, body in (env.ask("GET", "/circuits/concurrent", conn=conn) for _ in range(25))
            }
        finally:
            conn.close()

    with ThreadPoolExecutor(8) as pool:
        answers = set().union(*pool.map(lambda _: caller(), range(8)))
    assert answers == {(200, "CLOSED")}
    assert moto.get_item_calls - before == 1


def test_the_port_refuses_callers_without_the_functions_token(env: ProtectedFunction) -> None:
    assert env.ask("GET", "/circuits/payments", token="")[0] == 403
    assert env.ask("GET", "/circuits/payments", token="not-" + env.token)[0] == 403
    assert env.ask("GET", "/circuits/payments", token=env.token[:-1])[0] == 403
    assert env.ask("POST", "/circuits/payments/outcomes", {"success": False}, token="x")[0] == 403
    assert env.ask("GET", "/circuits/payments")[0] == 200


def test_unknown_circuit_and_bad_requests(env: ProtectedFunction) -> None:
    assert env.ask("GET", "/circuits/no-such-circuit") == (404, {"circuitId": "no-such-circuit", "state": "UNKNOWN"})
    assert env.ask("GET", "/circuits/bad%20id")[0] == 404
    assert env.ask("GET", "/elsewhere")[0] == 404
    assert env.ask("POST", "/circuits/payments")[0] == 405
    assert env.ask("POST", "/circuits/payments/outcomes", {"success": "yes"})[0] == 400
    assert env.ask("POST", "/circuits/payments/outcomes", {"success": True, "durationMs": -1})[0] == 400


def test_reported_failures_trip_the_circuit_with_a_conditional_write(env: ProtectedFunction, moto: CircuitMoto) -> None:
    moto.put_circuit("orders", "CLOSED", 5, failureThreshold=3)
    assert env.ask("GET", "/circuits/orders")[1]["version"] == 5
    # Below the minimum number of calls nothing trips, whatever the rate.
    for success in (False, True, False):
        assert env.ask("POST", "/circuits/orders/outcomes", {"success": success, "durationMs": 3})[0] == 202
    time.sleep(0.2)
    assert moto.circuit("orders")["state"] == "CLOSED"
    # The fourth call makes 2 failures in 4 (50%): the extension writes OPEN on version 5.
    assert env.ask("POST", "/circuits/orders/outcomes", {"success": True, "durationMs": 3})[0] == 202
    item = wait_for(lambda: (c := moto.circuit("orders"))["state"] == "OPEN" and c)
    assert item["version"] == 6
    assert item["updatedBy"] == "extension"
    assert "2 of 4 calls failed" in item["reason"]
    assert item["failureThreshold"] == 3  # the rest of the item is kept
    # The extension caches what it wrote (moto may show the write a moment before the extension
    # has parsed the answer), without another read.
    before = moto.get_item_calls
    answer = wait_for(lambda: (a := env.ask("GET", "/circuits/orders"))[1]["state"] == "OPEN" and a, timeout=2)
    assert answer, "the extension did not cache the state it wrote"
    status, body = answer
    assert (status, body["state"], body["version"], body["permitted"]) == (200, "OPEN", 6, False)
    assert moto.get_item_calls == before


def test_slow_calls_trip_the_circuit(env: ProtectedFunction, moto: CircuitMoto) -> None:
    moto.put_circuit("shipping", "CLOSED", 1)
    env.ask("GET", "/circuits/shipping")
    for duration in (250, 300, 10, 400):  # 3 of 4 slower than 200 ms, all successful
        env.ask("POST", "/circuits/shipping/outcomes", {"success": True, "durationMs": duration})
    item = wait_for(lambda: (c := moto.circuit("shipping"))["state"] == "OPEN" and c)
    assert item and "3 were slow" in item["reason"]


def test_a_concurrent_write_is_not_lost_by_a_trip(env: ProtectedFunction, moto: CircuitMoto) -> None:
    moto.put_circuit("ledger", "CLOSED", 1)
    assert env.ask("GET", "/circuits/ledger")[1]["version"] == 1  # cached at version 1
    moto.put_circuit("ledger", "CLOSED", 2, consecutiveFailures=2)  # the health checker wrote meanwhile
    for _ in range(4):
        env.ask("POST", "/circuits/ledger/outcomes", {"success": False, "durationMs": 1})
    item = wait_for(lambda: (c := moto.circuit("ledger"))["state"] == "OPEN" and c)
    assert item["version"] == 3  # conditional write on 1 failed, re-read, wrote on 2
    assert item["consecutiveFailures"] == 2


def test_an_operator_state_is_never_overwritten_by_a_trip(env: ProtectedFunction, moto: CircuitMoto) -> None:
    moto.put_circuit("reports", "DISABLED", 4)
    assert env.ask("GET", "/circuits/reports")[1]["permitted"] is True
    for _ in range(6):
        env.ask("POST", "/circuits/reports/outcomes", {"success": False, "durationMs": 1})
    time.sleep(0.3)
    assert (moto.circuit("reports")["state"], moto.circuit("reports")["version"]) == ("DISABLED", 4)


def test_half_open_hands_out_a_limited_number_of_trials(env: ProtectedFunction, moto: CircuitMoto) -> None:
    moto.put_circuit("search", "HALF_OPEN", 3, halfOpenTrials=2, halfOpenTrialsLeft=2)
    assert env.ask("GET", "/circuits/search")[1]["permitted"] is True  # a look does not take a trial
    trials = [env.ask("GET", "/circuits/search?acquire=1")[1]["permitted"] for _ in range(3)]
    assert trials == [True, True, False]
    # A failed trial sends the circuit back to OPEN at once.
    env.ask("POST", "/circuits/search/outcomes", {"success": False, "durationMs": 5})
    item = wait_for(lambda: (c := moto.circuit("search"))["state"] == "OPEN" and c)
    assert item["version"] == 4 and "trial call failed" in item["reason"]


def test_dynamodb_outage_serves_the_cached_state_flagged_stale(tmp_path: Path, lambda_environment: Any) -> None:
    moto = CircuitMoto()
    moto.start()
    moto.put_circuit("payments", "OPEN", 9)
    try:
        with lambda_environment(tmp_path, moto, CIRCUIT_BREAKER_CACHE_TTL_MS="200") as env:
            assert env.invoke({"circuits": ["payments"]})[0]["state"] == "OPEN"
            moto.stop()  # DynamoDB goes away
            time.sleep(0.3)
            status, body = env.ask("GET", "/circuits/payments")
            assert (status, body["state"], body["version"], body["stale"], body["cached"]) == (
                200,
                "OPEN",
                9,
                True,
                True,
            )
            assert body["ageMs"] >= 200
            # The function still gets an answer, through an INVOKE while DynamoDB is down.
            (seen,) = env.invoke({"circuits": ["payments"]})
            assert (seen["state"], seen["stale"], seen["permitted"], seen["decided_by"]) == (
                "OPEN",
                True,
                False,
                "extension",
            )
            # Nothing cached and nothing readable: 503, and the client falls back to its policy.
            assert env.ask("GET", "/circuits/never-seen")[0] == 503
            (never,) = env.invoke({"circuits": ["never-seen"]})
            assert (never["decided_by"], never["permitted"]) == ("policy", True)
            # DynamoDB comes back: the next read after the back-off is fresh again.
            moto.restart()
            moto.put_circuit("payments", "CLOSED", 10)
            body = wait_for(lambda: (b := env.ask("GET", "/circuits/payments")[1])["stale"] is False and b, timeout=5)
            assert body and (body["state"], body["version"]) == ("CLOSED", 10)
    finally:
        moto.stop()


def test_shutdown_event_ends_the_extension_process(tmp_path: Path, moto: CircuitMoto, lambda_environment: Any) -> None:
    moto.put_circuit("payments", "CLOSED", 1)
    with lambda_environment(tmp_path, moto) as env:
        env.invoke({"circuits": ["payments"]})
        (pid,) = env.extension_pids()
        started = time.monotonic()
        assert env.shutdown() is not None
        assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)
        assert time.monotonic() - started < 5
        log = env.log()
        assert '"message": "shutdown", "reason": "SandboxTerminated"' in log
        assert "Extension.Crash" not in log
        with pytest.raises(OSError):  # the port closed with the process
            env.ask("GET", "/circuits/payments")


def test_bad_configuration_is_reported_as_an_init_error(
    tmp_path: Path, moto: CircuitMoto, lambda_environment: Any
) -> None:
    with lambda_environment(tmp_path, moto, CIRCUIT_BREAKER_TABLE="", CIRCUIT_BREAKER_CACHE_TTL_MS="soon") as env:
        with pytest.raises(urllib.error.HTTPError) as failed:
            env.invoke({"circuits": []})
        assert failed.value.code == 502  # the init phase failed: the RIE answers Bad Gateway
        log = env.log()
        assert "Extension.ConfigError" in log
        assert "CIRCUIT_BREAKER_TABLE is not set" in log and "CIRCUIT_BREAKER_CACHE_TTL_MS='soon'" in log


def test_a_taken_port_is_reported_as_an_init_error(tmp_path: Path, moto: CircuitMoto, lambda_environment: Any) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        with lambda_environment(tmp_path, moto, CIRCUIT_BREAKER_PORT=str(port)) as env:
            with pytest.raises(urllib.error.HTTPError) as failed:
                env.invoke({"circuits": []})
            assert failed.value.code == 502
            assert "Extension.PortUnavailable" in env.log()
            assert f"cannot listen on 127.0.0.1:{port}" in env.log()


def test_the_synthesized_layer_asset_runs_as_deployed(
    sample_assembly: Any, moto: CircuitMoto, tmp_path: Path, lambda_environment: Any
) -> None:
    """The layer asset the sample app stages for deployment (not the source folder) at /opt."""
    staged = [path.parent.parent for path in sample_assembly.outdir.glob("asset.*/extensions/circuit-breaker")]
    assert len(staged) == 1, staged
    (layer,) = staged
    launcher = layer / "extensions" / "circuit-breaker"
    assert launcher.stat().st_mode & 0o111 == 0o111  # Lambda only starts executable extensions
    assert not list(layer.rglob("__pycache__"))
    moto.put_circuit("payments", "CLOSED", 1)
    with lambda_environment(tmp_path, moto, layer=layer, CIRCUIT_BREAKER_CIRCUITS="payments") as env:
        (status,) = env.invoke({"circuits": ["payments"]})
        assert (status["state"], status["decided_by"]) == ("CLOSED", "extension")
        assert "External agent circuit-breaker" in env.log()


# -- the pure parts, in process --------------------------------------------------------------
def test_settings_from_the_contracts_environment() -> None:
    config = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.config")
    ConfigError, Settings = config.ConfigError, config.Settings

    settings = Settings.from_env({"CIRCUIT_BREAKER_TABLE": "t", "AWS_SESSION_TOKEN": "tok"})
    assert (settings.port, settings.cache_ttl_ms, settings.failure_rate, settings.min_calls) == (4243, 2000, 50.0, 10)
    settings = Settings.from_env(
        {"CIRCUIT_BREAKER_TABLE": "t", "CIRCUIT_BREAKER_CIRCUITS": " a, b ,,", "CIRCUIT_BREAKER_PORT": "5000"}
    )
    assert (settings.circuits, settings.port, settings.token) == (("a", "b"), 5000, "")
    with pytest.raises(ConfigError, match="CIRCUIT_BREAKER_FAILURE_RATE='150' must be between"):
        Settings.from_env({"CIRCUIT_BREAKER_TABLE": "t", "CIRCUIT_BREAKER_FAILURE_RATE": "150"})


def test_outcome_window_slides_and_needs_the_minimum_number_of_calls() -> None:
    OutcomeWindow = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.outcomes").OutcomeWindow

    window = OutcomeWindow(window_ms=1000, min_calls=4, failure_rate=50, slow_call_ms=100)
    assert not window.add(0, False, 1).trip
    assert not window.add(10, False, 1).trip
    assert not window.add(20, True, 1).trip  # 2 of 3 failed, but fewer than 4 calls
    verdict = window.add(30, True, 1)
    assert (verdict.calls, verdict.failures, verdict.trip) == (4, 2, True)
    # 1 s later the first two failures have left the window.
    verdict = window.add(1015, True, 1)
    assert (verdict.calls, verdict.failures, verdict.trip) == (3, 0, False)
    verdict = window.add(1016, True, 150)
    assert (verdict.calls, verdict.slow, verdict.trip) == (4, 1, False)
    verdict = window.add(1017, True, 150)  # 2 slow of 5 (the calls at 0 and 10 ms have left): 40%
    assert (verdict.calls, verdict.slow, verdict.trip) == (5, 2, False)
    verdict = window.add(1018, True, 150)  # 3 of 6: 50%
    assert (verdict.calls, verdict.slow, verdict.trip) == (6, 3, True)
    window.reset()
    assert window.verdict(1019) == type(verdict)(calls=0, failures=0, slow=0, trip=False)


def test_a_new_state_starts_a_new_outcome_window(moto: CircuitMoto, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache over moto in process (TTL 0: every lookup reads): failures from before an OPEN
    period do not count once the circuit is CLOSED again, and calls while OPEN are not counted."""
    Settings = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.config").Settings
    CircuitStore = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.store").CircuitStore

    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint)
    settings = Settings(table=moto.table, cache_ttl_ms=0, min_calls=4, failure_rate=50, window_ms=60_000)
    store = CircuitStore(settings)
    moto.put_circuit("recovering", "CLOSED", 1)
    assert store.lookup("recovering").state == "CLOSED"
    assert [store.record("recovering", False, 1) for _ in range(3)] == [False] * 3
    moto.put_circuit("recovering", "OPEN", 2)
    assert store.lookup("recovering").state == "OPEN"
    assert [store.record("recovering", False, 1) for _ in range(5)] == [False] * 5  # not counted while OPEN
    moto.put_circuit("recovering", "CLOSED", 3)
    assert store.lookup("recovering").state == "CLOSED"
    assert [store.record("recovering", False, 1) for _ in range(4)] == [False, False, False, True]
    assert store.trip("recovering") is True
    item = moto.circuit("recovering")
    assert (item["state"], item["version"], item["updatedBy"]) == ("OPEN", 4, "extension")
    assert store.lookup("recovering").state == "OPEN"


def test_the_start_up_path_imports_nothing_heavy() -> None:
    """What runs before event/next (launcher -> __main__ -> main, runtime_api, config) must not pull
    in boto3 or other costly modules: they are imported after Lambda has been told we are ready."""
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import circuit_breaker_ext.main, circuit_breaker_ext.config\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(asset_path("circuit_breaker_extension") / "python")},
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(result.stdout.split())
    assert {"circuit_breaker_ext.main", "circuit_breaker_ext.runtime_api", "circuit_breaker_ext.config"} <= loaded
    heavy = {"boto3", "botocore", "json", "dataclasses", "typing", "asyncio", "http.client", "urllib.request", "ssl"}
    assert not loaded & heavy
    assert not {m for m in loaded if m.startswith("circuit_breaker_ext.")} - {
        "circuit_breaker_ext.main",
        "circuit_breaker_ext.runtime_api",
        "circuit_breaker_ext.config",
    }
