#!/usr/bin/env python3
"""Integration test of the callback pattern, for the CDK integ-runner and a real AWS account.

Two test-case stacks:

- the callback **sample stack** of ``integ/sample_callback.py``, unchanged: the assertions put a
  small document into its bucket, start its workflow and wait until Amazon Translate's real
  completion event has resumed it (the workflow succeeds with the job's ``COMPLETED`` status).
  Translate batch jobs take minutes, so this assertion waits up to 50 minutes.
- a **probe stack**: the same ``CallbackPattern`` with a job source whose events anyone may put
  (``aws.*`` sources cannot be put with PutEvents), and a tiny workflow that only waits for its job.
  The assertions drive the three paths of the pattern with ``events:PutEvents``:

  1. *wait, then event*: the workflow parks its task token (asserted in the token table), the
     completion event arrives, the workflow succeeds with the event's detail;
  2. *event before the wait step* (a fast job): the workflow starts, and while it still runs the
     work before its wait step (a ``Wait`` state of ``delaySeconds``), the completion event arrives
     and is recorded (asserted in the table); the wait step finds it and succeeds at once. (An event
     from *before* the execution started is a stale one of an earlier job with the same id, which
     the pattern drops by design: the event must follow the start.)
  3. *failure*: a ``FAILED`` event fails the parked workflow with ``integ.FAILED``.

Run it against an account with ``npx integ-runner --language python --directory integ`` once a
release of the runner reads this aws-cdk-lib's cloud assembly (schema 55; it stops at 53); the unit tests
synthesize it offline (tests/callback/test_callback_integ_app.py).
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.integ_tests_alpha import ExpectedResult, IApiCall, IntegTest, Match
from sample_callback import DESCRIPTION as SAMPLE_DESCRIPTION
from sample_callback import CallbackSampleStack

from cdk_serverless_patterns import CallbackPattern, JobSource
from cdk_serverless_patterns.core import acknowledge
from constructs import Construct

SAMPLE_STACK_ID = "IntegServerlessPatternsCallback"
PROBE_STACK_ID = "IntegServerlessPatternsCallbackProbe"
#: The probe's job source: events with this source and detail-type resume the probe workflow.
PROBE_EVENT_SOURCE = "cdk-serverless-patterns.integ"
PROBE_DETAIL_TYPE = "Integ Job State Change"
PROBE_NAMESPACE = "integ"
#: Job ids of the three probe paths (each run deploys fresh stacks, so fixed ids are unique).
JOB_WAIT_FIRST = "integ-wait-then-event"
JOB_EVENT_FIRST = "integ-event-then-wait"
JOB_FAILED = "integ-failed-job"
#: How long the probe workflow of path 2 works before its wait step: the event arrives in between.
EARLY_EVENT_DELAY_SECONDS = 120
TRANSLATE_INPUT_KEY = "input/integ.txt"


class CallbackProbeStack(cdk.Stack):
    """A CallbackPattern with a job source the test can put events for, and a workflow that only waits
    (after ``delaySeconds`` of its input, standing in for the work between starting a job and waiting)."""

    def __init__(self, scope: Construct, id: str, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.source = JobSource(
            namespace=PROBE_NAMESPACE,
            event_pattern={"source": [PROBE_EVENT_SOURCE], "detail-type": [PROBE_DETAIL_TYPE]},
            job_id_path="$.detail.jobId",
            status_path="$.detail.status",
            success_statuses=("SUCCEEDED",),
            failure_statuses=("FAILED",),
        )
        self.pattern = CallbackPattern(
            self, "Callback", sources=[self.source], removal_policy=cdk.RemovalPolicy.DESTROY
        )
        wait = self.pattern.wait_for_job(
            "Wait for job", source=self.source, job_id_path="$.jobId", timeout=cdk.Duration.minutes(30)
        )
        self.workflow = sfn.StateMachine(
            self,
            "Workflow",
            definition_body=sfn.DefinitionBody.from_chainable(
                sfn.Wait(self, "Job running", time=sfn.WaitTime.seconds_path("$.delaySeconds"))
                .next(wait)
                .next(sfn.Succeed(self, "Done"))
            ),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(
                    self,
                    "WorkflowLogs",
                    retention=logs.RetentionDays.ONE_WEEK,
                    removal_policy=cdk.RemovalPolicy.DESTROY,
                ),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,
            ),
            timeout=cdk.Duration.hours(1),
        )
        self.pattern.grant_wait(self.workflow)
        acknowledge(
            self.workflow,
            "X-Ray and CloudWatch Logs delivery of a state machine need Resource '*' (AWS forces these).",
            "AwsSolutions-IAM5[Resource::*]",
        )


def _put_job_event(integ: IntegTest, job_id: str, status: str) -> IApiCall:
    """PutEvents of one probe completion event; asserts EventBridge accepted it."""
    return integ.assertions.aws_api_call(
        "EventBridge",
        "putEvents",
        {
            "Entries": [
                {
                    "Source": PROBE_EVENT_SOURCE,
                    "DetailType": PROBE_DETAIL_TYPE,
                    "Detail": json.dumps({"jobId": job_id, "status": status, "answer": 42}),
                    "EventBusName": "default",
                }
            ]
        },
    ).expect(ExpectedResult.object_like({"FailedEntryCount": 0}))


def _record(integ: IntegTest, probe: CallbackProbeStack, job_id: str, kind: str) -> IApiCall:
    """Waits until the token table holds the job's record of ``kind`` (``token`` or ``completion``)."""
    return (
        integ.assertions.aws_api_call(
            "DynamoDB",
            "getItem",
            {
                "TableName": probe.pattern.table.table_name,
                "Key": {"id": {"S": f"{PROBE_NAMESPACE}#{job_id}"}},
                "ConsistentRead": True,
            },
        )
        .expect(ExpectedResult.object_like({"Item": {"kind": {"S": kind}}}))
        .wait_for_assertions(total_timeout=cdk.Duration.minutes(3), interval=cdk.Duration.seconds(5))
    )


