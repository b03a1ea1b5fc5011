"""The WebSocket driver (serverless_streaming.websocket) against moto: the connections table and the management API.

Everything goes through real boto3 clients into moto (``mock_aws``): DynamoDB for the connections table, and
``apigatewaymanagementapi`` for ``PostToConnection`` (the driver's endpoint
``https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`` is one moto serves). moto 5.2.5 keeps posted data
in memory and never answers ``GoneException`` or throttles, so :class:`Posts` replaces its backend's
``post_to_connection`` for each test: it records every message and answers 410 / 429 on cue, as API Gateway does.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.apigatewaymanagementapi.models import ApiGatewayManagementApiBackend
from moto.core.exceptions import JsonRESTError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambda_src" / "streaming_runtime" / "python"))

from serverless_streaming import core, websocket

from cdk_serverless_patterns.local.lambda_environment import wait_for

TABLE = "stream-connections"
API_ID = "abc123"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ws-driver"
CONNECTED_AT = 1_764_500_000_000


class _Gone(JsonRESTError):
    code = 410

    def __init__(self) -> None:
        super().__init__("GoneException", "gone")


class _Throttled(JsonRESTError):
    code = 429

    def __init__(self) -> None:
        super().__init__("LimitExceededException", "Rate exceeded")


@dataclass
class Posts:
    """moto's PostToConnection, recording: every message per connection; 410 after ``gone_after``; 429 on cue."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    attempts: int = 0
    gone_after: int | None = None
    throttle: int = 0
    delay: float = 0.0  # how long each call takes (a slow management API)
    starts: list[float] = field(default_factory=list)  # time.monotonic() of each call
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, data: bytes, connection_id: str) -> None:
        with self.lock:
            self.starts.append(time.monotonic())
            self.attempts += 1
            time.sleep(self.delay)
            if self.throttle > 0:
                self.throttle -= 1
                raise _Throttled()
            if self.gone_after is not None and len(self.messages) >= self.gone_after:
                raise _Gone()
            self.messages.append((connection_id, bytes(data)))

    def frames(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(data) for _, data in self.messages]

    def text(self) -> str:
        return "".join(frame["data"] for frame in self.frames() if frame["type"] == "chunk")


@dataclass
class Context:
    """A Lambda context with a deadline."""

    timeout_ms: int = 60_000
    invoked_function_arn: str = FUNCTION_ARN
    aws_request_id: str = "req-1"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return int(self.timeout_ms - (time.monotonic() - self.started) * 1000)


def ws_event(route: str, body: Any = None, *, connection: str = "conn-1", **context: Any) -> dict[str, Any]:
    """A WebSocket route event as API Gateway delivers it to a Lambda proxy integration."""
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
    request_context: dict[str, Any] = {
        "routeKey": route,
        "eventType": event_type,
        "messageDirection": "IN",
        "connectionId": connection,
        "domainName": DOMAIN,
        "stage": "prod",
        "apiId": API_ID,
        "connectedAt": CONNECTED_AT,
        "requestTimeEpoch": CONNECTED_AT + 5,
        "requestId": "Req=",
        "extendedRequestId": "Req=",
        "identity": {"sourceIp": "203.0.113.9", "userAgent": "test"},
        **context,
    }
    event: dict[str, Any] = {"requestContext": request_context, "isBase64Encoded": False}
    if event_type == "MESSAGE":
        event["requestContext"]["messageId"] = "Msg="
        event["body"] = body
    return event


def stream_event(connection: str = "conn-1", **fields: Any) -> dict[str, Any]:
    return ws_event("stream", json.dumps({"action": "stream", "prompt": "hi", **fields}), connection=connection)


