"""The tenancy integration-test app (integ/integ_tenancy.py), synthesized offline.

The CDK integ-runner cannot read this aws-cdk-lib's cloud assembly yet (schema 55; it reads up to 53),
so these tests check what it would deploy. The app's test case and assertion stack are part of the
tenancy tests' one session app (``tenancy_app.py`` calls ``integ_tenancy.add_integ_test``), so the
session synthesizes once; ``build_app`` builds exactly the same two stacks on their own.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension
from tenancy_app import TenancyApp
from tenancy_support import request_event
from test_tenancy_sample import SAMPLE, resources_of, sample_authorizer

from cdk_serverless_patterns.testing.integ import (
    integ_test_cases,
    nag_evaluated_stacks,
    normalize_integ_template,
    resources_without_stack_ids,
)

#: The app these tests cover (tests/callback/test_callback_integ_app.py checks every app has such a line).
APP = "integ_tenancy"
INTEG_SAMPLE = "IntegServerlessPatternsTenancy"
ASSERTIONS = "TenancyInteg/DefaultTest/DeployAssert"


def test_integ_app_registers_the_sample_stack_as_its_test_case(tenancy_app: TenancyApp) -> None:
    cases = list(integ_test_cases(tenancy_app.assembly.outdir).values())
    assert [(c.stacks, c.assertion_stack) for c in cases] == [([INTEG_SAMPLE], ASSERTIONS)]

    # The same resources; names derived from the stack id (descriptions, API and authorizer names, and
    # the API deployment's hash of them) differ, so the functions are compared property by property.
    def shape(template: dict[str, Any]) -> Counter[str]:
        return Counter(v["Type"] for v in template["Resources"].values())

    integ = tenancy_app.template(INTEG_SAMPLE)
    sample = tenancy_app.template(SAMPLE)
    assert shape(integ) == shape(sample)
    for kind in (
        "AWS::Lambda::Function",
        "AWS::DynamoDB::Table",
        "AWS::SecretsManager::Secret",
        "Custom::TenantRegistrySeed",
    ):
        assert resources_without_stack_ids({"Resources": resources_of(integ, kind)}) == resources_without_stack_ids(
            {"Resources": resources_of(sample, kind)}
        ), kind
    assert INTEG_SAMPLE in nag_evaluated_stacks(tenancy_app.assembly.outdir)
    assert not [f for f in tenancy_app.assembly.nag_findings if f.path.startswith(f"{INTEG_SAMPLE}/")]


def http_calls(tenancy_app: TenancyApp) -> list[dict[str, Any]]:
    """The assertion stack's HTTP calls, in the order their DependsOn runs them."""
    resources = tenancy_app.template(ASSERTIONS)["Resources"]
    calls = {k: v for k, v in resources.items() if v["Type"].startswith("Custom::DeployAssert@")}
    ordered: list[str] = []
    while len(ordered) < len(calls):
        for key, call in calls.items():
            deps = [d for d in call.get("DependsOn", []) if d in calls]
            if key not in ordered and all(d in ordered for d in deps):
                ordered.append(key)
    return [calls[k] | {"id": k} for k in ordered]


def test_integ_assertions_call_the_api_as_tenants_and_forgers(tenancy_app: TenancyApp) -> None:
    calls = http_calls(tenancy_app)
    kinds = [c["Type"].split("@", 1)[1] for c in calls]
    assert kinds == ["HttpCall", "HttpCall", "SdkCallLambdainvoke", "HttpCall", "SdkCallLambdainvoke", "HttpCall"]
    expected = [json.loads(c["Properties"]["expected"]) for c in calls]
    assert expected[0] == {"$ObjectLike": {"status": 401}}
    assert expected[1] == {"$ObjectLike": {"status": 403}}
    assert expected[3] == {"$ObjectLike": {"status": 200, "body": {"$ObjectLike": {"tenant": "acme"}}}}
    assert expected[5] == {"$ObjectLike": {"status": 403}}
    assert "fetchOptions" in calls[0]["Properties"]["parameters"]
    assert not calls[0]["Properties"]["parameters"]["fetchOptions"].get("headers")
    for token_call, api_call in ((calls[2], calls[3]), (calls[4], calls[5])):
        header = api_call["Properties"]["parameters"]["fetchOptions"]["headers"]["Authorization"]
        assert header == {
            "Fn::Join": ["", ["Bearer ", {"Fn::GetAtt": [token_call["id"], "apiCallResponse.Payload.token"]}]]
        }


def test_the_integ_forged_token_is_denied_by_the_real_authorizer(
    tenancy_app: TenancyApp, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assertion's alg:none token, run through the authorizer configured as the sample configures it."""
    forged = http_calls(tenancy_app)[1]["Properties"]["parameters"]["fetchOptions"]["headers"]["Authorization"]
    module, _ = sample_authorizer(monkeypatch)
    answer = module.handler(request_event(forged.removeprefix("Bearer ")), None)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_build_app_builds_the_test_case_and_its_assertions_alone() -> None:
    import aws_cdk as cdk
    import integ_tenancy

    app = integ_tenancy.build_app()
    stacks = sorted(child.node.path for child in app.node.find_all() if isinstance(child, cdk.Stack))
    assert stacks == [INTEG_SAMPLE, "TenancyInteg/DefaultTest/DeployAssert"]


def test_assertion_stack_snapshot(tenancy_app: TenancyApp, snapshot: Any) -> None:
    assertions = normalize_integ_template(tenancy_app.template(ASSERTIONS))
    assert assertions == snapshot.use_extension(JSONSnapshotExtension)


def test_assertion_providers_may_invoke_the_token_issuer(tenancy_app: TenancyApp) -> None:
    """The token calls need lambda:InvokeFunction on the issuer (else they fail in the account)."""
    from cdk_serverless_patterns.testing.integ import granted_actions

    assert "lambda:InvokeFunction" in granted_actions(tenancy_app.template(ASSERTIONS))
