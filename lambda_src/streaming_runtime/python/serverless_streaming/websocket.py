"""The WebSocket driver: the same generator handler, streamed to a WebSocket client through API Gateway.

An ordinary buffered Lambda on the STANDARD Python runtime (no exec wrapper), with the streaming layer and
the user's code: handler ``serverless_streaming.websocket.handler``, ``STREAMING_HANDLER=<module.function>``.
It routes by ``requestContext.eventType`` / ``routeKey``:

- ``$connect`` (``CONNECT``): stores the connection in ``STREAMING_CONNECTIONS_TABLE`` (partition key
  ``connectionId``; ``connectedAt`` in epoch ms, ``expiresAt`` = connectedAt + 2 h, API Gateway's longest
  connection, as the table's TTL attribute; the authorizer's ``principalId`` and context as strings; the
  API id, stage and domain name) and answers 200. The write is conditional (a connection id is stored once: a
  second ``$connect`` for a stored id, replayed or forged, cannot replace its principal). A failed write answers
  500, which refuses the connection.
- ``$disconnect`` (``DISCONNECT``): deletes the row (API Gateway ignores the answer; failures are logged).
- every message route (``MESSAGE``: the ``stream`` route, ``$default`` and any other route wired to this
  function): the body must be a JSON object with ``"action": "stream"``. ``$default`` is accepted so that
  a client whose message API Gateway could not route still gets an answer: anything that is not a stream
  request (binary, not JSON, not an object, another action, over 128 KB) gets one error frame
  ``{"type":"error","errorType":"BadRequest","message":...}`` and a 400 answer without a body (a route
  response would send a body as a second message); the user's code never runs. The stream routes should have
  no route response: the driver talks to the client through ``@connections`` only.

A stream request loads ``STREAMING_HANDLER`` once per environment (``core.load_handler``) and drives it with
``core.iterate``, passing the whole route event (``body`` still the JSON string) and the context. The
client receives JSON text messages: ``{"type":"chunk","data":"..."}`` ..., then ``{"type":"done"}``, or
``{"type":"error","errorType":..,"message":..}`` when the user's code fails (``core.public_error``, as the
HTTP runtime's SSE ``event: error``: a ``core.StreamError``'s own type and message, else the exception's
class name and a generic message; never a stack trace; the full error goes to the log). ``bytes`` items are
decoded as UTF-8 (incrementally, so a character split across chunks survives; invalid bytes become U+FFFD),
an unnamed :class:`~core.Event` (no ``event``, no ``id``) is text like any other, a named one posts the text
buffered before it and then its own message(s) ``{"type":"chunk","event":..,"id":..,"data":..}`` (so a
``summary`` event never runs into the tokens), and a :class:`~core.Response` has no meaning on a WebSocket
and is skipped.

Batching. The generator runs in its own thread and hands items over through a bounded queue, so a slow
generator never delays a frame that is due: text is buffered and posted when the buffer holds
``STREAMING_FRAME_BYTES`` (default 16384; 64 to 32768) or ``STREAMING_FRAME_MS`` (default 50; 0 posts
every item) after the oldest buffered byte arrived, whichever comes first. ``STREAMING_FRAME_BYTES``
bounds a whole message (its JSON bytes), so no message exceeds API Gateway's 32 KB frame (or its 128 KB
message); a huge single chunk is split. A size-triggered flush posts only full messages and keeps the rest
buffered, so 1000 small tokens cost about ``total bytes / STREAMING_FRAME_BYTES`` calls, plus ``done``.

Posting. ``post_to_connection`` through one boto3 client per endpoint and environment (connect 2 s, read
5 s, botocore retries off: this module's loop owns them). Throttling (``LimitExceededException``, 429),
5xx and connection errors are retried with jittered exponential backoff, at most 5 calls and 10 s per
message; a post that timed out reading may have been delivered, so a retried chunk can arrive twice
(at least once). ``GoneException`` (410) stops the stream: the generator is closed (``GeneratorExit``
reaches the user's code at its next ``yield``), the connection's row is deleted, nothing more is posted.
Any other post failure stops the stream the same way and is logged. A generator that does not
yield again within 2 s of being stopped keeps its thread until it does (Python cannot interrupt it).
Within 1.5 s of the function's timeout the stream stops with an error frame (``errorType``
``StreamTimeout``) rather than being cut, after the text the generator had already produced (buffered or
queued: nothing it yielded is dropped); retries of throttled posts never run past that point either (the
final message may be retried until 0.5 s before the timeout), so a throttling storm cannot hold the function
until Lambda kills it.

The endpoint (``management_endpoint``): when the environment sets ``AWS_ENDPOINT_URL`` (or the
service-specific ``AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI``), boto3 picks it (the embedded emulator
gives functions ``AWS_ENDPOINT_URL``, and routes moto's management API to its WebSocket front door);
``localhost`` / ``127.0.0.1`` domain names get ``http://{domainName}/{stage}`` (the front door's own
form); ``*.amazonaws.com`` gets ``https://{domainName}/{stage}``; a custom domain name gets the API's
default endpoint ``https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`` (a custom domain's base
path need not be the stage name).

API Gateway's 29 s integration timeout. A route integration that waits for the function cuts streams
longer than 29 s (the function keeps running, but API Gateway answers the client with an error). Two ways
avoid it, and the driver supports both:

- the integration invokes the function asynchronously (``STREAMING_WS_DISPATCH=inline``, the default):
  the driver streams in the invocation it receives, whatever invoked it;
- ``STREAMING_WS_DISPATCH=async``: the route's invocation validates the request and invokes its own
  function (``context.invoked_function_arn``) with ``InvocationType=Event`` and the payload
  ``{"serverlessStreaming": {"connectionId": .., "endpoint": .., "event": <route event>}}``, then answers
  200 at once; that invocation streams. It streams only to the connection and endpoint its route event's
  ``requestContext`` names (a payload that says otherwise is refused), and an event with a ``requestContext``
  is always a route event: a client's message body is never a self-invoke. The function needs
  ``lambda:InvokeFunction`` on itself, and its asynchronous retries should be 0 (``EventInvokeConfig``): the
  driver never raises from a self-invoked event, but a function timeout would otherwise replay a stream.

Standard library and boto3 (imported lazily: the driver's cold start pays for it only when it posts).
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from . import core
from .contract import (
    DEFAULT_FRAME_BYTES,
    DEFAULT_FRAME_MS,
    ENV_CONNECTIONS_TABLE,
    ENV_FRAME_BYTES,
    ENV_FRAME_MS,
    ENV_STREAMING_HANDLER,
)

__all__ = [
    "CONNECTION_KEY",
    "ENV_DISPATCH",
    "SELF_INVOKE_KEY",
    "STREAM_ACTION",
    "TTL_ATTRIBUTE",
    "chunk_messages",
    "handler",
    "management_endpoint",
]

#: ``inline`` (stream in the invocation that received the message) or ``async`` (invoke self, then stream).
ENV_DISPATCH = "STREAMING_WS_DISPATCH"
DISPATCH_MODES = ("inline", "async")
#: The ``action`` a stream request carries (and the route key the construct gives the stream route).
STREAM_ACTION = "stream"
#: The key of a self-invoked event's payload.
SELF_INVOKE_KEY = "serverlessStreaming"
#: The connections table's partition key and TTL attribute.
CONNECTION_KEY = "connectionId"
TTL_ATTRIBUTE = "expiresAt"
#: API Gateway's longest WebSocket connection.
CONNECTION_TTL_SECONDS = 2 * 60 * 60

#: API Gateway's WebSocket limits: a frame and a message.
MAX_FRAME_BYTES = 32 * 1024
MAX_MESSAGE_BYTES = 128 * 1024
MIN_FRAME_BYTES = 64
#: The JSON around a chunk's data: ``{"type":"chunk","data":""}``.
CHUNK_OVERHEAD = len(b'{"type":"chunk","data":""}')
MAX_ERROR_MESSAGE = 1024

#: Posting: calls per message, the time one message may take, and the backoff.
POST_ATTEMPTS = 5
POST_BUDGET_SECONDS = 10.0
POST_BACKOFF_SECONDS = 0.1
POST_BACKOFF_CAP_SECONDS = 2.0
#: Stop streaming this long before the function's timeout.
TIMEOUT_MARGIN_SECONDS = 1.5
#: The final message (done, error or StreamTimeout) is not retried later than this before the function's timeout.
FINAL_MARGIN_SECONDS = 0.5
#: How long the driver waits for the generator's thread to finish after stopping it.
JOIN_SECONDS = 2.0
#: Items the generator may run ahead of the poster.
QUEUE_ITEMS = 256

_THROTTLING = frozenset(
    {"LimitExceededException", "TooManyRequestsException", "ThrottlingException", "Throttling", "SlowDown"}
)

logger = logging.getLogger("serverless_streaming.websocket")
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

_SURROGATE = re.compile("[\ud800-\udfff]")
_clients: dict[tuple[str, str | None], Any] = {}
_clients_lock = threading.Lock()
_handlers: dict[str, core.Handler] = {}


class BadRequest(Exception):
    """A message the driver refuses (answered with an error frame and 400)."""


class _Gone(Exception):
    """The client is gone (``GoneException``, 410)."""


class _PostFailed(Exception):
    """A post failed for good (not Gone); the stream stops."""


class _OutOfTime(_PostFailed):
    """A post (or its retry) would run past the stream's deadline; the stream stops as timed out."""


