"""The streaming constructs: template assertions, cdk-nag, cfn-lint, normalized snapshots, prop errors.

The templates come from the session's one app (``conftest.py``); prop errors are raised while
constructing, without synthesis; the synth-time checks synthesize one small app.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template
from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.core import PropError
from cdk_serverless_patterns.streaming import (
    StreamingFunction,
    StreamingFunctionUrl,
    StreamingRestApi,
    WebSocketStreamingApi,
    contract,
)
from cdk_serverless_patterns.streaming.streaming_function import web_adapter_layer_arn
from cdk_serverless_patterns.streaming.websocket_streaming_api import STREAM_REQUEST_TEMPLATE
from cdk_serverless_patterns.testing import normalize_template
from cdk_serverless_patterns.testing.checks import cfn_lint_findings, format_table

STACKS = ("StreamingDefaults", "StreamingVariants", "StreamingOpen")
MODEL = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"
PROFILE = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
INLINE = "def handler(event, context):\n    yield 'hello'\n"


def resources_of(raw: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in raw["Resources"].items() if v["Type"] == kind}


def statements_of_role(raw: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    found = []
    for policy in resources_of(raw, "AWS::IAM::Policy").values():
        if any(r.get("Ref", "").startswith(role_prefix) for r in policy["Properties"]["Roles"]):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def props_of(app: Any, stack: str, key: str) -> dict[str, Any]:
    props: dict[str, Any] = app.template(stack)["Resources"][app.ids[key]]["Properties"]
    return props


def routes_of(raw: dict[str, Any], api: str) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in resources_of(raw, "AWS::ApiGatewayV2::Route").values()
        if r["Properties"]["ApiId"] == {"Ref": api}
    }


def integration_of(raw: dict[str, Any], route: dict[str, Any]) -> dict[str, Any]:
    target = route["Target"]["Fn::Join"][1][1]["Ref"]
    integration: dict[str, Any] = raw["Resources"][target]["Properties"]
    return integration


# ----- StreamingFunction --------------------------------------------------------------------------------
def test_streaming_function_runs_the_exec_wrapper_of_the_stacks_one_layer(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingDefaults")
    function = props_of(streaming_app, "StreamingDefaults", "function")
    assert function["Handler"] == "index.handler"
    assert function["Runtime"] == "python3.14"
    assert function["Architectures"] == ["arm64"]
    assert function["Timeout"] == 300 and function["MemorySize"] == 512
    assert function["Layers"] == [{"Ref": streaming_app.ids["layer"]}]
    assert function["Environment"]["Variables"] == {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/serverless-streaming"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert function["TracingConfig"] == {"Mode": "Active"}
    # one layer per stack: the WebSocket driver shares it
    assert len(resources_of(raw, "AWS::Lambda::LayerVersion")) == 1
    assert props_of(streaming_app, "StreamingDefaults", "driver")["Layers"] == [{"Ref": streaming_app.ids["layer"]}]
    layer = raw["Resources"][streaming_app.ids["layer"]]["Properties"]
    assert set(layer["CompatibleArchitectures"]) == {"arm64", "x86_64"}
    assert "python3.14" in layer["CompatibleRuntimes"]


def test_the_staged_layer_keeps_the_wrappers_exec_bit(streaming_app: Any) -> None:
    """Lambda execs /opt/serverless-streaming: the asset (zipped with its file modes) must carry the bit."""
    import os

    layer = streaming_app.template("StreamingDefaults")["Resources"][streaming_app.ids["layer"]]
    key = json.dumps(layer["Properties"]["Content"]["S3Key"])
    [asset_hash] = re.findall(r"[0-9a-f]{64}", key)
    staged = streaming_app.assembly.outdir / f"asset.{asset_hash}"
    wrapper = staged / contract.EXEC_WRAPPER_PATH.removeprefix("/opt/")
    assert wrapper.is_file() and os.access(wrapper, os.X_OK)
    assert (staged / "python" / "serverless_streaming" / "websocket.py").is_file()
    assert not list(staged.rglob("__pycache__"))


def test_streaming_function_role_holds_only_its_logs_and_traces(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingDefaults")
    role = props_of(streaming_app, "StreamingDefaults", "function")["Role"]["Fn::GetAtt"][0]
    actions = sorted(a for s in statements_of_role(raw, role) for a in [s["Action"]] if isinstance(a, str)) + sorted(
        a for s in statements_of_role(raw, role) if isinstance(s["Action"], list) for a in s["Action"]
    )
    assert sorted(actions) == sorted(
        ["logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    )


def test_bedrock_models_are_granted_exactly_never_star(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingVariants")
    function = props_of(streaming_app, "StreamingVariants", "bedrock")
    assert function["Environment"]["Variables"] == {
        "GREETING": "hi",
        "STREAMING_TOKEN_SOURCE": "bedrock",
        "STREAMING_MODEL_ID": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/serverless-streaming",
    }
    assert function["Timeout"] == 600 and function["MemorySize"] == 1024
    assert function["Handler"] == "pkg.module.handler"
    for key in ("bedrock", "bedrock_driver"):
        role = props_of(streaming_app, "StreamingVariants", key)["Role"]["Fn::GetAtt"][0]
        bedrock = [s for s in statements_of_role(raw, role) if "bedrock" in json.dumps(s["Action"])]
        assert bedrock == [
            {"Action": "bedrock:InvokeModelWithResponseStream", "Effect": "Allow", "Resource": [MODEL, PROFILE]}
        ], key
    for policy in resources_of(raw, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "bedrock" in json.dumps(statement["Action"]):
                assert statement["Resource"] != "*" and "*" not in statement["Resource"]
    # the defaults stack grants Bedrock nothing and sets no token source
    assert "bedrock" not in json.dumps(streaming_app.template("StreamingDefaults"))
    assert "STREAMING_TOKEN_SOURCE" not in json.dumps(streaming_app.template("StreamingDefaults"))


def test_web_adapter_route_uses_the_published_layer_and_its_wrapper(streaming_app: Any) -> None:
    web_app = props_of(streaming_app, "StreamingVariants", "web_app")
    assert web_app["Layers"] == ["arn:aws:lambda:us-east-1:753240598075:layer:LambdaAdapterLayerX86:24"]
    assert web_app["Handler"] == "run.sh"
    assert web_app["Architectures"] == ["x86_64"]
    assert web_app["Environment"]["Variables"] == {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
    }


@pytest.mark.parametrize(
    ("region", "architecture", "expected"),
    [
        ("us-east-1", "arm64", "arn:aws:lambda:us-east-1:753240598075:layer:LambdaAdapterLayerArm64:7"),
        ("eu-west-3", "x86_64", "arn:aws:lambda:eu-west-3:753240598075:layer:LambdaAdapterLayerX86:7"),
        ("cn-north-1", "x86_64", "arn:aws-cn:lambda:cn-north-1:041581134020:layer:LambdaAdapterLayerX86:7"),
        ("cn-northwest-1", "x86_64", "arn:aws-cn:lambda:cn-northwest-1:069767869989:layer:LambdaAdapterLayerX86:7"),
        ("cn-north-1", "arm64", None),
        ("us-gov-west-1", "x86_64", None),
        ("us-isob-east-1", "arm64", None),
    ],
)
def test_web_adapter_layer_arn_per_region_and_architecture(
    region: str, architecture: str, expected: str | None
) -> None:
    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012", region=region))
    arch = lambda_.Architecture.ARM_64 if architecture == "arm64" else lambda_.Architecture.X86_64
    assert web_adapter_layer_arn(stack, arch, 7) == expected


def test_web_adapter_layer_arn_of_an_environment_agnostic_stack_follows_the_region() -> None:
    stack = cdk.Stack(cdk.App(), "Agnostic")
    arn = web_adapter_layer_arn(stack, lambda_.Architecture.ARM_64, 24)
    assert arn is not None
    assert stack.resolve(arn) == {
        "Fn::Join": ["", ["arn:aws:lambda:", {"Ref": "AWS::Region"}, ":753240598075:layer:LambdaAdapterLayerArm64:24"]]
    }


# ----- StreamingRestApi ------------------------------------------------------------------------------------
def test_rest_methods_stream_through_the_response_streaming_invocations_uri(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingDefaults")
    methods = resources_of(raw, "AWS::ApiGateway::Method")
    assert sorted(m["Properties"]["HttpMethod"] for m in methods.values()) == ["GET", "POST"]
    for method in methods.values():
        props = method["Properties"]
        integration = props["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert integration["ResponseTransferMode"] == "STREAM"
        assert integration["TimeoutInMillis"] == 300_000  # the function's timeout
        uri = json.dumps(integration["Uri"])
        assert uri.endswith('"/response-streaming-invocations"]]}')
        assert streaming_app.ids["function"] in uri
        assert props["AuthorizationType"] == "COGNITO_USER_POOLS"
        assert "AuthorizerId" in props
        for forbidden in ("IntegrationResponses", "ContentHandling", "RequestTemplates", "CacheKeyParameters"):
            assert forbidden not in integration
    [authorizer] = resources_of(raw, "AWS::ApiGateway::Authorizer").values()
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"


def test_rest_stage_has_access_logs_tracing_throttling_and_no_cache(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingDefaults")
    [stage] = resources_of(raw, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    assert "DestinationArn" in props["AccessLogSetting"]
    assert "CacheClusterEnabled" not in props
    [settings] = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 50 and settings["ThrottlingBurstLimit"] == 100
    assert settings["DataTraceEnabled"] is False and not settings.get("CachingEnabled")
    [api] = resources_of(raw, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_rest_variants_lambda_authorizer_edge_timeout_path_and_iam(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingVariants")
    edge = raw["Resources"][streaming_app.ids["edge_api"]]["Properties"]
    assert edge["EndpointConfiguration"] == {"Types": ["EDGE"]}
    edge_methods = [
        m["Properties"] for m in resources_of(raw, "AWS::ApiGateway::Method").values()
        if m["Properties"]["RestApiId"] == {"Ref": streaming_app.ids["edge_api"]}
    ]  # fmt: skip
    assert [m["HttpMethod"] for m in edge_methods] == ["POST"]
    assert edge_methods[0]["AuthorizationType"] == "CUSTOM"
    assert edge_methods[0]["Integration"]["TimeoutInMillis"] == 720_000
    assert edge_methods[0]["Integration"]["ResponseTransferMode"] == "STREAM"
    resources = resources_of(raw, "AWS::ApiGateway::Resource")
    assert {r["Properties"]["PathPart"] for r in resources.values()} >= {"chat", "{session}", "stream"}
    iam_methods = [
        m["Properties"] for m in resources_of(raw, "AWS::ApiGateway::Method").values()
        if m["Properties"]["RestApiId"] == {"Ref": streaming_app.ids["iam_rest_api"]}
    ]  # fmt: skip
    assert {m["AuthorizationType"] for m in iam_methods} == {"AWS_IAM"}
    assert all("AuthorizerId" not in m for m in iam_methods)


def test_anonymous_access_is_only_the_loud_opt_in(streaming_app: Any) -> None:
    open_raw = streaming_app.template("StreamingOpen")
    assert {
        m["Properties"]["AuthorizationType"] for m in resources_of(open_raw, "AWS::ApiGateway::Method").values()
    } == {"NONE"}
    [url] = resources_of(open_raw, "AWS::Lambda::Url").values()
    assert url["Properties"]["AuthType"] == "NONE"
    connect = [
        r["Properties"] for r in resources_of(open_raw, "AWS::ApiGatewayV2::Route").values()
        if r["Properties"]["RouteKey"] == "$connect"
    ]  # fmt: skip
    assert connect[0]["AuthorizationType"] == "NONE"
    for stack in ("StreamingDefaults", "StreamingVariants", "ServerlessPatternsStreaming"):
        raw = streaming_app.template(stack)
        assert "NONE" not in {
            m["Properties"]["AuthorizationType"] for m in resources_of(raw, "AWS::ApiGateway::Method").values()
        }, stack
        assert {u["Properties"]["AuthType"] for u in resources_of(raw, "AWS::Lambda::Url").values()} == {"AWS_IAM"}
        for route in resources_of(raw, "AWS::ApiGatewayV2::Route").values():
            if route["Properties"]["RouteKey"] == "$connect":
                assert route["Properties"]["AuthorizationType"] in ("AWS_IAM", "CUSTOM"), stack


def test_grants_let_a_client_call_each_transport_and_nothing_more(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingDefaults")
    statements = statements_of_role(raw, streaming_app.ids["client"])
    by_action = {json.dumps(s["Action"]): s["Resource"] for s in statements}
    function_arn = {"Fn::GetAtt": [streaming_app.ids["function"], "Arn"]}
    assert by_action.pop('"lambda:InvokeFunctionUrl"') == function_arn
    connect = json.dumps(by_action.pop('"execute-api:Invoke"'))
    assert streaming_app.ids["ws_api"] in connect and connect.endswith('"/prod/$connect"]]}')
    # a function URL call with IAM also needs lambda:InvokeFunction, granted only through the URL
    assert by_action == {'"lambda:InvokeFunction"': function_arn}
    [through_url] = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    assert through_url["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": True}}
    variants = streaming_app.template("StreamingVariants")
    [invoke] = statements_of_role(variants, streaming_app.ids["iam_client"])
    assert invoke["Action"] == "execute-api:Invoke"
    resources = json.dumps(invoke["Resource"])
    assert streaming_app.ids["iam_rest_api"] in resources and "/GET/stream" in resources and "/POST/stream" in resources


# ----- StreamingFunctionUrl ----------------------------------------------------------------------------
def test_function_urls_stream_with_iam_by_default(streaming_app: Any) -> None:
    url = props_of(streaming_app, "StreamingDefaults", "url")
    assert url == {
        "AuthType": "AWS_IAM",
        "InvokeMode": "RESPONSE_STREAM",
        "TargetFunctionArn": {"Fn::GetAtt": [streaming_app.ids["function"], "Arn"]},
    }
    # IAM: no resource policy lets anyone in
    raw = streaming_app.template("StreamingDefaults")
    for permission in resources_of(raw, "AWS::Lambda::Permission").values():
        assert permission["Properties"]["Principal"] != "*"
    cors = props_of(streaming_app, "StreamingVariants", "cors_url")
    assert cors["Cors"]["AllowOrigins"] == ["https://app.example.com"]
    assert cors["InvokeMode"] == "RESPONSE_STREAM" and cors["AuthType"] == "AWS_IAM"


# ----- WebSocketStreamingApi ------------------------------------------------------------------------------
def test_websocket_routes_connect_disconnect_and_an_asynchronous_stream(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingDefaults")
    routes = routes_of(raw, streaming_app.ids["ws_api"])
    assert set(routes) == {"$connect", "$disconnect", "stream"}
    assert routes["$connect"]["AuthorizationType"] == "AWS_IAM"
    driver_arn = {"Fn::GetAtt": [streaming_app.ids["driver"], "Arn"]}
    for key in ("$connect", "$disconnect"):
        integration = integration_of(raw, routes[key])
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert driver_arn in integration["IntegrationUri"]["Fn::Join"][1]
    stream = integration_of(raw, routes["stream"])
    assert stream["IntegrationType"] == "AWS"  # non-proxy: API Gateway may invoke asynchronously
    assert stream["IntegrationMethod"] == "POST"
    assert stream["RequestParameters"] == {"integration.request.header.X-Amz-Invocation-Type": "'Event'"}
    assert stream["RequestTemplates"] == {"$default": STREAM_REQUEST_TEMPLATE}
    assert stream["TemplateSelectionExpression"] == "\\$default"
    assert stream["PassthroughBehavior"] == "NEVER"
    assert driver_arn in stream["IntegrationUri"]["Fn::Join"][1]
    assert stream["IntegrationUri"]["Fn::Join"][1][-1] == "/invocations"
    [api] = [r["Properties"] for k, r in raw["Resources"].items() if k == streaming_app.ids["ws_api"]]
    assert api["ProtocolType"] == "WEBSOCKET" and api["RouteSelectionExpression"] == "$request.body.action"
    # API Gateway may invoke the driver for this stage's stream route
    permissions = [
        p["Properties"] for p in resources_of(raw, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == driver_arn
    ]  # fmt: skip
    sources = [json.dumps(p.get("SourceArn")) for p in permissions]
    assert any(s.endswith('"/prod/stream"]]}') for s in sources), sources


#: ``$util.escapeJavaScript(<reference>).replaceAll("\\'", "'")`` in the template, as API Gateway evaluates it.
_ESCAPED = re.compile(r"\$util\.escapeJavaScript\((\$[A-Za-z.]+)\)\.replaceAll\(\"\\\\'\", \"'\"\)")


def _escape_javascript(value: str) -> str:
    """Java's ``StringEscapeUtils.escapeJavaScript`` (what ``$util.escapeJavaScript`` is) for these inputs."""
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("'", "\\'"), ("/", "\\/"), ("\n", "\\n"), ("\r", "\\r")):
        value = value.replace(raw, escaped)
    return value.replace("\t", "\\t")


