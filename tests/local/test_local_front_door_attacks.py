"""Adversarial review of the front door: the attacks a new user (or a hostile client) makes, one test each.

Each test states the AWS behaviour it checks (sources in the docstrings of the front door modules):
encoded paths, authorizer caching and context types, TTL limits, the tenant header a client must never
set, streaming preludes split anywhere, clients that vanish mid-stream, WebSocket protocol violations,
and hostile HTTP input (huge bodies must be answered 413, not reset).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_local_front_door import read_all, serve
from test_local_front_door_support import (
    ACCOUNT,
    PyInvoker,
    RestTemplate,
    function_arn,
    policy,
    request,
    resolver,
    signed_request,
)
from test_local_front_door_url import url_template
from test_local_front_door_ws import ws_template

from cdk_serverless_patterns.local.front_door import FrontDoor
from cdk_serverless_patterns.local.lambda_environment import wait_for


def echo(event: Any) -> Any:
    return {"statusCode": 200, "body": json.dumps(event)}


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


PREFIX = "/restapis/api0001/prod/_user_request_"


def tenant_api(handlers: dict[str, Callable[[Any], Any]], authorizer: Callable[[Any], Any]) -> RestTemplate:
    handlers["auth"] = authorizer
    api = RestTemplate()
    api.authorizer("Auth", "auth", "REQUEST", IdentitySource="method.request.header.Authorization")
    api.method(
        api.resource("Orders", "orders"),
        "GET",
        "echo",
        authorizer="Auth",
        request_parameters={
            "integration.request.header.X-Amz-Tenant-Id": "context.authorizer.tenantId",
            "integration.request.header.X-User": "context.authorizer.user",
        },
    )
    return api


# -- payload format 1.0 and 2.0 ---------------------------------------------------------------------
def test_rest_path_and_path_parameters_stay_percent_encoded(door: FrontDoor) -> None:
    """REST APIs pass ``path`` and ``pathParameters`` as the client encoded them (HTTP APIs decode; REST does not)."""
    api = RestTemplate()
    item = api.resource("Item", "{id}", api.resource("Items", "items"))
    api.method(item, "GET", "echo")
    api.method(api.resource("Proxy", "{proxy+}", api.resource("Files", "files")), "GET", "echo")
    base = serve(door, api)
    event = request(f"{base}/items/a%2Fb%20c%40").json()
    assert event["pathParameters"] == {"id": "a%2Fb%20c%40"}
    assert event["path"] == "/items/a%2Fb%20c%40" and event["resource"] == "/items/{id}"
    greedy = request(f"{base}/files/x%20y/z").json()
    assert greedy["pathParameters"] == {"proxy": "x%20y/z"}
    assert greedy["requestContext"]["path"] == "/prod/files/x%20y/z"


def test_function_url_raw_path_stays_percent_encoded(door: FrontDoor, handlers: dict[str, Any]) -> None:
    handlers["fn"] = lambda event: event
    (endpoint,) = door.add_stack("U", url_template(), resolver({"Fn": function_arn("fn")}))
    event = request(f"{endpoint.url}a%20b/c%2Fd?q=%41+b").json()
    assert event["rawPath"] == "/a%20b/c%2Fd" and event["requestContext"]["http"]["path"] == "/a%20b/c%2Fd"
    assert event["rawQueryString"] == "q=%41+b"


def test_repeated_headers_and_query_strings_in_both_formats(door: FrontDoor, handlers: dict[str, Any]) -> None:
    base = serve(door, root_api())
    raw = (
        f"GET {PREFIX}/?a=1&a=2&b=%20x HTTP/1.1\r\nHost: localhost\r\nX-Dup: one\r\nX-Dup: two\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = exchange(door, raw)
    event = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert event["headers"]["X-Dup"] == "two" and event["multiValueHeaders"]["X-Dup"] == ["one", "two"]
    assert event["queryStringParameters"] == {"a": "2", "b": " x"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [" x"]}
    # "+" is a space and "%2B" a plus in REST query strings (as aws/aws-cdk#19827 shows from AWS).
    assert request(f"{base}/?s=-+createdAt&t=a%2Bb").json()["queryStringParameters"] == {"s": "- createdAt", "t": "a+b"}
    handlers["fn"] = lambda event: event
    (endpoint,) = door.add_stack("U", url_template(), resolver({"Fn": function_arn("fn")}))
    path = endpoint.url.split(str(door.port), 1)[1]
    answer = exchange(
        door,
        f"GET {path}?a=1&a=2 HTTP/1.1\r\nHost: localhost\r\nX-Dup: one\r\nx-dup: two\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    event = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert event["headers"]["x-dup"] == "one,two" and event["queryStringParameters"] == {"a": "1,2"}


def root_api() -> RestTemplate:
    api = RestTemplate()
    api.method(None, "GET", "echo")
    return api


def exchange(door: FrontDoor, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", door.port), timeout=timeout) as sock:
        sock.sendall(data)
        buffer = bytearray()
        read_all(sock, buffer, timeout)
        return bytes(buffer)


# -- authorizers --------------------------------------------------------------------------------------
def test_request_authorizer_cache_key_is_every_identity_source(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any]
) -> None:
    handlers["auth"] = lambda event: policy("Allow", "*", context={"n": len(invoker.events("auth"))})
    api = RestTemplate()
    api.authorizer("Auth", "auth", "REQUEST", IdentitySource="method.request.header.X-A,method.request.querystring.b")
    api.method(None, "GET", "echo", authorizer="Auth")
    base = serve(door, api)
    for query, header in [("b=1", "a"), ("b=1", "a"), ("b=2", "a"), ("b=1", "z"), ("b=1", "a")]:
        assert request(f"{base}/?{query}", headers={"X-A": header}).status == 200
    assert len(invoker.events("auth")) == 3  # (a,1) once, (a,2), (z,1); values joined never collide
    assert request(f"{base}/?b=1", headers={"X-A": "a,"}).status == 200
    assert len(invoker.events("auth")) == 4


def test_authorizer_ttl_above_3600_is_refused_like_cloudformation(door: FrontDoor, handlers: dict[str, Any]) -> None:
    handlers["auth"] = lambda event: policy("Allow", "*")
    api = RestTemplate()
    api.authorizer("Auth", "auth", "TOKEN", AuthorizerResultTtlInSeconds=7200)
    api.method(None, "GET", "echo", authorizer="Auth")
    with pytest.raises(ValueError, match=r"Auth.*AuthorizerResultTtlInSeconds.*3600"):
        door.add_stack("Stack", api.template(), api.resolve())


def test_redeployed_stack_does_not_reuse_cached_authorizer_answers(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any]
) -> None:
    handlers["auth"] = lambda event: policy("Allow", "*")
    api = RestTemplate()
    api.authorizer("Auth", "auth", "TOKEN")
    api.method(None, "GET", "echo", authorizer="Auth")
    base = serve(door, api)
    assert request(f"{base}/", headers={"Authorization": "t"}).status == 200
    door.remove_stack("Stack")
    handlers["auth"] = lambda event: policy("Deny", "*")
    base = serve(door, api)
    assert request(f"{base}/", headers={"Authorization": "t"}).status == 403
    assert len(invoker.events("auth")) == 2


@pytest.mark.parametrize(
    ("context", "status"),
    [({"a": None}, 500), ({"a": [1]}, 500), ({"a": {"b": 1}}, 500), ({"n": 1.5, "b": False, "s": ""}, 200)],
)
def test_authorizer_context_value_types(
    door: FrontDoor, handlers: dict[str, Any], context: dict[str, Any], status: int
) -> None:
    handlers["auth"] = lambda event: policy("Allow", "*", context=context)
    api = RestTemplate()
    api.authorizer("Auth", "auth", "TOKEN", AuthorizerResultTtlInSeconds=0)
    api.method(None, "GET", "echo", authorizer="Auth")
    reply = request(f"{serve(door, api)}/", headers={"Authorization": "t"})
    assert reply.status == status
    if status == 200:
        authorizer = reply.json()["requestContext"]["authorizer"]
        assert (authorizer["n"], authorizer["b"], authorizer["s"]) == ("1.5", "false", "")
    else:
        assert reply.headers["x-amzn-ErrorType"] == "AuthorizerConfigurationException"


def test_policy_with_explicit_deny_beats_allow_and_wildcards(door: FrontDoor, handlers: dict[str, Any]) -> None:
    def auth(event: Any) -> Any:
        prefix = event["methodArn"].split("/", 1)[0]
        return {
            "principalId": "p",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "execute-api:*", "Resource": "*"},
                    {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": [f"{prefix}/prod/GET/secret?"]},
                ],
            },
        }

    handlers["auth"] = auth
    api = RestTemplate()
    api.authorizer("Auth", "auth", "TOKEN")
    for part in ("secret", "secret1", "secret12"):
        api.method(api.resource(f"R{part}", part), "GET", "echo", authorizer="Auth")
    base = serve(door, api)
    headers = {"Authorization": "t"}
    assert request(f"{base}/secret", headers=headers).status == 200  # ? needs exactly one character
    denied = request(f"{base}/secret1", headers=headers)
    assert (denied.status, denied.json()) == (
        403,
        {"message": "User is not authorized to access this resource with an explicit deny"},
    )
    assert request(f"{base}/secret12", headers=headers).status == 200


# -- tenancy: X-Amz-Tenant-Id ---------------------------------------------------------------------------
def test_client_tenant_header_never_reaches_the_invoke(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any]
) -> None:
    def auth(event: Any) -> Any:
        token = event["headers"]["Authorization"]
        context = {"user": "u"} if token == "no-tenant" else {"tenantId": "acme", "user": "u"}
        return policy("Allow", "*", context=context)

    base = serve(door, tenant_api(handlers, auth))
    evil = {"Authorization": "good", "X-Amz-Tenant-Id": "evil", "x-amz-tenant-id": "evil2"}
    reply = request(f"{base}/orders", headers=evil)
    assert reply.status == 200 and invoker.tenants("echo") == ["acme"]
    # No tenant in the authorizer's context: the client's header still does not become the tenant.
    request(f"{base}/orders", headers={**evil, "Authorization": "no-tenant"})
    assert invoker.tenants("echo")[-1] is None


@pytest.mark.parametrize("tenant", ["a\r\nX-Injected: 1", "a" * 257, "t\x00", "ténant", "semi;colon"])
def test_invalid_tenant_id_from_context_is_500_without_invoking(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any], tenant: str
) -> None:
    """Lambda's TenantId is 1-256 of ``[a-zA-Z0-9._:/=+\\-@ ]``: anything else is refused, API Gateway answers 500."""
    base = serve(door, tenant_api(handlers, lambda event: policy("Allow", "*", context={"tenantId": tenant})))
    reply = request(f"{base}/orders", headers={"Authorization": "t"})
    assert (reply.status, reply.json()) == (500, {"message": "Internal server error"})
    assert invoker.events("echo") == []


