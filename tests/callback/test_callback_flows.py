"""The synthesized ASL, run for real in moto's Step Functions interpreter against moto DynamoDB.

Events go in through EventBridge ``put_events``; the rule and its target come from the template
(moto's own pattern matching and input transformer, started by the local bridge). Nothing here
hand-writes ASL: the workflows and the resumer are the ones CDK synthesized.
"""

from __future__ import annotations

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
    assert flows.items() == {}, "the resumer must delete the token record"


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
    assert flows.items() == {}


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
    # The waiter is gone and its record deleted: the duplicate is kept as a completion (with TTL)
    # and resumes nothing.
    assert second["status"] == "SUCCEEDED"
    assert second["result"]["result"] == "RECORDED"
    assert _wait_task_successes(flows, execution) == 1
    assert flows.items()["translate#job-2"]["kind"]["S"] == "completion"


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
    # One resumer claims the token and resumes; the others see the claim (DUPLICATE) or, once the
    # record is gone, keep the event as a completion (RECORDED).
    assert results.count("RESUMED") == 1, results
    assert set(results) <= {"RESUMED", "DUPLICATE", "RECORDED"}, results
    assert _wait_task_successes(flows, execution) == 1


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
    assert flows.items() == {}, "the wait step claims (deletes) the completion record"


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
    import datetime

    flows = moto_flows
    earlier = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(minutes=10)
    flows.events.put_events(
        Entries=[
            {
                "Time": earlier,
                "Source": "aws.translate",
                "DetailType": "Translate TextTranslationJob State Change",
                "Detail": json.dumps({"jobId": "reused", "jobStatus": "FAILED"}),
            }
        ]
    )
    assert flows.resumer_runs(1)[0]["result"]["result"] == "RECORDED"
    execution = flows.start("TranslateFlow", "reused")
    token = flows.wait_for_item("translate#reused", kind="token")
    assert token["executionArn"]["S"] == execution
    flows.translate_event("reused", "COMPLETED")
    result = flows.finish(execution)
    assert json.loads(result["output"])["job"]["jobStatus"] == "COMPLETED"


def test_an_event_older_than_the_waiting_execution_does_not_resume_it(moto_flows: Any) -> None:
    import datetime

    flows = moto_flows
    execution = flows.start("TranslateFlow", "reused-2")
    flows.wait_for_item("translate#reused-2")
    earlier = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(minutes=10)
    flows.events.put_events(
        Entries=[
            {
                "Time": earlier,
                "Source": "aws.translate",
                "DetailType": "Translate TextTranslationJob State Change",
                "Detail": json.dumps({"jobId": "reused-2", "jobStatus": "FAILED"}),
            }
        ]
    )
    [run] = flows.resumer_runs(1)
    assert run["result"]["result"] == "STALE"
    assert flows.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    flows.translate_event("reused-2", "COMPLETED")
    assert json.loads(flows.finish(execution)["output"])["job"]["jobStatus"] == "COMPLETED"


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
    # Step Functions reports ABORTED; moto's interpreter, once the bridge closes the waiting task,
    # ends the stopped execution as FAILED. Either way it did not resume.
    assert flows.finish(execution)["status"] in {"ABORTED", "FAILED"}
    assert _wait_task_successes(flows, execution) == 0
    flows.translate_event("job-5", "COMPLETED")
    [run] = flows.resumer_runs(1)
    assert run["status"] == "SUCCEEDED"
    assert run["result"]["result"] == "WAITER_GONE"
    assert flows.items() == {}


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
    assert flows.items() == {}


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
    assert set(flows.items()) == {"translate#12345"}

    flows.translate_event("12345", "COMPLETED")
    assert json.loads(flows.finish(translate_run)["output"])["job"]["jobStatus"] == "COMPLETED"
    assert [run["result"]["result"] for run in flows.resumer_runs(2)] == ["RESUMED", "RESUMED"]
    assert flows.items() == {}


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
        table_name=flows.table, event_bus_name="default", namespaces=frozenset({"vendor"}), auth_mode="secret"
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
    assert flows.items() == {}


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
            assert flows.items() == {}
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
    assert error == {
        "Error": "bedrock-data-automation.Bedrock Data Automation Job Failed With Client Error",
        "Cause": "unsupported file type",
    }
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
