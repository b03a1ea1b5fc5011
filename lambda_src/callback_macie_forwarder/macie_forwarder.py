"""Forwards Amazon Macie classification-job status events from CloudWatch Logs to EventBridge.

Macie publishes job status changes (``JOB_COMPLETED``, ``JOB_CANCELLED``,
``SCHEDULED_RUN_COMPLETED``...) only to the log group ``/aws/macie/classificationjobs``. A
subscription filter on that group invokes this function (asynchronously) with the CloudWatch Logs
subscription payload: ``{"awslogs": {"data": <base64 of gzip of JSON>}}``, the JSON being
``{"messageType": "DATA_MESSAGE" | "CONTROL_MESSAGE", "logGroup", "logStream",
"subscriptionFilters", "logEvents": [{"id", "timestamp", "message"}]}``. Each log event's
``message`` is one Macie job event as JSON (``adminAccountId``, ``jobId``, ``eventType``,
``occurredAt``, ``description``, ``jobName``, ...).

For each job event this function puts one event on the bus: source ``EVENT_SOURCE``, detail-type
``DETAIL_TYPE``, the Macie event unchanged as the detail, and the time Macie logged it
(``occurredAt``, else the log event's timestamp), so that the callback pattern can tell a run
of a periodic job from an earlier one.

- ``CONTROL_MESSAGE`` payloads (CloudWatch Logs checking the destination) are acknowledged and
  ignored.
- A log event that is not a Macie job event (not JSON, not an object, no ``jobId`` or
  ``eventType``, an event type outside ``EVENT_TYPES``, too large for EventBridge) is skipped
  with a warning naming the log event id and why; the others are forwarded.
- ``PutEvents`` entries that fail are retried (``MAX_PUT_ATTEMPTS`` attempts in all, with
  backoff, stopping ``DEADLINE_MARGIN_SECONDS`` before the invocation's timeout); entries still
  failing raise :class:`ForwardingError`, so that Lambda retries the
  invocation and finally sends it to the function's on-failure destination (the dead-letter
  queue). A retried invocation puts its other events again: the callback resumer treats those
  as duplicates.
- A payload that is not a CloudWatch Logs subscription payload raises :class:`BadPayload`: it
  reaches the dead-letter queue too, never silently dropped.

Configuration (environment variables set by ``MacieJobStatusForwarder``): ``EVENT_BUS_NAME``,
``EVENT_SOURCE``, ``DETAIL_TYPE``, optional ``EVENT_TYPES`` (comma-separated). Standard library
and boto3 only.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

ENV_EVENT_BUS = "EVENT_BUS_NAME"
ENV_EVENT_SOURCE = "EVENT_SOURCE"
ENV_DETAIL_TYPE = "DETAIL_TYPE"
ENV_EVENT_TYPES = "EVENT_TYPES"

DATA_MESSAGE = "DATA_MESSAGE"
CONTROL_MESSAGE = "CONTROL_MESSAGE"
#: PutEvents takes at most 10 entries and 256 KB per call (EventBridge's limits).
MAX_ENTRIES_PER_CALL = 10
MAX_REQUEST_BYTES = 256 * 1024
#: How often one batch's failed entries are put (the first attempt included), and the backoff.
MAX_PUT_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 0.2
#: Retries stop this long before the invocation's timeout, so that it fails (and is retried) in time.
DEADLINE_MARGIN_SECONDS = 10.0
#: A gzip bomb guard: CloudWatch Logs sends at most about 1 MB of log events per invocation.
MAX_DECODED_BYTES = 8 * 1024 * 1024
#: Each AWS call: one connection attempt of 2 s, a 5 s read, three calls in all.
BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5)

logger = logging.getLogger("callback_macie_forwarder")
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

_events_client: Any = None
_sleep = time.sleep


class BadPayload(ValueError):
    """The invocation is not a CloudWatch Logs subscription payload."""


class ForwardingError(RuntimeError):
    """Some events could not be put on the bus after every attempt (Lambda retries the invocation)."""

    def __init__(self, failures: Sequence[Mapping[str, Any]]) -> None:
        self.failures = list(failures)
        codes = sorted({str(f.get("ErrorCode")) for f in self.failures})
        super().__init__(f"{len(self.failures)} event(s) could not be put on the bus after retries: {', '.join(codes)}")


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Entry point: forwards the job events of one subscription payload; returns the counts."""
    config = _config()
    payload = decode_payload(event)
    if payload.get("messageType") == CONTROL_MESSAGE:
        logger.info("control message ignored", extra={"logGroup": payload.get("logGroup")})
        return {"messageType": CONTROL_MESSAGE, "forwarded": 0, "skipped": 0}
    entries, skipped = build_entries(payload, **config)
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    deadline = time.monotonic() + remaining_ms() / 1000 - DEADLINE_MARGIN_SECONDS if callable(remaining_ms) else None
    put_all(events_client(), entries, deadline=deadline)
    logger.info(
        "job events forwarded",
        extra={"forwarded": len(entries), "skipped": skipped, "logStream": payload.get("logStream")},
    )
    return {"messageType": DATA_MESSAGE, "forwarded": len(entries), "skipped": skipped}


