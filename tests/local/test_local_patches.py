"""Each patch of ``cdk_serverless_patterns.local.patches`` bridges its moto gap (moto 5.2.5).

Where the bridge still differs from AWS, the test asserts what it delivers today and says so.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import threading
from importlib.metadata import version
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cdk_serverless_patterns.local import Emulator, patches, route_aws_sdk

ACCOUNT = "123456789012"


def test_every_patch_names_the_moto_version_it_was_measured_on() -> None:
    for name in patches.PATCHES:
        module = importlib.import_module(f"cdk_serverless_patterns.local.patches.{name}")
        doc = module.__doc__ or ""
        assert f"moto {patches.MEASURED_ON}" in doc, name
        assert "Delete" in doc and "AWS" in doc, name
        assert callable(module.install), name


def test_the_patches_were_measured_on_the_installed_moto() -> None:
    """A moto upgrade fails here on purpose: measure each gap again, delete the fixed ones."""
    assert version("moto") == patches.MEASURED_ON


def test_install_is_idempotent_and_thread_safe(aws: Emulator) -> None:
    from moto.events.models import Rule

    patched = Rule.send_to_targets
    threads = [threading.Thread(target=patches.install) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert patches.installed()
    assert Rule.send_to_targets is patched  # not wrapped twice


# --------------------------------------------------------------------------- jsonata_engine
def test_jsonata_state_evaluates_with_hash(states: Any) -> None:
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Hash",
        "States": {
            "Hash": {
                "Type": "Pass",
                "Output": {
                    "sha256": "{% $hash($states.input.text, 'SHA-256') %}",
                    "md5": "{% $hash($states.input.text, 'MD5') %}",
                    "next": "{% $states.input.n + 1 %}",
                },
                "End": True,
            }
        },
    }
    run = states.run(definition, {"text": "abc", "n": 41})
    assert run["status"] == "SUCCEEDED", run
    assert json.loads(run["output"]) == {
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "md5": hashlib.md5(b"abc").hexdigest(),
        "next": 42,
    }


# --------------------------------------------------------------------------- aws_sdk_parameters
def test_aws_sdk_task_maps_pascal_case_parameters_onto_camel_case_api(states: Any, queue: str) -> None:
    """``sfn:sendTaskSuccess`` takes ``taskToken``; Step Functions' task passes ``TaskToken``."""
    waiting = states.start(states.create({"StartAt": "Wait", "States": {"Wait": states.waiting_task(queue)}}))
    sender = {
        "StartAt": "Send",
        "States": {
            "Send": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sfn:sendTaskSuccess",
                "Parameters": {"TaskToken.$": "$.token", "Output": json.dumps({"resumed": True})},
                "End": True,
            }
        },
    }
    sent = states.run(sender, {"token": states.token(queue)})
    assert sent["status"] == "SUCCEEDED", sent
    finished = states.finish(waiting)
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"]) == {"resumed": True}


def test_route_aws_sdk_answers_an_api_moto_lacks(states: Any) -> None:
    calls: list[dict[str, Any]] = []

    def answer(**arguments: Any) -> dict[str, Any]:
        calls.append(arguments)
        return {"Answered": True}

    definition = {
        "StartAt": "Callback",
        "States": {
            "Callback": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:lambda:sendDurableExecutionCallbackSuccess",
                "Parameters": {"CallbackId": "cb-1", "Result": "done"},
                "End": True,
            }
        },
    }
    route_aws_sdk("lambda", "sendDurableExecutionCallbackSuccess", answer)
    try:
        run = states.run(definition)
    finally:
        route_aws_sdk("lambda", "sendDurableExecutionCallbackSuccess", None)
    assert run["status"] == "SUCCEEDED", run
    assert json.loads(run["output"]) == {"Answered": True}
    assert calls == [{"CallbackId": "cb-1", "Result": "done"}]
    assert states.run(definition)["status"] == "FAILED"  # the route is gone: moto has no such API


# --------------------------------------------------------------------------- jsonata_variables
def test_string_variables_with_quotes_and_divisions_evaluate(states: Any) -> None:
    """A variable holding JSON text reaches later expressions intact; a reference between two
    divisions (which moto's scan took for a regex literal) is still bound."""
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Keep",
        "States": {
            "Keep": {
                "Type": "Pass",
                "Assign": {"text": '{% $string({"a": "q\\"uote", "n": [1, 2]}) %}'},
                "Next": "Use",
            },
            "Use": {
                "Type": "Pass",
                "Output": {
                    "parsed": "{% $parse($text) %}",
                    "seconds": "{% $floor($toMillis($states.context.Execution.StartTime) / 1000) - "
                    "$floor($toMillis($states.context.State.EnteredTime) / 1000) <= 0 %}",
                },
                "End": True,
            },
        },
    }
    run = states.run(definition)
    assert run["status"] == "SUCCEEDED", run
    assert json.loads(run["output"]) == {"parsed": {"a": 'q"uote', "n": [1, 2]}, "seconds": True}


