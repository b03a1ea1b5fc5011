"""The front door's WebSocket APIs: $connect with an authorizer, routes, @connections, $disconnect, limits.

A real WebSocket client (the ``websockets`` package) talks to the front door; handlers run in process
and reach connections through the management API over HTTP, as a deployed function would.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_local_front_door_support import (
    ACCOUNT,
    SIGNED,
    PyInvoker,
    function_arn,
    policy,
    request,
    resolver,
    signed_request,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from cdk_serverless_patterns.local.front_door import FrontDoor
from cdk_serverless_patterns.local.lambda_environment import wait_for
from cdk_serverless_patterns.local.server import MotoServer


def integration(name: str) -> dict[str, Any]:
    return {
        "Type": "AWS::ApiGatewayV2::Integration",
        "Properties": {
            "ApiId": {"Ref": "Ws"},
            "IntegrationType": "AWS_PROXY",
            "IntegrationUri": {
                "Fn::Join": [
                    "",
                    [
                        "arn:",
                        {"Ref": "AWS::Partition"},
                        ":apigateway:",
                        {"Ref": "AWS::Region"},
                        ":lambda:path/2015-03-31/functions/",
                        {"Fn::GetAtt": [f"Fn{name}", "Arn"]},
                        "/invocations",
                    ],
                ]
            },
        },
    }


def route(key: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::ApiGatewayV2::Route",
        "Properties": {
            "ApiId": {"Ref": "Ws"},
            "RouteKey": key,
            "Target": {"Fn::Join": ["", ["integrations/", {"Ref": f"Integ{name}"}]]},
            **extra,
        },
    }


def ws_template() -> tuple[dict[str, Any], dict[str, str]]:
    names = ["connect", "disconnect", "send", "default", "auth"]
    resources: dict[str, Any] = {
        "Ws": {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {
                "Name": "ws",
                "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": "$request.body.action",
            },
        },
        "WsStage": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {"ApiId": {"Ref": "Ws"}, "StageName": "dev"}},
        "WsAuth": {
            "Type": "AWS::ApiGatewayV2::Authorizer",
            "Properties": {
                "ApiId": {"Ref": "Ws"},
                "AuthorizerType": "REQUEST",
                "Name": "auth",
                "IdentitySource": ["route.request.querystring.token"],
                "AuthorizerUri": integration("auth")["Properties"]["IntegrationUri"],
            },
        },
        "RouteConnect": route("$connect", "connect", AuthorizationType="CUSTOM", AuthorizerId={"Ref": "WsAuth"}),
        "RouteDisconnect": route("$disconnect", "disconnect"),
        "RouteSend": route("sendmessage", "send"),
        "RouteDefault": route("$default", "default", RouteResponseSelectionExpression="$default"),
    }
    physical = {"Ws": "wsapi0001"}
    for name in names:
        resources[f"Fn{name}"] = {"Type": "AWS::Lambda::Function", "Properties": {}}
        physical[f"Fn{name}"] = function_arn(name)
        if name != "auth":
            resources[f"Integ{name}"] = integration(name)
    return {"Resources": resources}, physical


@pytest.fixture()
def invoker() -> PyInvoker:
    return PyInvoker({})


@pytest.fixture()
def door(invoker: PyInvoker) -> Iterator[FrontDoor]:
    with FrontDoor(invoker) as front_door:
        template, physical = ws_template()

        def authorize(event: Any) -> Any:
            token = event["queryStringParameters"]["token"]
            if token == "bad":
                raise Exception("Unauthorized")
            return policy("Allow" if token != "deny" else "Deny", event["methodArn"], context={"user": token})

        def connect_handler(event: Any) -> Any:
            reject = (event.get("queryStringParameters") or {}).get("reject")
            return {"statusCode": int(reject) if reject else 200}

        def send(event: Any) -> Any:
            context = event["requestContext"]
            target = json.loads(event["body"])["to"] or context["connectionId"]
            management = (
                f"http://{context['domainName']}/ws/{context['apiId']}/{context['stage']}/@connections/{target}"
            )
            urllib.request.urlopen(
                urllib.request.Request(management, data=b"relayed", method="POST", headers=SIGNED), timeout=5
            )
            return {"statusCode": 200}

        def default(event: Any) -> Any:
            if event["body"] == "crash":
                raise RuntimeError("crash")
            return {"statusCode": 200, "body": f"default:{event['body']}"}

        invoker.handlers.update(
            auth=authorize, connect=connect_handler, send=send, default=default, disconnect=lambda event: {}
        )
        (endpoint,) = front_door.add_stack("WsStack", template, resolver(physical))
        assert endpoint.kind == "websocket" and endpoint.url == f"ws://localhost:{front_door.port}/ws/wsapi0001/dev"
        yield front_door


def url(door: FrontDoor, query: str = "token=alice") -> str:
    return f"ws://localhost:{door.port}/ws/wsapi0001/dev?{query}"


def management(door: FrontDoor, connection_id: str) -> str:
    return f"{door.endpoint}/ws/wsapi0001/dev/@connections/{connection_id}"


def connection_id(invoker: PyInvoker) -> str:
    return str(invoker.events("connect")[-1]["requestContext"]["connectionId"])


def test_connect_route_and_disconnect(door: FrontDoor, invoker: PyInvoker) -> None:
    with connect(url(door), open_timeout=5) as client:
        (auth_event,) = invoker.events("auth")
        assert auth_event["type"] == "REQUEST"
        assert auth_event["methodArn"] == f"arn:aws:execute-api:us-east-1:{ACCOUNT}:wsapi0001/dev/$connect"
        (connect_event,) = invoker.events("connect")
        context = connect_event["requestContext"]
        assert (context["routeKey"], context["eventType"], context["stage"], context["apiId"]) == (
            "$connect",
            "CONNECT",
            "dev",
            "wsapi0001",
        )
        assert context["domainName"] == f"localhost:{door.port}" and context["authorizer"]["user"] == "alice"
        assert connect_event["queryStringParameters"] == {"token": "alice"}
        cid = context["connectionId"]
        client.send(json.dumps({"action": "sendmessage", "to": None}))
        assert client.recv(timeout=5) == "relayed"
        (send_event,) = invoker.events("send")
        assert send_event["requestContext"]["routeKey"] == "sendmessage"
        assert send_event["requestContext"]["eventType"] == "MESSAGE"
        assert send_event["requestContext"]["connectionId"] == cid and send_event["isBase64Encoded"] is False
        client.send("not json")
        assert client.recv(timeout=5) == "default:not json"
        client.send(json.dumps({"action": "unknown"}))
        assert client.recv(timeout=5) == 'default:{"action": "unknown"}'
        client.send("crash")
        assert json.loads(client.recv(timeout=5))["message"] == "Internal server error"
        client.send(b"\x00\x01")
        assert client.recv(timeout=5) == "default:AAE="
        assert invoker.events("default")[-1]["isBase64Encoded"] is True
    (disconnect_event,) = wait_for(lambda: invoker.events("disconnect"), timeout=5)
    assert disconnect_event["requestContext"]["eventType"] == "DISCONNECT"
    assert disconnect_event["requestContext"]["connectionId"] == cid
    assert disconnect_event["requestContext"]["disconnectStatusCode"] == 1000
    reply = signed_request(management(door, cid), method="POST", body=b"late")
    assert reply.status == 410 and reply.headers["x-amzn-ErrorType"] == "GoneException"


def test_management_api_post_get_delete(door: FrontDoor, invoker: PyInvoker) -> None:
    with connect(url(door), open_timeout=5) as client:
        cid = connection_id(invoker)
        assert signed_request(management(door, cid), method="POST", body="héllo".encode()).status == 200
        assert client.recv(timeout=5) == "héllo"
        assert signed_request(management(door, cid), method="POST", body=b"\xff\x00").status == 200
        assert client.recv(timeout=5) == b"\xff\x00"
        info = signed_request(management(door, cid)).json()
        assert info["identity"]["sourceIp"] == "127.0.0.1" and info["connectedAt"].endswith("Z")
        assert signed_request(management(door, cid), method="POST", body=b"x" * (128 * 1024 + 1)).status == 413
        assert signed_request(management(door, cid), method="DELETE").status == 204
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)
    assert wait_for(lambda: invoker.events("disconnect"), timeout=5)
    for method in ("GET", "DELETE", "POST"):
        assert signed_request(management(door, cid), method=method, body=b"x").status == 410
    assert signed_request(management(door, "unknown"), method="POST", body=b"x").status == 410


@pytest.mark.parametrize(
    ("query", "status"),
    [("token=deny", 403), ("token=bad", 401), ("other=1", 401), ("token=ok&reject=403", 403)],
)
def test_rejected_handshakes(door: FrontDoor, invoker: PyInvoker, query: str, status: int) -> None:
    with pytest.raises(InvalidStatus) as raised:
        connect(url(door, query), open_timeout=5)
    assert raised.value.response.status_code == status
    assert invoker.events("disconnect") == []


def test_unknown_api_stage_and_bad_handshake(door: FrontDoor) -> None:
    with pytest.raises(InvalidStatus) as raised:
        connect(f"ws://localhost:{door.port}/ws/wsapi0001/nostage?token=a", open_timeout=5)
    assert raised.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as raised:
        connect(f"ws://localhost:{door.port}/ws/nope/dev", open_timeout=5)
    assert raised.value.response.status_code == 404
    assert request(f"{door.endpoint}/ws/wsapi0001/dev?token=a").status == 400  # no upgrade


def test_message_and_frame_limits(door: FrontDoor, invoker: PyInvoker) -> None:
    client: ClientConnection
    with connect(url(door), open_timeout=5, max_size=None) as client:
        client.send("x" * (32 * 1024 + 1))  # one frame larger than API Gateway's 32 KB
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with connect(url(door), open_timeout=5) as client:
        fragments = ["y" * 30000] * 5  # 150 KB in 32 KB frames: the message is over 128 KB
        client.send(fragments)
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with connect(url(door), open_timeout=5) as client:
        client.send(["z" * 30000] * 4)  # 120 KB in fragments: accepted
        assert client.recv(timeout=5) == "default:" + "z" * 120000


def test_stop_closes_connections(invoker: PyInvoker, door: FrontDoor) -> None:
    with connect(url(door), open_timeout=5) as client:
        door.stop()
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


def test_moto_management_api_reaches_connections(door: FrontDoor, invoker: PyInvoker) -> None:
    undo = door.patch_moto_management_api()
    try:
        with MotoServer() as moto, connect(url(door), open_timeout=5) as client:
            api = moto.client("apigatewaymanagementapi")
            cid = connection_id(invoker)
            api.post_to_connection(ConnectionId=cid, Data=b"from boto3")
            assert client.recv(timeout=5) == "from boto3"
            assert api.get_connection(ConnectionId=cid)["Identity"]["SourceIp"] == "127.0.0.1"
            with pytest.raises(ClientError) as gone:
                api.post_to_connection(ConnectionId="nope", Data=b"x")
            assert gone.value.response["Error"]["Code"] == "GoneException"
            assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
            api.delete_connection(ConnectionId=cid)
            with pytest.raises(ConnectionClosed):
                client.recv(timeout=5)
    finally:
        undo()
    from moto.apigatewaymanagementapi.models import ApiGatewayManagementApiBackend

    assert ApiGatewayManagementApiBackend.post_to_connection.__module__.startswith("moto.")


def test_iam_on_connect_wants_a_signed_handshake(invoker: PyInvoker) -> None:
    """``AuthorizationType: AWS_IAM`` on $connect: an unsigned handshake is refused with 403 before $connect runs;
    a presigned URL (what browsers must use) or a SigV4 Authorization header connects, and the caller's access key
    reaches $connect's identity."""
    template, physical = ws_template()
    template["Resources"]["RouteConnect"] = route("$connect", "connect", AuthorizationType="AWS_IAM")
    invoker.handlers.update(connect=lambda event: {"statusCode": 200}, disconnect=lambda event: {})
    with FrontDoor(invoker) as front_door:
        front_door.add_stack("WsStack", template, resolver(physical))
        base = f"ws://localhost:{front_door.port}/ws/wsapi0001/dev"
        with pytest.raises(InvalidStatus) as raised:
            connect(base, open_timeout=5)
        assert raised.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as raised:  # a half-presigned URL is not a signature
            connect(f"{base}?X-Amz-Algorithm=AWS4-HMAC-SHA256", open_timeout=5)
        assert raised.value.response.status_code == 403
        assert invoker.events("connect") == []
        presigned = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDLOCAL%2F20261130%2Fus-east-1%2Fexecute-api"
        with connect(f"{base}?{presigned}", open_timeout=5):
            identity = invoker.events("connect")[-1]["requestContext"]["identity"]
            assert identity["accessKey"] == "AKIDLOCAL" and identity["accountId"] == ACCOUNT
        with connect(base, open_timeout=5, additional_headers={"Authorization": SIGNED["Authorization"]}):
            assert len(invoker.events("connect")) == 2


