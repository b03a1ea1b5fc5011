"""DynamoDB TTL, on demand: moto never expires items.

Measured on moto 5.2.5: ``UpdateTimeToLive`` is recorded but nothing is ever deleted. DynamoDB
deletes an item some time (typically within days) after the epoch-seconds Number in the table's TTL
attribute has passed. A test cannot wait for that, so it calls :func:`expire_items` at the moment it
wants TTL to have run.
"""

from __future__ import annotations

import base64
import time
from typing import Any


def _key_text(value: dict[str, Any]) -> str:
    """A key attribute's value as text: S and N as they are, B in base64 (as DynamoDB JSON shows it)."""
    ((kind, scalar),) = value.items()
    if kind == "B":
        return base64.b64encode(scalar).decode()
    return str(scalar)


def ttl_attribute(dynamodb: Any, table_name: str) -> str:
    """The table's TTL attribute; ``ValueError`` when TTL is not enabled on it."""
    description = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    if description.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or "AttributeName" not in description:
        raise ValueError(
            f"TTL is not enabled on table {table_name!r} (status {description.get('TimeToLiveStatus')}): "
            "enable it (UpdateTimeToLive) or pass attribute="
        )
    return str(description["AttributeName"])


def expire_items(
    dynamodb: Any, table_name: str, *, now: float | None = None, attribute: str | None = None
) -> list[str | tuple[str, str]]:
    """Deletes the items whose TTL attribute (a Number of epoch seconds) lies before ``now``
    (default: the current time), as DynamoDB TTL would. ``dynamodb`` is a boto3 DynamoDB client;
    ``attribute`` defaults to the table's TTL attribute (``DescribeTimeToLive``). The delete key
    comes from the table's key schema.

    Returns the expired items' keys, in scan order: the partition key's value (text) for a table
    with a partition key only, ``(partition, sort)`` for a composite key.
    """
    moment = time.time() if now is None else now
    name = attribute if attribute is not None else ttl_attribute(dynamodb, table_name)
    schema = dynamodb.describe_table(TableName=table_name)["Table"]["KeySchema"]
    key_names = [k["AttributeName"] for k in sorted(schema, key=lambda k: k["KeyType"] != "HASH")]
    expired = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table_name):
        for item in page["Items"]:
            value = item.get(name, {}).get("N")
            if value is not None and float(value) < moment:
                expired.append({k: item[k] for k in key_names})
    keys: list[str | tuple[str, str]] = []
    for key in expired:
        dynamodb.delete_item(TableName=table_name, Key=key)
        texts = [_key_text(key[k]) for k in key_names]
        keys.append(texts[0] if len(texts) == 1 else (texts[0], texts[1]))
    return keys
