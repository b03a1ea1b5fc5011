"""``deploy_template`` creates each supported resource type in moto, resolving intrinsics."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdk_serverless_patterns.local import ACCOUNT, Deployment, Emulator
from cdk_serverless_patterns.local.deploy import OTHER, RESOURCE_TYPES

REGION = "us-east-1"


def _template() -> dict[str, Any]:
    """One resource of every supported type, referencing each other as CDK templates do."""
    definition = {
        "StartAt": "Put",
        "States": {
            "Put": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": {"TableName": "__TABLE__", "Item": {"pk": {"S.$": "$.id"}}},
                "End": True,
            }
        },
    }
    before, after = json.dumps(definition).split("__TABLE__")
    return {
        "Resources": {
            "JobsTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "BillingMode": "PAY_PER_REQUEST",
                    "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
                },
            },
            "DeadLetters": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "MachineRole": {"Type": "AWS::IAM::Role", "Properties": {}},
            "Assets": {"Type": "AWS::S3::Bucket"},
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": {"Fn::GetAtt": ["MachineRole", "Arn"]},
                    "DefinitionString": {"Fn::Join": ["", [before, {"Ref": "JobsTable"}, after]]},
                },
            },
            "OnJob": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "EventPattern": {"source": ["com.example.jobs"]},
                    "Targets": [
                        {
                            "Id": "Target0",
                            "Arn": {"Ref": "Machine"},
                            "RoleArn": {"Fn::GetAtt": ["MachineRole", "Arn"]},
                            "InputPath": "$.detail",
                            "DeadLetterConfig": {"Arn": {"Fn::GetAtt": ["DeadLetters", "Arn"]}},
                        }
                    ],
                },
            },
            "Alarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {"Dimensions": [{"Value": {"Fn::GetAtt": ["DeadLetters", "QueueName"]}}]},
            },
        }
    }


def test_names_and_arns_per_type(aws: Emulator) -> None:
    deployment = aws.deploy(_template(), prefix="T-")
    assert deployment.refs == {
        "JobsTable": "T-JobsTable",
        "DeadLetters": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/T-DeadLetters",
        "MachineRole": "T-MachineRole",
        "Assets": "t-assets",
        "Machine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:T-Machine",
        "OnJob": "T-OnJob",
        "Alarm": "T-Alarm",
    }
    assert deployment.arns == {
        "JobsTable": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/T-JobsTable",
        "DeadLetters": f"arn:aws:sqs:{REGION}:{ACCOUNT}:T-DeadLetters",
        "MachineRole": f"arn:aws:iam::{ACCOUNT}:role/T-MachineRole",
        "Assets": "arn:aws:s3:::t-assets",
        "Machine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:T-Machine",
        "OnJob": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:OnJob",
        "Alarm": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:Alarm",
    }


def test_each_supported_type_is_created(aws: Emulator) -> None:
    deployment = aws.deploy(_template())
    session = aws.session
    dynamodb = session.client("dynamodb")
    table = dynamodb.describe_table(TableName="JobsTable")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamodb.describe_time_to_live(TableName="JobsTable")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}

    assert session.client("sqs").get_queue_url(QueueName="DeadLetters")["QueueUrl"].endswith("/DeadLetters")

    sfn = session.client("stepfunctions")
    machine = sfn.describe_state_machine(stateMachineArn=deployment.arn("Machine"))
    assert machine["roleArn"] == deployment.arn("MachineRole")
    assert json.loads(machine["definition"])["States"]["Put"]["Parameters"]["TableName"] == "JobsTable"
    assert machine["type"] == "STANDARD"

    events = session.client("events")
    assert json.loads(events.describe_rule(Name="OnJob")["EventPattern"]) == {"source": ["com.example.jobs"]}
    (target,) = events.list_targets_by_rule(Rule="OnJob")["Targets"]
    assert target["Arn"] == deployment.arn("Machine")
    assert target["DeadLetterConfig"] == {"Arn": deployment.arn("DeadLetters")}


def test_the_deployed_stack_runs(aws: Emulator) -> None:
    """An event reaches the rule's state machine, which writes to the table: names resolved end to end."""
    import time

    aws.deploy(_template())
    entry = {"Source": "com.example.jobs", "DetailType": "Job", "Detail": json.dumps({"id": "j-1"})}
    aws.session.client("events").put_events(Entries=[entry])
    dynamodb = aws.session.client("dynamodb")
    deadline = time.monotonic() + 30
    while not dynamodb.scan(TableName="JobsTable")["Items"]:
        assert time.monotonic() < deadline, "the state machine never wrote its item"
        time.sleep(0.02)
    assert dynamodb.scan(TableName="JobsTable")["Items"] == [{"pk": {"S": "j-1"}}]


def test_long_names_are_cut_to_80_characters(aws: Emulator) -> None:
    template = {"Resources": {"Q" * 90: {"Type": "AWS::SQS::Queue"}}}
    deployment = aws.deploy(template, prefix="p-")
    assert deployment.refs["Q" * 90].rsplit("/", 1)[1] == ("p-" + "Q" * 90)[:80]


def test_every_registered_type_names_its_resources() -> None:
    for kind in [*RESOURCE_TYPES.values(), OTHER]:
        ref, arn = kind.names("Logical", "prefix-Logical", "eu-west-1")
        assert ref and arn.startswith("arn:aws:")
    creatable = {name for name, kind in RESOURCE_TYPES.items() if kind.create is not None}
    assert creatable == {
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::StepFunctions::StateMachine",
        "AWS::Events::EventBus",
        "AWS::Events::Rule",
    }
    order = {name: RESOURCE_TYPES[name].order for name in creatable}
    assert order["AWS::DynamoDB::Table"] < order["AWS::StepFunctions::StateMachine"] < order["AWS::Events::Rule"]
    assert order["AWS::Events::EventBus"] < order["AWS::Events::Rule"]  # a rule needs its bus


def test_find_names_the_one_matching_logical_id() -> None:
    template = _template()
    deployment = Deployment()
    assert deployment.find(template, "AWS::SQS::Queue") == "DeadLetters"
    assert deployment.find(template, "AWS::StepFunctions::StateMachine", "Mach") == "Machine"
    with pytest.raises(LookupError):
        deployment.find(template, "AWS::Lambda::Function")
