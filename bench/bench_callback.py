#!/usr/bin/env python3
"""Callback pattern vs a Wait/Poll/Choice loop: state transitions and cost of one 15-minute job.

Both workflows are synthesized with CDK and run for real in moto's Step Functions interpreter
(with the local bridges); the counts come from the execution histories.

- **Pattern**: start job -> ``CallbackPattern.wait_for_job`` -> tag outputs; the completion event
  goes through EventBridge to the EXPRESS resumer, which resumes the workflow.
- **Baseline**: start job -> Wait 60 s -> Poll -> Choice (done?) -> ... -> tag outputs. A job of
  15 minutes polled every minute is seen done on the 15th poll: the poll task (a DynamoDB
  UpdateItem counting polls, standing in for DescribeTextTranslationJob) reports COMPLETED on
  its 15th call. The wait interval is read from the input so that the run takes seconds, not
  15 minutes; the transitions are the same.

Prices (us-east-1, on-demand): Standard workflows $0.025 per 1,000 state transitions; Express
$1.00 per million requests plus $0.00001667 per GB-second, billed in 100 ms steps at 64 MB;
DynamoDB on-demand $0.625 per million write and $0.125 per million read request units. A state
transition is counted for every state entered (the ``*StateEntered`` history events). Express
cannot run the baseline (an Express execution lasts at most 5 minutes and has no callbacks), so
the baseline is priced as Standard only; the pattern's waiting workflow is Standard and its
resumer Express.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_DEPRECATED", "quiet")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "constructs"))

JOB_MINUTES = 15
POLL_EVERY_SECONDS = 60
STANDARD_PER_TRANSITION = 0.025 / 1000
EXPRESS_PER_REQUEST = 1.00 / 1_000_000
EXPRESS_PER_GB_SECOND = 0.00001667
EXPRESS_MEMORY_GB = 64 / 1024
DDB_PER_WRITE = 0.625 / 1_000_000
DDB_PER_READ = 0.125 / 1_000_000


def build() -> dict[str, Any]:
    import aws_cdk as cdk
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk import aws_stepfunctions_tasks as tasks

    from cdk_serverless_patterns import CallbackPattern, JobSource

    app = cdk.App()
    stack = cdk.Stack(app, "CallbackBench")
    translate = JobSource.translate_text_translation_job()
    pattern = CallbackPattern(stack, "Callback", sources=[translate])

    def start(name: str) -> sfn.Pass:
        return sfn.Pass(stack, f"{name} start job", parameters={"JobId.$": "$.jobId"}, result_path="$.started")

    def tag(name: str) -> sfn.Pass:
        return sfn.Pass(stack, f"{name} tag outputs", parameters={"status.$": "$.job"}, result_path="$.tags")

    wait = pattern.wait_for_job(
        "Wait for job", source=translate, job_id_path="$.started.JobId", timeout=cdk.Duration.hours(1)
    )
    pattern_flow = sfn.StateMachine(
        stack, "PatternFlow", definition_body=sfn.DefinitionBody.from_chainable(start("P").next(wait).next(tag("P")))
    )
    pattern.grant_wait(pattern_flow)

    jobs = dynamodb.Table(
        stack, "Jobs", partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING)
    )
    poll_wait = sfn.Wait(stack, "Wait a minute", time=sfn.WaitTime.seconds_path("$.pollIntervalSeconds"))
    poll = tasks.CallAwsService(
        stack,
        "Poll job status",
        service="dynamodb",
        action="updateItem",
        parameters={
            "TableName": jobs.table_name,
            "Key": {"id": {"S.$": "$.started.JobId"}},
            "UpdateExpression": "ADD polls :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
            "ReturnValues": "ALL_NEW",
        },
        iam_resources=[jobs.table_arn],
        result_selector={"polls.$": "$.Attributes.polls.N"},
        result_path="$.job",
    )
    done = sfn.Choice(stack, "Job done?")
    loop = poll_wait.next(poll).next(
        done.when(sfn.Condition.string_equals("$.job.polls", str(JOB_MINUTES)), tag("L")).otherwise(poll_wait)
    )
    sfn.StateMachine(stack, "PollingFlow", definition_body=sfn.DefinitionBody.from_chainable(start("L").next(loop)))
    return dict(app.synth().get_stack_by_name("CallbackBench").template)


def transitions(history: list[dict[str, Any]]) -> int:
    return sum(1 for event in history if event["type"].endswith("StateEntered"))


def history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    return [event for page in pages for event in page["events"]]


def finish(sfn: Any, arn: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.02)
    raise RuntimeError(f"{arn} did not finish in {timeout} s")


def main() -> int:
    from cdk_serverless_patterns.local import emulator

    template = build()
    with emulator() as aws:
        session = aws.session
        deployment = aws.deploy(template)
        sfn = session.client("stepfunctions")
        events = session.client("events")
        dynamodb = session.client("dynamodb")
        machine = "AWS::StepFunctions::StateMachine"
        pattern_arn = deployment.arn(deployment.find(template, machine, "PatternFlow"))
        polling_arn = deployment.arn(deployment.find(template, machine, "PollingFlow"))
        resumer_arn = deployment.arn(deployment.find(template, machine, "CallbackResumer"))
        token_table = deployment.ref(deployment.find(template, "AWS::DynamoDB::Table", "CallbackTable"))

        # The pattern: start, park, one completion event, resume.
        run = sfn.start_execution(stateMachineArn=pattern_arn, name="pattern", input=json.dumps({"jobId": "j-1"}))
        deadline = time.monotonic() + 30
        while not dynamodb.scan(TableName=token_table)["Items"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the wait step never parked its token")
            time.sleep(0.02)
        events.put_events(
            Entries=[
                {
                    "Source": "aws.translate",
                    "DetailType": "Translate TextTranslationJob State Change",
                    "Detail": json.dumps({"jobId": "j-1", "jobStatus": "COMPLETED"}),
                }
            ]
        )
        pattern_result = finish(sfn, run["executionArn"])
        pattern_transitions = transitions(history(sfn, run["executionArn"]))
        deadline = time.monotonic() + 30
        while True:
            resumes = sfn.list_executions(stateMachineArn=resumer_arn)["executions"]
            if resumes and all(r["status"] != "RUNNING" for r in resumes):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the resumer did not finish")
            time.sleep(0.02)
        resumer = sfn.describe_execution(executionArn=resumes[0]["executionArn"])
        resumer_seconds = (resumer["stopDate"] - resumer["startDate"]).total_seconds()
        resumer_history = history(sfn, resumes[0]["executionArn"])
        resumer_transitions = transitions(resumer_history)

        # The baseline: poll every "minute" until the 15th poll says the job is done.
        run = sfn.start_execution(
            stateMachineArn=polling_arn, name="polling", input=json.dumps({"jobId": "j-2", "pollIntervalSeconds": 0})
        )
        polling_result = finish(sfn, run["executionArn"])
        polling_transitions = transitions(history(sfn, run["executionArn"]))

    assert pattern_result["status"] == "SUCCEEDED", pattern_result
    assert polling_result["status"] == "SUCCEEDED", polling_result
    # Express duration is billed in 100 ms steps; moto's interpreter is slower than the service,
    # so this overstates the resumer's cost.
    billed_seconds = max(0.1, math.ceil(resumer_seconds * 10) / 10)
    resumer_cost = EXPRESS_PER_REQUEST + billed_seconds * EXPRESS_MEMORY_GB * EXPRESS_PER_GB_SECOND
    # DynamoDB: the wait step's PutItem; the resumer's GetItem (strongly consistent), claim
    # UpdateItem and the PutItem of the "resumed" marker (items well under 1 KB).
    dynamodb_cost = 3 * DDB_PER_WRITE + 1 * DDB_PER_READ
    pattern_cost = pattern_transitions * STANDARD_PER_TRANSITION + resumer_cost + dynamodb_cost
    polling_cost = polling_transitions * STANDARD_PER_TRANSITION
    saving = 1 - pattern_cost / polling_cost
    fixed = 2  # "start job" and "tag outputs", in both workflows
    wait_pattern = (pattern_transitions - fixed) * STANDARD_PER_TRANSITION + resumer_cost + dynamodb_cost
    wait_polling = (polling_transitions - fixed) * STANDARD_PER_TRANSITION

    print(f"one {JOB_MINUTES}-minute job, polled every {POLL_EVERY_SECONDS} s in the baseline (moto executions)")
    print(f"  baseline Wait/Poll/Choice (Standard): {polling_transitions} state transitions")
    print(f"  callback pattern workflow (Standard): {pattern_transitions} state transitions")
    print(
        f"  callback resumer (Express):           1 request, {resumer_transitions} states, "
        f"{resumer_seconds * 1000:.0f} ms in moto (billed {billed_seconds:.1f} s at 64 MB)"
    )
    print(f"  transition ratio (baseline / pattern): {polling_transitions / pattern_transitions:.1f}x")
    print(f"  cost per job, baseline:  ${polling_cost:.8f}  (${polling_cost * 1e6:,.2f} per million jobs)")
    print(
        f"  cost per job, pattern:   ${pattern_cost:.8f}  (${pattern_cost * 1e6:,.2f} per million jobs: "
        f"Standard ${pattern_transitions * STANDARD_PER_TRANSITION * 1e6:,.2f}, Express ${resumer_cost * 1e6:,.2f}, "
        f"DynamoDB ${dynamodb_cost * 1e6:,.2f})"
    )
    print(f"  saving, whole workflow:          {saving:.1%}  (target >= 95%; the seeds claimed about 87%)")
    print(
        f"  saving, waiting part only:       {1 - wait_pattern / wait_polling:.1%}  (without start job and tag outputs)"
    )
    print(f"  cost ratio (baseline / pattern): {polling_cost / pattern_cost:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
