"""The synthesized ASL, run for real in moto's Step Functions interpreter against moto DynamoDB.

Events go in through EventBridge ``put_events``; the rule and its target come from the template
(moto's own pattern matching and input transformer, started by the local bridge). Nothing here
hand-writes ASL: the workflows and the resumer are the ones CDK synthesized.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import pytest

from cdk_serverless_patterns.testing.moto import load_runtime_module

pytestmark = pytest.mark.slow

# B's runtime modules, one copy each for this file.
callback_url_handler = load_runtime_module(
    "callback_url", "callback_url_handler", name="callback_url_handler__test_callback_flows"
)
durable_callback = load_runtime_module(
    "callback_durable", "durable_callback", name="durable_callback__test_callback_flows"
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _dms_event(flows: Any, task: str, event_type: str, at: datetime.datetime | None = None) -> None:
    """A DMS task event as DMS sends it (the task ARN in ``resources``), dated ``at`` (default: now)."""
    message = "Stop Reason FULL_LOAD_ONLY_FINISHED" if event_type == "REPLICATION_TASK_STOPPED" else "failed"
    entry: dict[str, Any] = {
        "Source": "aws.dms",
        "DetailType": "DMS Replication Task State Change",
        "Detail": json.dumps({"type": "REPLICATION_TASK", "eventType": event_type, "detailMessage": message}),
        "Resources": [task],
    }
    if at is not None:
        entry["Time"] = at
    assert flows.events.put_events(Entries=[entry])["FailedEntryCount"] == 0


def _wait_task_successes(flows: Any, execution_arn: str) -> int:
    return sum(
        1
        for event in flows.history(execution_arn)
        if event["type"] == "TaskSucceeded"
        and event["taskSucceededEventDetails"]["resource"] == "putItem.waitForTaskToken"
    )


def test_job_succeeds_resumes_the_workflow_with_the_event_detail(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("TranslateFlow", "job-1")
    token = flows.wait_for_item("translate#job-1")
    assert token["backend"]["S"] == "stepfunctions"
    assert token["executionArn"]["S"] == execution
    assert token["taskToken"]["S"]
    # TTL: a Number, epoch seconds, after the wait's timeout (5 min) plus one day of grace.
    ttl = int(token["ttl"]["N"])
    assert time.time() + 300 + 86400 - 120 < ttl < time.time() + 300 + 86400 + 120

    flows.translate_event("job-1", "COMPLETED")

    result = flows.finish(execution)
    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["job"] == {"jobId": "job-1", "jobStatus": "COMPLETED"}
    assert output["tags"] == {"tagged": {"jobId": "job-1", "jobStatus": "COMPLETED"}}
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "RESUMED"
    # The token is gone; a short-lived "resumed" marker (TTL: completion_ttl) takes its place.
    assert flows.tokens() == {}, "the resumer must remove the token"
    marker = flows.items()["translate#job-1"]
    assert (marker["kind"]["S"], marker["result"]["S"], marker["status"]["S"]) == ("resumed", "RESUMED", "SUCCEEDED")
    assert "taskToken" not in marker
    assert time.time() + 3600 - 120 < int(marker["ttl"]["N"]) < time.time() + 3600 + 120


def test_job_fails_resumes_with_error_and_cause_from_the_event(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("PartnerFlow", "p-7")
    flows.wait_for_item("partner#p-7")
    flows.put(
        "com.example.partner", "Partner Job Finished", {"id": "p-7", "state": "ERROR", "code": "E42", "message": "disk"}
    )
    result = flows.finish(execution)
    assert result["status"] == "SUCCEEDED", "the workflow's own Catch handles the job failure"
    output = json.loads(result["output"])
    assert output["error"] == {"Error": "E42", "Cause": "disk"}
    assert "job" not in output
    [run] = flows.resumer_runs(1)
    assert run["result"] == {"result": "RESUMED", "id": "partner#p-7", "outcome": "FAILED"}
    assert flows.tokens() == {}


def test_failure_without_error_fields_uses_namespace_status_and_detail(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("TranslateFlow", "job-f")
    flows.wait_for_item("translate#job-f")
    flows.translate_event("job-f", "FAILED")
    output = json.loads(flows.finish(execution)["output"])
    assert output["error"]["Error"] == "translate.FAILED"
    assert json.loads(output["error"]["Cause"]) == {"jobId": "job-f", "jobStatus": "FAILED"}


def test_non_terminal_status_is_filtered_by_the_rule(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("TranslateFlow", "job-ip")
    flows.wait_for_item("translate#job-ip")
    flows.translate_event("job-ip", "IN_PROGRESS")
    time.sleep(0.3)
    assert flows.sfn.list_executions(stateMachineArn=flows.resumer)["executions"] == []
    assert flows.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    flows.translate_event("job-ip", "COMPLETED")
    assert flows.finish(execution)["status"] == "SUCCEEDED"


def test_duplicate_event_resumes_exactly_once(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("TranslateFlow", "job-2")
    flows.wait_for_item("translate#job-2")
    flows.translate_event("job-2", "COMPLETED")
    assert flows.finish(execution)["status"] == "SUCCEEDED"
    flows.translate_event("job-2", "COMPLETED")
    first, second = flows.resumer_runs(2)
    assert first["result"]["result"] == "RESUMED"
    # The late duplicate finds the "resumed" marker: it resumes nothing and records nothing that a
    # later waiter with the same id could take.
    assert second["status"] == "SUCCEEDED"
    assert second["result"]["result"] == "DUPLICATE"
    assert _wait_task_successes(flows, execution) == 1
    assert flows.items()["translate#job-2"]["kind"]["S"] == "resumed"

    # A later waiter for the same id (a source that reuses ids) parks over the marker and is resumed.
    later = flows.start("TranslateFlow", "job-2")
    assert flows.wait_for_item("translate#job-2")["executionArn"]["S"] == later
    flows.translate_event("job-2", "FAILED")
    assert json.loads(flows.finish(later)["output"])["error"]["Error"] == "translate.FAILED"
    assert flows.resumer_runs(3)[-1]["result"]["result"] == "RESUMED"
    assert flows.tokens() == {}


def test_concurrent_duplicates_resume_exactly_once(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("TranslateFlow", "job-3")
    flows.wait_for_item("translate#job-3")
    entry = {
        "Source": "aws.translate",
        "DetailType": "Translate TextTranslationJob State Change",
        "Detail": json.dumps({"jobId": "job-3", "jobStatus": "COMPLETED"}),
    }
    flows.events.put_events(Entries=[entry, entry, entry])
    assert flows.finish(execution)["status"] == "SUCCEEDED"
    runs = flows.resumer_runs(3)
    assert all(run["status"] == "SUCCEEDED" for run in runs), [run.get("error") for run in runs]
    results = sorted(run["result"]["result"] for run in runs)
    # One resumer claims the token and resumes; the others see the claim or the marker (DUPLICATE).
    assert results == ["DUPLICATE", "DUPLICATE", "RESUMED"], results
    assert _wait_task_successes(flows, execution) == 1
    assert flows.tokens() == {}


def test_event_before_token_the_workflow_proceeds_with_the_recorded_result(moto_flows: Any) -> None:
    flows = moto_flows
    # The job finishes while the workflow is between starting it and its wait step.
    execution = flows.start("TranslateFlow", "fast-1", hold=True)
    flows.translate_event("fast-1", "COMPLETED")
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "RECORDED"
    record = flows.items()["translate#fast-1"]
    assert record["kind"]["S"] == "completion"
    assert record["status"]["S"] == "SUCCEEDED"
    assert int(record["ttl"]["N"]) > time.time()
    assert flows.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"

    flows.release("fast-1")
    result = flows.finish(execution)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["job"] == {"jobId": "fast-1", "jobStatus": "COMPLETED"}
    assert _wait_task_successes(flows, execution) == 0, "it never parked: it took the recorded result"
    # The wait step claims the completion: it becomes a "resumed" marker without the output, so a
    # late duplicate of the event ends DUPLICATE instead of recording a new completion.
    marker = flows.items()["translate#fast-1"]
    assert (marker["kind"]["S"], marker["result"]["S"]) == ("resumed", "TAKEN")
    assert "output" not in marker and "cause" not in marker
    flows.translate_event("fast-1", "COMPLETED")
    assert flows.resumer_runs(2)[-1]["result"]["result"] == "DUPLICATE"
    assert flows.tokens() == {} and flows.items()["translate#fast-1"]["kind"]["S"] == "resumed"


def test_failure_before_token_fails_the_wait_with_the_recorded_error(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("PartnerFlow", "fast-2", hold=True)
    flows.put(
        "com.example.partner",
        "Partner Job Finished",
        {"id": "fast-2", "state": "ERROR", "code": "E1", "message": "bad"},
    )
    assert flows.resumer_runs(1)[0]["result"]["result"] == "RECORDED"
    flows.release("fast-2")
    output = json.loads(flows.finish(execution)["output"])
    assert output["error"] == {"Error": "E1", "Cause": "bad"}


def test_a_completion_older_than_the_execution_is_not_taken_for_its_job(moto_flows: Any) -> None:
    """A reused job id (a DMS task ARN): a late duplicate of an earlier run's event was recorded
    before this execution started. The wait drops it, parks, and waits for its own job."""
    flows = moto_flows
    task = "arn:aws:dms:us-east-1:123456789012:task:REUSED1"
    _dms_event(flows, task, "REPLICATION_TASK_FAILED", at=_now() - datetime.timedelta(minutes=10))
    assert flows.resumer_runs(1)[0]["result"]["result"] == "RECORDED"
    execution = flows.start("DmsFlow", task)
    token = flows.wait_for_item(f"dms#{task}", kind="token")
    assert token["executionArn"]["S"] == execution
    _dms_event(flows, task, "REPLICATION_TASK_STOPPED")
    result = flows.finish(execution)
    assert json.loads(result["output"])["job"]["eventType"] == "REPLICATION_TASK_STOPPED"


def test_an_event_older_than_the_waiting_execution_does_not_resume_it(moto_flows: Any) -> None:
    flows = moto_flows
    task = "arn:aws:dms:us-east-1:123456789012:task:REUSED2"
    execution = flows.start("DmsFlow", task)
    flows.wait_for_item(f"dms#{task}")
    _dms_event(flows, task, "REPLICATION_TASK_FAILED", at=_now() - datetime.timedelta(minutes=10))
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "STALE"
    assert flows.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    _dms_event(flows, task, "REPLICATION_TASK_STOPPED")
    assert json.loads(flows.finish(execution)["output"])["job"]["eventType"] == "REPLICATION_TASK_STOPPED"


def test_second_waiter_for_the_same_job_fails_clearly(moto_flows: Any) -> None:
    flows = moto_flows
    first = flows.start("TranslateFlow", "job-4")
    flows.wait_for_item("translate#job-4")
    second = flows.start("TranslateFlow", "job-4")
    output = json.loads(flows.finish(second)["output"])
    assert output["error"]["Error"] == "CallbackPattern.JobAlreadyAwaited"
    flows.translate_event("job-4", "COMPLETED")
    assert flows.finish(first)["status"] == "SUCCEEDED"


def test_workflow_stopped_the_resumer_cleans_up_and_succeeds(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("TranslateFlow", "job-5")
    flows.wait_for_item("translate#job-5")
    flows.sfn.stop_execution(executionArn=execution, error="Operator", cause="stopped in a test")
    # Step Functions reports ABORTED, and so does the bridge.
    assert flows.finish(execution)["status"] == "ABORTED"
    assert _wait_task_successes(flows, execution) == 0
    flows.translate_event("job-5", "COMPLETED")
    [run] = flows.resumer_runs(1)
    assert run["status"] == "SUCCEEDED"
    assert run["result"]["result"] == "WAITER_GONE"
    assert flows.tokens() == {}
    assert flows.items()["translate#job-5"]["result"]["S"] == "WAITER_GONE"


def test_token_expired_the_wait_times_out_and_a_late_event_is_absorbed(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("ShortFlow", "job-6")
    flows.wait_for_item("translate#job-6")
    output = json.loads(flows.finish(execution, timeout=20)["output"])
    assert output["error"]["Error"] == "States.Timeout"
    flows.translate_event("job-6", "COMPLETED")
    [run] = flows.resumer_runs(1)
    assert run["status"] == "SUCCEEDED"
    assert run["result"]["result"] == "WAITER_GONE"
    assert flows.tokens() == {}


def test_two_namespaces_with_the_same_job_id_never_collide(moto_flows: Any) -> None:
    flows = moto_flows
    translate_run = flows.start("TranslateFlow", "12345")
    partner_run = flows.start("PartnerFlow", "12345")
    flows.wait_for_item("translate#12345")
    flows.wait_for_item("partner#12345")

    flows.put("com.example.partner", "Partner Job Finished", {"id": "12345", "state": "DONE"})
    assert json.loads(flows.finish(partner_run)["output"])["job"] == {"id": "12345", "state": "DONE"}
    time.sleep(0.2)
    assert flows.sfn.describe_execution(executionArn=translate_run)["status"] == "RUNNING"
    assert set(flows.tokens()) == {"translate#12345"}

    flows.translate_event("12345", "COMPLETED")
    assert json.loads(flows.finish(translate_run)["output"])["job"]["jobStatus"] == "COMPLETED"
    assert [run["result"]["result"] for run in flows.resumer_runs(2)] == ["RESUMED", "RESUMED"]
    assert flows.tokens() == {}


def test_ttl_bridge_expires_only_past_items(moto_flows: Any) -> None:
    from cdk_serverless_patterns.local.moto_bridge import expire_items

    flows = moto_flows
    flows.translate_event("old", "COMPLETED")
    flows.resumer_runs(1)
    record = flows.items()["translate#old"]
    assert expire_items(flows.dynamodb, flows.table) == []
    assert expire_items(flows.dynamodb, flows.table, now=int(record["ttl"]["N"]) + 1) == ["translate#old"]
    assert flows.items() == {}


def _callback_url_handler(flows: Any) -> Any:
    """B's callback-URL handler (lambda_src/callback_url), in-process against the same moto."""
    settings = callback_url_handler.Settings(
        table_name=flows.table, event_bus_name=flows.callback_bus, namespaces=frozenset({"vendor"}), auth_mode="secret"
    )
    return callback_url_handler.CallbackUrlHandler(
        settings=settings, dynamodb=flows.dynamodb, events=flows.events, secrets=None
    )


