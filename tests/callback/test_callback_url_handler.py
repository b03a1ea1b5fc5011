"""The callback-URL handler against moto: DynamoDB token records, EventBridge with an SQS target, Secrets Manager.

Every test asserts both what the caller gets and what changed: the token record in the table and
the events that EventBridge actually delivered to the queue.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from cdk_serverless_patterns.testing.moto import create_callback_table, load_runtime_module

# One copy for the file: the tests that monkeypatch its state (``_handler``) call into this same object.
cbh = load_runtime_module(
    "callback_url", "callback_url_handler", name="callback_url_handler__test_callback_url_handler"
)

REGION = "us-east-1"
TABLE = "callback-tokens"
BUS = "callback-bus"
NAMESPACES = ("translate", "vendor")
SECRET = "s3cr3t-per-job-0f9c"  # the per-job secret the workflow handed to the third party
HMAC_KEY = "hmac-key-from-secrets-manager"
NOW = 1_790_000_000.0


@dataclass
class World:
    dynamodb: Any
    events: Any
    sqs: Any
    secrets: Any
    queue_url: str
    secret_arn: str

    def put_token(self, namespace: str, job_id: str, *, secret: str | None = SECRET, **extra: Any) -> None:
        item: dict[str, Any] = {
            "id": {"S": f"{namespace}#{job_id}"},
            "kind": {"S": "token"},
            "backend": {"S": "stepfunctions"},
            "taskToken": {"S": f"token-for-{job_id}"},
            "executionArn": {"S": f"arn:aws:states:{REGION}:123456789012:execution:wf:{job_id}"},
            "createdAt": {"S": "2026-11-24T07:00:00Z"},
            "ttl": {"N": str(int(NOW) + 3600)},
        }
        if secret is not None:
            item["callbackSecretHash"] = {"S": hashlib.sha256(secret.encode()).hexdigest()}
        item.update(extra)
        self.dynamodb.put_item(TableName=TABLE, Item=item)

    def record(self, namespace: str, job_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.dynamodb.get_item(
            TableName=TABLE, Key={"id": {"S": f"{namespace}#{job_id}"}}, ConsistentRead=True
        ).get("Item")
        return item

    def delivered(self) -> list[dict[str, Any]]:
        """Every event EventBridge delivered to the SQS target so far (drains the queue)."""
        events = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return events
            for message in messages:
                events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_callback_table(dynamodb, TABLE)
        events = boto3.client("events", region_name=REGION)
        events.create_event_bus(Name=BUS)
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="callback-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        # The job source CallbackPattern registers for callback URLs matches exactly this.
        events.put_rule(
            Name="callback-url-source",
            EventBusName=BUS,
            EventPattern=json.dumps({"source": [cbh.EVENT_SOURCE], "detail-type": [cbh.EVENT_DETAIL_TYPE]}),
        )
        events.put_targets(Rule="callback-url-source", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secret_arn = secrets.create_secret(Name="callback-hmac", SecretString=HMAC_KEY)["ARN"]
        yield World(dynamodb, events, sqs, secrets, queue_url, secret_arn)


def make_handler(world: World, auth: str = "secret", **settings: Any) -> Any:
    options: dict[str, Any] = {
        "table_name": TABLE,
        "event_bus_name": BUS,
        "namespaces": frozenset(NAMESPACES),
        "auth_mode": auth,
        "hmac_secret_arn": world.secret_arn if auth == "hmac" else None,
        "replay_window_seconds": 300,
        **settings,
    }
    return cbh.CallbackUrlHandler(
        settings=cbh.Settings(**options),
        dynamodb=world.dynamodb,
        events=world.events,
        secrets=world.secrets,
        clock=lambda: NOW,
    )


def request(namespace: str, job_id: str, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway REST proxy event for POST /callbacks/{namespace}/{jobId}."""
    raw = body if isinstance(body, str) else json.dumps(body)
    return {
        "resource": "/callbacks/{namespace}/{jobId}",
        "httpMethod": "POST",
        "headers": headers or {},
        "pathParameters": {"namespace": namespace, "jobId": job_id},
        "body": raw,
        "isBase64Encoded": False,
    }


def signed(
    body: Any, *, key: str = HMAC_KEY, timestamp: float = NOW, namespace: str = "vendor", job_id: str | None = None
) -> tuple[str, dict[str, str]]:
    """The body as sent and its signature headers, computed here from the documented canonical form."""
    raw = body if isinstance(body, str) else json.dumps(body)
    job = job_id if job_id is not None else body["jobId"]
    ts = str(int(timestamp))
    message = f"v1\n{ts}\n{namespace}\n{job}\n".encode() + raw.encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
    return raw, {"X-Signature": f"sha256={digest}", "X-Timestamp": ts}


def answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = json.loads(response["body"])
    return response["statusCode"], body


OK_BODY = {"status": "SUCCEEDED", "output": {"files": ["s3://bucket/out.txt"], "pages": 3}}


# --- valid callbacks ---------------------------------------------------------------------------------


def test_valid_secret_resumes_through_exactly_one_event_and_marks_the_record(world: World) -> None:
    world.put_token("translate", "job-1")
    handler = make_handler(world)

    status, body = answer(handler.handle(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET})))

    assert (status, body["accepted"], body["jobId"]) == (202, True, "job-1")
    events = world.delivered()
    assert len(events) == 1
    assert events[0]["source"] == "cdk-serverless-patterns.callback-url"
    assert events[0]["detail-type"] == "Job Callback"
    claim = events[0]["detail"].pop("claimId")
    assert events[0]["detail"] == {
        "namespace": "translate",
        "jobId": "job-1",
        "status": "SUCCEEDED",
        "output": OK_BODY["output"],
        "error": None,
        "cause": None,
    }
    record = world.record("translate", "job-1")
    assert record is not None and "callbackReceivedAt" in record
    assert record["taskToken"] == {"S": "token-for-job-1"}  # the resumer still finds its token
    # The event names the claim the handler wrote (the resumer resumes only a record carrying it):
    # a random id of at least 192 bits, never the caller's or Lambda's request id.
    assert record["callbackRequestId"] == {"S": claim} and len(claim) >= 32


