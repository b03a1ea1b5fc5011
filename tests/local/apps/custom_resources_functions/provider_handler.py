"""onEvent of a custom-resources Provider: records every request in the table named by the properties."""

from __future__ import annotations

from typing import Any

import boto3


def on_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    props = event["ResourceProperties"]
    kind = event["RequestType"]
    boto3.client("dynamodb").put_item(
        TableName=props["TableName"],
        Item={"pk": {"S": f"provider-{kind.lower()}"}, "size": {"S": props["Size"]}},
    )
    if props.get("Fail") == "yes" and kind == "Create":
        raise RuntimeError("the provider refused on purpose")
    return {"PhysicalResourceId": f"provider-{props['Size']}", "Data": {"Answer": str(int(props["Size"]) * 2)}}
