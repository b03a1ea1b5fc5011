"""The wait step of ``CallbackPattern``: park a task token in the token table, or take an early completion.

``CallbackPattern.wait_for_job`` checks its props with :func:`check_wait` and builds the states with
:func:`wait_states`: a Parallel state with one branch, whose task
(``arn:aws:states:::aws-sdk:dynamodb:putItem.waitForTaskToken``, JSONata) stores the token record and
pauses; when the record already exists because the job's completion came first, the branch claims
that completion and proceeds with its result (or fails with its error) at once. The record format
is in ``contract.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_stepfunctions as sfn

from cdk_serverless_patterns.callback import asl, contract
from cdk_serverless_patterns.callback.sources import is_path, jsonata_path
from cdk_serverless_patterns.core import PropError, PropErrors, human_duration
from cdk_serverless_patterns.core.props import milliseconds
from constructs import Construct

#: Standard workflows run at most a year; a wait longer than that can never be resumed.
MAX_TIMEOUT = cdk.Duration.days(365)
#: How long a token record outlives its wait step's timeout before DynamoDB TTL removes it.
TOKEN_RECORD_GRACE = cdk.Duration.days(1)
_RESULT_PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_STATE_ID = re.compile(r"^[A-Za-z0-9 _.()-]{1,60}$")


def check_wait(
    errors: PropErrors,
    *,
    id: str,
    job_id_path: str,
    timeout: cdk.Duration,
    heartbeat: cdk.Duration | None,
    result_path: str | None,
    callback_secret_path: str | None,
    callback_urls_enabled: bool,
) -> None:
    """Records every problem of a wait step's props (the source is checked by the pattern, which knows its sources)."""
    errors.require(
        isinstance(id, str) and bool(_STATE_ID.match(id)),
        "id",
        f"{id!r} must be 1-60 characters of letters, digits, space and _ . ( ) -",
    )
    errors.require(is_path(job_id_path), "job_id_path", f"{job_id_path!r} is not a path into the state like '$.JobId'")
    # Step Functions takes TimeoutSeconds and HeartbeatSeconds in whole seconds.
    if errors.require(timeout is not None, "timeout", "is required: a wait must never last forever"):
        errors.duration_between(
            timeout, "timeout", minimum=cdk.Duration.seconds(1), maximum=MAX_TIMEOUT, concrete=True, whole_seconds=True
        )
    if heartbeat is not None:
        heartbeat_ok = errors.duration_between(
            heartbeat, "heartbeat", minimum=cdk.Duration.seconds(1), concrete=True, whole_seconds=True
        )
        timeout_ms = milliseconds(timeout) if isinstance(timeout, cdk.Duration) else None
        if heartbeat_ok and timeout_ms is not None:
            errors.require(
                (milliseconds(heartbeat) or 0) < timeout_ms,
                "heartbeat",
                f"must be shorter than timeout ({human_duration(timeout)}), got {human_duration(heartbeat)}",
            )
    errors.require(
        result_path is None or bool(_RESULT_PATH.match(result_path)),
        "result_path",
        f"{result_path!r} must be '$', '$.name' or '$.a.b' (plain names), or None",
    )
    errors.require(
        callback_secret_path is None or is_path(callback_secret_path),
        "callback_secret_path",
        f"{callback_secret_path!r} is not a path into the state like '$.secret'",
    )
    if callback_secret_path is not None and not callback_urls_enabled:
        errors.add("callback_secret_path", "needs callback URLs: call enable_callback_urls first")


