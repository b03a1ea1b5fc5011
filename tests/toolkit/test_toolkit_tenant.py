"""``serverless-patterns tenant add|suspend|resume|list`` against moto (in-process mock_aws).

The round trip ends where it matters: after ``tenant suspend`` the tenancy Lambda authorizer (loaded
from lambda_src/ as Lambda loads it, against the same moto registry) denies the tenant's token.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from cdk_serverless_patterns.tenancy import contract
from cdk_serverless_patterns.testing.moto import load_runtime_module
from cdk_serverless_patterns.toolkit import tenants
from cdk_serverless_patterns.toolkit.cli import main

TABLE = "tenant-registry"
ISSUER = "https://issuer.example.com/"
AUDIENCE = "orders-api"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/orders"


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "tenantId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "tenantId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["tenant", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def item(client: Any, tenant: str) -> dict[str, Any] | None:
    raw = client.get_item(TableName=TABLE, Key={"tenantId": {"S": tenant}}, ConsistentRead=True).get("Item")
    return tenants.plain(raw) if raw else None


# ----- add ------------------------------------------------------------------------------------------------------
def test_add_writes_an_active_tenant_with_its_plan(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "add", "acme", "--plan", "gold", "--table", TABLE)
    assert code == 0, err
    assert out.strip() == "acme: added, ACTIVE, plan gold"
    stored = item(dynamodb, "acme")
    assert stored is not None
    assert stored["status"] == "ACTIVE" and stored["plan"] == "gold" and stored["updatedBy"] == "operator"
    assert abs(stored["createdAt"] / 1000 - time.time()) < 60


def test_add_never_overwrites_an_existing_tenant(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "add", "acme", "--plan", "gold", "--table", TABLE)[0] == 0
    assert cli(capsys, "suspend", "acme", "--table", TABLE)[0] == 0
    code, out, err = cli(capsys, "add", "acme", "--plan", "basic", "--table", TABLE)
    assert code == 1 and out == ""
    assert err.strip() == (
        f"serverless-patterns tenant: tenant 'acme' already exists in table {TABLE} (status SUSPENDED, plan gold): "
        "nothing written"
    )
    stored = item(dynamodb, "acme")
    assert stored is not None and stored["status"] == "SUSPENDED" and stored["plan"] == "gold"  # untouched


def test_add_with_a_usage_key_and_as_json(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "add", "globex", "--usage-key", "globex-usage-key-0001", "--table", TABLE, "--json")
    assert code == 0
    assert json.loads(out) | {"message": ""} == {
        "tenantId": "globex", "status": "ACTIVE", "plan": "", "changed": True, "message": "",
    }  # fmt: skip
    stored = item(dynamodb, "globex")
    assert stored is not None and stored["usageKey"] == "globex-usage-key-0001"


# ----- suspend / resume -------------------------------------------------------------------------------------------
def test_suspend_and_resume_are_conditional_transitions(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "add", "acme", "--table", TABLE)
    code, out, _ = cli(capsys, "suspend", "acme", "--table", TABLE, "--reason", "unpaid invoice")
    assert (code, out.strip()) == (0, "acme: ACTIVE -> SUSPENDED")
    stored = item(dynamodb, "acme")
    assert stored is not None and stored["status"] == "SUSPENDED" and stored["reason"] == "unpaid invoice"
    code, out, _ = cli(capsys, "suspend", "acme", "--table", TABLE)
    assert (code, out.strip()) == (0, "acme: already SUSPENDED; nothing written")
    code, out, _ = cli(capsys, "resume", "acme", "--table", TABLE)
    assert (code, out.strip()) == (0, "acme: SUSPENDED -> ACTIVE")
    assert item(dynamodb, "acme")["status"] == "ACTIVE"  # type: ignore[index]


def test_suspend_of_an_unknown_tenant_writes_nothing(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "add", "acme", "--table", TABLE)
    code, out, err = cli(capsys, "suspend", "umbrella", "--table", TABLE)
    assert code == 1 and out == ""
    assert "no tenant 'umbrella'" in err and "known: acme" in err
    assert item(dynamodb, "umbrella") is None  # the conditional update created nothing


def test_a_tenant_in_an_unexpected_state_is_a_conflict(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    dynamodb.put_item(TableName=TABLE, Item={"tenantId": {"S": "odd"}, "status": {"S": "ARCHIVED"}})
    code, _, err = cli(capsys, "suspend", "odd", "--table", TABLE)
    assert code == 1 and "is 'ARCHIVED', not ACTIVE" in err
    assert item(dynamodb, "odd")["status"] == "ARCHIVED"  # type: ignore[index]


def test_the_condition_is_in_the_write_itself(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No read-then-write window: another writer's change between the operator's decision and its write
    makes the write fail, and the other writer's state stays."""
    operator = tenants.TenantOperator(TABLE, dynamodb)
    operator.add("acme")
    real = dynamodb.update_item

    def racing(**kwargs: Any) -> Any:  # another operator archives the tenant just before our write lands
        real(
            TableName=TABLE,
            Key={"tenantId": {"S": "acme"}},
            UpdateExpression="SET #s = :a",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":a": {"S": "ARCHIVED"}},
        )
        return real(**kwargs)

    monkeypatch.setattr(operator.dynamodb, "update_item", racing)
    with pytest.raises(tenants.Conflict, match="is 'ARCHIVED', not ACTIVE"):
        operator.transition("acme", "ACTIVE", "SUSPENDED", reason="late")
    assert item(dynamodb, "acme")["status"] == "ARCHIVED"  # type: ignore[index]


