"""The front door's function URLs: payload format 2.0, response rules, IAM auth, streaming, CORS."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from test_local_front_door_support import ACCOUNT, PyInvoker, function_arn, request, resolver

from cdk_serverless_patterns.local.front_door import FrontDoor


def url_template(auth: str = "NONE", stream: bool = False, cors: dict[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"TargetFunctionArn": {"Fn::GetAtt": ["Fn", "Arn"]}, "AuthType": auth}
    if stream:
        props["InvokeMode"] = "RESPONSE_STREAM"
    if cors:
        props["Cors"] = cors
    return {
        "Resources": {
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {}},
            "FnUrl": {"Type": "AWS::Lambda::Url", "Properties": props},
        }
    }


@pytest.fixture()
def handlers() -> dict[str, Callable[[Any], Any]]:
    return {}


@pytest.fixture()
def invoker(handlers: dict[str, Callable[[Any], Any]]) -> PyInvoker:
    return PyInvoker(handlers)


@pytest.fixture()
def door(invoker: PyInvoker) -> Iterator[FrontDoor]:
    with FrontDoor(invoker) as front_door:
        yield front_door


def serve(door: FrontDoor, handler: Callable[[Any], Any], handlers: dict[str, Any], **kwargs: Any) -> str:
    handlers["fn"] = handler
    (endpoint,) = door.add_stack("UrlStack", url_template(**kwargs), resolver({"Fn": function_arn("fn")}))
    assert endpoint.kind == "function_url" and endpoint.logical_id == "FnUrl"
    assert door.attribute("UrlStack", "FnUrl", "FunctionUrl") == endpoint.url
    assert door.attribute("UrlStack", "FnUrl", "FunctionArn") == function_arn("fn")
    assert door.attribute("UrlStack", "Fn", "FunctionUrl") is None
    return endpoint.url


def test_event_has_payload_format_2(door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any]) -> None:
    url = serve(door, lambda event: {"statusCode": 200, "body": "ok"}, handlers)
    reply = request(
        f"{url}a/b%20c?x=1&x=2&y=z",
        method="POST",
        body=b'{"k": 1}',
        headers={"Content-Type": "application/json", "X-Multi": "v", "Cookie": "s=1; t=2", "User-Agent": "probe"},
    )
    assert (reply.status, reply.body) == (200, b"ok")
    (event,) = invoker.events("fn")
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/a/b%20c" and event["rawQueryString"] == "x=1&x=2&y=z"  # as encoded
    assert event["queryStringParameters"] == {"x": "1,2", "y": "z"}
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["headers"]["x-multi"] == "v" and "cookie" not in event["headers"]
    assert (event["body"], event["isBase64Encoded"]) == ('{"k": 1}', False)
    context = event["requestContext"]
    assert context["accountId"] == "anonymous" and "authorizer" not in context
    assert context["http"] == {
        "method": "POST",
        "path": "/a/b%20c",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "probe",
    }
    assert context["stage"] == "$default" and context["requestId"] and context["timeEpoch"] > 0
    request(url, method="PUT", body=b"\x00\xff", headers={"Content-Type": "application/octet-stream"})
    binary = invoker.events("fn")[-1]
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\x00\xff"
    request(url)
    assert "body" not in invoker.events("fn")[-1] and "queryStringParameters" not in invoker.events("fn")[-1]


@pytest.mark.parametrize(
    ("answer", "status", "content_type", "body"),
    [
        ({"message": "hi"}, 200, "application/json", b'{"message": "hi"}'),
        ("plain string", 200, "application/json", b'"plain string"'),
        (
            {"statusCode": 418, "headers": {"content-type": "text/plain"}, "body": "teapot"},
            418,
            "text/plain",
            b"teapot",
        ),
        (
            {"statusCode": 200, "body": base64.b64encode(b"\x01\x02").decode(), "isBase64Encoded": True},
            200,
            None,
            b"\x01\x02",
        ),
        ({"statusCode": "x"}, 502, "application/json", None),
    ],
)
def test_response_rules(
    door: FrontDoor, handlers: dict[str, Any], answer: Any, status: int, content_type: str | None, body: bytes | None
) -> None:
    url = serve(door, lambda event: answer, handlers)
    reply = request(url)
    assert reply.status == status
    if content_type:
        assert reply.headers["Content-Type"] == content_type
    if body is not None:
        assert reply.body == body


def test_cookies_and_function_errors(door: FrontDoor, handlers: dict[str, Any]) -> None:
    url = serve(door, lambda event: {"statusCode": 200, "cookies": ["a=1", "b=2; Secure"], "body": ""}, handlers)
    assert request(url).headers.get_all("Set-Cookie") == ["a=1", "b=2; Secure"]

    def fail(event: Any) -> Any:
        raise RuntimeError("nope")

    handlers["fn"] = fail
    assert request(url).status == 502


def sign(url: str) -> dict[str, str]:
    aws_request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials("AKIDLOCAL", "secret"), "lambda", "us-east-1").add_auth(aws_request)
    return dict(aws_request.headers.items())


def test_aws_iam_auth(door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any]) -> None:
    url = serve(door, lambda event: {"ok": True}, handlers, auth="AWS_IAM")
    for headers in ({}, {"Authorization": "Bearer x"}, {"Authorization": "AWS4-HMAC-SHA256 nothing"}):
        reply = request(url, headers=headers)
        assert (reply.status, reply.json()) == (403, {"Message": "Forbidden"})
    assert invoker.events("fn") == []
    reply = request(url, headers=sign(url))
    assert (reply.status, reply.json()) == (200, {"ok": True})
    (event,) = invoker.events("fn")
    assert event["requestContext"]["accountId"] == ACCOUNT
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == "AKIDLOCAL"


def test_cors_preflight_is_answered_without_the_function(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any]
) -> None:
    cors = {
        "AllowOrigins": ["https://app.example"],
        "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["x-a"],
        "MaxAge": 60,
    }
    url = serve(door, lambda event: {"ok": True}, handlers, cors=cors)
    reply = request(
        url, method="OPTIONS", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    )
    assert reply.status == 200
    assert reply.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert reply.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert reply.headers["Access-Control-Max-Age"] == "60"
    assert invoker.events("fn") == []
    assert request(url, headers={"Origin": "https://app.example"}).headers["Access-Control-Allow-Origin"]
    assert request(url, headers={"Origin": "https://evil.example"}).headers["Access-Control-Allow-Origin"] is None


def test_response_stream_arrives_chunk_by_chunk(door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any]) -> None:
    release = threading.Event()

    def stream(event: Any) -> Iterator[bytes]:
        yield json.dumps({"statusCode": 200, "headers": {"content-type": "text/event-stream"}}).encode() + b"\x00" * 8
        yield b"data: one\n\n"
        assert release.wait(10)
        yield b"data: two\n\n"

    url = serve(door, stream, handlers, stream=True)
    path = url.split(str(door.port), 1)[1]
    with socket.create_connection(("127.0.0.1", door.port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        buffer = bytearray()
        deadline = time.monotonic() + 5
        while b"data: one" not in buffer and time.monotonic() < deadline:
            buffer += sock.recv(65536)
        assert b"data: one" in buffer and b"data: two" not in buffer
        assert b"content-type: text/event-stream" in buffer and b"Transfer-Encoding: chunked" in buffer
        release.set()
        while data := sock.recv(65536):
            buffer += data
    assert bytes(buffer).endswith(b"data: two\n\n\r\n0\r\n\r\n")
    assert invoker.calls[-1].streamed


def test_unknown_url_id(door: FrontDoor) -> None:
    assert request(f"{door.endpoint}/lambda-url/doesnotexist/").status == 404


def test_stream_without_prelude_is_the_body_and_early_errors_are_502(door: FrontDoor, handlers: dict[str, Any]) -> None:
    def raw(event: Any) -> Iterator[bytes]:
        yield b"plain "
        yield b"bytes"

    url = serve(door, raw, handlers, stream=True)
    reply = request(url)
    assert (reply.status, reply.headers["Content-Type"], reply.body) == (
        200,
        "application/octet-stream",
        b"plain bytes",
    )

    def early(event: Any) -> Iterator[bytes]:
        raise RuntimeError("before any byte")
        yield b""  # pragma: no cover

    handlers["fn"] = early
    assert request(url).status == 502
