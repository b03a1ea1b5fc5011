"""The circuit breaker's health checker against moto and a real HTTP server on 127.0.0.1.

The downstream service is a real ``http.server`` whose answers (status, delay) each test sets; the
table and the event bus are moto's (in-process ``mock_aws``). Published events are read back
through an EventBridge rule delivering to an SQS queue, as a subscriber would receive them.
"""

from __future__ import annotations

import json
import socket
import struct
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


hc = load_runtime_module(
    "circuit_breaker_health_checker", "health_checker", name="circuit_breaker_health_checker_under_test"
)


class Downstream:
    """A real HTTP server playing the downstream service; tests set what it answers."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        self.trickle = 0.0
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                if outer.delay:
                    time.sleep(outer.delay)
                body = b'{"ok": true}'
                try:
                    if outer.trickle:  # each piece arrives within the timeout, the whole answer does not
                        for piece in (f"HTTP/1.1 {outer.status} OK\r\n", "Content-Length: 0\r\n", "X-A: b\r\n", "\r\n"):
                            self.wfile.write(piece.encode())
                            self.wfile.flush()
                            time.sleep(outer.trickle)
                        return
                    self.send_response(outer.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the checker gave up on us (timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/health"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def downstream() -> Iterator[Downstream]:
    server = Downstream()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset(downstream: Downstream) -> None:
    downstream.status, downstream.delay, downstream.trickle, downstream.requests = 200, 0.0, 0.0, 0


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def aws_resources() -> Iterator[dict[str, Any]]:
    """moto started once for the module: the table, and a rule delivering circuit events to a queue."""
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_circuit_table(dynamodb, TABLE)
        events = boto3.client("events", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="circuit-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="circuit-events", EventPattern=json.dumps({"source": [hc.EVENT_SOURCE]}))
        events.put_targets(Rule="circuit-events", Targets=[{"Id": "queue", "Arn": queue_arn}])
        yield {"dynamodb": dynamodb, "events": events, "sqs": sqs, "queue_url": queue_url}


@pytest.fixture
def aws(aws_resources: dict[str, Any]) -> dict[str, Any]:
    """A clean slate for each test: no circuit items, no undelivered events."""
    dynamodb = aws_resources["dynamodb"]
    for stored in dynamodb.scan(TableName=TABLE, ProjectionExpression="circuitId")["Items"]:
        dynamodb.delete_item(TableName=TABLE, Key={"circuitId": stored["circuitId"]})
    published(aws_resources)
    return aws_resources


def make_checker(aws: dict[str, Any], clock: Clock, lines: list[str] | None = None, **kwargs: Any) -> Any:
    sink = lines if lines is not None else []
    return hc.HealthChecker(
        table_name=TABLE, dynamodb=aws["dynamodb"], events=aws["events"], clock=clock, emit=sink.append, **kwargs
    )


def config(url: str, **overrides: Any) -> Any:
    event = {
        "circuitId": "payments",
        "url": url,
        "timeoutMs": 300,
        "failureThreshold": 3,
        "coolDownMs": 30_000,
        "halfOpenTrials": 2,
        "allowHttp": True,
        **overrides,
    }
    return hc.CircuitConfig.from_event(event)


def item(aws: dict[str, Any], circuit_id: str = "payments") -> dict[str, Any]:
    raw = aws["dynamodb"].get_item(TableName=TABLE, Key={"circuitId": {"S": circuit_id}}, ConsistentRead=True)
    return dict(hc._from_dynamodb(raw["Item"]))


def published(aws: dict[str, Any]) -> list[dict[str, Any]]:
    events = []
    while True:
        batch = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return events
        for message in batch:
            events.append(json.loads(message["Body"]))
            aws["sqs"].delete_message(QueueUrl=aws["queue_url"], ReceiptHandle=message["ReceiptHandle"])


def test_healthy_service_creates_a_closed_item_then_writes_nothing_more(aws: dict[str, Any], downstream: Downstream):
    clock, lines = Clock(), []
    checker = make_checker(aws, clock, lines)
    summary = checker.check(config(downstream.url))
    assert summary["state"] == "CLOSED" and summary["probe"]["status"] == 200 and summary["probe"]["healthy"]
    stored = item(aws)
    assert stored["state"] == "CLOSED" and stored["version"] == 1 and stored["consecutiveFailures"] == 0
    assert stored["failureThreshold"] == 3 and stored["coolDownMs"] == 30_000 and stored["halfOpenTrials"] == 2
    assert stored["updatedBy"] == "health-checker" and stored["updatedAt"] == int(clock.now * 1000)
    clock.advance(60)
    checker.check(config(downstream.url))
    assert item(aws)["version"] == 1, "a healthy probe on a healthy circuit must not churn the version"
    assert downstream.requests == 2
    assert published(aws) == []
    metric = json.loads(lines[-1])
    assert metric["HealthCheckFailed"] == 0 and metric["CircuitOpen"] == 0
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == hc.DEFAULT_METRIC_NAMESPACE


def test_5xx_opens_only_after_the_threshold(aws: dict[str, Any], downstream: Downstream):
    clock, lines = Clock(), []
    checker = make_checker(aws, clock, lines)
    downstream.status = 503
    for expected_failures in (1, 2):
        summary = checker.check(config(downstream.url))
        assert summary["state"] == "CLOSED" and summary["transitions"] == []
        assert item(aws)["consecutiveFailures"] == expected_failures
        clock.advance(60)
    summary = checker.check(config(downstream.url))
    assert summary["transitions"] == [
        {"from": "CLOSED", "to": "OPEN", "reason": "3 consecutive failed health check(s) (HTTP 503)"}
    ]
    stored = item(aws)
    assert stored["state"] == "OPEN" and stored["openedAt"] == int(clock.now * 1000) and stored["version"] == 3
    [event] = published(aws)
    assert event["source"] == "cdk-serverless-patterns.circuit-breaker"
    assert event["detail-type"] == "Circuit State Changed"
    assert event["detail"]["circuitId"] == "payments"
    assert (event["detail"]["previousState"], event["detail"]["state"]) == ("CLOSED", "OPEN")
    assert event["detail"]["version"] == 3 and event["detail"]["probe"]["status"] == 503
    transition_metrics = [json.loads(line) for line in lines if "StateTransitions" in line]
    assert [(m["State"], m["StateTransitions"]) for m in transition_metrics] == [("OPEN", 1)]
    assert json.loads([line for line in lines if "CircuitOpen" in line][-1])["CircuitOpen"] == 1


def test_a_success_resets_the_failure_count(aws: dict[str, Any], downstream: Downstream):
    checker = make_checker(aws, Clock())
    downstream.status = 500
    checker.check(config(downstream.url))
    checker.check(config(downstream.url))
    downstream.status = 200
    checker.check(config(downstream.url))
    assert item(aws)["consecutiveFailures"] == 0
    downstream.status = 500
    checker.check(config(downstream.url))
    assert item(aws)["state"] == "CLOSED" and item(aws)["consecutiveFailures"] == 1


def test_only_2xx_is_healthy_by_default_and_expected_codes_widen_it(aws: dict[str, Any], downstream: Downstream):
    checker = make_checker(aws, Clock())
    for status, healthy in ((200, True), (204, True), (299, True), (404, False), (429, False), (500, False)):
        downstream.status = status
        probe = checker.check(config(downstream.url, failureThreshold=1000))["probe"]
        assert (probe["healthy"], probe["status"], probe["error"]) == (healthy, status, None), status
    downstream.status = 404
    lenient = config(downstream.url, expectedStatusCodes=[200, 404], failureThreshold=1)
    assert checker.check(lenient)["probe"]["healthy"] is True, "a listed 4xx is healthy when the user says so"
    downstream.status = 200
    strict = config(downstream.url, expectedStatusCodes=[204], failureThreshold=1)
    summary = checker.check(strict)
    assert (summary["probe"]["healthy"], summary["probe"]["status"]) == (False, 200)
    assert summary["state"] == "OPEN"


def test_a_timeout_is_a_failure(aws: dict[str, Any], downstream: Downstream):
    checker = make_checker(aws, Clock())
    downstream.delay = 1.5
    started = time.monotonic()
    summary = checker.check(config(downstream.url, timeoutMs=200, failureThreshold=1))
    assert time.monotonic() - started < 1.4, "the probe must give up after its timeout"
    assert summary["probe"]["healthy"] is False and summary["probe"]["status"] is None
    assert summary["probe"]["error"] == "timed out after 200 ms"
    assert item(aws)["state"] == "OPEN"
    assert "timed out after 200 ms" in item(aws)["reason"]


class RawService:
    """A raw TCP server on 127.0.0.1 that misbehaves at the HTTP level, one behaviour per test."""

    def __init__(self, behave: Any) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.behave = behave
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/health"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)  # the request
                self.behave(conn, self.stopped)
            except OSError:
                pass  # the checker gave up on us

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        self.thread.join(2)


@pytest.fixture
def raw_service() -> Iterator[Any]:
    services: list[RawService] = []

    def start(behave: Any) -> RawService:
        services.append(RawService(behave))
        return services[-1]

    yield start
    for service in services:
        service.close()


def trickle_headers(conn: socket.socket, stopped: threading.Event) -> None:
    """A valid 200 whose header block arrives one byte every 0.2 s: each read is quick, the answer never."""
    for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 200 + b"\r\nContent-Length: 0\r\n\r\n":
        if stopped.is_set():
            return
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def hang(conn: socket.socket, stopped: threading.Event) -> None:
    stopped.wait(10)


def reset(conn: socket.socket, stopped: threading.Event) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def redirect(conn: socket.socket, stopped: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://127.0.0.1:9/x\r\nContent-Length: 0\r\n\r\n")


def garbage(conn: socket.socket, stopped: threading.Event) -> None:
    conn.sendall(b"\x00\xffnot http at all\r\n\r\n")


@pytest.mark.parametrize(
    ("behave", "error_start"),
    [
        (trickle_headers, "timed out after 500 ms"),
        (hang, "timed out after 500 ms"),
        (reset, "connection failed"),
        (garbage, "connection failed: BadStatusLine"),
    ],
    ids=["trickling-headers", "hang", "reset", "garbage"],
)
def test_a_misbehaving_service_fails_within_the_timeout(
    aws: dict[str, Any], raw_service: Any, behave: Any, error_start: str
):
    service = raw_service(behave)
    started = time.monotonic()
    summary = make_checker(aws, Clock()).check(config(service.url, timeoutMs=500, failureThreshold=1))
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, f"the whole probe is bounded by its 500 ms timeout, took {elapsed:.2f} s"
    assert summary["probe"]["healthy"] is False and summary["probe"]["status"] is None
    assert summary["probe"]["error"].startswith(error_start), summary["probe"]["error"]
    assert summary["state"] == "OPEN" and item(aws)["state"] == "OPEN"


def test_a_redirect_is_unhealthy_and_not_followed(aws: dict[str, Any], raw_service: Any, downstream: Downstream):
    service = raw_service(redirect)
    summary = make_checker(aws, Clock()).check(config(service.url, failureThreshold=1))
    assert (summary["probe"]["healthy"], summary["probe"]["status"]) == (False, 301)
    assert service.connections == 1, "the Location is not followed"
    summary = make_checker(aws, Clock()).check(config(service.url, expectedStatusCodes=[301], circuitId="moved"))
    assert summary["probe"]["healthy"] is True, "a user who expects the redirect may list it"


def test_the_probe_is_cut_to_record_the_result_before_the_function_times_out(aws: dict[str, Any], raw_service: Any):
    """A 30 s probe timeout in an invocation with 2 s left: the probe gets what is left after keeping
    one write and one publish attempt, and the failure is recorded before the deadline."""
    service = raw_service(trickle_headers)
    checker = make_checker(aws, Clock(), attempt_s=0.4)
    started = time.monotonic()
    summary = checker.check(config(service.url, timeoutMs=30_000, failureThreshold=1), remaining_ms=2000)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0 - checker.safety_s, f"must end before the function's deadline, took {elapsed:.2f} s"
    assert elapsed > 0.8, "the probe had about 2 - 0.2 - 2 x 0.4 = 1 s"
    assert summary["probe"]["error"].startswith("timed out after ")
    assert "cut from 30000 ms" in summary["probe"]["error"]
    assert item(aws)["state"] == "OPEN" and "cut from 30000 ms" in item(aws)["reason"]


def test_no_time_to_record_ends_cleanly_without_probing(aws: dict[str, Any], downstream: Downstream):
    checker = make_checker(aws, Clock(), attempt_s=0.4)
    with pytest.raises(hc.OutOfTime, match="not enough for an attempt"):
        checker.check(config(downstream.url), remaining_ms=900)
    assert downstream.requests == 0, "no probe whose result could not be recorded"


def test_a_hung_dynamodb_costs_a_bounded_time_with_the_real_client_config(raw_service: Any):
    """DynamoDB accepts connections and never answers: the handler's own clients (one botocore attempt,
    0.4 s connect + 0.9 s read), retried while the deadline allows, then one clear error, well before
    the function's timeout."""
    dynamodb_endpoint = raw_service(hang)
    dynamodb, events = hc.make_clients(endpoint_url=dynamodb_endpoint.url.removesuffix("/health"))
    assert dynamodb.meta.config.retries["total_max_attempts"] == 1
    checker = hc.HealthChecker(table_name=TABLE, dynamodb=dynamodb, events=events, emit=lambda line: None)
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        checker.check(config("http://127.0.0.1:9/health"), remaining_ms=6000)
    elapsed = time.monotonic() - started
    assert elapsed < 6.0 - hc.DEADLINE_SAFETY_S, f"took {elapsed:.2f} s of a 6 s invocation"
    assert isinstance(raised.value, hc.OutOfTime) or "timeout" in repr(raised.value).lower(), raised.value
    assert dynamodb_endpoint.connections <= hc.AWS_MAX_ATTEMPTS


