"""Sample-only CloudFormation custom resource: seeds the tenant registry with conditional writes.

A plain Lambda-backed custom resource (no provider framework, so it runs on the Python runtime the
local emulator runs too): on Create and Update it puts each tenant of ``Tenants`` (``{id: plan}``) as
ACTIVE unless the tenant exists (``attribute_not_exists``: an operator's later suspension is never
overwritten); on Delete it keeps the items (the registry is retained). It always answers
CloudFormation through the pre-signed ``ResponseURL`` within a bounded time, FAILED with the reason
on any error, so a stack never hangs on it.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

_DYNAMODB = boto3.client("dynamodb", config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3}))


def _answer(event: dict[str, Any], context: Any, status: str, reason: str, data: dict[str, Any]) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000],
            "PhysicalResourceId": event.get("PhysicalResourceId") or f"tenancy-seed-{event['LogicalResourceId']}",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def seed(table: str, tenants: dict[str, str]) -> dict[str, str]:
    """Puts each tenant as ACTIVE with its plan unless it exists; returns tenant -> created|kept."""
    outcome = {}
    for tenant, plan in sorted(tenants.items()):
        try:
            _DYNAMODB.put_item(
                TableName=table,
                Item={"tenantId": {"S": tenant}, "status": {"S": "ACTIVE"}, "plan": {"S": plan}},
                ConditionExpression="attribute_not_exists(tenantId)",
            )
            outcome[tenant] = "created"
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            outcome[tenant] = "kept"
    return outcome


def handler(event: dict[str, Any], context: Any) -> None:
    """The custom resource's handler: never leaves CloudFormation waiting."""
    try:
        data: dict[str, Any] = {}
        if event["RequestType"] in ("Create", "Update"):
            properties = event["ResourceProperties"]
            data = seed(properties["TableName"], dict(properties["Tenants"]))
        _answer(event, context, "SUCCESS", "seeded", data)
    except Exception as error:  # any failure is FAILED with its reason, never a hung stack
        _answer(event, context, "FAILED", f"{type(error).__name__}: {error}", {})
