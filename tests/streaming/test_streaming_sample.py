"""The streaming sample stack (integ/sample_streaming.py); its integration-test app: test_streaming_integ_app.py.

The templates come from the session's one app (``conftest.py``); the sample's own functions run
in-process: the TOKEN authorizer against moto's Secrets Manager, the token handler through the
streaming runtime's ``core.iterate`` with the offline token source.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns._paths import asset_path
from cdk_serverless_patterns.testing.integ import normalize_integ_template, stack_problems

SAMPLE = "ServerlessPatternsStreaming"
FUNCTIONS = Path(__file__).resolve().parents[2] / "integ" / "functions"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/stream"


def resources_of(raw: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in raw["Resources"].items() if v["Type"] == kind}


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def layer() -> Iterator[Any]:
    """The streaming layer's package on sys.path, as Lambda puts /opt/python there."""
    path = str(asset_path("streaming_runtime") / "python")
    sys.path.insert(0, path)
    try:
        import serverless_streaming

        yield serverless_streaming
    finally:
        sys.path.remove(path)


# ----- the sample stack ---------------------------------------------------------------------------------
def test_sample_stack_is_nag_and_lint_clean(streaming_app: Any) -> None:
    problems = stack_problems(streaming_app.assembly, SAMPLE)
    assert not problems, "\n".join(problems)


def test_the_three_transports_serve_the_same_handler(streaming_app: Any) -> None:
    raw = streaming_app.template(SAMPLE)
    function_id = streaming_app.ids["sample_function"]
    function = raw["Resources"][function_id]["Properties"]
    assert function["Handler"] == "app.handler"
    assert function["Environment"]["Variables"]["STREAMING_TOKEN_SOURCE"] == "offline"
    assert function["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/serverless-streaming"
    for method in resources_of(raw, "AWS::ApiGateway::Method").values():
        assert method["Properties"]["Integration"]["ResponseTransferMode"] == "STREAM"
        assert function_id in json.dumps(method["Properties"]["Integration"]["Uri"])
        assert method["Properties"]["AuthorizationType"] == "CUSTOM"
    [url] = resources_of(raw, "AWS::Lambda::Url").values()
    assert url["Properties"]["TargetFunctionArn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert url["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
    driver = raw["Resources"][streaming_app.ids["sample_driver"]]["Properties"]
    assert driver["Code"] == function["Code"]
    assert driver["Environment"]["Variables"]["STREAMING_HANDLER"] == "app.handler"
    assert driver["Environment"]["Variables"]["STREAMING_TOKEN_SOURCE"] == "offline"
    [authorizer] = resources_of(raw, "AWS::ApiGateway::Authorizer").values()
    assert authorizer["Properties"]["Type"] == "TOKEN"
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.Authorization"
    assert set(raw["Outputs"]) >= {
        "RestStreamUrl", "DemoTokenSecretArn", "FunctionUrl", "WebSocketUrl", "StreamingFunctionName",
        "WebSocketDriverName", "ConnectionsTableName",
    }  # fmt: skip


def test_the_demo_token_is_generated_by_secrets_manager(streaming_app: Any) -> None:
    [secret] = resources_of(streaming_app.template(SAMPLE), "AWS::SecretsManager::Secret").values()
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] == 48 and generated["ExcludePunctuation"] is True
    assert "SecretString" not in secret["Properties"]


def test_sample_snapshot(streaming_app: Any, snapshot: Any) -> None:
    assert normalize_integ_template(streaming_app.template(SAMPLE)) == snapshot.use_extension(JSONSnapshotExtension)


# ----- the sample's functions ---------------------------------------------------------------------------
@pytest.fixture
def authorizer(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, str]]:
    with mock_aws():
        secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="demo-token", SecretString="s3cr3t-demo-token-0123456789abcdefABCDEF01234567"
        )
        monkeypatch.setenv("DEMO_TOKEN_SECRET_ARN", secret["ARN"])
        module = load(FUNCTIONS / "streaming_authorizer" / "authorizer.py", "streaming_sample_authorizer")
        yield module, "s3cr3t-demo-token-0123456789abcdefABCDEF01234567"


def test_the_sample_authorizer_allows_the_demo_token_for_the_stage(authorizer: tuple[ModuleType, str]) -> None:
    module, token = authorizer
    answer = module.handler({"type": "TOKEN", "authorizationToken": f"Bearer {token}", "methodArn": METHOD_ARN}, None)
    assert answer["principalId"] == "demo"
    assert answer["policyDocument"]["Statement"] == [
        {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*",
        }
    ]
    lower = module.handler({"authorizationToken": f"bearer {token}", "methodArn": METHOD_ARN}, None)
    assert lower["policyDocument"]["Statement"][0]["Effect"] == "Allow"


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Bearer wrong", "Basic s3cr3t-demo-token-0123456789abcdefABCDEF01234567", "Bearer é"],
)
def test_the_sample_authorizer_refuses_anything_else(authorizer: tuple[ModuleType, str], header: str) -> None:
    module, _ = authorizer
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        module.handler({"authorizationToken": header, "methodArn": METHOD_ARN}, None)


def test_prompt_of_reads_query_json_and_base64_bodies(layer: Any) -> None:
    app = load(FUNCTIONS / "streaming_tokens" / "app.py", "streaming_sample_app")
    assert app.prompt_of({"queryStringParameters": {"prompt": " hi "}}) == "hi"
    assert app.prompt_of({"body": json.dumps({"action": "stream", "prompt": "ws"})}) == "ws"
    encoded = base64.b64encode(json.dumps({"prompt": "b64 é"}).encode()).decode()
    assert app.prompt_of({"body": encoded, "isBase64Encoded": True}) == "b64 é"
    assert app.prompt_of({"body": "@@@", "isBase64Encoded": True}) == app.DEFAULT_PROMPT
    assert app.prompt_of({"body": "not json"}) == app.DEFAULT_PROMPT
    assert app.prompt_of({"body": json.dumps(["list"])}) == app.DEFAULT_PROMPT
    assert app.prompt_of(None) == app.DEFAULT_PROMPT
    assert len(app.prompt_of({"queryStringParameters": {"prompt": "x" * 5000}})) == app.MAX_PROMPT


def test_the_sample_handler_streams_offline_tokens_then_a_summary(layer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from serverless_streaming import core

    monkeypatch.setenv("STREAMING_TOKEN_SOURCE", "offline")
    app = load(FUNCTIONS / "streaming_tokens" / "app.py", "streaming_sample_app_run")
    assert core.options(app.handler).sse is True
    items = list(core.iterate(app.handler, {"queryStringParameters": {"prompt": "hello"}}, None))
    tokens = [item for item in items if not isinstance(item, core.Event)]
    [summary] = [item for item in items if isinstance(item, core.Event)]
    assert tokens and all(isinstance(t, bytes | str) for t in tokens)
    assert summary.event == "summary" and json.loads(summary.data) == {"tokens": len(tokens)}