def _callback(namespace: str, job_id: str, body: dict[str, Any], secret: str) -> dict[str, Any]:
    return {
        "resource": "/callbacks/{namespace}/{jobId}",
        "httpMethod": "POST",
        "headers": {"X-Callback-Secret": secret},
        "pathParameters": {"namespace": namespace, "jobId": job_id},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def test_callback_url_resumes_through_the_same_path_and_rejects_forgeries(moto_flows: Any) -> None:
    import hashlib

    flows = moto_flows
    secret = "s3cr3t-for-job-u1"
    execution = flows.start("UrlFlow", "u1", secret=secret)
    token = flows.wait_for_item("vendor#u1")
    assert token["callbackSecretHash"]["S"] == hashlib.sha256(secret.encode()).hexdigest()
    handler = _callback_url_handler(flows)
    body = {"status": "SUCCEEDED", "output": {"pages": 3}}

    forged = handler.handle(_callback("vendor", "u1", body, "not-the-secret"))
    assert forged["statusCode"] == 403
    time.sleep(0.3)
    assert flows.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"

    accepted = handler.handle(_callback("vendor", "u1", body, secret))
    assert accepted["statusCode"] == 202
    result = flows.finish(execution)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["job"] == {"pages": 3}
    [run] = flows.resumer_runs(1)
    assert run["result"] == {"result": "RESUMED", "id": "vendor#u1", "outcome": "SUCCEEDED"}
    assert flows.tokens() == {}


def test_a_record_of_an_unknown_backend_fails_loudly(moto_flows: Any) -> None:
    """A token record whose backend the resumer does not serve is not resumed by guesswork: the
    resumer fails (its alarm fires) and says why."""
    flows = moto_flows
    flows.dynamodb.put_item(
        TableName=flows.table,
        Item={
            "id": {"S": "translate#d-1"},
            "kind": {"S": "token"},
            "backend": {"S": "carrier-pigeon"},
            "createdAt": {"S": "2026-01-01T00:00:00Z"},
            "ttl": {"N": str(int(time.time()) + 3600)},
        },
    )
    flows.translate_event("d-1", "COMPLETED")
    [run] = flows.resumer_runs(1)
    assert run["status"] == "FAILED"
    assert run["error"] == "CallbackPattern.UnsupportedRecord"


def test_durable_function_is_resumed_by_the_resumer(moto_flows: Any) -> None:
    """B's durable helper waits in the durable SDK's local runner; the completion event goes
    through EventBridge to the resumer, whose Lambda durable-callback tasks the bridge routes to
    that runner (moto has no durable-execution APIs)."""
    from aws_durable_execution_sdk_python import DurableContext, durable_execution
    from aws_durable_execution_sdk_python.lambda_service import ErrorObject
    from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner

    from cdk_serverless_patterns.local import moto_bridge

    flows = moto_flows

    @durable_execution
    def handler(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
        try:
            detail = durable_callback.wait_for_job(
                context,
                table_name=flows.table,
                namespace="translate",
                job_id=event["jobId"],
                timeout=300,
                dynamodb=flows.dynamodb,
            )
        except durable_callback.JobFailedError as failed:
            return {"failed": {"error": failed.error, "cause": failed.cause}}
        return {"detail": detail}

    with DurableFunctionTestRunner(handler=handler, poll_interval=0.05, region="us-east-1") as runner:

        def success(CallbackId: str, Result: Any) -> None:
            runner.send_callback_success(CallbackId, Result.encode() if isinstance(Result, str) else Result)

        def failure(CallbackId: str, Error: dict[str, Any]) -> None:
            runner.send_callback_failure(CallbackId, ErrorObject.from_dict(Error))

        moto_bridge.route_aws_sdk("lambda", "sendDurableExecutionCallbackSuccess", success)
        moto_bridge.route_aws_sdk("lambda", "sendDurableExecutionCallbackFailure", failure)
        try:
            done = runner.run_async(input=json.dumps({"jobId": "dur-1"}), execution_timeout=60)
            failed = runner.run_async(input=json.dumps({"jobId": "dur-2"}), execution_timeout=60)
            for arn, key in ((done, "translate#dur-1"), (failed, "translate#dur-2")):
                runner.wait_for_callback(arn, timeout=30)
                record = flows.wait_for_item(key)
                assert record["backend"]["S"] == "durable"

            flows.translate_event("dur-1", "COMPLETED")
            flows.put(
                "aws.translate",
                "Translate TextTranslationJob State Change",
                {"jobId": "dur-2", "jobStatus": "FAILED"},
            )
            outcome = runner.wait_for_result(done, timeout=30)
            assert json.loads(outcome.result) == {"detail": {"jobId": "dur-1", "jobStatus": "COMPLETED"}}
            outcome = runner.wait_for_result(failed, timeout=30)
            assert json.loads(outcome.result)["failed"]["error"] == "translate.FAILED"
            runs = flows.resumer_runs(2)
            assert [run["result"]["result"] for run in runs] == ["RESUMED", "RESUMED"]
            assert flows.tokens() == {}
        finally:
            moto_bridge.route_aws_sdk("lambda", "sendDurableExecutionCallbackSuccess", None)
            moto_bridge.route_aws_sdk("lambda", "sendDurableExecutionCallbackFailure", None)


def test_bedrock_data_automation_events_resume_by_detail_type(moto_flows: Any) -> None:
    """Events shaped like the Bedrock documentation's sample: the status is the detail-type."""
    flows = moto_flows
    ok = flows.start("BdaFlow", "25010344-03f7-4167-803a-837afdc7ce98")
    bad = flows.start("BdaFlow", "bda-2")
    flows.wait_for_item("bedrock-data-automation#25010344-03f7-4167-803a-837afdc7ce98")
    flows.wait_for_item("bedrock-data-automation#bda-2")
    detail = {
        "job_id": "25010344-03f7-4167-803a-837afdc7ce98",
        "job_status": "SUCCESS",
        "semantic_modality": "Document",
        "output_s3_location": {"s3_bucket": "output-s3-bucket-name", "name": "key"},
        "error_message": "",
    }
    flows.put("aws.bedrock", "Bedrock Data Automation Job Created", {**detail, "job_status": "CREATED"})
    flows.put("aws.bedrock", "Bedrock Data Automation Job Succeeded", detail)
    flows.put(
        "aws.bedrock",
        "Bedrock Data Automation Job Failed With Client Error",
        {"job_id": "bda-2", "job_status": "CLIENT_ERROR", "error_message": "unsupported file type"},
    )
    assert json.loads(flows.finish(ok)["output"])["job"] == detail
    error = json.loads(flows.finish(bad)["output"])["error"]
    # A short, catchable error name (the source's error_names), not the detail-type.
    assert error == {"Error": "BedrockDataAutomation.ClientError", "Cause": "unsupported file type"}
    assert len(flows.resumer_runs(2)) == 2, "the 'Job Created' event is filtered out by the rule"


def test_dms_replication_task_events_resume_by_task_arn(moto_flows: Any) -> None:
    """Events shaped like DMS's: the job id is the task ARN in ``resources``."""
    flows = moto_flows
    task = "arn:aws:dms:us-east-1:123456789012:task:ABCDEFGHIJKLMNOP"
    execution = flows.start("DmsFlow", task)
    flows.wait_for_item(f"dms#{task}")
    detail = {
        "type": "REPLICATION_TASK",
        "category": "StateChange",
        "eventType": "REPLICATION_TASK_STOPPED",
        "detailMessage": "Stop Reason FULL_LOAD_ONLY_FINISHED",
    }
    flows.put(
        "aws.dms", "DMS Replication Task State Change", {**detail, "eventType": "REPLICATION_TASK_STARTED"}, [task]
    )
    flows.put("aws.dms", "DMS Replication Task State Change", detail, [task])
    assert json.loads(flows.finish(execution)["output"])["job"] == detail
    assert [run["result"]["result"] for run in flows.resumer_runs(1)] == ["RESUMED"]


# --------------------------------------------------------------------------- event times (second precision)
def _start_second(flows: Any, execution: str) -> datetime.datetime:
    started = flows.sfn.describe_execution(executionArn=execution)["startDate"]
    return started.astimezone(datetime.UTC).replace(microsecond=0)


def test_the_bridge_delivers_eventbridge_time_to_the_resumer(moto_flows: Any) -> None:
    flows = moto_flows
    flows.translate_event("t-iso", "COMPLETED")
    [run] = flows.resumer_runs(1)
    event_time = json.loads(run["input"])["event"]["time"]
    assert isinstance(event_time, str) and len(event_time) == 20 and event_time.endswith("Z"), event_time
    assert flows.items()["translate#t-iso"]["eventTime"]["S"].startswith(event_time[:19])


@pytest.mark.parametrize(("seconds_before", "result"), [(0, "RESUMED"), (2, "RESUMED"), (3, "STALE")])
def test_reused_job_id_stale_boundary_at_second_precision(moto_flows: Any, seconds_before: int, result: str) -> None:
    """DMS reuses job ids: an event dated in the second the waiter started (EventBridge drops the
    fraction) or up to stale_tolerance_seconds (2) before resumes it; one second more is STALE."""
    flows = moto_flows
    task = f"arn:aws:dms:us-east-1:123456789012:task:EDGE{seconds_before}"
    execution = flows.start("DmsFlow", task)
    flows.wait_for_item(f"dms#{task}")
    _dms_event(
        flows,
        task,
        "REPLICATION_TASK_STOPPED",
        at=_start_second(flows, execution) - datetime.timedelta(seconds=seconds_before),
    )
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == result, run["result"]
    expected = "SUCCEEDED" if result == "RESUMED" else "RUNNING"
    if result == "RESUMED":
        assert flows.finish(execution)["status"] == expected
    else:
        assert flows.sfn.describe_execution(executionArn=execution)["status"] == expected


def test_reused_job_id_completion_in_the_same_second_is_taken_by_the_waiter(moto_flows: Any) -> None:
    """The job finishes (event dated to the second) before the wait step parks, in the second its
    workflow started: the recorded completion belongs to this run."""
    flows = moto_flows
    task = "arn:aws:dms:us-east-1:123456789012:task:SAMESECOND"
    execution = flows.start("DmsFlow", task, hold=True)
    _dms_event(flows, task, "REPLICATION_TASK_STOPPED", at=_start_second(flows, execution))
    assert flows.resumer_runs(1)[0]["result"]["result"] == "RECORDED"
    flows.release(task)
    result = flows.finish(execution)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["job"]["eventType"] == "REPLICATION_TASK_STOPPED"
    assert _wait_task_successes(flows, execution) == 0


def test_unique_job_ids_an_event_older_than_the_waiter_resumes_it(moto_flows: Any) -> None:
    """Translate job ids are unique: a job started (and finished) by another system before the
    workflow began waiting for it still resumes the workflow, recorded or parked."""
    flows = moto_flows
    parked = flows.start("TranslateFlow", "other-system-1")
    flows.wait_for_item("translate#other-system-1")
    early = flows.start("TranslateFlow", "other-system-2", hold=True)
    old = _now() - datetime.timedelta(minutes=10)
    for job in ("other-system-1", "other-system-2"):
        entry = {
            "Time": old,
            "Source": "aws.translate",
            "DetailType": "Translate TextTranslationJob State Change",
            "Detail": json.dumps({"jobId": job, "jobStatus": "COMPLETED"}),
        }
        assert flows.events.put_events(Entries=[entry])["FailedEntryCount"] == 0
    assert sorted(run["result"]["result"] for run in flows.resumer_runs(2)) == ["RECORDED", "RESUMED"]
    assert flows.finish(parked)["status"] == "SUCCEEDED"
    flows.release("other-system-2")
    assert json.loads(flows.finish(early)["output"])["job"]["jobId"] == "other-system-2"
    assert flows.tokens() == {}
    assert {key: item["kind"]["S"] for key, item in flows.items().items()} == {
        "translate#other-system-1": "resumed",
        "translate#other-system-2": "resumed",
    }


# --------------------------------------------------------------------------- large events
def _partner_detail(job_id: str, output_chars: int) -> dict[str, Any]:
    """A partner event detail whose compact JSON is exactly ``output_chars`` characters."""
    detail = {"id": job_id, "state": "DONE", "blob": ""}
    padding = output_chars - len(json.dumps(detail, separators=(",", ":")))
    detail["blob"] = "x" * padding
    assert len(json.dumps(detail, separators=(",", ":"))) == output_chars
    return detail


def test_an_event_of_250_kb_fails_the_waiter_with_output_too_large(moto_flows: Any) -> None:
    from cdk_serverless_patterns.callback.asl import MAX_OUTPUT_BYTES

    flows = moto_flows
    execution = flows.start("BigFlow", "big-1")
    flows.wait_for_item("partner#big-1")
    detail = _partner_detail("big-1", 250_000)
    flows.put("com.example.partner", "Partner Job Finished", detail)
    error = json.loads(flows.finish(execution)["output"])["error"]
    assert error["Error"] == "CallbackPattern.OutputTooLarge"
    assert "250000 bytes" in error["Cause"] and str(MAX_OUTPUT_BYTES) in error["Cause"]
    [run] = flows.resumer_runs(1)
    assert run["status"] == "SUCCEEDED", run.get("cause")
    assert run["result"] == {"result": "RESUMED", "id": "partner#big-1", "outcome": "FAILED"}
    assert flows.tokens() == {}


def test_an_early_250_kb_event_is_recorded_as_output_too_large(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("BigFlow", "big-2", hold=True)
    flows.put("com.example.partner", "Partner Job Finished", _partner_detail("big-2", 250_000))
    assert flows.resumer_runs(1)[0]["result"]["result"] == "RECORDED"
    record = flows.items()["partner#big-2"]
    assert record["status"]["S"] == "FAILED" and record["output"]["S"] == "null"
    flows.release("big-2")
    assert json.loads(flows.finish(execution)["output"])["error"]["Error"] == "CallbackPattern.OutputTooLarge"


def test_an_output_that_just_fits_resumes_the_waiter_with_it(moto_flows: Any) -> None:
    from cdk_serverless_patterns.callback.asl import MAX_OUTPUT_BYTES

    flows = moto_flows
    execution = flows.start("BigFlow", "big-3")
    flows.wait_for_item("partner#big-3")
    detail = _partner_detail("big-3", MAX_OUTPUT_BYTES)
    flows.put("com.example.partner", "Partner Job Finished", detail)
    result = flows.finish(execution)
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"])["job"] == detail
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "RESUMED"
    # The resumer never carried the output from state to state.
    largest = max(
        len(event.get("stateExitedEventDetails", {}).get("output", "")) for event in flows.history(run["executionArn"])
    )
    assert largest < 40_000, largest


# --------------------------------------------------------------------------- resumer failures
def _dead_letters(flows: Any) -> list[dict[str, Any]]:
    messages = flows.sqs.receive_message(
        QueueUrl=flows.dead_letter_queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", [])
    return [
        {"kind": m.get("MessageAttributes", {}).get("kind", {}).get("StringValue"), **json.loads(m["Body"])}
        for m in messages
    ]


def test_a_resumer_that_cannot_resume_fails_the_waiter_and_reports_the_job(moto_flows: Any) -> None:
    """SendTaskSuccess keeps failing (an error that is neither transient nor 'waiter gone'): the
    resumer fails the waiter with CallbackPattern.ResumerFailed, reports the job to the
    dead-letter queue and fails (its failed-executions alarm)."""
    from botocore.exceptions import ClientError

    from cdk_serverless_patterns.local.moto_bridge import route_aws_sdk

    flows = moto_flows
    execution = flows.start("TranslateFlow", "broken-1")
    flows.wait_for_item("translate#broken-1")

    def refuse(**_: Any) -> None:
        raise ClientError(
            {
                "Error": {"Code": "AccessDeniedException", "Message": "not allowed"},
                "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "r-1"},
            },
            "SendTaskSuccess",
        )

    route_aws_sdk("stepfunctions", "sendTaskSuccess", refuse)
    try:
        flows.translate_event("broken-1", "COMPLETED")
        [run] = flows.resumer_runs(1)
    finally:
        route_aws_sdk("stepfunctions", "sendTaskSuccess", None)
    assert run["status"] == "FAILED"
    error = json.loads(flows.finish(execution)["output"])["error"]
    assert error["Error"] == "CallbackPattern.ResumerFailed"
    assert "translate#broken-1" in error["Cause"]
    [report] = _dead_letters(flows)
    assert report["kind"] == "callback-resumer-failure"
    assert (report["id"], report["namespace"], report["jobId"]) == ("translate#broken-1", "translate", "broken-1")
    assert "not allowed" in report["cause"] and "waiter was failed" in report["cause"]
    assert report["resumerExecution"] == run["executionArn"]


def test_an_unsupported_record_fails_the_run_and_reaches_the_dead_letter_queue(moto_flows: Any) -> None:
    flows = moto_flows
    flows.dynamodb.put_item(
        TableName=flows.table,
        Item={
            "id": {"S": "translate#d-2"},
            "kind": {"S": "token"},
            "backend": {"S": "carrier-pigeon"},
            "createdAt": {"S": "2026-01-01T00:00:00Z"},
            "ttl": {"N": str(int(time.time()) + 3600)},
        },
    )
    flows.translate_event("d-2", "COMPLETED")
    [run] = flows.resumer_runs(1)
    assert (run["status"], run["error"]) == ("FAILED", "CallbackPattern.UnsupportedRecord")
    [report] = _dead_letters(flows)
    assert (report["error"], report["id"]) == ("CallbackPattern.UnsupportedRecord", "translate#d-2")


def test_the_resumer_alarm_and_dead_letter_grant_exist(flow_template: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match, Template

    template = Template.from_json(flow_template)
    alarms = template.find_resources("AWS::CloudWatch::Alarm", {"Properties": {"MetricName": "ExecutionsFailed"}})
    assert len(alarms) == 1
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Action": Match.array_with(["sqs:SendMessage"]), "Effect": "Allow"})]
                )
            },
            "Roles": Match.array_with([{"Ref": Match.string_like_regexp("CallbackResumerRole")}]),
        },
    )


# --------------------------------------------------------------------------- job ids
@pytest.mark.parametrize(
    ("job_id", "reason"),
    [
        (None, "the job id at $.detail.id is null, not a string or a number"),
        ({"a": 1}, "the job id at $.detail.id is object, not a string or a number"),
        ([1, 2], "the job id at $.detail.id is array, not a string or a number"),
        (True, "the job id at $.detail.id is boolean, not a string or a number"),
        ("", "the job id at $.detail.id is empty"),
    ],
)
def test_job_ids_that_are_not_strings_or_numbers_are_ignored_with_a_reason(
    moto_flows: Any, job_id: Any, reason: str
) -> None:
    flows = moto_flows
    flows.put("com.example.partner", "Partner Job Finished", {"id": job_id, "state": "DONE"})
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "IGNORED"
    assert run["result"]["reason"] == reason
    assert flows.items() == {}, "nothing is recorded under a stringified id"


def test_a_numeric_job_id_is_its_decimal_text(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("PartnerFlow", "4711")
    flows.wait_for_item("partner#4711")
    flows.put("com.example.partner", "Partner Job Finished", {"id": 4711, "state": "DONE"})
    assert flows.finish(execution)["status"] == "SUCCEEDED"
    assert flows.resumer_runs(1)[0]["result"]["id"] == "partner#4711"


# --------------------------------------------------------------------------- claim-bound events (callback URLs)
def _job_callback(flows: Any, job_id: str, claim_id: Any = None) -> None:
    detail: dict[str, Any] = {"namespace": "vendor", "jobId": job_id, "status": "SUCCEEDED", "output": {"forged": 1}}
    if claim_id is not None:
        detail["claimId"] = claim_id
    entry = {
        "Source": "cdk-serverless-patterns.callback-url",
        "DetailType": "Job Callback",
        "Detail": json.dumps(detail),
        "EventBusName": flows.callback_bus,
    }
    assert flows.events.put_events(Entries=[entry])["FailedEntryCount"] == 0


def test_a_forged_job_callback_without_a_waiter_plants_nothing(moto_flows: Any) -> None:
    flows = moto_flows
    _job_callback(flows, "f-1", claim_id="guess")
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "UNCLAIMED"
    assert flows.items() == {}, "a claim-bound event never records an early completion"


@pytest.mark.parametrize("claim_id", [None, "", "wrong-claim", 42])
def test_a_forged_job_callback_does_not_resume_a_waiter(moto_flows: Any, claim_id: Any) -> None:
    flows = moto_flows
    execution = flows.start("UrlFlow", "f-2", secret="s")
    flows.wait_for_item("vendor#f-2")
    flows.dynamodb.update_item(
        TableName=flows.table,
        Key={"id": {"S": "vendor#f-2"}},
        UpdateExpression="SET callbackRequestId = :claim",
        ExpressionAttributeValues={":claim": {"S": "the-handlers-claim"}},
    )
    before = flows.items()["vendor#f-2"]
    _job_callback(flows, "f-2", claim_id=claim_id)
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "UNVERIFIED"
    assert flows.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    assert flows.items()["vendor#f-2"] == before, "nothing changed"

    _job_callback(flows, "f-2", claim_id="the-handlers-claim")
    assert json.loads(flows.finish(execution)["output"])["job"] == {"forged": 1}
    assert [run["result"]["result"] for run in flows.resumer_runs(2)] == ["UNVERIFIED", "RESUMED"]


def test_a_job_callback_for_a_waiter_without_a_claim_is_unverified(moto_flows: Any) -> None:
    flows = moto_flows
    execution = flows.start("UrlFlow", "f-3", secret="s")
    flows.wait_for_item("vendor#f-3")
    _job_callback(flows, "f-3", claim_id="anything")
    assert flows.resumer_runs(1)[0]["result"]["result"] == "UNVERIFIED"
    assert flows.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"


# --------------------------------------------------------------------------- computed statuses, error names
@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ({"ok": True}, {"job": {"ok": True}}),
        ({"ok": False, "why": "disk"}, {"error": "Computed.DiskFull"}),
        ({"ok": False, "why": "net"}, {"error": "computed.BAD:net"}),
        ({"ok": False, "why": "disk", "code": "E9"}, {"error": "E9"}),
    ],
)
def test_computed_status_and_error_names(moto_flows: Any, detail: dict[str, Any], expected: dict[str, Any]) -> None:
    flows = moto_flows
    execution = flows.start("ComputedFlow", "c-1")
    flows.wait_for_item("computed#c-1")
    flows.put("com.example.computed", "Computed Job Finished", {"id": "c-1", **detail})
    output = json.loads(flows.finish(execution)["output"])
    if "job" in expected:
        assert output["job"] == {"id": "c-1", **detail}
    else:
        assert output["error"]["Error"] == expected["error"]


