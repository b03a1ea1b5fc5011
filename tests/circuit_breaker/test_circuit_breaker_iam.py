"""Least privilege of protected functions, enforced: the synthesized policy of a protected function,
attached to a role in moto with IAM authorization on, used through the role's own credentials.

What moto 5.2.5 enforces (read in ``moto/iam/access_control.py``, ``moto/core/authorization.py`` and
``moto/core/responses.py``) and what it does not:

- actions are enforced for DynamoDB: a call whose action no statement allows is ``AccessDenied``;
- resources are not: moto checks every DynamoDB request against the resource ``*`` (its DynamoDB
  responses name no resource), so a statement scoped to the table's ARN never matches and denies
  everything. The test therefore attaches the synthesized statements with the table's ARN replaced
  by ``*`` (asserting first that each names exactly the table): actions and conditions unchanged;
- conditions are evaluated only against request values moto collects, and it collects none for
  DynamoDB: ``dynamodb:LeadingKeys`` is ignored, so a write to another circuit passes in moto. The
  test that asserts AWS's answer is marked ``xfail(strict=True)``: when moto starts enforcing the
  condition, it passes, fails as XPASS, and the marker must go.

The condition itself is asserted on the template in ``test_circuit_breaker_construct.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aws_cdk as cdk
import boto3
import pytest
from aws_cdk import aws_lambda as lambda_
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication

from cdk_serverless_patterns.circuit_breaker import CircuitBreaker
from cdk_serverless_patterns.testing.moto import create_circuit_table

LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:circuit-breaker:7"
TABLE = "circuit-state"


@pytest.fixture(scope="module")
def refunds_policy() -> tuple[list[dict[str, Any]], str]:
    """The statements of a function protected for ``payments`` only, in a breaker of two circuits."""
    stack = cdk.Stack(cdk.App(), "Iam", env=cdk.Environment(account="123456789012", region="us-east-1"))
    breaker = CircuitBreaker(
        stack, "Breaker", existing_layer=lambda_.LayerVersion.from_layer_version_arn(stack, "Layer", LAYER_ARN)
    )
    breaker.add_circuit("payments", health_check_url="https://payments.example.com/health")
    breaker.add_circuit("inventory", health_check_url="https://inventory.example.com/health")
    refunds = lambda_.Function(
        stack,
        "Refunds",
        runtime=lambda_.Runtime.PYTHON_3_13,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return event\n"),
    )
    breaker.protect(refunds, circuits=["payments"])
    template = cdk.assertions.Template.from_stack(stack).to_json()
    role_id = stack.get_logical_id(refunds.role.node.default_child)  # type: ignore[union-attr]
    table_id = stack.get_logical_id(breaker.table.node.default_child)
    statements = [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]
    return statements, table_id


@pytest.fixture
def as_refunds(refunds_policy: tuple[list[dict[str, Any]], str]) -> Iterator[Any]:
    """A DynamoDB client with the credentials of a role carrying exactly the synthesized policy."""
    statements, table_id = refunds_policy
    with mock_aws():
        admin = boto3.client("dynamodb", region_name="us-east-1")
        create_circuit_table(admin, TABLE)
        for circuit_id in ("payments", "inventory"):
            admin.put_item(
                TableName=TABLE,
                Item={"circuitId": {"S": circuit_id}, "state": {"S": "CLOSED"}, "version": {"N": "1"}},
            )
        assert all(statement["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]} for statement in statements), statements
        # moto checks DynamoDB requests against the resource "*" only (see the module's docstring)
        document = {"Version": "2012-10-17", "Statement": [{**s, "Resource": "*"} for s in statements]}
        iam = boto3.client("iam", region_name="us-east-1")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = iam.create_role(RoleName="refunds", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        iam.put_role_policy(RoleName="refunds", PolicyName="synthesized", PolicyDocument=json.dumps(document))
        credentials = boto3.client("sts", region_name="us-east-1").assume_role(
            RoleArn=role["Arn"], RoleSessionName="refunds"
        )["Credentials"]
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        with enable_iam_authentication():
            yield client


def trip(client: Any, circuit_id: str) -> Any:
    """The extension's trip: a conditional UpdateItem of one circuit's item."""
    return client.update_item(
        TableName=TABLE,
        Key={"circuitId": {"S": circuit_id}},
        UpdateExpression="SET #state = :open, #version = :next",
        ConditionExpression="#version = :expected",
        ExpressionAttributeNames={"#state": "state", "#version": "version"},
        ExpressionAttributeValues={":open": {"S": "OPEN"}, ":next": {"N": "2"}, ":expected": {"N": "1"}},
        ReturnValues="ALL_NEW",
    )


def assert_access_denied(error: ClientError) -> None:
    """AWS answers a JSON error ``AccessDeniedException``; moto answers IAM's XML ``AccessDenied``,
    which botocore reads as the code "403": both are a 403 naming AccessDenied."""
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "AccessDenied" in str(error)


def test_the_function_reads_any_circuit_and_trips_its_own(as_refunds: Any) -> None:
    assert as_refunds.get_item(TableName=TABLE, Key={"circuitId": {"S": "inventory"}})["Item"]["state"]["S"] == "CLOSED"
    assert trip(as_refunds, "payments")["Attributes"]["state"]["S"] == "OPEN"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.scan(TableName=TABLE),
        lambda c: c.delete_item(TableName=TABLE, Key={"circuitId": {"S": "payments"}}),
        lambda c: c.put_item(TableName=TABLE, Item={"circuitId": {"S": "payments"}, "state": {"S": "CLOSED"}}),
        lambda c: c.delete_table(TableName=TABLE),
    ],
    ids=["scan", "delete-item", "put-item", "delete-table"],
)
def test_the_function_can_do_nothing_else_on_the_table(as_refunds: Any, call: Any) -> None:
    with pytest.raises(ClientError) as denied:
        call(as_refunds)
    assert_access_denied(denied.value)


@pytest.mark.xfail(
    strict=True,
    reason="moto 5.2.5 does not evaluate dynamodb:LeadingKeys (it collects no condition values for DynamoDB)",
)
def test_the_function_cannot_trip_a_circuit_it_is_not_protected_for(as_refunds: Any) -> None:
    with pytest.raises(ClientError) as denied:
        trip(as_refunds, "inventory")
    assert_access_denied(denied.value)
