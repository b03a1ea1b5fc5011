"""Review findings on the circuit-breaker extension: the outcome window's memory, and garbled items.

- The outcome window counts calls in a fixed number of time buckets: what it holds does not grow
  with the call rate, and its counts match an exact sliding window to within one bucket.
- An item whose ``state`` or ``version`` cannot be understood is answered 503 ``BadItem`` (the
  client's policy decides, never a guessed state), logged once per circuit, and never tripped. Items
  of each bad shape are written to moto server as DynamoDB stores them, and asked for through the
  extension's real server on a real socket, by raw HTTP and by the function's client.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdk_serverless_patterns.local.lambda_environment import wait_for
from cdk_serverless_patterns.testing.circuit_breaker import CircuitMoto
from cdk_serverless_patterns.testing.moto import load_runtime_module

config = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.config")
outcomes = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.outcomes")
store_module = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.store")
server_module = load_runtime_module("circuit_breaker_extension", "circuit_breaker_ext.server")
client_module = load_runtime_module("circuit_breaker_extension", "circuit_breaker_client")

TOKEN = "review-token"
UNREADABLE = "circuit item unreadable"
NOT_TRIPPING = "the outcomes call for a trip"


# -- 6. the outcome window: bounded memory, same semantics to within one bucket ---------------------
def test_the_outcome_window_holds_a_bounded_number_of_entries_whatever_the_call_rate() -> None:
    """300,000 calls in 60 s and then 1,000 calls/s for two hours of a one-hour window: the window
    never holds more than BUCKETS entries, and its counts are right."""
    window = outcomes.OutcomeWindow(window_ms=3_600_000, min_calls=10, failure_rate=50, slow_call_ms=5000)
    for i in range(300_000):
        window.add(i * 0.2, True, 12.5)
    assert window.buckets <= outcomes.BUCKETS
    assert window.verdict(60_000).calls == 300_000  # nothing has left a one-hour window yet
    now = 60_000.0
    for _ in range(7200 * 10):  # 10 calls per second, every 100 ms, for two hours; 1 in 4 failed
        now += 100
        window.add(now, int(now) % 400 != 0, 1)
        assert window.buckets <= outcomes.BUCKETS
    verdict = window.verdict(now)
    assert 35_640 <= verdict.calls <= 36_000  # one hour of calls, to within one bucket (36 s)
    assert verdict.failures == pytest.approx(verdict.calls / 4, abs=10)
    assert verdict.trip is False
    assert window.verdict(now + 3_600_000) == outcomes.Verdict(calls=0, failures=0, slow=0, trip=False)
    assert window.buckets == 0


@settings(max_examples=200, deadline=None)
@given(
    window_ms=st.sampled_from([100, 1000, 60_000]),
    calls=st.lists(st.tuples(st.integers(0, 3000), st.booleans(), st.integers(0, 300)), min_size=1, max_size=200),
)
def test_the_bucketed_counts_match_an_exact_window_to_within_one_bucket(
    window_ms: int, calls: list[tuple[int, bool, int]]
) -> None:
    """After every call: the calls (failures, slow calls) counted are at least those of the last
    ``window - window/BUCKETS`` and at most those of the last ``window``; the verdict applies
    minimum_calls and the rate threshold to exactly what is counted."""
    window = outcomes.OutcomeWindow(window_ms=window_ms, min_calls=3, failure_rate=50, slow_call_ms=100)
    width = window_ms // outcomes.BUCKETS
    now = 0
    seen: list[tuple[int, bool, bool]] = []
    for step, success, duration in calls:
        now += step
        verdict = window.add(now, success, duration)
        seen.append((now, not success, duration >= 100))
        for index, picked in ((0, lambda c: True), (1, lambda c: c[1]), (2, lambda c: c[2])):
            longest = sum(1 for c in seen if c[0] > now - window_ms and picked(c))
            shortest = sum(1 for c in seen if c[0] > now - window_ms + width and picked(c))
            counted = (verdict.calls, verdict.failures, verdict.slow)[index]
            assert shortest <= counted <= longest
        rate_hit = verdict.failures * 2 >= verdict.calls or verdict.slow * 2 >= verdict.calls
        assert verdict.trip == (verdict.calls >= 3 and rate_hit)
        assert window.buckets <= outcomes.BUCKETS


# -- 8. garbled items through the real server --------------------------------------------------------
class Extension:
    """The extension's store over moto server and its LocalServer on a real loopback socket."""

    def __init__(self, moto: CircuitMoto) -> None:
        settings_ = config.Settings(
            table=moto.table, token=TOKEN, cache_ttl_ms=0, min_calls=4, failure_rate=50, window_ms=60_000
        )
        self.store = store_module.CircuitStore(settings_)
        self.trips: list[str] = []
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.server = server_module.LocalServer(settings_, self.store, self.trips.append, listener)
        self.server.start()

    def ask(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers={"X-Circuit-Breaker-Token": TOKEN})
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            connection.close()

    def client(self, policy: str) -> Any:
        return client_module.CircuitBreakerClient(
            port=self.port, token=TOKEN, on_extension_error=policy, memo_ttl=0, retry_after=5
        )


