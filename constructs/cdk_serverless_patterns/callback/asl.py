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
SQS_SEND = "arn:aws:states:::sqs:sendMessage"

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


#: The largest job output (its JSON text, in UTF-8 bytes) the resumer hands to a waiter. Step
#: Functions limits SendTaskSuccess's output and every state's payload to 256 KiB of UTF-8; the
#: rest is left for the waiting state's own input and the record's other fields. A larger output
#: fails the waiter with :data:`OUTPUT_TOO_LARGE`.
MAX_OUTPUT_BYTES = 240 * 1024
#: Error of a waiter whose job's output is larger than :data:`MAX_OUTPUT_BYTES`.
OUTPUT_TOO_LARGE = "CallbackPattern.OutputTooLarge"
#: Error of a waiter the resumer could not resume (a throttled or failing API after its retries,
#: an unexpected error): it fails the waiter with it and reports to the dead-letter queue.
RESUMER_FAILED = "CallbackPattern.ResumerFailed"
#: Error of a wait step whose job id is not a non-empty string or an integer number below 10^15.
INVALID_JOB_ID = "CallbackPattern.InvalidJobId"
#: Error of a wait step of a claim-bound source (callback URLs) whose job id was already resumed
#: within ``completion_ttl``: parking over the marker would let a replayed signed callback of the
#: earlier run resume this one.
JOB_ID_REUSED = "CallbackPattern.JobIdReused"
#: Why a number is not a job id: JSONata's ``$string`` keeps 15 significant digits (in AWS too),
#: so larger or fractional numbers would turn into another job's id.
NUMBER_JOB_ID_RULE = "a number job id must be an integer below 10^15; send large ids as strings"
KIND_RESUMED = contract.KIND_RESUMED
#: Message attribute ``kind`` of the resumer's own reports to the dead-letter queue (EventBridge's
#: undeliverable events have none).
DEAD_LETTER_KIND = "callback-resumer-failure"
#: Every result the resumer ends a run with.
RESULTS = ("RESUMED", "WAITER_GONE", "RECORDED", "DUPLICATE", "STALE", "IGNORED", "UNCLAIMED", "UNVERIFIED")

#: JSONata regex of an ISO 8601 date-time (EventBridge's ``time``, Step Functions' context times).
ISO_SECONDS = r"/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/"


def job_id_text(value: str) -> str:
    """JSONata of the job id text of ``value`` (any expression): a string as it is, an integer
    number below 10^15 as its decimal text (exact: ``$string`` keeps 15 significant digits), and
    ``''`` for anything else (the wait step and the resumer both refuse ``''``)."""
    return (
        f"($idv := {value}; $type($idv) = 'string' ? $idv : ($type($idv) = 'number' ? "
        "($idv = $floor($idv) and $abs($idv) < 1e15 ? $string($idv) : '') : ''))"
    )


def job_id_problem(value: str, path: str) -> str:
    """JSONata: ``''`` when ``value`` (any expression) is a job id (see :func:`job_id_text`), else
    why it is not, naming ``path``."""
    return (
        f"($idv := {value}; $idt := $exists($idv) ? $type($idv) : 'missing'; "
        f"$idt = 'missing' ? 'no job id at {path}' : ("
        f"$idt = 'string' ? ($idv = '' ? 'the job id at {path} is empty' : '') : ("
        f"$idt = 'number' ? ($idv = $floor($idv) and $abs($idv) < 1e15 ? '' : "
        f"'the job id at {path} is ' & $string($idv) & ': {NUMBER_JOB_ID_RULE}') : "
        f"'the job id at {path} is ' & $idt & ', not a string or a number')))"
    )


