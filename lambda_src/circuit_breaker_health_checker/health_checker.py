"""Scheduled health checker of a CircuitBreaker: probe a downstream service, move its circuit.

One invocation checks one circuit. The schedule passes the circuit's configuration as the event::

    {"circuitId": "payments", "url": "https://payments.example.com/health", "timeoutMs": 4000,
     "failureThreshold": 3, "coolDownMs": 60000, "halfOpenTrials": 2,
     "expectedStatusCodes": [200], "allowHttp": false}

State machine (the item layout is the contract shared with the extension):

- CLOSED -> OPEN after ``failureThreshold`` consecutive failed probes;
- OPEN -> HALF_OPEN once ``coolDownMs`` has passed since ``openedAt`` (the probe of that run is
  the first trial);
- HALF_OPEN -> CLOSED after ``halfOpenTrials`` consecutive successful probes;
- HALF_OPEN -> OPEN on any failed probe;
- FORCED_OPEN and DISABLED belong to operators: never probed, never written.

A probe is healthy on a 2xx answer, or (when ``expectedStatusCodes`` is given) on a status in that
list; anything else fails it: a timeout, a connection or TLS error, a 3xx (redirects are never
followed), a 4xx or a 5xx. ``timeoutMs`` bounds the whole probe (connecting, TLS, sending, and the
status line and headers however slowly they trickle in), not each socket read.

The invocation always ends before the function's own timeout: the probe is cut short when less than
:data:`RECORD_RESERVE_S` (one write and one publish attempt) plus :data:`DEADLINE_SAFETY_S` would be
left of ``context.get_remaining_time_in_millis()``, and every AWS call is one botocore attempt
(``total_max_attempts=1``, connect and read timeouts) retried here only while another attempt fits.

Every write is conditional on the item's ``version``; a lost race re-reads the item and decides again
with the same probe result, so no update is lost.
Each transition is logged as structured JSON, published to EventBridge (source
``cdk-serverless-patterns.circuit-breaker``, detail-type ``Circuit State Changed``) and counted as
a CloudWatch metric through an embedded-metric-format log line.

Standard library and boto3 only (both in the Lambda runtime).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import logging
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

CLOSED = "CLOSED"
OPEN = "OPEN"
HALF_OPEN = "HALF_OPEN"
FORCED_OPEN = "FORCED_OPEN"
DISABLED = "DISABLED"
STATES = (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED)
OPERATOR_STATES = (FORCED_OPEN, DISABLED)

EVENT_SOURCE = "cdk-serverless-patterns.circuit-breaker"
EVENT_DETAIL_TYPE = "Circuit State Changed"
DEFAULT_METRIC_NAMESPACE = "CdkServerlessPatterns/CircuitBreaker"
UPDATED_BY = "health-checker"
MAX_WRITE_ATTEMPTS = 10
USER_AGENT = "cdk-serverless-patterns-circuit-breaker-health-checker/1"

#: One AWS call of the checker: one botocore attempt bounded by these (seconds) ...
AWS_CONNECT_TIMEOUT_S = 0.4
AWS_READ_TIMEOUT_S = 0.9
#: ... so one attempt takes at most this long (DynamoDB answers in milliseconds in-region).
AWS_ATTEMPT_S = AWS_CONNECT_TIMEOUT_S + AWS_READ_TIMEOUT_S
#: Attempts of one AWS call on throttling, 5xx, timeouts and connection errors, while the deadline allows.
AWS_MAX_ATTEMPTS = 3
#: Time kept for recording a probe's result: one UpdateItem and one PutEvents attempt.
RECORD_RESERVE_S = 2 * AWS_ATTEMPT_S
#: The checker ends this long before the function's own timeout (logging, returning the result).
DEADLINE_SAFETY_S = 0.2
_THROTTLING = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
    }
)

logger = logging.getLogger("circuit_breaker.health_checker")
logger.setLevel(logging.INFO)


class BadInput(ValueError):
    """The event is not a circuit configuration: a deployment mistake, never retried."""


class OutOfTime(RuntimeError):
    """Too little of the function's time is left for another AWS attempt: fail now, cleanly,
    instead of being killed by Lambda's timeout in the middle of a call."""


