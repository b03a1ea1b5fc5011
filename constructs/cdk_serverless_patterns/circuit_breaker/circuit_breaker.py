"""CircuitBreaker: circuit state in DynamoDB, scheduled health checks, an extension layer for functions.

A breaker owns one state table (one item per circuit), one health-checker function, and the Lambda
extension layer. ``add_circuit`` schedules a health check of one downstream service;
``protect(function)`` gives a user's function the layer, its environment and read/trip access to
exactly this table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as lambda_destinations
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from cdk_serverless_patterns.core import (
    PropErrors,
    acknowledge,
    alarm_on_any,
    dead_letter_queue,
    lambda_code,
    pattern_function,
)
from constructs import Construct, IValidation

#: The states of a circuit (contract with the extension and the client).
CIRCUIT_STATES = ("CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED")
#: Port of the extension on 127.0.0.1 (2773 belongs to AWS's Parameters and Secrets extension).
EXTENSION_PORT = 4243
EVENT_SOURCE = "cdk-serverless-patterns.circuit-breaker"
EVENT_DETAIL_TYPE = "Circuit State Changed"
METRIC_NAMESPACE = "CdkServerlessPatterns/CircuitBreaker"
EXTENSION_ASSET = "circuit_breaker_extension"
HEALTH_CHECKER_ASSET = "circuit_breaker_health_checker"
ON_EXTENSION_ERROR = ("fail_open", "fail_closed")
#: Python runtimes whose interpreter can run the extension (it runs on the function's own Python).
MIN_PYTHON = (3, 12)
SUPPORTED_RUNTIMES = (lambda_.Runtime.PYTHON_3_12, lambda_.Runtime.PYTHON_3_13, lambda_.Runtime.PYTHON_3_14)

#: Room for CIRCUIT_BREAKER_CIRCUITS in a function's environment (4 KB in all, shared with the user's).
MAX_CIRCUIT_LIST_CHARS = 2048
_CIRCUIT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(\S+( \S+){5}\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
#: What the health checker needs besides the probe: reading and writing the item, publishing events.
STATE_UPDATE_MARGIN = cdk.Duration.seconds(3)
#: What reading and writing items of a table under a customer-managed key needs (no wildcards).
TABLE_KEY_ACTIONS = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")
#: Table properties the breaker decides itself (the key schema is the contract with the extension).
_FIXED_TABLE_PROPS = {"partition_key", "sort_key", "table_name_suffix"}


@dataclass(frozen=True)
class Circuit:
    """One monitored downstream service, as ``CircuitBreaker.add_circuit`` created it."""

    circuit_id: str
    health_check_url: str
    schedule_expression: str
    timeout: cdk.Duration
    failure_threshold: int
    cool_down: cdk.Duration
    half_open_trials: int
    expected_status_codes: tuple[int, ...] | None
    allow_http: bool
    schedule: scheduler.CfnSchedule

    @property
    def health_check_input(self) -> dict[str, Any]:
        """The configuration the schedule passes to the health checker (one invocation, one circuit)."""
        return _health_check_input(
            self.circuit_id,
            self.health_check_url,
            self.timeout,
            self.failure_threshold,
            self.cool_down,
            self.half_open_trials,
            self.expected_status_codes,
            self.allow_http,
        )


def _health_check_input(
    circuit_id: str,
    url: str,
    timeout: cdk.Duration,
    failure_threshold: int,
    cool_down: cdk.Duration,
    half_open_trials: int,
    expected_status_codes: tuple[int, ...] | None,
    allow_http: bool,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "circuitId": circuit_id,
        "url": url,
        "timeoutMs": int(timeout.to_milliseconds()),
        "failureThreshold": failure_threshold,
        "coolDownMs": int(cool_down.to_milliseconds()),
        "halfOpenTrials": half_open_trials,
        "allowHttp": allow_http,
    }
    if expected_status_codes is not None:
        data["expectedStatusCodes"] = list(expected_status_codes)
    return data


class CircuitBreaker(Construct):
    """Circuit breakers for downstream services, served to Lambda functions by an extension.

    Args:
        encryption_key: Customer-managed KMS key for the state table. Default: AWS-managed key
            (encryption at rest is always on).
        deletion_protection: DynamoDB deletion protection on the state table. Default: True.
        removal_policy: What happens to the table when it leaves the stack. Default: RETAIN.
        existing_table: Use this table (partition key ``circuitId`` of type String) instead of
            creating one; excludes ``encryption_key`` and ``table_props``, and ``deletion_protection``
            and ``removal_policy`` do not apply to it. If it is encrypted with a customer-managed
            key, grant the health checker and protected functions that key yourself.
        table_props: Extra ``dynamodb.Table`` properties merged over the defaults (not the key
            schema). Default: none.
        existing_layer: Use this layer version as the extension layer instead of building it from
            the package's ``circuit_breaker_extension`` folder. Default: built from the package.
        checker_timeout: Timeout of the health-checker function; every circuit's ``timeout`` must
            leave 3 seconds of it for the state update. Default: 15 seconds; 5 seconds to 5 minutes.
        schedule_retry_attempts: How often EventBridge Scheduler retries invoking the health
            checker before sending the event to the dead-letter queue. Default: 2; 0 to 185.
        schedule_max_event_age: How long Scheduler keeps retrying an invocation. Default: 5
            minutes; 1 minute to 24 hours.
        event_bus: Where state changes are published. Default: the account's default bus.
        metric_namespace: CloudWatch namespace of the health-check and transition metrics.
            Default: ``CdkServerlessPatterns/CircuitBreaker``.
        alarm_topic: Where the dead-letter alarm (a health check that could not run or failed)
            notifies. Default: none (the alarm exists, without actions).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        encryption_key: kms.IKey | None = None,
        deletion_protection: bool = True,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        existing_table: dynamodb.ITable | None = None,
        table_props: Mapping[str, Any] | None = None,
        existing_layer: lambda_.ILayerVersion | None = None,
        checker_timeout: cdk.Duration = cdk.Duration.seconds(15),
        schedule_retry_attempts: int = 2,
        schedule_max_event_age: cdk.Duration = cdk.Duration.minutes(5),
        event_bus: events.IEventBus | None = None,
        metric_namespace: str = METRIC_NAMESPACE,
        alarm_topic: sns.ITopic | None = None,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        errors.exclusive(existing_table=existing_table, encryption_key=encryption_key)
        errors.exclusive(existing_table=existing_table, table_props=table_props)
        fixed = sorted(_FIXED_TABLE_PROPS & set(table_props or {}))
        errors.require(
            not fixed,
            "table_props",
            f"cannot set {', '.join(fixed)}: the key schema (partition key circuitId, String) is fixed",
        )
        if _duration_between(errors, checker_timeout, "checker_timeout", 5_000, 300_000):
            errors.require(
                _ms(checker_timeout) % 1000 == 0,
                "checker_timeout",
                f"must be whole seconds (a Lambda timeout), got {_human_ms(_ms(checker_timeout))}",
            )
        errors.require(
            isinstance(schedule_retry_attempts, int) and 0 <= schedule_retry_attempts <= 185,
            "schedule_retry_attempts",
            f"must be an integer from 0 to 185 (EventBridge Scheduler's limit), got {schedule_retry_attempts!r}",
        )
        _duration_between(errors, schedule_max_event_age, "schedule_max_event_age", 60_000, 86_400_000)
        errors.require(
            bool(re.fullmatch(r"[A-Za-z0-9_./#:-]{1,255}", metric_namespace))
            and not metric_namespace.startswith("AWS/"),
            "metric_namespace",
            f"{metric_namespace!r} is not a valid custom CloudWatch namespace (1-255 of A-Z a-z 0-9 . - _ / # :,"
            " not starting with AWS/)",
        )
        errors.raise_if_any()

        self._encryption_key = encryption_key
        self._metric_namespace = metric_namespace
        self._checker_timeout = checker_timeout
        self._circuits: dict[str, Circuit] = {}
        self._protected: list[tuple[lambda_.Function, tuple[str, ...] | None]] = []

        self._table: dynamodb.ITable = existing_table or dynamodb.Table(
            self,
            "StateTable",
            **{
                "partition_key": dynamodb.Attribute(name="circuitId", type=dynamodb.AttributeType.STRING),
                "billing_mode": dynamodb.BillingMode.PAY_PER_REQUEST,
                "encryption": (
                    dynamodb.TableEncryption.CUSTOMER_MANAGED
                    if encryption_key
                    else dynamodb.TableEncryption.AWS_MANAGED
                ),
                "encryption_key": encryption_key,
                "point_in_time_recovery_specification": dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                "deletion_protection": deletion_protection,
                "removal_policy": removal_policy,
                **dict(table_props or {}),
            },
        )
        self._layer = existing_layer or lambda_.LayerVersion(
            self,
            "ExtensionLayer",
            code=lambda_code(EXTENSION_ASSET),
            compatible_runtimes=list(SUPPORTED_RUNTIMES),
            compatible_architectures=[lambda_.Architecture.ARM_64, lambda_.Architecture.X86_64],
            description="cdk-serverless-patterns circuit breaker: extension serving circuit state, and its client",
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

        self._dead_letter_queue = dead_letter_queue(
            self,
            "HealthCheckDeadLetterQueue",
            dead_letter_of="the health-check schedules and of the health checker's asynchronous invocations",
        )
        self._dead_letter_alarm = alarm_on_any(
            self,
            "HealthCheckDeadLetterAlarm",
            description="A circuit breaker health check could not run or failed: see the dead-letter queue",
            metric=self._dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(1), statistic="Maximum"
            ),
            alarm_topic=alarm_topic,
        )

        self._event_bus = event_bus
        bus_name = event_bus.event_bus_name if event_bus else "default"
        bus_arn = (
            event_bus.event_bus_arn
            if event_bus
            else cdk.Stack.of(self).format_arn(service="events", resource="event-bus", resource_name="default")
        )
        self._health_checker = pattern_function(
            self,
            "HealthChecker",
            asset=HEALTH_CHECKER_ASSET,
            handler="health_checker.handler",
            description="Circuit breaker health checker: probes a downstream service and moves its circuit",
            environment={
                "CIRCUIT_BREAKER_TABLE": self._table.table_name,
                "CIRCUIT_BREAKER_EVENT_BUS": bus_name,
                "CIRCUIT_BREAKER_METRIC_NAMESPACE": metric_namespace,
            },
            timeout=checker_timeout,
            memory_size=256,
        )
        # A failed check is worth nothing a minute later: no asynchronous retries; failures go to the queue.
        self._health_checker.configure_async_invoke(
            retry_attempts=0,
            max_event_age=cdk.Duration.minutes(5),
            on_failure=lambda_destinations.SqsDestination(self._dead_letter_queue),
        )
        acknowledge(
            self._health_checker,
            "Failed asynchronous invocations go to the on-failure destination (the health-check dead-letter queue), "
            "which AWS recommends over a function dead-letter queue and which carries more context.",
            "Serverless-LambdaDLQ",
        )
        self._health_checker.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                resources=[self._table.table_arn],
            )
        )
        if encryption_key is not None:
            encryption_key.grant(self._health_checker, *TABLE_KEY_ACTIONS)
        self._health_checker.add_to_role_policy(iam.PolicyStatement(actions=["events:PutEvents"], resources=[bus_arn]))

        self._schedule_retry_attempts = schedule_retry_attempts
        self._schedule_max_event_age = schedule_max_event_age
        self._scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self).account}},
            ),
            description="EventBridge Scheduler invoking the circuit breaker health checker",
        )
        self._scheduler_role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self._health_checker.function_arn])
        )
        self._scheduler_role.add_to_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self._dead_letter_queue.queue_arn])
        )
        self.node.add_validation(_ProtectedCircuitsAreKnown(self))

    # ----------------------------------------------------------------------------------------------
    def add_circuit(
        self,
        circuit_id: str,
        *,
        health_check_url: str,
        schedule: str | scheduler.ScheduleExpression | cdk.Duration = "rate(1 minute)",
        timeout: cdk.Duration = cdk.Duration.seconds(4),
        failure_threshold: int = 3,
        cool_down: cdk.Duration = cdk.Duration.seconds(60),
        half_open_trials: int = 2,
        expected_status_codes: Sequence[int] | None = None,
        allow_http: bool = False,
    ) -> Circuit:
        """Monitors one downstream service with a scheduled health check.

        Args:
            circuit_id: The circuit's id, as functions ask for it (``is_call_permitted("payments")``):
                1-63 of letters, digits, ``_``, ``.``, ``-``, starting with a letter or digit; unique.
            health_check_url: What the health checker GETs. Must be ``https://`` unless ``allow_http``.
            schedule: When to check: ``rate(...)``/``cron(...)`` string, ``ScheduleExpression`` or a
                ``Duration`` of whole minutes. Default: ``rate(1 minute)``.
            timeout: How long a probe may take; shorter than the schedule interval and than the
                checker's timeout minus 3 seconds. Default: 4 seconds.
            failure_threshold: Consecutive failed probes that open the circuit. Default: 3; 1 to 100.
            cool_down: How long the circuit stays OPEN before trial calls (HALF_OPEN). Default: 60
                seconds; 1 second to 24 hours.
            half_open_trials: Consecutive successful trials that close it again. Default: 2; 1 to 100.
            expected_status_codes: The HTTP statuses that mean healthy. Default: any status below 500.
            allow_http: Accept an ``http://`` URL (for example a service inside a VPC without TLS).
                Default: False.
        """
        errors = PropErrors(f"{type(self).__name__}.add_circuit")
        if errors.require(
            isinstance(circuit_id, str) and bool(_CIRCUIT_ID.fullmatch(circuit_id)),
            "circuit_id",
            f"{circuit_id!r} must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ):
            errors.require(
                circuit_id not in self._circuits, "circuit_id", f"{circuit_id!r} is already a circuit of this breaker"
            )
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
        expression, interval = _schedule(schedule, errors)
        if _duration_between(errors, timeout, "timeout", 100, None):
            budget_ms = _ms(self._checker_timeout) - _ms(STATE_UPDATE_MARGIN)
            if _ms(timeout) > budget_ms:
                errors.add(
                    "timeout",
                    f"must leave {_human_ms(_ms(STATE_UPDATE_MARGIN))} of the health checker's timeout "
                    f"({_human_ms(_ms(self._checker_timeout))}, checker_timeout) for the state update: "
                    f"at most {_human_ms(budget_ms)}, got {_human_ms(_ms(timeout))}",
                )
            if interval is not None and _ms(timeout) >= interval * 1000:
                errors.add(
                    "timeout",
                    f"must be shorter than the schedule interval ({_human_ms(interval * 1000)}), "
                    f"got {_human_ms(_ms(timeout))}",
                )
        for name, value in (("failure_threshold", failure_threshold), ("half_open_trials", half_open_trials)):
            errors.require(
                isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100,
                name,
                f"must be a positive integer from 1 to 100, got {value!r}",
            )
        _duration_between(errors, cool_down, "cool_down", 1_000, 86_400_000)
        codes: tuple[int, ...] | None = None
        if expected_status_codes is not None:
            codes = tuple(expected_status_codes)
            bad = [c for c in codes if not isinstance(c, int) or isinstance(c, bool) or not 100 <= c <= 599]
            errors.require(bool(codes), "expected_status_codes", "must list at least one HTTP status code")
            errors.require(not bad, "expected_status_codes", f"{bad!r} are not HTTP status codes (100-599)")
        errors.raise_if_any()

        health_check_input = _health_check_input(
            circuit_id,
            health_check_url,
            timeout,
            failure_threshold,
            cool_down,
            half_open_trials,
            codes,
            allow_http,
        )
        # The L1 schedule keeps the role's policy to exactly this function (the L2 target adds ":*").
        schedule_construct = scheduler.CfnSchedule(
            self,
            f"HealthCheck-{circuit_id}",
            schedule_expression=expression,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            description=f"Circuit breaker health check of {circuit_id!r}",
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self._health_checker.function_arn,
                role_arn=self._scheduler_role.role_arn,
                input=cdk.Stack.of(self).to_json_string(health_check_input),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=self._dead_letter_queue.queue_arn
                ),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=self._schedule_retry_attempts,
                    maximum_event_age_in_seconds=_ms(self._schedule_max_event_age) // 1000,
                ),
            ),
        )
        # Scheduler checks that the role may invoke the target: create the role's policy first.
        policy = self._scheduler_role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            schedule_construct.node.add_dependency(policy)
        circuit = Circuit(
            circuit_id=circuit_id,
            health_check_url=health_check_url,
            schedule_expression=expression,
            timeout=timeout,
            failure_threshold=failure_threshold,
            cool_down=cool_down,
            half_open_trials=half_open_trials,
            expected_status_codes=codes,
            allow_http=allow_http,
            schedule=schedule_construct,
        )
        self._circuits[circuit_id] = circuit
        return circuit

    # ----------------------------------------------------------------------------------------------
    def protect(
        self,
        function: lambda_.Function,
        *,
        circuits: Sequence[str] | None = None,
        on_extension_error: str = "fail_open",
        cache_ttl: cdk.Duration = cdk.Duration.seconds(2),
        failure_rate_threshold: float = 50.0,
        minimum_calls: int = 10,
        window: cdk.Duration = cdk.Duration.seconds(60),
        slow_call_duration: cdk.Duration = cdk.Duration.seconds(5),
    ) -> None:
        """Lets ``function`` ask this breaker for circuit states and report call outcomes.

        Adds the extension layer, the environment the extension and the client read, and IAM for
        ``dynamodb:GetItem`` and ``dynamodb:UpdateItem`` on exactly this table (plus the table's
        customer-managed key, if any). The function must run Python 3.12 or newer: the extension
        runs on the function's own interpreter.

        Args:
            function: The function to protect (a ``lambda_.Function`` with a Python runtime).
            circuits: Circuit ids the extension prefetches at start-up. Default: every circuit of
                this breaker (also those added after this call).
            on_extension_error: What the client does when the extension cannot answer:
                ``"fail_open"`` (calls pass) or ``"fail_closed"`` (calls go to the fallback).
                Default: ``"fail_open"``: the breaker never takes down a healthy service.
            cache_ttl: How long the extension serves a state from its cache before reading it again.
                Default: 2 seconds; 0 to 5 minutes.
            failure_rate_threshold: Percentage of failed calls, or of slow calls, in ``window`` at or
                above which the extension trips the circuit to OPEN from the function's own calls.
                Default: 50; above 0, at most 100.
            minimum_calls: Calls in ``window`` before the rates count. Default: 10; at least 1.
            window: The sliding window of reported outcomes. Default: 60 seconds; 1 second to 1 hour.
            slow_call_duration: A call taking at least this long counts as slow. Default: 5 seconds.
        """
        errors = PropErrors(f"{type(self).__name__}.protect")
        runtime = getattr(function, "runtime", None)
        if not isinstance(function, lambda_.Function) or runtime is None:
            errors.add("function", f"must be a lambda_.Function with a Python runtime, got {type(function).__name__}")
        elif not _supported_runtime(runtime):
            supported = ", ".join(r.name for r in SUPPORTED_RUNTIMES)
            errors.add(
                "function",
                f"runtime {runtime.name} cannot run the circuit breaker extension, which runs on the function's own "
                f"Python interpreter: use Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer ({supported})",
            )
        elif any(fn is function for fn, _ in self._protected):
            errors.add("function", f"{function.node.path} is already protected by this breaker")
        ids: tuple[str, ...] | None = None
        if circuits is not None:
            ids = tuple(circuits)
            malformed = [c for c in ids if not isinstance(c, str) or not _CIRCUIT_ID.fullmatch(c)]
            errors.require(bool(ids), "circuits", "must name at least one circuit (or be None for all of them)")
            errors.require(not malformed, "circuits", f"{malformed!r} are not well-formed circuit ids")
            errors.require(len(set(ids)) == len(ids), "circuits", f"{list(ids)!r} names a circuit twice")
        errors.one_of(on_extension_error, "on_extension_error", ON_EXTENSION_ERROR)
        _duration_between(errors, cache_ttl, "cache_ttl", 0, 300_000)
        errors.require(
            isinstance(failure_rate_threshold, int | float) and 0 < failure_rate_threshold <= 100,
            "failure_rate_threshold",
            f"must be a percentage above 0 and at most 100, got {failure_rate_threshold!r}",
        )
        errors.require(
            isinstance(minimum_calls, int) and not isinstance(minimum_calls, bool) and minimum_calls >= 1,
            "minimum_calls",
            f"must be a positive integer, got {minimum_calls!r}",
        )
        _duration_between(errors, window, "window", 1_000, 3_600_000)
        _duration_between(errors, slow_call_duration, "slow_call_duration", 1, None)
        errors.raise_if_any()

        function.add_layers(self._layer)
        circuit_list = ",".join(ids) if ids is not None else cdk.Lazy.string(_CircuitList(self))
        environment = {
            "CIRCUIT_BREAKER_TABLE": self._table.table_name,
            "CIRCUIT_BREAKER_PORT": str(EXTENSION_PORT),
            "CIRCUIT_BREAKER_CACHE_TTL_MS": str(int(cache_ttl.to_milliseconds())),
            "CIRCUIT_BREAKER_CIRCUITS": circuit_list,
            "CIRCUIT_BREAKER_ON_EXTENSION_ERROR": on_extension_error,
            "CIRCUIT_BREAKER_FAILURE_RATE": f"{float(failure_rate_threshold):g}",
            "CIRCUIT_BREAKER_MIN_CALLS": str(minimum_calls),
            "CIRCUIT_BREAKER_WINDOW_MS": str(int(window.to_milliseconds())),
            "CIRCUIT_BREAKER_SLOW_CALL_MS": str(int(slow_call_duration.to_milliseconds())),
        }
        for name, value in environment.items():
            function.add_environment(name, value)
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[self._table.table_arn])
        )
        if self._encryption_key is not None:
            self._encryption_key.grant(function, *TABLE_KEY_ACTIONS)
        self._protected.append((function, ids))

    def metric(
        self,
        circuit_id: str,
        metric_name: str = "CircuitOpen",
        *,
        statistic: str = "Maximum",
        period: cdk.Duration = cdk.Duration.minutes(1),
    ) -> cloudwatch.Metric:
        """A metric the health checker emits for one circuit, for alarms and dashboards.

        ``metric_name``: ``CircuitOpen`` (1 while OPEN or FORCED_OPEN), ``HealthCheckFailed`` (1 per
        failed probe), ``HealthCheckLatency`` (milliseconds). Default: ``CircuitOpen``, Maximum, 1 minute.
        """
        errors = PropErrors(f"{type(self).__name__}.metric")
        errors.require(circuit_id in self._circuits, "circuit_id", f"{circuit_id!r} is not a circuit of this breaker")
        errors.one_of(metric_name, "metric_name", ("CircuitOpen", "HealthCheckFailed", "HealthCheckLatency"))
        errors.raise_if_any()
        return cloudwatch.Metric(
            namespace=self._metric_namespace,
            metric_name=metric_name,
            dimensions_map={"CircuitId": circuit_id},
            statistic=statistic,
            period=period,
        )

    # ----------------------------------------------------------------------------------------------
    @property
    def table(self) -> dynamodb.ITable:
        """The state table: one item per circuit, keyed by ``circuitId``."""
        return self._table

    @property
    def layer(self) -> lambda_.ILayerVersion:
        """The extension layer (extension and client) that ``protect`` adds to functions."""
        return self._layer

    @property
    def health_checker(self) -> lambda_.Function:
        """The function the schedules invoke, one circuit per invocation."""
        return self._health_checker

    @property
    def dead_letter_queue(self) -> sqs.Queue:
        """Where health-check invocations that could not run end up."""
        return self._dead_letter_queue

    @property
    def dead_letter_alarm(self) -> cloudwatch.Alarm:
        """Alarms while the dead-letter queue holds a health check that could not run or failed."""
        return self._dead_letter_alarm

    @property
    def scheduler_role(self) -> iam.Role:
        """The role EventBridge Scheduler assumes to invoke the health checker."""
        return self._scheduler_role

    @property
    def circuits(self) -> Mapping[str, Circuit]:
        """The circuits added so far, by id."""
        return dict(self._circuits)

    @property
    def encryption_key(self) -> kms.IKey | None:
        """The customer-managed key of the table, if one was given."""
        return self._encryption_key