@dataclass
class Env:
    posts: Posts
    dynamodb: Any
    user: types.ModuleType
    monkeypatch: pytest.MonkeyPatch

    def use(self, function: Callable[..., Any]) -> None:
        """Makes ``function`` the user's streaming handler (STREAMING_HANDLER)."""
        setattr(self.user, "handler", function)  # noqa: B010
        websocket._reset()

    def row(self, connection: str = "conn-1") -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.dynamodb.get_item(
            TableName=TABLE, Key={"connectionId": {"S": connection}}
        ).get("Item")
        return item


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", websocket.ENV_DISPATCH):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("STREAMING_CONNECTIONS_TABLE", TABLE)
    monkeypatch.setenv("STREAMING_HANDLER", "ws_test_user_code.handler")
    monkeypatch.setenv("STREAMING_FRAME_MS", "50")
    monkeypatch.delenv("STREAMING_FRAME_BYTES", raising=False)
    monkeypatch.setattr(websocket, "POST_BACKOFF_SECONDS", 0.001)
    user = types.ModuleType("ws_test_user_code")
    monkeypatch.setitem(sys.modules, "ws_test_user_code", user)
    posts = Posts()

    def post_to_connection(backend: Any, data: bytes, connection_id: str) -> None:
        posts.post(data, connection_id)

    monkeypatch.setattr(ApiGatewayManagementApiBackend, "post_to_connection", post_to_connection)
    websocket._reset()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Env(posts, dynamodb, user, monkeypatch)
    websocket._reset()