def test_a_refused_connection_is_a_failure(aws: dict[str, Any]):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    checker = make_checker(aws, Clock())
    summary = checker.check(config(f"http://127.0.0.1:{port}/health", failureThreshold=1))
    assert summary["probe"]["error"].startswith("connection failed")
    assert summary["state"] == "OPEN"


def test_recovery_goes_through_half_open(aws: dict[str, Any], downstream: Downstream):
    clock = Clock()
    checker = make_checker(aws, clock)
    cfg = config(downstream.url, failureThreshold=1, coolDownMs=30_000, halfOpenTrials=2)
    downstream.status = 502
    assert checker.check(cfg)["state"] == "OPEN"
    published(aws)

    downstream.status = 200
    clock.advance(10)  # inside the cool-down: no probe, no write
    requests, version = downstream.requests, item(aws)["version"]
    summary = checker.check(cfg)
    assert summary["state"] == "OPEN" and summary["probe"] is None
    assert downstream.requests == requests and item(aws)["version"] == version

    clock.advance(25)  # cool-down over: HALF_OPEN, this probe is the first trial
    summary = checker.check(cfg)
    assert [t["to"] for t in summary["transitions"]] == ["HALF_OPEN"]
    stored = item(aws)
    assert stored["state"] == "HALF_OPEN" and stored["consecutiveSuccesses"] == 1 and stored["halfOpenTrialsLeft"] == 1

    clock.advance(60)
    summary = checker.check(cfg)
    assert summary["transitions"] == [
        {"from": "HALF_OPEN", "to": "CLOSED", "reason": "2 consecutive successful trial(s) (HTTP 200)"}
    ]
    stored = item(aws)
    assert stored["state"] == "CLOSED" and stored["consecutiveFailures"] == 0 and stored["halfOpenTrialsLeft"] == 0
    assert [(e["detail"]["previousState"], e["detail"]["state"]) for e in published(aws)] == [
        ("OPEN", "HALF_OPEN"),
        ("HALF_OPEN", "CLOSED"),
    ]


