"""Review findings of the callback pattern, run for real: the synthesized wait step and resumer in
moto's Step Functions interpreter against moto DynamoDB (fixtures in ``conftest.py``).

- numeric job ids: ``$string`` keeps 15 significant digits (JSONata, in AWS too), so only integer
  numbers below 10^15 are job ids, in the wait step and in the resumer alike;
- callback-URL job ids reused within ``completion_ttl``: a replayed signed callback of run 1 must
  not resume run 2;
- the output limit counts UTF-8 bytes, as Step Functions does, not characters.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cdk_serverless_patterns.callback.asl import (
    INVALID_JOB_ID,
    JOB_ID_REUSED,
    MAX_OUTPUT_BYTES,
    NUMBER_JOB_ID_RULE,
    OUTPUT_TOO_LARGE,
)
from cdk_serverless_patterns.testing.moto import load_runtime_module

pytestmark = pytest.mark.slow

callback_url_handler = load_runtime_module(
    "callback_url", "callback_url_handler", name="callback_url_handler__test_callback_review"
)

PARTNER = ("com.example.partner", "Partner Job Finished")


def _put_raw(flows: Any, detail_text: str) -> None:
    """A partner event whose detail is this exact JSON text (numbers as written: ``1e3``, ``1.0``)."""
    entry = {"Source": PARTNER[0], "DetailType": PARTNER[1], "Detail": detail_text}
    assert flows.events.put_events(Entries=[entry])["FailedEntryCount"] == 0


def _status_after(flows: Any, execution: str, seconds: float = 1.5) -> str:
    time.sleep(seconds)
    return str(flows.sfn.describe_execution(executionArn=execution)["status"])


# --------------------------------------------------------------------------- numeric job ids
def test_a_16_digit_job_id_never_resumes_the_waiter_of_its_neighbour(moto_flows: Any) -> None:
    """1234567890123456 and 1234567890123457 have the same 15-significant-digit text."""
    flows = moto_flows
    neighbour = flows.start("PartnerFlow", "1234567890123457")
    flows.wait_for_item("partner#1234567890123457")
    _put_raw(flows, '{"id": 1234567890123456, "state": "DONE"}')
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "IGNORED"
    assert run["result"]["reason"].startswith("the job id at $.detail.id is ")
    assert run["result"]["reason"].endswith(NUMBER_JOB_ID_RULE)
    assert _status_after(flows, neighbour) == "RUNNING"
    assert set(flows.items()) == {"partner#1234567890123457"}, "nothing recorded under a rounded id"
    # The same id as a string resumes exactly its own waiter.
    flows.put(*PARTNER, {"id": "1234567890123457", "state": "DONE"})
    assert flows.finish(neighbour)["status"] == "SUCCEEDED"


@pytest.mark.parametrize("raw", ["1.5", "0.10", "1e15", "-1234567890123456", "12345678901234567891"])
def test_numbers_that_are_not_exact_job_ids_are_ignored_with_a_reason(moto_flows: Any, raw: str) -> None:
    flows = moto_flows
    _put_raw(flows, f'{{"id": {raw}, "state": "DONE"}}')
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "IGNORED"
    assert run["result"]["reason"].endswith(NUMBER_JOB_ID_RULE)
    assert flows.items() == {}


@pytest.mark.parametrize(
    ("raw", "waiter"), [("1e3", "1000"), ("1.0", "1"), ("-42", "-42"), ("999999999999999", "999999999999999")]
)
def test_integer_numbers_below_10_to_the_15_are_their_decimal_text(moto_flows: Any, raw: str, waiter: str) -> None:
    """A JSON number is its value: ``1e3`` is the number 1000 (JSON cannot tell them apart)."""
    flows = moto_flows
    execution = flows.start("PartnerFlow", waiter)
    flows.wait_for_item(f"partner#{waiter}")
    _put_raw(flows, f'{{"id": {raw}, "state": "DONE"}}')
    assert flows.finish(execution)["status"] == "SUCCEEDED"
    assert flows.resumer_runs(1)[0]["result"]["id"] == f"partner#{waiter}"


def test_a_numeric_job_id_in_the_workflow_waits_as_its_text(moto_flows: Any) -> None:
    """4711 in the workflow's state, "4711" in the event (the other way round is in test_callback_flows)."""
    flows = moto_flows
    execution = flows.start("PartnerFlow", 4711)
    flows.wait_for_item("partner#4711")
    flows.put(*PARTNER, {"id": "4711", "state": "DONE"})
    assert flows.finish(execution)["status"] == "SUCCEEDED"
    assert flows.resumer_runs(1)[0]["result"]["id"] == "partner#4711"


