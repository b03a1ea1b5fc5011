"""Small secure building blocks the patterns share: dead-letter queues and their alarms."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from cdk_serverless_patterns.core.nag import acknowledge
from constructs import Construct

#: How long an undeliverable message waits in a dead-letter queue: the SQS maximum, to leave time to act.
DEAD_LETTER_RETENTION = cdk.Duration.days(14)


def dead_letter_queue(scope: Construct, id: str, *, dead_letter_of: str) -> sqs.Queue:
    """An SSE-encrypted, TLS-only queue keeping undeliverable messages 14 days.

    ``dead_letter_of`` says what delivers to it; it goes into the reason of the cdk-nag
    acknowledgments (a dead-letter queue of a dead-letter queue would only move the problem).
    """
    queue = sqs.Queue(
        scope,
        id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=DEAD_LETTER_RETENTION,
    )
    acknowledge(
        queue,
        f"This queue is itself the dead-letter queue of {dead_letter_of}; a dead-letter queue of a dead-letter "
        "queue would only move the problem.",
        "AwsSolutions-SQS3",
        "Serverless-SQSRedrivePolicy",
    )
    return queue


def alarm_on_any(
    scope: Construct,
    id: str,
    *,
    metric: cloudwatch.IMetric,
    description: str,
    alarm_topic: sns.ITopic | None = None,
) -> cloudwatch.Alarm:
    """An alarm that fires when ``metric`` reaches 1 in one period (missing data is not breaching)."""
    alarm = cloudwatch.Alarm(
        scope,
        id,
        alarm_description=description,
        metric=metric,
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    if alarm_topic is not None:
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))
    return alarm