@dataclass(frozen=True)
class CircuitConfig:
    """One circuit's configuration, as the schedule passes it."""

    circuit_id: str
    url: str
    timeout_ms: int
    failure_threshold: int
    cool_down_ms: int
    half_open_trials: int
    expected_status_codes: frozenset[int] | None = None
    allow_http: bool = False

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> CircuitConfig:
        problems: list[str] = []

        def positive_int(name: str, minimum: int = 1) -> int:
            value = event.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                problems.append(f"{name} must be an integer >= {minimum}, got {value!r}")
                return minimum
            return value

        circuit_id = event.get("circuitId")
        if not isinstance(circuit_id, str) or not circuit_id:
            problems.append(f"circuitId must be a non-empty string, got {circuit_id!r}")
            circuit_id = ""
        allow_http = event.get("allowHttp", False) is True
        url = event.get("url")
        if not isinstance(url, str) or not (url.startswith("https://") or (allow_http and url.startswith("http://"))):
            problems.append(f"url must be an https:// URL (http:// only with allowHttp), got {url!r}")
            url = ""
        codes = event.get("expectedStatusCodes")
        expected: frozenset[int] | None = None
        if codes is not None:
            valid = isinstance(codes, list) and codes and all(isinstance(c, int) and 100 <= c <= 599 for c in codes)
            if not valid:
                problems.append(f"expectedStatusCodes must be a non-empty list of HTTP status codes, got {codes!r}")
            else:
                expected = frozenset(codes)
        config = cls(
            circuit_id=circuit_id,
            url=url,
            timeout_ms=positive_int("timeoutMs"),
            failure_threshold=positive_int("failureThreshold"),
            cool_down_ms=positive_int("coolDownMs", 0),
            half_open_trials=positive_int("halfOpenTrials"),
            expected_status_codes=expected,
            allow_http=allow_http,
        )
        if problems:
            raise BadInput("invalid circuit configuration: " + "; ".join(problems))
        return config


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one request to the health-check URL."""

    healthy: bool
    status: int | None
    latency_ms: float
    error: str | None = None

    def describe(self) -> str:
        if self.error:
            return self.error
        return f"HTTP {self.status}"


@functools.cache
def _tls() -> ssl.SSLContext:
    """Verifies the certificate and the host name against the system's CAs (created on first https use)."""
    return ssl.create_default_context()