def test_failure_callback_carries_error_and_cause(world: World) -> None:
    world.put_token("vendor", "42")
    body = {"status": "FAILED", "error": "Vendor.Rejected", "cause": "document is encrypted"}
    status, _ = answer(make_handler(world).handle(request("vendor", "42", body, {"x-callback-secret": SECRET})))
    assert status == 202
    [event] = world.delivered()
    assert event["detail"]["status"] == "FAILED"
    assert (event["detail"]["error"], event["detail"]["cause"]) == ("Vendor.Rejected", "document is encrypted")


def test_failure_callback_without_error_gets_a_named_default(world: World) -> None:
    world.put_token("vendor", "43")
    status, _ = answer(
        make_handler(world).handle(request("vendor", "43", {"status": "FAILED"}, {"X-Callback-Secret": SECRET}))
    )
    assert status == 202
    [event] = world.delivered()
    assert event["detail"]["error"] == "JobFailed" and event["detail"]["cause"]


def test_valid_hmac_signature_is_accepted(world: World) -> None:
    world.put_token("vendor", "job-9", secret=None)  # HMAC mode needs no per-job secret
    raw, headers = signed({**OK_BODY, "jobId": "job-9"})
    status, _ = answer(make_handler(world, "hmac").handle(request("vendor", "job-9", raw, headers)))
    assert status == 202
    [event] = world.delivered()
    assert (event["detail"]["jobId"], event["detail"]["namespace"]) == ("job-9", "vendor")
    assert "callbackReceivedAt" in (world.record("vendor", "job-9") or {})


def test_hmac_key_is_read_from_secrets_manager_once_per_execution_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = make_handler(world, "hmac")
    calls = []
    real = world.secrets.get_secret_value

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs["SecretId"])
        return real(**kwargs)

    monkeypatch.setattr(world.secrets, "get_secret_value", counting)
    for job in ("a", "b", "c"):
        world.put_token("vendor", job, secret=None)
        raw, headers = signed({**OK_BODY, "jobId": job})
        assert handler.handle(request("vendor", job, raw, headers))["statusCode"] == 202
    assert calls == [world.secret_arn]
    assert len(world.delivered()) == 3


def test_base64_encoded_body_is_decoded(world: World) -> None:
    import base64

    world.put_token("translate", "b64")
    event = request("translate", "b64", "", {"X-Callback-Secret": SECRET})
    event["body"], event["isBase64Encoded"] = base64.b64encode(json.dumps(OK_BODY).encode()).decode(), True
    assert make_handler(world).handle(event)["statusCode"] == 202
    assert len(world.delivered()) == 1


# --- forged callbacks: rejected, nothing changes -----------------------------------------------------


def assert_nothing_changed(world: World, namespace: str, job_id: str) -> None:
    record = world.record(namespace, job_id)
    assert record is not None and "callbackReceivedAt" not in record
    assert world.delivered() == []


def test_forged_secret_is_forbidden_and_changes_nothing(world: World) -> None:
    world.put_token("translate", "job-1")
    status, body = answer(
        make_handler(world).handle(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": "guess"}))
    )
    assert status == 403 and "X-Callback-Secret".lower() in body["message"].lower()
    assert_nothing_changed(world, "translate", "job-1")


def test_missing_secret_is_unauthorized(world: World) -> None:
    world.put_token("translate", "job-1")
    status, _ = answer(make_handler(world).handle(request("translate", "job-1", OK_BODY)))
    assert status == 401
    assert_nothing_changed(world, "translate", "job-1")


def test_secret_of_another_job_is_forbidden(world: World) -> None:
    world.put_token("translate", "job-1", secret="secret-one")
    world.put_token("translate", "job-2", secret="secret-two")
    status, _ = answer(
        make_handler(world).handle(request("translate", "job-2", OK_BODY, {"X-Callback-Secret": "secret-one"}))
    )
    assert status == 403
    assert_nothing_changed(world, "translate", "job-2")


def test_job_stored_without_a_secret_hash_refuses_secret_callbacks(world: World) -> None:
    world.put_token("translate", "no-secret", secret=None)
    # Even the hash of the empty string must not open a job that has no secret.
    status, _ = answer(
        make_handler(world).handle(request("translate", "no-secret", OK_BODY, {"X-Callback-Secret": "x"}))
    )
    assert status == 403
    assert_nothing_changed(world, "translate", "no-secret")


def test_forged_signature_is_forbidden_and_changes_nothing(world: World) -> None:
    world.put_token("vendor", "job-9", secret=None)
    raw, headers = signed({**OK_BODY, "jobId": "job-9"}, key="not-the-key")
    status, _ = answer(make_handler(world, "hmac").handle(request("vendor", "job-9", raw, headers)))
    assert status == 403
    assert_nothing_changed(world, "vendor", "job-9")


def test_tampered_body_fails_the_signature(world: World) -> None:
    world.put_token("vendor", "job-9", secret=None)
    raw, headers = signed({"status": "FAILED", "jobId": "job-9"})
    tampered = raw.replace("FAILED", "SUCCEEDED")
    status, _ = answer(make_handler(world, "hmac").handle(request("vendor", "job-9", tampered, headers)))
    assert status == 403
    assert_nothing_changed(world, "vendor", "job-9")


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_stale_or_future_timestamp_is_rejected_even_when_correctly_signed(world: World, skew: int) -> None:
    world.put_token("vendor", "job-9", secret=None)
    raw, headers = signed({**OK_BODY, "jobId": "job-9"}, timestamp=NOW + skew)
    status, body = answer(make_handler(world, "hmac").handle(request("vendor", "job-9", raw, headers)))
    assert (status, body["error"]) == (401, "StaleTimestamp")
    assert_nothing_changed(world, "vendor", "job-9")


def test_timestamp_inside_the_window_is_accepted(world: World) -> None:
    world.put_token("vendor", "job-9", secret=None)
    raw, headers = signed({**OK_BODY, "jobId": "job-9"}, timestamp=NOW - 299)
    assert make_handler(world, "hmac").handle(request("vendor", "job-9", raw, headers))["statusCode"] == 202


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Signature": "sha256=00"}, {"X-Timestamp": str(int(NOW))}, {"X-Signature": "md5=00", "X-Timestamp": "1"}],
)
def test_missing_or_malformed_signature_headers_are_unauthorized(world: World, headers: dict[str, str]) -> None:
    world.put_token("vendor", "job-9", secret=None)
    raw = json.dumps({**OK_BODY, "jobId": "job-9"})
    assert make_handler(world, "hmac").handle(request("vendor", "job-9", raw, headers))["statusCode"] == 401
    assert_nothing_changed(world, "vendor", "job-9")


