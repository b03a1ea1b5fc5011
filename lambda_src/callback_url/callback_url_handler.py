"""HTTPS callbacks for jobs whose third-party service calls back over HTTP instead of emitting an event.

``POST /callbacks/{namespace}/{jobId}`` (API Gateway REST, Lambda proxy integration). The handler:

1. checks the path (the namespace must be one the construct configured) and the body size;
2. authenticates the caller, either with the per-job secret (header ``X-Callback-Secret``, whose
   SHA-256 is compared in constant time with ``callbackSecretHash`` in the job's token record) or
   with an HMAC signature (header ``X-Signature: sha256=<hex>`` over the canonical message
   ``"v1\\n<X-Timestamp>\\n<namespace>\\n<jobId>\\n" + <raw body>`` (see :func:`signing_message`),
   the timestamp within the replay window, the key read from Secrets Manager at run time: one key
   for every namespace, or one key per namespace);
3. validates the body: ``{"status": "SUCCEEDED"|"FAILED", "output": <any JSON>, "error": str,
   "cause": str}`` (optionally ``"jobId"`` and ``"namespace"``, which must then match the URL);
4. claims the token record with a conditional update (``attribute_not_exists(callbackReceivedAt)``)
   that writes a random claim id (``callbackRequestId``), so that a replayed callback is rejected
   with 409 and changes nothing;
5. puts exactly one completion event on the callback bus (Source
   ``cdk-serverless-patterns.callback-url``, DetailType ``Job Callback``) whose detail names the
   claim (``claimId``); the pattern's resumer resumes the waiting workflow from it only when the
   token record carries that claim. The bus's resource policy lets only this handler's role put
   events on it.

If the event cannot be put, the claim is undone (conditionally on this request's claim id), so
that the caller's retry is accepted instead of being taken for a replay; the caller gets 503.

Responses: 202 accepted, 400 bad input (bad path, bad JSON, bad status, body too large, namespace
not configured...; the message names the field), 401 missing or malformed credentials or a stale
timestamp, 403 not authenticated for a job waiting at this URL, 404 unknown job (HMAC mode only,
after the signature was verified), 409 already received or completed, 503 an AWS call failed
(nothing was recorded: retry). No request makes the handler raise (no 502 from API Gateway).

In secret mode an unauthenticated caller cannot tell an unknown job, a job that is not waiting
yet, a job stored without a secret and a wrong secret apart: all four get the same 403 and body.

Configuration (environment variables set by the ``CallbackUrls`` construct; no secret among them):
``TABLE_NAME``, ``EVENT_BUS_NAME``, ``NAMESPACES`` (comma-separated), ``AUTH_MODE`` (``secret`` or
``hmac``), ``HMAC_SECRET_ARN`` (hmac mode, one key) or ``HMAC_SECRET_ARNS`` (hmac mode, a JSON
object namespace -> secret ARN), ``REPLAY_WINDOW_SECONDS``, ``MAX_BODY_BYTES``,
``HMAC_KEY_CACHE_SECONDS``, ``ACCEPT_EARLY_CALLBACKS``, ``COMPLETION_TTL_SECONDS``.

Early callbacks (HMAC mode, opt-in with ``ACCEPT_EARLY_CALLBACKS=true``): a third party may call
back before the workflow stored its token (the early-completion race). The signature proves the
caller without a record, so the handler writes the completion record itself (``kind =
completion``, with ``attribute_not_exists(id)``), exactly as the resumer would; the wait step finds
it when it parks. A second early callback for the same job gets 409. Without the option, and always
in secret mode (the secret's hash lives in the token record), a callback for a job with no record
changes nothing: the caller retries.

Standard library and boto3 only (both are in the Lambda runtime).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
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
#: The marker the resumer leaves where it resumed a waiter: the job is done.
KIND_RESUMED = "resumed"
SECRET_HASH_ATTRIBUTE = "callbackSecretHash"
#: The handler's claim on a record, and the detail field of its event that names it.
CLAIM_ATTRIBUTE = "callbackRequestId"
CLAIM_ID_FIELD = "claimId"
SUCCESS, FAILURE = "SUCCEEDED", "FAILED"
STATUSES = (SUCCESS, FAILURE)
AUTH_MODES = ("secret", "hmac")
SECRET_HEADER = "x-callback-secret"
SIGNATURE_HEADER = "x-signature"
TIMESTAMP_HEADER = "x-timestamp"
SIGNATURE_PREFIX = "sha256="
SIGNATURE_VERSION = "v1"
BODY_FIELDS = ("status", "output", "error", "cause", "jobId", "namespace")
MAX_ERROR_CHARS = 256  # SendTaskFailure / SendDurableExecutionCallbackFailure limits
MAX_CAUSE_CHARS = 32768
MAX_JOB_ID_CHARS = 512
DEFAULT_COMPLETION_TTL_SECONDS = 3600
NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JOB_ID_PATTERN = re.compile(r"^[\x21-\x7e]{1,512}$")  # printable ASCII, no spaces (always used with fullmatch)
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
# ASCII only: str.isdigit() and int() also accept '²' and other scripts' digits.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=([0-9A-Fa-f]{64})")
_CREDENTIAL = re.compile(r"[\x20-\x7e]{1,1024}")  # an HTTP header value a secret can be: printable ASCII

# Transient AWS errors (throttling, 5xx, timeouts) are retried with backoff by botocore. Short timeouts
# keep a whole request (at most five calls) well inside the function's 20 s and API Gateway's 29 s.
BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=1, read_timeout=3)

logger = logging.getLogger("callback_url")
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))


# --- signing (a copy of cdk_serverless_patterns/callback/signing.py; the contract test keeps them equal) ---


def signing_message(timestamp: str, namespace: str, job_id: str, body: bytes) -> bytes:
    """The bytes a callback's HMAC-SHA256 signature covers (canonical form ``v1``).

    ``"v1\\n" + timestamp + "\\n" + namespace + "\\n" + job_id + "\\n"`` (ASCII) followed by the raw
    request body, byte for byte. None of the first four parts can contain a newline, so two
    different requests never share a message.
    """
    header = f"{SIGNATURE_VERSION}\n{timestamp}\n{namespace}\n{job_id}\n"
    return header.encode("ascii") + body


def sign_callback(
    key: str | bytes, *, namespace: str, job_id: str, body: str | bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The headers that authenticate a callback to ``POST /callbacks/{namespace}/{job_id}``.

    ``key`` is the HMAC key (a ``str`` is UTF-8 encoded), ``body`` the exact request body (a ``str``
    is UTF-8 encoded), ``timestamp`` Unix seconds (default: now). Returns ``{"X-Timestamp": ...,
    "X-Signature": "sha256=<hex>"}``.
    """
    raw_key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    raw_body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    stamp = str(int(time.time()) if timestamp is None else int(timestamp))
    digest = hmac.new(raw_key, signing_message(stamp, namespace, job_id, raw_body), hashlib.sha256).hexdigest()
    return {"X-Timestamp": stamp, "X-Signature": f"sha256={digest}"}


