"""Wait for an asynchronous job inside a Lambda durable function, through CallbackPattern's table.

Put this module beside your durable function (or bundle this folder: its ``requirements.txt``
names the Durable Execution SDK) and call::

    from durable_callback import wait_for_job

    @durable_execution
    def handler(event, context):
        job_id = context.step(start_translation_job, name="start job")
        detail = wait_for_job(context, table_name=os.environ["CALLBACK_TABLE"], namespace="translate",
                              job_id=job_id, timeout=timedelta(hours=2))

The function parks on the SDK's ``wait_for_callback``: its submitter stores a token record
``{id: "<namespace>#<jobId>", kind: "token", backend: "durable", callbackId, durableExecutionArn,
createdAt, ttl}`` with ``attribute_not_exists(id)``. When the job's completion event arrives,
CallbackPattern's resumer finds the record and calls ``SendDurableExecutionCallbackSuccess`` (the
event's detail as JSON) or ``SendDurableExecutionCallbackFailure``, and deletes the record.

The early-completion race: a fast job can finish before the waiter stores its token. The resumer
then records a completion (``kind: "completion"``). This helper looks for one first and, if it is
there, returns its result (or raises its failure) without waiting at all. If the completion lands
between that look and the token write, the conditional write fails; the submitter then completes
its own callback with the recorded result through the same Lambda APIs, so nothing waits forever.

Results: the parsed JSON the job completed with (for an EventBridge job source, the event's
detail). Failures raise :class:`JobFailedError` (``error``, ``cause``); a wait that exceeds
``timeout`` removes its token record and raises :class:`JobTimedOutError`.

IAM for the durable function: ``dynamodb:GetItem``, ``PutItem`` and ``DeleteItem`` on the table, and,
for the narrow race, ``lambda:SendDurableExecutionCallbackSuccess`` and
``lambda:SendDurableExecutionCallbackFailure`` on the function itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from aws_durable_execution_sdk_python import (
    CallbackExternalError,
    CallbackTimeoutError,
    DurableContext,
)
from aws_durable_execution_sdk_python.config import Duration, WaitForCallbackConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets
from aws_durable_execution_sdk_python.types import WaitForCallbackContext
from botocore.config import Config
from botocore.exceptions import ClientError

__all__ = ["JobAlreadyWaitedError", "JobFailedError", "JobTimedOutError", "wait_for_job"]

BACKEND = "durable"
#: A durable execution runs for at most one year; a wait cannot outlive it.
MAX_TIMEOUT = timedelta(days=366)
#: Token records outlive the wait by this much, then DynamoDB's TTL removes what nobody cleaned up.
DEFAULT_RECORD_GRACE = timedelta(days=1)
DEFAULT_FAILURE_ERROR = "JobFailed"
#: Every call is bounded: a hung DynamoDB or Lambda endpoint costs at most about 5 x (2 s + 5 s) plus backoff,
#: not botocore's default 60 s read timeout per attempt.
BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 5}, connect_timeout=2, read_timeout=5)


class JobFailedError(Exception):
    """The job reported failure: ``error`` (a short name) and ``cause`` (the details)."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


class JobTimedOutError(Exception):
    """No completion arrived within the wait's timeout (or heartbeat timeout)."""


class JobAlreadyWaitedError(Exception):
    """Another waiter (a different execution or workflow) already holds this job's token record."""


