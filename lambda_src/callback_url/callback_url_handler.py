"""HTTPS callbacks for jobs whose third-party service calls back over HTTP instead of emitting an event.

``POST /callbacks/{namespace}/{jobId}`` (API Gateway REST, Lambda proxy integration). The handler:

1. checks the path (the namespace must be one the construct configured) and the body size;
2. authenticates the caller, either with the per-job secret (header ``X-Callback-Secret``, whose
   SHA-256 is compared in constant time with ``callbackSecretHash`` in the job's token record) or
   with an HMAC signature (header ``X-Signature: sha256=<hex>`` over ``"<X-Timestamp>.<raw body>"``,
   the timestamp within the replay window, the key read from Secrets Manager at run time);
3. validates the body: ``{"status": "SUCCEEDED"|"FAILED", "output": <any JSON>, "error": str,
   "cause": str}`` (in HMAC mode also ``"jobId"``, which binds the signature to this job);
4. claims the token record with a conditional update (``attribute_not_exists(callbackReceivedAt)``),
   so that a replayed callback is rejected with 409 and changes nothing;
5. puts exactly one completion event on the pattern's bus (Source
   ``cdk-serverless-patterns.callback-url``, DetailType ``Job Callback``); the pattern's resumer
   resumes the waiting workflow from it, the same path as every other job source.

If the event cannot be put, the claim is undone (conditionally on this request's claim id), so
that the caller's retry is accepted instead of being taken for a replay; the caller gets 503.

Responses: 202 accepted, 400 bad input (bad JSON, bad status, body too large, namespace not
configured...; the message names the field), 401 missing or stale credentials, 403 wrong secret or
signature, 404 unknown job, 409 already received, 503 the completion could not be published
(nothing was recorded: retry).

Configuration (environment variables set by the ``CallbackUrls`` construct; no secret among them):
``TABLE_NAME``, ``EVENT_BUS_NAME``, ``NAMESPACES`` (comma-separated), ``AUTH_MODE`` (``secret`` or
``hmac``), ``HMAC_SECRET_ARN`` (hmac mode), ``REPLAY_WINDOW_SECONDS``, ``MAX_BODY_BYTES``,
``HMAC_KEY_CACHE_SECONDS``, ``ACCEPT_EARLY_CALLBACKS``.

Early callbacks (HMAC mode, opt-in with ``ACCEPT_EARLY_CALLBACKS=true``): a third party may call
back before the workflow stored its token (the early-completion race). The signature proves the
caller without a record, so such a callback is published anyway (202, ``"early": true``); the
pattern's resumer records the completion and the wait step proceeds with it. A replay inside the
window publishes the same signed body again, which the resumer treats as a duplicate event.
Without the option, and always in secret mode (the secret's hash lives in the token record), a
callback for a job with no record is answered 404 and changes nothing: the caller retries.

Standard library and boto3 only (both are in the Lambda runtime).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

EVENT_SOURCE = "cdk-serverless-patterns.callback-url"
EVENT_DETAIL_TYPE = "Job Callback"
#: The token record (the callback contract): key, kinds, and the per-job secret's hash.
TABLE_KEY = "id"
KIND_TOKEN = "token"
KIND_COMPLETION = "completion"
SECRET_HASH_ATTRIBUTE = "callbackSecretHash"
SUCCESS, FAILURE = "SUCCEEDED", "FAILED"
STATUSES = (SUCCESS, FAILURE)
AUTH_MODES = ("secret", "hmac")
SECRET_HEADER = "x-callback-secret"
SIGNATURE_HEADER = "x-signature"
TIMESTAMP_HEADER = "x-timestamp"
SIGNATURE_PREFIX = "sha256="
BODY_FIELDS = ("status", "output", "error", "cause", "jobId", "namespace")
MAX_ERROR_CHARS = 256  # SendTaskFailure / SendDurableExecutionCallbackFailure limits
MAX_CAUSE_CHARS = 32768
MAX_JOB_ID_CHARS = 512
NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JOB_ID_PATTERN = re.compile(r"^[\x21-\x7e]{1,512}$")  # printable ASCII, no spaces
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Transient AWS errors (throttling, 5xx, timeouts) are retried with backoff by botocore. Short timeouts
# keep a whole request (at most five calls) well inside the function's 20 s and API Gateway's 29 s.
BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=1, read_timeout=3)

logger = logging.getLogger("callback_url")
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))


@dataclass(frozen=True)
class Settings:
    """What the construct configured, read once per execution environment."""

    table_name: str
    event_bus_name: str
    namespaces: frozenset[str]
    auth_mode: str
    hmac_secret_arn: str | None = None
    replay_window_seconds: int = 300
    max_body_bytes: int = 131072
    hmac_key_cache_seconds: int = 300
    accept_early_callbacks: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        missing = [name for name in ("TABLE_NAME", "EVENT_BUS_NAME", "NAMESPACES", "AUTH_MODE") if not env.get(name)]
        auth_mode = env.get("AUTH_MODE", "")
        if auth_mode == "hmac" and not env.get("HMAC_SECRET_ARN"):
            missing.append("HMAC_SECRET_ARN")
        if missing:
            raise RuntimeError(f"callback-url handler is misconfigured: missing environment {', '.join(missing)}")
        if auth_mode not in AUTH_MODES:
            raise RuntimeError(f"callback-url handler is misconfigured: AUTH_MODE {auth_mode!r} not in {AUTH_MODES}")
        return cls(
            table_name=env["TABLE_NAME"],
            event_bus_name=env["EVENT_BUS_NAME"],
            namespaces=frozenset(ns.strip() for ns in env["NAMESPACES"].split(",") if ns.strip()),
            auth_mode=auth_mode,
            hmac_secret_arn=env.get("HMAC_SECRET_ARN") or None,
            replay_window_seconds=int(env.get("REPLAY_WINDOW_SECONDS", "300")),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", "131072")),
            hmac_key_cache_seconds=int(env.get("HMAC_KEY_CACHE_SECONDS", "300")),
            accept_early_callbacks=auth_mode == "hmac" and env.get("ACCEPT_EARLY_CALLBACKS", "") == "true",
        )


class Rejected(Exception):
    """A request answered with an HTTP error; ``message`` is safe to show the caller (no secret)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Callback:
    """A validated callback body."""

    status: str
    output: Any
    error: str | None
    cause: str | None