@pytest.fixture
def extension(moto: CircuitMoto, monkeypatch: pytest.MonkeyPatch) -> Iterator[Extension]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint)
    running = Extension(moto)
    yield running
    running.server.close()


def put_raw(moto: CircuitMoto, circuit_id: str, **attributes: dict[str, Any]) -> None:
    """An item exactly as given (DynamoDB attribute values), as a hand edit or a buggy writer leaves it."""
    item = {"circuitId": {"S": circuit_id}, **attributes}
    moto.client("dynamodb").put_item(TableName=moto.table, Item=item)


BAD_ITEMS: dict[str, tuple[dict[str, Any], str]] = {
    "no-state": ({"version": {"N": "3"}}, "state is missing"),
    "lower-state": ({"state": {"S": "closed"}, "version": {"N": "3"}}, "state 'closed' is not one of CLOSED"),
    "numeric-state": ({"state": {"N": "1"}, "version": {"N": "3"}}, "state 1 (int) is not one of"),
    "bool-state": ({"state": {"BOOL": True}, "version": {"N": "3"}}, "state True (bool) is not one of"),
    "list-state": ({"state": {"L": [{"S": "CLOSED"}]}, "version": {"N": "3"}}, "is not one of"),
    "string-version": ({"state": {"S": "CLOSED"}, "version": {"S": "7"}}, "version '7' is not an integer"),
    "float-version": ({"state": {"S": "CLOSED"}, "version": {"N": "3.5"}}, "version 3.5 (float) is not an integer"),
    "negative-version": ({"state": {"S": "OPEN"}, "version": {"N": "-1"}}, "version -1 (int) is not an integer"),
}


def unreadable_logs(out: str, circuit_id: str, what: str = UNREADABLE) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("circuitId") == circuit_id and what in r["message"]]


@pytest.mark.parametrize("circuit_id", sorted(BAD_ITEMS))
def test_a_garbled_item_is_503_bad_item_and_the_policy_decides(
    moto: CircuitMoto, extension: Extension, capsys: pytest.CaptureFixture[str], circuit_id: str
) -> None:
    attributes, problem = BAD_ITEMS[circuit_id]
    put_raw(moto, circuit_id, **attributes)
    status, body = extension.ask("GET", f"/circuits/{circuit_id}")
    assert status == 503
    assert (body["circuitId"], body["state"], body["errorType"]) == (circuit_id, "UNKNOWN", "BadItem")
    assert problem in body["message"] and body["error"] == f"BadItem: {body['message']}"
    assert "permitted" not in body  # never a guessed answer

    # The function's client: each policy decides, and it asks again at each call (no memo, no back-off).
    closed, opened = extension.client("fail_closed"), extension.client("fail_open")
    try:
        for _ in range(3):
            shut = closed.status(circuit_id)
            assert (shut.permitted, shut.decided_by, shut.reason) == (False, "policy", "state unavailable")
            assert "BadItem" in (shut.error or "") and problem in (shut.error or "")
            passed = opened.status(circuit_id)
            assert (passed.permitted, passed.decided_by, passed.reason) == (True, "policy", "state unavailable")
        # Logged once for the circuit, however often it is asked for (cache TTL 0: read every time).
        reads = extension.store.reads
        assert reads >= 7
        assert len(unreadable_logs(capsys.readouterr().out, circuit_id)) == 1

        # Repaired, it is served again at the next call, and a new breakage is logged again.
        moto.put_circuit(circuit_id, "CLOSED", 8)
        repaired = closed.status(circuit_id)
        assert (repaired.state, repaired.permitted, repaired.decided_by, repaired.version) == (
            "CLOSED",
            True,
            "extension",
            8,
        )
        put_raw(moto, circuit_id, **attributes)
        assert closed.status(circuit_id).reason == "state unavailable"
        assert len(unreadable_logs(capsys.readouterr().out, circuit_id)) == 1
    finally:
        closed.close()
        opened.close()