@pytest.mark.parametrize(
    ("job_id", "cause"),
    [
        (1234567890123456, NUMBER_JOB_ID_RULE),
        (1.5, f"the job id at $.started.JobId is 1.5: {NUMBER_JOB_ID_RULE}"),
        ("", "the job id at $.started.JobId is empty"),
        (None, "the job id at $.started.JobId is null, not a string or a number"),
        ({"a": 1}, "the job id at $.started.JobId is object, not a string or a number"),
    ],
)
def test_a_wait_with_an_invalid_job_id_fails_instead_of_parking(moto_flows: Any, job_id: Any, cause: str) -> None:
    flows = moto_flows
    execution = flows.start("PartnerFlow", job_id)
    error = json.loads(flows.finish(execution)["output"])["error"]
    assert error["Error"] == INVALID_JOB_ID
    if isinstance(job_id, int):
        # JSONata prints the number to 15 significant digits (differently in moto and in AWS).
        assert error["Cause"].startswith("the job id at $.started.JobId is ") and error["Cause"].endswith(cause)
    else:
        assert error["Cause"] == cause
    assert flows.items() == {}, "nothing parked under a wrong key"


# --------------------------------------------------------------------------- callback-URL job id reuse
def _handler(flows: Any) -> Any:
    """The callback-URL handler (lambda_src/callback_url), in-process against the same moto. Secret
    mode: the emulator has no Secrets Manager for HMAC keys; the wait step's check is the same."""
    settings = callback_url_handler.Settings(
        table_name=flows.table, event_bus_name=flows.callback_bus, namespaces=frozenset({"vendor"}), auth_mode="secret"
    )
    return callback_url_handler.CallbackUrlHandler(
        settings=settings, dynamodb=flows.dynamodb, events=flows.events, secrets=None
    )


def _callback(job_id: str, body: dict[str, Any], secret: str) -> dict[str, Any]:
    return {
        "resource": "/callbacks/{namespace}/{jobId}",
        "httpMethod": "POST",
        "headers": {"X-Callback-Secret": secret},
        "pathParameters": {"namespace": "vendor", "jobId": job_id},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def test_a_reused_callback_url_job_id_fails_instead_of_taking_a_replayed_callback(moto_flows: Any) -> None:
    flows = moto_flows
    handler = _handler(flows)
    first = flows.start("UrlFlow", "order-7", secret="same-secret")
    flows.wait_for_item("vendor#order-7")
    captured = _callback("order-7", {"status": "SUCCEEDED", "output": {"run": 1}}, "same-secret")
    assert handler.handle(captured)["statusCode"] == 202
    assert flows.finish(first)["status"] == "SUCCEEDED"
    flows.resumer_runs(1)
    assert flows.items()["vendor#order-7"]["kind"]["S"] == "resumed"

    # Run 2 with the same job id while the marker lives: it fails, it does not park.
    second = flows.start("UrlFlow", "order-7", secret="same-secret")
    error = json.loads(flows.finish(second)["output"])["error"]
    assert error["Error"] == JOB_ID_REUSED
    assert error["Cause"].startswith("callback-URL job ids must be unique for completion_ttl: ")
    assert flows.items()["vendor#order-7"]["kind"]["S"] == "resumed", "the marker is left as it was"
    # The replayed callback finds no waiter to resume.
    assert handler.handle(captured)["statusCode"] in (403, 404, 409)
    assert flows.tokens() == {}

    # A new job id works.
    third = flows.start("UrlFlow", "order-8", secret="other-secret")
    flows.wait_for_item("vendor#order-8")
    accepted = handler.handle(_callback("order-8", {"status": "SUCCEEDED", "output": {"run": 3}}, "other-secret"))
    assert accepted["statusCode"] == 202
    result = flows.finish(third)
    assert result["status"] == "SUCCEEDED" and json.loads(result["output"])["job"] == {"run": 3}


def test_a_second_callback_url_waiter_for_a_parked_job_id_is_still_already_awaited(moto_flows: Any) -> None:
    flows = moto_flows
    flows.start("UrlFlow", "dup-1", secret="s")
    flows.wait_for_item("vendor#dup-1")
    second = flows.start("UrlFlow", "dup-1", secret="s")
    assert json.loads(flows.finish(second)["output"])["error"]["Error"] == "CallbackPattern.JobAlreadyAwaited"


def test_a_callback_url_wait_still_takes_an_early_completion(moto_flows: Any) -> None:
    """The record the handler writes for an early (HMAC) callback, in the contract's format: the
    claim-bound wait takes it before it looks for a marker."""
    flows = moto_flows
    now = time.time()
    flows.dynamodb.put_item(
        TableName=flows.table,
        Item={
            "id": {"S": "vendor#early-1"},
            "kind": {"S": "completion"},
            "status": {"S": "SUCCEEDED"},
            "output": {"S": json.dumps({"early": True})},
            "error": {"S": "vendor.SUCCEEDED"},
            "cause": {"S": ""},
            "createdAt": {"S": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))},
            "eventTime": {"S": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))},
            "ttl": {"N": str(int(now) + 3600)},
            "callbackRequestId": {"S": "claim-early-1"},
        },
    )
    result = flows.finish(flows.start("UrlFlow", "early-1", secret="s"))
    assert result["status"] == "SUCCEEDED" and json.loads(result["output"])["job"] == {"early": True}
    assert flows.items()["vendor#early-1"]["kind"]["S"] == "resumed"