def _render(template: str, context: dict[str, Any], body: str) -> str:
    """Renders the stream template as API Gateway would for these values."""

    def lookup(reference: str) -> Any:
        if reference == "$input.body":
            return body
        value: Any = context
        for part in reference.removeprefix("$context.").split("."):
            value = value[part]
        return value

    rendered = _ESCAPED.sub(lambda m: _escape_javascript(str(lookup(m.group(1)))).replace("\\'", "'"), template)
    assert "$util" not in rendered and "$input" not in rendered, "the template changed: update this renderer"
    return re.sub(r"\$context\.([A-Za-z.]*[A-Za-z])", lambda m: str(lookup(m.group(0))), rendered)


def test_stream_template_renders_the_event_an_aws_proxy_integration_delivers() -> None:
    context = {
        "routeKey": "stream", "eventType": "MESSAGE", "connectionId": "L0SM9cOFvHcCIhw=", "domainName":
        "abc123.execute-api.us-east-1.amazonaws.com", "stage": "prod", "apiId": "abc123", "requestId": "r-1",
        "extendedRequestId": "r-1", "messageId": "m-1", "connectedAt": 1700000000000, "requestTimeEpoch": 1700000001000,
        "identity": {"sourceIp": "203.0.113.7", "userAgent": 'Mozilla/5.0 "quoted" it\'s'},
        "authorizer": {"principalId": "user-'1'"},
    }  # fmt: skip
    body = json.dumps({"action": "stream", "prompt": 'it\'s a "quoted"\nprompt \\ with / slashes and é'})
    event = json.loads(_render(STREAM_REQUEST_TEMPLATE, context, body))
    assert event["body"] == body
    assert json.loads(event["body"])["prompt"] == 'it\'s a "quoted"\nprompt \\ with / slashes and é'
    assert event["isBase64Encoded"] is False
    assert event["requestContext"] == {**context, "messageDirection": "IN"}