# --------------------------------------------------------------------------- eventbridge_targets
def _rule_to(aws: Emulator, machine_arn: str, **target: Any) -> None:
    events = aws.session.client("events")
    events.put_rule(Name="jobs", EventPattern=json.dumps({"source": ["com.example.jobs"]}), State="ENABLED")
    events.put_targets(Rule="jobs", Targets=[{"Id": "machine", "Arn": machine_arn, **target}])


def _put_event(aws: Emulator, **extra: Any) -> None:
    entry = {"Source": "com.example.jobs", "DetailType": "Job Finished", "Detail": json.dumps({"id": "j-1"}), **extra}
    result = aws.session.client("events").put_events(Entries=[entry])
    assert result["FailedEntryCount"] == 0, result


def _executions(states: Any, machine_arn: str) -> list[dict[str, Any]]:
    return [
        states.finish(run["executionArn"])
        for run in states.sfn.list_executions(stateMachineArn=machine_arn)["executions"]
    ]


def test_rule_with_states_target_starts_an_execution_with_the_event(aws: Emulator, states: Any) -> None:
    machine = states.create({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    _rule_to(aws, machine)
    _put_event(aws)
    (run,) = states.wait_for(lambda: _executions(states, machine), what="an execution")
    assert run["name"].startswith("event-")
    event = json.loads(run["input"])
    assert event["source"] == "com.example.jobs"
    assert event["detail-type"] == "Job Finished"
    assert event["detail"] == {"id": "j-1"}
    assert event["account"] == ACCOUNT and event["region"] == "us-east-1"
    # EventBridge sends `time` as an ISO 8601 string to the second ("2024-01-01T12:00:00Z").
    assert isinstance(event["time"], str)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", event["time"]), event["time"]


def test_event_time_reaches_the_execution_as_eventbridge_sends_it(aws: Emulator, states: Any) -> None:
    """An event put with an explicit ``Time`` (with a fraction of a second, which EventBridge drops):
    ``"2024-01-01T12:00:07Z"`` in the event, also through an input transformer."""
    import datetime

    moment = datetime.datetime(2024, 1, 1, 12, 0, 7, 870000, tzinfo=datetime.UTC)
    machine = states.create({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    whole = states.create({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    events = aws.session.client("events")
    events.put_rule(Name="jobs", EventPattern=json.dumps({"source": ["com.example.jobs"]}), State="ENABLED")
    events.put_targets(
        Rule="jobs",
        Targets=[
            {
                "Id": "transformed",
                "Arn": machine,
                "InputTransformer": {"InputPathsMap": {"time": "$.time"}, "InputTemplate": '{"at": "<time>"}'},
            },
            {"Id": "whole", "Arn": whole},
        ],
    )
    _put_event(aws, Time=moment)
    (run,) = states.wait_for(lambda: _executions(states, machine), what="an execution")
    assert json.loads(run["input"]) == {"at": "2024-01-01T12:00:07Z"}
    (run,) = states.wait_for(lambda: _executions(states, whole), what="an execution")
    assert json.loads(run["input"])["time"] == "2024-01-01T12:00:07Z"


def test_event_time_conversion_leaves_what_is_not_a_timestamp() -> None:
    from cdk_serverless_patterns.local.patches.eventbridge_targets import event_time

    assert event_time(1704110407.87) == "2024-01-01T12:00:07Z"
    assert event_time("1704110407") == "2024-01-01T12:00:07Z"
    assert event_time("2024-01-01T12:00:07Z") == "2024-01-01T12:00:07Z"
    assert event_time(None) is None


def test_rule_target_input_and_input_path(aws: Emulator, states: Any) -> None:
    constant = states.create({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    detail = states.create({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    events = aws.session.client("events")
    events.put_rule(Name="jobs", EventPattern=json.dumps({"source": ["com.example.jobs"]}), State="ENABLED")
    events.put_targets(
        Rule="jobs",
        Targets=[
            {"Id": "constant", "Arn": constant, "Input": json.dumps({"fixed": 1})},
            {"Id": "detail", "Arn": detail, "InputPath": "$.detail"},
        ],
    )
    _put_event(aws, Source="com.example.other")  # does not match: nothing starts
    _put_event(aws)
    (first,) = states.wait_for(lambda: _executions(states, constant), what="an execution")
    (second,) = states.wait_for(lambda: _executions(states, detail), what="an execution")
    assert json.loads(first["input"]) == {"fixed": 1}
    assert json.loads(second["input"]) == {"id": "j-1"}


def test_failed_start_goes_to_the_targets_dead_letter_queue(aws: Emulator) -> None:
    sqs = aws.session.client("sqs")
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    missing = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:missing"
    _rule_to(aws, missing, DeadLetterConfig={"Arn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq"})
    _put_event(aws)
    (message,) = sqs.receive_message(QueueUrl=dlq)["Messages"]
    body = json.loads(message["Body"])
    assert body["detail"] == {"id": "j-1"}
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", body["time"]), body["time"]


# --------------------------------------------------------------------------- send_task_failure
def test_send_task_failure_keeps_its_cause(states: Any, queue: str) -> None:
    execution = states.start(states.create({"StartAt": "Wait", "States": {"Wait": states.waiting_task(queue)}}))
    states.sfn.send_task_failure(taskToken=states.token(queue), error="Job.Failed", cause="the disk is full")
    finished = states.finish(execution)
    assert (finished["status"], finished["error"], finished["cause"]) == ("FAILED", "Job.Failed", "the disk is full")


# --------------------------------------------------------------------------- parallel_errors
def test_parallel_branch_timeout_reaches_the_parallel_catch(states: Any, queue: str) -> None:
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "Wait", "States": {"Wait": states.waiting_task(queue, TimeoutSeconds=1)}}],
                "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    run = states.run(definition, {"job": 1})
    assert run["status"] == "SUCCEEDED", run
    assert json.loads(run["output"])["error"]["Error"] == "States.Timeout"


# --------------------------------------------------------------------------- stop_execution
def test_stop_execution_closes_its_waiting_task(states: Any, queue: str) -> None:
    execution = states.start(states.create({"StartAt": "Wait", "States": {"Wait": states.waiting_task(queue)}}))
    token = states.token(queue)
    states.sfn.stop_execution(executionArn=execution, error="Operator", cause="stopped in a test")
    # AWS reports ABORTED, and so does the bridge (moto drops the stop's error and cause).
    stopped = states.finish(execution)
    assert stopped["status"] == "ABORTED"
    assert "error" not in stopped
    with pytest.raises(ClientError) as refused:
        states.sfn.send_task_success(taskToken=token, output="{}")
    # moto answers InvalidToken for the closed task.
    assert refused.value.response["Error"]["Code"] == "InvalidToken"


# --------------------------------------------------------------------------- task_token_race
def test_a_token_is_found_while_another_execution_is_still_starting(states: Any, queue: str) -> None:
    import types

    from moto.stepfunctions.responses import get_backend

    machine = states.create({"StartAt": "Wait", "States": {"Wait": states.waiting_task(queue)}})
    execution = states.start(machine)
    token = states.token(queue)
    backend = get_backend(ACCOUNT, "us-east-1")
    [state_machine] = [sm for sm in backend.state_machines if sm.arn == machine]
    # An execution that is starting: moto has not given its worker an environment yet.
    starting = types.SimpleNamespace(status="RUNNING", exec_worker=types.SimpleNamespace(env=None))
    state_machine.executions.append(starting)
    try:
        states.sfn.send_task_success(taskToken=token, output='{"done": true}')
    finally:
        state_machine.executions.remove(starting)
    assert states.finish(execution)["status"] == "SUCCEEDED"


# --------------------------------------------------------------------------- parse_cache
def test_each_definition_is_parsed_once_and_every_execution_runs_fresh(states: Any) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Count",
        "States": {"Count": {"Type": "Pass", "Output": "{% $states.input.n + 1 %}", "End": True}},
    }
    machine = states.create(definition)
    runs = [states.finish(states.start(machine, {"n": n})) for n in range(3)]
    assert [json.loads(run["output"]) for run in runs] == [1, 2, 3]
    first, _ = AmazonStateLanguageParser.parse(json.dumps(definition))
    second, _ = AmazonStateLanguageParser.parse(json.dumps(definition))
    assert first is not second, "fresh components for every execution"


# --------------------------------------------------------------------------- parser_scope
def test_each_parse_has_its_own_query_language_scope(aws: Emulator) -> None:
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    first, second = Preprocessor(), Preprocessor()
    assert first._query_language_per_scope is not second._query_language_per_scope


def test_concurrent_jsonata_and_jsonpath_executions_all_finish(states: Any) -> None:
    jsonata = states.create(
        {
            "QueryLanguage": "JSONata",
            "StartAt": "A",
            "States": {"A": {"Type": "Pass", "Output": "{% $states.input.n * 2 %}", "End": True}},
        }
    )
    jsonpath = states.create({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$.n", "End": True}}})
    runs = [states.start(machine, {"n": i}) for i in range(6) for machine in (jsonata, jsonpath)]
    assert {states.finish(run)["status"] for run in runs} == {"SUCCEEDED"}


def test_concurrent_conditional_writes_have_exactly_one_winner(aws: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight writers race on attribute_not_exists(id); each condition check is slowed down so that, without the
    atomic-writes patch, every writer would check before any writes (measured: 8 winners). AWS: exactly one wins."""
    import time

    import moto.dynamodb.models.table as table_module

    check = table_module.get_filter_expression

    def slow_check(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return check(*args, **kwargs)

    monkeypatch.setattr(table_module, "get_filter_expression", slow_check)
    dynamodb = aws.session.client("dynamodb")
    dynamodb.create_table(
        TableName="race",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    outcomes: list[str] = []

    def write(writer: int) -> None:
        try:
            dynamodb.put_item(
                TableName="race",
                Item={"id": {"S": "token"}, "writer": {"N": str(writer)}},
                ConditionExpression="attribute_not_exists(id)",
            )
            outcomes.append("won")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["ConditionalCheckFailedException"] * 7 + ["won"]


def test_a_read_never_sees_an_update_halfway(aws: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto applies an UpdateItem's SET actions to the stored item one at a time; each is slowed down here so
    that, without the lock on reads, a concurrent GetItem sees ``state`` set and ``reason`` missing (a CI run
    saw it). AWS: a read sees the item before or after the write."""
    import time

    from moto.dynamodb.parsing import executors

    set_one = executors.SetExecutor.execute

    def slow_set(self: Any, item: Any) -> None:
        set_one(self, item)
        time.sleep(0.02)

    monkeypatch.setattr(executors.SetExecutor, "execute", slow_set)
    dynamodb = aws.session.client("dynamodb")
    dynamodb.create_table(
        TableName="halfway",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="halfway", Item={"id": {"S": "c"}, "state": {"S": "CLOSED"}})
    seen: list[tuple[str, bool]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            item = dynamodb.get_item(TableName="halfway", Key={"id": {"S": "c"}}, ConsistentRead=True)["Item"]
            seen.append((item["state"]["S"], "reason" in item))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        time.sleep(0.05)
        for n in range(5):
            dynamodb.update_item(
                TableName="halfway",
                Key={"id": {"S": "c"}},
                UpdateExpression="SET #s = :s, #r = :r, #v = :v",
                ExpressionAttributeNames={"#s": "state", "#r": "reason", "#v": "version"},
                ExpressionAttributeValues={":s": {"S": "OPEN"}, ":r": {"S": f"tripped {n}"}, ":v": {"N": str(n)}},
            )
            dynamodb.put_item(TableName="halfway", Item={"id": {"S": "c"}, "state": {"S": "CLOSED"}})
    finally:
        done.set()
        reader.join(timeout=30)
    assert ("OPEN", True) in seen and ("CLOSED", False) in seen  # the reader saw both sides of the writes
    assert ("OPEN", False) not in seen


# --------------------------------------------------------------------------- cloudformation_outputs
def test_an_output_reading_an_unmodelled_type_deploys_and_is_left_out(aws: Emulator) -> None:
    """moto 5.2.5 crashed stack creation on ``Fn::GetAtt`` of a type it does not model (``'NoneType' object has no
    attribute 'has_cfn_attr'``) and then DescribeStacks on the same output; AWS deploys it. The output is left out
    of moto's answer (the emulator resolves it from the template); moto's own check for modelled types stays."""
    cfn = aws.session.client("cloudformation")
    template = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Ws": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"Name": "ws", "ProtocolType": "WEBSOCKET"}},
        },
        "Outputs": {
            "Endpoint": {"Value": {"Fn::GetAtt": ["Ws", "ApiEndpoint"]}},
            "QueueArn": {"Value": {"Fn::GetAtt": ["Queue", "Arn"]}},
        },
    }
    cfn.create_stack(StackName="outputs", TemplateBody=json.dumps(template))
    (stack,) = cfn.describe_stacks(StackName="outputs")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    assert set(outputs) == {"QueueArn"} and outputs["QueueArn"].startswith("arn:aws:sqs:")
    template["Outputs"]["Bad"] = {"Value": {"Fn::GetAtt": ["Queue", "NoSuchAttribute"]}}
    with pytest.raises(ClientError):  # an attribute a modelled type does not have is still refused
        cfn.create_stack(StackName="outputs-bad", TemplateBody=json.dumps(template))
