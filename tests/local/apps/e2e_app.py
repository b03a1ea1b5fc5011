#!/usr/bin/env python3
"""The LocalCloud tests' own CDK app: one stack with every path the emulator moves events on.

- ``GET /items/{id}`` of a REST API behind a Lambda TOKEN authorizer (front door);
- an EventBridge rule -> a function, through an input transformer, with a retry policy and a
  dead-letter queue on the target, and an on-failure destination on the function;
- an SQS queue -> a function (batch size 5, partial batch failures);
- an EventBridge Scheduler schedule -> a function, ``rate(1 minute)``;
- a layer shared by the functions (moto's CloudFormation drops function layers);
- a CloudWatch alarm (a type moto's CloudFormation skips).

Context ``e2e_stack`` names the stack (default ``LocalCloudE2E``); ``e2e_broken=1`` adds a
resource moto's CloudFormation refuses, so the deployment fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs

HERE = Path(__file__).resolve().parent
EVENT_SOURCE = "e2e.orders"


def build_app(outdir: str | None = None) -> cdk.App:
    """The app, not synthesized."""
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    name = app.node.try_get_context("e2e_stack") or "LocalCloudE2E"
    stack = cdk.Stack(app, name)

    table = dynamodb.Table(
        stack,
        "Items",
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    layer = lambda_.LayerVersion(
        stack,
        "Shared",
        code=lambda_.Code.from_asset(str(HERE / "e2e_layer")),
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
    )
    failures = sqs.Queue(stack, "Failures")

    def function(construct_id: str, handler: str, **extra: object) -> lambda_.Function:
        fn = lambda_.Function(
            stack,
            construct_id,
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler=f"handlers.{handler}",
            code=lambda_.Code.from_asset(str(HERE / "e2e_functions")),
            layers=[layer],
            timeout=cdk.Duration.seconds(10),
            environment={"TABLE_NAME": table.table_name},
            **extra,  # type: ignore[arg-type]
        )
        table.grant_read_write_data(fn)
        return fn

    # REST API behind a TOKEN authorizer.
    authorizer_fn = function("Authorizer", "authorize")
    api_fn = function("Api", "api")
    api = apigw.RestApi(stack, "Rest", deploy_options=apigw.StageOptions(stage_name="test"))
    authorizer = apigw.TokenAuthorizer(stack, "Token", handler=authorizer_fn, results_cache_ttl=cdk.Duration.seconds(0))
    api.root.add_resource("items").add_resource("{id}").add_method(
        "GET", apigw.LambdaIntegration(api_fn), authorizer=authorizer
    )

    # EventBridge rule -> function, through an input transformer; async failures -> Failures.
    event_fn = function("OnEvent", "on_event", on_failure=destinations.SqsDestination(failures), retry_attempts=1)
    rule_dlq = sqs.Queue(stack, "RuleDeadLetters")
    events.Rule(
        stack,
        "Orders",
        event_pattern=events.EventPattern(source=[EVENT_SOURCE]),
        targets=[
            targets.LambdaFunction(
                event_fn,
                event=events.RuleTargetInput.from_object(
                    {
                        "orderId": events.EventField.from_path("$.detail.id"),
                        "kind": events.EventField.detail_type,
                        "rule": "<aws.events.rule-name>",
                    }
                ),
                retry_attempts=2,
                max_event_age=cdk.Duration.minutes(5),
                dead_letter_queue=rule_dlq,
            )
        ],
    )

    # SQS -> function.
    messages = sqs.Queue(stack, "Messages", visibility_timeout=cdk.Duration.seconds(30))
    message_fn = function("OnMessage", "on_message")
    message_fn.add_event_source(sources.SqsEventSource(messages, batch_size=5, report_batch_item_failures=True))

    # Scheduler -> function.
    schedule_fn = function("OnSchedule", "on_schedule")
    schedule_role = iam.Role(stack, "ScheduleRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"))
    schedule_fn.grant_invoke(schedule_role)
    scheduler.CfnSchedule(
        stack,
        "Every",
        schedule_expression="rate(1 minute)",
        flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
        target=scheduler.CfnSchedule.TargetProperty(
            arn=schedule_fn.function_arn,
            role_arn=schedule_role.role_arn,
            input=json.dumps({"from": "schedule", "at": "<aws.scheduler.scheduled-time>"}),
        ),
    )

    cloudwatch.Alarm(
        stack,
        "Backlog",
        metric=messages.metric_approximate_number_of_messages_visible(),
        threshold=10,
        evaluation_periods=1,
    )

    if app.node.try_get_context("e2e_broken"):
        # moto's CloudFormation refuses a table whose key attribute is not defined.
        dynamodb.CfnTable(
            stack,
            "Broken",
            key_schema=[dynamodb.CfnTable.KeySchemaProperty(attribute_name="missing", key_type="HASH")],
            attribute_definitions=[],
            billing_mode="PAY_PER_REQUEST",
        )

    cdk.CfnOutput(stack, "TableName", value=table.table_name)
    cdk.CfnOutput(stack, "QueueUrl", value=messages.queue_url)
    cdk.CfnOutput(stack, "FailuresUrl", value=failures.queue_url)
    cdk.CfnOutput(stack, "RuleDeadLettersUrl", value=rule_dlq.queue_url)
    cdk.CfnOutput(stack, "EventFunctionArn", value=event_fn.function_arn)
    cdk.CfnOutput(stack, "ApiUrl", value=api.url)
    cdk.CfnOutput(stack, "RestApiId", value=api.rest_api_id)
    return app


if __name__ == "__main__":
    build_app().synth()
