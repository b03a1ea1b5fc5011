"""``MacieJobStatusForwarder``: Amazon Macie job status events from CloudWatch Logs onto an event bus.

Macie publishes classification-job status changes only to the log group
``/aws/macie/classificationjobs`` (EventBridge gets only ``Macie Finding`` events). This opt-in
construct subscribes a small function (``lambda_src/callback_macie_forwarder``) to that log group;
it puts each job-status event on the bus with the source and detail-type that
``JobSource.macie_classification_job`` listens for. Failed invocations (events that could not be
put after retries, or a payload that is not a subscription payload) go to an encrypted dead-letter
queue with an alarm.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as lambda_destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as logs_destinations
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from cdk_serverless_patterns.callback import sources
from cdk_serverless_patterns.callback.sources import JobSource
from cdk_serverless_patterns.core import PropErrors, acknowledge, alarm_on_any, dead_letter_queue, pattern_function
from constructs import Construct

#: The Lambda asset (``lambda_src/callback_macie_forwarder``) and its environment.
ASSET = "callback_macie_forwarder"
ENV_EVENT_BUS = "EVENT_BUS_NAME"
ENV_EVENT_SOURCE = "EVENT_SOURCE"
ENV_DETAIL_TYPE = "DETAIL_TYPE"
ENV_EVENT_TYPES = "EVENT_TYPES"
#: A CloudWatch Logs filter pattern is at most 1,024 characters.
_MAX_FILTER_PATTERN = 1024
#: What an event source may be (EventBridge: up to 256 characters; ours are plain names).
_SOURCE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")


class MacieJobStatusForwarder(Construct):
    """Forwards Macie classification-job status events from CloudWatch Logs to ``event_bus``.

    Args:
        event_bus: The bus to put the events on: the ``CallbackPattern``'s ``event_bus``. The
            function may ``events:PutEvents`` on this bus only.
        source: The Macie job source the events are for
            (``JobSource.macie_classification_job(...)``): the events get its source and
            detail-type. Default: the default Macie source (``custom.macie.classification-jobs``,
            ``Macie Classification Job Status``).
        event_types: The job-status event types to forward (``eventType``); the subscription
            filter selects only these. Default: every job-status type Macie documents (creation,
            start, pause, resume, run completion, cancellation, completion); account- and
            bucket-level error events are never forwarded.
        log_group: The log group to subscribe to. Default: ``/aws/macie/classificationjobs``,
            imported by name (Macie creates it when it first runs a job: deploy this after that,
            or create the group yourself, with your retention and key, and pass it).
        alarm_topic: SNS topic the dead-letter alarm notifies. Default: none (no actions).
        retry_attempts: Asynchronous retries of a failed invocation before it goes to the
            dead-letter queue; 0 to 2. Default: 2.
        log_retention: Retention of the function's own log group. Default: one month.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        event_bus: events.IEventBus,
        source: JobSource | None = None,
        event_types: Sequence[str] = sources.MACIE_JOB_STATUS_EVENT_TYPES,
        log_group: logs.ILogGroup | None = None,
        alarm_topic: sns.ITopic | None = None,
        retry_attempts: int = 2,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, id)
        source = source if source is not None else JobSource.macie_classification_job()
        event_types = list(event_types) if not isinstance(event_types, str) else []
        errors = PropErrors(type(self).__name__)
        errors.require(event_bus is not None, "event_bus", "is required (the CallbackPattern's event_bus)")
        event_source, detail_type = _source_names(errors, source)
        known = set(sources.MACIE_JOB_STATUS_EVENT_TYPES)
        if errors.require(bool(event_types), "event_types", "needs at least one event type (a list of strings)"):
            unknown = [t for t in event_types if t not in known]
            errors.require(
                not unknown,
                "event_types",
                f"{unknown} are not Macie job-status event types; accepted: "
                f"{', '.join(sources.MACIE_JOB_STATUS_EVENT_TYPES)}",
            )
            is_source = isinstance(source, JobSource)
            terminal = set(source.success_statuses) | set(source.failure_statuses) if is_source else set()
            missing = sorted((terminal & known) - set(event_types))
            errors.require(
                not missing,
                "event_types",
                f"must include the statuses the source waits for: {', '.join(missing)} (else waits never end)",
            )
        errors.require(
            isinstance(retry_attempts, int) and not isinstance(retry_attempts, bool) and 0 <= retry_attempts <= 2,
            "retry_attempts",
            f"must be 0, 1 or 2 (Lambda's asynchronous retries), got {retry_attempts!r}",
        )
        errors.raise_if_any()
        self._event_types = tuple(dict.fromkeys(event_types))

        self._dead_letter_queue = dead_letter_queue(
            self,
            "DeadLetterQueue",
            dead_letter_of="the Macie job-status forwarder's failed invocations",
        )
        self._dead_letter_alarm = alarm_on_any(
            self,
            "DeadLetterAlarm",
            description="Macie job-status events could not be forwarded to the event bus: see the dead-letter queue "
            "(waiting workflows may not be resumed)",
            metric=self._dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(1), statistic="Maximum"
            ),
            alarm_topic=alarm_topic,
        )
        self._function = pattern_function(
            self,
            "Function",
            asset=ASSET,
            handler="macie_forwarder.handler",
            description="Puts Amazon Macie classification-job status events from CloudWatch Logs on the callback bus",
            environment={
                ENV_EVENT_BUS: event_bus.event_bus_name,
                ENV_EVENT_SOURCE: event_source,
                ENV_DETAIL_TYPE: detail_type,
                ENV_EVENT_TYPES: ",".join(self._event_types),
            },
            timeout=cdk.Duration.seconds(60),
            memory_size=256,
            log_retention=log_retention,
        )
        self._function.configure_async_invoke(
            retry_attempts=retry_attempts,
            max_event_age=cdk.Duration.hours(6),
            on_failure=lambda_destinations.SqsDestination(self._dead_letter_queue),
        )
        acknowledge(
            self._function,
            "Failed asynchronous invocations go to the on-failure destination (the forwarder's dead-letter queue), "
            "which AWS recommends over a function dead-letter queue and which carries the payload and the error.",
            "Serverless-LambdaDLQ",
        )
        # Least privilege: put events on this one bus.
        self._function.add_to_role_policy(
            iam.PolicyStatement(actions=["events:PutEvents"], resources=[event_bus.event_bus_arn])
        )

        self._log_group = log_group or logs.LogGroup.from_log_group_name(
            self, "MacieLogGroup", sources.MACIE_LOG_GROUP_NAME
        )
        self._subscription = logs.SubscriptionFilter(
            self,
            "Subscription",
            log_group=self._log_group,
            destination=logs_destinations.LambdaDestination(self._function),
            filter_pattern=logs.FilterPattern.literal(job_status_filter_pattern(self._event_types)),
        )

    # ------------------------------------------------------------------ exposed resources
    @property
    def function(self) -> lambda_.Function:
        """The forwarder function."""
        return self._function

    @property
    def subscription(self) -> logs.SubscriptionFilter:
        """The subscription filter on the Macie log group."""
        return self._subscription

    @property
    def log_group(self) -> logs.ILogGroup:
        """The log group the forwarder subscribes to."""
        return self._log_group

    @property
    def event_types(self) -> tuple[str, ...]:
        """The forwarded job-status event types."""
        return self._event_types

    @property
    def dead_letter_queue(self) -> sqs.IQueue:
        """Where failed invocations go (events not put after retries, payloads that are not subscription payloads)."""
        return self._dead_letter_queue

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        """The dead-letter queue alarm."""
        return [self._dead_letter_alarm]