def wait_states(
    scope: Construct,
    id: str,
    *,
    table_name: str,
    namespace: str,
    job_id_path: str,
    timeout: cdk.Duration,
    heartbeat: cdk.Duration | None,
    result_path: str | None,
    callback_secret_path: str | None,
    stale_tolerance_seconds: int | None = None,
    claim_bound: bool = False,
) -> WaitStep:
    """The wait step's states. ``stale_tolerance_seconds``: for a source that reuses job ids, an
    early completion dated more than this many seconds before the execution's start (at one-second
    precision) belongs to an earlier run and is dropped; ``None`` (unique ids): never dropped.
    ``claim_bound`` (the callback-URL source): the wait never parks over a ``resumed`` marker (a
    replayed signed callback of the earlier run would resume it); it fails with
    :data:`asl.JOB_ID_REUSED` instead (it still takes an early completion the handler recorded).

    A job id that is not a non-empty string or an integer number below 10^15 fails the wait with
    :data:`asl.INVALID_JOB_ID` before anything is stored (the resumer ignores such ids, and
    ``$string`` would turn a larger number into another job's id)."""
    timeout_seconds = int(timeout.to_seconds())
    expires_after = timeout_seconds + int(TOKEN_RECORD_GRACE.to_seconds())
    job_id = jsonata_path(job_id_path, "$states.input")
    # "check job id" lets only a non-empty string or an integer below 10^15 through, for which
    # $string is exact (it keeps 15 significant digits).
    record_key = f"'{namespace}#' & $string({job_id})"
    # A Catch of a CustomState cannot carry a JSONata Output (CDK renders it for JSONPath), so
    # the wait keeps its input in a variable for the early-completion path.
    saved = "$" + _variable_name(id)
    claim_key = f"'{namespace}#' & $string({jsonata_path(job_id_path, saved)})"
    item: dict[str, Any] = {
        contract.TABLE_KEY: {"S": f"{{% {record_key} %}}"},
        contract.KIND_ATTRIBUTE: {"S": contract.KIND_TOKEN},
        "backend": {"S": contract.BACKEND_STEP_FUNCTIONS},
        "taskToken": {"S": "{% $states.context.Task.Token %}"},
        "executionArn": {"S": "{% $states.context.Execution.Id %}"},
        "createdAt": {"S": "{% $states.context.State.EnteredTime %}"},
        "executionStartedAt": {"S": "{% $states.context.Execution.StartTime %}"},
        contract.TTL_ATTRIBUTE: {"N": f"{{% {asl.epoch_after(expires_after)} %}}"},
    }
    if callback_secret_path:
        secret = jsonata_path(callback_secret_path, "$states.input")
        item[contract.SECRET_HASH_ATTRIBUTE] = {"S": f"{{% $lowercase($hash({secret}, 'SHA-256')) %}}"}
    put: dict[str, Any] = {"TableName": table_name, "Item": item}
    if claim_bound:
        # A signed callback of an earlier run of this job id must not resume this one: never park
        # over its "resumed" marker.
        put["ConditionExpression"] = "attribute_not_exists(id)"
    else:
        # A "resumed" marker (an earlier run of this job id was resumed) does not block a new waiter.
        put["ConditionExpression"] = "attribute_not_exists(id) OR #kind = :resumed"
        put["ExpressionAttributeNames"] = {"#kind": contract.KIND_ATTRIBUTE}
        put["ExpressionAttributeValues"] = {":resumed": {"S": asl.KIND_RESUMED}}
    store_json: dict[str, Any] = {
        "Type": "Task",
        "QueryLanguage": "JSONata",
        "Resource": asl.WAIT_RESOURCE,
        "Arguments": put,
        "TimeoutSeconds": timeout_seconds,
        "Output": f"{{% {asl.result_output(result_path, '$states.result')} %}}",
    }
    if heartbeat is not None:
        store_json["HeartbeatSeconds"] = int(heartbeat.to_seconds())
    store = sfn.CustomState(scope, f"{id} store token", state_json=store_json)
    claim = sfn.CustomState(
        scope,
        f"{id} claim early completion",
        state_json={
            "Type": "Task",
            "QueryLanguage": "JSONata",
            # The completion becomes a "resumed" marker (until its TTL): a late duplicate of the
            # event then ends DUPLICATE instead of recording a completion nobody will take.
            "Resource": asl.DDB_UPDATE,
            "Arguments": {
                "TableName": table_name,
                "Key": {contract.TABLE_KEY: {"S": f"{{% {claim_key} %}}"}},
                "UpdateExpression": "SET #kind = :resumed, #result = :taken REMOVE #output, #cause",
                "ConditionExpression": "#kind = :completion",
                "ExpressionAttributeNames": {
                    "#kind": contract.KIND_ATTRIBUTE,
                    "#result": "result",
                    "#output": "output",
                    "#cause": "cause",
                },
                "ExpressionAttributeValues": {
                    ":completion": {"S": contract.KIND_COMPLETION},
                    ":resumed": {"S": asl.KIND_RESUMED},
                    ":taken": {"S": "TAKEN"},
                },
                "ReturnValues": "ALL_OLD",
            },
            "Output": f"{{% {{'input': {saved}, 'record': $states.result.Attributes}} %}}",
        },
    )
    already = sfn.Fail(
        scope,
        f"{id} already awaited",
        error=contract.ALREADY_AWAITED,
        cause=f"Another wait step is already parked for this {namespace} job id",
    )
    early_result = sfn.Pass(
        scope,
        f"{id} early result",
        query_language=sfn.QueryLanguage.JSONATA,
        outputs="{% "
        + asl.result_output(result_path, "$parse($states.input.record.output.S)", base="$states.input.input")
        + " %}",
    )
    early_failure = sfn.Fail(
        scope,
        f"{id} early failure",
        query_language=sfn.QueryLanguage.JSONATA,
        error="{% $states.input.record.error.S %}",
        cause="{% $states.input.record.cause.S %}",
    )
    # For a source that reuses job ids: a completion dated before this execution started (at the
    # event's one-second precision, beyond the tolerance) belongs to an earlier run of the job id
    # (a late duplicate event): drop it and park the token as if it were not there.
    stale = sfn.Pass(
        scope,
        f"{id} drop stale completion",
        query_language=sfn.QueryLanguage.JSONATA,
        outputs="{% $states.input.input %}",
    )
    succeeded = sfn.Choice(scope, f"{id} early completion succeeded?", query_language=sfn.QueryLanguage.JSONATA)
    if stale_tolerance_seconds is not None:
        event_time = "$states.input.record.eventTime.S"
        succeeded.when(
            sfn.Condition.jsonata(
                f"{{% $exists({event_time}) and $contains({event_time}, {asl.ISO_SECONDS}) and "
                f"$floor($toMillis({event_time}) / 1000) < "
                f"$floor($toMillis($states.context.Execution.StartTime) / 1000) - {int(stale_tolerance_seconds)} %}}"
            ),
            stale.next(store),
        )
    succeeded.when(sfn.Condition.jsonata("{% $states.input.record.status.S = 'SUCCEEDED' %}"), early_result).otherwise(
        early_failure
    )
    store.add_catch(claim, errors=[asl.CONDITIONAL_CHECK_FAILED], assign={saved[1:]: "{% $states.input %}"})
    claim.next(succeeded)
    if claim_bound:
        # No completion to take: the record is this job id's "resumed" marker (or another
        # waiter's token). Tell which with a write that changes nothing (the wait step may not
        # read the table: token records hold other waiters' task tokens).
        marker = sfn.CustomState(
            scope,
            f"{id} find resumed marker",
            state_json={
                "Type": "Task",
                "QueryLanguage": "JSONata",
                "Resource": asl.DDB_UPDATE,
                "Arguments": {
                    "TableName": table_name,
                    "Key": {contract.TABLE_KEY: {"S": f"{{% {claim_key} %}}"}},
                    "UpdateExpression": "SET #kind = :resumed",
                    "ConditionExpression": "#kind = :resumed",
                    "ExpressionAttributeNames": {"#kind": contract.KIND_ATTRIBUTE},
                    "ExpressionAttributeValues": {":resumed": {"S": asl.KIND_RESUMED}},
                },
            },
        )
        reused = sfn.Fail(
            scope,
            f"{id} job id reused",
            error=asl.JOB_ID_REUSED,
            cause=f"callback-URL job ids must be unique for completion_ttl: this {namespace} job id was already "
            "resumed within it, and a replayed signed callback of that run could resume this wait; give every run "
            "a new job id",
        )
        claim.add_catch(marker, errors=[asl.CONDITIONAL_CHECK_FAILED])
        marker.add_catch(already, errors=[asl.CONDITIONAL_CHECK_FAILED])
        marker.next(reused)
    else:
        claim.add_catch(already, errors=[asl.CONDITIONAL_CHECK_FAILED])
    # A job id the resumer would ignore, or that $string would turn into another job's id, fails
    # here instead of parking under a wrong key.
    invalid = sfn.Fail(
        scope,
        f"{id} invalid job id",
        query_language=sfn.QueryLanguage.JSONATA,
        error=asl.INVALID_JOB_ID,
        cause=f"{{% {asl.job_id_problem(job_id, job_id_path)} %}}",
    )
    check = sfn.Choice(scope, f"{id} check job id", query_language=sfn.QueryLanguage.JSONATA)
    check.when(sfn.Condition.jsonata(f"{{% {asl.job_id_text(job_id)} = '' %}}"), invalid).otherwise(store)
    wait = WaitStep(
        scope,
        id,
        comment=f"Waits for the completion event of a {namespace} job (CallbackPattern)",
        output_path="$[0]",
    )
    wait.branch(check)
    return wait


