"""``emulator()``: patches installed, moto entered with executing state machines, a fresh state each time."""

from __future__ import annotations

import json
import time

from cdk_serverless_patterns.local import Emulator, emulator, patches
from cdk_serverless_patterns.local.deploy import Deployment


def test_emulator_yields_a_session_and_deploy() -> None:
    template = {"Resources": {"Jobs": {"Type": "AWS::SQS::Queue"}}}
    with emulator() as aws:
        assert isinstance(aws, Emulator) and patches.installed()
        assert aws.region == aws.session.region_name == "us-east-1"
        deployment = aws.deploy(template, prefix="a-")
        assert isinstance(deployment, Deployment)
        assert aws.session.client("sqs").list_queues()["QueueUrls"] == [deployment.ref("Jobs")]
    with emulator(region="eu-west-1") as aws:
        assert aws.session.client("sqs").list_queues().get("QueueUrls", []) == []  # state starts empty
        assert aws.deploy(template).ref("Jobs").startswith("https://sqs.eu-west-1.")


def test_state_machines_execute(aws: Emulator) -> None:
    sfn = aws.session.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="m",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"ran": 1}, "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=machine, name="r")["executionArn"]
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=run))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert json.loads(described["output"]) == {"ran": 1}