# -- configuration and clients ------------------------------------------------------------------------------
def _int_env(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        logger.warning("ignoring a malformed setting", extra={"setting": name, "value": raw[:64]})
        return default
    return min(max(value, low), high)


def frame_bytes() -> int:
    """The largest message the driver posts (``STREAMING_FRAME_BYTES``, clamped to 64..32768)."""
    return _int_env(ENV_FRAME_BYTES, DEFAULT_FRAME_BYTES, MIN_FRAME_BYTES, MAX_FRAME_BYTES)


def frame_seconds() -> float:
    """How long text may wait in the buffer (``STREAMING_FRAME_MS``, clamped to 0..10000 ms), in seconds."""
    return _int_env(ENV_FRAME_MS, DEFAULT_FRAME_MS, 0, 10_000) / 1000.0


def _client(service: str, endpoint: str | None = None) -> Any:
    """One boto3 client per service and endpoint per environment, with bounded timeouts."""
    key = (service, endpoint)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            if service == "apigatewaymanagementapi":
                config = Config(
                    connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 1}
                )
            else:
                config = Config(
                    connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3}
                )
            client = boto3.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]
            _clients[key] = client
    return client


def management_endpoint(request_context: Mapping[str, Any]) -> str | None:
    """The ``@connections`` endpoint for a route event's ``requestContext`` (None: boto3's own choice).

    See the module docstring for the forms and why.
    """
    if os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI") or os.environ.get("AWS_ENDPOINT_URL"):
        return None
    domain = str(request_context.get("domainName") or "")
    stage = str(request_context.get("stage") or "")
    host = domain.split(":", 1)[0].lower() if not domain.startswith("[") else domain.split("]", 1)[0] + "]"
    if host in ("localhost", "127.0.0.1", "[::1]"):
        return f"http://{domain}/{stage}"
    if domain.lower().endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return f"https://{domain}/{stage}"
    api_id = str(request_context.get("apiId") or "")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"  # the aws-cn partition
    if api_id:
        return f"https://{api_id}.execute-api.{region}.{suffix}/{stage}"
    return f"https://{domain}/{stage}"