# ----- list -------------------------------------------------------------------------------------------------------
def test_list_shows_every_tenant_without_usage_keys(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "list", "--table", TABLE)
    assert (code, out.strip()) == (0, f"no tenants in table {TABLE} yet")
    cli(capsys, "add", "globex", "--plan", "basic", "--usage-key", "globex-usage-key-0001", "--table", TABLE)
    cli(capsys, "add", "acme", "--plan", "gold", "--table", TABLE)
    cli(capsys, "suspend", "acme", "--table", TABLE, "--reason", "fraud\nreview")
    code, out, _ = cli(capsys, "list", "--table", TABLE)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TENANT", "STATUS", "PLAN", "USAGE", "KEY", "UPDATED", "BY", "REASON"]
    assert lines[1].split()[:4] == ["acme", "SUSPENDED", "gold", "-"] and lines[1].endswith("fraud\\nreview")
    assert lines[2].split()[:4] == ["globex", "ACTIVE", "basic", "yes"]
    assert "globex-usage-key-0001" not in out
    code, out, _ = cli(capsys, "list", "--table", TABLE, "--json")
    assert [(t["tenantId"], t["status"]) for t in json.loads(out)] == [("acme", "SUSPENDED"), ("globex", "ACTIVE")]


def test_list_pages_through_the_table(dynamodb: Any) -> None:
    operator = tenants.TenantOperator(TABLE, dynamodb)
    for n in range(30):
        dynamodb.put_item(
            TableName=TABLE,
            Item={"tenantId": {"S": f"t{n:02d}"}, "status": {"S": "ACTIVE"}, "note": {"S": "x" * 60000}},
        )
    assert [t["tenantId"] for t in operator.all()] == [f"t{n:02d}" for n in range(30)]  # 1.8 MB: several pages


# ----- bad input and missing things -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add"], "add needs the tenant id"),
        (["list", "acme"], "list takes no tenant id"),
        (["add", "../etc"], "is not a tenant id"),
        (["add", "a" * 65], "is not a tenant id"),
        (["add", "_acme"], "is not a tenant id"),
        (["add", "acme", "--plan", "gold plan"], "is not a plan name"),
        (["suspend", "acme", "--plan", "gold"], "--plan applies to add only"),
        (["add", "acme", "--usage-key", "short"], "--usage-key must be"),
        (["add", "acme", "--reason", "x"], "--reason applies to suspend and resume only"),
        (["add", "acme", "--table", " "], "--table is empty"),
        (["list", "--endpoint-url", "ftp://x"], "is not a valid endpoint URL"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_aws_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setattr(tenants.TenantOperator, "connect", None)  # an AWS call would fail loudly
    if "--endpoint-url" in args:
        monkeypatch.undo()
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant=st.text(min_size=1, max_size=80).filter(lambda t: not t.startswith("-")))
def test_hostile_tenant_ids_never_reach_the_table(
    tenant: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def connect(cls: Any, **_: Any) -> Any:
        calls.append("connect")
        raise tenants.ToolkitError("stop here")

    monkeypatch.setattr(tenants.TenantOperator, "connect", classmethod(connect))
    code = main(["tenant", "add", tenant, "--table", TABLE])
    capsys.readouterr()
    if contract.TENANT_ID_PATTERN.fullmatch(tenant):
        assert calls  # a valid id goes on
    else:
        assert code == 2 and not calls


def test_a_missing_table_is_one_line_exit_2(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "list", "--table", "no-such-table")
    assert code == 2 and "table no-such-table does not exist" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "add", "acme", "--table", "no-such-table")
    assert code == 2 and "does not exist" in err