def _ms(duration: cdk.Duration) -> int:
    return int(duration.to_milliseconds())


def _human_ms(milliseconds: int) -> str:
    for unit, size in (("hours", 3_600_000), ("minutes", 60_000), ("seconds", 1000)):
        if milliseconds >= size and milliseconds % size == 0:
            return f"{milliseconds // size} {unit}"
    return f"{milliseconds} ms"


def _duration_between(
    errors: PropErrors, value: cdk.Duration, prop: str, minimum_ms: int, maximum_ms: int | None
) -> bool:
    """Like ``PropErrors.duration_between``, in milliseconds (sub-second durations are fine here)."""
    if not isinstance(value, cdk.Duration):
        errors.add(prop, f"must be an aws_cdk.Duration, got {value!r}")
        return False
    if cdk.Token.is_unresolved(value.to_string()):
        errors.add(prop, "must be a concrete Duration (not a token): the breaker checks it at synthesis")
        return False
    milliseconds = _ms(value)
    if milliseconds < minimum_ms or (maximum_ms is not None and milliseconds > maximum_ms):
        bounds = (
            f"between {_human_ms(minimum_ms)} and {_human_ms(maximum_ms)}"
            if maximum_ms is not None
            else f"at least {_human_ms(minimum_ms)}"
        )
        errors.add(prop, f"must be {bounds}, got {_human_ms(milliseconds)}")
        return False
    return True


