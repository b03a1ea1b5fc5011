"""``CircuitBreaker``: circuit state in DynamoDB, scheduled health checks, an extension layer for functions.

A breaker owns one state table (one item per circuit), one health-checker function, and the Lambda
extension layer. ``add_circuit`` schedules a health check of one downstream service (see
``health_check.py``); ``protect(function)`` gives a user's function the layer, its environment and
read/trip access to exactly this table. The names the parts share are in ``contract.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
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

from cdk_serverless_patterns.circuit_breaker import contract
from cdk_serverless_patterns.circuit_breaker.health_check import (
    Circuit,
    HealthCheck,
    check_circuit,
    schedule_health_check,
)
from cdk_serverless_patterns.circuit_breaker.protection import (
    MAX_CIRCUIT_LIST_CHARS,
    MIN_PYTHON,
    SUPPORTED_RUNTIMES,
    CircuitIdList,
    CircuitList,
    ProtectedCircuitsAreKnown,
    check_protect,
    circuit_write_statement,
)
from cdk_serverless_patterns.core import (
    PropErrors,
    acknowledge,
    alarm_on_any,
    dead_letter_queue,
    lambda_code,
    pattern_function,
)
from cdk_serverless_patterns.core.tables import check_table_props, grant_table_key, pattern_table
from constructs import Construct

__all__ = ["MAX_CIRCUIT_LIST_CHARS", "MIN_PYTHON", "SUPPORTED_RUNTIMES", "CircuitBreaker"]


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
            key that the CDK knows (``table.encryption_key``), the health checker and protected
            functions are granted it; for an imported table, grant its key yourself.
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
        metric_namespace: str = contract.METRIC_NAMESPACE,
        alarm_topic: sns.ITopic | None = None,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        check_table_props(
            errors,
            partition_key=contract.TABLE_KEY,
            existing_table=existing_table,
            table_props=table_props,
            encryption_key=encryption_key,
        )
        errors.duration_between(
            checker_timeout,
            "checker_timeout",
            minimum=cdk.Duration.seconds(5),
            maximum=cdk.Duration.minutes(5),
            concrete=True,
            whole_seconds=True,
        )
        errors.require(
            isinstance(schedule_retry_attempts, int) and 0 <= schedule_retry_attempts <= 185,
            "schedule_retry_attempts",
            f"must be an integer from 0 to 185 (EventBridge Scheduler's limit), got {schedule_retry_attempts!r}",
        )
        errors.duration_between(
            schedule_max_event_age,
            "schedule_max_event_age",
            minimum=cdk.Duration.minutes(1),
            maximum=cdk.Duration.hours(24),
            concrete=True,
        )
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

        self._table = pattern_table(
            self,
            "StateTable",
            partition_key=contract.TABLE_KEY,
            encryption_key=encryption_key,
            existing_table=existing_table,
            table_props=table_props,
            removal_policy=removal_policy,
            deletion_protection=deletion_protection,
        )
        self._layer = existing_layer or lambda_.LayerVersion(
            self,
            "ExtensionLayer",
            code=lambda_code(contract.EXTENSION_ASSET),
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
            asset=contract.HEALTH_CHECKER_ASSET,
            handler="health_checker.handler",
            description="Circuit breaker health checker: probes a downstream service and moves its circuit",
            environment={
                contract.ENV_TABLE: self._table.table_name,
                contract.ENV_EVENT_BUS: bus_name,
                contract.ENV_METRIC_NAMESPACE: metric_namespace,
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
        # Every item: the checker serves whatever circuit its event names (the integ test probes one of its own).
        self._health_checker.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                resources=[self._table.table_arn],
            )
        )
        grant_table_key(self._table, self._health_checker)
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
        self.node.add_validation(ProtectedCircuitsAreKnown(lambda: self.circuits, lambda: self._protected))

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
            expected_status_codes: The HTTP statuses that mean healthy (list a 3xx or 4xx here to accept
                it; redirects are never followed). Default: any 2xx.
            allow_http: Accept an ``http://`` URL (for example a service inside a VPC without TLS).
                Default: False.
        """
        errors = PropErrors(f"{type(self).__name__}.add_circuit")
        expression, codes = check_circuit(
            errors,
            circuit_id=circuit_id,
            taken=set(self._circuits),
            health_check_url=health_check_url,
            schedule=schedule,
            timeout=timeout,
            failure_threshold=failure_threshold,
            cool_down=cool_down,
            half_open_trials=half_open_trials,
            expected_status_codes=expected_status_codes,
            allow_http=allow_http,
            checker_timeout=self._checker_timeout,
        )
        errors.raise_if_any()
        circuit = schedule_health_check(
            self,
            HealthCheck(
                circuit_id=circuit_id,
                health_check_url=health_check_url,
                schedule_expression=expression,
                timeout=timeout,
                failure_threshold=failure_threshold,
                cool_down=cool_down,
                half_open_trials=half_open_trials,
                expected_status_codes=codes,
                allow_http=allow_http,
            ),
            checker=self._health_checker,
            role=self._scheduler_role,
            dead_letter_queue=self._dead_letter_queue,
            retry_attempts=self._schedule_retry_attempts,
            max_event_age=self._schedule_max_event_age,
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
        ``dynamodb:GetItem`` on exactly this table and ``dynamodb:UpdateItem`` on exactly the items of
        the circuits the function is protected for (``circuits``, or every circuit of this breaker:
        a ``dynamodb:LeadingKeys`` condition), plus the table's customer-managed key, if any. The
        function must run Python 3.12 or newer: the extension runs on the function's own interpreter.

        Args:
            function: The function to protect (a ``lambda_.Function`` with a Python runtime).
            circuits: Circuit ids the extension prefetches at start-up, and the only circuits the
                function may write (trip from outcomes). Default: every circuit of this breaker (also
                those added after this call).
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
        ids = check_protect(
            errors,
            function=function,
            protected=[fn for fn, _ in self._protected],
            circuits=circuits,
            on_extension_error=on_extension_error,
            cache_ttl=cache_ttl,
            failure_rate_threshold=failure_rate_threshold,
            minimum_calls=minimum_calls,
            window=window,
            slow_call_duration=slow_call_duration,
        )
        errors.raise_if_any()

        function.add_layers(self._layer)
        circuit_list = ",".join(ids) if ids is not None else cdk.Lazy.string(CircuitList(lambda: self.circuits))
        environment = {
            contract.ENV_TABLE: self._table.table_name,
            contract.ENV_PORT: str(contract.EXTENSION_PORT),
            contract.ENV_CACHE_TTL_MS: str(int(cache_ttl.to_milliseconds())),
            contract.ENV_CIRCUITS: circuit_list,
            contract.ENV_ON_EXTENSION_ERROR: on_extension_error,
            contract.ENV_FAILURE_RATE: f"{float(failure_rate_threshold):g}",
            contract.ENV_MIN_CALLS: str(minimum_calls),
            contract.ENV_WINDOW_MS: str(int(window.to_milliseconds())),
            contract.ENV_SLOW_CALL_MS: str(int(slow_call_duration.to_milliseconds())),
        }
        for name, value in environment.items():
            function.add_environment(name, value)
        # Reading any circuit is harmless (and ``circuits`` is a prefetch list); writing is limited to the
        # circuits the function is protected for, so one function cannot trip or close another's circuits.
        read = iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[self._table.table_arn])
        function.add_to_role_policy(read)
        writable = list(ids) if ids is not None else cdk.Lazy.list(CircuitIdList(lambda: self.circuits))
        function.add_to_role_policy(circuit_write_statement(self._table.table_arn, writable))
        grant_table_key(self._table, function)
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
    def dead_letter_queue(self) -> sqs.IQueue:
        """Where health-check invocations that could not run end up."""
        return self._dead_letter_queue

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        """The breaker's alarms: the health-check dead-letter queue holds a check that could not run or failed."""
        return [self._dead_letter_alarm]

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