class WaitStep(sfn.Parallel):
    """The state :meth:`CallbackPattern.wait_for_job` returns: a Parallel state that refuses a Retry.

    A retried wait would park a second token for the same job id: it fails with
    ``CallbackPattern.JobAlreadyAwaited`` while its own record is there, or, after its job was
    resumed, waits for an event that already came until its timeout. Retry the state that starts
    the job and the wait together instead (both in a Parallel state, or a child workflow).
    """

    def add_retry(
        self,
        *,
        backoff_rate: float | None = None,
        errors: Sequence[str] | None = None,
        interval: cdk.Duration | None = None,
        jitter_strategy: sfn.JitterType | None = None,
        max_attempts: float | None = None,
        max_delay: cdk.Duration | None = None,
    ) -> sfn.Parallel:
        raise PropError(
            f"CallbackPattern wait step {self.node.id!r}.add_retry",
            [
                f"errors: {list(errors) if errors else ['States.ALL']} cannot be retried on a wait step: a retry "
                "parks a second token for the same job (it fails with CallbackPattern.JobAlreadyAwaited, or waits "
                "for an event that already came); retry the state that starts the job together with the wait "
                "(wrap both in a Parallel state or a child workflow) or catch the error instead"
            ],
        )


def _variable_name(state_id: str) -> str:
    """A workflow variable name for one wait step (letters, digits and underscores)."""
    return "callbackWait_" + re.sub(r"[^A-Za-z0-9_]", "_", state_id)