def test_asynchronous_stream_requests_are_never_retried_and_failures_are_kept(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingDefaults")
    [config] = resources_of(raw, "AWS::Lambda::EventInvokeConfig").values()
    props = config["Properties"]
    assert props["FunctionName"] == {"Ref": streaming_app.ids["driver"]}
    assert props["MaximumRetryAttempts"] == 0
    assert props["MaximumEventAgeInSeconds"] == 60
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [streaming_app.ids["failures"], "Arn"]
    }
    queue = raw["Resources"][streaming_app.ids["failures"]]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True


def test_driver_runs_the_same_code_on_the_standard_runtime(streaming_app: Any) -> None:
    function = props_of(streaming_app, "StreamingDefaults", "function")
    driver = props_of(streaming_app, "StreamingDefaults", "driver")
    assert driver["Handler"] == "serverless_streaming.websocket.handler"
    assert driver["Code"] == function["Code"]
    assert (driver["Runtime"], driver["Architectures"], driver["Timeout"], driver["MemorySize"]) == (
        function["Runtime"], function["Architectures"], function["Timeout"], function["MemorySize"],
    )  # fmt: skip
    assert driver["Environment"]["Variables"] == {
        "STREAMING_HANDLER": "index.handler",
        "STREAMING_CONNECTIONS_TABLE": {"Ref": streaming_app.ids["table"]},
        "STREAMING_FRAME_BYTES": "16384",
        "STREAMING_FRAME_MS": "50",
        "STREAMING_WS_DISPATCH": "inline",
    }
    variant = props_of(streaming_app, "StreamingVariants", "bedrock_driver")
    variables = variant["Environment"]["Variables"]
    assert (variables["STREAMING_FRAME_BYTES"], variables["STREAMING_FRAME_MS"]) == ("4096", "20")
    assert variables["STREAMING_HANDLER"] == "pkg.module.handler"
    assert variables["STREAMING_TOKEN_SOURCE"] == "bedrock" and variables["GREETING"] == "hi"
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in variables
    assert variant["Timeout"] == 900


