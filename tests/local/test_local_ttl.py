"""``expire_items`` deletes what DynamoDB TTL would, whatever the table's key."""

from __future__ import annotations

from typing import Any

import pytest

from cdk_serverless_patterns.local import Emulator, expire_items

NOW = 1_700_000_000


def _table(aws: Emulator, name: str, keys: list[tuple[str, str, str]], ttl: str | None) -> Any:
    dynamodb = aws.session.client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": role} for key, role, _ in keys],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": kind} for key, _, kind in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    if ttl:
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"AttributeName": ttl, "Enabled": True})
    return dynamodb


def test_table_keyed_by_something_other_than_id(aws: Emulator) -> None:
    dynamodb = _table(aws, "circuits", [("circuitId", "HASH", "S")], ttl="expiresAt")
    dynamodb.put_item(TableName="circuits", Item={"circuitId": {"S": "old"}, "expiresAt": {"N": str(NOW - 1)}})
    dynamodb.put_item(TableName="circuits", Item={"circuitId": {"S": "new"}, "expiresAt": {"N": str(NOW + 60)}})
    dynamodb.put_item(TableName="circuits", Item={"circuitId": {"S": "forever"}})
    dynamodb.put_item(TableName="circuits", Item={"circuitId": {"S": "text"}, "expiresAt": {"S": "0"}})

    assert expire_items(dynamodb, "circuits", now=NOW) == ["old"]  # the attribute from DescribeTimeToLive
    remaining = {item["circuitId"]["S"] for item in dynamodb.scan(TableName="circuits")["Items"]}
    assert remaining == {"new", "forever", "text"}  # not a Number: TTL ignores it
    assert expire_items(dynamodb, "circuits", now=NOW + 61) == ["new"]


def test_composite_key(aws: Emulator) -> None:
    dynamodb = _table(aws, "sessions", [("tenant", "HASH", "S"), ("started", "RANGE", "N")], ttl="ttl")
    for tenant, started, ttl in (("a", 1, NOW - 5), ("a", 2, NOW + 5), ("b", 1, NOW - 5)):
        dynamodb.put_item(
            TableName="sessions",
            Item={"tenant": {"S": tenant}, "started": {"N": str(started)}, "ttl": {"N": str(ttl)}},
        )
    assert sorted(expire_items(dynamodb, "sessions", now=NOW)) == [("a", "1"), ("b", "1")]
    items = dynamodb.scan(TableName="sessions")["Items"]
    assert [(i["tenant"]["S"], i["started"]["N"]) for i in items] == [("a", "2")]


def test_explicit_attribute_overrides_the_tables_ttl_setting(aws: Emulator) -> None:
    dynamodb = _table(aws, "plain", [("pk", "HASH", "S")], ttl=None)
    dynamodb.put_item(TableName="plain", Item={"pk": {"S": "x"}, "until": {"N": str(NOW - 1)}})
    with pytest.raises(ValueError, match="TTL is not enabled on table 'plain'"):
        expire_items(dynamodb, "plain", now=NOW)
    assert expire_items(dynamodb, "plain", now=NOW, attribute="until") == ["x"]


def test_default_now_is_the_current_time(aws: Emulator) -> None:
    dynamodb = _table(aws, "now", [("pk", "HASH", "S")], ttl="ttl")
    dynamodb.put_item(TableName="now", Item={"pk": {"S": "past"}, "ttl": {"N": "1"}})
    dynamodb.put_item(TableName="now", Item={"pk": {"S": "future"}, "ttl": {"N": str(4_000_000_000)}})
    assert expire_items(dynamodb, "now") == ["past"]
