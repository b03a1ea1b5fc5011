"""The client's semantics against the real extension (RIE + moto server): nested circuits, one HALF_OPEN
permit per call, which outcomes count, async callers, and background outcome reports.

Outcome reports go through the client's background sender: ``flush()`` and ``outcomes_sent`` say
what reached the extension, moto's table says whether a circuit tripped.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cdk_serverless_patterns.local.lambda_environment import wait_for
from cdk_serverless_patterns.testing.circuit_breaker import CircuitMoto, ProtectedFunction
from cdk_serverless_patterns.testing.moto import load_runtime_module

cb = load_runtime_module("circuit_breaker_extension", "circuit_breaker_client")

pytestmark = pytest.mark.slow
_versions = itertools.count(10)


@pytest.fixture(scope="module")
def env(
    moto: CircuitMoto, tmp_path_factory: pytest.TempPathFactory, lambda_environment: Any
) -> Iterator[ProtectedFunction]:
    with lambda_environment(
        tmp_path_factory.mktemp("rie"),
        moto,
        CIRCUIT_BREAKER_CACHE_TTL_MS="50",  # the tests change circuits under the extension
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


@pytest.fixture
def circuit(env: ProtectedFunction, moto: CircuitMoto) -> Any:
    """``circuit(id, state, **extra)``: writes the item and waits until the extension serves that version."""
    look = cb.CircuitBreakerClient(port=env.port, token=env.token, memo_ttl=0)

    def put(circuit_id: str, state: str, **extra: int | str) -> str:
        version = next(_versions)
        moto.put_circuit(circuit_id, state, version, **extra)
        assert wait_for(lambda: look.status(circuit_id).version == version), circuit_id
        return circuit_id

    yield put
    look.close()


def _sent(client: cb.CircuitBreakerClient) -> int:
    assert client.flush(timeout=5)
    return int(client.outcomes_sent)


# -- 6. nested protected calls ---------------------------------------------------------------
@pytest.mark.parametrize(("outer", "inner"), [("alpha", "beta"), ("beta", "alpha")])
def test_an_open_inner_circuit_is_not_a_failure_of_the_outer_one(
    client: cb.CircuitBreakerClient, circuit: Any, moto: CircuitMoto, outer: str, inner: str
) -> None:
    circuit(outer, "CLOSED")
    circuit(inner, "OPEN")
    outer_fallbacks: list[int] = []

    @client.protected(inner)
    def call_inner() -> str:
        return "inner called"

    @client.protected(outer, fallback=lambda: outer_fallbacks.append(1) or "outer fallback")
    def call_outer() -> str:
        return call_inner()

    before = _sent(client)
    for _ in range(12):  # min 3 calls at 60%: twelve counted failures would trip the outer circuit
        with pytest.raises(cb.CircuitOpenError) as raised:
            call_outer()
        assert raised.value.status.circuit_id == inner
        with pytest.raises(cb.CircuitOpenError), client.guard(outer), client.guard(inner):
            pytest.fail("the inner block must not run")
    assert outer_fallbacks == []  # the outer fallback is for the outer service, which is fine
    assert _sent(client) == before  # neither a failure nor a success was reported for the outer circuit
    assert moto.circuit(outer)["state"] == "CLOSED"
    assert client.status(outer).state == "CLOSED"


def test_an_open_inner_circuit_passes_through_async_outer_calls(
    client: cb.CircuitBreakerClient, circuit: Any, moto: CircuitMoto
) -> None:
    circuit("gamma", "CLOSED")
    circuit("delta", "OPEN")

    @client.protected("delta")
    async def inner() -> str:
        return "inner called"

    @client.protected("gamma", fallback=lambda: "outer fallback")
    async def outer() -> str:
        return await inner()

    async def main() -> list[str]:
        seen = []
        for _ in range(6):
            try:
                await outer()
            except cb.CircuitOpenError as error:
                seen.append(error.status.circuit_id)
            try:
                async with client.guard("gamma"), client.guard("delta"):
                    seen.append("ran")
            except cb.CircuitOpenError as error:
                seen.append(error.status.circuit_id)
        return seen

    before = _sent(client)
    assert asyncio.run(main()) == ["delta"] * 12
    assert _sent(client) == before
    assert moto.circuit("gamma")["state"] == "CLOSED"


# -- 7. one call, one HALF_OPEN permit ------------------------------------------------------------
def test_is_call_permitted_then_guard_spends_one_trial_permit(client: cb.CircuitBreakerClient, circuit: Any) -> None:
    circuit("trial", "HALF_OPEN", halfOpenTrials=2)
    assert client.is_call_permitted("trial") is True  # permit 1 of 2
    with client.guard("trial") as status:  # uses the permit taken above
        assert status.state == "HALF_OPEN"
    assert client.is_call_permitted("trial") is True  # permit 2 of 2: still one left before
    charge = client.protected("trial", fallback=lambda: "fallback")(lambda: "called")
    assert charge() == "called"  # uses permit 2
    assert charge() == "fallback"  # no permit left
    assert client.is_call_permitted("trial") is False


def test_a_held_permit_belongs_to_its_own_thread_or_task(client: cb.CircuitBreakerClient, circuit: Any) -> None:
    circuit("trial-async", "HALF_OPEN", halfOpenTrials=1)

    async def taker() -> bool:
        permitted = client.is_call_permitted("trial-async")
        async with client.guard("trial-async"):
            pass
        return permitted

    async def other() -> str:
        try:
            async with client.guard("trial-async"):
                return "ran"
        except cb.CircuitOpenError:
            return "short-circuited"

    async def main() -> tuple[bool, str]:
        permitted = await asyncio.create_task(taker())
        return permitted, await asyncio.create_task(other())

    assert asyncio.run(main()) == (True, "short-circuited")  # the other task cannot use the first one's permit


def test_record_outcome_releases_the_held_permit(client: cb.CircuitBreakerClient, circuit: Any) -> None:
    circuit("trial-pair", "HALF_OPEN", halfOpenTrials=1)
    assert client.is_call_permitted("trial-pair") is True
    assert client.record("trial-pair", success=True, duration_ms=3) is True  # the low-level pair, done
    with pytest.raises(cb.CircuitOpenError), client.guard("trial-pair"):
        pytest.fail("the permit was used by the call reported above")


# -- 10. which outcomes count ---------------------------------------------------------------------
def test_a_5xx_result_counts_as_a_failure_with_is_failure(
    client: cb.CircuitBreakerClient, circuit: Any, moto: CircuitMoto
) -> None:
    circuit("http-5xx", "CLOSED")

    @client.protected("http-5xx", fallback=lambda: {"status": 0}, is_failure=lambda response: response["status"] >= 500)
    def call() -> dict[str, int]:
        return {"status": 503}

    assert [call() for _ in range(3)] == [{"status": 503}] * 3  # the results are still returned
    assert wait_for(lambda: moto.circuit("http-5xx")["state"] == "OPEN")
    assert wait_for(lambda: call() == {"status": 0})


def test_only_failure_exceptions_count(client: cb.CircuitBreakerClient, circuit: Any, moto: CircuitMoto) -> None:
    circuit("typed", "CLOSED")
    before = _sent(client)
    for _ in range(5):  # a bug in the caller's own code: reported as a success (the service answered)
        with pytest.raises(KeyError), client.guard("typed", failure_exceptions=(TimeoutError, ConnectionError)):
            raise KeyError("order_id")
    assert _sent(client) == before + 5
    assert moto.circuit("typed")["state"] == "CLOSED"
    for _ in range(3):
        with pytest.raises(TimeoutError), client.guard("typed", failure_exceptions=TimeoutError):
            raise TimeoutError("payments did not answer")
    # 3 failures of 8 calls (37%) do not trip at 60%; 8 failures of 13 calls (62%) do
    for _ in range(5):
        with pytest.raises(ConnectionError), client.guard("typed", failure_exceptions=(TimeoutError, ConnectionError)):
            raise ConnectionError("refused")
    assert wait_for(lambda: moto.circuit("typed")["state"] == "OPEN")


def test_ignored_exceptions_are_not_reported_at_all(
    client: cb.CircuitBreakerClient, circuit: Any, moto: CircuitMoto
) -> None:
    circuit("ignoring", "CLOSED")

    @client.protected("ignoring", ignored_exceptions=(ValueError,))
    def call(kind: type[Exception]) -> None:
        raise kind("no")

    before = _sent(client)
    for _ in range(10):
        with pytest.raises(ValueError):
            call(ValueError)
    assert _sent(client) == before  # neither a failure nor a success
    for _ in range(3):
        with pytest.raises(RuntimeError):
            call(RuntimeError)
    assert _sent(client) == before + 3
    assert wait_for(lambda: moto.circuit("ignoring")["state"] == "OPEN")


# -- 11. async callers ----------------------------------------------------------------------------
def test_async_protected_and_async_guard(client: cb.CircuitBreakerClient, circuit: Any, moto: CircuitMoto) -> None:
    circuit("async-ok", "CLOSED")
    circuit("async-open", "OPEN")
    circuit("async-flaky", "CLOSED")

    async def queue_for_later(order: str) -> str:
        await asyncio.sleep(0)
        return f"queued {order}"

    @client.protected("async-ok", fallback=queue_for_later)
    async def charge(order: str) -> str:
        await asyncio.sleep(0.001)
        return f"charged {order}"

    @client.protected("async-open", fallback=queue_for_later)
    async def charge_open(order: str) -> str:
        raise AssertionError("must not be called while OPEN")

    @client.protected("async-flaky")
    async def flaky() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("payments down")

    async def main() -> list[str]:
        results = list(await asyncio.gather(*(charge(f"o-{i}") for i in range(20))))
        results.append(await charge_open("o-x"))
        async with client.guard("async-ok") as status:
            results.append(status.state)
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await flaky()
        return results

    assert asyncio.run(main()) == [f"charged o-{i}" for i in range(20)] + ["queued o-x", "CLOSED"]
    assert wait_for(lambda: moto.circuit("async-flaky")["state"] == "OPEN")


def test_memo_hits_and_reports_of_an_async_call_leave_the_event_loop_free(
    client: cb.CircuitBreakerClient, circuit: Any
) -> None:
    circuit("async-hot", "CLOSED")

    @client.protected("async-hot")
    async def call() -> int:
        return 1

    async def main() -> int:
        await call()  # the first lookup runs in a worker thread
        return sum([await call() for _ in range(500)])

    assert asyncio.run(main()) == 500
    assert client.status("async-hot").memoized is True
    assert client.flush(timeout=5)


# -- 12. outcome delivery -------------------------------------------------------------------------
def test_reports_from_protected_calls_reach_the_extension(
    client: cb.CircuitBreakerClient, circuit: Any, moto: CircuitMoto
) -> None:
    circuit("delivered", "CLOSED")
    charge = client.protected("delivered")(lambda: "ok")
    before = _sent(client)
    assert [charge() for _ in range(50)] == ["ok"] * 50
    assert client.flush(timeout=5) is True
    assert (client.outcomes_sent - before, client.outcomes_dropped, client.outcomes_failed) == (50, 0, 0)
    assert moto.circuit("delivered")["state"] == "CLOSED"


def test_a_wrong_token_is_decided_by_policy_and_not_asked_again(env: ProtectedFunction) -> None:
    breaker = cb.CircuitBreakerClient(port=env.port, token="stolen?", on_extension_error="fail_open")
    status = breaker.status("payments")
    assert (status.decided_by, status.reason, status.permitted) == ("policy", "wrong token", True)
    assert [breaker.is_call_permitted(c) for c in ("payments", "other")] == [True, True]


def test_sixteen_threads_share_one_client(env: ProtectedFunction, circuit: Any, moto: CircuitMoto) -> None:
    circuit("shared", "CLOSED")
    breaker = cb.CircuitBreakerClient(port=env.port, token=env.token, outcome_queue_size=10_000)
    charge = breaker.protected("shared")(lambda: time.sleep(0.0005) or "called")
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.extend(charge() for _ in range(200))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and results == ["called"] * 3200
    assert breaker.flush(timeout=30) is True
    assert (breaker.outcomes_sent, breaker.outcomes_dropped, breaker.outcomes_failed) == (3200, 0, 0)
    assert moto.circuit("shared")["state"] == "CLOSED"
    breaker.close()