def test_other_sources_still_park_over_a_resumed_marker(moto_flows: Any) -> None:
    flows = moto_flows
    first = flows.start("PartnerFlow", "again")
    flows.wait_for_item("partner#again")
    flows.put(*PARTNER, {"id": "again", "state": "DONE"})
    assert flows.finish(first)["status"] == "SUCCEEDED"
    flows.resumer_runs(1)
    second = flows.start("PartnerFlow", "again")
    flows.wait_for_item("partner#again")
    flows.put(*PARTNER, {"id": "again", "state": "DONE", "run": 2})
    assert flows.finish(second)["status"] == "SUCCEEDED"


# --------------------------------------------------------------------------- output size in UTF-8 bytes
def _multibyte_detail(job_id: str, char: str, count: int) -> tuple[dict[str, Any], str]:
    detail = {"id": job_id, "state": "DONE", "blob": char * count}
    return detail, json.dumps(detail, ensure_ascii=False, separators=(",", ":"))


def test_an_output_over_the_limit_in_utf8_bytes_but_not_in_characters_is_too_large(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("BigFlow", "mb-1")
    flows.wait_for_item("partner#mb-1")
    _, text = _multibyte_detail("mb-1", "\u20ac", 84_000)  # 3 bytes each
    assert len(text) < MAX_OUTPUT_BYTES < len(text.encode())
    _put_raw(flows, text)
    error = json.loads(flows.finish(execution)["output"])["error"]
    assert error["Error"] == OUTPUT_TOO_LARGE
    assert f"{len(text.encode())} bytes" in error["Cause"] and str(MAX_OUTPUT_BYTES) in error["Cause"]
    assert flows.resumer_runs(1)[0]["result"]["outcome"] == "FAILED"


def test_a_multibyte_output_within_the_limit_resumes_with_it(moto_flows: Any) -> None:
    """Two-byte characters: 120,000 of them fit (and their \\u escapes would not: moto's $string keeps them)."""
    flows = moto_flows
    execution = flows.start("BigFlow", "mb-2")
    flows.wait_for_item("partner#mb-2")
    detail, text = _multibyte_detail("mb-2", "\u00e9", 120_000)
    assert len(text.encode()) <= MAX_OUTPUT_BYTES
    _put_raw(flows, text)
    result = flows.finish(execution)
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"])["job"] == detail


def test_utf8_byte_count_of_the_resumer_expression() -> None:
    """The JSONata byte count, evaluated by the engine moto uses, against Python's UTF-8 encoder."""
    import jsonata  # type: ignore[import-untyped]

    from cdk_serverless_patterns.callback.asl import utf8_bytes
    from cdk_serverless_patterns.local.patches import jsonata_engine

    jsonata_engine.install()
    expression = jsonata.Jsonata(utf8_bytes("$string($)"))
    for value in [{"a": "x"}, {"a": "\u00e9\u07ff"}, {"a": "\u0800\u20ac\uffff"}, {"a": "\U0001f600 ok"}, ["\u0080"]]:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        assert expression.evaluate(value) == len(text.encode()), value