def wait_for_job(
    context: DurableContext,
    *,
    table_name: str,
    namespace: str,
    job_id: str,
    timeout: timedelta | int,
    heartbeat_timeout: timedelta | int | None = None,
    callback_secret: str | None = None,
    name: str | None = None,
    record_grace: timedelta = DEFAULT_RECORD_GRACE,
    dynamodb: Any = None,
    lambda_client: Any = None,
) -> Any:
    """Parks the durable execution until job ``job_id`` of ``namespace`` completes; returns its result.

    Args:
        context: The durable function's ``DurableContext``.
        table_name: CallbackPattern's token table.
        namespace: The job source's namespace (keeps equal job ids of two services apart).
        job_id: The id the job's completion event carries.
        timeout: Longest wait (a ``timedelta`` or seconds); required, between 1 second and 366 days.
        heartbeat_timeout: Optional; fails the wait if no heartbeat arrives within it.
        callback_secret: For callback URLs: the per-job secret handed to the third party; only its
            SHA-256 is stored (``callbackSecretHash``).
        name: Operation name in the execution history. Default: ``"wait for <namespace> job"``.
        record_grace: How long the token record outlives the timeout before TTL removes it.
        dynamodb, lambda_client: boto3 clients to use. Default: created once per execution environment.
    """
    wait = _seconds(timeout, "timeout")
    heartbeat = _seconds(heartbeat_timeout, "heartbeat_timeout") if heartbeat_timeout is not None else 0
    if heartbeat and heartbeat >= wait:
        raise ValueError(f"heartbeat_timeout ({heartbeat} s) must be shorter than timeout ({wait} s)")
    if not namespace or "#" in namespace:
        raise ValueError(f"namespace {namespace!r} must be non-empty and must not contain '#'")
    if not isinstance(job_id, str) or not job_id:
        # The resumer takes a number id only as an integer below 10**15 (JSONata keeps 15 digits);
        # a string is what every event can carry exactly.
        raise ValueError(f"job_id must be a non-empty string, got {job_id!r}: pass str(job_id) for numbers")
    label = name or f"wait for {namespace} job"
    key = f"{namespace}#{job_id}"
    execution_arn = _execution_arn(context)
    tables = dynamodb or _client("dynamodb")

    # 1. The race: did the job finish before we got here? (A step: checkpointed, so replays agree.)
    completion = context.step(lambda _: _find_completion(tables, table_name, key), name=f"{label}: look for completion")
    if completion is not None:
        context.step(lambda _: _delete_completion(tables, table_name, key), name=f"{label}: consume completion")
        return _outcome(completion)

    # 2. Park: store the callback id against the job, then wait for the resumer.
    def submit(callback_id: str, _: WaitForCallbackContext) -> None:
        _store_token(
            tables,
            lambda_client,
            table_name=table_name,
            key=key,
            callback_id=callback_id,
            execution_arn=execution_arn,
            ttl_seconds=wait + int(record_grace.total_seconds()),
            callback_secret=callback_secret,
        )

    config = WaitForCallbackConfig(
        timeout=Duration.from_seconds(wait),
        heartbeat_timeout=Duration.from_seconds(heartbeat),
        retry_strategy=_submit_retry,
    )
    try:
        result = context.wait_for_callback(submit, name=label, config=config)
    except CallbackTimeoutError:
        context.step(lambda _: _delete_own_token(tables, table_name, key, execution_arn), name=f"{label}: remove token")
        raise JobTimedOutError(f"job {job_id!r} of {namespace!r} did not complete within {wait} seconds") from None
    except CallbackExternalError as failure:
        error, cause = _failure_fields(failure.data, failure.message)
        raise JobFailedError(error, cause) from None
    return _parse(result)


_DEFAULT_RETRY = RetryPresets.default()


def _submit_retry(error: Exception, attempts_made: int) -> RetryDecision:
    """The SDK's default step retries for transient errors; a job taken by another waiter is final."""
    if isinstance(error, JobAlreadyWaitedError):
        return RetryDecision.no_retry()
    return _DEFAULT_RETRY(error, attempts_made)


# --- what runs inside steps ------------------------------------------------------------------------


