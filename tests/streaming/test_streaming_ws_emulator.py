"""The WebSocket driver end to end through the emulator's WebSocket front door, with a real WebSocket client.

A hand-built template (as the front door's own tests build them) wires ``$connect`` (with a REQUEST
authorizer), ``$disconnect``, ``stream`` and ``$default`` to the driver, ``serverless_streaming.websocket.handler``,
which runs in process (``PyInvoker``, as the Lambda runner would run the deployed code). The connections table is
in a moto server; the driver reaches the client through the management API in both forms a function has in the
emulator: boto3's default endpoint when ``AWS_ENDPOINT_URL`` is set (moto's ``apigatewaymanagementapi``, which the
front door patches to reach its connections, answering 410 for gone ones), or ``http://{domainName}/{stage}``
straight to the front door. The deployed-function version (a real Lambda process) is the lead's later work.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambda_src" / "streaming_runtime" / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))

from serverless_streaming import tokens, websocket
from test_local_front_door_support import PyInvoker, function_arn, policy, resolver

from cdk_serverless_patterns.local.front_door import FrontDoor
from cdk_serverless_patterns.local.lambda_environment import wait_for
from cdk_serverless_patterns.local.server import MotoServer

PROMPT = "What is response streaming?"


def integration(name: str) -> dict[str, Any]:
    uri = {
        "Fn::Join": [
            "",
            [
                "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/",
                {"Fn::GetAtt": [f"Fn{name}", "Arn"]},
                "/invocations",
            ],
        ]
    }
    return {
        "Type": "AWS::ApiGatewayV2::Integration",
        "Properties": {"ApiId": {"Ref": "Ws"}, "IntegrationType": "AWS_PROXY", "IntegrationUri": uri},
    }


def route(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::ApiGatewayV2::Route",
        "Properties": {
            "ApiId": {"Ref": "Ws"},
            "RouteKey": key,
            "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "Integdriver"}]]},
            **extra,
        },
    }


def template() -> tuple[dict[str, Any], dict[str, str]]:
    resources: dict[str, Any] = {
        "Ws": {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {
                "Name": "ws",
                "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": "$request.body.action",
            },
        },
        "WsStage": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {"ApiId": {"Ref": "Ws"}, "StageName": "live"}},
        "WsAuth": {
            "Type": "AWS::ApiGatewayV2::Authorizer",
            "Properties": {
                "ApiId": {"Ref": "Ws"},
                "AuthorizerType": "REQUEST",
                "Name": "auth",
                "IdentitySource": ["route.request.header.Authorization"],
                "AuthorizerUri": integration("auth")["Properties"]["IntegrationUri"],
            },
        },
        "Integdriver": integration("driver"),
        "RouteConnect": route("$connect", AuthorizationType="CUSTOM", AuthorizerId={"Ref": "WsAuth"}),
        "RouteDisconnect": route("$disconnect"),
        "RouteStream": route("stream"),
        "RouteDefault": route("$default"),
        "Fndriver": {"Type": "AWS::Lambda::Function", "Properties": {}},
        "Fnauth": {"Type": "AWS::Lambda::Function", "Properties": {}},
    }
    physical = {"Ws": "streamws01", "Fndriver": function_arn("driver"), "Fnauth": function_arn("auth")}
    return {"Resources": resources}, physical


@dataclass
class Context:
    invoked_function_arn: str = function_arn("driver")
    aws_request_id: str = "req"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class AsyncLambda:
    """Lambda's ``Invoke`` with ``InvocationType=Event``: the payload runs later, in its own thread."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.answers: list[Any] = []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        assert InvocationType == "Event"
        event = json.loads(Payload)
        thread = threading.Thread(target=lambda: self.answers.append(websocket.handler(event, Context())))
        thread.start()
        self.threads.append(thread)
        return {"StatusCode": 202}