# --- configuration ---------------------------------------------------------------------------------------


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
    #: Per-namespace HMAC keys: namespace -> secret ARN (instead of ``hmac_secret_arn``).
    hmac_secret_arns: Mapping[str, str] = field(default_factory=dict)
    completion_ttl_seconds: int = DEFAULT_COMPLETION_TTL_SECONDS

    def secret_arn_for(self, namespace: str) -> str | None:
        """Where the HMAC key of ``namespace`` is."""
        return self.hmac_secret_arns.get(namespace) or self.hmac_secret_arn

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        missing = [name for name in ("TABLE_NAME", "EVENT_BUS_NAME", "NAMESPACES", "AUTH_MODE") if not env.get(name)]
        auth_mode = env.get("AUTH_MODE", "")
        per_namespace: dict[str, str] = {}
        if env.get("HMAC_SECRET_ARNS"):
            try:
                parsed = json.loads(env["HMAC_SECRET_ARNS"])
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in parsed.items()
            ):
                raise RuntimeError("callback-url handler is misconfigured: HMAC_SECRET_ARNS must be a JSON object")
            per_namespace = parsed
        if auth_mode == "hmac" and not env.get("HMAC_SECRET_ARN") and not per_namespace:
            missing.append("HMAC_SECRET_ARN")
        if missing:
            raise RuntimeError(f"callback-url handler is misconfigured: missing environment {', '.join(missing)}")
        if auth_mode not in AUTH_MODES:
            raise RuntimeError(f"callback-url handler is misconfigured: AUTH_MODE {auth_mode!r} not in {AUTH_MODES}")
        namespaces = frozenset(ns.strip() for ns in env["NAMESPACES"].split(",") if ns.strip())
        if auth_mode == "hmac" and not env.get("HMAC_SECRET_ARN"):
            keyless = sorted(namespaces - set(per_namespace))
            if keyless:
                raise RuntimeError(
                    f"callback-url handler is misconfigured: no HMAC key for namespace(s) {', '.join(keyless)}"
                )
        return cls(
            table_name=env["TABLE_NAME"],
            event_bus_name=env["EVENT_BUS_NAME"],
            namespaces=namespaces,
            auth_mode=auth_mode,
            hmac_secret_arn=env.get("HMAC_SECRET_ARN") or None,
            replay_window_seconds=int(env.get("REPLAY_WINDOW_SECONDS", "300")),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", "131072")),
            hmac_key_cache_seconds=int(env.get("HMAC_KEY_CACHE_SECONDS", "300")),
            accept_early_callbacks=auth_mode == "hmac" and env.get("ACCEPT_EARLY_CALLBACKS", "") == "true",
            hmac_secret_arns=per_namespace,
            completion_ttl_seconds=int(env.get("COMPLETION_TTL_SECONDS", str(DEFAULT_COMPLETION_TTL_SECONDS))),
        )