def _find_completion(dynamodb: Any, table_name: str, key: str) -> dict[str, Any] | None:
    item = dynamodb.get_item(TableName=table_name, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")
    if not item or item.get("kind", {}).get("S") != "completion":
        return None
    return {name: item[name]["S"] for name in ("status", "output", "error", "cause") if "S" in item.get(name, {})}


def _delete_completion(dynamodb: Any, table_name: str, key: str) -> None:
    try:
        dynamodb.delete_item(
            TableName=table_name,
            Key={"id": {"S": key}},
            ConditionExpression="#kind = :completion",
            ExpressionAttributeNames={"#kind": "kind"},
            ExpressionAttributeValues={":completion": {"S": "completion"}},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise  # retried by the step; a missing record means a retry already removed it


def _store_token(
    dynamodb: Any,
    lambda_client: Any,
    *,
    table_name: str,
    key: str,
    callback_id: str,
    execution_arn: str,
    ttl_seconds: int,
    callback_secret: str | None,
) -> None:
    now = datetime.now(UTC)
    item: dict[str, Any] = {
        "id": {"S": key},
        "kind": {"S": "token"},
        "backend": {"S": BACKEND},
        "callbackId": {"S": callback_id},
        "createdAt": {"S": now.isoformat(timespec="milliseconds").replace("+00:00", "Z")},
        "ttl": {"N": str(int(now.timestamp()) + ttl_seconds)},
    }
    if execution_arn:
        item["durableExecutionArn"] = {"S": execution_arn}
    if callback_secret is not None:
        item["callbackSecretHash"] = {"S": hashlib.sha256(callback_secret.encode("utf-8")).hexdigest()}
    try:
        dynamodb.put_item(
            TableName=table_name,
            Item=item,
            ConditionExpression="attribute_not_exists(id)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        response: Mapping[str, Any] = error.response
        existing: Mapping[str, Any] = response.get("Item") or {}
    kind = existing.get("kind", {}).get("S")
    if kind == "token" and existing.get("callbackId", {}).get("S") == callback_id:
        return  # this submitter already stored it (a step runs at least once)
    if kind == "completion":
        # The job completed between our look and this write: complete our own callback with its result.
        completion = {n: existing[n]["S"] for n in ("status", "output", "error", "cause") if "S" in existing.get(n, {})}
        callbacks = lambda_client or _client("lambda")
        if completion.get("status") == "SUCCEEDED":
            callbacks.send_durable_execution_callback_success(
                CallbackId=callback_id, Result=completion.get("output", "null").encode("utf-8")
            )
        else:
            error_name = completion.get("error") or DEFAULT_FAILURE_ERROR
            cause = completion.get("cause") or "the job failed"
            callbacks.send_durable_execution_callback_failure(
                CallbackId=callback_id,
                Error={
                    "ErrorType": error_name,
                    "ErrorMessage": cause,
                    "ErrorData": json.dumps({"error": error_name, "cause": cause}),
                },
            )
        _delete_completion(dynamodb, table_name, key)
        return
    raise JobAlreadyWaitedError(f"job {key!r} already has a waiter; one job can resume one waiter")


def _delete_own_token(dynamodb: Any, table_name: str, key: str, execution_arn: str) -> None:
    try:
        dynamodb.delete_item(
            TableName=table_name,
            Key={"id": {"S": key}},
            ConditionExpression="#kind = :token AND durableExecutionArn = :arn",
            ExpressionAttributeNames={"#kind": "kind"},
            ExpressionAttributeValues={":token": {"S": "token"}, ":arn": {"S": execution_arn}},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise


# --- helpers --------------------------------------------------------------------------------------------


def _outcome(completion: Mapping[str, str]) -> Any:
    if completion.get("status") == "SUCCEEDED":
        return _parse(completion.get("output"))
    raise JobFailedError(completion.get("error") or DEFAULT_FAILURE_ERROR, completion.get("cause") or "the job failed")


def _failure_fields(data: str | None, message: str | None) -> tuple[str, str]:
    """The job's error and cause from a callback failure.

    The SDK keeps only the message and data of the failure; the resumer (and this module) send
    ``ErrorData`` = ``{"error": ..., "cause": ...}`` so that the error's name survives.
    """
    if data:
        try:
            fields = json.loads(data)
        except ValueError:
            fields = None
        if isinstance(fields, dict) and fields.get("error"):
            return str(fields["error"]), str(fields.get("cause") or message or "the job failed")
    return DEFAULT_FAILURE_ERROR, message or "the job failed"


def _parse(result: Any) -> Any:
    if isinstance(result, bytes | bytearray):
        result = result.decode("utf-8")
    if isinstance(result, str):
        try:
            return json.loads(result)
        except ValueError:
            return result
    return result


def _seconds(value: timedelta | int, prop: str) -> int:
    seconds = int(value.total_seconds()) if isinstance(value, timedelta) else value
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise TypeError(f"{prop} must be a timedelta or whole seconds, got {value!r}")
    if not 1 <= seconds <= int(MAX_TIMEOUT.total_seconds()):
        raise ValueError(f"{prop} must be between 1 second and {MAX_TIMEOUT.days} days, got {seconds} seconds")
    return seconds


def _execution_arn(context: DurableContext) -> str:
    execution_context = getattr(context, "execution_context", None)
    arn = getattr(execution_context, "durable_execution_arn", None) or getattr(
        getattr(context, "state", None), "durable_execution_arn", ""
    )
    return str(arn or "")


_clients: dict[str, Any] = {}


def _client(service: str) -> Any:
    """One client per service and execution environment, retrying transient errors."""
    if service not in _clients:
        _clients[service] = boto3.client(service, config=BOTO_CONFIG)  # type: ignore[call-overload]
    return _clients[service]