# -- $connect / $disconnect ---------------------------------------------------------------------------------
def test_connect_stores_the_connection_with_its_principal_and_a_two_hour_ttl(env: Env) -> None:
    authorizer = {"principalId": "user-7", "tenant": "acme", "admin": True, "integrationLatency": 12}
    answer = websocket.handler(ws_event("$connect", authorizer=authorizer), Context())
    assert answer == {"statusCode": 200}
    row = env.row()
    assert row is not None
    assert row["connectedAt"] == {"N": str(CONNECTED_AT)}
    assert row["expiresAt"] == {"N": str(CONNECTED_AT // 1000 + 7200)}
    assert row["principalId"] == {"S": "user-7"}
    assert row["authorizer"] == {"M": {"tenant": {"S": "acme"}, "admin": {"S": "True"}}}
    assert row["apiId"] == {"S": API_ID} and row["stage"] == {"S": "prod"}
    assert env.posts.attempts == 0


def test_disconnect_deletes_the_row(env: Env) -> None:
    websocket.handler(ws_event("$connect"), Context())
    assert env.row() is not None
    assert websocket.handler(ws_event("$disconnect"), Context()) == {"statusCode": 200}
    assert env.row() is None


def test_a_second_connect_for_a_stored_id_cannot_replace_its_principal(env: Env) -> None:
    assert websocket.handler(ws_event("$connect", authorizer={"principalId": "alice"}), Context()) == {
        "statusCode": 200
    }
    replayed = ws_event("$connect", authorizer={"principalId": "mallory", "role": "admin"})
    assert websocket.handler(replayed, Context()) == {"statusCode": 500}
    row = env.row()
    assert row is not None and row["principalId"] == {"S": "alice"} and "authorizer" not in row
    # after $disconnect the id may be stored again
    websocket.handler(ws_event("$disconnect"), Context())
    assert websocket.handler(ws_event("$connect", authorizer={"principalId": "bob"}), Context()) == {"statusCode": 200}
    assert env.row()["principalId"] == {"S": "bob"}  # type: ignore[index]


def test_connect_is_refused_when_the_connection_cannot_be_stored(env: Env) -> None:
    env.monkeypatch.setenv("STREAMING_CONNECTIONS_TABLE", "no-such-table")
    assert websocket.handler(ws_event("$connect"), Context()) == {"statusCode": 500}


# -- streaming ----------------------------------------------------------------------------------------------
def test_a_stream_arrives_as_chunks_then_done_and_the_handler_sees_the_route_event(env: Env) -> None:
    seen: list[Any] = []

    def handler(event: Any, context: Any) -> Iterator[Any]:
        seen.append((event, context))
        yield core.Response(status_code=201, headers={"x": "y"})  # no meaning on a WebSocket: skipped
        yield "Hello"
        yield b", "
        yield core.Event(data="world", event="token")

    env.use(handler)
    event = stream_event()
    context = Context()
    assert websocket.handler(event, context) == {"statusCode": 200}
    frames = env.posts.frames()
    assert frames[-1] == {"type": "done"}
    assert all(frame["type"] == "chunk" for frame in frames[:-1])
    assert env.posts.text() == "Hello, world"
    assert {connection for connection, _ in env.posts.messages} == {"conn-1"}
    assert seen == [(event, context)]
    assert json.loads(seen[0][0]["body"])["prompt"] == "hi"


def test_async_generators_stream_too(env: Env) -> None:
    async def handler(event: Any, context: Any) -> Any:
        for word in ("one ", "two ", "three"):
            yield word

    env.use(handler)
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
    assert env.posts.text() == "one two three"


def test_a_thousand_tokens_cost_total_bytes_over_frame_size_calls(env: Env) -> None:
    env.monkeypatch.setenv("STREAMING_FRAME_BYTES", "1024")
    env.monkeypatch.setenv("STREAMING_FRAME_MS", "10000")  # only size flushes
    tokens = [f"tok{i:04d} " for i in range(1000)]
    env.use(lambda event, context: iter(tokens))
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
    sizes = [len(data) for _, data in env.posts.messages]
    assert max(sizes) <= 1024
    total = len("".join(tokens))
    assert len(sizes) == math.ceil(total / (1024 - websocket.CHUNK_OVERHEAD)) + 1  # full messages, the rest, done
    assert env.posts.text() == "".join(tokens)


def test_a_thousand_tokens_with_default_settings_are_a_handful_of_calls(env: Env) -> None:
    tokens = [f"t{i} " for i in range(1000)]
    env.use(lambda event, context: iter(tokens))
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
    assert env.posts.text() == "".join(tokens)
    # 6 KB of tokens: a chunk message or two and done when the machine is idle; never one call per token
    assert len(env.posts.messages) < 50


@pytest.mark.parametrize("setting", [None, "100000000", "10"])
def test_a_huge_chunk_is_split_into_messages_under_api_gateway_limits(env: Env, setting: str | None) -> None:
    if setting is not None:
        env.monkeypatch.setenv("STREAMING_FRAME_BYTES", setting)
    piece = 'plain text "quoted" \\ back\x01\x02 ctl\n é ü 日本語 🎉🎉 '
    huge = piece * ((300_000 if setting != "10" else 20_000) // len(piece))
    env.use(lambda event, context: iter([huge]))
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
    limit = websocket.frame_bytes()
    assert limit == {None: 16384, "100000000": 32768, "10": 64}[setting]
    sizes = [len(data) for _, data in env.posts.messages]
    assert max(sizes) <= limit <= websocket.MAX_FRAME_BYTES
    assert all(json.loads(data) for _, data in env.posts.messages)
    assert env.posts.text() == huge


def test_a_huge_chunk_is_posted_without_holding_all_its_messages(env: Env) -> None:
    """A 16 MiB item: every message used to be built before the first was posted (two more copies of the item)."""
    import tracemalloc

    size = 16 << 20
    posted: list[int] = []
    env.monkeypatch.setattr(websocket._Connection, "post", lambda self, data: posted.append(len(data)))
    env.use(lambda event, context: iter(["y" * size]))
    tracemalloc.start()
    try:
        assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(posted) > size and max(posted) <= websocket.DEFAULT_FRAME_BYTES
    # the item, its UTF-8 bytes (core) and its decoded text (the driver): about 3 copies, not 5
    assert peak < 3.5 * size, f"peak {peak / size:.2f} x the item"


def test_buffered_text_is_posted_after_frame_ms_even_while_the_generator_blocks(env: Env) -> None:
    release = threading.Event()
    finished = threading.Event()

    def handler(event: Any, context: Any) -> Iterator[str]:
        yield "first"
        release.wait(10)
        yield "second"
        finished.set()

    env.use(handler)
    answers: list[Any] = []
    driver = threading.Thread(target=lambda: answers.append(websocket.handler(stream_event(), Context())))
    driver.start()
    try:
        assert wait_for(lambda: env.posts.text() == "first", timeout=5)
        assert not finished.is_set()  # posted while the generator was still blocked
    finally:
        release.set()
        driver.join(10)
    assert answers == [{"statusCode": 200}]
    assert env.posts.text() == "firstsecond"


def test_utf8_split_across_chunks_survives_and_invalid_bytes_are_replaced(env: Env) -> None:
    env.use(lambda event, context: iter([b"caf\xc3", b"\xa9 ", b"\xff!"]))
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
    assert env.posts.text() == "café \ufffd!"


def test_a_gone_client_stops_and_closes_the_generator_and_deletes_the_row(env: Env) -> None:
    env.monkeypatch.setenv("STREAMING_FRAME_MS", "0")  # one message per token
    websocket.handler(ws_event("$connect"), Context())
    produced = []
    closed = threading.Event()

    def handler(event: Any, context: Any) -> Iterator[str]:
        try:
            while True:
                produced.append(1)
                yield f"token{len(produced)} "
                time.sleep(0.001)
        except GeneratorExit:
            closed.set()
            raise

    env.use(handler)
    env.posts.gone_after = 3
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 410}
    assert closed.is_set()  # GeneratorExit reached the user's code
    assert len(env.posts.messages) == 3 and env.posts.attempts == 4  # nothing after the 410
    assert all(frame["type"] == "chunk" for frame in env.posts.frames())
    assert env.row() is None
    assert len(produced) < 3 + websocket.QUEUE_ITEMS + 5
    count = len(produced)
    time.sleep(0.05)
    assert len(produced) == count  # the generator is no longer driven


def test_a_user_error_after_chunks_sends_an_error_frame_without_a_stack_trace(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(event: Any, context: Any) -> Iterator[str]:
        yield "partial "
        raise ValueError("the model said no")

    env.use(handler)
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 500}
    frames = env.posts.frames()
    assert frames[-1] == {
        "type": "error",
        "errorType": "ValueError",
        "message": "The function failed while streaming its response.",  # its text may hold secrets
    }
    assert env.posts.text() == "partial "
    assert not any(b"Traceback" in data or b"model said" in data for _, data in env.posts.messages)
    failures = [record for record in caplog.records if record.message == "the streaming handler failed"]
    assert failures and failures[0].exc_info is not None  # the full error goes to the log


def test_a_stream_error_shows_its_own_type_and_message(env: Env) -> None:
    def handler(event: Any, context: Any) -> Iterator[str]:
        yield "partial "
        raise core.StreamError("quota exhausted, try later", "QuotaExceeded")

    env.use(handler)
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 500}
    assert env.posts.frames()[-1] == {
        "type": "error",
        "errorType": "QuotaExceeded",
        "message": "quota exhausted, try later",
    }


def test_an_unloadable_handler_is_an_error_frame(env: Env) -> None:
    env.monkeypatch.setenv("STREAMING_HANDLER", "no_such_module_for_ws.handler")
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 500}
    assert env.posts.frames() == [
        {
            "type": "error",
            "errorType": "Runtime.ImportModuleError",
            "message": "the streaming handler could not be loaded",
        }
    ]


