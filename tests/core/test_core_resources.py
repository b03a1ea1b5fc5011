from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template

from cdk_serverless_patterns.core import alarm_on_any, dead_letter_queue
from cdk_serverless_patterns.testing.checks import synth_with_checks


def test_dead_letter_queue_is_encrypted_tls_only_and_nag_clean(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Dlq")
    queue = dead_letter_queue(stack, "Dlq", dead_letter_of="the test's rule targets")
    topic = sns.Topic(stack, "Topic", enforce_ssl=True)
    alarm_on_any(
        stack,
        "Alarm",
        metric=queue.metric_approximate_number_of_messages_visible(),
        description="messages arrived",
        alarm_topic=topic,
    )
    sqs.Queue(stack, "Plain")  # the control: the same queue without the core defaults is flagged
    result = synth_with_checks(app)
    template = Template.from_json(result.templates["Dlq"])
    template.has_resource_properties(
        "AWS::SQS::Queue", {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 1209600}
    )
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": Match.string_like_regexp("Topic")}],
        },
    )
    assert {f.rule for f in result.nag_findings if f.path.startswith("Dlq/Plain/")} >= {
        "AwsSolutions-SQS3",
        "AwsSolutions-SQS4",
        "Serverless-SQSRedrivePolicy",
    }
    queue_findings = [f for f in result.nag_findings if f.path.startswith("Dlq/Dlq/")]
    assert not queue_findings, queue_findings