@dataclass
class CallbackUrlHandler:
    """The handler with its clients, one per execution environment; tests build it directly."""

    settings: Settings
    dynamodb: Any
    events: Any
    secrets: Any
    clock: Callable[[], float] = time.time
    _hmac_key: bytes | None = field(default=None, repr=False)
    _hmac_key_expires: float = 0.0

    @classmethod
    def from_environment(cls) -> CallbackUrlHandler:
        settings = Settings.from_environment()
        return cls(
            settings=settings,
            dynamodb=boto3.client("dynamodb", config=BOTO_CONFIG),
            events=boto3.client("events", config=BOTO_CONFIG),
            secrets=boto3.client("secretsmanager", config=BOTO_CONFIG) if settings.auth_mode == "hmac" else None,
        )

    # --- the request -------------------------------------------------------------------------

    def handle(self, event: Mapping[str, Any], request_id: str | None = None) -> dict[str, Any]:
        """Answers one API Gateway proxy event; never raises for anything the caller did."""
        request_id = request_id or str(uuid.uuid4())
        log: dict[str, Any] = {"requestId": request_id}
        try:
            namespace, job_id = self._path(event)
            log.update(namespace=namespace, jobId=job_id)
            raw_body = self._raw_body(event)
            headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items() if v is not None}
            if self.settings.auth_mode == "hmac":
                self._verify_signature(headers, raw_body)
                found = self._find(namespace, job_id)
                if found is None and self.settings.accept_early_callbacks:
                    return self._early(namespace, job_id, raw_body, log)
                record = self._waiting(found, namespace, job_id)
            else:
                presented = headers.get(SECRET_HEADER)
                if not presented:
                    raise Rejected(401, "MissingCredentials", f"header {SECRET_HEADER!r} is required")
                record = self._waiting(self._find(namespace, job_id), namespace, job_id)
                self._verify_secret(presented, record)
            self._still_waiting(record)
            callback = self._callback(raw_body, namespace, job_id)
            self._claim(namespace, job_id, record, request_id)
            try:
                event_id = self._publish(namespace, job_id, callback)
            except Exception:
                self._release(namespace, job_id, request_id, log)
                raise
        except Rejected as rejected:
            logger.warning(
                "callback rejected",
                extra={**log, "statusCode": rejected.status_code, "reason": rejected.code, "detail": rejected.message},
            )
            return _response(rejected.status_code, {"error": rejected.code, "message": rejected.message})
        except (ClientError, BotoCoreError) as error:
            logger.error("callback failed on an AWS call", extra={**log, "awsError": _aws_error(error)})
            return _response(
                503,
                {
                    "error": "Unavailable",
                    "message": "the callback could not be recorded or published; retry later",
                },
            )
        logger.info("callback accepted", extra={**log, "status": callback.status, "eventId": event_id})
        return _response(202, {"accepted": True, "namespace": namespace, "jobId": job_id, "status": callback.status})

    # --- input ---------------------------------------------------------------------------------

    def _path(self, event: Mapping[str, Any]) -> tuple[str, str]:
        params = event.get("pathParameters") or {}
        namespace, job_id = params.get("namespace"), params.get("jobId")
        if not isinstance(namespace, str) or not namespace:
            raise Rejected(400, "BadRequest", "path parameter 'namespace' is required")
        if namespace not in self.settings.namespaces:
            raise Rejected(
                400,
                "BadRequest",
                f"path parameter 'namespace': {namespace[:64]!r} is not a namespace configured for callbacks",
            )
        if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
            raise Rejected(
                400, "BadRequest", "path parameter 'jobId' must be 1 to 512 printable ASCII characters without spaces"
            )
        return namespace, job_id

    def _raw_body(self, event: Mapping[str, Any]) -> bytes:
        body = event.get("body")
        if body is None:
            raise Rejected(400, "BadRequest", "body: a JSON object is required")
        if not isinstance(body, str):
            raise Rejected(400, "BadRequest", "body: must be text")
        if event.get("isBase64Encoded"):
            # a base64 text is 4/3 of its bytes: refuse a huge one before decoding it
            if len(body) > (self.settings.max_body_bytes * 4) // 3 + 4:
                raise self._too_large()
            try:
                raw = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise Rejected(400, "BadRequest", "body: isBase64Encoded is set but the body is not base64") from None
        else:
            raw = body.encode("utf-8")
        if len(raw) > self.settings.max_body_bytes:
            raise self._too_large()
        return raw

    def _too_large(self) -> Rejected:
        return Rejected(400, "PayloadTooLarge", f"body: larger than {self.settings.max_body_bytes} bytes")

    def _callback(self, raw_body: bytes, namespace: str, job_id: str) -> Callback:
        try:
            body = json.loads(raw_body, parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise Rejected(400, "BadRequest", f"body: not valid JSON ({error.__class__.__name__})") from None
        if not isinstance(body, dict):
            raise Rejected(400, "BadRequest", "body: must be a JSON object")
        unknown = sorted(set(body) - set(BODY_FIELDS))
        if unknown:
            raise Rejected(
                400,
                "BadRequest",
                f"body: unknown field(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; "
                f"accepted: {', '.join(BODY_FIELDS)}",
            )
        status = body.get("status")
        if status not in STATUSES:
            raise Rejected(400, "BadRequest", f"body.status: must be one of {', '.join(STATUSES)}")
        for name, limit in (("error", MAX_ERROR_CHARS), ("cause", MAX_CAUSE_CHARS)):
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise Rejected(400, "BadRequest", f"body.{name}: must be a string of at most {limit} characters")
        if self.settings.auth_mode == "hmac":
            # The signature covers the body, not the URL: the body must name the job it is for, or a
            # signed callback for one job could be replayed to another job's URL within the window.
            if body.get("jobId") != job_id:
                raise Rejected(403, "Forbidden", "body.jobId: a signed callback must name the job of its URL")
        elif "jobId" in body and body["jobId"] != job_id:
            raise Rejected(400, "BadRequest", "body.jobId: does not match the job of the URL")
        if "namespace" in body and body["namespace"] != namespace:
            raise Rejected(
                403 if self.settings.auth_mode == "hmac" else 400,
                "Forbidden" if self.settings.auth_mode == "hmac" else "BadRequest",
                "body.namespace: does not match the namespace of the URL",
            )
        failure_error, failure_cause = body.get("error"), body.get("cause")
        if status == FAILURE:
            failure_error = failure_error or "JobFailed"
            failure_cause = failure_cause or "the job reported failure through its callback URL"
        return Callback(status=status, output=body.get("output"), error=failure_error, cause=failure_cause)

    # --- authentication ------------------------------------------------------------------------

    def _verify_secret(self, presented: str, record: Mapping[str, Any]) -> None:
        expected = record.get(SECRET_HASH_ATTRIBUTE, {}).get("S")
        if not isinstance(expected, str) or not _HEX_SHA256.match(expected.lower()):
            # Never accept a job that was not given a secret: there is nothing to verify against.
            raise Rejected(403, "Forbidden", "this job does not accept callbacks authenticated with a secret")
        digest = hashlib.sha256(presented.encode("utf-8")).hexdigest()
        if not hmac.compare_digest(digest, expected.lower()):
            raise Rejected(403, "Forbidden", f"header {SECRET_HEADER!r} does not match this job's secret")

    def _verify_signature(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise Rejected(
                401, "MissingCredentials", f"headers {SIGNATURE_HEADER!r} and {TIMESTAMP_HEADER!r} are required"
            )
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise Rejected(401, "BadTimestamp", f"header {TIMESTAMP_HEADER!r} must be Unix epoch seconds")
        if abs(self.clock() - int(timestamp)) > self.settings.replay_window_seconds:
            raise Rejected(
                401,
                "StaleTimestamp",
                f"header {TIMESTAMP_HEADER!r} is outside the replay window of "
                f"{self.settings.replay_window_seconds} seconds",
            )
        if not signature.startswith(SIGNATURE_PREFIX):
            raise Rejected(401, "BadSignature", f"header {SIGNATURE_HEADER!r} must read 'sha256=<hex digest>'")
        presented = signature[len(SIGNATURE_PREFIX) :].strip().lower()
        message = timestamp.encode("ascii") + b"." + raw_body
        expected = hmac.new(self._key(), message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, presented):
            raise Rejected(403, "Forbidden", f"header {SIGNATURE_HEADER!r} does not match the signed request")

    def _key(self) -> bytes:
        """The HMAC key, from Secrets Manager, cached for ``hmac_key_cache_seconds`` (rotation is picked up)."""
        now = self.clock()
        if self._hmac_key is None or now >= self._hmac_key_expires:
            value = self.secrets.get_secret_value(SecretId=self.settings.hmac_secret_arn)
            key = value["SecretString"].encode("utf-8") if "SecretString" in value else bytes(value["SecretBinary"])
            if not key:
                raise RuntimeError("the HMAC secret is empty")
            self._hmac_key, self._hmac_key_expires = key, now + self.settings.hmac_key_cache_seconds
        return self._hmac_key

    # --- state -----------------------------------------------------------------------------------

    def _early(self, namespace: str, job_id: str, raw_body: bytes, log: Mapping[str, Any]) -> dict[str, Any]:
        """A verified callback for a job whose waiter has not stored its token yet: publish it anyway."""
        callback = self._callback(raw_body, namespace, job_id)
        event_id = self._publish(namespace, job_id, callback)
        logger.info("early callback accepted", extra={**log, "status": callback.status, "eventId": event_id})
        return _response(
            202, {"accepted": True, "early": True, "namespace": namespace, "jobId": job_id, "status": callback.status}
        )

    def _find(self, namespace: str, job_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.dynamodb.get_item(
            TableName=self.settings.table_name, Key={TABLE_KEY: {"S": f"{namespace}#{job_id}"}}, ConsistentRead=True
        ).get("Item")
        return item or None

    @staticmethod
    def _waiting(item: dict[str, Any] | None, namespace: str, job_id: str) -> dict[str, Any]:
        """The job's record, or 404 (nothing about the record is revealed yet)."""
        if not item or item.get("kind", {}).get("S") not in (KIND_TOKEN, KIND_COMPLETION):
            raise Rejected(404, "UnknownJob", f"no job {job_id!r} is waiting in namespace {namespace!r}")
        return item

    @staticmethod
    def _still_waiting(record: Mapping[str, Any]) -> None:
        """After authentication (an unauthenticated caller learns nothing about the job's state)."""
        if record.get("kind", {}).get("S") == KIND_COMPLETION:
            raise Rejected(409, "AlreadyCompleted", "this job has already completed")
        if "callbackReceivedAt" in record:
            raise Rejected(409, "AlreadyReceived", "a callback for this job was already received")

    def _claim(self, namespace: str, job_id: str, record: Mapping[str, Any], request_id: str) -> None:
        """Marks the record used, unless a concurrent or earlier callback did (or the record changed)."""
        condition = "attribute_exists(id) AND #kind = :token AND attribute_not_exists(callbackReceivedAt)"
        values: dict[str, Any] = {
            ":now": {"S": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")},
            ":rid": {"S": request_id},
            ":token": {"S": KIND_TOKEN},
        }
        if self.settings.auth_mode == "secret":
            # The secret was verified against this hash: the record must still be the one we read.
            condition += " AND callbackSecretHash = :hash"
            values[":hash"] = record[SECRET_HASH_ATTRIBUTE]
        try:
            self.dynamodb.update_item(
                TableName=self.settings.table_name,
                Key={TABLE_KEY: {"S": f"{namespace}#{job_id}"}},
                UpdateExpression="SET callbackReceivedAt = :now, callbackRequestId = :rid",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#kind": "kind"},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            if not error.response.get("Item"):
                raise Rejected(404, "UnknownJob", f"no job {job_id!r} is waiting in namespace {namespace!r}") from None
            raise Rejected(409, "AlreadyReceived", "a callback for this job was already received") from None

    def _release(self, namespace: str, job_id: str, request_id: str, log: Mapping[str, Any]) -> None:
        """Undoes this request's claim after a failed publish, so that the caller's retry is accepted."""
        try:
            self.dynamodb.update_item(
                TableName=self.settings.table_name,
                Key={TABLE_KEY: {"S": f"{namespace}#{job_id}"}},
                UpdateExpression="REMOVE callbackReceivedAt, callbackRequestId",
                ConditionExpression="callbackRequestId = :rid",
                ExpressionAttributeValues={":rid": {"S": request_id}},
            )
        except (ClientError, BotoCoreError) as error:
            # The record stays claimed: the workflow's own timeout still ends the wait.
            logger.error("could not release the callback claim", extra={**log, "awsError": _aws_error(error)})

    def _publish(self, namespace: str, job_id: str, callback: Callback) -> str:
        detail = {
            "namespace": namespace,
            "jobId": job_id,
            "status": callback.status,
            "output": callback.output,
            "error": callback.error,
            "cause": callback.cause,
        }
        result = self.events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": EVENT_DETAIL_TYPE,
                    "Detail": json.dumps(detail, separators=(",", ":"), ensure_ascii=False),
                    "EventBusName": self.settings.event_bus_name,
                }
            ]
        )
        entry = (result.get("Entries") or [{}])[0]
        if result.get("FailedEntryCount", 0) or not entry.get("EventId"):
            raise PublishFailed(str(entry.get("ErrorCode", "Unknown")), str(entry.get("ErrorMessage", "")))
        return str(entry["EventId"])


class PublishFailed(ClientError):
    """PutEvents answered but did not accept the entry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__({"Error": {"Code": code, "Message": message}}, "PutEvents")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _aws_error(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', '?')}: {details.get('Message', '')}"[:500]
    return error.__class__.__name__


def _response(status_code: int, body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status_code,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body),
    }


_handler: CallbackUrlHandler | None = None


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: ``callback_url_handler.handler``."""
    global _handler
    if _handler is None:
        _handler = CallbackUrlHandler.from_environment()
    return _handler.handle(event, getattr(context, "aws_request_id", None))
