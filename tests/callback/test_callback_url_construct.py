"""The CallbackUrls construct: template assertions, cdk-nag, cfn-lint, props validation, snapshots.

Two stacks are synthesized once for the module: one with defaults, one fully configured (HMAC
auth with a Secrets Manager key, KMS-encrypted table, WAF, source ranges, own log key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.assertions import Match, Template
from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.callback.callback_urls import CallbackUrls
from cdk_serverless_patterns.core import PropError, acknowledge
from cdk_serverless_patterns.testing import normalize_template
from cdk_serverless_patterns.testing.checks import cfn_lint_findings, format_table, synth_with_checks
from cdk_serverless_patterns.testing.moto import load_runtime_module

WEB_ACL = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/callbacks/0123abcd"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
DEFAULT, CONFIGURED = "CallbackUrlsDefaults", "CallbackUrlsConfigured"


def _table(stack: cdk.Stack, key: kms.IKey | None = None) -> dynamodb.Table:
    return dynamodb.Table(
        stack,
        "Tokens",
        partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute="ttl",
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED if key else dynamodb.TableEncryption.AWS_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
    )


class Built:
    def __init__(self, tmp: Path) -> None:
        app = cdk.App(outdir=str(tmp))
        env = cdk.Environment(account="123456789012", region="us-east-1")

        default_stack = cdk.Stack(app, DEFAULT, env=env)
        self.default = CallbackUrls(
            default_stack,
            "Callbacks",
            table=_table(default_stack),
            namespaces=["translate", "vendor"],
        )

        stack = cdk.Stack(app, CONFIGURED, env=env)
        table_key = kms.Key(stack, "TableKey", enable_key_rotation=True)
        self.hmac_key = secretsmanager.Secret(stack, "HmacKey", description="HMAC key shared with the vendor")
        self.partner_key = secretsmanager.Secret(stack, "PartnerKey", description="HMAC key shared with the partner")
        for key in (self.hmac_key, self.partner_key):
            acknowledge(key, "the test's vendor key is rotated by hand with the vendor", "AwsSolutions-SMG4")
        self.configured = CallbackUrls(
            stack,
            "Callbacks",
            table=_table(stack, table_key),
            namespaces=["vendor", "partner"],
            auth="hmac",
            hmac_secrets={"vendor": self.hmac_key, "partner": self.partner_key},
            accept_early_callbacks=True,
            completion_ttl=cdk.Duration.hours(2),
            replay_window=cdk.Duration.minutes(2),
            max_body_size=4096,
            stage_name="live",
            throttling_rate_limit=5,
            throttling_burst_limit=10,
            access_log_retention=logs.RetentionDays.THREE_MONTHS,
            web_acl_arn=WEB_ACL,
            allowed_source_cidrs=["203.0.113.0/24", "2001:db8::/32"],
            domain_name="callbacks.example.com",
            certificate=acm.Certificate.from_certificate_arn(stack, "Certificate", CERTIFICATE),
            disable_execute_api_endpoint=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.assembly = synth_with_checks(app)
        self.templates = self.assembly.templates
        self.template = {name: Template.from_json(t) for name, t in self.templates.items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("callback-urls-out"))


def resources(built: Built, stack: str, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = built.template[stack].find_resources(kind)
    return found


def handler_policy(built: Built, stack: str) -> list[dict[str, Any]]:
    [policy] = [
        p for p in resources(built, stack, "AWS::IAM::Policy").values() if "Handler" in json.dumps(p["Properties"])
    ]
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


# --- checks ------------------------------------------------------------------------------------------


def test_cdk_nag_leaves_no_unacknowledged_finding(built: Built) -> None:
    findings = built.assembly.nag_findings
    assert not findings, "unacknowledged cdk-nag findings:\n" + format_table(findings)


def test_cfn_lint_finds_no_error(built: Built) -> None:
    findings = [f for f in cfn_lint_findings(built.templates) if f.severity == "error"]
    assert not findings, format_table(findings)


def test_missing_authorizer_is_acknowledged_with_the_real_reason(built: Built) -> None:
    reasons: dict[str, str] = {}
    for metadata in built.assembly.outdir.glob(f"{DEFAULT}.metadata.json"):
        for path, entries in json.loads(metadata.read_text()).items():
            for entry in entries:
                if entry.get("type") == "aws:cdk:acknowledged-rules" and path.endswith("/Callbacks/Api"):
                    reasons.update(entry["data"])
    for rule in ("AwsSolutions::AwsSolutions-APIG4", "AwsSolutions::AwsSolutions-COG4"):
        assert "secret" in reasons[rule] and "HMAC" in reasons[rule]
    assert "web_acl_arn" in reasons["AwsSolutions::AwsSolutions-APIG3"]


# --- the API -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", [DEFAULT, CONFIGURED])
def test_api_is_regional_with_one_post_method_on_the_callback_path(built: Built, stack: str) -> None:
    template = built.template[stack]
    template.has_resource_properties("AWS::ApiGateway::RestApi", {"EndpointConfiguration": {"Types": ["REGIONAL"]}})
    paths = {r["Properties"]["PathPart"] for r in resources(built, stack, "AWS::ApiGateway::Resource").values()}
    assert paths == {"callbacks", "{namespace}", "{jobId}"}
    [method] = resources(built, stack, "AWS::ApiGateway::Method").values()
    props = method["Properties"]
    assert props["HttpMethod"] == "POST"
    assert props["AuthorizationType"] == "NONE"  # authenticated per job by the handler
    assert props["Integration"]["Type"] == "AWS_PROXY"
    assert props["RequestParameters"] == {"method.request.path.namespace": True, "method.request.path.jobId": True}
    assert "RequestValidatorId" in props and "application/json" in props["RequestModels"]
    template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True, "ValidateRequestParameters": True}
    )
    # API Gateway may invoke the handler for this method only
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Principal": "apigateway.amazonaws.com", "SourceArn": Match.object_like({})},
    )


def test_body_model_rejects_bad_status_and_unknown_fields(built: Built) -> None:
    [model] = resources(built, DEFAULT, "AWS::ApiGateway::Model").values()
    schema = model["Properties"]["Schema"]
    assert schema["properties"]["status"]["enum"] == ["SUCCEEDED", "FAILED"]
    assert schema["required"] == ["status"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["error"]["maxLength"] == 256
    [hmac_model] = resources(built, CONFIGURED, "AWS::ApiGateway::Model").values()
    assert hmac_model["Properties"]["Schema"]["required"] == ["status"]  # the signature covers the URL's job id


def test_stage_traces_throttles_and_logs_access_as_json_without_request_data(built: Built) -> None:
    [stage] = resources(built, DEFAULT, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    [settings] = props["MethodSettings"]
    assert settings["DataTraceEnabled"] is False  # the per-job secret travels in a header
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (50, 100)
    access_format = json.loads(props["AccessLogSetting"]["Format"])
    assert {"requestId", "ip", "status", "resourcePath"} <= set(access_format)
    assert not any("header" in value.lower() for value in access_format.values())
    [log_group_id] = [
        logical
        for logical, r in resources(built, DEFAULT, "AWS::Logs::LogGroup").items()
        if "AccessLogs" in logical  # the function's own group is the other one
    ]
    assert props["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": [log_group_id, "Arn"]}

    [configured] = resources(built, CONFIGURED, "AWS::ApiGateway::Stage").values()
    assert configured["Properties"]["StageName"] == "live"
    [settings] = configured["Properties"]["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (5, 10)


def test_access_log_group_is_encrypted_with_a_rotated_key_cloudwatch_logs_may_use(built: Built) -> None:
    groups = resources(built, DEFAULT, "AWS::Logs::LogGroup")
    [access] = [g for logical, g in groups.items() if "AccessLogs" in logical]
    key_id = access["Properties"]["KmsKeyId"]["Fn::GetAtt"][0]
    assert access["Properties"]["RetentionInDays"] == 365
    key = resources(built, DEFAULT, "AWS::KMS::Key")[key_id]
    assert key["Properties"]["EnableKeyRotation"] is True
    [logs_statement] = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if "Service" in s["Principal"]]
    assert "kms:EncryptionContext:aws:logs:arn" in logs_statement["Condition"]["ArnLike"]


def test_waf_and_source_ranges_are_opt_in(built: Built) -> None:
    built.template[DEFAULT].resource_count_is("AWS::WAFv2::WebACLAssociation", 0)
    [api] = resources(built, DEFAULT, "AWS::ApiGateway::RestApi").values()
    assert "Policy" not in api["Properties"]

    built.template[CONFIGURED].has_resource_properties(
        "AWS::WAFv2::WebACLAssociation", {"WebACLArn": WEB_ACL, "ResourceArn": Match.any_value()}
    )
    [api] = resources(built, CONFIGURED, "AWS::ApiGateway::RestApi").values()
    deny = [s for s in api["Properties"]["Policy"]["Statement"] if s["Effect"] == "Deny"]
    assert deny[0]["Condition"] == {"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32"]}}


def test_custom_domain_is_opt_in_and_refuses_tls_older_than_1_2(built: Built) -> None:
    built.template[DEFAULT].resource_count_is("AWS::ApiGateway::DomainName", 0)
    built.template[CONFIGURED].has_resource_properties(
        "AWS::ApiGateway::DomainName",
        {
            "DomainName": "callbacks.example.com",
            "RegionalCertificateArn": CERTIFICATE,
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
            "SecurityPolicy": "TLS_1_2",
        },
    )
    built.template[CONFIGURED].has_resource_properties("AWS::ApiGateway::RestApi", {"DisableExecuteApiEndpoint": True})


# --- the handler ---------------------------------------------------------------------------------------


def test_handler_is_configured_by_environment_without_any_secret(built: Built) -> None:
    functions = resources(built, DEFAULT, "AWS::Lambda::Function")
    [function] = functions.values()
    props = function["Properties"]
    assert props["Handler"] == "callback_url_handler.handler"
    assert props["Runtime"] == "python3.14" and props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] < 29  # answers before API Gateway's integration timeout
    env = props["Environment"]["Variables"]
    assert env["NAMESPACES"] == "translate,vendor"
    assert env["AUTH_MODE"] == "secret"
    assert "HMAC_SECRET_ARN" not in env and "ACCEPT_EARLY_CALLBACKS" not in env

    [configured] = resources(built, CONFIGURED, "AWS::Lambda::Function").values()
    env = configured["Properties"]["Environment"]["Variables"]
    assert (env["AUTH_MODE"], env["REPLAY_WINDOW_SECONDS"], env["MAX_BODY_BYTES"]) == ("hmac", "120", "4096")
    assert env["ACCEPT_EARLY_CALLBACKS"] == "true"
    assert env["COMPLETION_TTL_SECONDS"] == "7200"
    # the keys' locations, never the keys: a Ref to a secret resource is its ARN
    secret_ids = sorted(resources(built, CONFIGURED, "AWS::SecretsManager::Secret"))
    assert "HMAC_SECRET_ARN" not in env
    rendered = json.dumps(env["HMAC_SECRET_ARNS"])
    assert all(json.dumps({"Ref": secret_id}) in rendered for secret_id in secret_ids)
    assert '\\"partner\\":' in rendered and '\\"vendor\\":' in rendered
    assert all(isinstance(v, str) or set(v) <= {"Ref", "Fn::GetAtt", "Fn::Join"} for v in env.values())


def test_environment_the_construct_sets_is_what_the_handler_reads(built: Built) -> None:
    callback_url_handler = load_runtime_module(
        "callback_url", "callback_url_handler", name="callback_url_handler__test_callback_url_construct"
    )

    for stack in (DEFAULT, CONFIGURED):
        [function] = resources(built, stack, "AWS::Lambda::Function").values()
        env = {
            name: value if isinstance(value, str) else f"resolved-{name.lower()}"
            for name, value in function["Properties"]["Environment"]["Variables"].items()
        }
        if "HMAC_SECRET_ARNS" in env:  # a JSON object of secret ARNs, tokens until deployed
            env["HMAC_SECRET_ARNS"] = json.dumps({ns: f"arn-of-{ns}" for ns in env["NAMESPACES"].split(",")})
        settings = callback_url_handler.Settings.from_environment(env)
        assert settings.namespaces == frozenset(env["NAMESPACES"].split(","))
        assert settings.auth_mode == env["AUTH_MODE"]
        assert settings.accept_early_callbacks == (env.get("ACCEPT_EARLY_CALLBACKS") == "true")


def test_asset_holds_the_handler_module_and_nothing_else_of_the_repo(built: Built) -> None:
    [function] = resources(built, DEFAULT, "AWS::Lambda::Function").values()
    asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    asset_dir = built.assembly.outdir / f"asset.{asset_hash}"
    assert sorted(p.name for p in asset_dir.iterdir()) == ["callback_url_handler.py"]


# --- least privilege -----------------------------------------------------------------------------------


def test_handler_may_only_read_and_claim_records_of_its_namespaces_and_put_on_its_bus(built: Built) -> None:
    statements = {
        json.dumps(s["Action"]): s for s in handler_policy(built, DEFAULT) if "xray" not in json.dumps(s["Action"])
    }
    dynamo = statements[json.dumps(["dynamodb:GetItem", "dynamodb:UpdateItem"])]
    [table_id] = resources(built, DEFAULT, "AWS::DynamoDB::Table")
    assert dynamo["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}
    assert dynamo["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["translate#*", "vendor#*"]}}
    [bus_id] = resources(built, DEFAULT, "AWS::Events::EventBus")
    assert statements['"events:PutEvents"']["Resource"] == {"Fn::GetAtt": [bus_id, "Arn"]}
    assert set(statements) == {
        json.dumps(["logs:CreateLogStream", "logs:PutLogEvents"]),
        json.dumps(["dynamodb:GetItem", "dynamodb:UpdateItem"]),
        '"events:PutEvents"',
    }


def test_early_callbacks_add_put_item_on_the_same_namespace_keys_only(built: Built) -> None:
    [dynamo] = [s for s in handler_policy(built, CONFIGURED) if "dynamodb:GetItem" in json.dumps(s["Action"])]
    assert dynamo["Action"] == ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"]
    assert dynamo["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["vendor#*", "partner#*"]}}


def test_hmac_handler_may_read_those_secrets_only_and_use_the_table_key(built: Built) -> None:
    statements = handler_policy(built, CONFIGURED)
    secret_ids = resources(built, CONFIGURED, "AWS::SecretsManager::Secret")
    [secret] = [s for s in statements if "secretsmanager" in json.dumps(s["Action"])]
    assert secret["Action"] == "secretsmanager:GetSecretValue"
    assert sorted(json.dumps(r) for r in secret["Resource"]) == sorted(json.dumps({"Ref": i}) for i in secret_ids)
    kms_actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"kms:Decrypt", "kms:Encrypt"} <= kms_actions  # the table's customer-managed key (and the secret's)
    assert not any(s["Resource"] == "*" for s in statements if "xray" not in json.dumps(s["Action"]))


def test_no_iam_statement_grants_a_wildcard_action(built: Built) -> None:
    for stack in (DEFAULT, CONFIGURED):
        for statement in handler_policy(built, stack):
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            assert not any(a.endswith(":*") or a == "*" for a in actions)


# --- the callback bus: only the handler puts events on it -------------------------------------------------


@pytest.mark.parametrize("stack", [DEFAULT, CONFIGURED])
def test_the_bus_denies_put_events_to_every_principal_but_the_handlers_role(built: Built, stack: str) -> None:
    [bus_id] = resources(built, stack, "AWS::Events::EventBus")
    [policy] = resources(built, stack, "AWS::Events::EventBusPolicy").values()
    props = policy["Properties"]
    assert props["EventBusName"] == {"Ref": bus_id}
    assert props["StatementId"] == "cdk-OnlyTheCallbackHandlerPutsEvents"  # CDK prefixes the statement id
    [function] = resources(built, stack, "AWS::Lambda::Function").values()
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    assert props["Statement"] == {
        "Sid": "cdk-OnlyTheCallbackHandlerPutsEvents",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "events:PutEvents",
        "Resource": {"Fn::GetAtt": [bus_id, "Arn"]},
        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": [role_id, "Arn"]}}},
    }
    # The handler puts on that bus, by name.
    env = function["Properties"]["Environment"]["Variables"]
    assert env["EVENT_BUS_NAME"] == {"Ref": bus_id}


def test_per_namespace_keys_need_a_key_for_every_namespace_and_no_other() -> None:
    stack = cdk.Stack()
    key = secretsmanager.Secret(stack, "Key")
    with pytest.raises(PropError) as raised:
        CallbackUrls(
            stack,
            "Callbacks",
            table=_table(stack),
            namespaces=["a", "b"],
            auth="hmac",
            hmac_secrets={"a": key, "c": key},
        )
    problems = "\n".join(raised.value.problems)
    assert "hmac_secrets: no key for namespace(s) 'b'" in problems
    assert "hmac_secrets: 'c' not among namespaces" in problems
    with pytest.raises(PropError, match="hmac_secrets: cannot be combined with hmac_secret"):
        _build(namespaces=["a"], auth="hmac", hmac_secret=key, hmac_secrets={"a": key})
    with pytest.raises(PropError, match='hmac_secrets: is only used with auth="hmac"'):
        _build(namespaces=["a"], hmac_secrets={"a": key})


# --- properties ------------------------------------------------------------------------------------------


def test_resources_are_exposed(built: Built) -> None:
    urls = built.default
    assert urls.api.node.id == "Api" and urls.function.node.id == "Handler"
    assert urls.method.http_method == "POST"
    assert urls.access_log_key is not None and urls.access_log_group is not None
    assert urls.namespaces == ("translate", "vendor") and urls.auth == "secret" and urls.hmac_secret is None
    assert cdk.Token.is_unresolved(urls.url)
    assert urls.url_for("vendor").endswith("callbacks/vendor/")
    with pytest.raises(ValueError, match="'other' is not one of translate, vendor"):
        urls.url_for("other")
    assert built.configured.hmac_secret is None
    assert built.configured.hmac_secrets == {"vendor": built.hmac_key, "partner": built.partner_key}
    assert urls.event_bus.node.id == "Bus" and cdk.Token.is_unresolved(urls.event_bus.event_bus_name)


# --- props validation --------------------------------------------------------------------------------------


def _build(**props: Any) -> CallbackUrls:
    stack = cdk.Stack()
    options: dict[str, Any] = {
        "table": _table(stack),
        "namespaces": ["translate"],
        **props,
    }
    return CallbackUrls(stack, "Callbacks", **options)


def test_every_problem_is_reported_in_one_error() -> None:
    with pytest.raises(PropError) as raised:
        _build(
            namespaces=["ok", "bad#ns", "ok"],
            auth="hmac",
            replay_window=cdk.Duration.seconds(5),
            max_body_size=300 * 1024,
            stage_name="has space",
            throttling_rate_limit=0,
            throttling_burst_limit=0,
            web_acl_arn="arn:aws:wafv2:us-east-1:123456789012:global/webacl/x/1",
            allowed_source_cidrs=["10.0.0.0/33"],
        )
    problems = "\n".join(raised.value.problems)
    for expected in (
        "namespaces: 'bad#ns'",
        "namespaces: 'ok' listed more than once",
        'hmac_secret: is required with auth="hmac" (or hmac_secrets)',
        "replay_window: must be between 30 seconds and 1 hour,",
        "max_body_size: must be between 1 and 204800 bytes",
        "stage_name:",
        "throttling_rate_limit:",
        "throttling_burst_limit:",
        "web_acl_arn:",
        "allowed_source_cidrs: '10.0.0.0/33'",
    ):
        assert expected in problems, f"{expected!r} missing from:\n{problems}"
    assert len(raised.value.problems) == 10


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"namespaces": []}, "namespaces: must name at least one namespace"),
        ({"namespaces": [f"n{i}" for i in range(51)]}, "namespaces: at most 50"),
        ({"auth": "jwt"}, "auth: 'jwt' is not one of 'secret', 'hmac'"),
        ({"hmac_secret": "set"}, 'hmac_secret: is only used with auth="hmac"'),
        ({"accept_early_callbacks": True}, 'accept_early_callbacks: needs auth="hmac"'),
        ({"replay_window": cdk.Duration.hours(2)}, "replay_window: must be between"),
        ({"completion_ttl": cdk.Duration.seconds(5)}, "completion_ttl: must be between"),
        ({"max_body_size": 0}, "max_body_size:"),
        ({"allowed_source_cidrs": []}, "allowed_source_cidrs: must not be empty"),
        ({"domain_name": "cb.example.com"}, "certificate: domain_name and certificate go together"),
        ({"disable_execute_api_endpoint": True}, "disable_execute_api_endpoint: needs domain_name"),
        (
            {"existing_access_log_group": "set", "access_log_encryption_key": "set"},
            "existing_access_log_group: cannot be combined with access_log_encryption_key",
        ),
    ],
)
def test_each_bad_prop_is_named(props: dict[str, Any], message: str) -> None:
    stack = cdk.Stack()
    concrete = {
        "hmac_secret": lambda: secretsmanager.Secret(stack, "Secret"),
        "existing_access_log_group": lambda: logs.LogGroup(stack, "Logs"),
        "access_log_encryption_key": lambda: kms.Key(stack, "Key"),
    }
    options = {name: concrete[name]() if value == "set" else value for name, value in props.items()}
    with pytest.raises(PropError) as raised:
        CallbackUrls(
            stack,
            "Callbacks",
            **{"table": _table(stack), "namespaces": ["a"], **options},
        )
    assert any(problem.startswith(message) for problem in raised.value.problems), raised.value.problems


def test_existing_access_log_group_is_used_as_is() -> None:
    stack = cdk.Stack()
    group = logs.LogGroup(stack, "Mine")
    urls = _build_in(stack, existing_access_log_group=group)
    assert urls.access_log_group is group and urls.access_log_key is None
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::KMS::Key", 0)
    template.resource_count_is("AWS::Logs::LogGroup", 2)  # the user's and the handler's own


def _build_in(stack: cdk.Stack, **props: Any) -> CallbackUrls:
    return CallbackUrls(
        stack,
        "Callbacks",
        table=_table(stack),
        namespaces=["translate"],
        **props,
    )


# --- snapshots ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", [DEFAULT, CONFIGURED])
def test_snapshot(built: Built, stack: str, snapshot: Any) -> None:
    assert normalize_template(built.templates[stack]) == snapshot.use_extension(JSONSnapshotExtension)(name=stack)
