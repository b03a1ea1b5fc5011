"""TenantIsolatedFunction and TenantApi: template assertions, cdk-nag, cfn-lint, normalized snapshots, prop errors.

The templates come from the session's one app (``tenancy_app.py``); prop errors are raised while
constructing, without synthesis; the synth-time checks synthesize one small app holding every
violation at once.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations_v2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template
from syrupy.extensions.json import JSONSnapshotExtension
from tenancy_app import COGNITO_ISSUER, HANDLER, TenancyApp, function

from cdk_serverless_patterns.core import PropError
from cdk_serverless_patterns.tenancy import TenantApi, TenantIsolatedFunction, TenantPlan
from cdk_serverless_patterns.testing import normalize_template
from cdk_serverless_patterns.testing.checks import cfn_lint_findings, format_table

STACKS = ("TenancyLambda", "TenancyJwt", "TenancyJwksCmk", "TenancyClientHeader")


def resources_of(raw: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in raw["Resources"].items() if v["Type"] == kind}


def statements_of_role(raw: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    found = []
    for policy in resources_of(raw, "AWS::IAM::Policy").values():
        if any(r.get("Ref", "").startswith(role_prefix) for r in policy["Properties"]["Roles"]):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


# ----- the function --------------------------------------------------------------------------------------
def test_functions_are_per_tenant_with_json_logs_levels_tracing_and_the_helper_layer(tenancy_app: TenancyApp) -> None:
    template = Template.from_json(tenancy_app.template("TenancyLambda"))
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "tenancy_runtime.handler",  # the helper runs the user's handler through its checks
            "TenancyConfig": {"TenantIsolationMode": "PER_TENANT"},
            "LoggingConfig": {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN"},
            "TracingConfig": {"Mode": "Active"},
            "Layers": [{"Ref": tenancy_app.ids["layer"]}],
            "Environment": {
                "Variables": {
                    "TENANCY_AUTHORIZER_KIND": "lambda",
                    "TENANCY_TENANT_CLAIM": "tenant_id",
                    "TENANCY_METRIC_NAMESPACE": "CdkServerlessPatterns/Tenancy",
                    "TENANCY_HANDLER": "index.handler",
                }
            },
        },
    )
    reports = tenancy_app.template("TenancyLambda")["Resources"][tenancy_app.ids["reports"]]["Properties"]
    assert reports["LoggingConfig"]["ApplicationLogLevel"] == "DEBUG"
    assert reports["LoggingConfig"]["SystemLogLevel"] == "INFO"
    # one helper layer per stack, shared by both functions
    assert len(resources_of(tenancy_app.template("TenancyLambda"), "AWS::Lambda::LayerVersion")) == 1


def test_every_function_of_every_stack_is_per_tenant_except_the_authorizer(tenancy_app: TenancyApp) -> None:
    for stack in STACKS:
        for logical_id, resource in resources_of(tenancy_app.template(stack), "AWS::Lambda::Function").items():
            is_authorizer = resource["Properties"]["Handler"] == "tenancy_authorizer.handler"
            assert ("TenancyConfig" in resource["Properties"]) != is_authorizer, f"{stack}/{logical_id}"


def test_logs_insights_queries_per_function_and_per_tenant(tenancy_app: TenancyApp) -> None:
    queries = resources_of(tenancy_app.template("TenancyJwksCmk"), "AWS::Logs::QueryDefinition")
    names = sorted(q["Properties"]["Name"].rsplit("/", 2)[-2:][-1] for q in queries.values())
    assert names == ["acme", "tenant-environments", "tenant-lines"]
    by_name = {q["Properties"]["Name"].split("/", 1)[1]: q["Properties"]["QueryString"] for q in queries.values()}
    assert 'filter coalesce(tenantId, record.tenantId) = "acme"' in by_name["tenant/acme"]
    assert "count_distinct(@logStream) as environments" in by_name["tenant-environments"]


def test_alarms_with_a_topic(tenancy_app: TenancyApp) -> None:
    alarms = resources_of(tenancy_app.template("TenancyJwksCmk"), "AWS::CloudWatch::Alarm")
    by_metric = sorted((a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values())
    assert by_metric == [("AWS/ApiGateway", "5XXError"), ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Errors")]
    assert all(a["Properties"]["AlarmActions"] for a in alarms.values())
    assert not resources_of(tenancy_app.template("TenancyLambda"), "AWS::CloudWatch::Alarm")  # no topic, no alarm


# ----- the Lambda authorizer ----------------------------------------------------------------------------------
def test_lambda_integrations_map_the_tenant_header_from_the_authorizer_context(tenancy_app: TenancyApp) -> None:
    methods = resources_of(tenancy_app.template("TenancyLambda"), "AWS::ApiGateway::Method")
    assert len(methods) == 3
    for method in methods.values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "CUSTOM"
        assert props["ApiKeyRequired"] is True  # usage plans apply
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert props["Integration"]["RequestParameters"] == {
            "integration.request.header.X-Amz-Tenant-Id": "context.authorizer.tenantId"
        }


def test_request_authorizer_caches_by_token_for_a_bounded_time(tenancy_app: TenancyApp) -> None:
    [authorizer] = resources_of(tenancy_app.template("TenancyLambda"), "AWS::ApiGateway::Authorizer").values()
    assert authorizer["Properties"]["Type"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 60  # the default: a cached Allow outlives exp
    [cmk] = resources_of(tenancy_app.template("TenancyJwksCmk"), "AWS::ApiGateway::Authorizer").values()
    assert cmk["Properties"]["AuthorizerResultTtlInSeconds"] == 60


def test_authorizer_function_configuration_and_least_privilege(tenancy_app: TenancyApp) -> None:
    raw = tenancy_app.template("TenancyLambda")
    props = raw["Resources"][tenancy_app.ids["authorizer"]]["Properties"]
    assert props["Environment"]["Variables"] == {
        "TENANCY_ISSUER": "https://issuer.example.com/",
        "TENANCY_AUDIENCE": "orders-api",
        "TENANCY_ALGORITHM": "RS256",
        "TENANCY_KEY_SOURCE": "secret",
        "TENANCY_KEY_SECRET_ARN": {"Ref": tenancy_app.ids["secret"]},
        "TENANCY_REGISTRY_TABLE": {"Ref": tenancy_app.ids["registry"]},
        "TENANCY_TENANT_CLAIM": "tenant_id",
        "TENANCY_LEEWAY_SECONDS": "30",
        "TENANCY_REGISTRY_CACHE_SECONDS": "30",
        "TENANCY_DECISION_CACHE_SECONDS": "30",
    }
    statements = statements_of_role(raw, "ApiAuthorizerRole")
    actions = sorted({a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])})
    assert actions == [
        "dynamodb:GetItem", "logs:CreateLogStream", "logs:PutLogEvents", "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue", "xray:PutTelemetryRecords", "xray:PutTraceSegments",
    ]  # fmt: skip
    get_item = next(s for s in statements if s["Action"] == "dynamodb:GetItem")
    assert get_item["Resource"] == {"Fn::GetAtt": [tenancy_app.ids["registry"], "Arn"]}
    # no secret, key or token literal in the environment
    assert not any("PRIVATE" in str(v) or "BEGIN" in str(v) for v in props["Environment"]["Variables"].values())


def test_jwks_url_es256_and_cmk_reach_the_authorizer(tenancy_app: TenancyApp) -> None:
    raw = tenancy_app.template("TenancyJwksCmk")
    variables = raw["Resources"][tenancy_app.ids["cmk_authorizer"]]["Properties"]["Environment"]["Variables"]
    assert variables["TENANCY_KEY_SOURCE"] == "jwks_url"
    assert variables["TENANCY_JWKS_URL"] == "https://login.example.com/.well-known/jwks.json"
    assert variables["TENANCY_ALGORITHM"] == "ES256"
    assert variables["TENANCY_AUDIENCE"] == "a,b"
    assert variables["TENANCY_TENANT_CLAIM"] == "org"
    assert variables["TENANCY_LEEWAY_SECONDS"] == "10"
    assert variables["TENANCY_REGISTRY_CACHE_SECONDS"] == "5"
    assert "TENANCY_KEY_SECRET_ARN" not in variables
    kms_actions = {
        a
        for s in statements_of_role(raw, "ApiAuthorizerRole")
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if a.startswith("kms:")
    }
    assert kms_actions == {"kms:Decrypt"}  # a registry reader never encrypts


def test_usage_plans_per_plan_with_the_key_from_the_authorizer(tenancy_app: TenancyApp) -> None:
    raw = tenancy_app.template("TenancyLambda")
    plans = {p["Properties"]["UsagePlanName"].rsplit("-", 1)[1]: p["Properties"] for p in
             resources_of(raw, "AWS::ApiGateway::UsagePlan").values()}  # fmt: skip
    assert plans["gold"]["Throttle"] == {"BurstLimit": 100, "RateLimit": 50}
    assert plans["gold"]["Quota"] == {"Limit": 100000, "Period": "DAY"}
    assert plans["basic"]["Throttle"] == {"BurstLimit": 10, "RateLimit": 5}
    assert "Quota" not in plans["basic"]
    [api] = resources_of(raw, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"


def test_registry_table(tenancy_app: TenancyApp) -> None:
    Template.from_json(tenancy_app.template("TenancyLambda")).has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [{"AttributeName": "tenantId", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
                "SSESpecification": {"SSEEnabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "DeletionProtectionEnabled": True,
            },
            "DeletionPolicy": "Retain",
        },
    )


# ----- the gateway's JWT authorizer ------------------------------------------------------------------------------
def test_auto_picks_the_gateway_jwt_authorizer_with_the_tenant_claim_required(tenancy_app: TenancyApp) -> None:
    raw = tenancy_app.template("TenancyJwt")
    [authorizer] = resources_of(raw, "AWS::ApiGateway::Authorizer").values()
    assert authorizer["Properties"]["Type"] == "JWT"
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["Properties"]["JwtConfiguration"] == {
        "DefaultAlgorithms": ["RS256"],
        "Issuers": [
            {
                "Issuer": COGNITO_ISSUER,
                "Audiences": ["client-id-1"],
                "AdditionalClaims": [{"ClaimName": "tenant_id", "Format": "SINGLE_STRING", "Required": True}],
            }
        ],
    }
    assert authorizer["Metadata"]["cfn-lint"] == {"config": {"ignore_checks": ["E3002"]}}
    assert not [f for f in resources_of(raw, "AWS::Lambda::Function").values() if "tenancy_authorizer" in str(f)]


def test_jwt_integrations_set_the_tenant_header_from_the_parsed_claim(tenancy_app: TenancyApp) -> None:
    raw = tenancy_app.template("TenancyJwt")
    for method in resources_of(raw, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "JWT"
        assert props["AuthorizerId"] == {"Ref": next(iter(resources_of(raw, "AWS::ApiGateway::Authorizer")))}
        integration = props["Integration"]
        assert integration["Type"] == "AWS"  # a template can parse the claim's JSON text; a mapping cannot
        assert integration["PassthroughBehavior"] == "NEVER"
        template = integration["RequestTemplates"]["application/json"]
        assert "#set($tenant = $util.parseJson($context.authorizer.claims.tenant_id))" in template
        assert "#set($context.requestOverride.header.X-Amz-Tenant-Id = $tenant)" in template
        assert "RequestParameters" not in integration
    variables = raw["Resources"][tenancy_app.ids["jwt_function"]]["Properties"]["Environment"]["Variables"]
    assert variables["TENANCY_AUTHORIZER_KIND"] == "jwt"
    assert variables["TENANCY_REGISTRY_TABLE"] == {"Ref": tenancy_app.ids["jwt_registry"]}
    statements = statements_of_role(raw, "OrdersRole")
    assert {"Action": "dynamodb:GetItem", "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [tenancy_app.ids["jwt_registry"], "Arn"]}} in statements  # fmt: skip


# ----- the client-header opt-in ------------------------------------------------------------------------------
def test_client_header_opt_in_is_iam_authorized_and_source_restricted(tenancy_app: TenancyApp) -> None:
    raw = tenancy_app.template("TenancyClientHeader")
    [method] = resources_of(raw, "AWS::ApiGateway::Method").values()
    assert method["Properties"]["AuthorizationType"] == "AWS_IAM"
    assert method["Properties"]["Integration"]["RequestParameters"] == {
        "integration.request.header.X-Amz-Tenant-Id": "method.request.header.X-Tenant-Id"
    }
    assert method["Properties"]["RequestParameters"] == {"method.request.header.X-Tenant-Id": True}
    [api] = resources_of(raw, "AWS::ApiGateway::RestApi").values()
    policy = json.dumps(api["Properties"]["Policy"])
    assert "10.0.0.0/8" in policy and "NotIpAddress" in policy


# ----- checks and snapshots ----------------------------------------------------------------------------------
def test_cdk_nag_is_clean(tenancy_app: TenancyApp) -> None:
    assert not tenancy_app.assembly.nag_findings, format_table(tenancy_app.assembly.nag_findings)


def test_cfn_lint_is_clean(tenancy_app: TenancyApp) -> None:
    # W3005 (a DependsOn the role reference already implies) is the CDK's own, in every function it makes;
    # the integ assertion stack is the integ-tests library's scaffolding: errors only there.
    findings = [
        f
        for f in cfn_lint_findings(tenancy_app.assembly.templates)
        if f.severity == "error" or (f.rule != "W3005" and not f.path.startswith("TenancyInteg/"))
    ]
    assert not findings, format_table(findings)


@pytest.mark.parametrize("stack", STACKS)
def test_snapshot(tenancy_app: TenancyApp, stack: str, snapshot: Any) -> None:
    assert normalize_template(tenancy_app.template(stack)) == snapshot.use_extension(JSONSnapshotExtension)


# ----- prop errors (no synthesis) --------------------------------------------------------------------------------
@pytest.fixture
def scratch() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "Scratch", env=cdk.Environment(account="123456789012", region="us-east-1"))


def problems_of(error: pytest.ExceptionInfo[PropError]) -> list[str]:
    return [problem.split(":", 1)[0] for problem in error.value.problems]


def test_function_props_are_validated_together(scratch: cdk.Stack) -> None:
    with pytest.raises(PropError) as error:
        TenantIsolatedFunction(
            scratch,
            "Bad",
            handler="has space",
            memory_size=64,
            timeout=cdk.Duration.seconds(60),
            application_log_level="LOUD",
            system_log_level="ERROR",
            metric_namespace="AWS/Lambda",
            environment={"TENANCY_AUTHORIZER_KIND": "client_header"},
            function_props={
                "snap_start": lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS,
                "events": [],
                "current_version_options": lambda_.VersionOptions(provisioned_concurrent_executions=2),
                "tenancy_config": lambda_.TenancyConfig.PER_TENANT,
            },
        )
    assert problems_of(error) == [
        "code", "handler", "memory_size", "timeout", "application_log_level", "system_log_level", "metric_namespace",
        "function_props.current_version_options", "function_props.events", "function_props.snap_start",
        "function_props.tenancy_config", "environment",
    ]  # fmt: skip
    assert "TenantIsolatedFunction has invalid props" in str(error.value)


def test_api_props_are_validated_together(scratch: cdk.Stack) -> None:
    secret = secretsmanager.Secret(scratch, "Keys")
    with pytest.raises(PropError) as error:
        TenantApi(
            scratch,
            "Bad",
            issuer="",
            audiences=[],
            authorizer="lambda",
            algorithm="none",
            jwks_url="http://insecure.example.com/jwks",
            signing_key_secret=secret,
            tenant_claim="cognito:groups",
            leeway=cdk.Duration.minutes(10),
            registry_cache_ttl=cdk.Duration.hours(1),
            authorizer_cache_ttl=cdk.Duration.hours(1),
            plans={"gold": TenantPlan(rate_limit=0, burst_limit=0)},
            stage_name="bad stage",
        )
    assert problems_of(error) == [
        "stage_name", "leeway", "registry_cache_ttl", "authorizer_cache_ttl", "tenant_claim", "issuer", "audiences",
        "algorithm", "jwks_url", "jwks_url", "plans",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("props", "prop", "message"),
    [
        ({"algorithm": "HS256", "jwks_url": "https://x.example.com/jwks"}, "algorithm", "HS256 keys are secret"),
        ({"authorizer": "lambda"}, "signing_key_secret", "exactly one key source"),
        ({"authorizer": "gateway_jwt", "issuer": "http://insecure.example.com"}, "issuer", "https URL"),
        ({"authorizer": "gateway_jwt", "issuer": "https://x.example.com/?q=1"}, "issuer", "https URL"),
        ({"authorizer": "gateway_jwt", "algorithm": "HS256"}, "algorithm", "is not one of"),
        ({"authorizer": "gateway_jwt", "plans": {"gold": TenantPlan(1, 1)}}, "plans", "need the Lambda authorizer"),
        ({"authorizer": "magic"}, "authorizer", "is not one of"),
        ({"tenant_claim": "aud"}, "tenant_claim", "not one of"),
        ({"unsafe_trust_client_tenant_header": "X-Tenant-Id"}, "unsafe_trust_client_tenant_header", "any tenant"),
    ],
)
def test_api_prop_rules(scratch: cdk.Stack, props: dict[str, Any], prop: str, message: str) -> None:
    base: dict[str, Any] = {"issuer": COGNITO_ISSUER, "audiences": ["client"]}
    if "unsafe_trust_client_tenant_header" in props:
        base = {}
    with pytest.raises(PropError) as error:
        TenantApi(scratch, "Api", **{**base, **props})
    assert any(p.startswith(f"{prop}:") and message in p for p in error.value.problems), error.value.problems


def test_auto_falls_back_to_the_lambda_authorizer_where_the_gateway_cannot(scratch: cdk.Stack) -> None:
    secret = secretsmanager.Secret(scratch, "Keys")
    by_secret = TenantApi(scratch, "A", issuer="tokens.internal", audiences=["x"], algorithm="HS256",
                          signing_key_secret=secret)  # fmt: skip
    by_url = TenantApi(
        scratch, "B", issuer="https://x.example.com", audiences=["x"], jwks_url="https://x.example.com/k"
    )
    by_plan = TenantApi(scratch, "C", issuer="https://x.example.com", audiences=["x"], jwks_url="https://x.example.com/k",
                        plans={"gold": TenantPlan(1, 1)})  # fmt: skip
    gateway = TenantApi(scratch, "D", issuer=COGNITO_ISSUER, audiences=["x"])
    assert [a.authorizer_kind for a in (by_secret, by_url, by_plan, gateway)] == [
        "lambda",
        "lambda",
        "lambda",
        "gateway_jwt",
    ]
    assert gateway.authorizer_function is None and gateway.jwt_authorizer is not None
    assert by_secret.lambda_authorizer is not None


def test_add_function_rules(scratch: cdk.Stack) -> None:
    api = TenantApi(scratch, "Api", issuer=COGNITO_ISSUER, audiences=["x"])
    plain = lambda_.Function(scratch, "Plain", runtime=lambda_.Runtime.PYTHON_3_14, handler="index.handler",
                             code=lambda_.Code.from_inline(HANDLER))  # fmt: skip
    with pytest.raises(PropError) as error:
        api.add_function("orders", plain, methods=["FETCH"])  # type: ignore[arg-type]
    assert problems_of(error) == ["function", "path", "methods"]
    tenant_function = function(scratch, "Orders")
    api.add_function("/orders", tenant_function)
    with pytest.raises(PropError, match="GET /orders is routed already"):
        api.add_function("/orders", tenant_function)
    other = TenantApi(
        scratch, "Other", issuer="https://x.example.com", audiences=["x"], jwks_url="https://x.example.com/k"
    )
    with pytest.raises(PropError, match="already behind an API with the jwt authorizer"):
        other.add_function("/orders", tenant_function)


def test_tenant_query_and_metric_rules(scratch: cdk.Stack) -> None:
    fn = function(scratch, "Orders")
    fn.add_tenant_query("acme")
    with pytest.raises(PropError, match="has a query already"):
        fn.add_tenant_query("acme")
    with pytest.raises(PropError, match="is not a tenant id"):
        fn.add_tenant_query('x" or 1=1')
    metric = fn.metric("Duration", tenant_id="acme", statistic="p99")
    assert metric.metric_name == "Duration" and metric.dimensions == {"TenantId": "acme"}
    with pytest.raises(PropError):
        fn.metric("Latency", tenant_id="../x")


# ----- synth-time checks of what is added around the function --------------------------------------------------
def test_everything_aws_would_reject_later_is_one_synth_error(tmp_path: Any) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Violations", env=cdk.Environment(account="123456789012", region="us-east-1"))
    fn = function(stack, "Orders", runtime_layer=False)
    queue = sqs.Queue(stack, "Queue")
    with pytest.raises(RuntimeError, match="EventSourceNotSupportedForTenantIsolation"):
        fn.function.add_event_source(sources.SqsEventSource(queue))  # the CDK refuses this form itself
    lambda_.EventSourceMapping(stack, "Mapping", target=fn.function, event_source_arn=queue.queue_arn)
    lambda_.CfnUrl(stack, "Url", auth_type="AWS_IAM", target_function_arn=fn.function.function_arn)
    with pytest.raises(RuntimeError, match="Provisioned Concurrency is not supported"):
        lambda_.Alias(stack, "Live", alias_name="live", version=fn.function.current_version,
                      provisioned_concurrent_executions=1)  # fmt: skip
    lambda_.CfnAlias(
        stack, "Warm", function_name=fn.function.function_name, function_version="1", name="warm",
        provisioned_concurrency_config=lambda_.CfnAlias.ProvisionedConcurrencyConfigurationProperty(
            provisioned_concurrent_executions=1
        ),
    )  # fmt: skip
    events.Rule(
        stack,
        "Nightly",
        schedule=events.Schedule.rate(cdk.Duration.days(1)),
        targets=[targets.LambdaFunction(fn.function)],
    )
    sns.Topic(stack, "Topic").add_subscription(subscriptions.LambdaSubscription(fn.function))
    http_api = apigwv2.HttpApi(stack, "HttpApi")
    http_api.add_routes(path="/x", integration=integrations_v2.HttpLambdaIntegration("Integration", fn.function))
    fn.function.add_permission("S3", principal=cdk.aws_iam.ServicePrincipal("s3.amazonaws.com"))
    cdk.aws_apigateway.LambdaRestApi(stack, "Plain", handler=fn.function, cloud_watch_role=False)
    with pytest.raises(RuntimeError) as error:
        app.synth()
    message = str(error.value)
    for expected in (
        "event source mapping: Lambda rejects event sources",
        "function URL: cannot be combined",
        "provisioned concurrency: cannot be combined",
        "EventBridge rule target",
        "SNS subscription",
        "HTTP API (v2) integration",
        "invoke permission for s3.amazonaws.com",
        "REST API method without X-Amz-Tenant-Id",
    ):
        assert expected in message, expected


def test_overrides_of_tenancy_and_snap_start_fail_synthesis(tmp_path: Any) -> None:
    from cdk_serverless_patterns.testing.checks import read_nag_report

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Overrides", env=cdk.Environment(account="123456789012", region="us-east-1"))
    fn = function(stack, "Orders", runtime_layer=False)
    cfn = fn.function.node.default_child
    cfn.add_property_override("SnapStart", {"ApplyOn": "PublishedVersions"})
    cfn.add_property_deletion_override("TenancyConfig")
    fine = function(stack, "Fine", runtime_layer=False)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    findings = {
        (f.rule, f.path)
        for f in read_nag_report(tmp_path)
        if f.acknowledge_with.startswith("cdk-serverless-patterns-tenancy::")
    }
    assert findings == {
        ("TenancyUnchanged", "Overrides/Orders/Function/Resource"),
        ("NoSnapStart", "Overrides/Orders/Function/Resource"),
    }
    assert fine.function.node.path not in str(findings)