def test_a_good_item_next_to_bad_ones_is_served_as_usual(moto: CircuitMoto, extension: Extension) -> None:
    moto.put_circuit("healthy", "CLOSED", 1)
    put_raw(moto, "broken", state={"S": "closed"}, version={"N": "1"})
    assert extension.ask("GET", "/circuits/broken")[0] == 503
    status, body = extension.ask("GET", "/circuits/healthy")
    assert status == 200 and (body["state"], body["version"], body["permitted"]) == ("CLOSED", 1, True)
    assert extension.ask("GET", "/circuits/absent") == (404, {"circuitId": "absent", "state": "UNKNOWN"})


@pytest.mark.parametrize(
    ("circuit_id", "version"),
    [("trip-string-version", {"S": "7"}), ("trip-float-version", {"N": "7.5"}), ("trip-huge-version", {"N": "1e30"})],
)
def test_no_trip_is_attempted_on_an_item_whose_version_is_unreadable(
    moto: CircuitMoto,
    extension: Extension,
    capsys: pytest.CaptureFixture[str],
    circuit_id: str,
    version: dict[str, str],
) -> None:
    """Failures reported for a CLOSED circuit with a garbled version would call for a trip: none
    is scheduled nor written (a write conditional on a guessed version), and that is logged once."""
    attributes: dict[str, Any] = {"state": {"S": "CLOSED"}, "version": version}
    put_raw(moto, circuit_id, **attributes)
    assert extension.ask("GET", f"/circuits/{circuit_id}")[0] == 503
    for _ in range(8):
        assert extension.ask("POST", f"/circuits/{circuit_id}/outcomes", {"success": False, "durationMs": 5})[0] == 202
    assert extension.trips == []
    assert extension.store.trip(circuit_id) is False  # even when asked directly (a trip already scheduled)
    item = moto.client("dynamodb").get_item(TableName=moto.table, Key={"circuitId": {"S": circuit_id}})["Item"]
    assert item == {"circuitId": {"S": circuit_id}, **attributes}  # untouched
    out = capsys.readouterr().out
    assert len(unreadable_logs(out, circuit_id)) == 1
    refused = unreadable_logs(out, circuit_id, NOT_TRIPPING)
    assert len(refused) == 1 and refused[0]["level"] == "ERROR" and "version" in refused[0]["problem"]

    # Repaired, the same failures trip it with a write conditional on the real version.
    moto.put_circuit(circuit_id, "CLOSED", 7)
    assert extension.ask("GET", f"/circuits/{circuit_id}")[0] == 200
    for _ in range(4):
        extension.ask("POST", f"/circuits/{circuit_id}/outcomes", {"success": False, "durationMs": 5})
    assert wait_for(lambda: extension.trips == [circuit_id], timeout=5)
    assert extension.store.trip(circuit_id) is True
    assert (moto.circuit(circuit_id)["state"], moto.circuit(circuit_id)["version"]) == ("OPEN", 8)


def test_an_item_without_version_is_read_as_version_0_and_tripped_conditionally(
    moto: CircuitMoto, extension: Extension, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the health checker and the operator command read it (an item written by hand): served,
    and a trip is written on the condition that it still has no version (never blindly)."""
    put_raw(moto, "hand-written", state={"S": "CLOSED"})
    put_raw(moto, "integral", state={"S": "CLOSED"}, version={"N": "7.0"})
    status, body = extension.ask("GET", "/circuits/hand-written")
    assert status == 200 and (body["state"], body["version"], body["permitted"]) == ("CLOSED", 0, True)
    status, body = extension.ask("GET", "/circuits/integral")
    assert status == 200 and (body["state"], body["version"]) == ("CLOSED", 7)
    for _ in range(4):
        extension.ask("POST", "/circuits/hand-written/outcomes", {"success": False, "durationMs": 5})
    assert extension.trips == ["hand-written"]
    assert extension.store.trip("hand-written") is True
    assert (moto.circuit("hand-written")["state"], moto.circuit("hand-written")["version"]) == ("OPEN", 1)
    assert unreadable_logs(capsys.readouterr().out, "hand-written") == []
