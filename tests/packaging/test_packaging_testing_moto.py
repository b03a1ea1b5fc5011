"""testing.moto creates the tables the constructs deploy, and loads runtime modules without the CDK."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cdk_serverless_patterns.testing.moto import (
    create_callback_table,
    create_circuit_table,
    load_runtime_module,
)


def _deployed_tables(templates: dict[str, dict[str, Any]], stack: str) -> list[dict[str, Any]]:
    resources = templates[stack]["Resources"].values()
    return [r["Properties"] for r in resources if r["Type"] == "AWS::DynamoDB::Table"]


@pytest.mark.parametrize(
    ("stack", "create"),
    [("ServerlessPatternsCallback", create_callback_table), ("ServerlessPatternsCircuitBreaker", create_circuit_table)],
)
def test_helper_tables_match_the_synthesized_ones(
    sample_templates: dict[str, dict[str, Any]], stack: str, create: Any
) -> None:
    (deployed,) = _deployed_tables(sample_templates, stack)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create(client, "t")
        table = client.describe_table(TableName="t")["Table"]
        ttl = client.describe_time_to_live(TableName="t")["TimeToLiveDescription"]
    assert table["KeySchema"] == deployed["KeySchema"]
    assert table["AttributeDefinitions"] == deployed["AttributeDefinitions"]
    expected_ttl = deployed.get("TimeToLiveSpecification")
    if expected_ttl:
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": expected_ttl["AttributeName"]}
    else:
        assert ttl["TimeToLiveStatus"] == "DISABLED"


def test_runtime_modules_load_without_the_cdk() -> None:
    probe = (
        "import sys; from cdk_serverless_patterns.testing.moto import load_runtime_module; "
        "m = load_runtime_module('callback_url', 'callback_url_handler'); "
        "assert 'aws_cdk' not in sys.modules; print(m.EVENT_SOURCE)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cdk-serverless-patterns.callback-url"


def test_distinct_names_give_independent_copies() -> None:
    first = load_runtime_module("circuit_breaker_health_checker", "health_checker", name="hc_copy_1")
    second = load_runtime_module("circuit_breaker_health_checker", "health_checker", name="hc_copy_2")
    assert first is not second and sys.modules["hc_copy_1"] is first


def test_unknown_module_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="no module 'nope' in Lambda asset 'callback_url'"):
        load_runtime_module("callback_url", "nope")