def test_driver_may_reach_only_its_stages_connections_and_its_own_table(streaming_app: Any) -> None:
    for stack, driver, api, table, stage in (
        ("StreamingDefaults", "driver", "ws_api", "table", "prod"),
        ("StreamingVariants", "bedrock_driver", "variant_ws_api", "variant_table", "live"),
    ):
        raw = streaming_app.template(stack)
        role = props_of(streaming_app, stack, driver)["Role"]["Fn::GetAtt"][0]
        statements = statements_of_role(raw, role)
        [manage] = [s for s in statements if s["Action"] == "execute-api:ManageConnections"]
        assert manage["Resource"]["Fn::Join"][1][-2:] == [
            {"Ref": streaming_app.ids[api]},
            f"/{stage}/*/@connections/*",
        ]
        [dynamo] = [s for s in statements if "dynamodb" in json.dumps(s["Action"])]
        assert sorted(dynamo["Action"]) == [
            "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"
        ]  # fmt: skip
        assert dynamo["Resource"] == {"Fn::GetAtt": [streaming_app.ids[table], "Arn"]}
        for statement in statements:
            if statement["Resource"] == "*":
                assert sorted(statement["Action"]) == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    # a customer-managed table key: the driver may use it, nothing more
    raw = streaming_app.template("StreamingVariants")
    role = props_of(streaming_app, "StreamingVariants", "bedrock_driver")["Role"]["Fn::GetAtt"][0]
    [kms_statement] = [s for s in statements_of_role(raw, role) if "kms" in json.dumps(s["Action"])]
    assert kms_statement["Resource"] == {"Fn::GetAtt": [streaming_app.ids["key"], "Arn"]}


