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

A probe fails on a timeout, a connection error, an HTTP 5xx, or (when ``expectedStatusCodes`` is
given) any status outside that list. Every write is conditional on the item's ``version``; a lost
race re-reads the item and decides again with the same probe result, so no update is lost.
Each transition is logged as structured JSON, published to EventBridge (source
``cdk-serverless-patterns.circuit-breaker``, detail-type ``Circuit State Changed``) and counted as
a CloudWatch metric through an embedded-metric-format log line.

Standard library and boto3 only (both in the Lambda runtime).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
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

logger = logging.getLogger("circuit_breaker.health_checker")
logger.setLevel(logging.INFO)


class BadInput(ValueError):
    """The event is not a circuit configuration: a deployment mistake, never retried."""


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer of the service itself, never followed (it could leave https)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def probe(config: CircuitConfig, clock: Callable[[], float] = time.monotonic) -> ProbeResult:
    """GETs the health-check URL once within ``timeoutMs``; classifies the answer."""
    request = urllib.request.Request(config.url, method="GET", headers={"User-Agent": USER_AGENT})
    started = clock()
    status: int | None = None
    error: str | None = None
    try:
        with _OPENER.open(request, timeout=config.timeout_ms / 1000) as response:
            status = int(response.status)
    except urllib.error.HTTPError as http_error:
        status = int(http_error.code)
        http_error.close()
    except TimeoutError:
        error = f"timed out after {config.timeout_ms} ms"
    except urllib.error.URLError as url_error:
        reason = url_error.reason
        if isinstance(reason, TimeoutError):
            error = f"timed out after {config.timeout_ms} ms"
        else:
            error = f"connection failed: {reason}"
    except (OSError, http.client.HTTPException) as other:
        error = f"connection failed: {type(other).__name__}: {other}"
    latency_ms = round((clock() - started) * 1000, 1)
    if status is None:
        return ProbeResult(healthy=False, status=None, latency_ms=latency_ms, error=error)
    if latency_ms > config.timeout_ms:
        # The socket timeout bounds each read, not the whole answer: a service trickling its
        # headers can take longer, and an answer after the timeout is a failure all the same.
        error = f"timed out: answered HTTP {status} after {latency_ms:g} ms (timeout {config.timeout_ms} ms)"
        return ProbeResult(healthy=False, status=status, latency_ms=latency_ms, error=error)
    expected = config.expected_status_codes
    healthy = status in expected if expected is not None else status < 500
    return ProbeResult(healthy=healthy, status=status, latency_ms=latency_ms)


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
        prober: Callable[[CircuitConfig], ProbeResult] = probe,
    ) -> None:
        self.table_name = table_name
        self.dynamodb = dynamodb
        self.events = events
        self.event_bus_name = event_bus_name
        self.metric_namespace = metric_namespace
        self.clock = clock
        self.emit = emit
        self.prober = prober

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def read(self, circuit_id: str) -> dict[str, Any] | None:
        response = self.dynamodb.get_item(
            TableName=self.table_name, Key={"circuitId": {"S": circuit_id}}, ConsistentRead=True
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
        self.dynamodb.update_item(
            TableName=self.table_name,
            Key={"circuitId": {"S": circuit_id}},
            UpdateExpression="SET " + ", ".join(assignments),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        return new_version

    def check(self, config: CircuitConfig) -> dict[str, Any]:
        """Reads, probes if needed, decides and writes; retries the decision on a lost race."""
        item = self.read(config.circuit_id)
        result = self.prober(config) if needs_probe(item, config, self.now_ms()) else None
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
            response = self.events.put_events(Entries=entries)
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


def _probe_fields(result: ProbeResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"healthy": result.healthy, "status": result.status, "latencyMs": result.latency_ms, "error": result.error}


_checker: HealthChecker | None = None


def _default_checker() -> HealthChecker:
    """Clients are created once per execution environment, with the SDK's standard retries."""
    global _checker
    if _checker is None:
        import boto3
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=3)
        _checker = HealthChecker(
            table_name=os.environ["CIRCUIT_BREAKER_TABLE"],
            dynamodb=boto3.client("dynamodb", config=config),
            events=boto3.client("events", config=config),
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
    return _default_checker().check(config)
