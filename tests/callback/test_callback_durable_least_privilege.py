"""Least privilege of the callback pattern's IAM: the durable callback APIs name the durable functions
they serve (``grant_durable_wait``), never ``*``; the sample's Translate role reads only its input
prefix and writes only its output prefix.

Lambda authorizes ``SendDurableExecutionCallbackSuccess``/``Failure`` against the durable execution's
ARN, a sub-resource of a function version (``<function ARN>:<version>/durable-execution/...``), so
the grant is ``<function ARN>:*``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from cdk_serverless_patterns import CallbackPattern, JobSource
from cdk_serverless_patterns.core import PropError
from cdk_serverless_patterns.testing.checks import CheckedAssembly, format_table, synth_with_checks

DURABLE_ACTIONS = ["lambda:SendDurableExecutionCallbackSuccess", "lambda:SendDurableExecutionCallbackFailure"]
STACK = "CallbackDurableGrants"


class Built:
    def __init__(self, outdir: Path) -> None:
        app = cdk.App(outdir=str(outdir))
        stack = cdk.Stack(app, STACK, env=cdk.Environment(account="123456789012", region="us-east-1"))
        self.pattern = CallbackPattern(
            stack, "Callback", sources=[JobSource.translate_text_translation_job()], durable_functions=True
        )
        self.functions = [
            lambda_.Function(
                stack,
                name,
                runtime=lambda_.Runtime.PYTHON_3_13,
                handler="index.handler",
                code=lambda_.Code.from_inline("def handler(event, context):\n    return event\n"),
            )
            for name in ("Orders", "Reports")
        ]
        for function in self.functions:
            self.pattern.grant_durable_wait(function)
        self.pattern.grant_durable_wait(self.functions[0])  # twice: granted once
        imported = lambda_.Function.from_function_arn(
            stack, "Imported", "arn:aws:lambda:us-east-1:123456789012:function:elsewhere"
        )
        self.pattern.grant_durable_wait(imported)
        from cdk_serverless_patterns.core import acknowledge

        for function in self.functions:
            acknowledge(
                function,
                "Test functions standing in for durable functions; not deployed.",
                "AwsSolutions-L1",
                "Serverless-LambdaDLQ",
                "Serverless-LambdaDefaultMemorySize",
                "Serverless-LambdaDefaultTimeout",
                "Serverless-LambdaLatestVersion",
                "Serverless-LambdaTracing",
                "Serverless-LambdaAsyncFailureDestination",
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            )
        self.assembly: CheckedAssembly = synth_with_checks(app)
        self.template: dict[str, Any] = self.assembly.templates[STACK]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("callback-durable-grants"))


def _statements(template: dict[str, Any], role_fragment: str) -> list[dict[str, Any]]:
    return [
        statement
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Policy"
        and any(role_fragment in json.dumps(role) for role in resource["Properties"].get("Roles", []))
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]


def _function_id(template: dict[str, Any], name: str) -> str:
    [logical_id] = [
        k for k, v in template["Resources"].items() if v["Type"] == "AWS::Lambda::Function" and k.startswith(name)
    ]
    return logical_id


def test_the_resumer_may_complete_durable_callbacks_of_the_granted_functions_only(built: Built) -> None:
    statements = [s for s in _statements(built.template, "CallbackResumerRole") if s["Action"] == DURABLE_ACTIONS]
    resources = [s["Resource"] for s in statements]
    expected = [
        {"Fn::Join": ["", [{"Fn::GetAtt": [_function_id(built.template, name), "Arn"]}, ":*"]]}
        for name in ("Orders", "Reports")
    ]
    assert resources == [*expected, "arn:aws:lambda:us-east-1:123456789012:function:elsewhere:*"]
    every = _statements(built.template, "CallbackResumerRole")
    assert not any(a.startswith("lambda:") and s["Resource"] == "*" for s in every for a in _actions(s))


def test_each_durable_function_may_park_and_complete_its_own_callbacks(built: Built) -> None:
    orders = _function_id(built.template, "Orders")
    statements = _statements(built.template, "OrdersServiceRole")
    [callbacks] = [s for s in statements if s["Action"] == DURABLE_ACTIONS]
    # In a policy of its own: the function depends on its role's default policy, and this statement
    # names the function's ARN (a circular dependency there).
    [own] = [
        k
        for k, v in built.template["Resources"].items()
        if v["Type"] == "AWS::IAM::Policy" and v["Properties"]["PolicyDocument"]["Statement"] == [callbacks]
    ]
    assert "DefaultPolicy" not in own and own not in json.dumps(built.template["Resources"][orders].get("DependsOn"))
    assert callbacks["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [orders, "Arn"]}, ":*"]]}
    [table] = [s for s in statements if "dynamodb:PutItem" in _actions(s)]
    assert sorted(_actions(table)) == ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"]


def test_without_a_granted_durable_function_the_resumer_has_no_lambda_permission() -> None:
    stack = cdk.Stack()
    pattern = CallbackPattern(stack, "Callback", sources=[JobSource.translate_text_translation_job()])
    with pytest.raises(PropError, match="durable_functions: must be True"):
        pattern.grant_durable_wait(lambda_.Function.from_function_name(stack, "F", "f"))
    durable = CallbackPattern(stack, "Durable", durable_functions=True)
    template = Template.from_stack(stack).to_json()
    actions = [a for s in _statements(template, "DurableResumerRole") for a in _actions(s)]
    assert actions and not any(a.startswith("lambda:") for a in actions)
    assert durable.resumer is not None


def test_cdk_nag_is_clean_and_the_acknowledgments_say_what_is_true(built: Built) -> None:
    assert not built.assembly.nag_findings, format_table(built.assembly.nag_findings)
    reasons: dict[str, str] = {}
    for entries in json.loads((built.assembly.outdir / f"{STACK}.metadata.json").read_text()).values():
        for entry in entries:
            if entry.get("type") == "aws:cdk:acknowledged-rules":
                reasons.update(entry["data"])
    star = reasons["AwsSolutions::AwsSolutions-IAM5[Resource::*]"]
    assert "durable" not in star.lower() and "SendTaskSuccess" in star
    orders = _function_id(built.template, "Orders")
    durable = reasons[f"AwsSolutions::AwsSolutions-IAM5[Resource::<{orders}.Arn>:*]"]
    assert "durable execution" in durable


def test_the_samples_translate_role_reads_only_input_and_writes_only_output(
    sample_templates: dict[str, dict[str, Any]],
) -> None:
    template = sample_templates["ServerlessPatternsCallback"]
    [bucket] = [
        k for k, v in template["Resources"].items() if k.startswith("Documents") and v["Type"] == "AWS::S3::Bucket"
    ]
    statements = _statements(template, "TranslateDataAccess")
    by_action = {json.dumps(s["Action"]): s for s in statements}
    assert set(by_action) == {'"s3:GetObject"', '"s3:ListBucket"', '"s3:PutObject"'}
    arn = {"Fn::GetAtt": [bucket, "Arn"]}
    assert by_action['"s3:GetObject"']["Resource"] == {"Fn::Join": ["", [arn, "/input/*"]]}
    assert by_action['"s3:PutObject"']["Resource"] == {"Fn::Join": ["", [arn, "/output/*"]]}
    listing = by_action['"s3:ListBucket"']
    assert listing["Resource"] == arn
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["input/", "input/*"]}}


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)