def _aws_error(error: BaseException) -> tuple[str, int]:
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code, status


# -- frames -------------------------------------------------------------------------------------------------
def _dumps(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _chunk_message(text: str, fields: Mapping[str, str] | None = None) -> bytes:
    return _dumps({"type": "chunk", **(fields or {}), "data": text})


def _split(text: str, limit: int, fields: Mapping[str, str] | None = None) -> list[tuple[str, bytes]]:
    """``text`` in pieces whose chunk messages are at most ``limit`` bytes each: (piece, message) pairs.

    ``fields`` (an event's ``event`` / ``id``) go into every message; when they leave too little room under
    ``limit``, the limit becomes API Gateway's frame size (they are at most 128 characters each).
    """
    return list(_iter_split(text, limit, fields))


def _iter_split(text: str, limit: int, fields: Mapping[str, str] | None = None) -> Iterator[tuple[str, bytes]]:
    """:func:`_split`, one pair at a time: a huge chunk is posted without holding all its messages at once."""
    overhead = len(_chunk_message("", fields))
    if limit - overhead < MIN_FRAME_BYTES - CHUNK_OVERHEAD:
        limit = MAX_FRAME_BYTES
    budget = limit - overhead
    start = 0
    while start < len(text):
        size = min(len(text) - start, budget)
        while True:
            piece = text[start : start + size]
            message = _chunk_message(piece, fields)
            if len(message) <= limit:
                break
            data_size = len(message) - overhead
            # shrink in proportion (escapes and multi-byte characters cost more than one byte each)
            size = max(1, min(size - 1, size * budget // data_size))
        yield piece, message
        start += size


def _event_fields(item: core.Event) -> dict[str, str]:
    """The ``event`` and ``id`` of an :class:`~core.Event` as chunk message fields (at most 128 characters each)."""
    fields: dict[str, str] = {}
    if item.event is not None:
        fields["event"] = _clean(item.event)[:128]
    if item.id is not None:
        fields["id"] = _clean(item.id)[:128]
    return fields


def _clean(text: str) -> str:
    """``text`` as valid UTF-8 (a lone surrogate becomes U+FFFD)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def chunk_messages(text: str, limit: int | None = None) -> list[bytes]:
    """The ``{"type":"chunk"}`` messages carrying ``text``, each at most ``limit`` bytes (default: the setting)."""
    return [message for _, message in _split(text, limit or frame_bytes())]


def error_message(error_type: str, message: str) -> bytes:
    """An ``{"type":"error"}`` message (the message cut to 1 KB)."""
    return _dumps({"type": "error", "errorType": error_type[:128], "message": message[:MAX_ERROR_MESSAGE]})


DONE_MESSAGE = _dumps({"type": "done"})


# -- posting ------------------------------------------------------------------------------------------------
def _post(client: Any, connection_id: str, data: bytes, deadline: float | None = None) -> None:
    """Posts one message: bounded retries for throttling, 5xx and connection errors; ``_Gone`` at 410.

    ``deadline`` (``time.monotonic()``) bounds the retries as well as :data:`POST_BUDGET_SECONDS` does: no call
    starts after it (:class:`_OutOfTime`), so a throttling storm near the end of the function's time cannot hold
    the stream until Lambda kills the function, without its final message.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    budget = time.monotonic() + POST_BUDGET_SECONDS
    if deadline is not None and time.monotonic() >= deadline:
        raise _OutOfTime("the stream's time is up")
    attempt = 0
    while True:
        attempt += 1
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
            return
        except ClientError as error:
            code, status = _aws_error(error)
            if code == "GoneException" or status == 410:
                raise _Gone(connection_id) from error
            retryable = code in _THROTTLING or status == 429 or status >= 500
            failure: BaseException = error
        except BotoCoreError as error:  # connection refused/reset, timeouts
            retryable, failure = True, error
        delay = min(POST_BACKOFF_CAP_SECONDS, POST_BACKOFF_SECONDS * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        if retryable and attempt < POST_ATTEMPTS and deadline is not None and time.monotonic() + delay >= deadline:
            raise _OutOfTime(f"{type(failure).__name__}: {failure}") from failure
        if not retryable or attempt >= POST_ATTEMPTS or time.monotonic() + delay > budget:
            raise _PostFailed(f"{type(failure).__name__}: {failure}") from failure
        time.sleep(delay)


class _Connection:
    """Where a stream goes: one connection through one endpoint."""

    def __init__(self, connection_id: str, endpoint: str | None) -> None:
        self.connection_id = connection_id
        self.endpoint = endpoint
        self.posts = 0
        #: No post starts after this ``time.monotonic()`` (None: no bound); see :func:`_post`.
        self.deadline: float | None = None

    def post(self, data: bytes) -> None:
        self.posts += 1
        _post(_client("apigatewaymanagementapi", self.endpoint), self.connection_id, data, self.deadline)

    def try_post(self, data: bytes) -> bool:
        """Posts, logging instead of raising; False when it failed."""
        try:
            self.post(data)
        except (_Gone, _PostFailed) as error:
            logger.warning(
                "could not post to the connection",
                extra={"connectionId": self.connection_id, "error": str(error)[:300]},
            )
            return False
        return True


# -- the connections table ----------------------------------------------------------------------------------
def _table() -> str | None:
    return os.environ.get(ENV_CONNECTIONS_TABLE) or None


def _store_connection(event: Mapping[str, Any], context: Mapping[str, Any]) -> None:
    table = _table()
    if table is None:
        return
    connection_id = str(context["connectionId"])
    connected_at = context.get("connectedAt")
    try:
        connected_ms = int(connected_at) if connected_at is not None else int(time.time() * 1000)
    except (TypeError, ValueError):
        connected_ms = int(time.time() * 1000)
    item: dict[str, Any] = {
        CONNECTION_KEY: {"S": connection_id},
        "connectedAt": {"N": str(connected_ms)},
        TTL_ATTRIBUTE: {"N": str(connected_ms // 1000 + CONNECTION_TTL_SECONDS)},
    }
    for name in ("apiId", "stage", "domainName"):
        if isinstance(context.get(name), str) and context[name]:
            item[name] = {"S": context[name]}
    authorizer = context.get("authorizer")
    if isinstance(authorizer, Mapping):
        principal = authorizer.get("principalId")
        if principal is not None and str(principal):
            item["principalId"] = {"S": str(principal)}
        values = {
            str(key): {"S": str(value)}
            for key, value in authorizer.items()
            if key not in ("principalId", "integrationLatency") and value is not None and str(key)
        }
        if values:
            item["authorizer"] = {"M": values}
    # a connection id is connected once: a second $connect for it (a replayed or forged event) must not replace the
    # principal and authorizer context stored for the live connection (ConditionalCheckFailed: refused, 500)
    _client("dynamodb").put_item(
        TableName=table,
        Item=item,
        ConditionExpression="attribute_not_exists(#id)",
        ExpressionAttributeNames={"#id": CONNECTION_KEY},
    )


def _delete_connection(connection_id: str) -> None:
    table = _table()
    if table is None:
        return
    try:
        _client("dynamodb").delete_item(TableName=table, Key={CONNECTION_KEY: {"S": connection_id}})
    except Exception as error:
        logger.error("could not delete the connection", extra={"connectionId": connection_id, "error": str(error)})


# -- the stream ---------------------------------------------------------------------------------------------
def _load(spec: str) -> core.Handler:
    found = _handlers.get(spec)
    if found is None:
        found = core.load_handler(spec)
        _handlers[spec] = found
    return found


def _remaining_seconds(context: Any) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    try:
        return float(remaining()) / 1000.0
    except Exception:
        return None


_ITEM, _END, _FAILED = "item", "end", "failed"


def _produce(items: Iterator[Any], out: queue.Queue[tuple[str, Any]], stop: threading.Event) -> None:
    """The generator's thread: hands items over until the end, an error, or ``stop``; closes the generator."""

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        try:
            for item in items:
                if not put((_ITEM, item)) or stop.is_set():
                    return
            put((_END, None))
        except BaseException as error:  # the user's code failed
            put((_FAILED, error))
    finally:
        try:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # GeneratorExit reaches the user's generator, in the thread that runs it
        except BaseException as error:
            logger.warning("the handler failed while closing", extra={"errorType": type(error).__name__})


def _stream(event: Mapping[str, Any], connection: _Connection, context: Any) -> dict[str, Any]:
    """Drives the user's generator and posts its text in batches; the answer for API Gateway."""
    spec = os.environ.get(ENV_STREAMING_HANDLER, "")
    try:
        user_handler = _load(spec)
    except Exception as error:  # not only HandlerLoadError: the module may raise anything while it is imported
        # the type as Lambda's Python runtime names it; the details (paths, the module's own error text, which may
        # hold configuration) go to the log only, as for any other failure of the user's code
        error_type = error.error_type if isinstance(error, core.HandlerLoadError) else "Runtime.ImportModuleError"
        logger.error(
            "cannot load the streaming handler",
            extra={"handler": spec, "errorType": error_type},
            exc_info=error,
        )
        connection.try_post(error_message(error_type, "the streaming handler could not be loaded"))
        return {"statusCode": 500}

    limit = frame_bytes()
    budget = limit - CHUNK_OVERHEAD
    wait = frame_seconds()
    remaining = _remaining_seconds(context)
    deadline = None if remaining is None else time.monotonic() + remaining - TIMEOUT_MARGIN_SECONDS
    final_deadline = None if remaining is None else time.monotonic() + remaining - FINAL_MARGIN_SECONDS
    connection.deadline = deadline

    items = core.iterate(user_handler, event, context)
    out: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=QUEUE_ITEMS)
    stop = threading.Event()
    producer = threading.Thread(target=_produce, args=(items, out, stop), name="streaming-generator", daemon=True)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buffer: list[str] = []
    buffered = 0  # UTF-8 bytes (approximately: what arrived)
    oldest = 0.0

    def flush(everything: bool) -> None:
        nonlocal buffer, buffered, oldest
        text = "".join(buffer)
        buffer = [text]  # one reference: the joined pieces can go now (a huge chunk is held once, not twice)
        keep = ""
        last: tuple[str, bytes] | None = None  # one message behind: the last one may be kept, not posted
        for pair in _iter_split(text, limit):
            if last is not None:
                connection.post(last[1])
            last = pair
        if last is not None:
            if not everything and len(last[1]) < limit:
                keep = last[0]  # a size-triggered flush posts only full messages
            else:
                connection.post(last[1])
        del text
        buffer = [keep] if keep else []
        buffered = len(keep.encode("utf-8"))
        oldest = time.monotonic()

    def add(text: str) -> None:
        nonlocal buffered, oldest
        if not text:
            return
        if not buffer:
            oldest = time.monotonic()
        buffer.append(text)
        buffered += len(text.encode("utf-8"))

    outcome: tuple[str, Any] = ("timeout", None)
    expired = False
    producer.start()
    try:
        while True:
            now = time.monotonic()
            if not expired and deadline is not None and now >= deadline:
                # out of time: the generator stops, but what it already produced (the buffer and the queue, at most
                # QUEUE_ITEMS + 1 items) still goes out before the StreamTimeout frame, until the final deadline
                expired = True
                stop.set()
                connection.deadline = final_deadline
            if expired:
                try:
                    kind, value = out.get_nowait()
                except queue.Empty:
                    add(decoder.decode(b"", final=True))
                    if buffer:
                        flush(True)
                    outcome = ("timeout", None)
                    break
            else:
                timeout = 1.0 if not buffer else max(0.0, oldest + wait - now)
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - now))
                try:
                    kind, value = out.get(timeout=timeout) if timeout > 0 else out.get_nowait()
                except queue.Empty:
                    if buffer and (deadline is None or time.monotonic() < deadline):
                        flush(True)
                    continue  # (at the deadline the expired branch above flushes, with the final deadline)
            if kind == _ITEM:
                if isinstance(value, bytes):
                    add(decoder.decode(value))
                elif isinstance(value, core.Event):
                    fields = _event_fields(value)
                    if not fields:  # a plain event's data is text like any other
                        add(_clean(value.data))
                    else:  # a named event: the text before it, then its own message(s)
                        if buffer:
                            flush(True)
                        posted = False
                        for _, message in _iter_split(_clean(value.data), limit, fields):
                            connection.post(message)
                            posted = True
                        if not posted:  # an empty named event still arrives
                            connection.post(_chunk_message("", fields))
                        continue
                # a Response (status, headers) means nothing on a WebSocket: skipped
                if buffered >= budget:
                    flush(False)
                elif buffer and not expired and (wait <= 0 or time.monotonic() - oldest >= wait):
                    flush(True)
                continue
            add(decoder.decode(b"", final=True))
            if buffer:
                flush(True)
            outcome = (kind, value)
            break
    except _Gone:
        stop.set()
        producer.join(JOIN_SECONDS)
        logger.info("the client is gone; stream stopped", extra={"connectionId": connection.connection_id})
        _delete_connection(connection.connection_id)
        return {"statusCode": 410}
    except _OutOfTime:  # posting (throttled, slow) used up the stream's time: end it as timed out
        outcome = ("timeout", None)
    except _PostFailed as error:
        stop.set()
        producer.join(JOIN_SECONDS)
        logger.error(
            "posting to the connection failed; stream stopped",
            extra={"connectionId": connection.connection_id, "error": str(error)[:300]},
        )
        return {"statusCode": 502}
    finally:
        stop.set()
        _drain(out)

    kind, value = outcome
    producer.join(JOIN_SECONDS if kind != "timeout" else 0.1)
    if kind == _END:
        final = DONE_MESSAGE
        status = 200
    elif kind == _FAILED:
        failure: BaseException = value if isinstance(value, BaseException) else RuntimeError(repr(value))
        logger.error(
            "the streaming handler failed",
            extra={"connectionId": connection.connection_id, "errorType": type(failure).__name__},
            exc_info=failure,
        )
        public = core.public_error(failure)
        final = error_message(public["errorType"], public["message"])
        status = 500
    else:
        logger.error("the stream ran out of time", extra={"connectionId": connection.connection_id})
        final = error_message("StreamTimeout", "the stream stopped before the function's timeout")
        status = 504
    connection.deadline = final_deadline
    try:
        connection.post(final)
    except _Gone:
        _delete_connection(connection.connection_id)
        return {"statusCode": 410}
    except _PostFailed as error:
        logger.error("could not post the end of the stream", extra={"error": str(error)[:300]})
        return {"statusCode": 502}
    return {"statusCode": status}


def _drain(out: queue.Queue[tuple[str, Any]]) -> None:
    while True:
        try:
            out.get_nowait()
        except queue.Empty:
            return


# -- requests -----------------------------------------------------------------------------------------------
def parse_request(event: Mapping[str, Any]) -> dict[str, Any]:
    """The stream request in a message event's body; :class:`BadRequest` says what is wrong."""
    body = event.get("body")
    if event.get("isBase64Encoded"):
        raise BadRequest("binary messages are not accepted: send a JSON text message")
    if not isinstance(body, str) or not body.strip():
        raise BadRequest('the message is empty: send {"action":"stream", ...}')
    if len(body.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise BadRequest("the message is larger than 128 KB")
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest('the message is not JSON: send {"action":"stream", ...}') from None
    if not isinstance(request, dict):
        raise BadRequest('the message must be a JSON object: {"action":"stream", ...}')
    action = request.get("action")
    if action != STREAM_ACTION:
        shown = json.dumps(action, ensure_ascii=True)[:80]
        raise BadRequest(f'unknown action {shown}: send {{"action":"stream", ...}}')
    return request


def _bad(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "body": message}


def _message(event: Mapping[str, Any], request_context: Mapping[str, Any], context: Any) -> dict[str, Any]:
    connection = _Connection(str(request_context["connectionId"]), management_endpoint(request_context))
    try:
        parse_request(event)
    except BadRequest as error:
        logger.info("refused a message", extra={"connectionId": connection.connection_id, "reason": str(error)})
        connection.try_post(error_message("BadRequest", str(error)))
        return {"statusCode": 400}  # no body: a route response would send it as a second, non-JSON message
    mode = os.environ.get(ENV_DISPATCH, "inline").strip().lower() or "inline"
    if mode not in DISPATCH_MODES:
        logger.warning("unknown dispatch mode; streaming inline", extra={"setting": ENV_DISPATCH, "value": mode[:32]})
        mode = "inline"
    function_arn = getattr(context, "invoked_function_arn", None)
    if mode == "async" and function_arn:
        payload = {
            SELF_INVOKE_KEY: {
                "connectionId": connection.connection_id,
                "endpoint": connection.endpoint,
                "event": dict(event),
            }
        }
        try:
            _client("lambda").invoke(
                FunctionName=function_arn, InvocationType="Event", Payload=json.dumps(payload).encode("utf-8")
            )
        except Exception as error:
            logger.error("could not start the stream", extra={"errorType": type(error).__name__, "error": str(error)})
            connection.try_post(error_message("StreamDispatchError", "the stream could not be started"))
            return {"statusCode": 500}
        return {"statusCode": 200}
    return _stream(event, connection, context)


def _self_invoked(payload: Any, context: Any) -> dict[str, Any]:
    """Streams a self-invoked event, to the connection and endpoint of the route event it carries.

    The connection id and endpoint are taken from the carried route event's ``requestContext`` (as the route's
    invocation took them), never from the payload alone: a payload whose ``connectionId`` or ``endpoint`` differs
    from what its route event says is refused, so a forged event cannot aim a stream at another connection or
    make the function post (signed with its role) to a URL of the sender's choosing.
    """
    if not isinstance(payload, Mapping):
        logger.error("malformed self-invoked event")
        return _bad(400, "malformed self-invoked event")
    connection_id, endpoint, event = payload.get("connectionId"), payload.get("endpoint"), payload.get("event")
    request_context = event.get("requestContext") if isinstance(event, Mapping) else None
    if (
        not isinstance(connection_id, str)
        or not connection_id
        or not (endpoint is None or isinstance(endpoint, str))
        or not isinstance(event, Mapping)
        or not isinstance(request_context, Mapping)
    ):
        logger.error("malformed self-invoked event")
        return _bad(400, "malformed self-invoked event")
    if request_context.get("connectionId") != connection_id or management_endpoint(request_context) != endpoint:
        logger.error("self-invoked event does not match its route event; refused")
        return _bad(400, "malformed self-invoked event")
    connection = _Connection(connection_id, endpoint)
    try:
        parse_request(event)
    except BadRequest as error:
        connection.try_post(error_message("BadRequest", str(error)))
        return {"statusCode": 400}  # no body: a route response would send it as a second, non-JSON message
    return _stream(event, connection, context)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The WebSocket driver's Lambda handler: ``$connect``, ``$disconnect``, stream requests, self-invokes.

    Never raises: bad input is a 4xx answer (and an error frame where there is a connection), a failure of the
    user's code an error frame and a 500 answer.
    """
    try:
        # an API Gateway route event always has a requestContext and never this key: one that has both is a route
        # event (whatever else it carries), never a self-invoke
        if isinstance(event, Mapping) and SELF_INVOKE_KEY in event and "requestContext" not in event:
            return _self_invoked(event[SELF_INVOKE_KEY], context)
        request_context = event.get("requestContext") if isinstance(event, Mapping) else None
        if not isinstance(request_context, Mapping) or not isinstance(request_context.get("connectionId"), str):
            logger.error("not a WebSocket event")
            return _bad(400, "not an API Gateway WebSocket event")
        event_type = request_context.get("eventType")
        route = request_context.get("routeKey")
        if event_type == "CONNECT" or route == "$connect":
            try:
                _store_connection(event, request_context)
            except Exception as error:
                logger.error("could not store the connection", extra={"error": str(error)[:300]})
                return {"statusCode": 500}
            return {"statusCode": 200}
        if event_type == "DISCONNECT" or route == "$disconnect":
            _delete_connection(str(request_context["connectionId"]))
            return {"statusCode": 200}
        return _message(event, request_context, context)
    except Exception as error:  # never a crash: log it, answer 500
        logger.exception("the WebSocket driver failed", extra={"errorType": type(error).__name__})
        return {"statusCode": 500}


def _reset() -> None:
    """Forgets the cached clients and handlers (tests)."""
    with _clients_lock:
        _clients.clear()
    _handlers.clear()