def utf8_bytes(text: str) -> str:
    """JSONata of the UTF-8 size of the string ``text`` (any expression): exact for characters of
    the Basic Multilingual Plane; one outside it counts 4 bytes where JSONata sees one code point
    and 6 where it sees a surrogate pair (JavaScript, in AWS), so it never counts too few."""
    return (
        f"$length($replace($replace($replace({text}, /[^\\u0000-\\uFFFF]/, 'xxxx'), "
        "/[\\u0800-\\uFFFF]/, 'xxx'), /[\\u0080-\\u07FF]/, 'xx'))"
    )


def _source_expression(source: JobSource) -> str:
    """JSONata producing the normalized job of one source from the event ``$e``: small fields only
    (the output and the cause are assigned to variables by :func:`normalize_assignments`)."""

    def at(path: str) -> str:
        return jsonata_path(path, "$e")

    namespace = f"$string({at(source.namespace_path)})" if source.namespace_path else _quote(source.namespace)
    allowed = f" and $ns in {json.dumps(list(source.allowed_namespaces))}" if source.namespace_path else ""
    named = (
        f"($lookup({json.dumps(dict(source.error_names))}, $status) ? "
        f"$lookup({json.dumps(dict(source.error_names))}, $status) : $ns & '.' & $status)"
        if source.error_names
        else "$ns & '.' & $status"
    )
    error = (
        f"($exists({at(source.error_path)}) and $string({at(source.error_path)}) != '' "
        f"? $string({at(source.error_path)}) : {named})"
        if source.error_path
        else named
    )
    status = (
        f"$string(({source.status_expression}))" if source.status_expression else f"$string({at(source.status_path)})"
    )
    output = at(source.output_path)
    # A job id is a non-empty string, or an integer number below 10^15 (its decimal text: 4711
    # waits as "4711"); other numbers, null, booleans, objects and arrays are refused (IGNORED with
    # a reason), never turned into an id: $string keeps 15 significant digits, so a larger number
    # would name another job.
    job_id = (
        f"$raw := {at(source.job_id_path)}; "
        f"$jobId := {job_id_text('$raw')}; "
        f"$idProblem := {job_id_problem('$raw', source.job_id_path)}; "
    )
    claim = (
        f"'claimBound': true, 'claimId': $type($e.detail.{contract.CLAIM_ID_FIELD}) = 'string' ? "
        f"$e.detail.{contract.CLAIM_ID_FIELD} : '', "
        if source.claim_bound
        else "'claimBound': false, 'claimId': '', "
    )
    success = json.dumps(list(source.success_statuses))
    failure = json.dumps(list(source.failure_statuses))
    return (
        "("
        f"$status := {status}; "
        f"$ns := {namespace}; "
        f"{job_id}"
        f"$nsOk := $exists($ns){allowed}; "
        f"$outcome := $idProblem = '' and $nsOk and $status in {success} ? 'SUCCEEDED' : "
        f"($idProblem = '' and $nsOk and $status in {failure} ? 'FAILED' : 'IGNORED'); "
        f"$bytes := $outcome = 'SUCCEEDED' and $exists({output}) ? {utf8_bytes(f'$string({output})')} : 4; "
        f"$tooLarge := $bytes > {MAX_OUTPUT_BYTES}; "
        "{"
        "'id': $exists($ns) ? $ns & '#' & $jobId : '', 'namespace': $exists($ns) ? $ns : '', 'jobId': $jobId, "
        "'status': $exists($status) ? $status : '', "
        "'outcome': $tooLarge ? 'FAILED' : $outcome, "
        "'reason': $outcome != 'IGNORED' ? '' : ($idProblem != '' ? $idProblem : ($nsOk ? "
        "'status ' & $status & ' is neither a success nor a failure status' : 'namespace not allowed')), "
        f"'error': $tooLarge ? '{OUTPUT_TOO_LARGE}' : $substring({error}, 0, {MAX_ERROR_LENGTH}), "
        "'outputBytes': $bytes, "
        f"'reusesIds': {json.dumps(bool(source.reuses_job_ids))}, "
        f"'staleTolerance': {int(source.stale_tolerance_seconds)}, "
        f"{claim}"
        f"'tooLarge': $tooLarge"
        "})"
    )


