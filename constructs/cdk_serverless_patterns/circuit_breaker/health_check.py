"""The health-check side of ``CircuitBreaker``: one scheduled probe per circuit.

``CircuitBreaker.add_circuit`` validates a circuit with :func:`check_circuit` and creates its
EventBridge Scheduler schedule with :func:`schedule_health_check`; the schedule invokes the health
checker (``lambda_src/circuit_breaker_health_checker``) with the circuit's configuration, the
:attr:`HealthCheck.health_check_input`, one circuit per invocation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs

from cdk_serverless_patterns.circuit_breaker import contract
from cdk_serverless_patterns.core import PropErrors
from cdk_serverless_patterns.core.props import human_duration, milliseconds
from constructs import Construct

#: What the health checker needs besides the probe: reading and writing the item, publishing events.
STATE_UPDATE_MARGIN = cdk.Duration.seconds(3)
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(\S+( \S+){5}\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class HealthCheck:
    """How one downstream service is probed and when its circuit moves."""

    circuit_id: str
    health_check_url: str
    schedule_expression: str
    timeout: cdk.Duration
    failure_threshold: int
    cool_down: cdk.Duration
    half_open_trials: int
    expected_status_codes: tuple[int, ...] | None
    allow_http: bool

    @property
    def health_check_input(self) -> dict[str, Any]:
        """The configuration the schedule passes to the health checker (one invocation, one circuit)."""
        data: dict[str, Any] = {
            "circuitId": self.circuit_id,
            "url": self.health_check_url,
            "timeoutMs": int(self.timeout.to_milliseconds()),
            "failureThreshold": self.failure_threshold,
            "coolDownMs": int(self.cool_down.to_milliseconds()),
            "halfOpenTrials": self.half_open_trials,
            "allowHttp": self.allow_http,
        }
        if self.expected_status_codes is not None:
            data["expectedStatusCodes"] = list(self.expected_status_codes)
        return data


@dataclass(frozen=True)
class Circuit(HealthCheck):
    """One monitored downstream service, as ``CircuitBreaker.add_circuit`` created it, with its schedule."""

    schedule: scheduler.CfnSchedule


def check_circuit(
    errors: PropErrors,
    *,
    circuit_id: str,
    taken: set[str],
    health_check_url: str,
    schedule: str | scheduler.ScheduleExpression | cdk.Duration,
    timeout: cdk.Duration,
    failure_threshold: int,
    cool_down: cdk.Duration,
    half_open_trials: int,
    expected_status_codes: Sequence[int] | None,
    allow_http: bool,
    checker_timeout: cdk.Duration,
) -> tuple[str, tuple[int, ...] | None]:
    """Records every problem of ``add_circuit``'s props; returns the schedule expression and the status codes."""
    if errors.require(
        isinstance(circuit_id, str) and bool(contract.CIRCUIT_ID_PATTERN.fullmatch(circuit_id)),
        "circuit_id",
        f"{circuit_id!r} must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit",
    ):
        errors.require(circuit_id not in taken, "circuit_id", f"{circuit_id!r} is already a circuit of this breaker")
    url_ok = isinstance(health_check_url, str) and not cdk.Token.is_unresolved(health_check_url)
    if errors.require(url_ok, "health_check_url", "must be a concrete URL string (not a token)"):
        scheme = health_check_url.split("://", 1)[0].lower() if "://" in health_check_url else ""
        host = health_check_url.split("://", 1)[1].split("/", 1)[0] if "://" in health_check_url else ""
        if scheme == "http" and not allow_http:
            errors.add(
                "health_check_url",
                f"{health_check_url!r} is plain http: use https, or pass allow_http=True to accept it",
            )
        elif scheme not in ("https", "http") or not host or any(c.isspace() for c in health_check_url):
            errors.add("health_check_url", f"{health_check_url!r} is not an absolute https:// URL")
    expression, interval = parse_schedule(schedule, errors)
    if errors.duration_between(timeout, "timeout", minimum=cdk.Duration.millis(100), concrete=True):
        budget = cdk.Duration.millis(int(checker_timeout.to_milliseconds() - STATE_UPDATE_MARGIN.to_milliseconds()))
        if (milliseconds(timeout) or 0) > (milliseconds(budget) or 0):
            errors.add(
                "timeout",
                f"must leave {human_duration(STATE_UPDATE_MARGIN)} of the health checker's timeout "
                f"({human_duration(checker_timeout)}, checker_timeout) for the state update: "
                f"at most {human_duration(budget)}, got {human_duration(timeout)}",
            )
        if interval is not None and (milliseconds(timeout) or 0) >= interval * 1000:
            errors.add(
                "timeout",
                f"must be shorter than the schedule interval ({human_duration(cdk.Duration.seconds(interval))}), "
                f"got {human_duration(timeout)}",
            )
    for name, value in (("failure_threshold", failure_threshold), ("half_open_trials", half_open_trials)):
        errors.require(
            isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100,
            name,
            f"must be a positive integer from 1 to 100, got {value!r}",
        )
    errors.duration_between(
        cool_down, "cool_down", minimum=cdk.Duration.seconds(1), maximum=cdk.Duration.hours(24), concrete=True
    )
    codes: tuple[int, ...] | None = None
    if expected_status_codes is not None:
        codes = tuple(expected_status_codes)
        bad = [c for c in codes if not isinstance(c, int) or isinstance(c, bool) or not 100 <= c <= 599]
        errors.require(bool(codes), "expected_status_codes", "must list at least one HTTP status code")
        errors.require(not bad, "expected_status_codes", f"{bad!r} are not HTTP status codes (100-599)")
    return expression, codes