def test_signed_callback_of_one_job_cannot_be_replayed_to_another_job(world: World) -> None:
    world.put_token("vendor", "job-a", secret=None)
    world.put_token("vendor", "job-b", secret=None)
    raw, headers = signed(OK_BODY, job_id="job-a")  # the body does not even name its job
    status, body = answer(make_handler(world, "hmac").handle(request("vendor", "job-b", raw, headers)))
    assert (status, body["error"]) == (403, "Forbidden") and "X-Signature".lower() in body["message"].lower()
    assert_nothing_changed(world, "vendor", "job-b")


def test_signed_callback_of_one_namespace_cannot_be_replayed_to_another_namespace(world: World) -> None:
    world.put_token("vendor", "job-a", secret=None)
    world.put_token("translate", "job-a", secret=None)
    raw, headers = signed(OK_BODY, namespace="vendor", job_id="job-a")
    handler = make_handler(world, "hmac")
    assert handler.handle(request("translate", "job-a", raw, headers))["statusCode"] == 403
    assert_nothing_changed(world, "translate", "job-a")
    assert handler.handle(request("vendor", "job-a", raw, headers))["statusCode"] == 202  # where it was signed for


def test_per_namespace_keys_sign_only_their_namespace(world: World) -> None:
    vendor_arn = world.secrets.create_secret(Name="vendor-key", SecretString="vendor-only-key")["ARN"]
    translate_arn = world.secrets.create_secret(Name="translate-key", SecretString="translate-only-key")["ARN"]
    handler = make_handler(
        world, "hmac", hmac_secret_arn=None, hmac_secret_arns={"vendor": vendor_arn, "translate": translate_arn}
    )
    world.put_token("vendor", "j", secret=None)
    world.put_token("translate", "j", secret=None)
    raw, headers = signed(OK_BODY, key="vendor-only-key", namespace="translate", job_id="j")
    assert handler.handle(request("translate", "j", raw, headers))["statusCode"] == 403  # the vendor's key
    assert_nothing_changed(world, "translate", "j")
    raw, headers = signed(OK_BODY, key="translate-only-key", namespace="translate", job_id="j")
    assert handler.handle(request("translate", "j", raw, headers))["statusCode"] == 202
    raw, headers = signed(OK_BODY, key="vendor-only-key", namespace="vendor", job_id="j")
    assert handler.handle(request("vendor", "j", raw, headers))["statusCode"] == 202


def test_per_namespace_keys_are_read_from_the_environment() -> None:
    env = {
        "TABLE_NAME": "t",
        "EVENT_BUS_NAME": "b",
        "NAMESPACES": "a,b",
        "AUTH_MODE": "hmac",
        "HMAC_SECRET_ARNS": json.dumps({"a": "arn-a", "b": "arn-b"}),
    }
    settings = cbh.Settings.from_environment(env)
    assert (settings.secret_arn_for("a"), settings.secret_arn_for("b")) == ("arn-a", "arn-b")
    with pytest.raises(RuntimeError, match="no HMAC key for namespace"):
        cbh.Settings.from_environment({**env, "HMAC_SECRET_ARNS": json.dumps({"a": "arn-a"})})
    with pytest.raises(RuntimeError, match="HMAC_SECRET_ARNS must be a JSON object"):
        cbh.Settings.from_environment({**env, "HMAC_SECRET_ARNS": "[1]"})


# --- replays ---------------------------------------------------------------------------------------


def test_replayed_secret_callback_is_rejected_and_changes_nothing(world: World) -> None:
    world.put_token("translate", "job-1")
    handler = make_handler(world)
    event = request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET})
    assert handler.handle(event)["statusCode"] == 202
    first = world.record("translate", "job-1")
    assert len(world.delivered()) == 1

    replay = request("translate", "job-1", {"status": "FAILED"}, {"X-Callback-Secret": SECRET})
    status, body = answer(handler.handle(replay))
    assert (status, body["error"]) == (409, "AlreadyReceived")
    assert world.record("translate", "job-1") == first
    assert world.delivered() == []


def test_replayed_hmac_callback_inside_the_window_is_rejected(world: World) -> None:
    world.put_token("vendor", "job-9", secret=None)
    handler = make_handler(world, "hmac")
    raw, headers = signed({**OK_BODY, "jobId": "job-9"})
    assert handler.handle(request("vendor", "job-9", raw, headers))["statusCode"] == 202
    first = world.record("vendor", "job-9")
    world.delivered()
    assert handler.handle(request("vendor", "job-9", raw, headers))["statusCode"] == 409
    assert world.record("vendor", "job-9") == first
    assert world.delivered() == []


def test_concurrent_replay_loses_the_conditional_update(world: World) -> None:
    """Both deliveries pass the read; only the conditional update decides (no double resume)."""
    world.put_token("translate", "job-1")
    handler = make_handler(world)
    real_get_item = world.dynamodb.get_item
    snapshot = real_get_item(TableName=TABLE, Key={"id": {"S": "translate#job-1"}})
    assert handler.handle(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET}))["statusCode"] == 202
    # the second request read the record before the first one claimed it
    world.dynamodb.get_item = lambda **kwargs: snapshot
    try:
        status, body = answer(
            handler.handle(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET}), "second-request")
        )
    finally:
        del world.dynamodb.get_item
    assert (status, body["error"]) == (409, "AlreadyReceived")
    record = world.record("translate", "job-1")
    assert record is not None and record["callbackRequestId"]["S"] != "second-request"
    assert len(world.delivered()) == 1


