from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest

from cdk_serverless_patterns.core import acknowledge, asset_path, lambda_src_root, rule_id
from cdk_serverless_patterns.core.assets import AssetNotFoundError

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_finds_lambda_src_of_the_repo() -> None:
    assert lambda_src_root() == ROOT / "lambda_src"


def test_unknown_asset_names_the_asset_and_lists_the_available_ones() -> None:
    with pytest.raises(AssetNotFoundError, match="no Lambda asset 'nope'"):
        asset_path("nope")


@pytest.mark.parametrize("name", ["", "../etc", "/abs"])
def test_asset_names_cannot_escape_lambda_src(name: str) -> None:
    with pytest.raises(ValueError, match="not a folder name"):
        asset_path(name)


def test_rule_ids_get_their_pack_prefix() -> None:
    assert rule_id("AwsSolutions-IAM5[Resource::*]") == "AwsSolutions::AwsSolutions-IAM5[Resource::*]"
    assert rule_id("Serverless-LambdaDLQ") == "Serverless::Serverless-LambdaDLQ"
    assert rule_id("AwsSolutions::AwsSolutions-SQS3") == "AwsSolutions::AwsSolutions-SQS3"
    with pytest.raises(ValueError, match="known cdk-nag pack"):
        rule_id("Made-Up1")


def test_acknowledge_refuses_an_empty_or_token_reason() -> None:
    stack = cdk.Stack()
    with pytest.raises(ValueError, match="needs a real reason"):
        acknowledge(stack, "ok", "AwsSolutions-SQS3")
    with pytest.raises(ValueError, match="at least one rule"):
        acknowledge(stack, "a perfectly good reason for this")


def test_acknowledged_finding_is_not_reported_and_unacknowledged_one_is(tmp_path: Path) -> None:
    from aws_cdk import aws_sqs as sqs

    from cdk_serverless_patterns.testing.checks import synth_with_checks

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Nag")
    queue = sqs.Queue(stack, "Queue")
    acknowledge(
        queue, "this queue is a dead-letter queue in the test", "AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"
    )
    result = synth_with_checks(app)
    rules = {finding.rule for finding in result.nag_findings}
    assert "AwsSolutions-SQS3" not in rules
    assert "Serverless-SQSRedrivePolicy" not in rules
    assert "AwsSolutions-SQS4" in rules  # not acknowledged: still reported
    assert "Nag" in result.templates