@dataclass
class Stack:
    door: FrontDoor
    moto: MotoServer
    invoker: PyInvoker
    user: dict[str, Any]
    table: str

    @property
    def url(self) -> str:
        return f"ws://localhost:{self.door.port}/ws/streamws01/live"

    def row(self, connection_id: str) -> Any:
        return (
            self.moto.client("dynamodb")
            .get_item(TableName=self.table, Key={"connectionId": {"S": connection_id}})
            .get("Item")
        )

    def connection_id(self) -> str:
        return str(self.invoker.events("driver")[0]["requestContext"]["connectionId"])


user_state: dict[str, Any] = {}


def user_handler(event: Any, context: Any) -> Iterator[str]:
    """The user's generator (STREAMING_HANDLER): offline tokens for the request's prompt."""
    request = json.loads(event["body"])
    user_state["events"].append(event)
    source = tokens.OfflineTokens(count=request.get("count", 40), delay_seconds=request.get("delay", 0))
    try:
        yield from source.stream(request["prompt"])
    except GeneratorExit:
        user_state["closed"].set()
        raise


@pytest.fixture(params=["moto-endpoint", "front-door-endpoint"])
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    user_state.clear()
    user_state.update(events=[], closed=threading.Event(), answers=[])
    module = type(sys)("ws_emulator_user_code")
    module.handler = user_handler  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ws_emulator_user_code", module)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", websocket.ENV_DISPATCH):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STREAMING_HANDLER", "ws_emulator_user_code.handler")
    table = f"ws-connections-{uuid.uuid4().hex[:8]}"  # moto's state outlives its servers in this process
    monkeypatch.setenv("STREAMING_CONNECTIONS_TABLE", table)
    monkeypatch.setenv("STREAMING_FRAME_MS", "20")
    websocket._reset()

    def authorize(event: Any) -> Any:
        token = (event.get("headers") or {}).get("Authorization", "")
        if token != "Bearer good":
            raise Exception("Unauthorized")
        return policy("Allow", event["methodArn"], context={"tenant": "acme"}, principal="user-42")

    def driver(event: Any) -> Any:
        answer = websocket.handler(event, Context())
        user_state["answers"].append((event["requestContext"]["routeKey"], answer))
        return answer

    invoker = PyInvoker({"auth": authorize, "driver": driver})
    with MotoServer() as moto, FrontDoor(invoker) as door:
        undo = door.patch_moto_management_api()
        try:
            if request.param == "moto-endpoint":
                monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)  # as the local cloud gives every function
            else:
                monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint)
            moto.client("dynamodb").create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            resources, physical = template()
            door.add_stack("StreamWs", resources, resolver(physical))
            yield Stack(door, moto, invoker, user_state, table)
        finally:
            undo()
            websocket._reset()