def test_a_module_that_raises_while_imported_still_ends_the_stream_without_its_secrets(
    env: Env, tmp_path: Path
) -> None:
    """Any import-time failure (not only ImportError) gets the client an error frame; its text stays in the log."""
    (tmp_path / "ws_raising_at_import.py").write_text("raise KeyError('DB_PASSWORD=hunter2 is missing')\n")
    env.monkeypatch.syspath_prepend(str(tmp_path))
    env.monkeypatch.setenv("STREAMING_HANDLER", "ws_raising_at_import.handler")
    websocket._reset()
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 500}
    assert env.posts.frames() == [
        {
            "type": "error",
            "errorType": "Runtime.ImportModuleError",
            "message": "the streaming handler could not be loaded",
        }
    ]
    (tmp_path / "ws_syntax_error.py").write_text("def handler(:\n    password = 'hunter2'\n")
    env.monkeypatch.setenv("STREAMING_HANDLER", "ws_syntax_error.handler")
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 500}
    assert env.posts.frames()[-1]["errorType"] == "Runtime.UserCodeSyntaxError"
    assert "hunter2" not in json.dumps(env.posts.frames())


def test_a_bad_yield_is_an_error_frame(env: Env) -> None:
    env.use(lambda event, context: iter(["ok", 42]))
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 500}
    assert env.posts.frames()[-1]["errorType"] == "TypeError"


def test_throttled_posts_are_retried_with_backoff(env: Env) -> None:
    env.posts.throttle = 2
    env.use(lambda event, context: iter(["hello"]))
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
    assert env.posts.text() == "hello"
    assert env.posts.attempts == 4  # 2 throttled + chunk + done