def _output_expression(source: JobSource) -> str:
    output = jsonata_path(source.output_path, "$e")
    return f"($exists({output}) ? {output} : null)"


def _cause_expression(source: JobSource) -> str:
    if source.cause_path:
        at = jsonata_path(source.cause_path, "$e")
        cause = f"($exists({at}) and $string({at}) != '' ? $string({at}) : $string($e.detail))"
    else:
        cause = "$string($e.detail)"
    return f"$substring({cause}, 0, {MAX_CAUSE_LENGTH})"


def _dispatch(sources: Sequence[JobSource], piece: Any, otherwise: str) -> str:
    return "".join(f"$s = {_quote(source.namespace)} ? {piece(source)} : " for source in sources) + otherwise


_PROLOGUE = "$e := $states.input.event; $s := $states.input.source; "


def job_expression(sources: Sequence[JobSource], root: str = "$states.input") -> str:
    """JSONata (without ``{% %}``) of the normalized job of the resumer's input at ``root``: ``{id,
    namespace, jobId, status, outcome, reason, error, outputBytes, tooLarge, reusesIds,
    staleTolerance, claimBound, claimId, eventTime, eventSecond}``. It never fails, whatever the
    event: an unknown source or a bad field gives ``outcome = IGNORED`` with a ``reason``."""
    ignored = (
        "{'id': '', 'namespace': '', 'jobId': '', 'status': 'UNKNOWN_SOURCE', 'outcome': 'IGNORED', "
        "'reason': 'no job source named ' & $string($s), 'reusesIds': false, 'claimBound': false, 'claimId': ''}"
    )
    # EventBridge's `time` is ISO 8601 to the second ("2026-11-30T11:25:07Z").
    when = (
        "$t := $e.time; "
        f"$sec := $type($t) = 'string' and $contains($t, {ISO_SECONDS}) ? $floor($toMillis($t) / 1000) : -1; "
        "$when := {'eventSecond': $sec, 'eventTime': $sec >= 0 ? $fromMillis($sec * 1000) : ''}; "
    )
    prologue = _PROLOGUE.replace("$states.input", root)
    return f"({prologue}{when}$merge([{_dispatch(sources, _source_expression, ignored)}, $when]))"


def key_expression(sources: Sequence[JobSource]) -> str:
    """JSONata (without ``{% %}``) of the job's ``{id, namespace, jobId, eventTime}`` only, for the
    dead-letter report of a failed run (small: the whole normalization is not repeated)."""

    def key(source: JobSource) -> str:
        namespace = (
            f"$string({jsonata_path(source.namespace_path, '$e')})"
            if source.namespace_path
            else _quote(source.namespace)
        )
        job_id = job_id_text(jsonata_path(source.job_id_path, "$e"))
        return f"($ns := {namespace}; $id := {job_id}; {{'id': $ns & '#' & $id, 'namespace': $ns, 'jobId': $id}})"

    fallback = "{'id': '', 'namespace': '', 'jobId': ''}"
    return f"({_PROLOGUE}$merge([{_dispatch(sources, key, fallback)}, {{'eventTime': $string($e.time)}}]))"


def normalize_expression(sources: Sequence[JobSource]) -> str:
    """JSONata of the resumer's first state: the rule target's ``{"source", "event"}`` input
    becomes ``{"job": <job_expression>}``."""
    return f"{{% {{'job': {job_expression(sources)}}} %}}"


def normalize_assignments(sources: Sequence[JobSource]) -> dict[str, str]:
    """The variables the first state assigns, so that no state carries them: ``$output`` (the
    job's output as JSON, ``null`` when it is larger than :data:`MAX_OUTPUT_BYTES`) and ``$cause``."""
    output = (
        f"{{% ({_PROLOGUE}$o := {_dispatch(sources, _output_expression, 'null')}; "
        f"$exists($o) and {utf8_bytes('$string($o)')} <= {MAX_OUTPUT_BYTES} ? $o : null) %}}"
    )
    cause = f"{{% ({_PROLOGUE}{_dispatch(sources, _cause_expression, _quote(''))}) %}}"
    return {"output": output, "cause": cause}


