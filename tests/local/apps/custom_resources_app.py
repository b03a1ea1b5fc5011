#!/usr/bin/env python3
"""The custom-resource tests' own CDK app: CDK's own custom resources, deployed with LocalCloud.

- stack ``CrStore``: a DynamoDB table with a fixed name, which outlives the other stack;
- stack ``CrResources`` (depends on ``CrStore``, refers to the table by name):
  - an S3 bucket with ``auto_delete_objects`` (CDK's Node.js ``Custom::S3AutoDeleteObjects``);
  - an ``AwsCustomResource`` (Node.js, ``Custom::AWS``) that puts an item into the table on Create
    and deletes it on Delete;
  - a ``Provider``-framework resource (the framework's Node.js function calls a Python onEvent
    handler) whose answer's ``Data`` becomes a stack output, typed ``AWS::CloudFormation::CustomResource``.

Context ``cr_fail=yes`` makes the Provider's onEvent fail on Create (the stack rolls back).
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import custom_resources as cr

HERE = Path(__file__).resolve().parent
TABLE = "cr-test-items"


def build_app() -> cdk.App:
    """The app, not synthesized."""
    app = cdk.App()
    fail = app.node.try_get_context("cr_fail") or "no"
    store = cdk.Stack(app, "CrStore")
    dynamodb.Table(
        store,
        "Items",
        table_name=TABLE,
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    stack = cdk.Stack(app, "CrResources")
    stack.add_dependency(store)

    bucket = s3.Bucket(stack, "Scratch", auto_delete_objects=True, removal_policy=cdk.RemovalPolicy.DESTROY)

    item = {"pk": {"S": "aws-custom-resource"}, "from": {"S": "AwsCustomResource"}}
    cr.AwsCustomResource(
        stack,
        "PutItem",
        install_latest_aws_sdk=False,
        on_create=cr.AwsSdkCall(
            service="DynamoDB",
            action="putItem",
            parameters={"TableName": TABLE, "Item": item},
            physical_resource_id=cr.PhysicalResourceId.of("put-item"),
        ),
        on_delete=cr.AwsSdkCall(
            service="DynamoDB",
            action="deleteItem",
            parameters={"TableName": TABLE, "Key": {"pk": item["pk"]}},
        ),
        policy=cr.AwsCustomResourcePolicy.from_sdk_calls(resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE),
    )

    on_event = lambda_.Function(
        stack,
        "OnEvent",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="provider_handler.on_event",
        code=lambda_.Code.from_asset(str(HERE / "custom_resources_functions")),
        timeout=cdk.Duration.seconds(30),
    )
    provider = cr.Provider(stack, "Provider", on_event_handler=on_event)
    resource = cdk.CustomResource(
        stack,
        "Doubler",
        service_token=provider.service_token,
        properties={"TableName": TABLE, "Size": 21, "Fail": fail},
    )
    cdk.CfnOutput(stack, "Answer", value=resource.get_att_string("Answer"))
    cdk.CfnOutput(stack, "DoublerId", value=resource.ref)
    cdk.CfnOutput(stack, "BucketName", value=bucket.bucket_name)
    return app


if __name__ == "__main__":
    build_app().synth()
