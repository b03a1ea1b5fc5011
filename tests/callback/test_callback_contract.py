"""The callback contract: the construct, its runtime code and the testing helpers agree on every name.

The runtime code (``lambda_src/callback_url``, ``lambda_src/callback_durable``) ships alone and keeps
its own copies of the names in ``cdk_serverless_patterns.callback.contract``; these tests hold the
copies, and what the construct synthesizes, to the contract.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from typing import Any

from cdk_serverless_patterns.callback import contract, signing
from cdk_serverless_patterns.testing.moto import load_runtime_module

handler = load_runtime_module("callback_url", "callback_url_handler", name="callback_url_handler_contract")
durable = load_runtime_module("callback_durable", "durable_callback", name="durable_callback_contract")

CDK_MODULES = ("aws_cdk", "jsii", "constructs")


def test_the_contract_imports_without_the_cdk() -> None:
    probe = (
        "import json, sys\n"
        "import cdk_serverless_patterns.callback.contract\n"
        "import cdk_serverless_patterns.callback.signing\n"
        "import cdk_serverless_patterns.callback\n"
        "import cdk_serverless_patterns.testing.moto\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {CDK_MODULES!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_the_pattern_package_exports_its_contract() -> None:
    import cdk_serverless_patterns.callback as package

    assert package.contract is contract
    assert {"CallbackPattern", "CallbackUrls", "JobSource", "contract"} <= set(package.__all__)


def test_the_callback_url_handler_keeps_the_contracts_names() -> None:
    assert (handler.EVENT_SOURCE, handler.EVENT_DETAIL_TYPE) == (
        contract.CALLBACK_URL_EVENT_SOURCE,
        contract.CALLBACK_URL_DETAIL_TYPE,
    )
    assert (handler.TABLE_KEY, handler.KIND_TOKEN, handler.KIND_COMPLETION) == (
        contract.TABLE_KEY,
        contract.KIND_TOKEN,
        contract.KIND_COMPLETION,
    )
    assert handler.SECRET_HASH_ATTRIBUTE == contract.SECRET_HASH_ATTRIBUTE
    # API Gateway lower-cases nothing, but HTTP header names are case-insensitive: the handler compares lower case.
    assert (
        contract.SECRET_HEADER.lower(),
        contract.SIGNATURE_HEADER.lower(),
        contract.TIMESTAMP_HEADER.lower(),
    ) == (handler.SECRET_HEADER, handler.SIGNATURE_HEADER, handler.TIMESTAMP_HEADER)
    assert handler.NAMESPACE_PATTERN.pattern == contract.NAMESPACE_PATTERN.pattern
    assert handler.AUTH_MODES == contract.AUTH_MODES
    assert (handler.SUCCESS, handler.FAILURE) == (contract.SUCCEEDED, contract.FAILED)
    assert (handler.MAX_ERROR_CHARS, handler.MAX_CAUSE_CHARS) == (contract.MAX_ERROR_LENGTH, contract.MAX_CAUSE_LENGTH)
    assert (handler.CLAIM_ATTRIBUTE, handler.CLAIM_ID_FIELD) == (contract.CLAIM_ATTRIBUTE, contract.CLAIM_ID_FIELD)
    from cdk_serverless_patterns.callback import asl

    assert handler.KIND_RESUMED == contract.KIND_RESUMED == asl.KIND_RESUMED
    assert handler.SIGNATURE_VERSION == contract.SIGNATURE_VERSION == signing.SIGNATURE_VERSION
    assert (signing.SIGNATURE_HEADER, signing.TIMESTAMP_HEADER) == (
        contract.SIGNATURE_HEADER,
        contract.TIMESTAMP_HEADER,
    )


def test_the_handler_keeps_an_identical_copy_of_the_signing_helper() -> None:
    """Third parties sign with ``callback/signing.py``; the handler verifies with its own copy."""
    for name in ("signing_message", "sign_callback"):
        assert inspect.getsource(getattr(handler, name)) == inspect.getsource(getattr(signing, name)), name


def test_the_documented_worked_example_of_a_signature() -> None:
    """The example in docs/callback.md ("Signing a callback"), computed by both copies."""
    body = '{"status":"SUCCEEDED","output":{"pages":3}}'
    expected = {
        "X-Timestamp": "1790000000",
        "X-Signature": "sha256=c81e5001e3e3063f0df074493d6f4404844a7ba06cd3479989365c04df4e2d32",
    }
    for module in (signing, handler):
        assert (
            module.sign_callback(
                "vendor-key-0123", namespace="vendor", job_id="job-42", body=body, timestamp=1790000000
            )
            == expected
        )
        assert module.signing_message("1790000000", "vendor", "job-42", body.encode()) == (
            b'v1\n1790000000\nvendor\njob-42\n{"status":"SUCCEEDED","output":{"pages":3}}'
        )


def test_the_callback_url_handler_reads_the_environment_the_construct_sets() -> None:
    settings = handler.Settings.from_environment(
        {
            contract.ENV_TABLE: "tokens",
            contract.ENV_EVENT_BUS: "bus",
            contract.ENV_NAMESPACES: "a,b",
            contract.ENV_AUTH_MODE: "hmac",
            contract.ENV_HMAC_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:k",
            contract.ENV_REPLAY_WINDOW_SECONDS: "60",
            contract.ENV_MAX_BODY_BYTES: "1024",
            contract.ENV_ACCEPT_EARLY_CALLBACKS: "true",
            contract.ENV_COMPLETION_TTL_SECONDS: "7200",
        }
    )
    assert settings.completion_ttl_seconds == 7200
    assert (settings.table_name, settings.event_bus_name, settings.namespaces, settings.auth_mode) == (
        "tokens",
        "bus",
        frozenset({"a", "b"}),
        "hmac",
    )
    assert settings.hmac_secret_arn.endswith(":secret:k")
    assert (settings.replay_window_seconds, settings.max_body_bytes, settings.accept_early_callbacks) == (
        60,
        1024,
        True,
    )


def test_the_handler_reads_per_namespace_keys_from_the_environment_the_construct_sets() -> None:
    settings = handler.Settings.from_environment(
        {
            contract.ENV_TABLE: "tokens",
            contract.ENV_EVENT_BUS: "bus",
            contract.ENV_NAMESPACES: "a,b",
            contract.ENV_AUTH_MODE: "hmac",
            contract.ENV_HMAC_SECRET_ARNS: json.dumps({"a": "arn-a", "b": "arn-b"}),
        }
    )
    assert (settings.secret_arn_for("a"), settings.secret_arn_for("b"), settings.hmac_secret_arn) == (
        "arn-a",
        "arn-b",
        None,
    )


def test_the_durable_backend_keeps_the_contracts_names() -> None:
    assert durable.BACKEND == contract.BACKEND_DURABLE


def test_the_construct_synthesizes_the_contracts_names(flow_template: dict[str, Any]) -> None:
    resources = flow_template["Resources"]
    tables = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table"]
    assert [t["KeySchema"] for t in tables] == [[{"AttributeName": contract.TABLE_KEY, "KeyType": "HASH"}]]
    assert tables[0]["TimeToLiveSpecification"] == {"AttributeName": contract.TTL_ATTRIBUTE, "Enabled": True}
    url_functions = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function" and "callback" in json.dumps(r["Properties"].get("Description", ""))
    ]
    (url_function,) = url_functions
    names = set(url_function["Environment"]["Variables"])
    declared = {value for key, value in vars(contract).items() if key.startswith("ENV_")}
    assert names <= declared, names - declared
    rules = [r["Properties"]["EventPattern"] for r in resources.values() if r["Type"] == "AWS::Events::Rule"]
    assert {
        "source": [contract.CALLBACK_URL_EVENT_SOURCE],
        "detail-type": [contract.CALLBACK_URL_DETAIL_TYPE],
    }.items() <= next(p for p in rules if p.get("source") == [contract.CALLBACK_URL_EVENT_SOURCE]).items()
    machines = json.dumps([r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"])
    assert contract.ALREADY_AWAITED in machines and contract.SECRET_HASH_ATTRIBUTE in machines