def test_the_table_comes_from_the_stack_outputs(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"RegistryTableName": {"Value": TABLE}, "ApiUrl": {"Value": "https://x"}},
    }
    cloudformation.create_stack(StackName="ServerlessPatternsTenancy", TemplateBody=json.dumps(template))
    code, _, err = cli(capsys, "add", "acme")  # default stack
    assert code == 0, err
    assert item(dynamodb, "acme") is not None
    code, _, err = cli(capsys, "list", "--stack", "NoSuchStack")
    assert code == 2 and "cannot read stack NoSuchStack" in err
    template["Outputs"] = {"ApiUrl": {"Value": "https://x"}}
    cloudformation.create_stack(StackName="Other", TemplateBody=json.dumps(template))
    code, _, err = cli(capsys, "list", "--stack", "Other")
    assert code == 2 and "has no output whose key contains RegistryTable" in err


def test_no_region_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, _, err = cli(capsys, "list", "--table", TABLE)
    assert code == 2 and "no AWS region is configured" in err


# ----- the round trip: onboard, list, suspend, and the authorizer denies ---------------------------------------------
def test_round_trip_the_authorizer_follows_the_registry(
    dynamodb: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    secrets.create_secret(Name="signing-keys", SecretString=json.dumps({"keys": [public | {"kid": "k1"}]}))
    environment = {
        "TENANCY_ISSUER": ISSUER, "TENANCY_AUDIENCE": AUDIENCE, "TENANCY_ALGORITHM": "RS256",
        "TENANCY_KEY_SOURCE": "secret", "TENANCY_KEY_SECRET_ARN": "signing-keys", "TENANCY_REGISTRY_TABLE": TABLE,
        "TENANCY_REGISTRY_CACHE_SECONDS": "0", "TENANCY_DECISION_CACHE_SECONDS": "0",
    }  # fmt: skip
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    authorizer = load_runtime_module("tenancy_authorizer", "tenancy_authorizer", name="tenancy_authorizer_cli")
    authorizer.reset()

    def decide(tenant: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "iat": now, "tenant_id": tenant}
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        event = {"type": "REQUEST", "methodArn": METHOD_ARN, "headers": {"Authorization": f"Bearer {token}"}}
        answer = authorizer.handler(event, None)
        return str(answer["policyDocument"]["Statement"][0]["Effect"])

    try:
        assert decide("acme") == "Deny"  # not onboarded yet
        assert cli(capsys, "add", "acme", "--plan", "gold", "--table", TABLE)[0] == 0
        assert decide("acme") == "Allow"
        _, out, _ = cli(capsys, "list", "--table", TABLE, "--json")
        assert [(t["tenantId"], t["status"], t["plan"]) for t in json.loads(out)] == [("acme", "ACTIVE", "gold")]
        assert cli(capsys, "suspend", "acme", "--table", TABLE)[0] == 0
        assert decide("acme") == "Deny"
        assert cli(capsys, "resume", "acme", "--table", TABLE)[0] == 0
        assert decide("acme") == "Allow"
    finally:
        authorizer.reset()
        sys.modules.pop("tenancy_authorizer_cli", None)


# ----- per-tenant API keys for TenantApi(plans=...) -----------------------------------------------------------------
def usage_plan(name: str = "orders-gold") -> str:
    apigateway = boto3.client("apigateway", region_name="us-east-1")
    return str(apigateway.create_usage_plan(name=name, throttle={"rateLimit": 5, "burstLimit": 10})["id"])


def test_add_with_api_key_creates_the_key_in_the_plans_usage_plan(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_id = usage_plan()
    code, out, err = cli(capsys, "add", "acme", "--plan", "gold", "--api-key", "--usage-plan-id", plan_id,
                         "--table", TABLE, "--json")  # fmt: skip
    assert code == 0, err
    outcome = json.loads(out)
    apigateway = boto3.client("apigateway", region_name="us-east-1")
    key = apigateway.get_api_key(apiKey=outcome["apiKeyId"], includeValue=True)
    stored = item(dynamodb, "acme")
    assert stored is not None and stored["usageKey"] == key["value"] and len(key["value"]) == 40
    assert key["enabled"] is True
    members = apigateway.get_usage_plan_keys(usagePlanId=plan_id)["items"]
    assert [m["id"] for m in members] == [outcome["apiKeyId"]]


def test_add_with_api_key_of_an_existing_tenant_creates_no_key(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_id = usage_plan()
    cli(capsys, "add", "acme", "--plan", "gold", "--table", TABLE)
    code, _, err = cli(capsys, "add", "acme", "--plan", "gold", "--api-key", "--usage-plan-id", plan_id,
                       "--table", TABLE)  # fmt: skip
    assert code == 1 and "already exists" in err
    assert boto3.client("apigateway", region_name="us-east-1").get_api_keys()["items"] == []


def test_a_key_is_deleted_again_when_the_tenant_appears_meanwhile(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_id = usage_plan()
    apigateway = boto3.client("apigateway", region_name="us-east-1")
    operator = tenants.TenantOperator(TABLE, dynamodb, apigateway=apigateway)
    real = apigateway.create_usage_plan_key

    def racing(**kwargs: Any) -> Any:  # another operator adds the tenant while the key is being made
        dynamodb.put_item(TableName=TABLE, Item={"tenantId": {"S": "acme"}, "status": {"S": "ACTIVE"}})
        return real(**kwargs)

    monkeypatch.setattr(apigateway, "create_usage_plan_key", racing)
    with pytest.raises(tenants.Conflict):
        operator.add_with_api_key("acme", plan="gold", usage_plan_id=plan_id)
    assert apigateway.get_api_keys()["items"] == []  # no orphan key
    assert "usageKey" not in (item(dynamodb, "acme") or {})


def test_the_usage_plan_is_found_in_the_stack_by_plan_name(dynamodb: Any) -> None:
    class Pages:
        def paginate(self, StackName: str) -> list[dict[str, Any]]:
            assert StackName == "ServerlessPatternsTenancy"
            return [{"StackResourceSummaries": [
                {"ResourceType": "AWS::ApiGateway::UsagePlan", "LogicalResourceId": "ApiPlangoldA1B2C3D4",
                 "PhysicalResourceId": "gold-id"},
                {"ResourceType": "AWS::ApiGateway::UsagePlan", "LogicalResourceId": "ApiPlangoldenA1B2C3D4",
                 "PhysicalResourceId": "golden-id"},
                {"ResourceType": "AWS::ApiGateway::UsagePlan", "LogicalResourceId": "ApiPlanbasic0F0F0F0F",
                 "PhysicalResourceId": "basic-id"},
            ]}]  # fmt: skip

    class CloudFormation:
        def get_paginator(self, name: str) -> Pages:
            assert name == "list_stack_resources"
            return Pages()

    operator = tenants.TenantOperator(TABLE, dynamodb, cloudformation=CloudFormation())
    assert operator.usage_plan_of("gold", "ServerlessPatternsTenancy") == "gold-id"
    assert operator.usage_plan_of("basic", "ServerlessPatternsTenancy") == "basic-id"
    with pytest.raises(tenants.ToolkitError, match="no usage plan of plan 'silver'"):
        operator.usage_plan_of("silver", "ServerlessPatternsTenancy")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "acme", "--api-key"], "apply to add with --plan only"),
        (["suspend", "acme", "--api-key"], "apply to add with --plan only"),
        (["add", "acme", "--plan", "gold", "--usage-plan-id", "x"], "--usage-plan-id needs --api-key"),
    ],
)
def test_api_key_option_rules(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, _, err = cli(capsys, *args)
    assert code == 2 and message in err


# ----- second review ----------------------------------------------------------------------------------------------
def test_list_as_json_never_prints_a_usage_key_value(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/toolkit.md: ``list`` never prints key values; JSON output lands in CI logs just as the table does."""
    cli(capsys, "add", "globex", "--plan", "basic", "--usage-key", "globex-usage-key-0001", "--table", TABLE)
    cli(capsys, "add", "acme", "--table", TABLE)
    code, out, _ = cli(capsys, "list", "--table", TABLE, "--json")
    assert code == 0 and "globex-usage-key-0001" not in out
    listed = {t["tenantId"]: t for t in json.loads(out)}
    assert listed["globex"]["hasUsageKey"] is True and listed["acme"]["hasUsageKey"] is False
    assert "usageKey" not in listed["globex"]
    assert item(dynamodb, "globex")["usageKey"] == "globex-usage-key-0001"  # type: ignore[index]  # stored as it was


@pytest.mark.parametrize("hostile", ["\x9b31m", "\u202egnp.exe", "a\u2028b", "\x1b]0;title\x07"])
def test_list_escapes_every_terminal_control_in_cells(hostile: str) -> None:
    """C1 controls (CSI 0x9B), bidirectional overrides and line separators written by anyone with table access."""
    out = tenants.format_items([{"tenantId": "acme", "status": "ACTIVE", "reason": hostile}], TABLE)
    assert all(line.isprintable() for line in out.splitlines())
    assert len(out.splitlines()) == 2