def test_signed_callback_after_the_job_completed_is_a_conflict(world: World) -> None:
    completion = {"id": {"S": "vendor#done"}, "kind": {"S": "completion"}, "status": {"S": "SUCCEEDED"}}
    world.dynamodb.put_item(TableName=TABLE, Item=completion)
    raw, headers = signed({**OK_BODY, "jobId": "done"})
    status, body = answer(make_handler(world, "hmac").handle(request("vendor", "done", raw, headers)))
    assert (status, body["error"]) == (409, "AlreadyCompleted")
    assert world.record("vendor", "done") == completion
    assert world.delivered() == []


def test_signed_callback_after_the_resumer_left_its_marker_is_a_conflict_and_plants_nothing(world: World) -> None:
    """The resumer replaces a resumed token with a ``resumed`` marker: a late signed callback, even
    with early callbacks on, must not become a completion a later waiter would take."""
    marker = {"id": {"S": "vendor#done"}, "kind": {"S": "resumed"}, "result": {"S": "RESUMED"}}
    world.dynamodb.put_item(TableName=TABLE, Item=marker)
    raw, headers = signed({**OK_BODY, "jobId": "done"})
    for handler in (make_handler(world, "hmac"), make_handler(world, "hmac", accept_early_callbacks=True)):
        status, body = answer(handler.handle(request("vendor", "done", raw, headers)))
        assert (status, body["error"]) == (409, "AlreadyCompleted")
    assert world.record("vendor", "done") == marker
    assert world.delivered() == []


def test_used_state_is_not_revealed_to_an_unauthenticated_caller(world: World) -> None:
    world.put_token("translate", "used", callbackReceivedAt={"S": "2026-11-24T07:00:00Z"})
    event = request("translate", "used", OK_BODY, {"X-Callback-Secret": "guess"})
    assert make_handler(world).handle(event)["statusCode"] == 403


def test_secret_mode_answers_alike_for_unknown_job_wrong_secret_no_secret_and_finished_job(world: World) -> None:
    """What the docs promise: without the job's secret, a caller learns nothing about the job."""
    world.put_token("translate", "waiting")  # a job with a secret: the caller guesses wrong
    world.put_token("translate", "no-secret", secret=None)  # a job stored without a secret
    completion = {"id": {"S": "translate#finished"}, "kind": {"S": "completion"}, "status": {"S": "SUCCEEDED"}}
    world.dynamodb.put_item(TableName=TABLE, Item=completion)  # a job whose completion is recorded
    handler = make_handler(world)
    answers = {
        job: answer(handler.handle(request("translate", job, OK_BODY, {"X-Callback-Secret": "guess"})))
        for job in ("waiting", "no-secret", "finished", "unknown")  # "unknown": no job, or not waiting yet
    }
    assert len({json.dumps(a) for a in answers.values()}) == 1, answers
    assert answers["unknown"][0] == 403
    assert world.delivered() == []
    assert world.record("translate", "unknown") is None


# --- early callbacks (HMAC, opt-in): the third party is faster than the wait step ----------------------


def test_signed_callback_before_the_token_is_recorded_as_the_jobs_completion(world: World) -> None:
    handler = make_handler(world, "hmac", accept_early_callbacks=True, completion_ttl_seconds=600)
    raw, headers = signed({**OK_BODY, "jobId": "fast"})
    status, body = answer(handler.handle(request("vendor", "fast", raw, headers)))
    assert (status, body["early"]) == (202, True)
    assert world.delivered() == []  # no event: the handler wrote what the resumer would have
    record = world.record("vendor", "fast")
    assert record is not None
    claim = record.pop("callbackRequestId")["S"]
    assert len(claim) >= 32
    stamp = "2026-09-21T14:13:20.000Z"  # NOW
    assert record == {
        "id": {"S": "vendor#fast"},
        "kind": {"S": "completion"},
        "status": {"S": "SUCCEEDED"},
        "output": {"S": json.dumps(OK_BODY["output"], separators=(",", ":"))},
        "error": {"S": "vendor.SUCCEEDED"},
        "cause": {
            "S": json.dumps(
                {
                    "namespace": "vendor",
                    "jobId": "fast",
                    "status": "SUCCEEDED",
                    "output": OK_BODY["output"],
                    "error": None,
                    "cause": None,
                    "claimId": claim,
                },
                separators=(",", ":"),
            )
        },
        "createdAt": {"S": stamp},
        "eventTime": {"S": stamp},
        "ttl": {"N": str(int(NOW) + 600)},
    }


def test_an_early_callback_with_a_number_beyond_a_double_is_refused_and_records_nothing(world: World) -> None:
    handler = make_handler(world, "hmac", accept_early_callbacks=True)
    raw, headers = signed('{"status": "SUCCEEDED", "output": {"score": 1e400}}', job_id="fast")
    status, body = answer(handler.handle(request("vendor", "fast", raw, headers)))
    assert status == 400 and "1e400 does not fit a double" in body["message"]
    assert world.record("vendor", "fast") is None and world.delivered() == []


def test_a_failed_early_callback_records_its_error_and_cause(world: World) -> None:
    handler = make_handler(world, "hmac", accept_early_callbacks=True)
    raw, headers = signed({"status": "FAILED", "error": "Vendor.Rejected", "cause": "unreadable"}, job_id="bad")
    assert handler.handle(request("vendor", "bad", raw, headers))["statusCode"] == 202
    record = world.record("vendor", "bad") or {}
    assert (record["status"], record["error"], record["cause"], record["output"]) == (
        {"S": "FAILED"},
        {"S": "Vendor.Rejected"},
        {"S": "unreadable"},
        {"S": "null"},
    )


def test_a_second_early_callback_is_a_conflict_and_changes_nothing(world: World) -> None:
    handler = make_handler(world, "hmac", accept_early_callbacks=True)
    raw, headers = signed({**OK_BODY, "jobId": "fast"})
    assert handler.handle(request("vendor", "fast", raw, headers))["statusCode"] == 202
    first = world.record("vendor", "fast")
    other, other_headers = signed({"status": "FAILED", "jobId": "fast"})
    status, body = answer(handler.handle(request("vendor", "fast", other, other_headers)))
    assert (status, body["error"]) == (409, "AlreadyCompleted")
    assert world.record("vendor", "fast") == first
    assert world.delivered() == []


