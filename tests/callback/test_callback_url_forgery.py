"""Forged resumes: a ``Job Callback`` event that did not come from the callback-URL handler resumes nothing.

Two layers keep a callback-URL namespace resumable only through the authenticated endpoint:

1. ``CallbackUrls`` has its own event bus, and the callback-URL source's rule listens there only: an
   event put on the pattern's bus matches nothing. The bus's resource policy denies
   ``events:PutEvents`` to every principal but the handler's role; moto does not enforce bus
   policies, so the template tests in ``test_callback_url_construct.py`` check that policy, and
   these flows put forged events on the callback bus anyway to test the second layer.
2. The event names the handler's claim (``detail.claimId``), a random id the handler wrote into the
   token record before publishing; the resumer (claim-bound source) resumes only a record carrying
   that claim, and never records an early completion for such an event (``UNCLAIMED``).

The flows run the synthesized ASL in moto with the local bridges (``moto_flows`` in conftest.py);
the handler runs in-process against the same moto, as in Lambda.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cdk_serverless_patterns.callback import contract
from cdk_serverless_patterns.testing.moto import load_runtime_module

cbh = load_runtime_module(
    "callback_url", "callback_url_handler", name="callback_url_handler__test_callback_url_forgery"
)

SECRET = "s3cr3t-for-the-forgery-flows"
HMAC_KEY = "vendor-hmac-key"
OK = {"status": "SUCCEEDED", "output": {"pages": 3}}


def _callback_bus(flows: Any) -> str:
    return flows.deployment.ref(flows.deployment.find(flows.template, "AWS::Events::EventBus"))


def _handler(flows: Any, auth: str = "secret") -> Any:
    secrets = None
    settings: dict[str, Any] = {}
    if auth == "hmac":
        import boto3

        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        settings = {
            "hmac_secret_arn": secrets.create_secret(Name="vendor-key", SecretString=HMAC_KEY)["ARN"],
            "accept_early_callbacks": True,
        }
    return cbh.CallbackUrlHandler(
        settings=cbh.Settings(
            table_name=flows.table,
            event_bus_name=_callback_bus(flows),
            namespaces=frozenset({"vendor"}),
            auth_mode=auth,
            **settings,
        ),
        dynamodb=flows.dynamodb,
        events=flows.events,
        secrets=secrets,
    )


def _post(handler: Any, job_id: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    event = {
        "resource": "/callbacks/{namespace}/{jobId}",
        "httpMethod": "POST",
        "headers": headers,
        "pathParameters": {"namespace": "vendor", "jobId": job_id},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
    status: int = handler.handle(event)["statusCode"]
    return status


def _forge(flows: Any, job_id: str, *, bus: str | None, **extra: Any) -> None:
    """A ``Job Callback`` event put by someone other than the handler (any principal moto lets put)."""
    detail = {"namespace": "vendor", "jobId": job_id, **OK, "error": None, "cause": None, **extra}
    entry: dict[str, Any] = {
        "Source": contract.CALLBACK_URL_EVENT_SOURCE,
        "DetailType": contract.CALLBACK_URL_DETAIL_TYPE,
        "Detail": json.dumps(detail),
    }
    if bus:
        entry["EventBusName"] = bus
    assert flows.events.put_events(Entries=[entry])["FailedEntryCount"] == 0


def _pending(flows: Any) -> dict[str, str]:
    """Records a waiter or a later waiter could act on (tokens and completions), by id: their kind.
    (The resumer may leave other records, such as a marker of what it resumed.)"""
    kinds = (contract.KIND_TOKEN, contract.KIND_COMPLETION)
    return {k: v["kind"]["S"] for k, v in flows.items().items() if v["kind"]["S"] in kinds}


def _results(flows: Any, expected: int) -> list[str]:
    return [run["result"]["result"] for run in flows.resumer_runs(expected)]


def test_the_callback_url_rule_listens_on_the_callback_bus_only(flow_template: dict[str, Any]) -> None:
    [bus_id] = [k for k, v in flow_template["Resources"].items() if v["Type"] == "AWS::Events::EventBus"]
    rules = {
        logical_id: resource["Properties"]
        for logical_id, resource in flow_template["Resources"].items()
        if resource["Type"] == "AWS::Events::Rule"
    }
    url_rules = [p for p in rules.values() if p["EventPattern"]["source"] == [contract.CALLBACK_URL_EVENT_SOURCE]]
    assert [p.get("EventBusName") for p in url_rules] == [{"Ref": bus_id}]
    # Every other source listens on the pattern's bus (the default bus), and none on the callback bus.
    others = [p for p in rules.values() if p not in url_rules]
    assert others and all(p.get("EventBusName", "default") != {"Ref": bus_id} for p in others)
    [policy] = [
        v["Properties"] for v in flow_template["Resources"].values() if v["Type"] == "AWS::Events::EventBusPolicy"
    ]
    assert policy["EventBusName"] == {"Ref": bus_id} and policy["Statement"]["Effect"] == "Deny"


def test_forged_events_do_not_complete_a_waiting_job_but_the_handlers_call_does(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("UrlFlow", "f1", secret=SECRET)
    flows.wait_for_item("vendor#f1")
    bus = _callback_bus(flows)

    # On the pattern's own bus: no rule for callback-URL events there, so nothing starts.
    _forge(flows, "f1", bus=None)
    time.sleep(0.5)
    assert flows.sfn.list_executions(stateMachineArn=flows.resumer)["executions"] == []
    # On the callback bus (AWS's bus policy would refuse the put; moto lets it through): no claim, a
    # guessed claim, and the handler's request-id format, all fail the claim check.
    _forge(flows, "f1", bus=bus)
    _forge(flows, "f1", bus=bus, claimId="")
    _forge(flows, "f1", bus=bus, claimId="guessed-claim-id-0123456789abcdef")
    assert _results(flows, 3) == ["UNVERIFIED"] * 3
    assert flows.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    record = flows.items()["vendor#f1"]
    assert record["kind"] == {"S": "token"} and "resumeClaimedAt" not in record

    # The genuine call: authenticated, claimed, published with its claim, resumed.
    assert _post(_handler(flows), "f1", OK, {"X-Callback-Secret": SECRET}) == 202
    result = flows.finish(execution)
    assert result["status"] == "SUCCEEDED" and json.loads(result["output"])["job"] == {"pages": 3}
    assert _results(flows, 4)[-1] == "RESUMED"
    assert _pending(flows) == {}


def test_a_forged_event_cannot_replay_the_claim_of_another_job(moto_flows: Any) -> None:
    """A claim opens only the record it was written into."""
    flows = moto_flows
    first = flows.start("UrlFlow", "c1", secret=SECRET)
    second = flows.start("UrlFlow", "c2", secret=SECRET + "-2")
    flows.wait_for_item("vendor#c1")
    flows.wait_for_item("vendor#c2")
    assert _post(_handler(flows), "c1", OK, {"X-Callback-Secret": SECRET}) == 202
    assert flows.finish(first)["status"] == "SUCCEEDED"
    [run] = flows.resumer_runs(1)
    claim_id = json.loads(run["input"])["event"]["detail"]["claimId"]  # c1's genuine claim, seen on the bus
    _forge(flows, "c2", bus=_callback_bus(flows), claimId=claim_id)
    assert _results(flows, 2)[-1] == "UNVERIFIED"
    assert flows.sfn.describe_execution(executionArn=second)["status"] == "RUNNING"


def test_a_forged_event_before_the_waiter_plants_no_early_completion(moto_flows: Any) -> None:
    flows = moto_flows
    _forge(flows, "early", bus=_callback_bus(flows), claimId="made-up")
    assert _results(flows, 1) == ["UNCLAIMED"]
    assert _pending(flows) == {}  # nothing recorded for a later waiter to pick up
    execution = flows.start("UrlFlow", "early", secret=SECRET)
    flows.wait_for_item("vendor#early")  # it parks and waits, as it should
    assert flows.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"


def test_a_signed_early_callback_is_recorded_by_the_handler_and_taken_by_the_wait_step(moto_flows: Any) -> None:
    flows = moto_flows
    handler = _handler(flows, "hmac")
    body = json.dumps(OK)
    headers = cbh.sign_callback(HMAC_KEY, namespace="vendor", job_id="fast", body=body)
    event = {"pathParameters": {"namespace": "vendor", "jobId": "fast"}, "headers": headers, "body": body}
    response = handler.handle(event)
    assert (response["statusCode"], json.loads(response["body"]).get("early")) == (202, True)
    assert flows.items()["vendor#fast"]["kind"] == {"S": "completion"}
    assert handler.handle(event)["statusCode"] == 409  # the replay changes nothing
    execution = flows.start("UrlFlow", "fast", secret="unused")
    result = flows.finish(execution)
    assert result["status"] == "SUCCEEDED" and json.loads(result["output"])["job"] == {"pages": 3}
    assert _pending(flows) == {}
    assert flows.sfn.list_executions(stateMachineArn=flows.resumer)["executions"] == []  # no event at all