def test_a_computed_status_that_is_not_terminal_is_ignored(moto_flows: Any) -> None:
    flows = moto_flows
    flows.put("com.example.computed", "Computed Job Finished", {"id": "c-2", "ok": False, "why": "pending"})
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "IGNORED"
    assert "BAD:pending" in run["result"]["reason"]


def test_reused_job_id_a_new_run_finishing_before_its_waiter_replaces_the_marker(moto_flows: Any) -> None:
    """DMS: run 1 was resumed (a marker stays). Run 2 of the same task finishes, dated after run 1's
    event, before its workflow parks: it is recorded over the marker and the next waiter takes it; a
    late duplicate of run 1's event is still a duplicate."""
    flows = moto_flows
    task = "arn:aws:dms:us-east-1:123456789012:task:RERUN"
    first = flows.start("DmsFlow", task)
    flows.wait_for_item(f"dms#{task}")
    run_1_time = _now() - datetime.timedelta(seconds=1)
    _dms_event(flows, task, "REPLICATION_TASK_STOPPED", at=run_1_time)
    assert flows.finish(first)["status"] == "SUCCEEDED"
    assert flows.resumer_runs(1)[0]["result"]["result"] == "RESUMED"
    _dms_event(flows, task, "REPLICATION_TASK_STOPPED", at=run_1_time)  # late duplicate of run 1
    assert flows.resumer_runs(2)[-1]["result"]["result"] == "DUPLICATE"
    _dms_event(flows, task, "REPLICATION_TASK_FAILED", at=_now() + datetime.timedelta(seconds=5))  # run 2
    assert flows.resumer_runs(3)[-1]["result"]["result"] == "RECORDED"
    second = flows.start("DmsFlow", task)
    assert json.loads(flows.finish(second)["output"])["error"]["Error"] == "DMS.ReplicationTaskFailed"
    assert flows.tokens() == {}