def test_throttling_is_retried_a_bounded_number_of_times(env: Env) -> None:
    env.posts.throttle = 1000
    closed = threading.Event()

    def handler(event: Any, context: Any) -> Iterator[str]:
        try:
            while True:
                yield "x"
                time.sleep(0.001)
        finally:
            closed.set()

    env.use(handler)
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 502}
    assert env.posts.attempts == websocket.POST_ATTEMPTS
    assert closed.is_set()


def test_the_stream_stops_with_an_error_frame_before_the_function_times_out(env: Env) -> None:
    closed = threading.Event()

    def handler(event: Any, context: Any) -> Iterator[str]:
        try:
            while True:
                yield "."
                time.sleep(0.01)
        finally:
            closed.set()

    env.use(handler)
    started = time.monotonic()
    answer = websocket.handler(stream_event(), Context(timeout_ms=2000))
    assert answer == {"statusCode": 504}
    assert time.monotonic() - started < 1.5
    assert env.posts.frames()[-1]["errorType"] == "StreamTimeout"
    assert wait_for(closed.is_set, timeout=5)


def test_text_produced_before_the_deadline_goes_out_before_the_timeout_frame(env: Env) -> None:
    """At the deadline the buffered text (held here by a long frame setting) was dropped; now it is posted."""
    env.monkeypatch.setenv("STREAMING_FRAME_MS", "5000")
    yielded: list[str] = []
    closed = threading.Event()

    def handler(event: Any, context: Any) -> Iterator[str]:
        try:
            while True:  # a model that never stops, a token every 10 ms
                yielded.append("x")
                yield "x"
                time.sleep(0.01)
        finally:
            closed.set()

    env.use(handler)
    answer = websocket.handler(stream_event(), Context(timeout_ms=2000))
    assert answer == {"statusCode": 504}
    frames = env.posts.frames()
    assert frames[-1] == {
        "type": "error",
        "errorType": "StreamTimeout",
        "message": "the stream stopped before the function's timeout",
    }
    text = "".join(frame["data"] for frame in frames[:-1])
    assert wait_for(closed.is_set, timeout=5)
    # everything yielded reached the client, but for the one item the generator may have had in hand when stopped
    assert set(text) == {"x"} and len(yielded) - 1 <= len(text) <= len(yielded)


def test_a_throttling_storm_never_holds_the_stream_past_the_functions_timeout(env: Env) -> None:
    """Retries stop at the stream's deadline; the final message's retries stop 0.5 s before the timeout."""
    env.monkeypatch.setattr(websocket, "POST_BACKOFF_SECONDS", 0.05)
    env.posts.throttle = 10**6
    env.posts.delay = 0.3
    closed = threading.Event()

    def handler(event: Any, context: Any) -> Iterator[str]:
        try:
            while True:
                yield "."
                time.sleep(0.01)
        finally:
            closed.set()

    env.use(handler)
    started = time.monotonic()
    answer = websocket.handler(stream_event(), Context(timeout_ms=2000, started=started))
    elapsed = time.monotonic() - started
    assert answer["statusCode"] in (502, 504)
    last_start = max(env.posts.starts) - started
    assert last_start < 2.0 - websocket.FINAL_MARGIN_SECONDS, f"a post started {last_start:.2f} s into a 2 s function"
    assert elapsed < 2.0, f"the driver returned after {elapsed:.2f} s of a 2 s function"
    assert wait_for(closed.is_set, timeout=5)


