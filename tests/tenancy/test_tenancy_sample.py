"""The sample stack and the integration-test app (integ/sample_tenancy.py, integ/integ_tenancy.py), offline.

The templates come from the session's one app; the sample's own functions run in-process against moto:
a token the sample issuer mints is allowed by the real authorizer with the sample's key format, and the
sample orders handler runs under the function-side helper.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from aws_cdk.assertions import Template
from syrupy.extensions.json import JSONSnapshotExtension
from tenancy_app import TenancyApp
from tenancy_support import REGISTRY, request_event

from cdk_serverless_patterns._paths import asset_path
from cdk_serverless_patterns.testing.integ import (
    normalize_integ_template,
    stack_problems,
)
from cdk_serverless_patterns.testing.moto import load_runtime_module

SAMPLE = "ServerlessPatternsTenancy"
INTEG_SAMPLE = "IntegServerlessPatternsTenancy"
ASSERTIONS = "TenancyInteg/DefaultTest/DeployAssert"


def resources_of(raw: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in raw["Resources"].items() if v["Type"] == kind}


# ----- the sample stack ---------------------------------------------------------------------------------
def test_sample_stack_is_nag_and_lint_clean(tenancy_app: TenancyApp) -> None:
    problems = stack_problems(tenancy_app.assembly, SAMPLE)
    assert not problems, "\n".join(problems)


def test_sample_registry_is_seeded_with_two_tenants(tenancy_app: TenancyApp) -> None:
    raw = tenancy_app.template(SAMPLE)
    [seed] = resources_of(raw, "Custom::TenantRegistrySeed").values()
    [table] = resources_of(raw, "AWS::DynamoDB::Table")
    assert seed["Properties"]["TableName"] == {"Ref": table}
    assert seed["Properties"]["Tenants"] == {"acme": "gold", "globex": "basic"}
    seeder = raw["Resources"][seed["Properties"]["ServiceToken"]["Fn::GetAtt"][0]]["Properties"]
    assert seeder["Handler"] == "seed.handler" and seeder["Runtime"].startswith("python")


def test_the_seeder_writes_conditionally_and_always_answers(registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seeder = load_runtime_module_from_integ("tenancy_seed", "seed")
    answers: list[dict[str, Any]] = []
    monkeypatch.setattr(seeder, "_answer", lambda event, context, status, reason, data: answers.append(
        {"status": status, "reason": reason, "data": data}))  # fmt: skip
    registry.update_item(
        Key={"tenantId": "globex"}, UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "SUSPENDED"},
    )  # fmt: skip
    event = {
        "RequestType": "Create", "StackId": "s", "RequestId": "r", "LogicalResourceId": "Seed", "ResponseURL": "u",
        "ResourceProperties": {"TableName": REGISTRY, "Tenants": {"globex": "basic", "hooli": "basic"}},
    }  # fmt: skip
    seeder.handler(event, None)
    assert answers[-1] == {"status": "SUCCESS", "reason": "seeded", "data": {"globex": "kept", "hooli": "created"}}
    assert registry.get_item(Key={"tenantId": "globex"})["Item"]["status"] == "SUSPENDED"  # never overwritten
    assert registry.get_item(Key={"tenantId": "hooli"})["Item"]["status"] == "ACTIVE"
    seeder.handler({**event, "ResourceProperties": {"TableName": "missing", "Tenants": {"x": "y"}}}, None)
    assert answers[-1]["status"] == "FAILED" and "ResourceNotFoundException" in answers[-1]["reason"]
    seeder.handler({**event, "RequestType": "Delete"}, None)
    assert answers[-1]["status"] == "SUCCESS"


def test_sample_signing_key_is_generated_by_secrets_manager(tenancy_app: TenancyApp) -> None:
    [secret] = resources_of(tenancy_app.template(SAMPLE), "AWS::SecretsManager::Secret").values()
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "k"
    assert json.loads(generated["SecretStringTemplate"])["kty"] == "oct"
    assert generated["PasswordLength"] == 64 and generated["ExcludePunctuation"] is True
    assert "SecretString" not in secret["Properties"]  # no literal key in the template


def test_sample_api_routes_orders_to_the_tenant_isolated_function(tenancy_app: TenancyApp) -> None:
    template = Template.from_json(tenancy_app.template(SAMPLE))
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "GET",
            "AuthorizationType": "CUSTOM",
            "Integration": {
                "RequestParameters": {"integration.request.header.X-Amz-Tenant-Id": "context.authorizer.tenantId"}
            },
        },
    )
    orders = tenancy_app.template(SAMPLE)["Resources"][tenancy_app.ids["sample_orders"]]["Properties"]
    assert orders["TenancyConfig"] == {"TenantIsolationMode": "PER_TENANT"}
    # the helper's entry point runs the sample's handler through its checks
    assert orders["Handler"] == "tenancy_runtime.handler"
    assert orders["Environment"]["Variables"]["TENANCY_HANDLER"] == "orders.handler"
    outputs = tenancy_app.template(SAMPLE)["Outputs"]
    assert {
        "ApiUrl",
        "RegistryTableName",
        "SigningKeySecretArn",
        "OrdersFunctionName",
        "TokenIssuerFunctionName",
    } <= set(outputs)


def test_sample_snapshot(tenancy_app: TenancyApp, snapshot: Any) -> None:
    assert normalize_integ_template(tenancy_app.template(SAMPLE)) == snapshot.use_extension(JSONSnapshotExtension)


# ----- the sample's functions against moto ---------------------------------------------------------------------
def sample_authorizer(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """The authorizer with the sample's settings and a secret in the form Secrets Manager generates."""
    import sample_tenancy

    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    key = "Abcdefghij0123456789" * 3 + "KLMN"  # 64 characters of A-Z a-z 0-9, as the generator makes
    jwk = {"kty": "oct", "kid": sample_tenancy.SIGNING_KEY_ID, "alg": "HS256", "use": "sig", "k": key}
    arn = secrets.create_secret(Name="tenancy-sample-key", SecretString=json.dumps(jwk))["ARN"]
    environment = {
        "TENANCY_ISSUER": sample_tenancy.ISSUER,
        "TENANCY_AUDIENCE": sample_tenancy.AUDIENCE,
        "TENANCY_ALGORITHM": "HS256",
        "TENANCY_KEY_SOURCE": "secret",
        "TENANCY_KEY_SECRET_ARN": arn,
        "TENANCY_REGISTRY_TABLE": REGISTRY,
        "SIGNING_KEY_SECRET_ARN": arn,
        "ISSUER": sample_tenancy.ISSUER,
        "AUDIENCE": sample_tenancy.AUDIENCE,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    module = load_runtime_module("tenancy_authorizer", "tenancy_authorizer", name="tenancy_authorizer_sample")
    module.reset()
    return module, arn


def test_a_token_from_the_sample_issuer_passes_the_real_authorizer(
    registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _ = sample_authorizer(monkeypatch)
    issuer = load_runtime_module_from_integ("tenancy_token_issuer", "token_issuer")
    minted = issuer.handler({"tenant": "globex"}, None)
    answer = module.handler(request_event(minted["token"]), None)
    assert answer["context"] == {"tenantId": "globex", "plan": "basic"}
    unknown = issuer.handler({"tenant": "umbrella"}, None)
    assert module.handler(request_event(unknown["token"]), None)["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert issuer.handler({"tenant": "../etc"}, None) == {"error": "tenant must be a tenant id"}


def load_runtime_module_from_integ(folder: str, module: str) -> Any:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "integ" / "functions" / folder / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"integ_{folder}_{module}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_the_sample_orders_handler_runs_under_the_helper(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANCY_TMP_ROOT", str(tmp_path))
    monkeypatch.syspath_prepend(str(asset_path("tenancy_runtime") / "python"))
    sys.modules.pop("tenancy_runtime", None)
    orders = load_runtime_module_from_integ("tenancy_orders", "orders")
    event = {"resource": "/orders", "httpMethod": "GET", "requestContext": {"authorizer": {"tenantId": "acme"}}}
    context = SimpleNamespace(tenant_id="acme", aws_request_id="req-1")
    first = json.loads(orders.handler(event, context)["body"])
    second = json.loads(orders.handler(event, SimpleNamespace(tenant_id="acme", aws_request_id="req-2"))["body"])
    assert first["tenant"] == "acme" and first["invocations"] == 1 and first["tmpEntries"] == ["tenant-acme"]
    assert second["invocations"] == 2 and second["firstRequest"] == "req-1"
    forged = orders.handler(event, SimpleNamespace(tenant_id="globex", aws_request_id="req-3"))
    assert forged["statusCode"] == 403