def test_an_asynchronous_integration_answers_nothing_and_outlives_the_route(invoker: PyInvoker) -> None:
    """``IntegrationType: AWS`` with ``X-Amz-Invocation-Type: 'Event'``: the function is invoked asynchronously (it
    may run past the 29 s integration timeout and post to the connection itself); the client gets no answer."""
    import threading

    template, physical = ws_template()
    resources = template["Resources"]
    resources["Integsend"]["Properties"].update(
        IntegrationType="AWS",
        RequestParameters={"integration.request.header.X-Amz-Invocation-Type": "'Event'"},
    )
    release = threading.Event()
    finished = threading.Event()

    def slow(event: Any) -> Any:
        release.wait(10)
        finished.set()
        return {"statusCode": 200, "body": "never sent"}

    invoker.handlers.update(
        auth=lambda event: policy("Allow", event["methodArn"]),
        connect=lambda event: {"statusCode": 200},
        disconnect=lambda event: {},
        send=slow,
        default=lambda event: {"statusCode": 200, "body": "default"},
    )
    with FrontDoor(invoker) as front_door:
        front_door.add_stack("WsStack", template, resolver(physical))
        with connect(url(front_door), open_timeout=5) as client:
            client.send(json.dumps({"action": "sendmessage"}))
            (event,) = wait_for(lambda: invoker.events("send"), timeout=5)
            assert event["requestContext"]["routeKey"] == "sendmessage" and not finished.is_set()
            client.send("next")  # the connection is not held by the running invocation
            assert client.recv(timeout=5) == "default"
            release.set()
            assert finished.wait(5)
            with pytest.raises(TimeoutError):
                client.recv(timeout=0.5)  # an asynchronous integration never answers the client