def resumer_definition(
    *,
    table_name: str,
    sources: Sequence[JobSource],
    completion_ttl_seconds: int,
    durable: bool,
    dead_letter_queue_url: str | None = None,
) -> dict[str, Any]:
    """The resumer state machine: one completion event in, exactly one resume (or a recorded
    completion) out. Its result says what it did (:data:`RESULTS`). A run that fails for any
    reason tries to fail the waiter with :data:`RESUMER_FAILED` when it knows its token, reports
    the job to ``dead_letter_queue_url`` and fails (the resumer's failed-executions alarm)."""
    key = {"id": {"S": "{% $states.input.job.id %}"}}
    keep_job = "{% {'job': $states.input.job, 'record': $states.input.record} %}"
    output_json = "{% $exists($output) ? $string($output) : 'null' %}"
    cause = "{% $states.input.job.tooLarge ? " + _too_large_cause("$states.input.job.outputBytes") + " : $cause %}"

    def done(result: str) -> dict[str, Any]:
        return {
            "Type": "Succeed",
            "Output": f"{{% {{'result': '{result}', 'id': $states.input.job.id, "
            "'outcome': $states.input.job.outcome, 'reason': $states.input.job.reason} %}",
        }

    def with_reason(result: str, reason: str) -> dict[str, Any]:
        return {
            "Type": "Succeed",
            "Output": f"{{% {{'result': '{result}', 'id': $states.input.job.id, "
            f"'outcome': $states.input.job.outcome, 'reason': {_quote(reason)}}} %}}",
        }

    token = "$states.input.record.kind.S = 'token'"
    choices: list[dict[str, Any]] = [
        {
            "Condition": f"{{% {token} and $states.input.record.backend.S = "
            "'stepfunctions' and $states.input.job.outcome = 'SUCCEEDED' %}",
            "Next": "Send task success",
        },
        {
            "Condition": f"{{% {token} and $states.input.record.backend.S = "
            "'stepfunctions' and $states.input.job.outcome = 'FAILED' %}",
            "Next": "Send task failure",
        },
    ]
    catch_all = _catch_everything(
        Next="Resume failed",
        Output="{% {'job': $states.input.job, 'record': $states.input.record, "
        "'failure': {'error': $states.errorOutput.Error, 'cause': $states.errorOutput.Cause}} %}",
    )
    waiter_gone_catch = {
        "ErrorEquals": WAITER_GONE_ERRORS,
        "Next": "Mark resumed",
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
    # Second-precision times: EventBridge dates an event to the second, so the waiter's start is
    # truncated to its second before the tolerance is taken off.
    stale = (
        f"{token} and $states.input.job.reusesIds and $exists($states.input.record.executionStartedAt.S) and "
        f"$contains($states.input.record.executionStartedAt.S, {ISO_SECONDS}) and $states.input.job.eventSecond >= 0 "
        "and $states.input.job.eventSecond < $floor($toMillis($states.input.record.executionStartedAt.S) / 1000) "
        "- $states.input.job.staleTolerance"
    )
    newer_than_marker = (
        f"$states.input.record.kind.S = '{KIND_RESUMED}' and $states.input.job.reusesIds and "
        "$exists($states.input.record.eventTime.S) and "
        f"$contains($states.input.record.eventTime.S, {ISO_SECONDS}) and "
        "$states.input.job.eventSecond > $floor($toMillis($states.input.record.eventTime.S) / 1000)"
    )
    claim_id_ok = (
        f"$exists($states.input.record.{contract.CLAIM_ATTRIBUTE}.S) and $states.input.job.claimId != '' and "
        f"$states.input.record.{contract.CLAIM_ATTRIBUTE}.S = $states.input.job.claimId"
    )

    def claim_state(verified: bool) -> dict[str, Any]:
        condition = "#kind = :token AND #created = :created AND attribute_not_exists(#claimed)"
        names = {"#kind": "kind", "#created": "createdAt", "#claimed": "resumeClaimedAt"}
        values: dict[str, Any] = {
            ":token": {"S": "token"},
            ":created": {"S": "{% $states.input.record.createdAt.S %}"},
            ":now": {"S": "{% $states.context.State.EnteredTime %}"},
        }
        if verified:
            condition += " AND #claim = :claimId"
            names["#claim"] = contract.CLAIM_ATTRIBUTE
            values[":claimId"] = {"S": "{% $states.input.job.claimId %}"}
        return {
            "Type": "Task",
            "Resource": DDB_UPDATE,
            "Arguments": {
                "TableName": table_name,
                "Key": key,
                "UpdateExpression": "SET #claimed = :now",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            },
            "Output": "{% $states.input %}",
            "Retry": retry_dynamodb,
            "Catch": [
                {"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Next": "Duplicate event", "Output": "{% $states.input %}"},
                *catch_all,
            ],
            "Next": "Resume waiter",
        }

    def completion_item() -> dict[str, Any]:
        return {
            "id": {"S": "{% $states.input.job.id %}"},
            "kind": {"S": contract.KIND_COMPLETION},
            "status": {"S": "{% $states.input.job.outcome %}"},
            "output": {"S": output_json},
            "error": {"S": "{% $states.input.job.error %}"},
            "cause": {"S": cause},
            "createdAt": {"S": "{% $states.context.State.EnteredTime %}"},
            "eventTime": {"S": "{% $states.input.job.eventTime %}"},
            "ttl": {"N": f"{{% {epoch_after(completion_ttl_seconds)} %}}"},
        }

    reread = {
        "ErrorEquals": [CONDITIONAL_CHECK_FAILED],
        "Next": "Get record",
        "Output": "{% {'job': $states.input.job} %}",
    }
    states: dict[str, Any] = {
        "Normalize event": {
            "Type": "Pass",
            "Assign": normalize_assignments(sources),
            "Output": normalize_expression(sources),
            "Next": "Job finished?",
        },
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
                # A claim-bound source (callback URLs): only the handler's claim may resume.
                {
                    "Condition": "{% $not($exists($states.input.record)) and $states.input.job.claimBound %}",
                    "Next": "Unclaimed event",
                },
                {"Condition": "{% $not($exists($states.input.record)) %}", "Next": "Record completion"},
                {
                    "Condition": f"{{% {token} and $states.input.job.claimBound and $not({claim_id_ok}) %}}",
                    "Next": "Unverified event",
                },
                # A source that reuses job ids (a DMS task ARN): an event dated before the waiting
                # execution started (beyond the tolerance) belongs to an earlier run.
                {"Condition": f"{{% {stale} %}}", "Next": "Event older than the waiter"},
                # A reused id's next run finished after the last resume: a new completion.
                {
                    "Condition": f"{{% {newer_than_marker} and $not($states.input.job.claimBound) %}}",
                    "Next": "Replace resumed marker",
                },
                {
                    "Condition": f"{{% $states.input.record.kind.S in ['{contract.KIND_COMPLETION}', "
                    f"'{KIND_RESUMED}'] %}}",
                    "Next": "Duplicate event",
                },
                {
                    "Condition": f"{{% {token} and $states.input.job.claimBound %}}",
                    "Next": "Claim verified token record",
                },
                {"Condition": f"{{% {token} %}}", "Next": "Claim token record"},
            ],
            "Default": "Unsupported record",
        },
        # Exactly one resumer may resume a waiter, whatever the task-token API would accept.
        "Claim token record": claim_state(verified=False),
        "Claim verified token record": claim_state(verified=True),
        "Resume waiter": {"Type": "Choice", "Choices": choices, "Default": "Unsupported record"},
        "Unsupported record": {
            "Type": "Fail",
            "Error": "CallbackPattern.UnsupportedRecord",
            "Cause": "The token record names a backend this resumer does not serve (durable_functions is off?)",
        },
        "Duplicate event": done("DUPLICATE"),
        "Event older than the waiter": with_reason(
            "STALE", "the event is dated before the waiting execution started: an earlier run of a reused job id"
        ),
        "Unclaimed event": with_reason(
            "UNCLAIMED", "no waiter is parked for this claim-bound job: nothing is resumed or recorded"
        ),
        "Unverified event": with_reason(
            "UNVERIFIED", "the event's claimId does not match the claim on the waiter's record: nothing is resumed"
        ),
        "Send task success": {
            "Type": "Task",
            "Resource": SFN_SUCCESS,
            "Arguments": {"TaskToken": "{% $states.input.record.taskToken.S %}", "Output": output_json},
            "Output": keep_job,
            "Retry": retry_transient,
            "Catch": [waiter_gone_catch, *catch_all],
            "Next": "Mark resumed",
        },
        "Send task failure": {
            "Type": "Task",
            "Resource": SFN_FAILURE,
            "Arguments": {
                "TaskToken": "{% $states.input.record.taskToken.S %}",
                "Error": "{% $states.input.job.error %}",
                "Cause": cause,
            },
            "Output": keep_job,
            "Retry": retry_transient,
            "Catch": [waiter_gone_catch, *catch_all],
            "Next": "Mark resumed",
        },
        # The token is replaced by a marker that lives as long as an early completion would: a
        # late duplicate finds it (DUPLICATE) instead of recording a completion a later waiter
        # with the same id could take; such a waiter parks over it.
        "Mark resumed": {
            "Type": "Task",
            "Resource": DDB_PUT,
            "Arguments": {
                "TableName": table_name,
                "Item": {
                    "id": {"S": "{% $states.input.job.id %}"},
                    "kind": {"S": KIND_RESUMED},
                    "result": {"S": "{% $exists($states.input.waiterGone) ? 'WAITER_GONE' : 'RESUMED' %}"},
                    "status": {"S": "{% $states.input.job.outcome %}"},
                    "createdAt": {"S": "{% $states.context.State.EnteredTime %}"},
                    "eventTime": {"S": "{% $states.input.job.eventTime %}"},
                    "ttl": {"N": f"{{% {epoch_after(completion_ttl_seconds)} %}}"},
                },
                "ConditionExpression": "#kind = :token AND #created = :created",
                "ExpressionAttributeNames": {"#kind": "kind", "#created": "createdAt"},
                "ExpressionAttributeValues": {
                    ":token": {"S": "token"},
                    ":created": {"S": "{% $states.input.record.createdAt.S %}"},
                },
            },
            "Output": "{% $states.input %}",
            "Retry": retry_dynamodb,
            "Catch": [
                {"ErrorEquals": [CONDITIONAL_CHECK_FAILED], "Next": "Resumed", "Output": "{% $states.input %}"},
                *catch_all,
            ],
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
                "Item": completion_item(),
                "ConditionExpression": "attribute_not_exists(id)",
            },
            "Output": "{% $states.input %}",
            "Retry": retry_dynamodb,
            # A waiter parked (or a duplicate recorded) between our read and our write: read again.
            "Catch": [reread],
            "Next": "Completion recorded",
        },
        "Replace resumed marker": {
            "Type": "Task",
            "Resource": DDB_PUT,
            "Arguments": {
                "TableName": table_name,
                "Item": completion_item(),
                "ConditionExpression": "#kind = :resumed AND #created = :created",
                "ExpressionAttributeNames": {"#kind": "kind", "#created": "createdAt"},
                "ExpressionAttributeValues": {
                    ":resumed": {"S": KIND_RESUMED},
                    ":created": {"S": "{% $states.input.record.createdAt.S %}"},
                },
            },
            "Output": "{% $states.input %}",
            "Retry": retry_dynamodb,
            "Catch": [reread],
            "Next": "Completion recorded",
        },
        "Completion recorded": done("RECORDED"),
        # Anything else that went wrong once the token was known: fail the waiter rather than
        # leave it parked until its timeout, then fail the run (reported to the dead-letter queue).
        "Resume failed": {
            "Type": "Choice",
            "Choices": [
                {
                    "Condition": f"{{% {token} and $states.input.record.backend.S = 'stepfunctions' %}}",
                    "Next": "Fail waiter",
                }
            ],
            "Default": "Fail the run",
        },
        "Fail waiter": {
            "Type": "Task",
            "Resource": SFN_FAILURE,
            "Arguments": {
                "TaskToken": "{% $states.input.record.taskToken.S %}",
                "Error": RESUMER_FAILED,
                "Cause": "{% " + _resumer_failed_cause() + " %}",
            },
            "Output": "{% $merge([$states.input, {'waiterFailed': true}]) %}",
            "Catch": _catch_everything(Next="Fail the run", Output="{% $states.input %}"),
            "Next": "Fail the run",
        },
        "Fail the run": {
            "Type": "Fail",
            "Error": "{% $substring($string($states.input.failure.error), 0, 7) = 'States.' ? "
            f"'{RESUMER_FAILED}' : $string($states.input.failure.error) %}}",
            "Cause": "{% $substring($string($states.input.failure.cause) & ($states.input.waiterFailed ? "
            f"' (the waiter was failed with {RESUMER_FAILED})' : ''), 0, {MAX_CAUSE_LENGTH}) %}}",
        },
    }
    if durable:
        choices.extend(
            [
                {
                    "Condition": f"{{% {token} and $states.input.record.backend.S = "
                    "'durable' and $states.input.job.outcome = 'SUCCEEDED' %}",
                    "Next": "Send durable callback success",
                },
                {
                    "Condition": f"{{% {token} and $states.input.record.backend.S = "
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
            "Arguments": {"CallbackId": "{% $states.input.record.callbackId.S %}", "Result": output_json},
            "Output": keep_job,
            "Retry": durable_retry,
            "Catch": [durable_gone, *catch_all],
            "Next": "Mark resumed",
        }
        states["Send durable callback failure"] = {
            "Type": "Task",
            "Resource": DURABLE_FAILURE,
            "Arguments": {
                "CallbackId": "{% $states.input.record.callbackId.S %}",
                # The durable SDK surfaces only ErrorMessage and ErrorData: the data keeps the error's name.
                "Error": {
                    "ErrorType": "{% $states.input.job.error %}",
                    "ErrorMessage": cause,
                    "ErrorData": "{% $string({'error': $states.input.job.error, 'cause': " + cause[3:-3] + "}) %}",
                },
            },
            "Output": keep_job,
            "Retry": durable_retry,
            "Catch": [durable_gone, *catch_all],
            "Next": "Mark resumed",
        }
        states["Resume failed"]["Choices"].append(
            {
                "Condition": f"{{% {token} and $states.input.record.backend.S = 'durable' %}}",
                "Next": "Fail durable waiter",
            }
        )
        states["Fail durable waiter"] = {
            "Type": "Task",
            "Resource": DURABLE_FAILURE,
            "Arguments": {
                "CallbackId": "{% $states.input.record.callbackId.S %}",
                "Error": {
                    "ErrorType": RESUMER_FAILED,
                    "ErrorMessage": "{% " + _resumer_failed_cause() + " %}",
                    "ErrorData": "{% $string({'error': '"
                    + RESUMER_FAILED
                    + "', 'cause': "
                    + _resumer_failed_cause()
                    + "}) %}",
                },
            },
            "Output": "{% $merge([$states.input, {'waiterFailed': true}]) %}",
            "Catch": _catch_everything(Next="Fail the run", Output="{% $states.input %}"),
            "Next": "Fail the run",
        }
    # Every state above runs in one Parallel branch: whatever fails in it (a DynamoDB outage
    # after the retries, an unsupported record, an expression error) reaches the Catch, which
    # reports the job to the dead-letter queue and fails the run.
    report: dict[str, Any] = {
        "Type": "Task",
        "Resource": SQS_SEND,
        "Arguments": {
            "QueueUrl": dead_letter_queue_url,
            "MessageBody": "{% $string({'reason': 'The callback resumer failed: the waiter of this job may not have "
            "been resumed', 'error': $states.input.error, 'cause': $substring($string($states.input.cause), 0, 8192), "
            "'id': $states.input.job.id, 'namespace': $states.input.job.namespace, 'jobId': $states.input.job.jobId, "
            "'eventId': $states.input.eventId, "
            "'eventTime': $states.input.job.eventTime, 'resumerExecution': $states.context.Execution.Id}) %}",
            "MessageAttributes": {"kind": {"DataType": "String", "StringValue": DEAD_LETTER_KIND}},
        },
        "Output": "{% $states.input %}",
        "Catch": _catch_everything(Next="Resumer failed", Output="{% $states.input %}"),
        "Next": "Resumer failed",
    }
    outer: dict[str, Any] = {
        "Resume": {
            "Type": "Parallel",
            "Branches": [{"StartAt": "Normalize event", "States": states}],
            "Output": "{% $states.result[0] %}",
            "Catch": _catch_everything(
                Next="Report to the dead-letter queue" if dead_letter_queue_url else "Resumer failed",
                Output="{% {'error': $states.errorOutput.Error, 'cause': $states.errorOutput.Cause, "
                f"'job': {key_expression(sources)}, 'eventId': $string($states.input.event.id)}} %}}",
            ),
            "End": True,
        },
        # The error of what failed; a ``States.*`` error becomes ``CallbackPattern.ResumerFailed``
        # (a Fail state's error may not claim the ``States.`` prefix).
        "Resumer failed": {
            "Type": "Fail",
            "Error": "{% $substring($string($states.input.error), 0, 7) = 'States.' or "
            f"$string($states.input.error) = '' ? '{RESUMER_FAILED}' : $string($states.input.error) %}}",
            "Cause": f"{{% $substring($string($states.input.cause), 0, {MAX_CAUSE_LENGTH}) %}}",
        },
    }
    if dead_letter_queue_url:
        outer["Report to the dead-letter queue"] = report
    return {
        "Comment": "CallbackPattern resumer: one completion event -> exactly one resume, or a recorded completion",
        "QueryLanguage": "JSONata",
        "StartAt": "Resume",
        "States": outer,
    }


#: Errors ``States.ALL`` does not catch in AWS; a Catch must name them.
TERMINAL_ERRORS = ["States.DataLimitExceeded", "States.Runtime"]


def _catch_everything(**catcher: Any) -> list[dict[str, Any]]:
    """Catchers for every error: those ``States.ALL`` leaves out, then ``States.ALL`` (last, alone)."""
    return [{"ErrorEquals": list(TERMINAL_ERRORS), **catcher}, {"ErrorEquals": ["States.ALL"], **catcher}]


def _too_large_cause(size: str) -> str:
    return (
        f"'The output of the job is ' & $string({size}) & ' bytes of JSON (UTF-8); a resumed workflow takes at most "
        f"{MAX_OUTPUT_BYTES} bytes (Step Functions limits task outputs and state payloads to 256 KiB). "
        "Have the job write its result elsewhere (S3) and put a pointer in its event.'"
    )


def _resumer_failed_cause() -> str:
    return (
        f"$substring('The callback resumer could not resume this job (' & $states.input.job.id & '): ' & "
        f"$string($states.input.failure.error) & ': ' & $string($states.input.failure.cause), 0, {MAX_CAUSE_LENGTH})"
    )


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