# -- dispatch -----------------------------------------------------------------------------------------------
class FakeLambda:
    """Records Invoke calls (moto runs Lambda code only in Docker; the emulator test runs it for real)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("no route to Lambda")
        self.calls.append(kwargs)
        return {"StatusCode": 202}


def test_async_dispatch_answers_at_once_and_the_self_invoked_event_streams(env: Env) -> None:
    env.monkeypatch.setenv(websocket.ENV_DISPATCH, "async")
    fake = FakeLambda()
    websocket._clients[("lambda", None)] = fake
    calls: list[Any] = []

    def handler(event: Any, context: Any) -> Iterator[str]:
        calls.append(event)
        yield "streamed later"

    env.use(handler)
    websocket._clients[("lambda", None)] = fake
    event = stream_event()
    assert websocket.handler(event, Context()) == {"statusCode": 200}
    assert env.posts.messages == [] and calls == []
    (call,) = fake.calls
    assert call["FunctionName"] == FUNCTION_ARN and call["InvocationType"] == "Event"
    payload = json.loads(call["Payload"])
    assert payload == {
        "serverlessStreaming": {
            "connectionId": "conn-1",
            "endpoint": f"https://{DOMAIN}/prod",
            "event": event,
        }
    }
    assert websocket.handler(payload, Context()) == {"statusCode": 200}
    assert calls == [event]
    assert env.posts.frames() == [{"type": "chunk", "data": "streamed later"}, {"type": "done"}]


def test_a_failed_self_invoke_tells_the_client(env: Env) -> None:
    env.monkeypatch.setenv(websocket.ENV_DISPATCH, "async")
    env.use(lambda event, context: iter(["never"]))
    websocket._clients[("lambda", None)] = FakeLambda(fail=True)
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 500}
    assert env.posts.frames() == [
        {"type": "error", "errorType": "StreamDispatchError", "message": "the stream could not be started"}
    ]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "x",
        {},
        {"connectionId": 5, "endpoint": None, "event": {}},
        {"connectionId": "c", "endpoint": 7, "event": {}},
        {"connectionId": "c", "endpoint": None, "event": "nope"},
    ],
)
def test_malformed_self_invoked_events_are_refused(env: Env, payload: Any) -> None:
    env.use(lambda event, context: iter(["never"]))
    answer = websocket.handler({"serverlessStreaming": payload}, Context())
    assert answer["statusCode"] == 400
    assert env.posts.messages == []


def test_a_self_invoked_event_streams_only_to_the_connection_its_route_event_names(env: Env) -> None:
    """A forged self-invoke may not aim the stream at another connection, nor at an endpoint of its choosing."""
    env.use(lambda event, context: iter(["secret for the victim?"]))
    attacker = stream_event(connection="attacker")
    endpoint = f"https://{DOMAIN}/prod"
    forged = [
        {"connectionId": "victim", "endpoint": endpoint, "event": attacker},
        {"connectionId": "attacker", "endpoint": "https://collector.example.com/prod", "event": attacker},
        {"connectionId": "attacker", "endpoint": None, "event": attacker},
        {"connectionId": "victim", "endpoint": endpoint, "event": {"body": attacker["body"]}},
    ]
    for payload in forged:
        assert websocket.handler({"serverlessStreaming": payload}, Context())["statusCode"] == 400
    assert env.posts.messages == []
    genuine = {"connectionId": "attacker", "endpoint": endpoint, "event": attacker}
    assert websocket.handler({"serverlessStreaming": genuine}, Context()) == {"statusCode": 200}
    assert {cid for cid, _ in env.posts.messages} == {"attacker"}


@pytest.mark.parametrize("mode", ["inline", "async"])
def test_a_client_cannot_smuggle_a_self_invoke_through_the_api(env: Env, mode: str) -> None:
    """A message body (or a route event) carrying ``serverlessStreaming`` streams to the sender's own connection."""
    env.monkeypatch.setenv(websocket.ENV_DISPATCH, mode)
    env.use(lambda event, context: iter(["only for the sender"]))
    fake = FakeLambda()
    websocket._clients[("lambda", None)] = fake
    smuggled = {"connectionId": "victim", "endpoint": f"https://{DOMAIN}/prod", "event": stream_event("victim")}
    bodies = [
        json.dumps({"serverlessStreaming": smuggled}),
        json.dumps({"action": "stream", "serverlessStreaming": smuggled}),
    ]
    for body in bodies:
        websocket.handler(ws_event("stream", body, connection="attacker"), Context())
    # a route event that somehow carries the key at the top level is still a route event
    event = {**stream_event("attacker"), "serverlessStreaming": smuggled}
    websocket.handler(event, Context())
    for call in fake.calls:  # async mode: replay the self-invokes the driver made
        payload = json.loads(call["Payload"])
        assert payload["serverlessStreaming"]["connectionId"] == "attacker"
        websocket.handler(payload, Context())
    assert env.posts.messages and {cid for cid, _ in env.posts.messages} == {"attacker"}