def test_concurrent_early_callbacks_write_one_completion(world: World) -> None:
    """Both read no record; only the conditional PutItem decides."""
    handler = make_handler(world, "hmac", accept_early_callbacks=True)
    raw, headers = signed({**OK_BODY, "jobId": "fast"})
    world.dynamodb.get_item = lambda **kwargs: {}  # both requests read before either wrote
    try:
        assert handler.handle(request("vendor", "fast", raw, headers))["statusCode"] == 202
        first = _all_items(world)
        status, body = answer(handler.handle(request("vendor", "fast", raw, headers)))
    finally:
        del world.dynamodb.get_item
    assert (status, body["error"]) == (409, "AlreadyReceived")
    assert _all_items(world) == first and first[0]["kind"] == {"S": "completion"}


def test_a_waiter_parking_between_the_read_and_the_early_write_is_resumed_normally(world: World) -> None:
    handler = make_handler(world, "hmac", accept_early_callbacks=True)
    raw, headers = signed({**OK_BODY, "jobId": "racy"})
    world.put_token("vendor", "racy", secret=None)
    world.dynamodb.get_item = lambda **kwargs: {}  # the handler read before the waiter parked
    try:
        status, body = answer(handler.handle(request("vendor", "racy", raw, headers)))
    finally:
        del world.dynamodb.get_item
    assert status == 202 and "early" not in body
    record = world.record("vendor", "racy") or {}
    assert record["kind"] == {"S": "token"} and "callbackReceivedAt" in record
    [event] = world.delivered()
    assert event["detail"]["claimId"] == record["callbackRequestId"]["S"]


def test_early_callbacks_still_need_a_valid_signature(world: World) -> None:
    handler = make_handler(world, "hmac", accept_early_callbacks=True)
    raw, headers = signed({**OK_BODY, "jobId": "fast"}, key="forged")
    assert handler.handle(request("vendor", "fast", raw, headers))["statusCode"] == 403
    stale_raw, stale = signed({**OK_BODY, "jobId": "fast"}, timestamp=NOW - 3600)
    assert handler.handle(request("vendor", "fast", stale_raw, stale))["statusCode"] == 401
    assert world.delivered() == []
    assert world.record("vendor", "fast") is None


def test_with_early_callbacks_a_parked_job_is_still_claimed_once(world: World) -> None:
    world.put_token("vendor", "job-9", secret=None)
    handler = make_handler(world, "hmac", accept_early_callbacks=True)
    raw, headers = signed({**OK_BODY, "jobId": "job-9"})
    status, body = answer(handler.handle(request("vendor", "job-9", raw, headers)))
    assert status == 202 and "early" not in body
    assert handler.handle(request("vendor", "job-9", raw, headers))["statusCode"] == 409
    assert len(world.delivered()) == 1


def test_early_callbacks_are_never_enabled_in_secret_mode() -> None:
    env = {"TABLE_NAME": "t", "EVENT_BUS_NAME": "b", "NAMESPACES": "a", "AUTH_MODE": "secret"}
    assert not cbh.Settings.from_environment({**env, "ACCEPT_EARLY_CALLBACKS": "true"}).accept_early_callbacks
    hmac_env = {**env, "AUTH_MODE": "hmac", "HMAC_SECRET_ARN": "arn", "ACCEPT_EARLY_CALLBACKS": "true"}
    assert cbh.Settings.from_environment(hmac_env).accept_early_callbacks


# --- unknown jobs and bad input ----------------------------------------------------------------------


def test_unknown_job_is_forbidden_like_a_wrong_secret_and_creates_nothing(world: World) -> None:
    status, body = answer(
        make_handler(world).handle(request("translate", "nope", OK_BODY, {"X-Callback-Secret": SECRET}))
    )
    assert (status, body["error"]) == (403, "Forbidden")
    assert world.record("translate", "nope") is None
    assert world.delivered() == []


def test_unknown_job_with_a_valid_signature_is_not_found(world: World) -> None:
    raw, headers = signed({**OK_BODY, "jobId": "nope"})
    assert make_handler(world, "hmac").handle(request("vendor", "nope", raw, headers))["statusCode"] == 404
    assert world.record("vendor", "nope") is None
    assert world.delivered() == []


def test_same_job_id_in_another_namespace_is_a_different_job(world: World) -> None:
    world.put_token("translate", "12345")
    status, _ = answer(make_handler(world).handle(request("vendor", "12345", OK_BODY, {"X-Callback-Secret": SECRET})))
    assert status == 403
    assert_nothing_changed(world, "translate", "12345")


def test_namespace_not_configured_is_a_bad_request_naming_the_field(world: World) -> None:
    world.dynamodb.put_item(TableName=TABLE, Item={"id": {"S": "other#job-1"}, "kind": {"S": "token"}})
    status, body = answer(make_handler(world).handle(request("other", "job-1", OK_BODY, {"X-Callback-Secret": SECRET})))
    assert status == 400 and "'namespace'" in body["message"]
    assert "callbackReceivedAt" not in (world.record("other", "job-1") or {})
    assert world.delivered() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        ('{"status": "SUCCEEDED", "output": NaN}', "body"),
        # Python reads 1e400 as inf and would write it back as "Infinity", which no JSON reader takes.
        ('{"status": "SUCCEEDED", "output": {"score": 1e400}}', "1e400 does not fit a double"),
        ('{"status": "SUCCEEDED", "output": [-1E999]}', "-1E999 does not fit a double"),
        ({"status": "DONE"}, "body.status"),
        ({"output": 1}, "body.status"),
        ({"status": "FAILED", "error": 7}, "body.error"),
        ({"status": "FAILED", "error": "x" * 257}, "body.error"),
        ({"status": "FAILED", "cause": "x" * 32769}, "body.cause"),
        ({"status": "SUCCEEDED", "outptu": 1}, "outptu"),
        ({"status": "SUCCEEDED", "jobId": "other"}, "body.jobId"),
        ({"status": "SUCCEEDED", "namespace": "vendor"}, "body.namespace"),
    ],
)
def test_bad_body_is_a_bad_request_naming_the_field_and_changes_nothing(world: World, body: Any, field: str) -> None:
    world.put_token("translate", "job-1")
    status, answer_body = answer(
        make_handler(world).handle(request("translate", "job-1", body, {"X-Callback-Secret": SECRET}))
    )
    assert status == 400
    assert field in answer_body["message"]
    assert_nothing_changed(world, "translate", "job-1")