def decode_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    """The subscription payload: base64, then gzip, then JSON, checked for its shape."""
    data = event.get("awslogs", {}).get("data") if isinstance(event, Mapping) else None
    if not isinstance(data, str) or not data:
        raise BadPayload("not a CloudWatch Logs subscription payload: no awslogs.data")
    try:
        compressed = base64.b64decode(data, validate=True)
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip
        raw = inflater.decompress(compressed, MAX_DECODED_BYTES)
        if inflater.unconsumed_tail:
            raise BadPayload(f"awslogs.data inflates to more than {MAX_DECODED_BYTES} bytes")
        if not inflater.eof:
            raise BadPayload("awslogs.data is truncated gzip")
        payload = json.loads(raw)
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError) as error:
        if isinstance(error, BadPayload):
            raise
        raise BadPayload(f"awslogs.data is not base64 of gzip of JSON: {type(error).__name__}") from error
    if not isinstance(payload, dict) or payload.get("messageType") not in (DATA_MESSAGE, CONTROL_MESSAGE):
        raise BadPayload("awslogs.data is not a subscription payload (messageType DATA_MESSAGE or CONTROL_MESSAGE)")
    if payload["messageType"] == DATA_MESSAGE and not isinstance(payload.get("logEvents"), list):
        raise BadPayload("a DATA_MESSAGE without a logEvents list")
    return payload


def build_entries(
    payload: Mapping[str, Any],
    *,
    event_bus: str,
    source: str,
    detail_type: str,
    event_types: frozenset[str] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The PutEvents entries of a DATA_MESSAGE's job events, and how many log events were skipped."""
    entries: list[dict[str, Any]] = []
    skipped = 0
    for log_event in payload.get("logEvents", []):
        log_id = log_event.get("id") if isinstance(log_event, Mapping) else None
        message, problem = _job_event(log_event, event_types)
        if message is None:
            skipped += 1
            logger.warning("log event skipped", extra={"logEventId": log_id, "reason": problem})
            continue
        entry: dict[str, Any] = {
            "EventBusName": event_bus,
            "Source": source,
            "DetailType": detail_type,
            "Detail": json.dumps(message, separators=(",", ":"), ensure_ascii=False),
        }
        when = _event_time(message, log_event)
        if when is not None:
            entry["Time"] = when
        if entry_size(entry) > MAX_REQUEST_BYTES:
            skipped += 1
            logger.error(
                "log event skipped: larger than one EventBridge event",
                extra={"logEventId": log_id, "jobId": message["jobId"], "bytes": entry_size(entry)},
            )
            continue
        entries.append(entry)
        logger.info(
            "job event to forward",
            extra={"logEventId": log_id, "jobId": message["jobId"], "eventType": message["eventType"]},
        )
    return entries, skipped


def put_all(
    client: Any,
    entries: Sequence[dict[str, Any]],
    *,
    sleep: Callable[[float], None] | None = None,
    deadline: float | None = None,
) -> None:
    """Puts ``entries`` in batches within PutEvents' limits; retries failed entries with backoff;
    raises :class:`ForwardingError` with the entries still failing after the last attempt, or as
    soon as a retry would pass ``deadline`` (``time.monotonic()``; the invocation's own timeout
    less a margin), so that the invocation fails in time to be retried rather than timing out."""
    failures: list[dict[str, Any]] = []
    for batch in batches(entries):
        pending = list(batch)
        for attempt in range(1, MAX_PUT_ATTEMPTS + 1):
            result = client.put_events(Entries=pending)
            failed = [
                (entry, answer)
                for entry, answer in zip(pending, result.get("Entries", []), strict=False)
                if answer.get("ErrorCode")
            ]
            if len(result.get("Entries", [])) != len(pending):  # an answer that does not match the request
                failed = [(entry, {"ErrorCode": "MissingResult"}) for entry in pending]
            if not failed:
                break
            codes = sorted({str(answer["ErrorCode"]) for _, answer in failed})
            backoff = BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)
            out_of_time = deadline is not None and time.monotonic() + backoff >= deadline
            if attempt == MAX_PUT_ATTEMPTS or out_of_time:
                for entry, answer in failed:
                    failures.append({"Detail": entry["Detail"][:512], **answer})
                logger.error(
                    "events not put after retries",
                    extra={"failed": len(failed), "errorCodes": codes, "attempts": attempt, "outOfTime": out_of_time},
                )
                break
            logger.warning("retrying failed entries", extra={"failed": len(failed), "errorCodes": codes})
            (sleep or _sleep)(backoff)
            pending = [entry for entry, _ in failed]
    if failures:
        raise ForwardingError(failures)


