#!/usr/bin/env python3
"""The sample app: one stack per pattern, all in one app.

``cdk.json`` runs this file; the tests, ``make demo`` and ``serverless-patterns`` call ``build_app``.
"""

from __future__ import annotations

import os

import aws_cdk as cdk
from sample_callback import CallbackSampleStack
from sample_circuit_breaker import add_circuit_breaker_stack

STACK_PREFIX = "ServerlessPatterns"


def build_app(outdir: str | None = None) -> cdk.App:
    """Builds the sample app, without synthesizing it."""
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION"),
    )
    core_stack = cdk.Stack(app, f"{STACK_PREFIX}Core", env=env, description="cdk-serverless-patterns: shared core")
    _core_resources(core_stack)
    add_circuit_breaker_stack(app, env)
    CallbackSampleStack(app, f"{STACK_PREFIX}Callback", env=env, description="cdk-serverless-patterns: callback sample")
    return app


def _core_resources(stack: cdk.Stack) -> None:
    """Until the pattern stacks land: the topic the patterns' alarms will notify, encrypted with a key
    that CloudWatch may use (alarm actions cannot publish to a topic under the AWS-managed SNS key)."""
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_sns as sns

    key = kms.Key(stack, "AlarmTopicKey", enable_key_rotation=True, description="Encrypts the alarm topic")
    key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
    topic = sns.Topic(stack, "AlarmTopic", display_name="Serverless patterns alarms", enforce_ssl=True, master_key=key)
    cdk.CfnOutput(stack, "AlarmTopicArn", value=topic.topic_arn, description="Where the patterns' alarms notify")


if __name__ == "__main__":
    build_app().synth()