def receive_stream(client: Any, timeout: float = 10) -> list[dict[str, Any]]:
    """The messages of one stream, up to and including ``done`` or ``error``."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        raw = client.recv(timeout=max(0.1, deadline - time.monotonic()))
        assert isinstance(raw, str) and len(raw.encode("utf-8")) <= websocket.MAX_FRAME_BYTES
        frames.append(json.loads(raw))
        if frames[-1]["type"] != "chunk":
            return frames


def test_connect_stream_and_disconnect_end_to_end(stack: Stack) -> None:
    with connect(stack.url, additional_headers={"Authorization": "Bearer good"}, open_timeout=5) as client:
        cid = stack.connection_id()
        row = stack.row(cid)
        assert row["principalId"] == {"S": "user-42"} and row["authorizer"]["M"]["tenant"] == {"S": "acme"}
        client.send(json.dumps({"action": "stream", "prompt": PROMPT, "count": 300}))
        frames = receive_stream(client)
        assert frames[-1] == {"type": "done"}
        text = "".join(frame["data"] for frame in frames[:-1])
        assert text == "".join(tokens.OfflineTokens(count=300).stream(PROMPT))
        assert 1 <= len(frames) - 1 < 50  # batched, not one message per token
        (event,) = stack.user["events"]
        assert event["requestContext"]["routeKey"] == "stream" and event["requestContext"]["connectionId"] == cid
    assert wait_for(lambda: stack.row(cid) is None, timeout=5)  # $disconnect deleted it


def test_a_client_that_leaves_mid_stream_stops_the_generator(stack: Stack) -> None:
    with connect(stack.url, additional_headers={"Authorization": "Bearer good"}, open_timeout=5) as client:
        cid = stack.connection_id()
        client.send(json.dumps({"action": "stream", "prompt": PROMPT, "count": 100_000, "delay": 0.002}))
        first = json.loads(client.recv(timeout=5))
        assert first["type"] == "chunk"
    assert stack.user["closed"].wait(10)  # GeneratorExit reached the user's code
    assert wait_for(lambda: stack.row(cid) is None, timeout=5)
    stream_calls = [e for e in stack.invoker.events("driver") if e["requestContext"]["routeKey"] == "stream"]
    assert len(stream_calls) == 1


def test_bad_messages_get_an_error_frame_over_the_socket(stack: Stack) -> None:
    with connect(stack.url, additional_headers={"Authorization": "Bearer good"}, open_timeout=5) as client:
        client.send("this is not json")  # routed to $default
        frame = json.loads(client.recv(timeout=5))
        assert frame["type"] == "error" and frame["errorType"] == "BadRequest" and "not JSON" in frame["message"]
        client.send(json.dumps({"action": "dance"}))
        assert "unknown action" in json.loads(client.recv(timeout=5))["message"]
        client.send(b"\x00\x01")
        assert "binary" in json.loads(client.recv(timeout=5))["message"]
        client.send(json.dumps({"action": "stream", "prompt": "still works", "count": 3}))
        assert receive_stream(client)[-1] == {"type": "done"}
    assert stack.user["events"] and len(stack.user["events"]) == 1


def test_an_unauthorized_client_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    with pytest.raises(Exception) as raised:
        connect(stack.url, additional_headers={"Authorization": "Bearer bad"}, open_timeout=5)
    assert getattr(getattr(raised.value, "response", None), "status_code", None) == 401
    items = stack.moto.client("dynamodb").scan(TableName=stack.table)["Items"]
    assert items == []


def test_async_dispatch_answers_the_route_at_once_and_streams_from_the_self_invocation(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(websocket.ENV_DISPATCH, "async")
    fake = AsyncLambda()
    websocket._clients[("lambda", None)] = fake
    release = threading.Event()

    def slow(event: Any, context: Any) -> Iterator[str]:
        yield "before "
        release.wait(10)  # the route's invocation has long returned by now
        yield "after"

    sys.modules["ws_emulator_user_code"].handler = slow  # type: ignore[attr-defined]
    websocket._handlers.clear()
    with connect(stack.url, additional_headers={"Authorization": "Bearer good"}, open_timeout=5) as client:
        client.send(json.dumps({"action": "stream", "prompt": PROMPT}))
        assert json.loads(client.recv(timeout=5)) == {"type": "chunk", "data": "before "}
        assert wait_for(lambda: len(fake.threads) == 1, timeout=5)
        # the route's invocation answered while the generator is still blocked
        assert wait_for(lambda: ("stream", {"statusCode": 200}) in stack.user["answers"], timeout=5)
        release.set()
        assert receive_stream(client) == [{"type": "chunk", "data": "after"}, {"type": "done"}]
    for thread in fake.threads:
        thread.join(10)
    assert fake.answers == [{"statusCode": 200}]


def test_the_closed_socket_is_gone_for_the_management_api(stack: Stack) -> None:
    with connect(stack.url, additional_headers={"Authorization": "Bearer good"}, open_timeout=5) as client:
        cid = stack.connection_id()
    with pytest.raises(ConnectionClosed):
        client.recv(timeout=1)
    request_context = {
        "connectionId": cid,
        "routeKey": "stream",
        "eventType": "MESSAGE",
        "domainName": f"localhost:{stack.door.port}",
        "stage": "live",
    }
    event = {
        "serverlessStreaming": {
            "connectionId": cid,
            "endpoint": websocket.management_endpoint(request_context),
            "event": {
                "requestContext": request_context,
                "body": json.dumps({"action": "stream", "prompt": "x", "count": 5}),
            },
        }
    }
    assert websocket.handler(event, Context()) == {"statusCode": 410}
