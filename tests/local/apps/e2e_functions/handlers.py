"""The e2e app's functions: each writes what it received to the table through the layer's helper."""

from __future__ import annotations

import json
from typing import Any

import e2e_shared  # from the layer (/opt/python)


def authorize(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """TOKEN authorizer: 'allow-<tenant>' is allowed, anything else denied; 'boom' raises Unauthorized."""
    token = event.get("authorizationToken", "")
    if token == "boom":
        raise Exception("Unauthorized")
    effect = "Allow" if token.startswith("allow-") else "Deny"
    return {
        "principalId": "user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}],
        },
        "context": {"tenant": token.removeprefix("allow-")},
    }


def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """GET /items/{id}: stores and returns the request's id and the authorizer's tenant."""
    item_id = event["pathParameters"]["id"]
    tenant = event["requestContext"]["authorizer"]["tenant"]
    e2e_shared.put(f"api#{item_id}", tenant=tenant)
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"id": item_id, "tenant": tenant}),
    }


def on_event(event: dict[str, Any], context: Any) -> None:
    """EventBridge target (through an input transformer); an order 'fail' raises."""
    if event.get("orderId") == "fail":
        raise RuntimeError("order fail refused")
    e2e_shared.put(f"event#{event['orderId']}", payload=json.dumps(event, sort_keys=True))


def on_message(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batch: stores each body; a body 'poison' is reported as a batch item failure."""
    failures = []
    for record in event["Records"]:
        if record["body"] == "poison":
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        e2e_shared.put(
            f"message#{record['body']}",
            batch=len(event["Records"]),
            receive=record["attributes"]["ApproximateReceiveCount"],
        )
    return {"batchItemFailures": failures}


def on_schedule(event: dict[str, Any], context: Any) -> None:
    """Scheduler target: counts its runs."""
    e2e_shared.table().update_item(
        Key={"pk": "schedule"},
        UpdateExpression="ADD runs :one SET lastInput = :input",
        ExpressionAttributeValues={":one": 1, ":input": json.dumps(event, sort_keys=True)},
    )