def test_connections_table_is_encrypted_with_ttl(streaming_app: Any) -> None:
    table = props_of(streaming_app, "StreamingDefaults", "table")
    assert table["KeySchema"] == [{"AttributeName": "connectionId", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    cmk = props_of(streaming_app, "StreamingVariants", "variant_table")
    assert cmk["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": [streaming_app.ids["key"], "Arn"]}


def test_websocket_stage_is_throttled_and_logs_json_to_an_encrypted_group(streaming_app: Any) -> None:
    raw = streaming_app.template("StreamingDefaults")
    [stage] = resources_of(raw, "AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["AutoDeploy"] is True and props["StageName"] == "prod"
    assert props["DefaultRouteSettings"] == {
        "DetailedMetricsEnabled": True, "ThrottlingBurstLimit": 100, "ThrottlingRateLimit": 50
    }  # fmt: skip
    log_format = json.loads(props["AccessLogSettings"]["Format"].replace("$context.", "context_"))
    assert {"requestId", "connectionId", "routeKey", "eventType", "status", "error"} <= set(log_format)
    group = raw["Resources"][props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]]["Properties"]
    assert "KmsKeyId" in group and group["RetentionInDays"] == 30
    variants = streaming_app.template("StreamingVariants")
    routes = routes_of(variants, streaming_app.ids["variant_ws_api"])
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    [authorizer] = resources_of(variants, "AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Properties"]["AuthorizerType"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == ["route.request.header.Authorization"]


def test_template_assertions_with_cdk_matchers(streaming_app: Any) -> None:
    template = Template.from_json(streaming_app.template("StreamingDefaults"))
    template.has_resource_properties(
        "AWS::ApiGateway::Method", {"Integration": {"ResponseTransferMode": "STREAM", "Type": "AWS_PROXY"}}
    )
    template.has_resource_properties("AWS::Lambda::Url", {"InvokeMode": "RESPONSE_STREAM", "AuthType": "AWS_IAM"})
    template.resource_count_is("AWS::ApiGatewayV2::Route", 3)
    template.resource_count_is("AWS::Lambda::Function", 2)


# ----- checks and snapshots ------------------------------------------------------------------------------
def test_cdk_nag_is_clean(streaming_app: Any) -> None:
    assert not streaming_app.assembly.nag_findings, format_table(streaming_app.assembly.nag_findings)


def test_cfn_lint_is_clean(streaming_app: Any) -> None:
    # W3005 (a DependsOn the role reference already implies) is the CDK's own, in every function it makes;
    # the integ assertion stack is the integ-tests library's scaffolding: errors only there.
    findings = [
        f
        for f in cfn_lint_findings(streaming_app.assembly.templates)
        if f.severity == "error" or (f.rule != "W3005" and not f.path.startswith("StreamingInteg/"))
    ]
    assert not findings, format_table(findings)


@pytest.mark.parametrize("stack", STACKS)
def test_snapshot(streaming_app: Any, stack: str, snapshot: Any) -> None:
    assert normalize_template(streaming_app.template(stack)) == snapshot.use_extension(JSONSnapshotExtension)


# ----- prop errors (no synthesis) --------------------------------------------------------------------------
@pytest.fixture
def scratch() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "Scratch", env=cdk.Environment(account="123456789012", region="us-east-1"))


def problems_of(error: pytest.ExceptionInfo[PropError]) -> list[str]:
    return [problem.split(":", 1)[0] for problem in error.value.problems]


def function(scope: Any, id: str = "Fn", **props: Any) -> StreamingFunction:
    return StreamingFunction(scope, id, code=lambda_.Code.from_inline(INLINE), handler="index.handler", **props)


def test_function_props_are_validated_together(scratch: cdk.Stack) -> None:
    with pytest.raises(PropError) as error:
        StreamingFunction(
            scratch,
            "Bad",
            handler="not a handler",
            runtime=lambda_.Runtime.NODEJS_22_X,
            memory_size=64,
            timeout=cdk.Duration.minutes(16),
            environment={"AWS_LAMBDA_EXEC_WRAPPER": "/opt/mine", "STREAMING_HANDLER": "x", "1bad": "y"},
            adapter="rust",
            bedrock_models=["arn:aws:bedrock:us-east-1::foundation-model/*"],
            web_adapter_layer_version=0,
        )
    assert problems_of(error) == [
        "code", "adapter", "handler", "runtime", "memory_size", "timeout", "environment", "environment",
        "environment", "web_adapter_layer_version", "bedrock_models",
    ]  # fmt: skip
    message = str(error.value)
    assert "give exactly one of code and code_path" in message
    assert "'rust' is not one of 'python', 'web_adapter'" in message
    assert "must be between 1 second and 15 minutes, got 16 minutes" in message
    assert "no wildcards" in message


@pytest.mark.parametrize(
    ("props", "prop", "message"),
    [
        ({"token_source": "bedrock"}, "token_source", "bedrock needs bedrock_models"),
        ({"token_source": "openai"}, "token_source", "'openai' is not one of 'bedrock', 'offline'"),
        ({"model_id": "m"}, "model_id", "give bedrock_models"),
        ({"bedrock_models": []}, "bedrock_models", "at least one"),
        ({"bedrock_models": MODEL}, "bedrock_models", "not one string"),
        ({"bedrock_models": ["arn:aws:s3:::bucket"]}, "bedrock_models", "not the ARN of a Bedrock"),
        ({"timeout": cdk.Duration.millis(1500)}, "timeout", "whole seconds"),
        ({"environment": {"AWS_LWA_PORT": "8080"}}, "environment", "set by the construct"),
    ],
)
def test_function_prop_rules(scratch: cdk.Stack, props: dict[str, Any], prop: str, message: str) -> None:
    with pytest.raises(PropError) as error:
        function(scratch, **props)
    assert problems_of(error) == [prop]
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("region", "architecture"),
    [("us-gov-west-1", lambda_.Architecture.X86_64), ("cn-north-1", lambda_.Architecture.ARM_64)],
)
def test_web_adapter_where_no_layer_is_published_fails(region: str, architecture: lambda_.Architecture) -> None:
    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012", region=region))
    with pytest.raises(PropError) as error:
        StreamingFunction(
            stack, "Web", code=lambda_.Code.from_inline(INLINE), handler="run.sh", adapter="web_adapter",
            architecture=architecture,
        )  # fmt: skip
    assert problems_of(error) == ["adapter"]
    assert f"no Lambda Web Adapter layer is published for {architecture.name} in {region}" in str(error.value)


def test_a_python_handler_must_be_module_function(scratch: cdk.Stack) -> None:
    with pytest.raises(PropError) as error:
        StreamingFunction(scratch, "A", code=lambda_.Code.from_inline(INLINE), handler="handler")
    assert problems_of(error) == ["handler"]
    ok = StreamingFunction(scratch, "B", code=lambda_.Code.from_inline(INLINE), handler="pkg.sub.module.handler")
    assert ok.handler == "pkg.sub.module.handler" and ok.adapter == "python"


def test_rest_api_props_are_validated_together(scratch: cdk.Stack) -> None:
    fn = function(scratch)
    with pytest.raises(PropError) as error:
        StreamingRestApi(
            scratch,
            "Bad",
            function=fn,
            path="no-slash",
            methods=["GET", "GET", "TRACE"],
            timeout=cdk.Duration.minutes(16),
            endpoint_type=apigw.EndpointType.PRIVATE,
            stage_name="bad stage",
        )
    assert problems_of(error) == ["stage_name", "authorizer", "path", "methods", "methods", "endpoint_type", "timeout"]
    message = str(error.value)
    assert "a streaming route is never open by default" in message
    assert "PRIVATE" in message and "between 50 milliseconds and 15 minutes, got 16 minutes" in message


def test_rest_api_authorization_choices_exclude_each_other(scratch: cdk.Stack) -> None:
    with pytest.raises(PropError) as error:
        StreamingRestApi(
            scratch, "Both", function=function(scratch), iam_authorization=True, unsafe_allow_anonymous=True
        )
    assert problems_of(error) == ["authorizer"]
    assert "(got iam_authorization, unsafe_allow_anonymous)" in str(error.value)


def test_rest_timeout_must_cover_the_functions_own(scratch: cdk.Stack) -> None:
    fn = function(scratch, timeout=cdk.Duration.minutes(10))
    with pytest.raises(PropError) as error:
        StreamingRestApi(scratch, "Short", function=fn, iam_authorization=True, timeout=cdk.Duration.minutes(5))
    assert problems_of(error) == ["timeout"]
    assert "shorter than the function's timeout (10 minutes)" in str(error.value)
    api = StreamingRestApi(scratch, "Default", function=fn, iam_authorization=True)
    assert api.timeout.to_minutes() == 10
    assert api.idle_timeout.to_minutes() == 5


def test_a_plain_function_streams_through_the_rest_api_with_a_five_minute_default(scratch: cdk.Stack) -> None:
    plain = lambda_.Function(
        scratch, "Node", runtime=lambda_.Runtime.NODEJS_22_X, handler="index.handler",
        code=lambda_.Code.from_inline("exports.handler = awslambda.streamifyResponse(async () => {});"),
    )  # fmt: skip
    api = StreamingRestApi(scratch, "Plain", function=plain, iam_authorization=True)
    assert api.function is plain and api.timeout.to_minutes() == 5
    slow = lambda_.Function(
        scratch, "Slow", runtime=lambda_.Runtime.NODEJS_22_X, handler="index.handler",
        code=lambda_.Code.from_inline("exports.handler = awslambda.streamifyResponse(async () => {});"),
        timeout=cdk.Duration.minutes(9),
    )  # fmt: skip
    assert StreamingRestApi(scratch, "Slow9", function=slow, iam_authorization=True).timeout.to_minutes() == 9
    with pytest.raises(PropError) as error:
        StreamingRestApi(scratch, "Cut", function=slow, iam_authorization=True, timeout=cdk.Duration.minutes(2))
    assert problems_of(error) == ["timeout"]
    imported = lambda_.Function.from_function_arn(
        scratch, "Imported", "arn:aws:lambda:us-east-1:123456789012:function:f"
    )
    assert StreamingRestApi(scratch, "Imp", function=imported, iam_authorization=True).timeout.to_minutes() == 5


def test_function_url_refuses_tenant_isolated_and_vpc_functions(scratch: cdk.Stack) -> None:
    tenant = lambda_.Function(
        scratch, "Tenant", runtime=lambda_.Runtime.PYTHON_3_14, handler="index.handler",
        code=lambda_.Code.from_inline(INLINE), tenancy_config=lambda_.TenancyConfig.PER_TENANT,
    )  # fmt: skip
    with pytest.raises(PropError) as error:
        StreamingFunctionUrl(scratch, "TenantUrl", function=tenant)
    assert problems_of(error) == ["function"] and "tenant-isolated" in str(error.value)
    vpc = ec2.Vpc(scratch, "Vpc", max_azs=1, nat_gateways=0)
    in_vpc = lambda_.Function(
        scratch, "InVpc", runtime=lambda_.Runtime.PYTHON_3_14, handler="index.handler",
        code=lambda_.Code.from_inline(INLINE), vpc=vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
    )  # fmt: skip
    with pytest.raises(PropError) as error:
        StreamingFunctionUrl(scratch, "VpcUrl", function=in_vpc)
    assert problems_of(error) == ["function"] and "in a VPC" in str(error.value)
    with pytest.raises(PropError) as error:
        StreamingFunctionUrl(scratch, "Nothing", function="arn:aws:lambda:us-east-1:1:function:x")  # type: ignore[arg-type]
    assert problems_of(error) == ["function"]


def test_websocket_props_are_validated_together(scratch: cdk.Stack) -> None:
    web = StreamingFunction(
        scratch, "Web", code=lambda_.Code.from_inline(INLINE), handler="run.sh", adapter="web_adapter"
    )
    table = dynamodb.Table(
        scratch, "Other", partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING)
    )
    with pytest.raises(PropError) as error:
        WebSocketStreamingApi(
            scratch,
            "Bad",
            function=web,
            authorizer=authorizers.WebSocketLambdaAuthorizer(
                "Auth",
                lambda_.Function(
                    scratch,
                    "AuthFn",
                    runtime=lambda_.Runtime.PYTHON_3_14,
                    handler="index.handler",
                    code=lambda_.Code.from_inline(INLINE),
                ),
            ),
            unsafe_allow_anonymous=True,
            stage_name="",
            throttling_rate_limit=0,
            throttling_burst_limit=6000,
            frame_bytes=40_000,
            frame_interval=cdk.Duration.seconds(10),
            driver_timeout=cdk.Duration.minutes(20),
            driver_memory_size=64,
            existing_table=table,
            table_props={"partition_key": dynamodb.Attribute(name="x", type=dynamodb.AttributeType.STRING)},
        )
    assert problems_of(error) == [
        "function", "unsafe_allow_anonymous", "stage_name", "throttling_rate_limit", "throttling_burst_limit",
        "frame_bytes", "frame_interval", "driver_timeout", "driver_memory_size", "existing_table", "table_props",
        "existing_table",
    ]  # fmt: skip
    assert "uses the Lambda Web Adapter" in str(error.value)
    with pytest.raises(PropError) as error:
        WebSocketStreamingApi(scratch, "Plain", function=lambda_.Function.from_function_name(scratch, "F", "f"))  # type: ignore[arg-type]
    assert problems_of(error) == ["function"]


def test_caching_added_after_the_construct_fails_synthesis(tmp_path: Any) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Cached", env=cdk.Environment(account="123456789012", region="us-east-1"))
    api = StreamingRestApi(stack, "Rest", function=function(stack), iam_authorization=True)
    stage = api.api.deployment_stage.node.default_child
    assert isinstance(stage, apigw.CfnStage)
    stage.cache_cluster_enabled = True
    stage.method_settings = [
        apigw.CfnStage.MethodSettingProperty(http_method="*", resource_path="/*", caching_enabled=True)
    ]
    with pytest.raises(RuntimeError) as error:
        app.synth()
    assert "a stage of a streaming API cannot have a cache cluster" in str(error.value)
    assert "streamed responses cannot be cached" in str(error.value)


def test_contract_names_the_construct_sets(streaming_app: Any) -> None:
    driver = props_of(streaming_app, "StreamingDefaults", "driver")
    names = set(driver["Environment"]["Variables"])
    assert names == {
        contract.ENV_STREAMING_HANDLER, contract.ENV_CONNECTIONS_TABLE, contract.ENV_FRAME_BYTES,
        contract.ENV_FRAME_MS, contract.ENV_WS_DISPATCH,
    }  # fmt: skip