def schedule_health_check(
    scope: Construct,
    check: HealthCheck,
    *,
    checker: lambda_.IFunction,
    role: iam.Role,
    dead_letter_queue: sqs.IQueue,
    retry_attempts: int,
    max_event_age: cdk.Duration,
) -> Circuit:
    """The schedule that invokes ``checker`` with ``check``'s configuration; returns the circuit."""
    # The L1 schedule keeps the role's policy to exactly this function (the L2 target adds ":*").
    schedule = scheduler.CfnSchedule(
        scope,
        f"HealthCheck-{check.circuit_id}",
        schedule_expression=check.schedule_expression,
        flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
        description=f"Circuit breaker health check of {check.circuit_id!r}",
        state="ENABLED",
        target=scheduler.CfnSchedule.TargetProperty(
            arn=checker.function_arn,
            role_arn=role.role_arn,
            input=cdk.Stack.of(scope).to_json_string(check.health_check_input),
            dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(arn=dead_letter_queue.queue_arn),
            retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                maximum_retry_attempts=retry_attempts,
                maximum_event_age_in_seconds=int(max_event_age.to_milliseconds()) // 1000,
            ),
        ),
    )
    # Scheduler checks that the role may invoke the target: create the role's policy first.
    policy = role.node.try_find_child("DefaultPolicy")
    if policy is not None:
        schedule.node.add_dependency(policy)
    return Circuit(**{name: getattr(check, name) for name in HealthCheck.__dataclass_fields__}, schedule=schedule)


def parse_schedule(
    schedule: str | scheduler.ScheduleExpression | cdk.Duration, errors: PropErrors
) -> tuple[str, int | None]:
    """The schedule as an expression string, and its interval in seconds when it is a rate."""
    if isinstance(schedule, cdk.Duration):
        milliseconds = int(schedule.to_milliseconds())
        if milliseconds < 60_000 or milliseconds % 60_000:
            errors.add(
                "schedule",
                f"a Duration schedule must be whole minutes, at least 1 minute, got {human_duration(schedule)}",
            )
            return "rate(1 minute)", None
        minutes = milliseconds // 60_000
        return f"rate({minutes} minute{'s' if minutes > 1 else ''})", minutes * 60
    expression = schedule.expression_string if isinstance(schedule, scheduler.ScheduleExpression) else schedule
    if not isinstance(expression, str):
        errors.add(
            "schedule", f"must be a rate(...)/cron(...) string, a ScheduleExpression or a Duration, got {schedule!r}"
        )
        return "rate(1 minute)", None
    rate = _RATE.fullmatch(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        singular = unit.rstrip("s")
        if value < 1 or (value == 1) != (unit == singular):
            errors.add(
                "schedule",
                f"{expression!r}: write rate(1 {singular}) or rate(N {singular}s) with N > 1",
            )
            return expression, None
        return expression, value * _UNIT_SECONDS[singular]
    if _CRON.fullmatch(expression):
        return expression, 60  # a cron schedule fires at most once a minute
    errors.add(
        "schedule",
        f"{expression!r} is not a recurring schedule: use rate(N minutes|hours|days) or cron(6 fields)",
    )
    return expression, None