# -- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "binary", "reason"),
    [
        ("not json", False, "not JSON"),
        ("[1, 2]", False, "JSON object"),
        ('{"action": "chat"}', False, "unknown action"),
        ('{"prompt": "x"}', False, "unknown action"),
        ('{"action": "stream"}', True, "binary"),
        (None, False, "empty"),
        ("", False, "empty"),
        ('{"action":"stream","p":"' + "x" * (128 * 1024) + '"}', False, "128 KB"),
        ("[" * 100_000, False, "not JSON"),
    ],
)
def test_bad_messages_get_one_error_frame_and_a_4xx(env: Env, body: Any, binary: bool, reason: str) -> None:
    called: list[Any] = []
    env.use(lambda event, context: called.append(event) or iter(["never"]))
    event = ws_event("$default", body)
    event["isBase64Encoded"] = binary
    answer = websocket.handler(event, Context())
    assert answer == {"statusCode": 400}
    (frame,) = env.posts.frames()
    assert frame["type"] == "error" and frame["errorType"] == "BadRequest" and reason in frame["message"]
    assert called == []


@pytest.mark.parametrize(
    "event", [None, [], "x", {}, {"requestContext": "x"}, {"requestContext": {"connectionId": 5}}, 42]
)
def test_events_that_are_not_websocket_events_are_refused(env: Env, event: Any) -> None:
    assert websocket.handler(event, Context())["statusCode"] == 400
    assert env.posts.attempts == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
    json_values.map(json.dumps),
    st.dictionaries(st.text(max_size=10), json_values, max_size=4)
    .flatmap(
        lambda d: (
            st.just(d)
            | st.one_of(st.just("stream"), st.text(max_size=20), json_values).map(
                lambda action: {**d, "action": action}
            )
        )
    )
    .map(lambda d: json.dumps(d, ensure_ascii=False)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, binary=st.booleans(), route=st.sampled_from(["stream", "$default", "other"]))
def test_fuzzed_messages_never_crash_and_never_run_user_code_unless_they_are_stream_requests(
    env: Env, body: str, binary: bool, route: str
) -> None:
    called: list[Any] = []
    env.use(lambda event, context: called.append(event) or iter(["ok"]))
    before = len(env.posts.messages)
    event = ws_event(route, body)
    event["isBase64Encoded"] = binary
    answer = websocket.handler(event, Context())
    frames = [json.loads(data) for _, data in env.posts.messages[before:]]
    try:
        request = json.loads(body)
    except ValueError:
        request = None
    valid = not binary and isinstance(request, dict) and request.get("action") == "stream"
    if valid:
        assert answer == {"statusCode": 200}
        assert called == [event]
        assert frames == [{"type": "chunk", "data": "ok"}, {"type": "done"}]
    else:
        assert answer["statusCode"] == 400
        assert called == []
        assert len(frames) == 1 and frames[0]["type"] == "error" and frames[0]["errorType"] == "BadRequest"


# -- endpoints ----------------------------------------------------------------------------------------------
def test_management_endpoint_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    aws = {"domainName": "abc.execute-api.eu-west-1.amazonaws.com", "stage": "prod", "apiId": "abc"}
    assert websocket.management_endpoint(aws) == "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    custom = {"domainName": "ws.example.com", "stage": "live", "apiId": "abc"}
    assert websocket.management_endpoint(custom) == "https://abc.execute-api.eu-west-1.amazonaws.com/live"
    local = {"domainName": "localhost:4510", "stage": "dev", "apiId": "abc"}
    assert websocket.management_endpoint(local) == "http://localhost:4510/dev"
    monkeypatch.setenv("AWS_REGION", "cn-north-1")  # the aws-cn partition has its own domain
    china = {"domainName": "abc.execute-api.cn-north-1.amazonaws.com.cn", "stage": "prod", "apiId": "abc"}
    assert websocket.management_endpoint(china) == "https://abc.execute-api.cn-north-1.amazonaws.com.cn/prod"
    assert websocket.management_endpoint(custom) == "https://abc.execute-api.cn-north-1.amazonaws.com.cn/live"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:5000")
    assert websocket.management_endpoint(aws) is None  # boto3 picks the emulator's endpoint