def _supported_runtime(runtime: lambda_.Runtime) -> bool:
    match = re.fullmatch(r"python(\d+)\.(\d+)", runtime.name)
    return (
        runtime.family == lambda_.RuntimeFamily.PYTHON
        and match is not None
        and (int(match.group(1)), int(match.group(2))) >= MIN_PYTHON
    )


def _schedule(
    schedule: str | scheduler.ScheduleExpression | cdk.Duration, errors: PropErrors
) -> tuple[str, int | None]:
    """The schedule as an expression string, and its interval in seconds when it is a rate."""
    if isinstance(schedule, cdk.Duration):
        milliseconds = _ms(schedule)
        if milliseconds < 60_000 or milliseconds % 60_000:
            errors.add(
                "schedule",
                f"a Duration schedule must be whole minutes, at least 1 minute, got {_human_ms(milliseconds)}",
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


@jsii.implements(cdk.IStableStringProducer)
class _CircuitList:
    """Resolves to every circuit id of a breaker at synthesis (circuits added after ``protect`` too)."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker

    def produce(self) -> str | None:
        return ",".join(self._breaker.circuits)


@jsii.implements(IValidation)
class _ProtectedCircuitsAreKnown:
    """Synth-time checks: every circuit a protected function names exists in its breaker, and the
    prefetch list fits in the function's environment (Lambda allows 4 KB of variables in all)."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker

    def validate(self) -> list[str]:
        known = set(self._breaker.circuits)
        problems = []
        for function, ids in self._breaker._protected:
            unknown = sorted(set(ids or ()) - known)
            if unknown:
                problems.append(
                    f"CircuitBreaker.protect: circuits: {function.node.path} names {', '.join(unknown)}, which "
                    f"this breaker does not monitor (add_circuit them, or leave circuits=None); known: "
                    f"{', '.join(sorted(known)) or 'none'}"
                )
            listed = ",".join(ids) if ids is not None else ",".join(self._breaker.circuits)
            if len(listed) > MAX_CIRCUIT_LIST_CHARS:
                problems.append(
                    f"CircuitBreaker.protect: circuits: {function.node.path} would prefetch {len(listed)} characters "
                    f"of circuit ids, more than {MAX_CIRCUIT_LIST_CHARS} of the 4 KB Lambda allows for all environment "
                    "variables: pass circuits=[...] with the circuits this function calls"
                )
        return problems