def test_bad_body_is_only_reported_to_an_authenticated_caller(world: World) -> None:
    world.put_token("translate", "job-1")
    event = request("translate", "job-1", "{not json", {"X-Callback-Secret": "guess"})
    assert make_handler(world).handle(event)["statusCode"] == 403


@pytest.mark.parametrize("job_id", ["", "has space", "x" * 513])
def test_bad_job_id_is_a_bad_request(world: World, job_id: str) -> None:
    status, body = answer(
        make_handler(world).handle(request("translate", job_id, OK_BODY, {"X-Callback-Secret": SECRET}))
    )
    assert status == 400 and "'jobId'" in body["message"]


def test_oversize_body_is_rejected_before_anything_is_read(world: World) -> None:
    world.put_token("translate", "job-1")
    handler = make_handler(world, max_body_bytes=1024)
    big = {"status": "SUCCEEDED", "output": "x" * 2000}
    status, body = answer(handler.handle(request("translate", "job-1", big, {"X-Callback-Secret": SECRET})))
    assert (status, body["error"]) == (400, "PayloadTooLarge") and body["message"].startswith("body: larger than 1024")
    assert_nothing_changed(world, "translate", "job-1")


def test_missing_body_is_a_bad_request(world: World) -> None:
    event = request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET})
    event["body"] = None
    status, body = answer(make_handler(world).handle(event))
    assert status == 400 and body["message"].startswith("body")


# --- failures of AWS ---------------------------------------------------------------------------------


def test_event_put_failure_leaves_the_record_unmarked_and_the_retry_succeeds(world: World) -> None:
    world.put_token("translate", "job-1")
    before = world.record("translate", "job-1")
    broken = make_handler(world, event_bus_name="deleted-bus")  # PutEvents fails: the bus does not exist
    event = request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET})

    status, body = answer(broken.handle(event))

    assert status == 503 and "retry" in body["message"]
    assert world.record("translate", "job-1") == before  # the claim was undone: nothing changed
    assert world.delivered() == []
    # The third party retries the same callback: it is accepted, not taken for a replay.
    assert make_handler(world).handle(event)["statusCode"] == 202
    assert len(world.delivered()) == 1


def test_failed_entry_in_a_put_events_answer_is_a_failure_too(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.put_token("translate", "job-1")
    before = world.record("translate", "job-1")
    handler = make_handler(world)
    failed = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}
    monkeypatch.setattr(world.events, "put_events", lambda **kwargs: failed)
    status, _ = answer(handler.handle(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET})))
    assert status == 503
    assert world.record("translate", "job-1") == before


def test_release_never_undoes_another_requests_claim(world: World) -> None:
    world.put_token("translate", "job-1", callbackReceivedAt={"S": "t"}, callbackRequestId={"S": "winner"})
    handler = make_handler(world)
    handler._release("translate", "job-1", "loser", {})
    record = world.record("translate", "job-1")
    assert record is not None and record["callbackRequestId"] == {"S": "winner"}


def test_missing_hmac_secret_is_unavailable_not_accepted(world: World) -> None:
    world.put_token("vendor", "job-9", secret=None)
    handler = make_handler(world, "hmac", hmac_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:gone")
    raw, headers = signed({**OK_BODY, "jobId": "job-9"})
    assert handler.handle(request("vendor", "job-9", raw, headers))["statusCode"] == 503
    assert_nothing_changed(world, "vendor", "job-9")


def _fail_transiently(client: Any, operation: str, times: int) -> list[int]:
    """The first ``times`` calls of ``operation`` lose their connection before moto sees them."""
    from botocore.exceptions import EndpointConnectionError

    seen: list[int] = []

    def hook(request: Any, **_: Any) -> None:
        seen.append(1)
        if len(seen) <= times:
            raise EndpointConnectionError(endpoint_url=request.url)

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(f"before-send.{service}.{operation}", hook)
    return seen


def _handler_with_runtime_clients(world: World) -> Any:
    """A handler whose clients carry the handler's own retry configuration, as in Lambda."""
    handler = make_handler(world)
    handler.dynamodb = boto3.client("dynamodb", region_name=REGION, config=cbh.BOTO_CONFIG)
    handler.events = boto3.client("events", region_name=REGION, config=cbh.BOTO_CONFIG)
    return handler


def test_transient_errors_are_retried_and_the_callback_goes_through(world: World) -> None:
    world.put_token("translate", "job-1")
    handler = _handler_with_runtime_clients(world)
    reads = _fail_transiently(handler.dynamodb, "GetItem", times=1)
    puts = _fail_transiently(handler.events, "PutEvents", times=1)
    assert handler.handle(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET}))["statusCode"] == 202
    assert (len(reads), len(puts)) == (2, 2)  # one failed attempt each, then success
    assert len(world.delivered()) == 1


def test_put_events_failing_past_the_retries_undoes_the_claim(world: World) -> None:
    world.put_token("translate", "job-1")
    before = world.record("translate", "job-1")
    handler = _handler_with_runtime_clients(world)
    puts = _fail_transiently(handler.events, "PutEvents", times=100)
    status, _ = answer(handler.handle(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET})))
    assert status == 503
    assert len(puts) == cbh.BOTO_CONFIG.retries["total_max_attempts"]  # standard mode, every attempt used
    assert world.record("translate", "job-1") == before
    assert world.delivered() == []


# --- logs and the entry point ------------------------------------------------------------------------