def test_chunk_messages_split_exactly_and_stay_under_the_limit() -> None:
    text = "\x01" * 100 + "🎉" * 100 + '"' * 100
    messages = websocket.chunk_messages(text, 200)
    assert all(len(message) <= 200 for message in messages)
    assert "".join(json.loads(message)["data"] for message in messages) == text
    assert websocket.chunk_messages("", 200) == []


def test_clients_are_made_once_per_endpoint(env: Env) -> None:
    env.use(lambda event, context: iter(["x"]))
    for _ in range(3):
        assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
    other = stream_event()
    other["requestContext"]["stage"] = "beta"
    assert websocket.handler(other, Context()) == {"statusCode": 200}
    endpoints = sorted(str(key[1]) for key in websocket._clients if key[0] == "apigatewaymanagementapi")
    assert endpoints == [f"https://{DOMAIN}/beta", f"https://{DOMAIN}/prod"]


def test_an_unreachable_endpoint_is_retried_a_bounded_number_of_times(env: Env) -> None:
    from cdk_serverless_patterns.local.server import free_port

    closed = threading.Event()

    def handler(event: Any, context: Any) -> Iterator[str]:
        try:
            while True:
                yield "x"
                time.sleep(0.001)
        finally:
            closed.set()

    env.use(handler)
    domain = f"127.0.0.1:{free_port()}"  # nothing listens there
    event = ws_event("stream", json.dumps({"action": "stream"}), domainName=domain)
    endpoint = websocket.management_endpoint(event["requestContext"])
    assert endpoint == f"http://{domain}/prod"
    sends: list[Any] = []
    client = websocket._client("apigatewaymanagementapi", endpoint)
    client.meta.events.register("before-send.apigatewaymanagementapi.PostToConnection", lambda **kw: sends.append(1))
    started = time.monotonic()
    assert websocket.handler(event, Context()) == {"statusCode": 502}
    assert time.monotonic() - started < websocket.POST_BUDGET_SECONDS
    assert closed.is_set()
    assert len(sends) == websocket.POST_ATTEMPTS  # our loop's calls; botocore's own retries are off
    assert env.posts.attempts == 0


def test_named_events_get_their_own_messages_after_the_text_before_them(env: Env) -> None:
    def handler(event: Any, context: Any) -> Iterator[Any]:
        yield "Hello "
        yield core.Event(data="plain", event=None)  # unnamed: just text
        yield core.Event(data='{"tokens": 2}', event="summary", id="7")
        yield core.Event(data="", event="ping")
        yield core.Event(data="x" * 40_000, event="big\ud800")  # split; a lone surrogate cannot break the JSON
        yield "tail"

    env.use(handler)
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
    frames = env.posts.frames()
    assert frames[0] == {"type": "chunk", "data": "Hello plain"}
    assert frames[1] == {"type": "chunk", "event": "summary", "id": "7", "data": '{"tokens": 2}'}
    assert frames[2] == {"type": "chunk", "event": "ping", "data": ""}
    big = [frame for frame in frames if frame.get("event") == "big\ufffd"]
    assert len(big) == 3 and "".join(frame["data"] for frame in big) == "x" * 40_000
    assert frames[-2:] == [{"type": "chunk", "data": "tail"}, {"type": "done"}]
    assert max(len(data) for _, data in env.posts.messages) <= websocket.frame_bytes()


def test_named_events_fit_even_the_smallest_frame_setting(env: Env) -> None:
    env.monkeypatch.setenv("STREAMING_FRAME_BYTES", "64")
    env.use(lambda event, context: iter([core.Event(data="d" * 500, event="e" * 500, id="i" * 500)]))
    assert websocket.handler(stream_event(), Context()) == {"statusCode": 200}
    frames = env.posts.frames()
    assert "".join(frame["data"] for frame in frames[:-1]) == "d" * 500
    assert {frame["event"] for frame in frames[:-1]} == {"e" * 128}
    assert max(len(data) for _, data in env.posts.messages) <= websocket.MAX_FRAME_BYTES
