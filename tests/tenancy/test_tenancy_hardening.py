"""Regression tests of the tenancy review's findings that live in the constructs.

- the ``gateway_jwt`` request template renders a JSON proxy event whatever the request holds (rendered
  by a small evaluator of exactly the VTL the template uses, with ``$util.escapeJavaScript`` as
  API Gateway implements it: Apache commons-lang ``StringEscapeUtils.escapeJavaScript``);
- a crash with an empty or multi-line ``errorMessage`` is an error answer, never a 200;
- the client-header opt-in admits only the account's principals;
- synth-time errors for tenant headers from client headers or literals, and for every invoker that
  cannot pass a tenant id (through the function, a version or an alias);
- ``function_props`` environment merges; the function's handler is the helper's entry point.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_appsync as appsync
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from tenancy_app import COGNITO_ISSUER, TenancyApp, function

from cdk_serverless_patterns.core import PropError
from cdk_serverless_patterns.tenancy import TenantApi, TenantIsolatedFunction
from cdk_serverless_patterns.tenancy.tenant_api import _PROXY_RESPONSE_TEMPLATE, _jwt_request_template
from cdk_serverless_patterns.tenancy.tenant_isolated_function import _properties

ENV = cdk.Environment(account="123456789012", region="us-east-1")


# ----- a small evaluator of the request template's VTL ---------------------------------------------------------
def escape_javascript(text: str) -> str:
    """``$util.escapeJavaScript``: commons-lang 2 ``StringEscapeUtils.escapeJavaScript`` on a Java (UTF-16) string."""
    out: list[str] = []
    units = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(units), 2):
        code = int.from_bytes(units[i : i + 2], "big")
        ch = chr(code)
        if code > 0x7F:
            out.append(f"\\u{code:04X}")
        elif code < 32:
            out.append({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}.get(code, f"\\u{code:04X}"))
        elif ch in "'\"\\/":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


_ESCAPED = re.compile(
    r"\$util\.escapeJavaScript\((?P<ref>\$[A-Za-z.]+(?:\(\$name\))?)\)"
    r"(?P<replace>\.replaceAll\(\"\\\\'\", \"'\"\))?"
)
_FOREACH = re.compile(
    r"\{#foreach\(\$name in \$params\.(?P<kind>header|querystring|path)\.keySet\(\)\)"
    r"\"(?P<key>[^\"]*(?:\"[^\"]*\"[^\"]*)*?)\": \"(?P<value>.*?)\"#if\(\$foreach\.hasNext\),#end#end\}"
)


def render(template: str, request: dict[str, Any]) -> str:
    """The template rendered for ``request`` (params by kind, path, body, claim JSON text, context)."""

    def evaluate(text: str, names: dict[str, str]) -> str:
        def one(match: re.Match[str]) -> str:
            value = names[match["ref"]]
            escaped = escape_javascript(value)
            # Java's String.replaceAll("\\'", "'"): the regex \\' is a backslash and an apostrophe
            return escaped.replace("\\'", "'") if match["replace"] else escaped

        return _ESCAPED.sub(one, text)

    lines = template.splitlines()
    assert lines[0].startswith("#set($tenant = $util.parseJson($context.authorizer.claims.")
    assert lines[1] == "#set($context.requestOverride.header.X-Amz-Tenant-Id = $tenant)"
    assert lines[2] == "#set($params = $input.params())"
    body = "\n".join(lines[3:])

    def foreach(match: re.Match[str]) -> str:
        entries = request["params"][match["kind"]]
        parts = []
        for name, value in entries.items():
            names = {"$name": name, f"$params.{match['kind']}.get($name)": value}
            parts.append(f'"{evaluate(match["key"], names)}": "{evaluate(match["value"], names)}"')
        return "{" + ",".join(parts) + "}"

    body = _FOREACH.sub(foreach, body)
    body_if = re.compile(r'#if\("\$!input\.body" != ""\)"(?P<then>[^\n]*?)"#\{else\}null#end')
    body = body_if.sub(
        lambda m: f'"{evaluate(m["then"], {"$input.body": request["body"]})}"' if request["body"] else "null", body
    )
    body = evaluate(body, {"$context.path": request["path"]})
    body = body.replace("$context.authorizer.claims.tenant_id", request["claim"])
    for ref in ("resourcePath", "httpMethod", "requestId", "stage", "apiId"):
        body = body.replace(f"$context.{ref}", request["context"][ref])
    assert "$" not in body.replace("$context.requestOverride", ""), body  # nothing left unevaluated
    return body


HOSTILE = [
    "O'Brien",
    'say "hi"',
    "back\\slash and \\' and \\\\'",
    "line\nbreak\r\ttab\b\f",
    "\x00\x01\x1f control",
    "naïve café 東京 😀",
    "</script> /slashes/",
    "'",
    "\\",
    "{\"json\": 'inside'}",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_jwt_request_template_is_json_for_hostile_request_values(value: str) -> None:
    request = {
        "params": {
            "header": {"X-Note": value, value: "as a name"},
            "querystring": {"q": value},
            "path": {"orderId": value},
        },
        "path": f"/orders/{value}",
        "body": f'{{"note": "{value}"}} and {value}',
        "claim": '"acme"',
        "context": {
            "resourcePath": "/orders/{orderId}",
            "httpMethod": "POST",
            "requestId": "r-1",
            "stage": "prod",
            "apiId": "abc123",
        },
    }
    event = json.loads(render(_jwt_request_template("tenant_id"), request))
    assert event["headers"] == {"X-Note": value, value: "as a name"}
    assert event["queryStringParameters"] == {"q": value}
    assert event["pathParameters"] == {"orderId": value}
    assert event["path"] == f"/orders/{value}"
    assert event["body"] == request["body"]
    assert event["requestContext"]["authorizer"] == {"claims": {"tenant_id": "acme"}}
    assert event["resource"] == "/orders/{orderId}" and event["httpMethod"] == "POST"


def test_jwt_request_template_without_a_body_or_params() -> None:
    request = {
        "params": {"header": {}, "querystring": {}, "path": {}},
        "path": "/orders",
        "body": "",
        "claim": '"globex"',
        "context": {"resourcePath": "/orders", "httpMethod": "GET", "requestId": "r", "stage": "s", "apiId": "a"},
    }
    event = json.loads(render(_jwt_request_template("tenant_id"), request))
    assert event["body"] is None and event["headers"] == {} and event["queryStringParameters"] == {}


def test_every_escaped_value_undoes_the_apostrophe_escape() -> None:
    """Without the replaceAll, an apostrophe renders as \\' and the event is not JSON: the evaluator above
    would fail; this pins the template text itself too."""
    template = _jwt_request_template("tenant_id")
    escapes = re.findall(r"\$util\.escapeJavaScript\([^\n]*?\)\)?(?:\.replaceAll\(\"\\\\'\", \"'\"\))?", template)
    assert len(escapes) == 8  # path, body, and a name and a value for each of the three kinds of params
    assert all(e.endswith(""".replaceAll("\\\\'", "'")""") for e in escapes), escapes
    with pytest.raises(json.JSONDecodeError):
        json.loads('"' + escape_javascript("O'Brien") + '"')  # what the review found


# ----- errors of gateway_jwt integrations ----------------------------------------------------------------------
def test_any_error_message_selects_the_error_response_and_a_crash_without_status_is_502(
    tenancy_app: TenancyApp,
) -> None:
    methods = [
        r for r in tenancy_app.template("TenancyJwt")["Resources"].values() if r["Type"] == "AWS::ApiGateway::Method"
    ]
    assert methods
    for method in methods:
        responses = method["Properties"]["Integration"]["IntegrationResponses"]
        [error] = [r for r in responses if r.get("SelectionPattern")]
        pattern = re.compile(error["SelectionPattern"])
        for message in ("boom", "Traceback (most recent call last):\n  File x\nValueError", "\n", "Task timed out"):
            assert pattern.fullmatch(message), message  # Java's String.matches: the whole message
        assert error["StatusCode"] == "502"
    # an empty errorMessage matches no pattern: the 200 response's template answers 502 for an answer
    # without a statusCode (the crash's {"errorMessage": "", "errorType": ...})
    assert "#{else}#set($context.responseOverride.status = 502)" in _PROXY_RESPONSE_TEMPLATE
    assert _PROXY_RESPONSE_TEMPLATE.index('#if("$!answer.statusCode" != "")') < _PROXY_RESPONSE_TEMPLATE.index(
        "#{else}"
    )


# ----- the client-header opt-in --------------------------------------------------------------------------------
def test_client_header_opt_in_admits_only_the_accounts_principals(tenancy_app: TenancyApp) -> None:
    [api] = [
        r
        for r in tenancy_app.template("TenancyClientHeader")["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::RestApi"
    ]
    statements = api["Properties"]["Policy"]["Statement"]
    [allow] = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] != {"AWS": "*"} and allow["Principal"] != "*"
    assert "123456789012" in json.dumps(allow["Principal"])
    [deny] = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}}


def test_client_header_opt_in_takes_trusted_principals(tmp_path: Any) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Trusted", env=ENV)
    role = iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    api = TenantApi(
        stack,
        "Api",
        unsafe_trust_client_tenant_header="X-Tenant-Id",
        allowed_source_cidrs=["203.0.113.0/24"],
        trusted_principals=[iam.ArnPrincipal(role.role_arn)],
    )
    api.add_function("/internal", function(stack, "Internal"))
    policy = cdk.Stack.of(api).resolve(api.api.node.default_child.policy)  # type: ignore[union-attr]
    [allow] = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"AWS": stack.resolve(role.role_arn)}
    with pytest.raises(PropError, match="trusted_principals"):
        TenantApi(stack, "Jwt", issuer=COGNITO_ISSUER, audiences=["x"], trusted_principals=[iam.AccountRootPrincipal()])


def test_client_header_opt_in_checks_the_registry_in_the_function(tenancy_app: TenancyApp) -> None:
    functions = [
        r
        for r in tenancy_app.template("TenancyClientHeader")["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]
    [fn] = functions
    variables = fn["Properties"]["Environment"]["Variables"]
    assert variables["TENANCY_AUTHORIZER_KIND"] == "client_header"
    assert "TENANCY_REGISTRY_TABLE" in variables and "TENANCY_REGISTRY_CACHE_SECONDS" in variables


# ----- synth-time checks ---------------------------------------------------------------------------------------
def synth_problems(tmp_path: Any, build: Any) -> str:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Checks", env=ENV)
    build(stack)
    with pytest.raises(RuntimeError) as error:
        app.synth()
    return str(error.value)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("method.request.header.X-Tenant", "maps X-Amz-Tenant-Id from 'method.request.header.X-Tenant'"),
        ("method.request.querystring.tenant", "maps X-Amz-Tenant-Id from 'method.request.querystring.tenant'"),
        ("'acme'", "maps X-Amz-Tenant-Id from \"'acme'\""),
        ("context.authorizer.claims['x']", "which the caller controls"),
    ],
)
def test_a_tenant_header_from_anything_but_the_authorizer_fails_synthesis(
    tmp_path: Any, source: str, expected: str
) -> None:
    def build(stack: cdk.Stack) -> None:
        fn = function(stack, "Orders", runtime_layer=False)
        api = apigw.RestApi(stack, "Raw", cloud_watch_role=False)
        api.root.add_method(
            "GET",
            apigw.LambdaIntegration(
                fn.function, request_parameters={"integration.request.header.X-Amz-Tenant-Id": source}
            ),
            authorization_type=apigw.AuthorizationType.IAM,
        )

    assert expected in synth_problems(tmp_path, build)


def test_a_tenant_header_from_the_authorizer_context_passes(tmp_path: Any) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Fine", env=ENV)
    fn = function(stack, "Orders", runtime_layer=False)
    api = apigw.RestApi(stack, "Raw", cloud_watch_role=False)
    api.root.add_method(
        "GET",
        apigw.LambdaIntegration(
            fn.function, request_parameters={"integration.request.header.X-Amz-Tenant-Id": "context.authorizer.org"}
        ),
        authorization_type=apigw.AuthorizationType.IAM,
    )
    assert not [p for p in fn.node.validate() if "X-Amz-Tenant-Id" in p]


def test_invokers_that_cannot_pass_a_tenant_id_fail_synthesis(tmp_path: Any) -> None:
    def build(stack: cdk.Stack) -> None:
        fn = function(stack, "Orders", runtime_layer=False)
        version = fn.function.current_version
        alias = lambda_.Alias(stack, "Live", alias_name="live", version=version)
        other = lambda_.Function(stack, "Other", runtime=lambda_.Runtime.PYTHON_3_14, handler="index.handler",
                                 code=lambda_.Code.from_inline("def handler(e, c): pass"))  # fmt: skip
        # through the alias: an event source mapping and an asynchronous-invocation destination
        lambda_.CfnEventSourceMapping(
            stack, "ViaAlias", function_name=alias.function_arn, event_source_arn="arn:aws:sqs:us-east-1:1:q"
        )
        lambda_.CfnEventInvokeConfig(
            stack,
            "Destination",
            function_name=other.function_name,
            qualifier="$LATEST",
            destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(destination=alias.function_arn)
            ),
        )
        cdk.CfnResource(
            stack,
            "Pipe",
            type="AWS::Pipes::Pipe",
            properties={
                "RoleArn": "arn:aws:iam::1:role/p",
                "Source": "arn:aws:sqs:us-east-1:1:q",
                "Target": version.function_arn,
            },
        )
        sfn.StateMachine(
            stack,
            "Flow",
            definition_body=sfn.DefinitionBody.from_chainable(
                tasks.LambdaInvoke(stack, "Invoke", lambda_function=fn.function)
            ),
        )
        graphql = appsync.GraphqlApi(
            stack,
            "Graph",
            name="g",
            definition=appsync.Definition.from_schema(appsync.SchemaFile.from_asset(str(schema(tmp_path)))),
        )
        graphql.add_lambda_data_source("Source", fn.function)
        cdk.CfnResource(
            stack,
            "Firehose",
            type="AWS::KinesisFirehose::DeliveryStream",
            properties={
                "ExtendedS3DestinationConfiguration": {
                    "BucketARN": "arn:aws:s3:::b",
                    "RoleARN": "arn:aws:iam::1:role/f",
                    "ProcessingConfiguration": {
                        "Enabled": True,
                        "Processors": [{"Type": "Lambda", "Parameters": [
                            {"ParameterName": "LambdaArn", "ParameterValue": fn.function.function_arn}]}],
                    },
                }
            },
        )  # fmt: skip

    message = synth_problems(tmp_path, build)
    for expected, path in (
        ("event source mapping", "Checks/ViaAlias"),
        ("asynchronous invocation destination", "Checks/Destination"),
        ("EventBridge Pipes target or enrichment", "Checks/Pipe"),
        ("Step Functions task", "Checks/Flow"),
        ("AppSync Lambda data source", "Checks/Graph/Source"),
        ("Firehose record processor", "Checks/Firehose"),
    ):
        assert re.search(re.escape(expected) + r"[^\n]*\(" + re.escape(path), message), (expected, message)


def test_a_step_functions_task_that_passes_the_tenant_id_is_allowed(tmp_path: Any) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Sdk", env=ENV)
    fn = function(stack, "Orders", runtime_layer=False)
    task = tasks.CallAwsService(
        stack,
        "Invoke",
        service="lambda",
        action="invoke",
        parameters={"FunctionName": fn.function.function_arn, "TenantId": sfn.JsonPath.string_at("$.tenant")},
        iam_resources=[fn.function.function_arn],
    )
    sfn.StateMachine(stack, "Flow", definition_body=sfn.DefinitionBody.from_chainable(task))
    assert not [p for p in fn.node.validate() if "Step Functions" in p]


def schema(tmp_path: Any) -> Any:
    path = tmp_path / "schema.graphql"
    path.write_text("type Query { orders: String }\n")
    return path


# ----- function props ------------------------------------------------------------------------------------------
def test_function_props_environment_merges_over_the_environment_prop(tmp_path: Any) -> None:
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path)), "Env", env=ENV)
    fn = function(
        stack, "Orders", environment={"A": "1", "B": "1"}, function_props={"environment": {"B": "2", "C": "3"}}
    )
    variables = _properties(fn.function.node.default_child)["Environment"]["Variables"]  # type: ignore[arg-type]
    assert variables["A"] == "1" and variables["B"] == "2" and variables["C"] == "3"
    assert variables["TENANCY_METRIC_NAMESPACE"] == "CdkServerlessPatterns/Tenancy"
    assert variables["TENANCY_HANDLER"] == "index.handler"
    with pytest.raises(PropError, match=r"function_props\.environment"):
        function(stack, "Bad", function_props={"environment": {"TENANCY_AUTHORIZER_KIND": "client_header"}})


def test_the_handler_runs_through_the_helper_unless_the_layer_is_off(tmp_path: Any) -> None:
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path)), "Handler", env=ENV)
    wrapped = function(stack, "Wrapped")
    plain = function(stack, "Plain", runtime_layer=False)
    assert wrapped.function.node.default_child.handler == "tenancy_runtime.handler"  # type: ignore[union-attr]
    assert plain.function.node.default_child.handler == "index.handler"  # type: ignore[union-attr]


# ----- second review: invokers in other stacks, or naming the function by its name --------------------------------
def test_invokers_in_other_stacks_or_by_name_fail_synthesis(tmp_path: Any) -> None:
    """The construct's validation sees its own stack's Ref/GetAtt only; the app-wide template check finds a rule
    in another stack (an Fn::ImportValue of the function's ARN), an event source mapping on an imported function,
    and one naming the function by its literal name."""
    from aws_cdk import aws_events as events
    from aws_cdk import aws_events_targets as targets
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_sqs as sqs

    from cdk_serverless_patterns.testing.checks import read_nag_report

    app = cdk.App(outdir=str(tmp_path))
    home = cdk.Stack(app, "Home", env=ENV)
    fn = function(home, "Orders", runtime_layer=False, function_props={"function_name": "orders-fn"})
    lambda_.CfnEventSourceMapping(
        home, "ByName", function_name="orders-fn", event_source_arn="arn:aws:sqs:us-east-1:123456789012:q"
    )
    away = cdk.Stack(app, "Away", env=ENV)
    events.Rule(
        away,
        "Rule",
        schedule=events.Schedule.rate(cdk.Duration.minutes(5)),
        targets=[targets.LambdaFunction(fn.function)],
    )
    imported = lambda_.Function.from_function_arn(away, "Imported", fn.function.function_arn)
    lambda_.EventSourceMapping(away, "Mapping", target=imported, event_source_arn=sqs.Queue(away, "Queue").queue_arn)
    # Not an invoker: another stack's role may invoke the function (an SDK call passes TenantId).
    fn.function.grant_invoke(iam.Role(away, "Caller", assumed_by=iam.AccountRootPrincipal()))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    findings = {
        (f.rule, f.path)
        for f in read_nag_report(tmp_path)
        if f.acknowledge_with.startswith("cdk-serverless-patterns-tenancy::")
    }
    assert findings == {
        ("NoTenantlessInvoker", "Home/ByName"),
        ("NoTenantlessInvoker", "Away/Rule/Resource"),
        ("NoTenantlessInvoker", "Away/Mapping/Resource"),
    }, findings


def test_cross_stack_references_that_do_not_invoke_pass(tmp_path: Any) -> None:
    from aws_cdk import aws_iam as iam

    app = cdk.App(outdir=str(tmp_path))
    home = cdk.Stack(app, "Home", env=ENV)
    fn = function(home, "Orders", runtime_layer=False)
    away = cdk.Stack(app, "Away", env=ENV)
    fn.function.grant_invoke(iam.Role(away, "Caller", assumed_by=iam.AccountRootPrincipal()))
    fn.function.metric_errors().create_alarm(away, "Errors", threshold=1, evaluation_periods=1)
    app.synth()


def test_authorizers_and_custom_resources_backed_by_the_function_fail_synthesis(tmp_path: Any) -> None:
    """API Gateway invokes authorizers, and CloudFormation custom resource providers, without a tenant id."""

    def build(stack: cdk.Stack) -> None:
        fn = function(stack, "Orders", runtime_layer=False)
        api = apigw.RestApi(stack, "Api")
        api.root.add_method(
            "GET",
            apigw.MockIntegration(),
            authorizer=apigw.RequestAuthorizer(
                stack, "Authorizer", handler=fn.function, identity_sources=[apigw.IdentitySource.header("A")]
            ),
        )
        cdk.CustomResource(stack, "Seed", service_token=fn.function.function_arn)
        cdk.CfnResource(stack, "Typed", type="Custom::Seeder", properties={"ServiceToken": fn.function.function_arn})

    message = synth_problems(tmp_path, build)
    for expected, path in (
        ("API Gateway Lambda authorizer", "Checks/Authorizer/Resource"),
        ("custom resource provider", "Checks/Seed/Default"),
        ("custom resource provider", "Checks/Typed"),
    ):
        assert re.search(re.escape(expected) + r"[^\n]*\(" + re.escape(path) + r"\)", message), (expected, message)


def test_the_helper_itself_is_not_a_handler(tmp_path: Any) -> None:
    """TENANCY_HANDLER=tenancy_runtime.handler would make the entry point call itself (RecursionError per call)."""
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path)), "Loop", env=ENV)
    with pytest.raises(PropError, match=r"handler: 'tenancy_runtime\.handler' is the helper itself"):
        TenantIsolatedFunction(stack, "Loop", code=lambda_.Code.from_inline("x = 1"), handler="tenancy_runtime.handler")
    function(stack, "Plain", runtime_layer=False)  # without the layer the name is the user's own


# ----- TENANCY_* variables changed after construction ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "variable"),
    [
        (lambda fn: fn.function.add_environment("TENANCY_AUTHORIZER_KIND", "client_header"), "TENANCY_AUTHORIZER_KIND"),
        (lambda fn: fn.function.add_environment("TENANCY_HANDLER", "os.system"), "TENANCY_HANDLER"),
        (lambda fn: fn.function.add_environment("TENANCY_SOMETHING", "x"), "TENANCY_SOMETHING"),
    ],
)
def test_tenancy_variables_changed_after_construction_fail_synthesis(tmp_path: Any, change: Any, variable: str) -> None:
    """The helper's tenant checks rest on the TENANCY_* variables (which authorizer proves the tenant, which handler
    it wraps): one changed or added with add_environment is a synth-time error naming it. (A raw CloudFormation
    property override is not seen: construct validation reads properties without raw overrides.)"""

    def build(stack: cdk.Stack) -> None:
        change(function(stack, "Orders"))

    problems = synth_problems(tmp_path, build)
    assert f"environment {variable}" in problems, problems


def test_variables_the_api_binds_are_not_a_change(tmp_path: Any) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Bound", env=ENV)
    function(stack, "Orders").function.add_environment("OTHER", "fine")
    app.synth()