def batches(entries: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``entries`` in groups of at most 10 entries and 256 KB."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        bytes_ = entry_size(entry)
        if batch and (len(batch) == MAX_ENTRIES_PER_CALL or size + bytes_ > MAX_REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += bytes_
    if batch:
        yield batch


def entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge counts it (UTF-8 of source, detail-type, detail, resources;
    14 bytes for a time)."""
    size = 14 if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(key, "")).encode("utf-8"))
    size += sum(len(str(r).encode("utf-8")) for r in entry.get("Resources", []))
    return size


def events_client() -> Any:
    """The EventBridge client, created once per execution environment."""
    global _events_client
    if _events_client is None:
        _events_client = boto3.client("events", config=BOTO_CONFIG)
    return _events_client


def _config() -> dict[str, Any]:
    missing = [name for name in (ENV_EVENT_BUS, ENV_EVENT_SOURCE, ENV_DETAIL_TYPE) if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"misconfigured: environment variable(s) {', '.join(missing)} not set")
    types = os.environ.get(ENV_EVENT_TYPES, "")
    return {
        "event_bus": os.environ[ENV_EVENT_BUS],
        "source": os.environ[ENV_EVENT_SOURCE],
        "detail_type": os.environ[ENV_DETAIL_TYPE],
        "event_types": frozenset(t.strip() for t in types.split(",") if t.strip()) or None,
    }


def _job_event(log_event: object, event_types: frozenset[str] | None) -> tuple[dict[str, Any] | None, str]:
    """The Macie job event in one log event, or ``None`` and why it is not one."""
    if not isinstance(log_event, Mapping) or not isinstance(log_event.get("message"), str):
        return None, "the log event has no message"
    try:
        message = json.loads(log_event["message"])
    except ValueError:
        return None, "the message is not JSON"
    if not isinstance(message, dict):
        return None, "the message is not a JSON object"
    for field in ("jobId", "eventType"):
        value = message.get(field)
        if not isinstance(value, str) or not value.strip():
            return None, f"the message has no {field}"
    if event_types is not None and message["eventType"] not in event_types:
        return None, f"event type {message['eventType'][:64]!r} is not forwarded"
    return message, ""


def _event_time(message: Mapping[str, Any], log_event: Mapping[str, Any]) -> datetime | None:
    """When Macie logged the event: ``occurredAt`` (ISO 8601), else the log event's timestamp."""
    occurred = message.get("occurredAt")
    if isinstance(occurred, str):
        try:
            parsed = datetime.fromisoformat(occurred.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    stamp = log_event.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and 0 < stamp < 10**14:
        return datetime.fromtimestamp(stamp / 1000, tz=UTC)
    return None