def job_status_filter_pattern(event_types: Sequence[str]) -> str:
    """The CloudWatch Logs filter pattern selecting JSON log events with one of ``event_types``."""
    pattern = "{ " + " || ".join(f'($.eventType = "{t}")' for t in event_types) + " }"
    if len(pattern) > _MAX_FILTER_PATTERN:
        raise ValueError(
            f"the filter pattern for {len(event_types)} event types exceeds {_MAX_FILTER_PATTERN} characters"
        )
    return pattern


def _source_names(errors: PropErrors, source: JobSource | None) -> tuple[str, str]:
    """The event source and detail-type of a Macie job source (its pattern's only values)."""
    if not isinstance(source, JobSource):
        errors.add("source", f"must be a JobSource (JobSource.macie_classification_job(...)), got {source!r}")
        return "", ""
    names = []
    for key in ("source", "detail-type"):
        values = source.event_pattern.get(key)
        value = values[0] if isinstance(values, list | tuple) and len(values) == 1 else None
        ok = isinstance(value, str) and (key != "source" or bool(_SOURCE.match(value)))
        errors.require(
            ok, "source", f"its event pattern must name exactly one {key} to put the events with, got {values!r}"
        )
        names.append(value if isinstance(value, str) and ok else "")
    if names[0].startswith("aws."):
        errors.add("source", f"events cannot be put with an 'aws.' source ({names[0]!r}): use a custom source")
    return names[0], names[1]