def test_logs_are_structured_and_never_carry_a_secret(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.put_token("translate", "job-1")
    world.put_token("vendor", "job-9", secret=None)
    caplog.set_level(logging.INFO, logger="callback_url")
    make_handler(world).handle(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET}))
    make_handler(world).handle(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": "guess-" + SECRET}))
    raw, headers = signed({**OK_BODY, "jobId": "job-9"})
    make_handler(world, "hmac").handle(request("vendor", "job-9", raw, headers))
    assert [r.getMessage() for r in caplog.records] == ["callback accepted", "callback rejected", "callback accepted"]
    assert caplog.records[0].jobId == "job-1" and caplog.records[0].namespace == "translate"  # type: ignore[attr-defined]
    assert caplog.records[1].statusCode == 403  # type: ignore[attr-defined]
    digest = headers["X-Signature"].split("=", 1)[1]
    for record in caplog.records:
        text = json.dumps(record.__dict__, default=str)
        for secret in (SECRET, HMAC_KEY, hashlib.sha256(SECRET.encode()).hexdigest(), digest):
            assert secret not in text


def test_lambda_entry_point_reads_its_configuration_from_the_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.put_token("translate", "job-1")
    for name, value in {
        "TABLE_NAME": TABLE,
        "EVENT_BUS_NAME": BUS,
        "NAMESPACES": "translate,vendor",
        "AUTH_MODE": "secret",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cbh, "_handler", None)

    class Context:
        aws_request_id = "req-1"

    response = cbh.handler(request("translate", "job-1", OK_BODY, {"X-Callback-Secret": SECRET}), Context())
    assert response["statusCode"] == 202
    [event] = world.delivered()
    claim = (world.record("translate", "job-1") or {})["callbackRequestId"]["S"]
    assert claim == event["detail"]["claimId"] and claim != "req-1"  # random, not Lambda's request id


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"EVENT_BUS_NAME": "b", "NAMESPACES": "a", "AUTH_MODE": "secret"}, "TABLE_NAME"),
        ({"TABLE_NAME": "t", "EVENT_BUS_NAME": "b", "NAMESPACES": "a", "AUTH_MODE": "hmac"}, "HMAC_SECRET_ARN"),
        ({"TABLE_NAME": "t", "EVENT_BUS_NAME": "b", "NAMESPACES": "a", "AUTH_MODE": "jwt"}, "AUTH_MODE"),
    ],
)
def test_misconfiguration_fails_loudly(env: dict[str, str], missing: str) -> None:
    with pytest.raises(RuntimeError, match=missing):
        cbh.Settings.from_environment(env)


# --- the signature, as a property ---------------------------------------------------------------------


def _offline_hmac_handler() -> Any:
    """An HMAC handler with its key already cached: verifying a signature calls no AWS API."""
    handler = cbh.CallbackUrlHandler(
        settings=cbh.Settings(
            table_name=TABLE,
            event_bus_name=BUS,
            namespaces=frozenset(NAMESPACES),
            auth_mode="hmac",
            hmac_secret_arn="x",
        ),
        dynamodb=None,
        events=None,
        secrets=None,
        clock=lambda: NOW,
    )
    handler._hmac_keys["x"] = (HMAC_KEY.encode(), NOW + 3600)
    return handler


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=300), flip=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_change_to_a_signed_body_breaks_the_signature(body: bytes, flip: int, bit: int) -> None:
    handler = _offline_hmac_handler()
    signature = cbh.sign_callback(HMAC_KEY, namespace="vendor", job_id="j-1", body=body, timestamp=int(NOW))
    headers = {k.lower(): v for k, v in signature.items()}
    handler._verify_signature(headers, "vendor", "j-1", body)  # the genuine request verifies
    if body:
        tampered = bytearray(body)
        tampered[flip % len(body)] ^= 1 << bit
        with pytest.raises(cbh.Rejected) as rejected:
            handler._verify_signature(headers, "vendor", "j-1", bytes(tampered))
        assert rejected.value.status_code == 403
    for namespace, job_id in (("translate", "j-1"), ("vendor", "j-2"), ("vendor", "j-1\n")):
        with pytest.raises(cbh.Rejected):  # the namespace and the job id are signed too
            handler._verify_signature(headers, namespace, job_id, body)
    with pytest.raises(cbh.Rejected):
        handler._verify_signature({**headers, "x-timestamp": str(int(NOW) + 1)}, "vendor", "j-1", body)


# --- hostile input: always a 4xx with a message, never an exception (API Gateway's 502) -----------------


def _all_items(world: World) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = world.dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return sorted(items, key=lambda item: item["id"]["S"])


@pytest.mark.parametrize(
    "timestamp",
    [
        "1790000000²",  # str.isdigit() is True
        "".join(chr(0x0660 + int(d)) for d in "1790000000"),  # Arabic-Indic digits: int() reads 1790000000
        "".join(chr(0xFF10 + int(d)) for d in "1790000000"),  # fullwidth digits
        "+1790000000",
        " 1790000000",
        "1790000000\n",
        "-1",
        "1e9",
        "\ud800",
        "9" * 13,
    ],
)
def test_non_ascii_or_non_decimal_timestamps_are_unauthorized(world: World, timestamp: str) -> None:
    world.put_token("vendor", "job-9", secret=None)
    raw, headers = signed({**OK_BODY, "jobId": "job-9"})
    status, body = answer(
        make_handler(world, "hmac").handle(request("vendor", "job-9", raw, {**headers, "X-Timestamp": timestamp}))
    )
    assert (status, body["error"]) == (401, "BadTimestamp") and "X-Timestamp".lower() in body["message"].lower()
    assert_nothing_changed(world, "vendor", "job-9")


@pytest.mark.parametrize(
    "signature",
    [
        "sha256=" + "\u0660" * 64,  # Arabic-Indic zeros
        "sha256=" + "\uff41" * 64,  # fullwidth letters
        "sha256=" + "g" * 64,
        "sha256=" + "0" * 63,
        "sha256=" + "0" * 65,
        "sha256=\ud800" + "0" * 63,
        "SHA256=" + "0" * 64,
    ],
)
def test_malformed_signatures_are_unauthorized(world: World, signature: str) -> None:
    world.put_token("vendor", "job-9", secret=None)
    raw, headers = signed({**OK_BODY, "jobId": "job-9"})
    status, body = answer(
        make_handler(world, "hmac").handle(request("vendor", "job-9", raw, {**headers, "X-Signature": signature}))
    )
    assert (status, body["error"]) == (401, "BadSignature")
    assert_nothing_changed(world, "vendor", "job-9")


