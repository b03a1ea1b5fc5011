"""core.tables: the encrypted table of every pattern, and the existing_table / table_props convention."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from cdk_serverless_patterns import CallbackPattern, JobSource, PropError
from cdk_serverless_patterns.core import PropErrors, check_table_props, pattern_function, pattern_table
from cdk_serverless_patterns.testing.checks import synth_with_checks


def test_a_pattern_table_is_on_demand_encrypted_recoverable_and_nag_clean(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Tables")
    pattern_table(stack, "Tokens", partition_key="id", ttl_attribute="ttl")
    pattern_table(
        stack, "Keyed", partition_key="circuitId", encryption_key=kms.Key(stack, "Key", enable_key_rotation=True)
    )
    dynamodb.Table(  # the control: a bare table is flagged by the packs
        stack, "Bare", partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING)
    )
    result = synth_with_checks(app)
    template = Template.from_json(result.templates["Tables"])
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "SSESpecification": {"SSEEnabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
        },
    )
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "circuitId", "KeyType": "HASH"}],
            "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": Match.any_value()},
        },
    )
    template.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})
    flagged = {f.path.split("/")[1] for f in result.nag_findings}
    assert flagged == {"Bare"}, result.nag_findings


def test_table_props_merge_over_the_defaults() -> None:
    stack = cdk.Stack(cdk.App(), "Merged")
    pattern_table(
        stack,
        "Tokens",
        partition_key="id",
        table_props={"deletion_protection": True, "contributor_insights_enabled": True},
        deletion_protection=False,
    )
    Template.from_stack(stack).has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "DeletionProtectionEnabled": True,
            "ContributorInsightsSpecification": {"Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    )


def test_every_table_prop_problem_is_reported_at_once() -> None:
    stack = cdk.Stack(cdk.App(), "Problems")
    wrong = dynamodb.Table(
        stack, "Wrong", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.NUMBER)
    )
    errors = PropErrors("Example")
    check_table_props(
        errors,
        partition_key="id",
        ttl_attribute="ttl",
        existing_table=wrong,
        table_props={"sort_key": dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING)},
        encryption_key=kms.Key(stack, "Key"),
    )
    problems = errors.problems
    assert any(p.startswith("existing_table: cannot be combined with encryption_key") for p in problems), problems
    assert any(p.startswith("existing_table: cannot be combined with table_props") for p in problems), problems
    assert any("table_props: cannot set sort_key" in p and "TTL attribute ttl" in p for p in problems), problems
    assert any("must have the partition key 'id' of type String, has 'pk' (N)" in p for p in problems), problems


def test_an_imported_table_cannot_be_checked_and_is_accepted() -> None:
    stack = cdk.Stack(cdk.App(), "Imported")
    errors = PropErrors("Example")
    check_table_props(
        errors,
        partition_key="id",
        existing_table=dynamodb.Table.from_table_name(stack, "Tokens", "tokens"),
        table_props=None,
        encryption_key=None,
    )
    assert not errors


def test_the_callback_pattern_uses_an_existing_table() -> None:
    stack = cdk.Stack(cdk.App(), "Brought")
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    table = dynamodb.Table(
        stack,
        "Tokens",
        partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
        time_to_live_attribute="ttl",
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
    )
    pattern = CallbackPattern(
        stack, "Callback", sources=[JobSource.translate_text_translation_job()], existing_table=table
    )
    assert pattern.table is table
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    # The resumer may use the brought table's key, without wildcards.
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                                "Resource": {"Fn::GetAtt": [stack.get_logical_id(key.node.default_child), "Arn"]},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_the_callback_pattern_merges_table_props_and_keeps_its_key_schema() -> None:
    stack = cdk.Stack(cdk.App(), "Props")
    CallbackPattern(stack, "Callback", table_props={"deletion_protection": True})
    Template.from_stack(stack).has_resource_properties(
        "AWS::DynamoDB::Table",
        {"DeletionProtectionEnabled": True, "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True}},
    )
    with pytest.raises(PropError) as error:
        CallbackPattern(
            stack,
            "Other",
            table_props={"time_to_live_attribute": "expires"},
            existing_table=dynamodb.Table.from_table_name(stack, "T", "t"),
        )
    problems = error.value.problems
    assert any(p.startswith("table_props: cannot set time_to_live_attribute") for p in problems), problems
    assert any(p.startswith("existing_table: cannot be combined with table_props") for p in problems), problems


def test_a_function_takes_its_code_from_exactly_one_place(tmp_path: Path) -> None:
    stack = cdk.Stack(cdk.App(), "Code")
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return event\n")
    function = pattern_function(stack, "Own", code_path=tmp_path, handler="handler.handler", description="own code")
    assert isinstance(function, lambda_.Function)
    for kwargs in ({}, {"asset": "callback_url", "code_path": tmp_path}):
        with pytest.raises(ValueError, match="asset"):
            pattern_function(stack, f"Bad{len(kwargs)}", handler="h.h", description="bad", **kwargs)