def test_a_failed_trial_reopens_and_restarts_the_cool_down(aws: dict[str, Any], downstream: Downstream):
    clock = Clock()
    checker = make_checker(aws, clock)
    cfg = config(downstream.url, failureThreshold=1, coolDownMs=30_000, halfOpenTrials=3)
    downstream.status = 500
    checker.check(cfg)
    downstream.status = 200
    clock.advance(31)
    assert checker.check(cfg)["state"] == "HALF_OPEN"
    downstream.status = 500
    clock.advance(60)
    summary = checker.check(cfg)
    assert [(t["from"], t["to"]) for t in summary["transitions"]] == [("HALF_OPEN", "OPEN")]
    assert item(aws)["openedAt"] == int(clock.now * 1000)
    clock.advance(29)
    assert checker.check(cfg)["probe"] is None, "the cool-down starts again from the re-opening"


def test_open_to_closed_in_one_run_with_a_single_trial(aws: dict[str, Any], downstream: Downstream):
    clock = Clock()
    checker = make_checker(aws, clock)
    cfg = config(downstream.url, failureThreshold=1, coolDownMs=1000, halfOpenTrials=1)
    downstream.status = 500
    checker.check(cfg)
    downstream.status = 200
    clock.advance(2)
    summary = checker.check(cfg)
    assert [(t["from"], t["to"]) for t in summary["transitions"]] == [("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
    assert item(aws)["state"] == "CLOSED"


@pytest.mark.parametrize("state", ["FORCED_OPEN", "DISABLED"])
def test_operator_states_are_never_probed_nor_written(aws: dict[str, Any], downstream: Downstream, state: str):
    aws["dynamodb"].put_item(
        TableName=TABLE,
        Item={"circuitId": {"S": "payments"}, "state": {"S": state}, "version": {"N": "7"}},
    )
    downstream.status = 500
    summary = make_checker(aws, Clock()).check(config(downstream.url, failureThreshold=1))
    assert summary["state"] == state and summary["probe"] is None
    assert downstream.requests == 0
    assert item(aws) == {"circuitId": "payments", "state": state, "version": 7}


def test_a_lost_race_is_re_decided_on_the_fresh_item(aws: dict[str, Any], downstream: Downstream):
    """Two checkers read version N; one writes first; the other's conditional write fails, it re-reads
    and applies its own probe on top: both failures are counted, nothing is lost."""
    clock = Clock()
    downstream.status = 500
    cfg = config(downstream.url, failureThreshold=3)
    make_checker(aws, clock).check(cfg)  # the item exists with 1 failure
    both_read = threading.Barrier(2, timeout=10)
    first_written = threading.Event()
    outcomes: dict[str, Any] = {}

    class Racer(hc.HealthChecker):  # type: ignore[misc, name-defined]
        def __init__(self, name: str) -> None:
            super().__init__(table_name=TABLE, dynamodb=aws["dynamodb"], events=aws["events"], clock=clock, emit=print)
            self.name, self.reads, self.writes = name, 0, 0

        def read(self, circuit_id: str, reserve_s: float = 0.0) -> Any:
            result = super().read(circuit_id, reserve_s)
            self.reads += 1
            if self.reads == 1:
                both_read.wait()
            return result

        def write(self, *args: Any) -> int:
            self.writes += 1
            if self.name == "late" and self.writes == 1:
                assert first_written.wait(10)
            try:
                return int(super().write(*args))
            finally:
                if self.name == "early":
                    first_written.set()

    racers = [Racer("early"), Racer("late")]

    def run(racer: Any) -> None:
        try:
            outcomes[racer.name] = racer.check(cfg)
        except BaseException as error:
            outcomes[racer.name] = error

    threads = [threading.Thread(target=run, args=(racer,)) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    early, late = racers
    assert not isinstance(outcomes["early"], BaseException), outcomes["early"]
    assert not isinstance(outcomes["late"], BaseException), outcomes["late"]
    assert (early.reads, early.writes) == (1, 1)
    assert (late.reads, late.writes) == (2, 2), "the late checker must re-read and write again"
    stored = item(aws)
    assert stored["version"] == 3, "two writes on top of version 1"
    assert stored["consecutiveFailures"] == 3, "1 + both racing failures: no update lost"
    assert stored["state"] == "OPEN", "the third failure, re-decided on the fresh item, reaches the threshold"
    assert outcomes["early"]["transitions"] == []
    assert [t["to"] for t in outcomes["late"]["transitions"]] == ["OPEN"]
    assert len(published(aws)) == 1


@pytest.fixture
def atomic_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB evaluates a condition and writes atomically; moto's backend does not under threads
    (two threads can both pass ``attribute_not_exists`` before either writes: measured, moto 5.2.5).
    Serializing moto's own update_item restores DynamoDB's guarantee without faking any API."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    original = DynamoDBBackend.update_item

    def update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "update_item", update_item)


@pytest.mark.usefixtures("atomic_moto_writes")
def test_racing_checkers_in_free_threads_never_lose_a_failure(aws: dict[str, Any], downstream: Downstream):
    """Several checkers probing a failing service at once: every failure is counted exactly once."""
    downstream.status = 503
    clock = Clock()
    cfg = config(downstream.url, failureThreshold=1000)
    workers, rounds = 4, 3
    errors: list[BaseException] = []
    start = threading.Barrier(workers, timeout=10)

    def run() -> None:
        checker = make_checker(aws, clock)
        try:
            start.wait()
            for _ in range(rounds):
                checker.check(cfg)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    stored = item(aws)
    assert stored["consecutiveFailures"] == workers * rounds
    assert stored["version"] == workers * rounds


def test_a_failed_publish_is_logged_and_fails_the_invocation(
    aws: dict[str, Any], downstream: Downstream, caplog: pytest.LogCaptureFixture
):
    downstream.status = 500
    checker = make_checker(aws, Clock(), event_bus_name="no-such-bus")
    with pytest.raises(aws["events"].exceptions.ResourceNotFoundException):
        checker.check(config(downstream.url, failureThreshold=1))
    assert item(aws)["state"] == "OPEN", "the transition itself is kept"
    [record] = [r for r in caplog.records if r.getMessage() == "publishing circuit events failed"]
    assert record.levelname == "ERROR" and record.circuit["circuitId"] == "payments"
    assert record.circuit["state"] == "OPEN"


def test_https_with_an_untrusted_certificate_is_a_failure(aws: dict[str, Any], tmp_path: Path):
    """The probe verifies TLS: a service presenting a self-signed certificate is not healthy."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = Downstream()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    try:
        url = server.url.replace("http://", "https://")
        summary = make_checker(aws, Clock()).check(config(url, allowHttp=False, failureThreshold=1))
    finally:
        server.close()
    assert summary["probe"]["healthy"] is False
    assert "CERTIFICATE_VERIFY_FAILED" in summary["probe"]["error"]
    assert summary["state"] == "OPEN"


def test_bad_event_is_rejected_without_retry(monkeypatch: pytest.MonkeyPatch):
    result = hc.handler({"circuitId": "payments", "url": "http://plain.example.com", "timeoutMs": 0}, None)
    assert "url must be an https:// URL" in result["error"]
    assert "timeoutMs must be an integer >= 1" in result["error"]
    assert "failureThreshold must be an integer >= 1" in result["error"]


def test_handler_uses_the_environment(aws: dict[str, Any], downstream: Downstream, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CIRCUIT_BREAKER_TABLE", TABLE)
    monkeypatch.setattr(hc, "_checker", None)
    event = {
        "circuitId": "inventory",
        "url": downstream.url,
        "allowHttp": True,
        "timeoutMs": 500,
        "failureThreshold": 2,
        "coolDownMs": 1000,
        "halfOpenTrials": 1,
    }
    assert hc.handler(event, None)["state"] == "CLOSED"
    assert item(aws, "inventory")["state"] == "CLOSED"
    monkeypatch.setattr(hc, "_checker", None)


def test_decide_is_pure_and_ignores_unknown_states():
    cfg = hc.CircuitConfig.from_event(
        {
            "circuitId": "x",
            "url": "https://x.example.com",
            "timeoutMs": 1,
            "failureThreshold": 1,
            "coolDownMs": 0,
            "halfOpenTrials": 1,
        }
    )
    failed = hc.ProbeResult(healthy=False, status=500, latency_ms=1.0)
    assert hc.decide({"state": "SIDEWAYS", "version": 1}, failed, cfg, 0).attributes is None
    decision = hc.decide(None, failed, cfg, 5)
    assert decision.attributes["state"] == "OPEN" and decision.attributes["openedAt"] == 5


def test_the_handler_bounds_the_check_by_the_lambda_context(
    aws: dict[str, Any], raw_service: Any, monkeypatch: pytest.MonkeyPatch
):
    """Through the handler, with its own clients: 4.5 s left in the invocation and a service trickling
    its headers under a 30 s probe timeout; the failure is recorded before the function would time out."""
    monkeypatch.setenv("CIRCUIT_BREAKER_TABLE", TABLE)
    monkeypatch.setattr(hc, "_checker", None)
    service = raw_service(trickle_headers)
    started = time.monotonic()

    class LambdaContext:  # the one method of Lambda's context object the checker reads
        def get_remaining_time_in_millis(self) -> int:
            return 4500 - int((time.monotonic() - started) * 1000)

    event = {
        "circuitId": "slow",
        "url": service.url,
        "allowHttp": True,
        "timeoutMs": 30_000,
        "failureThreshold": 1,
        "coolDownMs": 1000,
        "halfOpenTrials": 1,
    }
    summary = hc.handler(event, LambdaContext())
    elapsed = time.monotonic() - started
    monkeypatch.setattr(hc, "_checker", None)
    assert elapsed < 4.5 - hc.DEADLINE_SAFETY_S, f"took {elapsed:.2f} s of 4.5 s"
    assert summary["state"] == "OPEN" and "cut from 30000 ms" in summary["probe"]["error"]
    assert item(aws, "slow")["state"] == "OPEN"
