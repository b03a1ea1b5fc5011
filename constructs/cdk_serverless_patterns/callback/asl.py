"""The Amazon States Language the callback pattern synthesizes, as plain data.

Two pieces:

- the **resumer**: an EXPRESS state machine in JSONata that turns one completion event into
  exactly one resume (SendTaskSuccess/SendTaskFailure, or the Lambda durable-execution callback
  APIs), cleans up, and records a completion when no waiter is parked yet (the early-completion
  race);
- the **wait step**: the states that ``CallbackPattern.wait_for_job`` puts into a user's workflow.

JSONata is used because a DynamoDB TTL must be epoch seconds, and JSONPath has no date
arithmetic (``$toMillis($states.context.State.EnteredTime)`` is one expression in JSONata).
Each state sets ``QueryLanguage`` itself, so the pieces also fit in a JSONPath workflow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cdk_serverless_patterns.callback import contract
from cdk_serverless_patterns.callback.sources import JobSource, jsonata_path

DDB_GET = "arn:aws:states:::aws-sdk:dynamodb:getItem"
DDB_PUT = "arn:aws:states:::aws-sdk:dynamodb:putItem"
DDB_DELETE = "arn:aws:states:::aws-sdk:dynamodb:deleteItem"
DDB_UPDATE = "arn:aws:states:::aws-sdk:dynamodb:updateItem"
#: The wait step's resource: the optimized ``dynamodb:putItem`` integration has no callback
#: pattern, so it is the AWS SDK integration with ``.waitForTaskToken``.
WAIT_RESOURCE = "arn:aws:states:::aws-sdk:dynamodb:putItem.waitForTaskToken"
SFN_SUCCESS = "arn:aws:states:::aws-sdk:sfn:sendTaskSuccess"
SFN_FAILURE = "arn:aws:states:::aws-sdk:sfn:sendTaskFailure"
DURABLE_SUCCESS = "arn:aws:states:::aws-sdk:lambda:sendDurableExecutionCallbackSuccess"
DURABLE_FAILURE = "arn:aws:states:::aws-sdk:lambda:sendDurableExecutionCallbackFailure"

CONDITIONAL_CHECK_FAILED = "DynamoDb.ConditionalCheckFailedException"
#: The waiting task is gone: timed out, its execution stopped, or the token already used.
WAITER_GONE_ERRORS = ["Sfn.TaskTimedOutException", "Sfn.InvalidTokenException", "Sfn.TaskDoesNotExistException"]
DURABLE_GONE_ERRORS = ["Lambda.CallbackTimeoutException", "Lambda.ResourceNotFoundException"]
#: Error of a wait step whose job id already has a parked waiter.
ALREADY_AWAITED = contract.ALREADY_AWAITED
MAX_ERROR_LENGTH = contract.MAX_ERROR_LENGTH
MAX_CAUSE_LENGTH = contract.MAX_CAUSE_LENGTH

_NOW_EPOCH = "$floor($toMillis($states.context.State.EnteredTime) / 1000)"


def epoch_after(seconds: int) -> str:
    """JSONata for the DynamoDB TTL (a Number, as text) ``seconds`` after the state was entered."""
    return f"$string({_NOW_EPOCH} + {int(seconds)})"


def _quote(value: str) -> str:
    return json.dumps(value)


def _source_expression(source: JobSource) -> str:
    """JSONata producing the normalized job of one source from the event ``$e``."""

    def at(path: str) -> str:
        return jsonata_path(path, "$e")

    namespace = f"$string({at(source.namespace_path)})" if source.namespace_path else _quote(source.namespace)
    allowed = f" and $ns in {json.dumps(list(source.allowed_namespaces))}" if source.namespace_path else ""
    error = (
        f"($exists({at(source.error_path)}) and $string({at(source.error_path)}) != '' "
        f"? $string({at(source.error_path)}) : $ns & '.' & $status)"
        if source.error_path
        else "$ns & '.' & $status"
    )
    cause = (
        f"($exists({at(source.cause_path)}) and $string({at(source.cause_path)}) != '' "
        f"? $string({at(source.cause_path)}) : $string($e.detail))"
        if source.cause_path
        else "$string($e.detail)"
    )
    output = at(source.output_path)
    return (
        "("
        f"$status := $string({at(source.status_path)}); "
        f"$ns := {namespace}; "
        f"$jobId := $string({at(source.job_id_path)}); "
        f"$known := $exists($jobId) and $jobId != '' and $exists($ns){allowed}; "
        "{"
        "'id': $ns & '#' & $jobId, 'namespace': $ns, 'jobId': $jobId, 'status': $status, "
        f"'outcome': $known and $status in {json.dumps(list(source.success_statuses))} ? 'SUCCEEDED' : "
        f"($known and $status in {json.dumps(list(source.failure_statuses))} ? 'FAILED' : 'IGNORED'), "
        f"'outputJson': $exists({output}) ? $string({output}) : 'null', "
        f"'error': $substring({error}, 0, {MAX_ERROR_LENGTH}), "
        f"'cause': $substring({cause}, 0, {MAX_CAUSE_LENGTH})"
        "})"
    )


def normalize_expression(sources: Sequence[JobSource]) -> str:
    """JSONata of the resumer's first state: the rule target's ``{"source", "event"}`` input
    becomes ``{"job": {id, namespace, jobId, status, outcome, outputJson, error, cause,
    eventMillis, eventTime}}``."""
    branches = "".join(f"$s = {_quote(source.namespace)} ? {_source_expression(source)} : " for source in sources)
    ignored = "{'id': '', 'outcome': 'IGNORED', 'status': 'UNKNOWN_SOURCE'}"
    # When the job finished: the event's own time (ISO 8601 from EventBridge; a number of seconds
    # from some emulators), used to tell a job's event from an older one with the same job id.
    when = (
        "$t := $e.time; "
        "$ms := $type($t) = 'number' ? $round($t * 1000) : ($type($t) = 'string' ? $toMillis($t) : -1); "
        "$when := {'eventMillis': $ms, 'eventTime': $ms >= 0 ? $fromMillis($ms) : ''}; "
    )
    return (
        "{% ($e := $states.input.event; $s := $states.input.source; "
        f"{when}{{'job': $merge([{branches}{ignored}, $when])}}) %}}"
    )


def resumer_definition(
    *, table_name: str, sources: Sequence[JobSource], completion_ttl_seconds: int, durable: bool
) -> dict[str, Any]:
    """The resumer state machine: one completion event in, exactly one resume (or a recorded
    completion) out. Its result says what it did: ``RESUMED``, ``WAITER_GONE``, ``RECORDED``,
    ``DUPLICATE``, ``STALE`` (an event older than the waiting execution) or ``IGNORED``."""
    key = {"id": {"S": "{% $states.input.job.id %}"}}
    keep_job = "{% {'job': $states.input.job, 'record': $states.input.record} %}"

    def done(result: str) -> dict[str, Any]:
        return {
            "Type": "Succeed",
            "Output": f"{{% {{'result': '{result}', 'id': $states.input.job.id, "
            "'outcome': $states.input.job.outcome} %}",
        }

    choices: list[dict[str, Any]] = [
        {
            "Condition": "{% $states.input.record.kind.S = 'token' and $states.input.record.backend.S = "
            "'stepfunctions' and $states.input.job.outcome = 'SUCCEEDED' %}",
            "Next": "Send task success",
        },
        {
            "Condition": "{% $states.input.record.kind.S = 'token' and $states.input.record.backend.S = "
            "'stepfunctions' and $states.input.job.outcome = 'FAILED' %}",
            "Next": "Send task failure",
        },
    ]
    claim_choices: list[dict[str, Any]] = [
        {"Condition": "{% $states.input.record.kind.S = 'completion' %}", "Next": "Duplicate event"},
        {"Condition": "{% $states.input.record.kind.S = 'token' %}", "Next": "Claim token record"},
    ]
    waiter_gone_catch = {
        "ErrorEquals": WAITER_GONE_ERRORS,
        "Next": "Delete token record",
        "Output": "{% {'job': $states.input.job, 'record': $states.input.record, "
        "'waiterGone': $states.errorOutput.Error} %}",
    }
    retry_transient = [
        {
            "ErrorEquals": ["Sfn.SfnException", "Sfn.ThrottlingException", "States.Timeout"],
            "IntervalSeconds": 1,
            "MaxAttempts": 3,
            "BackoffRate": 2,
            "JitterStrategy": "FULL",
        }
    ]
    retry_dynamodb = [
        {
            "ErrorEquals": [
                "DynamoDb.ProvisionedThroughputExceededException",
                "DynamoDb.RequestLimitExceededException",
                "DynamoDb.ThrottlingException",
                "DynamoDb.InternalServerErrorException",
            ],
            "IntervalSeconds": 1,
            "MaxAttempts": 4,
            "BackoffRate": 2,
            "JitterStrategy": "FULL",
        }
    ]
    states: dict[str, Any] = {
        "Normalize event": {"Type": "Pass", "Output": None, "Next": "Job finished?"},
        "Job finished?": {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $states.input.job.outcome = 'IGNORED' %}", "Next": "Not a terminal status"}],
            "Default": "Get record",
        },
        "Not a terminal status": done("IGNORED"),
        "Get record": {
            "Type": "Task",
            "Resource": DDB_GET,
            "Arguments": {"TableName": table_name, "Key": key, "ConsistentRead": True},
            "Output": "{% {'job': $states.input.job, 'record': $states.result.Item} %}",
            "Retry": retry_dynamodb,
            "Next": "Waiter parked?",
        },
        "Waiter parked?": {
            "Type": "Choice",
            "Choices": [
                {"Condition": "{% $not($exists($states.input.record)) %}", "Next": "Record completion"},
                # A job id that is reused (a DMS task ARN): an event from before the waiting
                # execution started belongs to an earlier run (a late duplicate), not to its job.
                {
                    "Condition": "{% $states.input.record.kind.S = 'token' and "
                    "$exists($states.input.record.executionStartedAt.S) and $states.input.job.eventMillis >= 0 and "
                    "$states.input.job.eventMillis < $toMillis($states.input.record.executionStartedAt.S) %}",
                    "Next": "Event older than the waiter",
                },
                *claim_choices,
            ],
            "Default": "Unsupported record",
        },
        # Exactly one resumer may resume a waiter, whatever the task-token API would accept.
        "Claim token record": {
            "Type": "Task",
            "Resource": DDB_UPDATE,
            "Arguments": {
                "TableName": table_name,
                "Key": key,
                "UpdateExpression": "SET #claimed = :now",
                "ConditionExpression": "#kind = :token AND #created = :created AND attribute_not_exists(#claimed)",
                "ExpressionAttributeNames": {"#kind": "kind", "#created": "createdAt", "#claimed": "resumeClaimedAt"},
                "ExpressionAttributeValues": {
                    ":token": {"S": "token"},
                    ":created": {"S": "{% $states.input.record.createdAt.S %}"},
                    ":now": {"S": "{% $states.context.State.EnteredTime %}"},
                },
            },
            "Output": "{% $states.input %}",
            "Retry": retry_dynamodb,
            "Catch": [
                {"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Next": "Duplicate event", "Output": "{% $states.input %}"}
            ],
            "Next": "Resume waiter",
        },
        "Resume waiter": {"Type": "Choice", "Choices": choices, "Default": "Unsupported record"},
        "Unsupported record": {
            "Type": "Fail",
            "Error": "CallbackPattern.UnsupportedRecord",
            "Cause": "The token record names a backend this resumer does not serve (durable_functions is off?)",
        },
        "Duplicate event": done("DUPLICATE"),
        "Event older than the waiter": done("STALE"),
        "Send task success": {
            "Type": "Task",
            "Resource": SFN_SUCCESS,
            "Arguments": {
                "TaskToken": "{% $states.input.record.taskToken.S %}",
                "Output": "{% $states.input.job.outputJson %}",
            },
            "Output": keep_job,
            "Retry": retry_transient,
            "Catch": [waiter_gone_catch],
            "Next": "Delete token record",
        },
        "Send task failure": {
            "Type": "Task",
            "Resource": SFN_FAILURE,
            "Arguments": {
                "TaskToken": "{% $states.input.record.taskToken.S %}",
                "Error": "{% $states.input.job.error %}",
                "Cause": "{% $states.input.job.cause %}",
            },
            "Output": keep_job,
            "Retry": retry_transient,
            "Catch": [waiter_gone_catch],
            "Next": "Delete token record",
        },
        "Delete token record": {
            "Type": "Task",
            "Resource": DDB_DELETE,
            "Arguments": {
                "TableName": table_name,
                "Key": key,
                "ConditionExpression": "#kind = :token AND #created = :created",
                "ExpressionAttributeNames": {"#kind": "kind", "#created": "createdAt"},
                "ExpressionAttributeValues": {
                    ":token": {"S": "token"},
                    ":created": {"S": "{% $states.input.record.createdAt.S %}"},
                },
            },
            "Output": "{% $states.input %}",
            "Retry": retry_dynamodb,
            "Catch": [{"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Next": "Resumed", "Output": "{% $states.input %}"}],
            "Next": "Resumed",
        },
        "Resumed": {
            "Type": "Succeed",
            "Output": "{% {'result': $exists($states.input.waiterGone) ? 'WAITER_GONE' : 'RESUMED', "
            "'id': $states.input.job.id, 'outcome': $states.input.job.outcome} %}",
        },
        "Record completion": {
            "Type": "Task",
            "Resource": DDB_PUT,
            "Arguments": {
                "TableName": table_name,
                "Item": {
                    "id": {"S": "{% $states.input.job.id %}"},
                    "kind": {"S": "completion"},
                    "status": {"S": "{% $states.input.job.outcome %}"},
                    "output": {"S": "{% $states.input.job.outputJson %}"},
                    "error": {"S": "{% $states.input.job.error %}"},
                    "cause": {"S": "{% $states.input.job.cause %}"},
                    "createdAt": {"S": "{% $states.context.State.EnteredTime %}"},
                    "eventTime": {"S": "{% $states.input.job.eventTime %}"},
                    "ttl": {"N": f"{{% {epoch_after(completion_ttl_seconds)} %}}"},
                },
                "ConditionExpression": "attribute_not_exists(id)",
            },
            "Output": "{% $states.input %}",
            "Retry": retry_dynamodb,
            # A waiter parked (or a duplicate recorded) between our read and our write: read again.
            "Catch": [
                {
                    "ErrorEquals": [CONDITIONAL_CHECK_FAILED],
                    "Next": "Get record",
                    "Output": "{% {'job': $states.input.job} %}",
                }
            ],
            "Next": "Completion recorded",
        },
        "Completion recorded": done("RECORDED"),
    }
    states["Normalize event"]["Output"] = normalize_expression(sources)
    if durable:
        choices.extend(
            [
                {
                    "Condition": "{% $states.input.record.kind.S = 'token' and $states.input.record.backend.S = "
                    "'durable' and $states.input.job.outcome = 'SUCCEEDED' %}",
                    "Next": "Send durable callback success",
                },
                {
                    "Condition": "{% $states.input.record.kind.S = 'token' and $states.input.record.backend.S = "
                    "'durable' and $states.input.job.outcome = 'FAILED' %}",
                    "Next": "Send durable callback failure",
                },
            ]
        )
        durable_gone = {**waiter_gone_catch, "ErrorEquals": DURABLE_GONE_ERRORS}
        durable_retry = [
            {**retry_transient[0], "ErrorEquals": ["Lambda.ServiceException", "Lambda.TooManyRequestsException"]}
        ]
        states["Send durable callback success"] = {
            "Type": "Task",
            "Resource": DURABLE_SUCCESS,
            "Arguments": {
                "CallbackId": "{% $states.input.record.callbackId.S %}",
                "Result": "{% $states.input.job.outputJson %}",
            },
            "Output": keep_job,
            "Retry": durable_retry,
            "Catch": [durable_gone],
            "Next": "Delete token record",
        }
        states["Send durable callback failure"] = {
            "Type": "Task",
            "Resource": DURABLE_FAILURE,
            "Arguments": {
                "CallbackId": "{% $states.input.record.callbackId.S %}",
                # The durable SDK surfaces only ErrorMessage and ErrorData: the data keeps the error's name.
                "Error": {
                    "ErrorType": "{% $states.input.job.error %}",
                    "ErrorMessage": "{% $states.input.job.cause %}",
                    "ErrorData": "{% $string({'error': $states.input.job.error, 'cause': $states.input.job.cause}) %}",
                },
            },
            "Output": keep_job,
            "Retry": durable_retry,
            "Catch": [durable_gone],
            "Next": "Delete token record",
        }
    return {
        "Comment": "CallbackPattern resumer: one completion event -> exactly one resume, or a recorded completion",
        "QueryLanguage": "JSONata",
        "StartAt": "Normalize event",
        "States": states,
    }


def result_output(result_path: str | None, result: str, base: str = "$states.input") -> str:
    """JSONata that puts ``result`` at ``result_path`` of ``base`` (``None``: keep ``base``)."""
    if result_path is None:
        return base
    if result_path == "$":
        return result
    keys = [k for k in result_path[2:].split(".")]
    expression = result
    for depth in range(len(keys), 0, -1):
        parent = base + "".join(f".{k}" for k in keys[: depth - 1])
        expression = f"$merge([{parent}, {{{_quote(keys[depth - 1])}: {expression}}}])"
    return expression
