"""The front door's REST APIs: routing, the proxy event and response, MOCK, authorizers, mapping, streaming.

Each test serves a hand-written template (CDK's shapes) through an in-process invoker and talks
HTTP to it on localhost, asserting what API Gateway answers.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_local_front_door_support import (
    ACCOUNT,
    PyInvoker,
    RestTemplate,
    policy,
    request,
)

from cdk_serverless_patterns.local.front_door import Endpoint, FrontDoor, evaluate_policy
from cdk_serverless_patterns.local.lambda_environment import wait_for


def echo(event: Any) -> Any:
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}


@pytest.fixture()
def handlers() -> dict[str, Callable[[Any], Any]]:
    return {"echo": echo}


@pytest.fixture()
def invoker(handlers: dict[str, Callable[[Any], Any]]) -> PyInvoker:
    return PyInvoker(handlers)


@pytest.fixture()
def door(invoker: PyInvoker) -> Iterator[FrontDoor]:
    with FrontDoor(invoker) as front_door:
        yield front_door


def serve(door: FrontDoor, api: RestTemplate, stack: str = "Stack") -> str:
    endpoints = door.add_stack(stack, api.template(), api.resolve())
    (endpoint,) = [e for e in endpoints if e.kind == "rest"]
    assert endpoint == Endpoint("rest", "Api", f"{door.endpoint}/restapis/api0001/prod/_user_request_/", stack)
    return endpoint.url.rstrip("/")


def items_api(**kwargs: Any) -> RestTemplate:
    api = RestTemplate(**kwargs)
    items = api.resource("Items", "items")
    item = api.resource("Item", "{id}", items)
    special = api.resource("Special", "special", items)
    files = api.resource("Files", "files")
    proxy = api.resource("Proxy", "{proxy+}", files)
    api.method(items, "GET", "echo")
    api.method(item, "ANY", "echo")
    api.method(special, "GET", "echo")
    api.method(proxy, "ANY", "echo")
    api.method(None, "GET", "echo")
    return api


# -- routing and the proxy event --------------------------------------------------------------------
def test_proxy_event_has_the_documented_shape(door: FrontDoor) -> None:
    base = serve(door, items_api(stage_variables={"color": "blue"}))
    reply = request(f"{base}/items/42?x=1&x=2&y=", headers={"X-Multi": "a", "User-Agent": "probe"})
    assert reply.status == 200
    event = reply.json()
    assert event["resource"] == "/items/{id}"
    assert event["path"] == "/items/42"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["headers"]["X-Multi"] == "a" and event["multiValueHeaders"]["X-Multi"] == ["a"]
    assert event["stageVariables"] == {"color": "blue"}
    assert event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["accountId"] == ACCOUNT and context["apiId"] == "api0001" and context["stage"] == "prod"
    assert context["resourcePath"] == "/items/{id}" and context["httpMethod"] == "GET"
    assert context["path"] == "/prod/items/42"
    assert context["identity"]["sourceIp"] == "127.0.0.1" and context["identity"]["userAgent"] == "probe"
    assert context["requestId"] and "authorizer" not in context
    assert reply.headers["x-amzn-RequestId"] == context["requestId"]


def test_literal_beats_parameter_and_greedy_takes_the_rest(door: FrontDoor) -> None:
    base = serve(door, items_api())
    assert request(f"{base}/items/special").json()["resource"] == "/items/special"
    assert request(f"{base}/items/other").json()["pathParameters"] == {"id": "other"}
    greedy = request(f"{base}/files/a/b/c.txt", method="DELETE").json()
    assert greedy["resource"] == "/files/{proxy+}" and greedy["pathParameters"] == {"proxy": "a/b/c.txt"}
    assert request(f"{base}/").json()["resource"] == "/"
    # REST APIs pass path parameters as the client encoded them (API Gateway HTTP APIs decode them).
    assert request(f"{base}/items/caf%C3%A9").json()["pathParameters"] == {"id": "caf%C3%A9"}
    assert request(f"{base}/items/%73pecial").json()["resource"] == "/items/special"  # routing decodes
    trailing = request(f"{base}/items/").json()
    assert (trailing["resource"], trailing["path"]) == ("/items", "/items/")


def test_unknown_paths_methods_stages_and_apis(door: FrontDoor) -> None:
    base = serve(door, items_api())
    cases = [("/nothing", "GET"), ("/items", "POST"), ("/files", "GET"), ("//items", "GET"), ("/items", "HEAD")]
    for url, method in [(base + path, verb) for path, verb in cases]:
        reply = request(url, method=method)
        assert reply.status == 403
        assert method == "HEAD" or reply.json() == {"message": "Missing Authentication Token"}
        assert reply.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    wrong_stage = request(base.replace("/prod/", "/dev/") + "/items")
    assert (wrong_stage.status, wrong_stage.json()) == (403, {"message": "Forbidden"})
    assert request(base.replace("api0001", "nope") + "/items").status == 404
    door.remove_stack("Stack")
    assert request(f"{base}/items").status == 404


def test_request_bodies_text_and_binary(door: FrontDoor) -> None:
    base = serve(door, items_api(binary_media_types=["image/*"]))
    text = request(f"{base}/items/1", method="POST", body="héllo".encode(), headers={"Content-Type": "text/plain"})
    assert (text.json()["body"], text.json()["isBase64Encoded"]) == ("héllo", False)
    raw = bytes(range(256))
    binary = request(f"{base}/items/1", method="PUT", body=raw, headers={"Content-Type": "image/png"}).json()
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == raw


@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [
        ({"statusCode": 201, "body": "made"}, 201, b"made"),
        ({"statusCode": 204}, 204, b""),
        ({"statusCode": "202", "body": ""}, 202, b""),
        ({"statusCode": 200, "body": "x", "cookies": ["a=b"]}, 502, None),  # a v2 key: malformed for REST
        ({"body": "no status"}, 502, None),
        ({"statusCode": 200, "body": {"not": "a string"}}, 502, None),
        ({"statusCode": 200, "headers": ["bad"]}, 502, None),
        (["not", "an", "object"], 502, None),
        (b"not json", 502, None),
    ],
)
def test_proxy_response_mapping(
    door: FrontDoor, handlers: dict[str, Callable[[Any], Any]], answer: Any, status: int, body: bytes | None
) -> None:
    handlers["answer"] = lambda event: answer
    api = RestTemplate()
    api.method(None, "GET", "answer")
    reply = request(serve(door, api) + "/")
    assert reply.status == status
    if body is None:
        assert reply.json() == {"message": "Internal server error"}
    else:
        assert reply.body == body


def test_headers_merge_and_base64_bodies(door: FrontDoor, handlers: dict[str, Callable[[Any], Any]]) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    handlers["answer"] = lambda event: {
        "statusCode": 200,
        "headers": {"X-One": "1", "X-Both": "single", "Content-Type": "image/png", "X-Evil": "a\r\nInjected: 1"},
        "multiValueHeaders": {"X-Both": ["m1", "m2"], "Set-Cookie": ["a=1", "b=2"]},
        "body": base64.b64encode(png).decode(),
        "isBase64Encoded": True,
    }
    api = RestTemplate(binary_media_types=["image/png"])
    api.method(None, "GET", "answer")
    base = serve(door, api)
    reply = request(f"{base}/", headers={"Accept": "image/png"})
    assert reply.status == 200 and reply.body == png
    assert reply.headers["X-One"] == "1"
    assert reply.headers.get_all("X-Both") == ["m1", "m2"]  # multiValueHeaders win for the same name
    assert reply.headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert reply.headers["X-Evil"] is None and reply.headers["Injected"] is None
    # Without a matching Accept header API Gateway returns the base64 text as is.
    assert request(f"{base}/", headers={"Accept": "text/html"}).body == base64.b64encode(png)


def test_function_error_is_502_and_slow_function_is_504(
    door: FrontDoor, handlers: dict[str, Callable[[Any], Any]]
) -> None:
    release = threading.Event()

    def boom(event: Any) -> Any:
        raise RuntimeError("boom")

    def slow(event: Any) -> Any:
        release.wait(10)
        return {"statusCode": 200}

    handlers.update(boom=boom, slow=slow)
    api = RestTemplate()
    api.method(None, "GET", "boom")
    api.method(api.resource("Slow", "slow"), "GET", "slow", timeout_ms=200)
    base = serve(door, api)
    reply = request(f"{base}/")
    assert (reply.status, reply.json()) == (502, {"message": "Internal server error"})
    started = time.monotonic()
    reply = request(f"{base}/slow")
    release.set()
    assert (reply.status, reply.json()) == (504, {"message": "Endpoint request timed out"})
    assert time.monotonic() - started < 5


def test_mock_integration_answers_cors_preflight(door: FrontDoor) -> None:
    api = items_api()
    api.method(
        "Items",
        "OPTIONS",
        integration={
            "Type": "MOCK",
            "RequestTemplates": {"application/json": "{ statusCode: 200 }"},
            "IntegrationResponses": [
                {
                    "StatusCode": "204",
                    "ResponseParameters": {
                        "method.response.header.Access-Control-Allow-Origin": "'*'",
                        "method.response.header.Access-Control-Allow-Methods": "'GET,POST'",
                    },
                }
            ],
        },
    )
    reply = request(serve(door, api) + "/items", method="OPTIONS", headers={"Origin": "https://x.example"})
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert reply.headers["Access-Control-Allow-Methods"] == "GET,POST"


# -- authorizers ------------------------------------------------------------------------------------
def token_api(
    handlers: dict[str, Callable[[Any], Any]], authorizer: Callable[[Any], Any], **props: Any
) -> RestTemplate:
    handlers["auth"] = authorizer
    api = items_api()
    api.authorizer("Auth", "auth", "TOKEN", IdentitySource="method.request.header.Authorization", **props)
    secure = api.resource("Secure", "secure")
    api.method(secure, "GET", "echo", authorizer="Auth")
    api.method(secure, "DELETE", "echo", authorizer="Auth")
    api.method(
        api.resource("Tenant", "tenant"),
        "POST",
        "echo",
        authorizer="Auth",
        request_parameters={
            "integration.request.header.X-Amz-Tenant-Id": "context.authorizer.tenantId",
            "integration.request.header.X-Static": "'fixed'",
            "integration.request.header.X-From-Query": "method.request.querystring.q",
            "integration.request.header.X-Principal": "context.authorizer.principalId",
        },
    )
    return api


def allow_get(event: Any) -> Any:
    arn = event["methodArn"]
    prefix = arn.split("/", 1)[0]
    if event["authorizationToken"] == "deny":
        return policy("Deny", f"{prefix}/*")
    if event["authorizationToken"] == "raise":
        raise Exception("Unauthorized")
    if event["authorizationToken"] == "crash":
        raise ValueError("bug")
    if event["authorizationToken"] == "malformed":
        return {"principalId": "x", "policyDocument": {"Statement": "nope"}}
    if event["authorizationToken"] == "nested":
        return policy("Allow", f"{prefix}/*", context={"nested": {"a": 1}})
    context = {"tenantId": "tenant-a", "tier": 3, "admin": True}
    return policy("Allow", f"{prefix}/prod/GET/*", principal="alice", context=context) | {
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [f"{prefix}/prod/GET/*"]},
                {"Action": ["execute-api:*"], "Effect": "Allow", "Resource": f"{prefix}/prod/POST/tenant"},
            ],
        }
    }


def test_token_authorizer_allows_with_context_and_caches(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Callable[[Any], Any]]
) -> None:
    base = serve(door, token_api(handlers, allow_get))
    reply = request(f"{base}/secure", headers={"Authorization": "Bearer good"})
    assert reply.status == 200
    context = reply.json()["requestContext"]["authorizer"]
    assert context["principalId"] == "alice"
    assert (context["tenantId"], context["tier"], context["admin"]) == ("tenant-a", "3", "true")
    (auth_event,) = invoker.events("auth")
    assert auth_event == {
        "type": "TOKEN",
        "authorizationToken": "Bearer good",
        "methodArn": f"arn:aws:execute-api:us-east-1:{ACCOUNT}:api0001/prod/GET/secure",
    }
    # Cached: the same token does not call the authorizer again, and the cached policy is evaluated
    # against the new method ARN (DELETE is not allowed by it).
    assert request(f"{base}/secure", headers={"Authorization": "Bearer good"}).status == 200
    denied = request(f"{base}/secure", method="DELETE", headers={"Authorization": "Bearer good"})
    assert (denied.status, denied.json()) == (403, {"message": "User is not authorized to access this resource"})
    assert len(invoker.events("auth")) == 1
    # Another token is another cache entry.
    assert request(f"{base}/secure", headers={"Authorization": "Bearer other"}).status == 200
    assert len(invoker.events("auth")) == 2


def test_authorizer_cache_expires_after_ttl(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Callable[[Any], Any]]
) -> None:
    base = serve(door, token_api(handlers, allow_get, AuthorizerResultTtlInSeconds=1))
    assert request(f"{base}/secure", headers={"Authorization": "t"}).status == 200
    assert request(f"{base}/secure", headers={"Authorization": "t"}).status == 200
    assert len(invoker.events("auth")) == 1

    def called_again() -> bool:
        assert request(f"{base}/secure", headers={"Authorization": "t"}).status == 200
        return len(invoker.events("auth")) > 1

    assert wait_for(called_again, timeout=5, interval=0.1)


def test_authorizer_cache_off_with_ttl_zero(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Callable[[Any], Any]]
) -> None:
    base = serve(door, token_api(handlers, allow_get, AuthorizerResultTtlInSeconds=0))
    for _ in range(3):
        assert request(f"{base}/secure", headers={"Authorization": "t"}).status == 200
    assert len(invoker.events("auth")) == 3


@pytest.mark.parametrize(
    ("token", "status", "message"),
    [
        ("deny", 403, "User is not authorized to access this resource with an explicit deny"),
        ("raise", 401, "Unauthorized"),
        ("crash", 500, None),
        ("malformed", 500, None),
        ("nested", 500, None),
    ],
)
def test_authorizer_answers(
    door: FrontDoor,
    invoker: PyInvoker,
    handlers: dict[str, Callable[[Any], Any]],
    token: str,
    status: int,
    message: Any,
) -> None:
    base = serve(door, token_api(handlers, allow_get))
    reply = request(f"{base}/secure", headers={"Authorization": token})
    assert (reply.status, reply.json()) == (status, {"message": message})
    assert invoker.events("echo") == []


def test_token_identity_source_and_validation_expression(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Callable[[Any], Any]]
) -> None:
    base = serve(door, token_api(handlers, allow_get, IdentityValidationExpression=r"Bearer [a-z]+"))
    for headers in ({}, {"Authorization": ""}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer abc1"}):
        reply = request(f"{base}/secure", headers=headers)
        assert (reply.status, reply.json()) == (401, {"message": "Unauthorized"})
    assert invoker.events("auth") == []
    assert request(f"{base}/secure", headers={"Authorization": "Bearer abc"}).status == 200


def test_tenant_header_from_authorizer_context_becomes_the_invoke_tenant(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Callable[[Any], Any]]
) -> None:
    base = serve(door, token_api(handlers, allow_get))
    reply = request(f"{base}/tenant?q=from-query", method="POST", body=b"{}", headers={"Authorization": "tok"})
    assert reply.status == 200
    assert invoker.tenants("echo") == ["tenant-a"]
    headers = reply.json()["headers"]
    # Mapped headers are headers of Lambda's Invoke request, not of the proxy event.
    assert not {"X-Static", "X-From-Query", "X-Principal", "X-Amz-Tenant-Id"} & set(headers)
    # No tenant mapping: no tenant id.
    assert request(f"{base}/items").status == 200
    assert invoker.tenants("echo") == ["tenant-a", None]


def test_request_authorizer_identity_sources_and_event(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Callable[[Any], Any]]
) -> None:
    def authorizer(event: Any) -> Any:
        allowed = event["headers"].get("X-Key") == "k1"
        return policy(
            "Allow" if allowed else "Deny", event["methodArn"], context={"key": event["queryStringParameters"]["t"]}
        )

    handlers["reqauth"] = authorizer
    api = items_api()
    api.authorizer(
        "ReqAuth", "reqauth", "REQUEST", IdentitySource="method.request.header.X-Key, method.request.querystring.t"
    )
    api.method(api.resource("Guarded", "guarded"), "GET", "echo", authorizer="ReqAuth")
    base = serve(door, api)
    for url, headers in [(f"{base}/guarded", {"X-Key": "k1"}), (f"{base}/guarded?t=1", {})]:
        assert request(url, headers=headers).status == 401
    assert invoker.events("reqauth") == []
    reply = request(f"{base}/guarded?t=abc", headers={"X-Key": "k1"})
    assert reply.status == 200 and reply.json()["requestContext"]["authorizer"]["key"] == "abc"
    (event,) = invoker.events("reqauth")
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == f"arn:aws:execute-api:us-east-1:{ACCOUNT}:api0001/prod/GET/guarded"
    assert event["resource"] == "/guarded" and event["path"] == "/guarded"
    assert event["queryStringParameters"] == {"t": "abc"} and event["requestContext"]["apiId"] == "api0001"
    assert request(f"{base}/guarded?t=abc", headers={"X-Key": "k2"}).status == 403


def test_evaluate_policy_wildcards() -> None:
    arn = "arn:aws:execute-api:us-east-1:1:api/prod/GET/items/1"

    def doc(*statements: tuple[str, Any, Any]) -> dict[str, Any]:
        return {"Statement": [{"Effect": e, "Action": a, "Resource": r} for e, a, r in statements]}

    assert evaluate_policy(doc(("Allow", "execute-api:Invoke", "arn:aws:execute-api:us-east-1:1:api/*")), arn) is True
    assert evaluate_policy(doc(("Allow", "execute-api:Invoke", "arn:aws:execute-api:*:1:api/prod/GET/items/?")), arn)
    assert evaluate_policy(doc(("Allow", "*", "*")), arn) is True
    assert evaluate_policy(doc(("Allow", "execute-api:Invoke", "arn:aws:execute-api:*:1:api/prod/POST/*")), arn) is None
    assert evaluate_policy(doc(("Allow", "s3:GetObject", "*")), arn) is None
    assert (
        evaluate_policy(doc(("Allow", "execute-api:*", "*"), ("Deny", "execute-api:Invoke", "*/items/*")), arn) is False
    )
    assert evaluate_policy({"Statement": {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": arn}}, arn)
    for bad in (None, {}, {"Statement": [1]}, doc(("Maybe", "*", "*")), doc(("Allow", 1, "*"))):
        with pytest.raises(ValueError):
            evaluate_policy(bad, arn)


# -- streaming --------------------------------------------------------------------------------------
def read_until(sock: socket.socket, buffer: bytearray, marker: bytes, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while marker not in buffer:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed before {marker!r}: {bytes(buffer)!r}")
        buffer += data


def read_all(sock: socket.socket, buffer: bytearray, timeout: float = 5) -> None:
    sock.settimeout(timeout)
    while data := sock.recv(65536):
        buffer += data


def raw_get(door: FrontDoor, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", door.port), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    return sock


def streaming_handlers(handlers: dict[str, Callable[[Any], Any]]) -> threading.Event:
    release = threading.Event()

    def stream(event: Any) -> Iterator[bytes]:
        yield json.dumps({"statusCode": 201, "headers": {"content-type": "text/plain"}, "cookies": ["c=1"]}).encode()
        yield b"\x00" * 8 + b"first;"
        assert release.wait(10), "the client never saw the first chunk"
        yield b"second"

    def broken(event: Any) -> Iterator[bytes]:
        yield b'{"statusCode": 200}' + b"\x00" * 8 + b"partial"
        raise RuntimeError("mid-stream failure")

    def no_prelude(event: Any) -> Iterator[bytes]:
        yield b"just a body"

    handlers.update(stream=stream, broken=broken, noprelude=no_prelude)
    return release


def test_rest_stream_arrives_chunk_by_chunk(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Callable[[Any], Any]]
) -> None:
    release = streaming_handlers(handlers)
    api = RestTemplate()
    api.method(None, "GET", "stream", stream=True)
    serve(door, api)
    with raw_get(door, "/restapis/api0001/prod/_user_request_/") as sock:
        buffer = bytearray()
        read_until(sock, buffer, b"first;")  # before the function yields its next chunk
        head = bytes(buffer).split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith("HTTP/1.1 201")
        assert "Transfer-Encoding: chunked" in head and "content-type: text/plain" in head and "Set-Cookie: c=1" in head
        assert b"second" not in buffer
        release.set()
        read_all(sock, buffer)
    assert bytes(buffer).endswith(b"6\r\nsecond\r\n0\r\n\r\n")
    assert invoker.calls[-1].streamed


def test_rest_stream_uri_and_failures(door: FrontDoor, handlers: dict[str, Callable[[Any], Any]]) -> None:
    streaming_handlers(handlers)
    api = RestTemplate()
    broken = api.function("broken")
    api.method(
        api.resource("Broken", "broken"),
        "GET",
        integration={"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": lambda_uri_streaming(broken)},
    )
    api.method(api.resource("NoPrelude", "noprelude"), "GET", "noprelude", stream=True)
    base = serve(door, api)
    with raw_get(door, "/restapis/api0001/prod/_user_request_/broken") as sock:
        buffer = bytearray()
        read_all(sock, buffer)
    assert bytes(buffer).startswith(b"HTTP/1.1 200") and b"7\r\npartial\r\n" in buffer
    assert not bytes(buffer).endswith(b"0\r\n\r\n")  # truncated: no last chunk
    reply = request(f"{base}/noprelude")
    assert (reply.status, reply.json()) == (500, {"message": "Internal server error"})
    handlers["noprelude"] = lambda event: iter(())  # nothing at all: no prelude either
    assert request(f"{base}/noprelude").status == 500

    def early(event: Any) -> Iterator[bytes]:
        raise RuntimeError("before the first byte")
        yield b""  # pragma: no cover

    handlers["noprelude"] = early
    reply = request(f"{base}/noprelude")
    assert (reply.status, reply.json()) == (502, {"message": "Internal server error"})


def lambda_uri_streaming(function_logical_id: str) -> Any:
    from test_local_front_door_support import lambda_uri

    return lambda_uri(function_logical_id, streaming=True)


# -- hostile input ----------------------------------------------------------------------------------
def raw_exchange(door: FrontDoor, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", door.port), timeout=timeout) as sock:
        sock.sendall(data)
        with __import__("contextlib").suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        buffer = bytearray()
        read_all(sock, buffer, timeout)
        return bytes(buffer)


def test_hostile_requests_get_http_answers(door: FrontDoor) -> None:
    base = serve(door, items_api())
    prefix = "/restapis/api0001/prod/_user_request_"
    odd = raw_exchange(door, b"GET " + prefix.encode() + b"/items/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
    assert odd.startswith(b"HTTP/1.1 200") and b'"id": "\\ufffd\\ufffd"' in odd  # raw bytes: replaced, not fatal
    cases = [
        b"GET " + prefix.encode() + b"/items HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
        b"GET " + prefix.encode() + b"/items HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
        b"POST " + prefix.encode() + b"/items/1 HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST " + prefix.encode() + b"/items/1 HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
        b"POST " + prefix.encode() + b"/items/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"BREW /coffee HTTP/1.1\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"GET " + prefix.encode() + b"/items//x HTTP/1.1\r\n\r\n",
        b"GET " + prefix.encode() + b"/%ZZ%00 HTTP/1.1\r\n\r\n",
    ]
    for case in cases:
        answer = raw_exchange(door, case)
        assert answer.startswith(b"HTTP/1."), case[:60]
        assert int(answer[9:12]) >= 400, (case[:60], answer[:60])
    # A slow client that never finishes its headers does not block anyone else.
    with socket.create_connection(("127.0.0.1", door.port), timeout=5) as slow:
        slow.sendall(b"GET " + prefix.encode() + b"/items HTTP/1.1\r\nX-Slow: ")
        assert request(f"{base}/items").status == 200
    chunked = raw_exchange(
        door,
        b"POST " + prefix.encode() + b"/items/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 200") and b'"body": "abc"' in chunked
    assert request(f"{base}/items").status == 200


HEADER_NAME = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda text: text.encode("utf-8", "replace"))),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "FOO"]),
    headers=st.lists(st.tuples(HEADER_NAME, st.text(max_size=100)), max_size=8),
    body=st.binary(max_size=200),
)
def test_fuzzed_requests_always_get_an_http_answer(
    door: FrontDoor, invoker: PyInvoker, path: bytes, method: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    base = serve(door, items_api())
    for prefix in (b"/restapis/api0001/prod/_user_request_/", b"/lambda-url/", b"/ws/api/prod/@connections/", b"/"):
        lines = [method.encode() + b" " + prefix + path.replace(b" ", b"%20") + b" HTTP/1.1", b"Host: localhost"]
        lines += [name.encode() + b": " + value.encode("utf-8") for name, value in headers]
        lines += [b"Content-Length: %d" % len(body), b"Connection: close"]
        answer = raw_exchange(door, b"\r\n".join(lines) + b"\r\n\r\n" + body)
        assert answer.startswith(b"HTTP/1.1 "), (prefix, path, answer[:80])
        assert 200 <= int(answer[9:12]) <= 599
    assert request(f"{base}/items").status == 200


# -- request validation and gateway responses -------------------------------------------------------
def validated_api() -> RestTemplate:
    api = items_api()
    api.resources["Validator"] = {
        "Type": "AWS::ApiGateway::RequestValidator",
        "Properties": {"RestApiId": {"Ref": "Api"}, "ValidateRequestBody": True, "ValidateRequestParameters": True},
    }
    api.resources["BodyModel"] = {
        "Type": "AWS::ApiGateway::Model",
        "Properties": {
            "RestApiId": {"Ref": "Api"},
            "ContentType": "application/json",
            "Name": "Body",
            "Schema": {
                "$schema": "http://json-schema.org/draft-04/schema#",
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"type": "string", "enum": ["OK", "FAILED"]}},
            },
        },
    }
    api.resources["DefaultFourXx"] = {
        "Type": "AWS::ApiGateway::GatewayResponse",
        "Properties": {
            "RestApiId": {"Ref": "Api"},
            "ResponseType": "DEFAULT_4XX",
            "ResponseParameters": {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"},
        },
    }
    api.resources["BadBody"] = {
        "Type": "AWS::ApiGateway::GatewayResponse",
        "Properties": {
            "RestApiId": {"Ref": "Api"},
            "ResponseType": "BAD_REQUEST_BODY",
            "StatusCode": "422",
            "ResponseTemplates": {"application/json": '{"error": $context.error.messageString}'},
        },
    }
    api.method("Item", "POST", "echo")
    method = api.resources[list(api.resources)[-1]]["Properties"]
    method["HttpMethod"] = "PATCH"
    method["RequestValidatorId"] = {"Ref": "Validator"}
    method["RequestModels"] = {"application/json": {"Ref": "BodyModel"}}
    method["RequestParameters"] = {"method.request.header.X-Job": True, "method.request.querystring.opt": False}
    return api


def test_request_validator_and_gateway_responses(door: FrontDoor, invoker: PyInvoker) -> None:
    base = serve(door, validated_api())
    good = {"X-Job": "j1", "Content-Type": "application/json"}
    assert request(f"{base}/items/1", method="PATCH", body=b'{"status": "OK"}', headers=good).status == 200
    missing = request(f"{base}/items/1", method="PATCH", body=b'{"status": "OK"}')
    assert (missing.status, missing.json()) == (400, {"message": "Missing required request parameters: [X-Job]"})
    assert missing.headers["Access-Control-Allow-Origin"] == "*"  # DEFAULT_4XX
    for body in (b'{"status": "MAYBE"}', b"{}", b"not json", b"[]"):
        reply = request(f"{base}/items/1", method="PATCH", body=body, headers=good)
        assert (reply.status, reply.json()) == (422, {"error": "Invalid request body"})  # BAD_REQUEST_BODY
    assert len(invoker.events("echo")) == 1
    token = request(f"{base}/nothing")
    assert (token.status, token.json()) == (403, {"message": "Missing Authentication Token"})
    assert token.headers["Access-Control-Allow-Origin"] == "*"
    assert request(f"{base}/").headers["Access-Control-Allow-Origin"] is None  # success: no gateway response


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_cognito_api_keys_forwarded_headers_and_broken_authorizers(door: FrontDoor) -> None:
    api = items_api()
    api.resources["Pool"] = {
        "Type": "AWS::ApiGateway::Authorizer",
        "Properties": {"RestApiId": {"Ref": "Api"}, "Type": "COGNITO_USER_POOLS", "Name": "pool"},
    }
    api.resources["Broken"] = {
        "Type": "AWS::ApiGateway::Authorizer",
        "Properties": {"RestApiId": {"Ref": "Api"}, "Type": "SOMETHING", "Name": "broken"},
    }
    api.resources["Key"] = {"Type": "AWS::ApiGateway::ApiKey", "Properties": {"Value": "key-1234567890123456789"}}
    api.method(api.resource("Users", "users"), "GET", "echo", authorizer="Pool")
    api.resources[list(api.resources)[-1]]["Properties"]["AuthorizationType"] = "COGNITO_USER_POOLS"
    api.method(api.resource("Keyed", "keyed"), "GET", "echo")
    api.resources[list(api.resources)[-1]]["Properties"]["ApiKeyRequired"] = True
    api.method(api.resource("Odd", "odd"), "GET", "echo", authorizer="Broken")
    base = serve(door, api)
    for token in ("", "not-a-jwt", jwt({"sub": "u1", "exp": 1})):
        assert request(f"{base}/users", headers={"Authorization": token}).status == 401
    claims = request(f"{base}/users", headers={"Authorization": jwt({"sub": "u1", "cognito:groups": ["a"]})}).json()
    assert claims["requestContext"]["authorizer"]["claims"] == {"sub": "u1", "cognito:groups": '["a"]'}
    assert request(f"{base}/keyed").status == 403
    assert request(f"{base}/keyed", headers={"x-api-key": "wrong"}).status == 403
    keyed = request(f"{base}/keyed", headers={"x-api-key": "key-1234567890123456789", "X-Forwarded-For": "10.0.0.1"})
    assert keyed.status == 200
    headers = keyed.json()["headers"]
    assert headers["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1" and headers["X-Forwarded-Port"] == str(door.port)
    assert headers["X-Amzn-Trace-Id"].startswith("Root=1-")
    assert (request(f"{base}/odd").status, request(f"{base}/odd").json()) == (500, {"message": None})


def test_invoke_api_refusal_is_500(door: FrontDoor, invoker: PyInvoker) -> None:
    from dataclasses import dataclass as _dataclass

    @_dataclass(frozen=True)
    class Refused:
        payload: bytes = b'{"errorType": "TooManyRequestsException", "errorMessage": "Rate Exceeded."}'
        function_error: str | None = "Unhandled"
        request_id: str = "r"
        status_code: int = 429

    api = RestTemplate()
    api.method(None, "GET", "echo")
    base = serve(door, api)
    invoker.invoke = lambda *args, **kwargs: Refused()  # type: ignore[method-assign]
    reply = request(f"{base}/")
    assert (reply.status, reply.json()) == (500, {"message": "Internal server error"})