class Rejected(Exception):
    """A request answered with an HTTP error; ``message`` is safe to show the caller (no secret)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


def _not_authenticated() -> Rejected:
    """Secret mode: one answer for an unknown job, a job not waiting yet, a job without a secret, a wrong secret."""
    return Rejected(403, "Forbidden", f"header {SECRET_HEADER!r} does not authenticate a job waiting at this URL")


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
    _hmac_keys: dict[str, tuple[bytes, float]] = field(default_factory=dict, repr=False)

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

    def handle(self, event: Any, request_id: str | None = None) -> dict[str, Any]:
        """Answers one API Gateway proxy event; never raises, whatever the request holds."""
        log: dict[str, Any] = {"requestId": request_id if isinstance(request_id, str) else str(uuid.uuid4())}
        try:
            return self._handle(event, log)
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
                {"error": "Unavailable", "message": "the callback could not be recorded or published; retry later"},
            )
        except Exception as error:  # a bug, never the caller's input (the fuzz tests hold this)
            logger.exception("callback failed unexpectedly", extra={**log, "errorType": type(error).__name__})
            return _response(500, {"error": "InternalError", "message": "the callback could not be processed"})

    def _handle(self, event: Any, log: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(event, Mapping):
            raise Rejected(400, "BadRequest", "the request is not an API Gateway proxy event")
        namespace, job_id = self._path(event)
        log.update(namespace=namespace, jobId=job_id)
        raw_body = self._raw_body(event)
        headers = _headers(event)
        if self.settings.auth_mode == "hmac":
            self._verify_signature(headers, namespace, job_id, raw_body)
            found = self._find(namespace, job_id)
            if found is not None and _kind(found) == KIND_RESUMED:
                raise Rejected(409, "AlreadyCompleted", "this job has already completed")
            if found is None and self.settings.accept_early_callbacks:
                return self._early(namespace, job_id, raw_body, log)
            if found is None or _kind(found) not in (KIND_TOKEN, KIND_COMPLETION):
                raise Rejected(404, "UnknownJob", f"no job {job_id!r} is waiting in namespace {namespace!r}")
            record = found
        else:
            presented = _credential(headers, SECRET_HEADER)
            record = self._verify_secret(presented, self._find(namespace, job_id))
        callback = self._callback_after_state(record, raw_body, namespace, job_id)
        return self._resume(namespace, job_id, record, callback, log)

    def _callback_after_state(
        self, record: Mapping[str, Any], raw_body: bytes, namespace: str, job_id: str
    ) -> Callback:
        """After authentication (an unauthenticated caller learns nothing about the job's state)."""
        if _kind(record) == KIND_COMPLETION:
            raise Rejected(409, "AlreadyCompleted", "this job has already completed")
        if "callbackReceivedAt" in record:
            raise Rejected(409, "AlreadyReceived", "a callback for this job was already received")
        return self._callback(raw_body, namespace, job_id)

    def _resume(
        self, namespace: str, job_id: str, record: Mapping[str, Any], callback: Callback, log: dict[str, Any]
    ) -> dict[str, Any]:
        """Claims the token record with a fresh random claim id and publishes the event naming it."""
        claim_id = secrets.token_urlsafe(24)
        self._claim(namespace, job_id, record, claim_id)
        try:
            event_id = self._publish(namespace, job_id, callback, claim_id)
        except Exception:
            self._release(namespace, job_id, claim_id, log)
            raise
        logger.info("callback accepted", extra={**log, "status": callback.status, "eventId": event_id})
        return _response(202, {"accepted": True, "namespace": namespace, "jobId": job_id, "status": callback.status})

    # --- input ---------------------------------------------------------------------------------

    def _path(self, event: Mapping[str, Any]) -> tuple[str, str]:
        params = event.get("pathParameters")
        if not isinstance(params, Mapping):
            params = {}
        namespace, job_id = params.get("namespace"), params.get("jobId")
        if not isinstance(namespace, str) or not namespace:
            raise Rejected(400, "BadRequest", "path parameter 'namespace' is required")
        if namespace not in self.settings.namespaces:
            raise Rejected(
                400,
                "BadRequest",
                f"path parameter 'namespace': {namespace[:64]!r} is not a namespace configured for callbacks",
            )
        if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
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
            if len(body) > self.settings.max_body_bytes:  # each character is at least one byte
                raise self._too_large()
            try:
                raw = body.encode("utf-8")
            except UnicodeEncodeError:
                raise Rejected(400, "BadRequest", "body: is not valid Unicode text (a lone surrogate)") from None
        if len(raw) > self.settings.max_body_bytes:
            raise self._too_large()
        return raw

    def _too_large(self) -> Rejected:
        return Rejected(400, "PayloadTooLarge", f"body: larger than {self.settings.max_body_bytes} bytes")

    def _callback(self, raw_body: bytes, namespace: str, job_id: str) -> Callback:
        try:
            body = json.loads(raw_body, parse_constant=_reject_constant, parse_float=_finite_float)
        except NonFiniteNumber as error:
            raise Rejected(400, "BadRequest", f"body: {error}") from None
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise Rejected(400, "BadRequest", f"body: not valid JSON ({error.__class__.__name__})") from None
        if not isinstance(body, dict):
            raise Rejected(400, "BadRequest", "body: must be a JSON object")
        try:
            # "\ud800" is valid JSON but not Unicode: nothing downstream could encode it.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Rejected(400, "BadRequest", "body: contains a lone surrogate escape (\\ud800-\\udfff)") from None
        unknown = sorted(set(body) - set(BODY_FIELDS))
        if unknown:
            raise Rejected(
                400,
                "BadRequest",
                f"body: unknown field(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; "
                f"accepted: {', '.join(BODY_FIELDS)}",
            )
        status = body.get("status")
        if not isinstance(status, str) or status not in STATUSES:
            raise Rejected(400, "BadRequest", f"body.status: must be one of {', '.join(STATUSES)}")
        for name, limit in (("error", MAX_ERROR_CHARS), ("cause", MAX_CAUSE_CHARS)):
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise Rejected(400, "BadRequest", f"body.{name}: must be a string of at most {limit} characters")
        if "jobId" in body and body["jobId"] != job_id:
            raise Rejected(400, "BadRequest", "body.jobId: does not match the job of the URL")
        if "namespace" in body and body["namespace"] != namespace:
            raise Rejected(400, "BadRequest", "body.namespace: does not match the namespace of the URL")
        failure_error, failure_cause = body.get("error"), body.get("cause")
        if status == FAILURE:
            failure_error = failure_error or "JobFailed"
            failure_cause = failure_cause or "the job reported failure through its callback URL"
        return Callback(status=status, output=body.get("output"), error=failure_error, cause=failure_cause)

    # --- authentication ------------------------------------------------------------------------

    def _verify_secret(self, presented: str, record: dict[str, Any] | None) -> dict[str, Any]:
        """The record the secret opens; otherwise the same 403 whatever the reason."""
        expected = ""
        if record is not None and _kind(record) in (KIND_TOKEN, KIND_COMPLETION):
            stored = record.get(SECRET_HASH_ATTRIBUTE)
            value = stored.get("S") if isinstance(stored, Mapping) else None
            if isinstance(value, str) and _HEX_SHA256.fullmatch(value.lower()):
                expected = value.lower()
        digest = hashlib.sha256(presented.encode("ascii")).hexdigest()
        # Compared even without a record (against a value no digest equals), so the work is the same.
        matches = hmac.compare_digest(digest, expected or "-" * 64)
        if not expected or not matches or record is None:
            raise _not_authenticated()
        return record

    def _verify_signature(self, headers: Mapping[str, str], namespace: str, job_id: str, raw_body: bytes) -> None:
        signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise Rejected(
                401, "MissingCredentials", f"headers {SIGNATURE_HEADER!r} and {TIMESTAMP_HEADER!r} are required"
            )
        if not _TIMESTAMP.fullmatch(timestamp):
            raise Rejected(
                401, "BadTimestamp", f"header {TIMESTAMP_HEADER!r} must be Unix epoch seconds (ASCII digits)"
            )
        if abs(self.clock() - int(timestamp)) > self.settings.replay_window_seconds:
            raise Rejected(
                401,
                "StaleTimestamp",
                f"header {TIMESTAMP_HEADER!r} is outside the replay window of "
                f"{self.settings.replay_window_seconds} seconds",
            )
        matched = _SIGNATURE.fullmatch(signature.strip())
        if matched is None:
            raise Rejected(401, "BadSignature", f"header {SIGNATURE_HEADER!r} must read 'sha256=<64 hex digits>'")
        presented = matched.group(1).lower()
        message = signing_message(timestamp, namespace, job_id, raw_body)
        expected = hmac.new(self._key(namespace), message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, presented):
            raise Rejected(403, "Forbidden", f"header {SIGNATURE_HEADER!r} does not match the signed request")

    def _key(self, namespace: str) -> bytes:
        """The namespace's HMAC key from Secrets Manager, cached ``hmac_key_cache_seconds`` (rotation is picked up)."""
        arn = self.settings.secret_arn_for(namespace)
        if not arn:
            raise Rejected(403, "Forbidden", f"no HMAC key is configured for namespace {namespace!r}")
        now = self.clock()
        cached = self._hmac_keys.get(arn)
        if cached is None or now >= cached[1]:
            value = self.secrets.get_secret_value(SecretId=arn)
            key = value["SecretString"].encode("utf-8") if "SecretString" in value else bytes(value["SecretBinary"])
            if not key:
                raise ClientError(
                    {"Error": {"Code": "EmptySecret", "Message": "the HMAC secret is empty"}}, "GetSecretValue"
                )
            cached = (key, now + self.settings.hmac_key_cache_seconds)
            self._hmac_keys[arn] = cached
        return cached[0]

    # --- state -----------------------------------------------------------------------------------

    def _early(self, namespace: str, job_id: str, raw_body: bytes, log: dict[str, Any]) -> dict[str, Any]:
        """A verified callback for a job whose waiter has not stored its token yet: record its completion
        (as the resumer would) for the wait step to take when it parks."""
        callback = self._callback(raw_body, namespace, job_id)
        claim_id = secrets.token_urlsafe(24)
        now = self.clock()
        created = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # The event time at EventBridge's precision (whole seconds), as the resumer records it.
        event_time = datetime.fromtimestamp(int(now), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        detail = _detail(namespace, job_id, callback, claim_id)
        error = callback.error if callback.error else f"{namespace}.{callback.status}"
        cause = callback.cause if callback.cause else json.dumps(detail, separators=(",", ":"), ensure_ascii=False)
        item = {
            TABLE_KEY: {"S": f"{namespace}#{job_id}"},
            "kind": {"S": KIND_COMPLETION},
            "status": {"S": callback.status},
            "output": {"S": json.dumps(callback.output, separators=(",", ":"), ensure_ascii=False)},
            "error": {"S": error[:MAX_ERROR_CHARS]},
            "cause": {"S": cause[:MAX_CAUSE_CHARS]},
            "createdAt": {"S": created},
            "eventTime": {"S": event_time},
            "ttl": {"N": str(int(now) + self.settings.completion_ttl_seconds)},
            CLAIM_ATTRIBUTE: {"S": claim_id},
        }
        try:
            self.dynamodb.put_item(
                TableName=self.settings.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error_:
            if error_.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            record: Any = error_.response.get("Item")
            if isinstance(record, Mapping) and _kind(record) == KIND_TOKEN:
                # The waiter parked between our read and our write: resume it the usual way.
                parked = self._callback_after_state(record, raw_body, namespace, job_id)
                return self._resume(namespace, job_id, record, parked, log)
            raise Rejected(409, "AlreadyReceived", "a callback for this job was already received") from None
        logger.info("early callback recorded", extra={**log, "status": callback.status})
        return _response(
            202, {"accepted": True, "early": True, "namespace": namespace, "jobId": job_id, "status": callback.status}
        )

    def _find(self, namespace: str, job_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.dynamodb.get_item(
            TableName=self.settings.table_name, Key={TABLE_KEY: {"S": f"{namespace}#{job_id}"}}, ConsistentRead=True
        ).get("Item")
        return item or None

    def _claim(self, namespace: str, job_id: str, record: Mapping[str, Any], claim_id: str) -> None:
        """Marks the record used, unless a concurrent or earlier callback did (or the record changed)."""
        condition = "attribute_exists(id) AND #kind = :token AND attribute_not_exists(callbackReceivedAt)"
        values: dict[str, Any] = {
            ":now": {"S": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")},
            ":claim": {"S": claim_id},
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
                UpdateExpression=f"SET callbackReceivedAt = :now, {CLAIM_ATTRIBUTE} = :claim",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#kind": "kind"},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            if not error.response.get("Item"):
                # Authenticated: the record was resumed or expired between our read and our claim.
                raise Rejected(404, "UnknownJob", f"no job {job_id!r} is waiting in namespace {namespace!r}") from None
            raise Rejected(409, "AlreadyReceived", "a callback for this job was already received") from None

    def _release(self, namespace: str, job_id: str, claim_id: str, log: Mapping[str, Any]) -> None:
        """Undoes this request's claim after a failed publish, so that the caller's retry is accepted."""
        try:
            self.dynamodb.update_item(
                TableName=self.settings.table_name,
                Key={TABLE_KEY: {"S": f"{namespace}#{job_id}"}},
                UpdateExpression=f"REMOVE callbackReceivedAt, {CLAIM_ATTRIBUTE}",
                ConditionExpression=f"{CLAIM_ATTRIBUTE} = :claim",
                ExpressionAttributeValues={":claim": {"S": claim_id}},
            )
        except (ClientError, BotoCoreError) as error:
            # The record stays claimed: the workflow's own timeout still ends the wait.
            logger.error("could not release the callback claim", extra={**log, "awsError": _aws_error(error)})

    def _publish(self, namespace: str, job_id: str, callback: Callback, claim_id: str) -> str:
        result = self.events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": EVENT_DETAIL_TYPE,
                    "Detail": json.dumps(
                        _detail(namespace, job_id, callback, claim_id), separators=(",", ":"), ensure_ascii=False
                    ),
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


def _detail(namespace: str, job_id: str, callback: Callback, claim_id: str) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "jobId": job_id,
        "status": callback.status,
        "output": callback.output,
        "error": callback.error,
        "cause": callback.cause,
        CLAIM_ID_FIELD: claim_id,
    }


def _kind(record: Mapping[str, Any]) -> str | None:
    kind = record.get("kind")
    value = kind.get("S") if isinstance(kind, Mapping) else None
    return value if isinstance(value, str) else None


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    """Header names lower-cased (HTTP names are case-insensitive); anything but text is dropped."""
    headers = event.get("headers")
    if not isinstance(headers, Mapping):
        return {}
    return {k.lower(): v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)}


def _credential(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise Rejected(401, "MissingCredentials", f"header {name!r} is required")
    if not _CREDENTIAL.fullmatch(value):
        raise Rejected(401, "MalformedCredentials", f"header {name!r} must be 1 to 1024 printable ASCII characters")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class NonFiniteNumber(ValueError):
    """A JSON number too large for a double: Python reads it as inf, which no JSON can carry on."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(
            f"the number {text[:40]} does not fit a double (EventBridge and Step Functions read numbers as doubles)"
        )
    return value


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
