"""The encrypted table every pattern keeps its state in, and the ``existing_table`` / ``table_props`` convention.

A pattern that owns a DynamoDB table creates it with :func:`pattern_table`: on-demand, encrypted at
rest (AWS-managed key, or the user's customer-managed key), point-in-time recovery on, the
pattern's own key schema and TTL attribute. A user may instead bring their own table
(``existing_table``) or override the defaults (``table_props``, merged over them); the two exclude
each other and ``encryption_key``, and nobody may change the key schema the runtime code depends on.
:func:`check_table_props` reports each problem into the construct's :class:`PropErrors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from cdk_serverless_patterns.core.props import PropErrors
from constructs import Construct

#: Table properties a pattern decides itself: its runtime code depends on the key schema (and on
#: the TTL attribute, for a pattern whose records expire).
FIXED_TABLE_PROPS = frozenset({"partition_key", "sort_key"})
#: What reading and writing items of a table under a customer-managed key needs (no wildcards).
TABLE_KEY_ACTIONS = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")


def check_table_props(
    errors: PropErrors,
    *,
    partition_key: str,
    ttl_attribute: str | None = None,
    existing_table: dynamodb.ITable | None,
    table_props: Mapping[str, Any] | None,
    encryption_key: kms.IKey | None,
) -> None:
    """Records every problem of the table props of a construct whose table is keyed by ``partition_key``.

    A brought table defined in the same app (a ``dynamodb.Table`` or ``TableV2``) is checked for the
    key schema too; an imported one (``Table.from_table_name``) cannot be, and must match it.
    """
    errors.exclusive(existing_table=existing_table, encryption_key=encryption_key)
    errors.exclusive(existing_table=existing_table, table_props=table_props)
    if table_props is not None and not isinstance(table_props, Mapping):
        errors.add("table_props", f"must be a mapping of dynamodb.Table properties, got {type(table_props).__name__}")
        return
    fixed_props = FIXED_TABLE_PROPS | ({"time_to_live_attribute"} if ttl_attribute else set())
    fixed = sorted(fixed_props & set(table_props or {}))
    errors.require(
        not fixed,
        "table_props",
        f"cannot set {', '.join(fixed)}: the key schema (partition key {partition_key}, String"
        + (f"; TTL attribute {ttl_attribute}" if ttl_attribute else "")
        + ") is fixed",
    )
    if isinstance(existing_table, dynamodb.Table | dynamodb.TableV2):
        key = _partition_key(existing_table)
        if key is not None:
            errors.require(
                key == (partition_key, "S"),
                "existing_table",
                f"must have the partition key {partition_key!r} of type String, has {key[0]!r} ({key[1]})",
            )


def _partition_key(table: dynamodb.Table | dynamodb.TableV2) -> tuple[str, str] | None:
    cfn = table.node.default_child
    schema = getattr(cfn, "key_schema", None)
    definitions = getattr(cfn, "attribute_definitions", None)
    if not isinstance(schema, list) or not isinstance(definitions, list):
        return None
    resolved = cdk.Stack.of(table).resolve
    hash_key = next((resolved(k).get("attributeName") for k in schema if resolved(k).get("keyType") == "HASH"), None)
    types = {resolved(d).get("attributeName"): resolved(d).get("attributeType") for d in definitions}
    return (str(hash_key), str(types.get(hash_key))) if hash_key else None


def pattern_table(
    scope: Construct,
    id: str,
    *,
    partition_key: str,
    ttl_attribute: str | None = None,
    encryption_key: kms.IKey | None = None,
    existing_table: dynamodb.ITable | None = None,
    table_props: Mapping[str, Any] | None = None,
    removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    deletion_protection: bool | None = None,
) -> dynamodb.ITable:
    """``existing_table``, or a new on-demand table with encryption at rest and PITR, keyed by
    ``partition_key`` (String), ``table_props`` merged over the defaults. Check the props first with
    :func:`check_table_props`."""
    if existing_table is not None:
        return existing_table
    props: dict[str, Any] = {
        "partition_key": dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
        "billing_mode": dynamodb.BillingMode.PAY_PER_REQUEST,
        "encryption": (
            dynamodb.TableEncryption.CUSTOMER_MANAGED if encryption_key else dynamodb.TableEncryption.AWS_MANAGED
        ),
        "encryption_key": encryption_key,
        "point_in_time_recovery_specification": dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        "removal_policy": removal_policy,
    }
    if ttl_attribute is not None:
        props["time_to_live_attribute"] = ttl_attribute
    if deletion_protection is not None:
        props["deletion_protection"] = deletion_protection
    props.update(table_props or {})
    return dynamodb.Table(scope, id, **props)


def grant_table_key(table: dynamodb.ITable, grantee: iam.IGrantable) -> None:
    """What reading and writing the items of ``table`` needs of its customer-managed key, if it has one."""
    if table.encryption_key is not None:
        table.encryption_key.grant(grantee, *TABLE_KEY_ACTIONS)
