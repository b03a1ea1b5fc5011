"""Shared setup of the streaming construct tests: ONE app, synthesized once per session with the cdk-nag packs.

Stacks (``streaming_app``):
- ``StreamingDefaults``: a ``StreamingFunction`` with defaults behind all three transports with their
  defaults (REST with a Cognito user pool, an IAM function URL, an IAM WebSocket API);
- ``StreamingVariants``: Bedrock models, a Lambda REQUEST authorizer on an edge-optimized API with a
  10-minute timeout, a WebSocket Lambda authorizer with a customer-managed key and custom frames, the
  Lambda Web Adapter route (x86_64) behind an IAM-authorized REST API and a function URL with CORS;
- ``StreamingOpen``: the three loudly named anonymous opt-ins;
- ``ServerlessPatternsStreaming``: the sample stack (integ/sample_streaming.py), environment-agnostic;
- ``IntegServerlessPatternsStreaming`` and ``StreamingInteg/DefaultTest/DeployAssert``: the integration-test
  app of integ/integ_streaming.py (its ``add_integ_test``), in this same app so that the session synthesizes once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ENV_ACCOUNT = "123456789012"
HANDLER = "def handler(event, context):\n    yield 'hello'\n"
MODEL = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"
PROFILE = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"


@dataclass
class StreamingApp:
    """The session's synthesized app: templates and findings, and logical ids the tests look up."""

    assembly: Any
    ids: dict[str, str]

    def template(self, stack: str) -> dict[str, Any]:
        templates: dict[str, dict[str, Any]] = self.assembly.templates
        return templates[stack]


