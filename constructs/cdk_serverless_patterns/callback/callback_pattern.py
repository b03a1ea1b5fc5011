"""``CallbackPattern``: pause a Step Functions workflow on an asynchronous job, resume it on the
job's completion event.

A workflow starts a job (Translate, Bedrock Data Automation, DMS, a third-party API) and then runs
the wait step from :meth:`CallbackPattern.wait_for_job`: it stores its task token in the token
table against ``<namespace>#<jobId>`` and pauses. When the job's completion event arrives on
EventBridge, a rule starts the resumer (an EXPRESS state machine), which looks the token up,
resumes the workflow with success or failure and deletes the record. When the event comes first
(a fast job), the resumer records the completion instead, and the wait step, finding it, proceeds
with that result at once: no workflow waits for an event that already happened.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn

from cdk_serverless_patterns.callback import asl, contract
from cdk_serverless_patterns.callback.sources import JobSource
from cdk_serverless_patterns.callback.wait_step import MAX_TIMEOUT, TOKEN_RECORD_GRACE, check_wait, wait_states
from cdk_serverless_patterns.core import PropError, PropErrors, acknowledge, alarm_on_any, dead_letter_queue
from cdk_serverless_patterns.core.tables import check_table_props, grant_table_key, pattern_table
from constructs import Construct

if TYPE_CHECKING:
    from cdk_serverless_patterns.callback.callback_urls import CallbackUrls

__all__ = ["MAX_TIMEOUT", "TOKEN_RECORD_GRACE", "CallbackPattern"]


class CallbackPattern(Construct):
    """Token table, resumer state machine, one EventBridge rule per job source, DLQ and alarms.

    Args:
        sources: Job sources to register now (more with :meth:`add_job_source`). Default: none.
        encryption_key: Customer-managed KMS key for the token table. Default: AWS-managed key.
        completion_ttl: How long an early completion (event before token) is kept for its waiter.
            Default: 1 hour. Between 1 minute and 30 days.
        event_bus: The bus whose events resume waits. Default: the account's default bus (where
            AWS services send their events).
        retry_attempts: How often EventBridge retries starting the resumer. Default: 8. 0-185.
        max_event_age: How long EventBridge keeps retrying. Default: 2 hours. 1 minute-24 hours.
        alarm_topic: SNS topic the alarms notify. Default: none (alarms without actions).
        durable_functions: Also resume Lambda Durable Functions waiters (``backend = "durable"``
            records) with the durable-execution callback APIs; grant each durable function with
            :meth:`grant_durable_wait` (the resumer may complete its executions' callbacks only).
            Default: ``False``.
        existing_table: Use this token table instead of creating one: partition key ``id``
            (String), DynamoDB TTL on ``ttl``. Excludes ``encryption_key`` and ``table_props``. Its
            customer-managed key, if it has one, is granted to the resumer and to waiting workflows.
        table_props: Extra ``dynamodb.Table`` properties merged over the defaults (not the key
            schema or the TTL attribute). Default: none.
        log_retention: Of the resumer's log group. Default: one month.
        removal_policy: Of the table and the log group. Default: ``RemovalPolicy.RETAIN``.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        sources: Sequence[JobSource] = (),
        encryption_key: kms.IKey | None = None,
        completion_ttl: cdk.Duration = cdk.Duration.hours(1),
        event_bus: events.IEventBus | None = None,
        retry_attempts: int = 8,
        max_event_age: cdk.Duration = cdk.Duration.hours(2),
        alarm_topic: sns.ITopic | None = None,
        durable_functions: bool = False,
        existing_table: dynamodb.ITable | None = None,
        table_props: Mapping[str, Any] | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        errors.duration_between(
            completion_ttl, "completion_ttl", minimum=cdk.Duration.minutes(1), maximum=cdk.Duration.days(30)
        )
        errors.require(
            isinstance(retry_attempts, int) and 0 <= retry_attempts <= 185,
            "retry_attempts",
            f"must be an integer between 0 and 185 (EventBridge's limit), got {retry_attempts!r}",
        )
        errors.duration_between(
            max_event_age, "max_event_age", minimum=cdk.Duration.minutes(1), maximum=cdk.Duration.hours(24)
        )
        errors.require(isinstance(durable_functions, bool), "durable_functions", "must be True or False")
        check_table_props(
            errors,
            partition_key=contract.TABLE_KEY,
            ttl_attribute=contract.TTL_ATTRIBUTE,
            existing_table=existing_table,
            table_props=table_props,
            encryption_key=encryption_key,
        )
        _check_sources(errors, list(sources), taken=set(), prop="sources")
        errors.raise_if_any()

        self._sources: list[JobSource] = []
        self._completion_ttl = completion_ttl
        self._durable = durable_functions
        self._retry_attempts = retry_attempts
        self._max_event_age = max_event_age
        self._rules: dict[str, events.Rule] = {}
        self._callback_urls: CallbackUrls | None = None

        self._table = pattern_table(
            self,
            "Table",
            partition_key=contract.TABLE_KEY,
            ttl_attribute=contract.TTL_ATTRIBUTE,
            encryption_key=encryption_key,
            existing_table=existing_table,
            table_props=table_props,
            removal_policy=removal_policy,
        )
        self._event_bus = event_bus or events.EventBus.from_event_bus_name(self, "DefaultBus", "default")

        self._dead_letter_queue = dead_letter_queue(
            self, "DeadLetterQueue", dead_letter_of="the EventBridge rule targets that start the callback resumer"
        )

        log_group = logs.LogGroup(self, "ResumerLogs", retention=log_retention, removal_policy=removal_policy)
        self._resumer = sfn.StateMachine(
            self,
            "Resumer",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_string(self._resumer_definition()),
            timeout=cdk.Duration.minutes(5),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment="Resumes workflows waiting in CallbackPattern when their job's completion event arrives",
        )
        self._table.grant(self._resumer, "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem")
        grant_table_key(self._table, self._resumer)
        # A failed resumer run reports the job it could not resume to the dead-letter queue.
        self._dead_letter_queue.grant_send_messages(self._resumer)
        self._resumer.add_to_role_policy(
            iam.PolicyStatement(actions=["states:SendTaskSuccess", "states:SendTaskFailure"], resources=["*"])
        )
        # The durable callback APIs are granted per function by grant_durable_wait, on that function's
        # durable executions only (never Resource '*').
        acknowledge(
            self._resumer,
            "states:SendTaskSuccess/SendTaskFailure take no resource-level permission (a task token names no "
            "resource); X-Ray and CloudWatch Logs delivery actions of an Express state machine require "
            "Resource '*' (AWS forces these).",
            "AwsSolutions-IAM5[Resource::*]",
        )

        self._alarms = [
            alarm_on_any(
                self,
                "ResumerFailedAlarm",
                metric=self._resumer.metric_failed(period=cdk.Duration.minutes(5), statistic="Sum"),
                description="The callback resumer failed: a workflow may not have been resumed",
                alarm_topic=alarm_topic,
            ),
            alarm_on_any(
                self,
                "ResumerTimedOutAlarm",
                metric=self._resumer.metric_timed_out(period=cdk.Duration.minutes(5), statistic="Sum"),
                description="The callback resumer timed out: a workflow may not have been resumed",
                alarm_topic=alarm_topic,
            ),
            alarm_on_any(
                self,
                "DeadLetterQueueAlarm",
                metric=self._dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=cdk.Duration.minutes(5), statistic="Maximum"
                ),
                description="Completion events could not be delivered to the callback resumer",
                alarm_topic=alarm_topic,
            ),
        ]

        for source in sources:
            self._register(source)

    # ------------------------------------------------------------------ sources
    def add_job_source(self, source: JobSource) -> events.Rule:
        """Registers one job source: an EventBridge rule for its completion events that starts
        the resumer, with retries and the dead-letter queue. Returns the rule.

        Raises ``PropError`` naming each problem of the source (a bad event pattern or path, an
        empty or overlapping status list, a namespace already registered...).
        """
        errors = PropErrors(f"{type(self).__name__}.add_job_source")
        _check_sources(errors, [source], taken=self._taken_namespaces(), prop="source")
        errors.raise_if_any()
        return self._register(source)

    def _taken_namespaces(self) -> set[str]:
        taken: set[str] = set()
        for source in self._sources:
            taken.update(source.namespaces)
            taken.add(source.namespace)
        return taken

    def _register(self, source: JobSource, event_bus: events.IEventBus | None = None) -> events.Rule:
        self._sources.append(source)
        rule_id = "Rule" + "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", source.namespace) if part)
        rule = events.Rule(
            self,
            rule_id,
            event_bus=event_bus or self._event_bus,
            event_pattern=_event_pattern(source.rule_pattern()),
            description=f"Completion events of {source.namespace} jobs -> callback resumer",
        )
        rule.add_target(
            targets.SfnStateMachine(
                self._resumer,
                input=events.RuleTargetInput.from_object(
                    {"source": source.namespace, "event": events.EventField.from_path("$")}
                ),
                dead_letter_queue=self._dead_letter_queue,
                retry_attempts=self._retry_attempts,
                max_event_age=self._max_event_age,
            )
        )
        self._rules[source.namespace] = rule
        cfn = self._resumer.node.default_child
        assert isinstance(cfn, sfn.CfnStateMachine)
        cfn.definition_string = self._resumer_definition()
        return rule

    def _resumer_definition(self) -> str:
        definition = asl.resumer_definition(
            table_name=self._table.table_name,
            sources=self._sources,
            completion_ttl_seconds=int(self._completion_ttl.to_seconds()),
            durable=self._durable,
            # A failed run reports its job here (message attribute kind = callback-resumer-failure).
            dead_letter_queue_url=self._dead_letter_queue.queue_url,
        )
        return cdk.Stack.of(self).to_json_string(definition)

    # ------------------------------------------------------------------ the wait step
    def wait_for_job(
        self,
        id: str,
        *,
        source: JobSource | str,
        job_id_path: str,
        timeout: cdk.Duration,
        heartbeat: cdk.Duration | None = None,
        result_path: str | None = "$.job",
        callback_secret_path: str | None = None,
        scope: Construct | None = None,
    ) -> sfn.Parallel:
        """The wait step to put right after the state that started the job.

        A Parallel state with one branch: a task (``arn:aws:states:::aws-sdk:dynamodb:putItem.
        waitForTaskToken``) that stores ``{id: "<namespace>#<jobId>", kind: "token", backend:
        "stepfunctions", taskToken, executionArn, createdAt, ttl}`` if no record or only a
        ``resumed`` marker holds the id (callback-URL namespaces: only if no record does) and
        pauses; when that put fails because the job's completion was already recorded, the branch
        claims that record and proceeds with its result (or fails with its error). A job id that is
        not a non-empty string or an integer below 10**15 fails with
        ``CallbackPattern.InvalidJobId`` before anything is stored; a second waiter for a parked id
        with ``CallbackPattern.JobAlreadyAwaited``; a callback-URL id reused while its ``resumed``
        marker lives with ``CallbackPattern.JobIdReused``. Catch job failures, ``States.Timeout``
        and ``States.HeartbeatTimeout`` on the returned state, as on any task. Its ``add_retry``
        raises ``PropError``: a retried wait would park a second token for the same job (retry the
        job's start and the wait together).
        Several workflows may use the same ``id`` (each gets its own states).

        Args:
            id: Construct id and state name prefix, unique in the workflow.
            source: The job source (or its namespace) whose events resume this wait.
            job_id_path: Where the job id is in the state input, e.g. ``"$.JobId"``.
            timeout: How long to wait at most (required: a wait must never last forever). At
                least 1 second, at most 365 days.
            heartbeat: Optional heartbeat interval; must be shorter than ``timeout``. The wait then
                fails with ``States.HeartbeatTimeout`` unless something calls SendTaskHeartbeat
                with the parked token (``taskToken`` in the token record) within each interval;
                job sources do not send heartbeats.
            result_path: Where the job's output goes in the state. Default: ``"$.job"``.
                ``"$"`` replaces the state; ``None`` keeps the input unchanged.
            callback_secret_path: For callback URLs: where the per-job secret is in the state
                input; its SHA-256 is stored as ``callbackSecretHash``. Default: none.
            scope: Where the states are created. Default: this construct.

        Grant the workflow the wait step's permissions with :meth:`grant_wait`.
        """
        errors = PropErrors(f"{type(self).__name__}.wait_for_job")
        namespace = source.namespace if isinstance(source, JobSource) else source
        known = {ns for src in self._sources for ns in src.namespaces}
        errors.require(
            isinstance(namespace, str) and namespace in known,
            "source",
            f"{namespace!r} is not a registered namespace; registered: {sorted(known) or 'none'} "
            "(add the source with add_job_source first)",
        )
        if isinstance(source, JobSource) and source.namespace_path:
            errors.add("source", "serves several namespaces; pass one of its namespaces as a string")
        if scope is not None and isinstance(id, str) and scope.node.try_find_child(f"{id} store token") is not None:
            errors.add("id", f"{id!r} is already a wait step in {scope.node.path or 'the app'}: pick another id")
        check_wait(
            errors,
            id=id,
            job_id_path=job_id_path,
            timeout=timeout,
            heartbeat=heartbeat,
            result_path=result_path,
            callback_secret_path=callback_secret_path,
            callback_urls_enabled=self._callback_urls is not None,
        )
        errors.raise_if_any()
        served_by = next(src for src in self._sources if namespace in src.namespaces)
        if scope is None and self.node.try_find_child(f"{id} store token") is not None:
            # Another workflow already has a wait step with this id in this construct: its states
            # go into a scope of their own (state names only need to be unique per workflow).
            number = 2
            while self.node.try_find_child(f"{id} #{number}") is not None:
                number += 1
            scope = Construct(self, f"{id} #{number}")
        return wait_states(
            scope or self,
            id,
            table_name=self._table.table_name,
            namespace=str(namespace),
            job_id_path=job_id_path,
            timeout=timeout,
            heartbeat=heartbeat,
            result_path=result_path,
            callback_secret_path=callback_secret_path,
            stale_tolerance_seconds=served_by.stale_tolerance_seconds if served_by.reuses_job_ids else None,
            claim_bound=served_by.claim_bound,
        )

    def grant_wait(self, grantee: iam.IGrantable) -> iam.Grant:
        """Lets a workflow run the wait step: PutItem (park its token) and UpdateItem (claim an
        early completion, turning it into a "resumed" marker, conditioned on ``kind = completion``
        in the request) on this table."""
        grant = self._table.grant(grantee, "dynamodb:PutItem", "dynamodb:UpdateItem")
        grant_table_key(self._table, grantee)
        return grant

    def grant_durable_wait(self, function: lambda_.IFunction) -> None:
        """Lets a Lambda durable function wait on this pattern (``lambda_src/callback_durable``) and
        lets the resumer complete that function's callbacks. Needs ``durable_functions=True``.

        The function may ``GetItem``, ``PutItem`` and ``DeleteItem`` on the token table (plus its
        key) and send its own durable callbacks (the narrow race), unless it was imported without
        its role (then grant these yourself); the resumer may
        ``lambda:SendDurableExecutionCallbackSuccess``/``Failure`` on ``<function ARN>:*`` only:
        Lambda authorizes these against the durable execution's ARN, a sub-resource of a function
        version (``<function ARN>:<version>/durable-execution/<name>/<id>``).
        """
        if not self._durable:
            raise PropError(
                f"{type(self).__name__}.grant_durable_wait",
                ["durable_functions: must be True to resume durable functions"],
            )
        if isinstance(function, lambda_.Alias):
            function = function.version.lambda_
        elif isinstance(function, lambda_.Version):
            function = function.lambda_
        policy_id = "DurableCallbacks" + cdk.Names.unique_id(function)[-200:]
        if self.node.try_find_child(policy_id) is not None:
            return  # granted already
        executions = f"{function.function_arn}:*"
        callbacks = iam.PolicyStatement(
            actions=["lambda:SendDurableExecutionCallbackSuccess", "lambda:SendDurableExecutionCallbackFailure"],
            resources=[executions],
        )
        self._resumer.add_to_role_policy(callbacks)
        if function.role is not None:  # an imported function without its role: grant it yourself
            self._table.grant(function, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem")
            grant_table_key(self._table, function)
        own: iam.Policy | None = None
        if function.role is not None:
            # Not in the role's default policy: the function depends on that one, and this statement
            # names the function's own ARN (a circular dependency).
            own = iam.Policy(self, policy_id, statements=[callbacks], roles=[function.role])
        else:
            Construct(self, policy_id)  # marks the function as granted
        finding = _arn_finding(cdk.Stack.of(self).resolve(function.function_arn))
        if finding is not None:
            reason = (
                "Lambda authorizes the durable callback APIs against the durable execution's ARN, a sub-resource "
                "of a function version (<function ARN>:<version>/durable-execution/...): '<function ARN>:*' names "
                "the executions of this one function."
            )
            for grantee in (self._resumer, own):
                if grantee is not None:
                    acknowledge(grantee, reason, f"AwsSolutions-IAM5[Resource::{finding}:*]")

    # ------------------------------------------------------------------ callback URLs
    def enable_callback_urls(
        self, id: str = "CallbackUrls", *, namespaces: Sequence[str], **kwargs: Any
    ) -> CallbackUrls:
        """Opt-in HTTPS callbacks for third parties (``POST /callbacks/{namespace}/{jobId}``).

        Builds ``CallbackUrls`` (see ``callback_urls.py``) with this pattern's table and completion
        TTL, and registers the callback-URL job source (one source for all ``namespaces``; the
        namespace is read from each event) on the construct's own bus (``CallbackUrls.event_bus``,
        where only its handler may put events), not on this pattern's ``event_bus``. Waits then
        name one of ``namespaces`` as their source and pass ``callback_secret_path`` for per-job
        secrets. Other keyword arguments go to ``CallbackUrls``. Returns the ``CallbackUrls``
        construct (``api``, ``function``, ``url``, ``event_bus``).
        """
        from cdk_serverless_patterns.callback.callback_urls import CallbackUrls

        if self._callback_urls is not None:
            raise PropError(f"{type(self).__name__}.enable_callback_urls", ["callback URLs are already enabled"])
        errors = PropErrors(f"{type(self).__name__}.enable_callback_urls")
        source = JobSource.callback_url(namespaces=list(namespaces))
        _check_sources(errors, [source], taken=self._taken_namespaces(), prop="namespaces")
        errors.raise_if_any()
        kwargs.setdefault("completion_ttl", self._completion_ttl)
        urls = CallbackUrls(self, id, table=self._table, namespaces=list(namespaces), **kwargs)
        self._callback_urls = urls
        self._register(source, event_bus=urls.event_bus)
        return urls

    # ------------------------------------------------------------------ exposed resources
    @property
    def table(self) -> dynamodb.ITable:
        """The token table (partition key ``id``, TTL attribute ``ttl``)."""
        return self._table

    @property
    def resumer(self) -> sfn.StateMachine:
        """The EXPRESS state machine that resumes waiting workflows."""
        return self._resumer

    @property
    def rules(self) -> dict[str, events.Rule]:
        """The EventBridge rule of each job source, by namespace."""
        return dict(self._rules)

    @property
    def dead_letter_queue(self) -> sqs.IQueue:
        """Where completion events go that could not start the resumer, and the resumer's own
        reports of runs that failed (message attribute ``kind = callback-resumer-failure``)."""
        return self._dead_letter_queue

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        """Resumer failures, resumer timeouts, dead-letter queue depth."""
        return list(self._alarms)

    @property
    def event_bus(self) -> events.IEventBus:
        """The bus the rules listen on."""
        return self._event_bus

    @property
    def sources(self) -> list[JobSource]:
        """The registered job sources."""
        return list(self._sources)

    @property
    def callback_urls(self) -> CallbackUrls | None:
        """The ``CallbackUrls`` construct once :meth:`enable_callback_urls` ran, else ``None``."""
        return self._callback_urls


def _check_sources(errors: PropErrors, sources: list[JobSource], *, taken: set[str], prop: str) -> None:
    seen = set(taken)
    for index, source in enumerate(sources):
        where = prop if prop != "sources" else f"sources[{index}]"
        if not isinstance(source, JobSource):
            errors.add(where, f"must be a JobSource, got {type(source).__name__}")
            continue
        for name, problem in source.problems(where):
            errors.add(name, problem)
        for namespace in {source.namespace, *source.namespaces}:
            if namespace in seen:
                errors.add(f"{where}.namespace", f"{namespace!r} is already registered: namespaces must be unique")
            seen.add(namespace)


def _arn_finding(arn: Any) -> str | None:
    """How cdk-nag writes a function ARN in a finding: a literal ARN, or ``<LogicalId.Arn>``."""
    if isinstance(arn, str):
        return arn
    if isinstance(arn, dict) and set(arn) == {"Fn::GetAtt"} and arn["Fn::GetAtt"][1] == "Arn":
        return f"<{arn['Fn::GetAtt'][0]}.Arn>"
    return None


def _event_pattern(pattern: dict[str, Any]) -> events.EventPattern:
    return events.EventPattern(
        source=pattern.get("source"),
        detail_type=pattern.get("detail-type"),
        detail=pattern.get("detail"),
        account=pattern.get("account"),
        region=pattern.get("region"),
        resources=pattern.get("resources"),
        id=pattern.get("id"),
        time=pattern.get("time"),
        version=pattern.get("version"),
    )
