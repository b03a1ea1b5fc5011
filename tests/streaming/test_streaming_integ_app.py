"""The streaming integration-test app (integ/integ_streaming.py), synthesized offline.

The CDK integ-runner cannot read this aws-cdk-lib's cloud assembly yet (schema 55; it reads up to 53),
so these tests check what it would deploy. The app's test case and assertion stack are part of the
streaming tests' one session app (``conftest.py`` calls ``integ_streaming.add_integ_test``), so the
session synthesizes once; ``build_app`` builds exactly the same two stacks on their own.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.testing.integ import (
    integ_test_cases,
    nag_evaluated_stacks,
    normalize_integ_template,
    resources_without_stack_ids,
)

#: The app these tests cover (tests/callback/test_callback_integ_app.py checks every app has such a line).
APP = "integ_streaming"
SAMPLE = "ServerlessPatternsStreaming"
INTEG_SAMPLE = "IntegServerlessPatternsStreaming"
ASSERTIONS = "StreamingInteg/DefaultTest/DeployAssert"


def resources_of(raw: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in raw["Resources"].items() if v["Type"] == kind}


# ----- the integration-test app --------------------------------------------------------------------------
def test_integ_app_registers_the_sample_stack_as_its_test_case(streaming_app: Any) -> None:
    cases = list(integ_test_cases(streaming_app.assembly.outdir).values())
    assert [(c.stacks, c.assertion_stack) for c in cases] == [([INTEG_SAMPLE], ASSERTIONS)]
    integ, sample = streaming_app.template(INTEG_SAMPLE), streaming_app.template(SAMPLE)

    def shape(template: dict[str, Any]) -> Counter[str]:
        return Counter(v["Type"] for v in template["Resources"].values())

    assert shape(integ) == shape(sample)
    for kind in ("AWS::Lambda::Function", "AWS::DynamoDB::Table", "AWS::Lambda::Url", "AWS::ApiGatewayV2::Route"):
        assert resources_without_stack_ids({"Resources": resources_of(integ, kind)}) == resources_without_stack_ids(
            {"Resources": resources_of(sample, kind)}
        ), kind
    assert INTEG_SAMPLE in nag_evaluated_stacks(streaming_app.assembly.outdir)
    assert not [f for f in streaming_app.assembly.nag_findings if f.path.startswith(f"{INTEG_SAMPLE}/")]


def _calls(streaming_app: Any) -> list[dict[str, Any]]:
    resources = streaming_app.template(ASSERTIONS)["Resources"]
    calls = {k: v for k, v in resources.items() if v["Type"].startswith("Custom::DeployAssert@")}
    ordered: list[str] = []
    while len(ordered) < len(calls):
        for key, call in calls.items():
            deps = [d for d in call.get("DependsOn", []) if d in calls]
            if key not in ordered and all(d in ordered for d in deps):
                ordered.append(key)
    return [calls[k] | {"id": k} for k in ordered]


def test_integ_assertions_call_the_endpoints_as_clients(streaming_app: Any) -> None:
    calls = _calls(streaming_app)
    kinds = [c["Type"].split("@", 1)[1] for c in calls]
    assert kinds == ["HttpCall", "SdkCallSecretsManagergetSecretValue", "HttpCall", "HttpCall"]
    expected = [json.loads(c["Properties"]["expected"]) if "expected" in c["Properties"] else None for c in calls]
    assert expected[0] == {"$ObjectLike": {"status": 401}}
    with_token = expected[2]
    assert with_token is not None and with_token["$ObjectLike"]["status"] == 200
    assert "event: done" in json.dumps(with_token)  # a complete stream, not a truncated one
    assert expected[3] == {"$ObjectLike": {"status": 403}}
    header = calls[2]["Properties"]["parameters"]["fetchOptions"]["headers"]["Authorization"]
    assert header == {"Fn::Join": ["", ["Bearer ", {"Fn::GetAtt": [calls[1]["id"], "apiCallResponse.SecretString"]}]]}


def test_build_app_builds_the_test_case_and_its_assertions_alone() -> None:
    import aws_cdk as cdk
    import integ_streaming

    app = integ_streaming.build_app()
    stacks = sorted(child.node.path for child in app.node.find_all() if isinstance(child, cdk.Stack))
    assert stacks == [INTEG_SAMPLE, ASSERTIONS]


def test_assertion_stack_snapshot(streaming_app: Any, snapshot: Any) -> None:
    assertions = normalize_integ_template(streaming_app.template(ASSERTIONS))
    assert assertions == snapshot.use_extension(JSONSnapshotExtension)