class _Attempt:
    """One GET in a worker thread; :meth:`abort` shuts its socket down so that a blocked read returns.

    Redirects are never followed (``http.client`` does not): a redirect is the service's own answer,
    and following it could leave https.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.status: int | None = None
        self.error: str | None = None
        self.timed_out = False
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._aborted = False
        self._connection: http.client.HTTPConnection | None = None

    def run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        try:
            parts = urllib.parse.urlsplit(self.url)
            host, port = parts.hostname, parts.port  # .port raises ValueError on a bad port
            if not host:
                raise ValueError(f"no host in {self.url!r}")
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(host, port, timeout=self.timeout_s, context=_tls())
            else:
                connection = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
            with self._lock:
                if self._aborted:
                    return
                self._connection = connection
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", target, headers={"User-Agent": USER_AGENT, "Connection": "close"})
            response = connection.getresponse()  # the status line and the headers; the body is not read
            self.status = int(response.status)
        except TimeoutError:
            self.timed_out = True
        except (OSError, http.client.HTTPException, ValueError) as error:
            self.error = f"connection failed: {type(error).__name__}: {error}"
        finally:
            if connection is not None:
                connection.close()
            self.done.set()

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def probe(
    config: CircuitConfig, budget_s: float | None = None, clock: Callable[[], float] = time.monotonic
) -> ProbeResult:
    """GETs the health-check URL once; ``timeoutMs`` (or ``budget_s``, when shorter) bounds the whole
    probe, DNS included. The answer is classified on its status line: 2xx (or ``expectedStatusCodes``)."""
    limit_ms = config.timeout_ms if budget_s is None else max(0, min(config.timeout_ms, int(budget_s * 1000)))
    attempt = _Attempt(config.url, limit_ms / 1000)
    started = clock()
    if limit_ms > 0:
        threading.Thread(target=attempt.run, name=f"probe-{config.circuit_id}", daemon=True).start()
        # The worker may stay blocked in a DNS lookup after this; it is a daemon and its result is dropped.
        attempt.done.wait(limit_ms / 1000)
    finished = attempt.done.is_set()
    if not finished:
        attempt.abort()
    latency_ms = round((clock() - started) * 1000, 1)
    if not finished or attempt.timed_out:
        error = f"timed out after {limit_ms} ms"
        if limit_ms < config.timeout_ms:
            error += f" (cut from {config.timeout_ms} ms: the rest of the function's time records the result)"
        return ProbeResult(healthy=False, status=None, latency_ms=latency_ms, error=error)
    if attempt.status is None:
        return ProbeResult(healthy=False, status=None, latency_ms=latency_ms, error=attempt.error or "no answer")
    return ProbeResult(healthy=is_healthy(attempt.status, config), status=attempt.status, latency_ms=latency_ms)


def is_healthy(status: int, config: CircuitConfig) -> bool:
    """2xx, unless the circuit lists its own healthy statuses (``expectedStatusCodes``)."""
    expected = config.expected_status_codes
    return status in expected if expected is not None else 200 <= status <= 299


@dataclass(frozen=True)
class Transition:
    previous: str
    state: str
    reason: str


@dataclass
class Decision:
    """What to write (None: nothing) and the transitions the write makes."""

    attributes: dict[str, Any] | None
    transitions: list[Transition] = field(default_factory=list)
    note: str = ""


def _int(item: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = item.get(name)
    if isinstance(value, int | Decimal | float) and not isinstance(value, bool):
        return int(value)
    return default


def decide(item: Mapping[str, Any] | None, result: ProbeResult | None, config: CircuitConfig, now_ms: int) -> Decision:
    """The pure state machine: the item as read, a probe result, the time -> what to write.

    ``result`` may be None only when :func:`needs_probe` said no probe was needed.
    """
    current = dict(item or {})
    state = str(current.get("state", CLOSED))
    if state in OPERATOR_STATES:
        return Decision(None, note=f"{state} is set by an operator: the health checker leaves it alone")
    if state not in STATES:
        return Decision(None, note=f"unknown state {state!r} in the table: left unchanged")
    failures = _int(current, "consecutiveFailures")
    successes = _int(current, "consecutiveSuccesses")
    trials_left = _int(current, "halfOpenTrialsLeft")
    opened_at = _int(current, "openedAt", _int(current, "updatedAt"))
    transitions: list[Transition] = []
    new_opened_at: int | None = None  # set only when this decision opens the circuit

    if state == OPEN:
        if now_ms - opened_at < config.cool_down_ms:
            return Decision(None, note=f"OPEN, cool-down ends in {config.cool_down_ms - (now_ms - opened_at)} ms")
        transitions.append(Transition(OPEN, HALF_OPEN, f"cool-down of {config.cool_down_ms} ms elapsed"))
        state, failures, successes, trials_left = HALF_OPEN, 0, 0, config.half_open_trials

    if result is None:
        raise ValueError(f"a probe result is needed to decide on a {state} circuit")

    if state == HALF_OPEN:
        if result.healthy:
            successes += 1
            trials_left = max(trials_left - 1, 0)
            failures = 0
            if successes >= config.half_open_trials:
                transitions.append(
                    Transition(HALF_OPEN, CLOSED, f"{successes} consecutive successful trial(s) ({result.describe()})")
                )
                state, successes, trials_left = CLOSED, 0, 0
        else:
            transitions.append(Transition(HALF_OPEN, OPEN, f"trial health check failed ({result.describe()})"))
            state, failures, successes, trials_left, new_opened_at = OPEN, failures + 1, 0, 0, now_ms
    elif result.healthy:  # CLOSED
        failures = 0
    else:
        failures += 1
        if failures >= config.failure_threshold:
            transitions.append(
                Transition(CLOSED, OPEN, f"{failures} consecutive failed health check(s) ({result.describe()})")
            )
            state, successes, new_opened_at = OPEN, 0, now_ms

    attributes: dict[str, Any] = {
        "state": state,
        "consecutiveFailures": failures,
        "consecutiveSuccesses": successes,
        "halfOpenTrialsLeft": trials_left,
        "failureThreshold": config.failure_threshold,
        "coolDownMs": config.cool_down_ms,
        "halfOpenTrials": config.half_open_trials,
    }
    if new_opened_at is not None:
        attributes["openedAt"] = new_opened_at
    unchanged = item is not None and all(
        (_int(current, k, -1) if isinstance(v, int) else current.get(k)) == v for k, v in attributes.items()
    )
    if unchanged and not transitions:
        return Decision(None, note=f"{state}, nothing changed")
    if transitions:
        attributes["reason"] = transitions[-1].reason
    elif item is None:
        attributes["reason"] = "first health check"
    return Decision(attributes, transitions)


def needs_probe(item: Mapping[str, Any] | None, config: CircuitConfig, now_ms: int) -> bool:
    """No probe for operator states, nor while an OPEN circuit cools down (spare the failing service)."""
    if item is None:
        return True
    state = item.get("state", CLOSED)
    if state in OPERATOR_STATES or state not in STATES:
        return False
    if state == OPEN:
        opened_at = _int(item, "openedAt", _int(item, "updatedAt"))
        return now_ms - opened_at >= config.cool_down_ms
    return True


def _to_dynamodb(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    return {"S": str(value)}


def _from_dynamodb(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for name, typed in item.items():
        if "N" in typed:
            number = Decimal(typed["N"])
            plain[name] = int(number) if number == number.to_integral_value() else number
        elif "S" in typed:
            plain[name] = typed["S"]
        elif "BOOL" in typed:
            plain[name] = typed["BOOL"]
    return plain


class HealthChecker:
    """Probes one circuit per call and applies the decision with conditional writes."""

    def __init__(
        self,
        *,
        table_name: str,
        dynamodb: Any,
        events: Any,
        event_bus_name: str = "default",
        metric_namespace: str = DEFAULT_METRIC_NAMESPACE,
        clock: Callable[[], float] = time.time,
        emit: Callable[[str], None] = print,
        prober: Callable[[CircuitConfig, float | None], ProbeResult] = probe,
        attempt_s: float = AWS_ATTEMPT_S,
        safety_s: float = DEADLINE_SAFETY_S,
    ) -> None:
        self.table_name = table_name
        self.dynamodb = dynamodb
        self.events = events
        self.event_bus_name = event_bus_name
        self.metric_namespace = metric_namespace
        self.clock = clock
        self.emit = emit
        self.prober = prober
        #: The worst-case time of one AWS attempt (the clients' connect + read timeouts).
        self.attempt_s = attempt_s
        self.safety_s = safety_s
        self._deadline: float | None = None  # time.monotonic() by which the current check must end

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _left_s(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _call(self, what: str, method: Callable[..., Any], *, reserve_s: float = 0.0, **kwargs: Any) -> Any:
        """One AWS call: retried on throttling, 5xx and network errors, but only while another whole
        attempt fits before the deadline minus ``reserve_s``; never started when it does not fit."""
        for attempt in range(1, AWS_MAX_ATTEMPTS + 1):
            left = self._left_s()
            if left is not None and left - reserve_s < self.attempt_s:
                kept = " after keeping time to record the result" if reserve_s else ""
                raise OutOfTime(
                    f"{what}: {max(left, 0.0):.2f} s left before the function's timeout, not enough for "
                    f"an attempt ({self.attempt_s:g} s){kept}"
                )
            try:
                return method(**kwargs)
            except Exception as error:
                if attempt == AWS_MAX_ATTEMPTS or not _transient(error):
                    raise
                logger.warning(
                    f"{what} failed, retrying", extra={"circuit": {"attempt": attempt, "error": repr(error)}}
                )
                time.sleep(random.random() * min(0.05 * 2**attempt, 0.5))
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self, circuit_id: str, reserve_s: float = 0.0) -> dict[str, Any] | None:
        response = self._call(
            "reading the circuit",
            self.dynamodb.get_item,
            reserve_s=reserve_s,
            TableName=self.table_name,
            Key={"circuitId": {"S": circuit_id}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _from_dynamodb(item) if item else None

    def write(self, circuit_id: str, item: Mapping[str, Any] | None, attributes: Mapping[str, Any]) -> int:
        """One conditional write on ``version``; returns the new version. Raises on a lost race."""
        expected = _int(item, "version") if item is not None else 0
        new_version = expected + 1
        values: dict[str, Any] = {":newVersion": {"N": str(new_version)}}
        names: dict[str, str] = {"#version": "version"}
        assignments = ["#version = :newVersion"]
        for index, (name, value) in enumerate(
            {**attributes, "updatedAt": self.now_ms(), "updatedBy": UPDATED_BY}.items()
        ):
            names[f"#a{index}"] = name
            values[f":v{index}"] = _to_dynamodb(value)
            assignments.append(f"#a{index} = :v{index}")
        if item is None:
            condition = "attribute_not_exists(circuitId)"
        elif "version" not in item:
            condition = "attribute_exists(circuitId) AND attribute_not_exists(#version)"
        else:
            condition = "#version = :expected"
            values[":expected"] = {"N": str(expected)}
        self._call(
            "recording the circuit",
            self.dynamodb.update_item,
            TableName=self.table_name,
            Key={"circuitId": {"S": circuit_id}},
            UpdateExpression="SET " + ", ".join(assignments),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        return new_version

    def check(self, config: CircuitConfig, remaining_ms: int | None = None) -> dict[str, Any]:
        """Reads, probes if needed, decides and writes; retries the decision on a lost race.

        ``remaining_ms`` (the Lambda context's ``get_remaining_time_in_millis()``) bounds the whole
        check: the probe is cut short to keep :data:`RECORD_RESERVE_S` for recording its result, and
        no AWS attempt starts that could not end before the deadline (:class:`OutOfTime` instead).
        """
        self._deadline = None if remaining_ms is None else time.monotonic() + remaining_ms / 1000 - self.safety_s
        try:
            return self._check(config)
        except OutOfTime as error:
            self._log(logging.ERROR, "ran out of time", config, None, item=None, error=str(error))
            raise
        finally:
            self._deadline = None

    def _check(self, config: CircuitConfig) -> dict[str, Any]:
        reserve_s = 2 * self.attempt_s  # one UpdateItem and one PutEvents attempt
        item = self.read(config.circuit_id, reserve_s=reserve_s)
        result: ProbeResult | None = None
        if needs_probe(item, config, self.now_ms()):
            left = self._left_s()
            budget_s = None if left is None else left - reserve_s
            if budget_s is not None and budget_s <= 0:
                raise OutOfTime(f"no time left to probe ({left:.2f} s before the function's timeout)")
            result = self.prober(config, budget_s)
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            decision = decide(item, result, config, self.now_ms())
            if decision.attributes is None:
                self._log(logging.INFO, "no state change", config, result, item=item, note=decision.note)
                self._emit_metrics(config, result, item, [])
                return self._summary(config, item, result, [])
            try:
                version = self.write(config.circuit_id, item, decision.attributes)
            except self.dynamodb.exceptions.ConditionalCheckFailedException:
                self._log(
                    logging.WARNING,
                    "lost a race on the circuit's version: re-reading and deciding again",
                    config,
                    result,
                    item=item,
                    attempt=attempt,
                )
                item = self.read(config.circuit_id)
                continue
            written = {**(item or {}), **decision.attributes, "version": version, "circuitId": config.circuit_id}
            for transition in decision.transitions:
                self._log(
                    logging.INFO,
                    f"circuit {config.circuit_id} moved {transition.previous} -> {transition.state}",
                    config,
                    result,
                    item=written,
                    previousState=transition.previous,
                    reason=transition.reason,
                )
            self._emit_metrics(config, result, written, decision.transitions)
            self._publish(config, result, written, decision.transitions)
            return self._summary(config, written, result, decision.transitions)
        raise RuntimeError(
            f"circuit {config.circuit_id}: gave up after {MAX_WRITE_ATTEMPTS} conflicting writes on its version"
        )

    def _publish(
        self, config: CircuitConfig, result: ProbeResult | None, item: Mapping[str, Any], transitions: list[Transition]
    ) -> None:
        if not transitions:
            return
        entries = [
            {
                "Source": EVENT_SOURCE,
                "DetailType": EVENT_DETAIL_TYPE,
                "EventBusName": self.event_bus_name,
                "Resources": [],
                "Detail": json.dumps(
                    {
                        "circuitId": config.circuit_id,
                        "previousState": transition.previous,
                        "state": transition.state,
                        "reason": transition.reason,
                        "version": item.get("version"),
                        "updatedAt": item.get("updatedAt", self.now_ms()),
                        "updatedBy": UPDATED_BY,
                        "probe": _probe_fields(result),
                    }
                ),
            }
            for transition in transitions
        ]
        try:
            response = self._call("publishing circuit events", self.events.put_events, Entries=entries)
        except Exception as error:
            # The state is written; the invocation fails so that the failure reaches the dead-letter
            # queue and the Errors metric: a lost event is never silent.
            self._log(logging.ERROR, "publishing circuit events failed", config, result, item=item, error=repr(error))
            raise
        if response.get("FailedEntryCount", 0):
            failed = [e for e in response.get("Entries", []) if e.get("ErrorCode")]
            self._log(logging.ERROR, "EventBridge refused circuit events", config, result, item=item, failed=failed)
            raise RuntimeError(f"circuit {config.circuit_id}: EventBridge refused {len(failed)} event(s): {failed}")

    def _emit_metrics(
        self,
        config: CircuitConfig,
        result: ProbeResult | None,
        item: Mapping[str, Any] | None,
        transitions: list[Transition],
    ) -> None:
        state = str((item or {}).get("state", CLOSED))
        timestamp = self.now_ms()
        metrics: list[dict[str, str]] = [{"Name": "CircuitOpen", "Unit": "Count"}]
        document: dict[str, Any] = {"CircuitId": config.circuit_id, "CircuitOpen": int(state in (OPEN, FORCED_OPEN))}
        if result is not None:
            metrics.append({"Name": "HealthCheckFailed", "Unit": "Count"})
            metrics.append({"Name": "HealthCheckLatency", "Unit": "Milliseconds"})
            document.update(HealthCheckFailed=int(not result.healthy), HealthCheckLatency=result.latency_ms)
        document["_aws"] = {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [
                {"Namespace": self.metric_namespace, "Dimensions": [["CircuitId"]], "Metrics": metrics}
            ],
        }
        self.emit(json.dumps(document))
        for transition in transitions:
            self.emit(
                json.dumps(
                    {
                        "CircuitId": config.circuit_id,
                        "State": transition.state,
                        "StateTransitions": 1,
                        "_aws": {
                            "Timestamp": timestamp,
                            "CloudWatchMetrics": [
                                {
                                    "Namespace": self.metric_namespace,
                                    "Dimensions": [["CircuitId", "State"]],
                                    "Metrics": [{"Name": "StateTransitions", "Unit": "Count"}],
                                }
                            ],
                        },
                    }
                )
            )

    def _log(
        self,
        level: int,
        message: str,
        config: CircuitConfig,
        result: ProbeResult | None,
        *,
        item: Mapping[str, Any] | None,
        **fields: Any,
    ) -> None:
        record = {
            "circuitId": config.circuit_id,
            "state": (item or {}).get("state"),
            "version": (item or {}).get("version"),
            "probe": _probe_fields(result),
            **fields,
        }
        # Lambda's JSON log format adds ``extra`` fields to the JSON line; keep them JSON-safe.
        logger.log(level, message, extra={"circuit": json.loads(json.dumps(record, default=str))})

    @staticmethod
    def _summary(
        config: CircuitConfig, item: Mapping[str, Any] | None, result: ProbeResult | None, transitions: list[Transition]
    ) -> dict[str, Any]:
        return {
            "circuitId": config.circuit_id,
            "state": (item or {}).get("state", CLOSED),
            "version": (item or {}).get("version", 0),
            "probe": _probe_fields(result),
            "transitions": [{"from": t.previous, "to": t.state, "reason": t.reason} for t in transitions],
        }


def _transient(error: Exception) -> bool:
    """Worth another attempt: throttling, a 5xx, a timeout or a connection error (not a refused condition)."""
    from botocore import exceptions

    if isinstance(error, exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _THROTTLING or status >= 500
    return isinstance(error, exceptions.ConnectionError | exceptions.HTTPClientError)


def _probe_fields(result: ProbeResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"healthy": result.healthy, "status": result.status, "latencyMs": result.latency_ms, "error": result.error}


_checker: HealthChecker | None = None


def make_clients(endpoint_url: str | None = None) -> tuple[Any, Any]:
    """The DynamoDB and EventBridge clients: one botocore attempt per call, bounded by
    :data:`AWS_CONNECT_TIMEOUT_S` + :data:`AWS_READ_TIMEOUT_S`; the checker retries within its deadline."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=AWS_CONNECT_TIMEOUT_S,
        read_timeout=AWS_READ_TIMEOUT_S,
    )
    return (
        boto3.client("dynamodb", config=config, endpoint_url=endpoint_url),
        boto3.client("events", config=config, endpoint_url=endpoint_url),
    )


def _default_checker() -> HealthChecker:
    """Clients are created once per execution environment."""
    global _checker
    if _checker is None:
        dynamodb, events = make_clients()
        _checker = HealthChecker(
            table_name=os.environ["CIRCUIT_BREAKER_TABLE"],
            dynamodb=dynamodb,
            events=events,
            event_bus_name=os.environ.get("CIRCUIT_BREAKER_EVENT_BUS", "default"),
            metric_namespace=os.environ.get("CIRCUIT_BREAKER_METRIC_NAMESPACE", DEFAULT_METRIC_NAMESPACE),
        )
    return _checker


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: one circuit's configuration in, the circuit's state out."""
    try:
        config = CircuitConfig.from_event(event)
    except BadInput as error:
        # A deployment mistake: retrying cannot fix it, so log it loudly and return.
        logger.error("rejected health-check event", extra={"circuit": {"error": str(error)}})
        return {"error": str(error)}
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return _default_checker().check(config, remaining() if callable(remaining) else None)