def test_mapped_integration_headers_do_not_rewrite_the_proxy_event(door: FrontDoor, handlers: dict[str, Any]) -> None:
    """Mapped ``integration.request.header.*`` go to Lambda's Invoke request, not into the proxy event's headers."""
    context = {"tenantId": "acme", "user": "from-authorizer"}
    base = serve(door, tenant_api(handlers, lambda event: policy("Allow", "*", context=context)))
    event = request(f"{base}/orders", headers={"Authorization": "t", "X-User": "client-said"}).json()
    assert event["headers"]["X-User"] == "client-said" and event["multiValueHeaders"]["X-User"] == ["client-said"]
    assert "X-Amz-Tenant-Id" not in event["headers"]


# -- streaming ------------------------------------------------------------------------------------------
def stream_api(door: FrontDoor, handlers: dict[str, Any], handler: Callable[[Any], Iterator[bytes]]) -> str:
    handlers["stream"] = handler
    api = RestTemplate()
    api.method(None, "GET", "stream", stream=True)
    return serve(door, api)


def raw_stream(door: FrontDoor) -> bytes:
    return exchange(door, f"GET {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """The body of a chunked answer and whether it ended with the last chunk."""
    body = bytearray()
    rest = data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return bytes(body), True
        body += rest[:size]
        rest = rest[size + 2 :]
    return bytes(body), False


@pytest.mark.parametrize("size", [1, 3, 8, 9, 4096])
def test_stream_prelude_split_at_any_position(door: FrontDoor, handlers: dict[str, Any], size: int) -> None:
    whole = json.dumps({"statusCode": 202, "headers": {"x-a": "b" * 300}}).encode() + b"\x00" * 8 + b"body-bytes"

    def handler(event: Any) -> Iterator[bytes]:
        for index in range(0, len(whole), size):
            yield whole[index : index + size]

    stream_api(door, handlers, handler)
    head, _, chunks = raw_stream(door).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202") and b"x-a: " + b"b" * 300 in head
    assert dechunk(chunks) == (b"body-bytes", True)


def test_stream_with_empty_body_and_error_trailer(door: FrontDoor, handlers: dict[str, Any]) -> None:
    stream_api(door, handlers, lambda event: iter([b'{"statusCode": 204}', b"\x00" * 8]))
    head, _, chunks = raw_stream(door).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204") and dechunk(chunks) == (b"", True)

    def failing(event: Any) -> Iterator[bytes]:
        yield b'{"statusCode": 200}\x00\x00\x00\x00\x00\x00\x00\x00abc'
        raise RuntimeError("trailer: Function.RuntimeError")

    stream_api(door, handlers, failing)
    head, _, chunks = raw_stream(door).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and dechunk(chunks) == (b"abc", False)


def test_client_gone_mid_stream_stops_reading_the_function_stream(door: FrontDoor, handlers: dict[str, Any]) -> None:
    pulled = [0]
    slow = threading.Event()

    def endless(event: Any) -> Iterator[bytes]:
        yield b'{"statusCode": 200}' + b"\x00" * 8 + b"start"
        while True:
            pulled[0] += 1
            slow.wait(0.05)
            yield b"x" * 10

    stream_api(door, handlers, endless)
    sock = socket.create_connection(("127.0.0.1", door.port), timeout=5)
    sock.sendall(f"GET {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    assert b"start" in sock.recv(65536) or b"start" in sock.recv(65536)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # reset: the client is gone

    def settled() -> bool:
        before = pulled[0]
        time.sleep(0.3)
        return pulled[0] == before

    assert wait_for(settled, timeout=5, interval=0.01)
    assert pulled[0] < 200


def test_client_gone_while_the_function_is_silent_ends_the_stream(door: FrontDoor, handlers: dict[str, Any]) -> None:
    release = threading.Event()
    closed = threading.Event()

    def silent(event: Any) -> Iterator[bytes]:
        try:
            yield b'{"statusCode": 200}' + b"\x00" * 8 + b"start"
            release.wait(10)
            yield b"late"
        finally:
            closed.set()

    stream_api(door, handlers, silent)
    with socket.create_connection(("127.0.0.1", door.port), timeout=5) as sock:
        sock.sendall(f"GET {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        buffer = bytearray()
        while b"start" not in buffer:
            buffer += sock.recv(65536)
        assert door._sockets  # the connection is being served
    # The client is gone while the function says nothing: the front door notices without waiting for it
    # (its connection is done), and the function's stream is closed once it yields again.
    assert wait_for(lambda: not door._sockets, 3, 0.05)
    assert not closed.is_set()
    release.set()
    assert closed.wait(5)


# -- WebSocket ------------------------------------------------------------------------------------------
@pytest.fixture()
def ws_door(invoker: PyInvoker) -> Iterator[FrontDoor]:
    with FrontDoor(invoker) as front_door:
        template, physical = ws_template()
        invoker.handlers.update(
            auth=lambda event: policy("Allow", event["methodArn"], context={"n": 7, "ok": True, "s": "x"}),
            connect=lambda event: {"statusCode": 200},
            disconnect=lambda event: {},
            send=lambda event: {"statusCode": 200},
            default=lambda event: {"statusCode": 200, "body": f"echo:{event['body']}"},
        )
        front_door.add_stack("WsStack", template, resolver(physical))
        yield front_door


class RawWs:
    """A hand-made WebSocket client that can break the protocol on purpose."""

    def __init__(self, door: FrontDoor, query: str = "token=alice") -> None:
        self.sock = socket.create_connection(("127.0.0.1", door.port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/wsapi0001/dev?{query} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = bytearray()
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def frame(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> None:
        first = (0x80 if fin else 0) | rsv | opcode
        length = len(payload)
        header = struct.pack("!B", first)
        bit = 0x80 if mask else 0
        if length < 126:
            header += struct.pack("!B", bit | length)
        elif length < 65536:
            header += struct.pack("!BH", bit | 126, length)
        else:
            header += struct.pack("!BQ", bit | 127, length)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            header += key
        self.sock.sendall(header + payload)

    def read(self) -> tuple[int, bytes]:
        def exact(count: int) -> bytes:
            data = b""
            while len(data) < count:
                part = self.sock.recv(count - len(data))
                if not part:
                    raise EOFError
                data += part
            return data

        first, second = exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", exact(8))
        return first & 0x0F, exact(length)

    def close_code(self) -> int:
        while True:
            opcode, data = self.read()
            if opcode == 0x8:
                return int(struct.unpack("!H", data[:2])[0]) if len(data) >= 2 else 1005


def test_ws_fragmented_message_with_ping_in_between(ws_door: FrontDoor, invoker: PyInvoker) -> None:
    ws = RawWs(ws_door)
    ws.frame(0x1, b"hel", fin=False)
    ws.frame(0x9, b"are you there")
    ws.frame(0x0, b"lo", fin=False)
    ws.frame(0x0, b"!")
    assert ws.read() == (0xA, b"are you there")
    assert ws.read() == (0x1, b"echo:hello!")
    ws.frame(0x8, struct.pack("!H", 1000) + b"bye")
    assert ws.close_code() == 1000
    assert wait_for(lambda: len(invoker.events("disconnect")) == 1, 30, 0.02)  # a bound, not a timing claim
    context = invoker.events("disconnect")[0]["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1000, "bye")


@pytest.mark.parametrize(
    ("send", "code"),
    [
        (lambda ws: ws.frame(0x1, b"x", mask=False), 1002),
        (lambda ws: ws.frame(0x1, b"x", rsv=0x40), 1002),
        (lambda ws: ws.frame(0x3, b"x"), 1002),
        (lambda ws: ws.frame(0x0, b"x"), 1002),
        (lambda ws: ws.frame(0x9, b"x", fin=False), 1002),
        (lambda ws: ws.frame(0x1, b"\xff\xfe"), 1007),
        (lambda ws: ws.frame(0x8, b"\x03"), 1002),  # a one-byte close payload
        (lambda ws: ws.frame(0x8, struct.pack("!H", 1006)), 1002),  # a reserved code on the wire
        (lambda ws: ws.frame(0x8, struct.pack("!H", 999)), 1002),
        (lambda ws: ws.frame(0x8, struct.pack("!H", 1000) + b"\xff"), 1007),  # a reason that is not UTF-8
        (lambda ws: ws.frame(0x2, b"x" * (32 * 1024 + 1)), 1009),
    ],
)
def test_ws_protocol_violations_are_closed_with_the_right_code(
    ws_door: FrontDoor, send: Callable[[RawWs], None], code: int
) -> None:
    ws = RawWs(ws_door)
    send(ws)
    assert ws.close_code() == code


def test_ws_vanished_client_gets_disconnect_1006_and_posts_are_gone(ws_door: FrontDoor, invoker: PyInvoker) -> None:
    ws = RawWs(ws_door)
    connection_id = invoker.events("connect")[-1]["requestContext"]["connectionId"]
    management = f"{ws_door.endpoint}/ws/wsapi0001/dev/@connections/{connection_id}"
    assert signed_request(management, method="POST", body=b"hi").status == 200
    assert ws.read() == (0x1, b"hi")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.sock.close()
    assert wait_for(lambda: len(invoker.events("disconnect")) == 1, 30, 0.02)  # a bound, not a timing claim
    assert invoker.events("disconnect")[0]["requestContext"]["disconnectStatusCode"] == 1006
    gone = signed_request(management, method="POST", body=b"late")
    assert (gone.status, gone.headers["x-amzn-ErrorType"]) == (410, "GoneException")


def test_ws_post_during_disconnect_is_gone(ws_door: FrontDoor, invoker: PyInvoker) -> None:
    answers: list[int] = []

    def disconnect(event: Any) -> Any:
        management = f"{ws_door.endpoint}/ws/wsapi0001/dev/@connections/{event['requestContext']['connectionId']}"
        answers.append(signed_request(management, method="POST", body=b"too late").status)
        return {}

    invoker.handlers["disconnect"] = disconnect
    ws = RawWs(ws_door)
    ws.frame(0x8, struct.pack("!H", 1000))
    assert ws.close_code() == 1000
    assert wait_for(lambda: answers == [410], 5, 0.02)


def test_ws_authorizer_context_reaches_routes_as_strings(ws_door: FrontDoor, invoker: PyInvoker) -> None:
    ws = RawWs(ws_door)
    ws.frame(0x1, b"hi")
    assert ws.read() == (0x1, b"echo:hi")
    for event in (invoker.events("connect")[-1], invoker.events("default")[-1]):
        authorizer = event["requestContext"]["authorizer"]
        assert (authorizer["n"], authorizer["ok"], authorizer["s"], authorizer["principalId"]) == (
            "7",
            "true",
            "x",
            "user-1",
        )
    ws.sock.close()


def test_upgrade_header_on_a_rest_path_is_still_rest(door: FrontDoor) -> None:
    serve(door, root_api())
    answer = exchange(
        door,
        f"GET {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 200")


# -- hostile input ----------------------------------------------------------------------------------------
def test_body_over_10_mb_is_answered_413_not_reset(door: FrontDoor, invoker: PyInvoker) -> None:
    serve(door, root_api())
    body = b"x" * (30 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", door.port), timeout=10) as sock:
        sock.sendall(f"POST {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        with contextlib.suppress(OSError):
            sock.sendall(body)
        buffer = bytearray()
        with contextlib.suppress(ConnectionResetError):
            read_all(sock, buffer, 10)
    assert bytes(buffer).startswith(b"HTTP/1.1 413"), bytes(buffer[:80])
    assert json.loads(bytes(buffer).split(b"\r\n\r\n", 1)[1]) == {"message": "Request Too Long"}
    assert invoker.calls == []


def test_chunked_body_over_10_mb_is_413(door: FrontDoor, invoker: PyInvoker) -> None:
    serve(door, root_api())
    chunk = b"x" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", door.port), timeout=10) as sock:
        sock.sendall(f"POST {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        with contextlib.suppress(OSError):
            for _ in range(11):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        buffer = bytearray()
        with contextlib.suppress(ConnectionResetError):
            read_all(sock, buffer, 10)
    assert bytes(buffer).startswith(b"HTTP/1.1 413"), bytes(buffer[:80])
    assert invoker.calls == []


def test_ten_thousand_headers_and_slowloris(door: FrontDoor) -> None:
    base = serve(door, root_api())
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
    answer = exchange(door, f"GET {PREFIX}/ HTTP/1.1\r\n".encode() + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431")
    slow = [socket.create_connection(("127.0.0.1", door.port), timeout=5) for _ in range(20)]
    try:
        for sock in slow:
            sock.sendall(f"GET {PREFIX}/ HTTP/1.1\r\nX-Slow: ".encode())
        started = time.monotonic()
        assert request(f"{base}/").status == 200
        assert time.monotonic() - started < 2
    finally:
        for sock in slow:
            sock.close()


def test_crlf_and_traversal(door: FrontDoor, handlers: dict[str, Any]) -> None:
    handlers["echo"] = lambda event: {
        "statusCode": 200,
        "headers": {"X-Ok": "fine", "X-Bad": "a\r\nSet-Cookie: stolen=1", "X-Bad2": "b\nc"},
        "multiValueHeaders": {"X-Multi": ["1", "2\r\nX-Evil: 1"]},
        "body": "ok",
    }
    serve(door, root_api())
    answer = exchange(door, f"GET {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert answer.startswith(b"HTTP/1.1 200") and b"X-Ok: fine" in head and b"X-Multi: 1" in head
    assert b"stolen" not in head and b"X-Evil" not in head and b"X-Bad" not in head
    for path in ("/../../../etc/passwd", "/%2e%2e/%2e%2e/x", "/..%2f..%2f"):
        reply = exchange(door, f"GET {PREFIX}{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.1 403"), (path, reply[:60])
    traversal = exchange(
        door, b"GET /restapis/../restapis/api0001/prod/_user_request_/ HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert traversal.startswith(b"HTTP/1.1 404")


def test_account_in_method_arn(door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any]) -> None:
    handlers["auth"] = lambda event: policy("Allow", event["methodArn"])
    api = RestTemplate()
    api.authorizer("Auth", "auth", "TOKEN", AuthorizerResultTtlInSeconds=0)
    api.method(api.resource("Items", "{id}"), "GET", "echo", authorizer="Auth")
    base = serve(door, api)
    assert request(f"{base}/a%20b", headers={"Authorization": "t"}).status == 200
    assert invoker.events("auth")[0]["methodArn"] == f"arn:aws:execute-api:us-east-1:{ACCOUNT}:api0001/prod/GET/a%20b"


# -- round two ------------------------------------------------------------------------------------------
def test_message_naming_a_lifecycle_route_goes_to_default(ws_door: FrontDoor, invoker: PyInvoker) -> None:
    """``$connect``/``$disconnect`` are chosen by the connection's lifecycle, never by a message's action."""
    ws = RawWs(ws_door)
    connects = len(invoker.events("connect"))
    for action in ("$connect", "$disconnect"):
        body = json.dumps({"action": action}).encode()
        ws.frame(0x1, body)
        assert ws.read() == (0x1, b"echo:" + body)
    assert len(invoker.events("connect")) == connects and invoker.events("disconnect") == []
    ws.sock.close()


def test_management_api_of_another_api_does_not_reach_the_connection(ws_door: FrontDoor, invoker: PyInvoker) -> None:
    ws = RawWs(ws_door)
    connection_id = invoker.events("connect")[-1]["requestContext"]["connectionId"]
    for api, stage in (("otherapi", "dev"), ("wsapi0001", "prod")):
        reply = signed_request(f"{ws_door.endpoint}/ws/{api}/{stage}/@connections/{connection_id}", "POST", b"x")
        assert reply.status == 410, (api, stage)
    # The domainName/stage form a function builds from its event reaches it (over http locally).
    assert signed_request(f"{ws_door.endpoint}/dev/@connections/{connection_id}", "POST", b"ok").status == 200
    assert ws.read() == (0x1, b"ok")
    ws.sock.close()


@pytest.mark.parametrize(
    "headers",
    [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: identity\r\n",
        "Content-Length: 3\r\nContent-Length: 30\r\n",
        "Content-Length: +3\r\n",
        "Content-Length: 0x3\r\n",
    ],
)
def test_ambiguous_body_framing_is_refused_and_closed(door: FrontDoor, invoker: PyInvoker, headers: str) -> None:
    """Request smuggling: a body whose length two parsers could read differently is a 400, then close."""
    serve(door, root_api())
    smuggled = f"GET {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\n\r\n"
    answer = exchange(
        door,
        f"POST {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n3\r\nabc\r\n0\r\n\r\n{smuggled}".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 400") and answer.count(b"HTTP/1.1 ") == 1, answer[:200]
    assert invoker.calls == []


def test_request_authorizer_with_stage_variable_and_context_identity_sources(
    door: FrontDoor, invoker: PyInvoker, handlers: dict[str, Any]
) -> None:
    handlers["auth"] = lambda event: policy("Allow", "*")
    api = RestTemplate(stage_variables={"tier": "gold"})
    api.authorizer(
        "Auth",
        "auth",
        "REQUEST",
        IdentitySource="stageVariables.tier, context.identity.sourceIp, method.request.header.X-Key",
    )
    api.method(None, "GET", "echo", authorizer="Auth")
    base = serve(door, api)
    assert request(f"{base}/", headers={"X-Key": "k"}).status == 200
    assert request(f"{base}/", headers={"X-Key": "k"}).status == 200
    assert len(invoker.events("auth")) == 1
    assert request(f"{base}/").status == 401


def test_function_url_iam_accepts_presigned_query_authentication(door: FrontDoor, handlers: dict[str, Any]) -> None:
    handlers["fn"] = lambda event: {
        "statusCode": 200,
        "body": event["requestContext"]["authorizer"]["iam"]["accessKey"],
    }
    (endpoint,) = door.add_stack("U", url_template(auth="AWS_IAM"), resolver({"Fn": function_arn("fn")}))
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Flambda%2Faws4_request"
    )
    reply = request(f"{endpoint.url}?{query}&X-Amz-Signature=abc&X-Amz-SignedHeaders=host&X-Amz-Date=20260101T000000Z")
    assert (reply.status, reply.body) == (200, b"AKIDEXAMPLE")
    assert request(f"{endpoint.url}?X-Amz-Algorithm=AWS4-HMAC-SHA256").status == 403


def test_client_that_stops_reading_does_not_hang_posts(ws_door: FrontDoor, invoker: PyInvoker) -> None:
    ws_door.ws_send_timeout = 0.5
    ws = RawWs(ws_door)  # connects, then never reads again
    connection_id = invoker.events("connect")[-1]["requestContext"]["connectionId"]
    management = f"{ws_door.endpoint}/ws/wsapi0001/dev/@connections/{connection_id}"
    statuses = []
    started = time.monotonic()
    for _ in range(400):
        statuses.append(signed_request(management, method="POST", body=b"x" * (127 * 1024), timeout=10).status)
        if statuses[-1] != 200:
            break
    assert statuses[-1] == 410 and time.monotonic() - started < 30
    assert wait_for(lambda: len(invoker.events("disconnect")) == 1, 30, 0.02)  # a bound, not a timing claim
    assert invoker.events("disconnect")[0]["requestContext"]["disconnectStatusCode"] == 1006
    ws.sock.close()


def test_ws_slow_route_does_not_block_the_next_message_or_pings(ws_door: FrontDoor, invoker: PyInvoker) -> None:
    release = threading.Event()

    def default(event: Any) -> Any:
        if event["body"] == "slow":
            assert release.wait(10)
        return {"statusCode": 200, "body": f"echo:{event['body']}"}

    invoker.handlers["default"] = default
    ws = RawWs(ws_door)
    ws.frame(0x1, b"slow")
    ws.frame(0x1, b"fast")
    ws.frame(0x9, b"ping")
    answers = {ws.read(), ws.read()}
    assert answers == {(0x1, b"echo:fast"), (0xA, b"ping")}
    release.set()
    assert ws.read() == (0x1, b"echo:slow")
    ws.sock.close()


def test_expect_100_continue_with_a_huge_body_gets_413_first(door: FrontDoor, invoker: PyInvoker) -> None:
    serve(door, root_api())
    with socket.create_connection(("127.0.0.1", door.port), timeout=5) as sock:
        sock.sendall(
            f"POST {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
            f"Content-Length: {20 * 1024 * 1024}\r\n\r\n".encode()
        )
        buffer = bytearray()
        read_all(sock, buffer, 5)
    assert bytes(buffer).startswith(b"HTTP/1.1 413"), bytes(buffer[:60])
    assert invoker.calls == []


def test_ws_handshake_with_another_protocol_version_is_426(ws_door: FrontDoor) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    answer = exchange(
        ws_door,
        (
            "GET /ws/wsapi0001/dev?token=a HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 8\r\n\r\n"
        ).encode(),
    )
    assert answer.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in answer


@pytest.mark.parametrize(
    "prelude",
    [
        b'{"statusCode": "200"}',
        b'{"statusCode": true}',
        b'{"statusCode": 200.5}',
        b'{"statusCode": 700}',
        b'{"body": "not a prelude key"}',
        b'{"headers": {"a": 1}}',
        b'{"multiValueHeaders": {"a": "b"}}',
        b'{"cookies": "c=1"}',
        b"[]",
        b"\xff\xfe",
    ],
)
def test_malformed_stream_prelude_is_500(door: FrontDoor, handlers: dict[str, Any], prelude: bytes) -> None:
    stream_api(door, handlers, lambda event: iter([prelude + b"\x00" * 8 + b"body"]))
    head, _, body = raw_stream(door).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500") and json.loads(body) == {"message": "Internal server error"}


def test_stream_is_cut_off_after_the_maximum_duration(door: FrontDoor, handlers: dict[str, Any]) -> None:
    door.stream_max_seconds = 0.3

    def endless(event: Any) -> Iterator[bytes]:
        yield b'{"statusCode": 200}' + b"\x00" * 8
        for _ in range(100):
            time.sleep(0.05)
            yield b"."

    stream_api(door, handlers, endless)
    started = time.monotonic()
    head, _, chunks = raw_stream(door).partition(b"\r\n\r\n")
    body, complete = dechunk(chunks)
    assert head.startswith(b"HTTP/1.1 200") and not complete and 0 < len(body) < 100
    assert time.monotonic() - started < 3


def test_stream_to_an_http_1_0_client_is_not_chunked(door: FrontDoor, handlers: dict[str, Any]) -> None:
    stream_api(door, handlers, lambda event: iter([b'{"statusCode": 200}' + b"\x00" * 8 + b"ab", b"cd"]))
    answer = exchange(door, f"GET {PREFIX}/ HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert b"Transfer-Encoding" not in head and body == b"abcd"


def test_absolute_form_request_target(door: FrontDoor) -> None:
    serve(door, root_api())
    answer = exchange(
        door, f"GET http://localhost:{door.port}{PREFIX}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 200")


def test_function_url_cors_config_replaces_the_functions_cors_headers(
    door: FrontDoor, handlers: dict[str, Any]
) -> None:
    handlers["fn"] = lambda event: {
        "statusCode": 200,
        "headers": {"Access-Control-Allow-Origin": "https://evil.example", "X-Other": "kept"},
        "body": "ok",
    }
    template = url_template(cors={"AllowOrigins": ["https://app.example"]})
    (endpoint,) = door.add_stack("U", template, resolver({"Fn": function_arn("fn")}))
    reply = request(endpoint.url, headers={"Origin": "https://app.example"})
    assert reply.headers.get_all("Access-Control-Allow-Origin") == ["https://app.example"]
    assert reply.headers["X-Other"] == "kept"


def test_policy_not_action_and_not_resource() -> None:
    from cdk_serverless_patterns.local.front_door import evaluate_policy

    arn = "arn:aws:execute-api:us-east-1:1:api/prod/GET/items/1"
    allow_all_but_admin = {"Statement": [{"Effect": "Allow", "Action": "*", "NotResource": "*/admin/*"}]}
    assert evaluate_policy(allow_all_but_admin, arn) is True
    assert evaluate_policy(allow_all_but_admin, arn.replace("items", "admin")) is None
    deny_other_actions = {
        "Statement": [
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"},
            {"Effect": "Deny", "NotAction": "execute-api:Invoke", "Resource": "*"},
        ]
    }
    assert evaluate_policy(deny_other_actions, arn) is True


def test_unsigned_management_calls_are_refused_as_in_aws(ws_door: FrontDoor, invoker: PyInvoker) -> None:
    ws = RawWs(ws_door)
    connection_id = invoker.events("connect")[-1]["requestContext"]["connectionId"]
    management = f"{ws_door.endpoint}/ws/wsapi0001/dev/@connections/{connection_id}"
    for method in ("POST", "GET", "DELETE"):
        reply = request(management, method=method, body=b"x")
        assert (reply.status, reply.json()) == (403, {"message": "Missing Authentication Token"})
    assert signed_request(management, "POST", b"signed").status == 200
    assert ws.read() == (0x1, b"signed")
    ws.sock.close()


@pytest.mark.parametrize(
    "chunks",
    [b"-1\r\n", b"+3\r\nabc\r\n0\r\n\r\n", b"0x3\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX0\r\n\r\n", b"\r\n"],
)
def test_malformed_chunked_bodies_are_400(door: FrontDoor, invoker: PyInvoker, chunks: bytes) -> None:
    """A negative size must never mean "read until the client stops" (unbounded memory)."""
    serve(door, root_api())
    with socket.create_connection(("127.0.0.1", door.port), timeout=5) as sock:
        sock.sendall(
            f"POST {PREFIX}/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + chunks
        )
        buffer = bytearray()
        read_all(sock, buffer, 5)  # the client keeps its side open: the answer must not wait for it
    assert bytes(buffer).startswith(b"HTTP/1.1 400"), bytes(buffer[:60])
    assert invoker.calls == []