@pytest.mark.parametrize("secret", ["\ud800", "s3cr3t\udfff", "é" * 10, "tab\there", "x" * 1025])
def test_secrets_that_are_no_header_value_are_unauthorized(world: World, secret: str) -> None:
    world.put_token("translate", "job-1")
    event = request("translate", "job-1", OK_BODY, {"X-Callback-Secret": secret})
    status, body = answer(make_handler(world).handle(event))
    assert (status, body["error"]) == (401, "MalformedCredentials")
    assert_nothing_changed(world, "translate", "job-1")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"status": "SUCCEEDED", "output": "\ud800"}', "not valid Unicode"),  # a lone surrogate in the text
        ('{"status": "SUCCEEDED", "output": "\\ud800"}', "lone surrogate"),  # valid JSON, not Unicode
        ('{"status": "SUCCEEDED", "error": "\\udfff"}', "lone surrogate"),
        ('{"status": "SUCCEEDED", "output": ' + "[" * 100_000 + "]" * 100_000 + "}", "body"),
        ('{"status": "SUCCEEDED", "output": ' + "1" * 5000 + "}", "not valid JSON"),  # past int digits limit
    ],
)
def test_bodies_that_are_not_unicode_or_not_json_are_bad_requests(world: World, raw: str, message: str) -> None:
    world.put_token("translate", "job-1")
    handler = make_handler(world, max_body_bytes=200 * 1024)
    status, body = answer(handler.handle(request("translate", "job-1", raw, {"X-Callback-Secret": SECRET})))
    assert status == 400 and message in body["message"], body
    assert_nothing_changed(world, "translate", "job-1")


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "text",
        {"pathParameters": ["translate", "job-1"], "body": "{}"},
        {"pathParameters": {"namespace": 7, "jobId": "job-1"}, "body": "{}"},
        {"pathParameters": {"namespace": "translate\ud800", "jobId": "job-1"}, "body": "{}"},
        {"pathParameters": {"namespace": "translate", "jobId": "job-1\n"}, "body": "{}"},
        {"pathParameters": {"namespace": "translate", "jobId": "jöb"}, "body": "{}"},
        {"pathParameters": {"namespace": "translate", "jobId": "job-1"}, "body": "{}", "headers": ["x"]},
        {"pathParameters": {"namespace": "translate", "jobId": "job-1"}, "body": b"{}"},
        {"pathParameters": {"namespace": "translate", "jobId": "job-1"}, "body": "é" * 10, "isBase64Encoded": True},
        {"pathParameters": {"namespace": "translate", "jobId": "job-1"}, "body": "{}", "headers": {7: SECRET}},
    ],
)
def test_malformed_events_are_bad_requests(world: World, event: Any) -> None:
    world.put_token("translate", "job-1")
    status, body = answer(make_handler(world).handle(event))
    assert 400 <= status < 500 and body["message"], body
    assert_nothing_changed(world, "translate", "job-1")


_text = st.text(alphabet=st.characters(codec=None), max_size=40)  # any code point, lone surrogates included
_ascii_digits_or_not = st.one_of(
    st.integers(min_value=-(10**13), max_value=10**13).map(str), _text, st.just(str(int(NOW)))
)
_header_values = st.one_of(_text, st.just(SECRET), st.just("sha256=" + "0" * 64), _ascii_digits_or_not)
_headers = st.dictionaries(
    st.one_of(st.sampled_from(["X-Callback-Secret", "x-signature", "X-Timestamp", "Content-Type"]), _text),
    st.one_of(_header_values, st.none(), st.integers()),
    max_size=5,
)
_bodies = st.one_of(
    _text,
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _text),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
        max_leaves=10,
    ).map(lambda value: json.dumps(value, ensure_ascii=False)),
    st.fixed_dictionaries(
        {"status": st.sampled_from(["SUCCEEDED", "FAILED", "DONE", ""])},
        optional={"output": _text, "error": _text, "cause": _text, "jobId": _text, "namespace": _text},
    ).map(lambda value: json.dumps(value, ensure_ascii=False)),
    st.just("x" * 3000),
)
_events = st.fixed_dictionaries(
    {
        "pathParameters": st.one_of(
            st.fixed_dictionaries(
                {
                    "namespace": st.one_of(st.sampled_from([*NAMESPACES, "other", ""]), _text),
                    "jobId": st.one_of(st.sampled_from(["job-1", "job-9", "", "a b"]), _text),
                }
            ),
            st.none(),
            _text,
        ),
        "headers": st.one_of(_headers, st.none()),
        "body": st.one_of(_bodies, st.none(), st.integers()),
        "isBase64Encoded": st.one_of(st.booleans(), st.none(), _text),
    }
)


@pytest.mark.parametrize("auth", ["secret", "hmac"])
def test_fuzzed_requests_get_a_4xx_and_change_nothing(world: World, auth: str) -> None:
    """Hypothesis over paths, headers (any code point) and bodies (text with lone surrogates, base64
    flags, JSON of any shape, too large): every answer is a 4xx with a message, and neither the
    table nor the bus sees anything. A 202 would need a forged secret or signature."""
    world.put_token("translate", "job-1")
    world.put_token("vendor", "job-9", secret=None)
    before = _all_items(world)
    handler = make_handler(world, auth, max_body_bytes=2048, accept_early_callbacks=auth == "hmac")
    seen: set[int] = set()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(event=_events)
    def check(event: dict[str, Any]) -> None:
        response = handler.handle(event)
        assert 400 <= response["statusCode"] < 500, (response, event)
        body = json.loads(response["body"])
        assert body["error"] and body["message"]
        seen.add(response["statusCode"])

    check()
    assert _all_items(world) == before
    assert world.delivered() == []
    assert {400, 401} <= seen