def _start(integ: IntegTest, workflow: sfn.IStateMachine, execution_input: dict[str, Any]) -> IApiCall:
    return integ.assertions.aws_api_call(
        "StepFunctions",
        "startExecution",
        {"stateMachineArn": workflow.state_machine_arn, "input": json.dumps(execution_input)},
    )


def _execution_ends(
    integ: IntegTest, start: IApiCall, expected: dict[str, Any], *, total_timeout: cdk.Duration, interval: cdk.Duration
) -> IApiCall:
    """Polls DescribeExecution of ``start``'s execution until it matches ``expected``."""
    return (
        integ.assertions.aws_api_call(
            "StepFunctions", "describeExecution", {"executionArn": start.get_att_string("executionArn")}
        )
        .expect(ExpectedResult.object_like(expected))
        .wait_for_assertions(total_timeout=total_timeout, interval=interval)
    )


def add_probe_assertions(integ: IntegTest, probe: CallbackProbeStack) -> list[IApiCall]:
    """The three paths of the pattern, each a chain of API calls; returns the final assertion of each."""
    finals = []
    quick = {"total_timeout": cdk.Duration.minutes(5), "interval": cdk.Duration.seconds(5)}

    # 1. The workflow parks its token first; the event resumes it with the event's detail.
    start = _start(integ, probe.workflow, {"jobId": JOB_WAIT_FIRST, "delaySeconds": 0})
    start.next(_record(integ, probe, JOB_WAIT_FIRST, "token")).next(_put_job_event(integ, JOB_WAIT_FIRST, "SUCCEEDED"))
    done = _execution_ends(
        integ,
        start,
        {
            "status": "SUCCEEDED",
            "output": Match.serialized_json(
                Match.object_like({"jobId": JOB_WAIT_FIRST, "job": {"jobId": JOB_WAIT_FIRST, "answer": 42}})
            ),
        },
        **quick,
    )
    finals.append(done)

    # 2. The event comes before the wait step (a fast job): the completion is recorded, the wait finds it.
    late_start = _start(integ, probe.workflow, {"jobId": JOB_EVENT_FIRST, "delaySeconds": EARLY_EVENT_DELAY_SECONDS})
    late_start.next(_put_job_event(integ, JOB_EVENT_FIRST, "SUCCEEDED")).next(
        _record(integ, probe, JOB_EVENT_FIRST, "completion")
    )
    finals.append(
        _execution_ends(
            integ,
            late_start,
            {"status": "SUCCEEDED", "output": Match.serialized_json(Match.object_like({"job": {"answer": 42}}))},
            **quick,
        )
    )

    # 3. A failure status fails the parked workflow with "<namespace>.<status>".
    failing = _start(integ, probe.workflow, {"jobId": JOB_FAILED, "delaySeconds": 0})
    failing.next(_record(integ, probe, JOB_FAILED, "token")).next(_put_job_event(integ, JOB_FAILED, "FAILED"))
    finals.append(_execution_ends(integ, failing, {"status": "FAILED", "error": f"{PROBE_NAMESPACE}.FAILED"}, **quick))
    return finals


def add_sample_assertions(integ: IntegTest, sample: CallbackSampleStack) -> IApiCall:
    """End to end through Amazon Translate: document in, workflow resumed by Translate's own event."""
    put_document = integ.assertions.aws_api_call(
        "S3",
        "putObject",
        {
            "Bucket": sample.bucket.bucket_name,
            "Key": TRANSLATE_INPUT_KEY,
            "Body": "The integration test asks for a translation of this sentence.",
            "ContentType": "text/plain",
        },
    )
    start = _start(integ, sample.workflow, {"sourceLanguage": "en", "targetLanguages": ["de"]})
    put_document.next(start)
    return _execution_ends(
        integ,
        start,
        {
            "status": "SUCCEEDED",
            "output": Match.serialized_json(Match.object_like({"job": {"jobStatus": "COMPLETED"}})),
        },
        total_timeout=cdk.Duration.minutes(50),
        interval=cdk.Duration.minutes(1),
    )


def build_app(outdir: str | None = None) -> cdk.App:
    """The integration-test app (sample stack, probe stack, assertion stack), without synthesizing it."""
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    # Environment-agnostic, like the assertion stack IntegTest adds: the assertions refer to the test
    # cases' resources, which CDK allows only within one environment; the runner picks account and region.
    sample = CallbackSampleStack(app, SAMPLE_STACK_ID)
    sample.template_options.description = f"{SAMPLE_DESCRIPTION} (integration test)"
    probe = CallbackProbeStack(
        app, PROBE_STACK_ID, description="cdk-serverless-patterns: callback probe (integration test)"
    )
    integ = IntegTest(app, "CallbackInteg", test_cases=[sample, probe], regions=["us-east-1"])
    add_probe_assertions(integ, probe)
    add_sample_assertions(integ, sample)
    return app


if __name__ == "__main__":
    build_app().synth()