def build(outdir: Path) -> StreamingApp:
    """Builds and synthesizes the app described in the module docstring."""
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigw
    from aws_cdk import aws_apigatewayv2_authorizers as authorizers
    from aws_cdk import aws_cognito as cognito
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_lambda as lambda_

    from cdk_serverless_patterns.core import acknowledge
    from cdk_serverless_patterns.streaming import (
        StreamingFunction,
        StreamingFunctionUrl,
        StreamingRestApi,
        WebSocketStreamingApi,
    )
    from cdk_serverless_patterns.testing.checks import synth_with_checks

    env = cdk.Environment(account=ENV_ACCOUNT, region="us-east-1")
    app = cdk.App(outdir=str(outdir))
    ids: dict[str, str] = {}

    def logical(construct: Any) -> str:
        child = construct.node.default_child or construct
        return str(cdk.Stack.of(construct).get_logical_id(child))

    def code() -> lambda_.Code:
        return lambda_.Code.from_inline(HANDLER)

    def plain_function(scope: Any, id: str) -> lambda_.Function:
        """A Lambda authorizer's function (not under test: acknowledged here)."""
        function = lambda_.Function(
            scope,
            id,
            runtime=lambda_.Runtime.PYTHON_3_14,
            code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
            handler="index.handler",
            timeout=cdk.Duration.seconds(5),
        )
        acknowledge(
            function,
            "A test fixture: the authorizer function of the streaming construct tests, not what they test.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "Serverless-LambdaDLQ",
            "Serverless-LambdaAsyncFailureDestination",
            "Serverless-LambdaTracing",
            "Serverless-LambdaDefaultMemorySize",
        )
        return function

    # -- defaults --------------------------------------------------------------------------------------
    stack = cdk.Stack(app, "StreamingDefaults", env=env)
    pool = cognito.UserPool(stack, "Users", advanced_security_mode=None)
    acknowledge(
        pool,
        "A test fixture: the user pool the default REST API authorizes against, not what the tests check.",
        "AwsSolutions-COG1",
        "AwsSolutions-COG2",
        "AwsSolutions-COG3",
        "AwsSolutions-COG8",
    )
    function = StreamingFunction(stack, "Tokens", code=code(), handler="index.handler")
    rest = StreamingRestApi(stack, "Rest", function=function, user_pool=pool)
    url = StreamingFunctionUrl(stack, "Url", function=function)
    ws = WebSocketStreamingApi(stack, "WebSocket", function=function)
    client = iam.Role(stack, "Client", assumed_by=iam.AccountRootPrincipal())
    url.grant_invoke_url(client)
    ws.grant_connect(client)
    ids |= {
        "function": logical(function.function),
        "layer": logical(function.layer),
        "driver": logical(ws.driver),
        "ws_api": logical(ws.api),
        "table": logical(ws.table),
        "rest_api": logical(rest.api),
        "url": logical(url.function_url),
        "failures": logical(ws.failures),
        "client": logical(client),
    }

    # -- variants ---------------------------------------------------------------------------------------
    variants = cdk.Stack(app, "StreamingVariants", env=env)
    bedrock = StreamingFunction(
        variants,
        "Bedrock",
        code=code(),
        handler="pkg.module.handler",
        bedrock_models=[MODEL, PROFILE],
        model_id="us.anthropic.claude-3-5-haiku-20241022-v1:0",
        timeout=cdk.Duration.minutes(10),
        memory_size=1024,
        environment={"GREETING": "hi"},
    )
    request_authorizer = apigw.RequestAuthorizer(
        variants,
        "RequestAuthorizer",
        handler=plain_function(variants, "AuthorizerFunction"),
        identity_sources=[apigw.IdentitySource.header("Authorization")],
    )
    edge = StreamingRestApi(
        variants,
        "Edge",
        function=bedrock,
        authorizer=request_authorizer,
        endpoint_type=apigw.EndpointType.EDGE,
        timeout=cdk.Duration.minutes(12),
        methods=["POST"],
        path="/chat/{session}",
    )
    key = kms.Key(variants, "Key", enable_key_rotation=True)
    ws_variant = WebSocketStreamingApi(
        variants,
        "Chat",
        function=bedrock,
        authorizer=authorizers.WebSocketLambdaAuthorizer(
            "ConnectAuthorizer",
            plain_function(variants, "ConnectAuthorizerFunction"),
            identity_source=["route.request.header.Authorization"],
        ),
        encryption_key=key,
        frame_bytes=4096,
        frame_interval=cdk.Duration.millis(20),
        driver_timeout=cdk.Duration.minutes(15),
        stage_name="live",
    )
    web_app = StreamingFunction(
        variants,
        "WebApp",
        code=code(),
        handler="run.sh",
        adapter="web_adapter",
        architecture=lambda_.Architecture.X86_64,
    )
    iam_rest = StreamingRestApi(variants, "IamRest", function=web_app, iam_authorization=True)
    iam_client = iam.Role(variants, "Client", assumed_by=iam.AccountRootPrincipal())
    iam_rest.grant_invoke(iam_client)
    cors_url = StreamingFunctionUrl(
        variants,
        "CorsUrl",
        function=web_app,
        cors=lambda_.FunctionUrlCorsOptions(allowed_origins=["https://app.example.com"]),
    )
    ids |= {
        "bedrock": logical(bedrock.function),
        "bedrock_driver": logical(ws_variant.driver),
        "variant_ws_api": logical(ws_variant.api),
        "variant_table": logical(ws_variant.table),
        "key": logical(key),
        "web_app": logical(web_app.function),
        "edge_api": logical(edge.api),
        "iam_rest_api": logical(iam_rest.api),
        "cors_url": logical(cors_url.function_url),
        "iam_client": logical(iam_client),
    }

    # -- open opt-ins -----------------------------------------------------------------------------------
    open_stack = cdk.Stack(app, "StreamingOpen", env=env)
    open_function = StreamingFunction(open_stack, "Tokens", code=code(), handler="index.handler")
    StreamingRestApi(open_stack, "Rest", function=open_function, unsafe_allow_anonymous=True)
    StreamingFunctionUrl(open_stack, "Url", function=open_function, unsafe_allow_anonymous=True)
    WebSocketStreamingApi(open_stack, "WebSocket", function=open_function, unsafe_allow_anonymous=True)

    # -- the sample and its integration test --------------------------------------------------------------
    import integ_streaming  # integ/ is on sys.path (tests/conftest.py)
    import sample_streaming

    sample = sample_streaming.StreamingSampleStack(app)
    ids |= {
        "sample_function": logical(sample.tokens.function),
        "sample_driver": logical(sample.websocket.driver),
        "sample_authorizer": logical(sample.authorizer_function),
    }
    integ_streaming.add_integ_test(app)
    return StreamingApp(synth_with_checks(app), ids)


@pytest.fixture(scope="session")
def streaming_app(tmp_path_factory: pytest.TempPathFactory) -> StreamingApp:
    """The streaming construct tests' one app (see the module docstring)."""
    return build(tmp_path_factory.mktemp("streaming-cdk-out"))
