"""The function-side client: against the real extension (RIE + moto server), and with no extension.

The client module is imported from the layer's ``python/`` folder, as a user's own tests would.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cdk_serverless_patterns.local.lambda_environment import wait_for
from cdk_serverless_patterns.local.server import free_port
from cdk_serverless_patterns.testing.circuit_breaker import CircuitMoto, ProtectedFunction
from cdk_serverless_patterns.testing.moto import load_runtime_module

cb = load_runtime_module("circuit_breaker_extension", "circuit_breaker_client")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(
    moto: CircuitMoto, tmp_path_factory: pytest.TempPathFactory, lambda_environment: Any
) -> Iterator[ProtectedFunction]:
    circuits = {
        "payments": ("CLOSED", {}),
        "broken": ("OPEN", {}),
        "held": ("FORCED_OPEN", {}),
        "off": ("DISABLED", {}),
        "probing": ("HALF_OPEN", {"halfOpenTrials": 1}),
        "flaky": ("CLOSED", {}),
        "in-function": ("CLOSED", {}),
    }
    for circuit_id, (state, extra) in circuits.items():
        moto.put_circuit(circuit_id, state, 1, **extra)
    with lambda_environment(
        tmp_path_factory.mktemp("rie"),
        moto,
        CIRCUIT_BREAKER_CACHE_TTL_MS="60000",
        CIRCUIT_BREAKER_CIRCUITS=",".join(circuits),
        CIRCUIT_BREAKER_MIN_CALLS="3",
        CIRCUIT_BREAKER_FAILURE_RATE="60",
    ) as environment:
        environment.invoke({"circuits": []})  # init: the extension registers and starts serving
        yield environment


@pytest.fixture
def client(env: ProtectedFunction) -> Iterator[cb.CircuitBreakerClient]:
    breaker = cb.CircuitBreakerClient(port=env.port, token=env.token, on_extension_error="fail_closed")
    yield breaker
    breaker.close()


def _nothing_listening() -> int:
    return free_port()  # bound and released at once: connections are refused


# -- with the extension ----------------------------------------------------------------------
def test_closed_circuit_permits_calls_over_one_kept_alive_connection(client: cb.CircuitBreakerClient) -> None:
    status = client.status("payments")
    assert (status.state, status.permitted, status.decided_by, status.version) == ("CLOSED", True, "extension", 1)
    connection = client._sock
    assert all(client.is_call_permitted("payments") for _ in range(20))
    assert client._sock is connection is not None  # keep-alive: no new connection per lookup


def test_protected_calls_through_while_closed_and_falls_back_while_open(client: cb.CircuitBreakerClient) -> None:
    calls: list[str] = []

    def call_payments(order: str) -> str:
        calls.append(order)
        return f"charged {order}"

    def queue_order(order: str) -> str:
        return f"queued {order}"

    charge = client.protected("payments", fallback=queue_order)(call_payments)
    assert charge("o-1") == "charged o-1"
    broken = client.protected("broken", fallback=queue_order)(call_payments)
    assert broken("o-2") == "queued o-2"
    assert calls == ["o-1"]  # short-circuited: the downstream was not called while OPEN
    with pytest.raises(cb.CircuitOpenError, match="'broken' is OPEN"):
        client.protected("broken")(call_payments)("o-3")


def test_guard_short_circuits_forced_open_and_passes_disabled(client: cb.CircuitBreakerClient) -> None:
    with pytest.raises(cb.CircuitOpenError) as raised, client.guard("held"):
        pytest.fail("the block must not run while the circuit is FORCED_OPEN")
    assert (raised.value.status.state, raised.value.status.permitted) == ("FORCED_OPEN", False)
    ran = []
    with client.guard("off") as status:
        ran.append(status.state)
    assert ran == ["DISABLED"]


def test_half_open_lets_a_limited_trial_through(client: cb.CircuitBreakerClient) -> None:
    assert client.status("probing").permitted is True  # looking does not take the trial
    assert client.is_call_permitted("probing") is True
    assert client.is_call_permitted("probing") is False  # halfOpenTrials=1: the one trial is taken


def test_failures_reported_through_guard_trip_the_circuit(client: cb.CircuitBreakerClient, moto: CircuitMoto) -> None:
    for _ in range(3):
        with pytest.raises(TimeoutError), client.guard("flaky"):
            raise TimeoutError("payments did not answer")
    item = wait_for(lambda: (c := moto.circuit("flaky"))["state"] == "OPEN" and c)
    assert item and item["updatedBy"] == "extension"
    assert wait_for(lambda: not client.is_call_permitted("flaky"))


def test_exceptions_outside_failure_on_are_not_failures(client: cb.CircuitBreakerClient, moto: CircuitMoto) -> None:
    moto.put_circuit("validation", "CLOSED", 1)
    for _ in range(4):
        with pytest.raises(ValueError), client.guard("validation", failure_on=(ConnectionError,)):
            raise ValueError("bad input is not the downstream's fault")
    assert moto.circuit("validation")["state"] == "CLOSED"
    assert client.record("validation", success=True, duration_ms=1.5) is True


def test_unknown_circuit_goes_by_the_policy(env: ProtectedFunction) -> None:
    open_client = cb.CircuitBreakerClient(port=env.port, token=env.token, on_extension_error="fail_open")
    closed_client = cb.CircuitBreakerClient(port=env.port, token=env.token, on_extension_error="fail_closed")
    assert (open_client.status("nowhere").decided_by, open_client.is_call_permitted("nowhere")) == ("policy", True)
    assert closed_client.is_call_permitted("nowhere") is False


def test_a_wrong_token_is_an_extension_error(env: ProtectedFunction) -> None:
    breaker = cb.CircuitBreakerClient(port=env.port, token="stolen?", on_extension_error="fail_closed")
    status = breaker.status("payments")
    assert (status.decided_by, status.permitted) == ("policy", False)
    assert status.error and "refused the token" in status.error


def test_the_client_inside_the_function(env: ProtectedFunction, moto: CircuitMoto) -> None:
    """The handler imports circuit_breaker_client from /opt/python and uses the default client."""
    assert env.invoke({"action": "protected", "circuit": "broken"}) == {
        "results": ["fallback"],
        "calls": 0,
        "policy": "fail_open",
    }
    assert env.invoke({"action": "protected", "circuit": "in-function", "times": 2})["results"] == ["called"] * 2
    # Three failed calls (min 3, 60%) trip the circuit; the fourth goes to the fallback.
    answer = env.invoke({"action": "protected", "circuit": "in-function", "fail": True, "times": 3})
    assert answer["results"] == ["error: downstream failed"] * 3
    assert wait_for(lambda: moto.circuit("in-function")["state"] == "OPEN")
    # The extension trips in the background and caches OPEN once DynamoDB has answered the write, which can be
    # a moment after moto shows it (a loaded CI machine saw one more call go through): wait for its own view.
    assert wait_for(lambda: env.ask("GET", "/circuits/in-function")[1]["state"] == "OPEN", timeout=5)
    answer = env.invoke({"action": "protected", "circuit": "in-function", "times": 1})
    assert (answer["results"], answer["calls"]) == (["fallback"], 0)


# -- without the extension -------------------------------------------------------------------
def test_extension_down_fail_open_lets_calls_through() -> None:
    breaker = cb.CircuitBreakerClient(port=_nothing_listening(), token="t", on_extension_error="fail_open")
    status = breaker.status("payments")
    assert (status.permitted, status.decided_by, status.state) == (True, "policy", "UNKNOWN")
    assert status.error and "ConnectionRefusedError" in status.error
    assert breaker.protected("payments", fallback=lambda: "fallback")(lambda: "called")() == "called"
    with breaker.guard("payments") as guarded:
        assert guarded.decided_by == "policy"
    assert breaker.record("payments", success=True, duration_ms=1) is False  # reported nowhere, no exception


def test_extension_down_fail_closed_goes_to_the_fallback() -> None:
    breaker = cb.CircuitBreakerClient(port=_nothing_listening(), token="t", on_extension_error="fail_closed")
    called = []
    assert breaker.is_call_permitted("payments") is False
    assert breaker.protected("payments", fallback=lambda: "fallback")(lambda: called.append(1) or "called")() == (
        "fallback"
    )
    assert called == []
    with pytest.raises(cb.CircuitOpenError), breaker.guard("payments"):
        pytest.fail("the block must not run")


def test_an_extension_that_does_not_answer_times_out_into_the_policy() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        breaker = cb.CircuitBreakerClient(port=port, token="t", on_extension_error="fail_closed", timeout=0.2)
        status = breaker.status("payments")
    assert (status.permitted, status.decided_by) == (False, "policy")
    assert status.error and "timed out" in status.error


def test_policy_comes_from_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIRCUIT_BREAKER_ON_EXTENSION_ERROR", raising=False)
    assert cb.CircuitBreakerClient().policy == "fail_open"  # the documented default
    monkeypatch.setenv("CIRCUIT_BREAKER_ON_EXTENSION_ERROR", "fail_closed")
    assert cb.CircuitBreakerClient().policy == "fail_closed"
    assert cb.CircuitBreakerClient(on_extension_error="fail_open").policy == "fail_open"
    monkeypatch.setenv("CIRCUIT_BREAKER_ON_EXTENSION_ERROR", "maybe")
    with pytest.raises(ValueError, match="fail_open, fail_closed"):
        cb.CircuitBreakerClient()


def test_module_helpers_use_the_functions_environment(env: ProtectedFunction, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCUIT_BREAKER_PORT", str(env.port))
    monkeypatch.setenv("AWS_SESSION_TOKEN", env.token)
    monkeypatch.setenv("CIRCUIT_BREAKER_ON_EXTENSION_ERROR", "fail_closed")
    monkeypatch.setattr(cb, "_default", None)
    assert cb.is_call_permitted("payments") is True
    assert cb.is_call_permitted("broken") is False
    assert cb.record_outcome("payments", success=True, duration_ms=2) is True

    @cb.protected("broken", fallback=lambda x: x * 10)
    def double(x: int) -> int:
        return x * 2

    assert double(4) == 40
    with cb.guard("off") as status:
        assert status.state == "DISABLED"
    cb.default_client().close()


def test_bad_circuit_ids_and_generators_are_programming_errors() -> None:
    breaker = cb.CircuitBreakerClient(port=_nothing_listening(), token="t")
    with pytest.raises(ValueError, match="is not a circuit id"):
        breaker.status("payments/../admin")
    with pytest.raises(ValueError, match="is not a circuit id"):
        cb.protected("")

    def pages() -> Iterator[str]:
        yield "x"

    async def stream() -> AsyncIterator[str]:
        yield "x"

    for generator_function in (pages, stream):
        with pytest.raises(TypeError, match="generator function"):
            breaker.protected("payments")(generator_function)
        with pytest.raises(TypeError, match="generator function"):
            cb.protected("payments")(generator_function)
    with pytest.raises(ValueError, match="failure_exceptions must be"):
        cb.protected("payments", failure_exceptions=("TimeoutError",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        cb.guard("payments", failure_exceptions=TimeoutError, failure_on=(TimeoutError,))
    for bad in ({"memo_ttl": -1}, {"retry_after": float("nan")}, {"timeout": 0}, {"outcome_queue_size": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            cb.CircuitBreakerClient(port=1, token="t", **bad)
