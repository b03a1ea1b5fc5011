"""The front door's WebSocket APIs (``AWS::ApiGatewayV2::*``, all of which moto 5.2.5 drops), and RFC 6455.

``ws://localhost:P/ws/{apiId}/{stage}``: the handshake runs the ``$connect`` route (IAM: a SigV4-signed handshake
or presigned URL, presence only, else 403; or its REQUEST authorizer
first: deny 403, ``Unauthorized`` 401; a non-2xx ``$connect`` answer rejects the handshake with that
status), messages are routed by ``RouteSelectionExpression`` (``$request.body.action``) else ``$default``,
a route with a route response sends the function's ``body`` back, ``$disconnect`` runs after a close.
A Lambda (non-proxy, ``IntegrationType: AWS``) integration with ``X-Amz-Invocation-Type: 'Event'`` invokes its
function asynchronously (the invoker's ``invoke_async``: Lambda's queue) and answers nothing, as API Gateway does.
The management API (``@connections``: POST, GET, DELETE; 410 ``GoneException`` for unknown ids) is
served over HTTP and patched into moto's ``apigatewaymanagementapi``. Like AWS's, it wants a SigV4
``Authorization`` header (present, not verified): unsigned calls are 403 ``Missing Authentication Token``.

The WebSocket protocol itself is a small, strict server-side implementation over the socket the
front door's HTTP server already accepted (one port serves every kind of endpoint, which a separate
WebSocket server library with its own listener could not). It checks what API Gateway checks:

- frames from a client must be masked, have no RSV bits, and control frames are at most 125 bytes
  and never fragmented (else close 1002, protocol error);
- API Gateway's limits: a frame is at most 32 KB and a message at most 128 KB (else close 1009,
  message too big); a text message must be valid UTF-8 (else close 1007);
- pings are answered with pongs, a close frame is echoed; an idle connection is closed (1001)
  after ``idle_timeout`` seconds (API Gateway: 10 minutes).

Sending is thread safe (the management API posts from other threads) and bounded: a client that stops
reading for ``ws_send_timeout`` seconds is dropped (``$disconnect`` with 1006) and the post answers 410.
A message naming ``$connect`` or ``$disconnect`` as its action goes to ``$default``: those routes run
only on the connection's lifecycle. Authorizer context values reach every route as strings, as REST
APIs deliver them (the WebSocket authorizer guide says its authorizers work as REST ones do).

Reaching clients from a function (``requestContext.domainName``). In AWS a function usually builds its
management endpoint as ``https://{domainName}/{stage}``. Here ``domainName`` is ``localhost:P`` (the
front door's port) and the front door speaks plain HTTP, so that ``https`` URL cannot work locally.
Two forms work both in AWS and in the emulator:

- let boto3 pick the endpoint when the emulator set one (the local cloud gives every function
  ``AWS_ENDPOINT_URL``, pointing at moto, whose ``apigatewaymanagementapi`` is patched to reach these
  connections)::

      endpoint = None if os.environ.get("AWS_ENDPOINT_URL") else f"https://{domain}/{stage}"
      client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)

- or take the scheme from the environment: ``http://{domainName}/{stage}/@connections/{id}`` is served
  too (any path ending in ``/@connections/{id}``), as is ``http://localhost:P/ws/{apiId}/{stage}/@connections/{id}``,
  which reaches only that API's and stage's connections (others: 410).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import re
import select
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from cdk_serverless_patterns.local.front_door_core import (
    WEBSOCKET_INTEGRATION_TIMEOUT,
    Authorizer,
    FrontDoorCore,
    _Answer,
    _function_arn,
    _gateway_error,
    _Handler,
    _refs,
    _Request,
    _request_time,
    _target,
)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_FRAME = 32 * 1024
MAX_MESSAGE = 128 * 1024
WS_IN_FLIGHT = 32  # messages of one connection handled at once

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def valid_key(key: str | None) -> bool:
    """Whether ``key`` is a base64 encoded 16-byte nonce, as RFC 6455 requires."""
    if not key:
        return False
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except ValueError:
        return False


def valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame (RFC 6455 7.4: never 1004-1006, 1015, or below 1000)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


class ProtocolError(Exception):
    """The peer broke the protocol; ``code`` is the close code to send."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WebSocketConnection:
    """One server-side WebSocket connection over an accepted socket (after the 101 answer was sent)."""

    def __init__(
        self,
        sock: socket.socket,
        rfile: BinaryIO,
        *,
        max_frame: int = MAX_FRAME,
        max_message: int = MAX_MESSAGE,
        idle_timeout: float = 600.0,
        send_timeout: float = 10.0,
    ) -> None:
        self._sock = sock
        self._rfile = rfile
        self._max_frame = max_frame
        self._max_message = max_message
        self._send_timeout = send_timeout
        self._send_lock = threading.Lock()
        self._sock.settimeout(idle_timeout)
        self.closed = False
        #: The close code and reason, once the connection is closed (by either side).
        self.close_code: int | None = None
        self.close_reason = ""

    # -- sending ------------------------------------------------------------------------------------
    def _send_frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
        with self._send_lock:
            if self.closed and opcode != OP_CLOSE:
                raise ConnectionError("the WebSocket connection is closed")
            try:
                self._write(header + payload, self._send_timeout)
            except TimeoutError:
                self._abort()
                raise

    def _write(self, data: bytes, timeout: float) -> None:
        """Writes ``data`` within ``timeout`` seconds (a client that stopped reading must not hang the sender)."""
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the WebSocket client does not read")
            _, writable, _ = select.select([], [self._sock], [], remaining)
            if writable:
                view = view[self._sock.send(view) :]

    def _abort(self) -> None:
        """Drops a client that stopped reading: no close handshake is possible; its receiver sees 1006."""
        self.closed = True
        if self.close_code is None:
            self.close_code, self.close_reason = 1006, "the client stopped reading"
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def send_text(self, text: str) -> None:
        """Sends one text message."""
        self._send_frame(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        """Sends one binary message."""
        self._send_frame(OP_BINARY, data)

    def send_data(self, data: bytes) -> None:
        """Sends ``data`` as a text message when it is valid UTF-8, else as a binary message (as API Gateway does)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.send_binary(data)
        else:
            self.send_text(text)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Sends a close frame (once) and shuts the socket down; safe to call from any thread, any number of times."""
        with self._send_lock:
            if self.closed:
                return
            self.closed = True
            if self.close_code is None:
                self.close_code, self.close_reason = code, reason
        payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
        try:
            if code in (1005, 1006):  # reserved: never sent on the wire
                raise OSError("no close frame")
            with self._send_lock:
                self._write(struct.pack("!BB", 0x80 | OP_CLOSE, len(payload)) + payload, min(self._send_timeout, 1.0))
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    # -- receiving ----------------------------------------------------------------------------------
    def _read_exact(self, count: int) -> bytes:
        data = self._rfile.read(count)
        if data is None or len(data) < count:
            raise EOFError("the peer closed the connection")
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read_exact(2)
        fin, rsv, opcode = bool(first & 0x80), first & 0x70, first & 0x0F
        masked, length = bool(second & 0x80), second & 0x7F
        if rsv:
            raise ProtocolError(1002, "reserved bits set")
        if not masked:
            raise ProtocolError(1002, "client frames must be masked")
        if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise ProtocolError(1002, "unknown opcode")
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        if opcode >= OP_CLOSE and (length > 125 or not fin):
            raise ProtocolError(1002, "bad control frame")
        if length > self._max_frame:
            raise ProtocolError(1009, "Frame size limit exceeded")
        mask = self._read_exact(4)
        data = bytearray(self._read_exact(length))
        for index in range(length):
            data[index] ^= mask[index & 3]
        return fin, opcode, bytes(data)

    def receive(self) -> tuple[bool, bytes] | None:
        """The next message as ``(is_text, data)``; None once the connection is closed (see ``close_code``)."""
        message_opcode: int | None = None
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                fin, opcode, data = self._read_frame()
                if opcode == OP_PING:
                    self._send_frame(OP_PONG, data)
                    continue
                if opcode == OP_PONG:
                    continue
                if opcode == OP_CLOSE:
                    if len(data) == 1:
                        raise ProtocolError(1002, "close frame with a one-byte payload")
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    if len(data) >= 2 and not valid_close_code(code):
                        raise ProtocolError(1002, f"invalid close code {code}")
                    try:
                        reason = data[2:].decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError(1007, "close reason is not UTF-8") from None
                    self.close_code, self.close_reason = code, reason
                    self.close(1000 if code == 1005 else code, "")
                    return None
                if opcode == OP_CONTINUATION:
                    if message_opcode is None:
                        raise ProtocolError(1002, "continuation without a message")
                elif message_opcode is not None:
                    raise ProtocolError(1002, "new message inside a fragmented message")
                else:
                    message_opcode = opcode
                size += len(data)
                if size > self._max_message:
                    raise ProtocolError(1009, "Message too big")
                parts.append(data)
                if fin:
                    payload = b"".join(parts)
                    if message_opcode == OP_TEXT:
                        try:
                            payload.decode("utf-8")
                        except UnicodeDecodeError:
                            raise ProtocolError(1007, "invalid UTF-8 in a text message") from None
                    return message_opcode == OP_TEXT, payload
        except ProtocolError as error:
            self.close(error.code, error.reason)
            return None
        except TimeoutError:
            self.close(1001, "Going away")
            return None
        except (EOFError, OSError, ValueError):
            with self._send_lock:
                if self.close_code is None:
                    self.close_code, self.close_reason = 1006, "connection lost"
            self.close(1006, "")
            return None


@dataclass
class _WsApi:
    api_id: str
    logical_id: str
    stack_name: str
    selection: str
    stages: dict[str, dict[str, str]]
    routes: dict[str, dict[str, Any]]  # route key -> {"function_arn", "authorizer", "respond"}


@dataclass
class _WsClient:
    connection: WebSocketConnection
    api_id: str
    stage: str
    connected_at: float
    source_ip: str
    user_agent: str
    last_active: float


class WebSocketApis(FrontDoorCore):
    """WebSocket routes, events, the management API and moto's management API patch."""

    #: Seconds a connection may stay silent before it is closed (1001), as API Gateway's 10-minute idle timeout.
    ws_idle_timeout: float = 600.0
    #: Seconds a send (a route's answer, an ``@connections`` post) may wait for a client that does not read;
    #: then the client is dropped (``$disconnect`` with 1006) and the post answers 410 GoneException.
    ws_send_timeout: float = 10.0

    def _load_ws(self, stack: str, resources: Mapping[str, Any], resolve: Callable[[Any], Any]) -> list[_WsApi]:
        apis = []
        for api_lid, api_res in resources.items():
            if not isinstance(api_res, dict) or api_res.get("Type") != "AWS::ApiGatewayV2::Api":
                continue
            props = api_res.get("Properties") or {}
            if props.get("ProtocolType") != "WEBSOCKET":
                continue
            try:
                api_id = resolve({"Ref": api_lid})
            except Exception:
                api_id = None
            if not isinstance(api_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", api_id):
                api_id = self._url_id(stack, api_lid)[:10]
            stages: dict[str, dict[str, str]] = {}
            integrations: dict[str, str | None] = {}
            authorizers: dict[str, Authorizer] = {}
            route_props: dict[str, Mapping[str, Any]] = {}
            responses: set[str] = set()
            asynchronous: set[str] = set()
            for lid, res in resources.items():
                rprops = (res.get("Properties") or {}) if isinstance(res, dict) else {}
                if not isinstance(res, dict) or _target(rprops.get("ApiId")) != api_lid:
                    continue
                kind = res.get("Type")
                if kind == "AWS::ApiGatewayV2::Stage" and rprops.get("StageName"):
                    stages[str(rprops["StageName"])] = {
                        str(k): str(v) for k, v in (rprops.get("StageVariables") or {}).items()
                    }
                elif kind == "AWS::ApiGatewayV2::Integration":
                    try:
                        integrations[lid], _ = _function_arn(str(resolve(rprops.get("IntegrationUri"))))
                    except Exception:
                        integrations[lid] = None
                    invocation_type = (rprops.get("RequestParameters") or {}).get(
                        "integration.request.header.X-Amz-Invocation-Type"
                    )
                    if rprops.get("IntegrationType") == "AWS" and invocation_type == "'Event'":
                        asynchronous.add(lid)
                elif kind == "AWS::ApiGatewayV2::Authorizer":
                    authorizer = self._authorizer(f"{stack}/{lid}", rprops, resolve, v2=True)
                    if authorizer:
                        authorizers[lid] = authorizer
                elif kind == "AWS::ApiGatewayV2::Route":
                    route_props[lid] = rprops
                elif kind == "AWS::ApiGatewayV2::RouteResponse":
                    route = _target(rprops.get("RouteId"))
                    if route:
                        responses.add(route)
            routes: dict[str, dict[str, Any]] = {}
            for lid, rprops in route_props.items():
                integration = next((ref for ref in _refs(rprops.get("Target")) if ref in integrations), None)
                routes[str(rprops.get("RouteKey"))] = {
                    "function_arn": integrations.get(integration or ""),
                    "has_integration": integration is not None,
                    "authorizer": authorizers.get(_target(rprops.get("AuthorizerId")) or "")
                    if rprops.get("AuthorizationType") == "CUSTOM"
                    else None,
                    "respond": lid in responses or bool(rprops.get("RouteResponseSelectionExpression")),
                    "iam": rprops.get("AuthorizationType") == "AWS_IAM",
                    "asynchronous": integration in asynchronous,
                }
            selection = str(props.get("RouteSelectionExpression", "$request.body.action"))
            apis.append(_WsApi(api_id, api_lid, stack, selection, stages, routes))
        return apis

    # -- WebSocket APIs -----------------------------------------------------------------------------
    def _ws_event(
        self,
        api: _WsApi,
        stage: str,
        connection_id: str,
        route_key: str,
        event_type: str,
        connected_at: float,
        **extra: Any,
    ) -> dict[str, Any]:
        now = time.time()
        request_id = str(uuid.uuid4())
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": stage,
            "connectedAt": int(connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": extra.pop("identity"),
            "requestId": request_id,
            "domainName": f"localhost:{self.port}",
            "connectionId": connection_id,
            "apiId": api.api_id,
        }
        context.update(extra.pop("context", {}))
        return {"requestContext": context, **extra}

    def _websocket(self, handler: _Handler, request: _Request) -> None:
        parts = request.raw_path.split("/")
        if len(parts) != 4 or parts[1] != "ws":
            raise _Answer(404, {"message": "Not Found"})
        with self._lock:
            api = self._ws.get(parts[2])
        if api is None:
            raise _Answer(404, {"message": "Not Found"})
        stage = parts[3]
        if stage not in api.stages:
            raise _gateway_error(403, "Forbidden", "ForbiddenException")
        key = request.header("Sec-WebSocket-Key")
        upgrade = (request.header("Upgrade") or "").lower() == "websocket"
        if request.method != "GET" or not upgrade or not valid_key(key):
            handler.close_connection = True
            raise _Answer(400, {"message": "Bad WebSocket handshake"})
        if (request.header("Sec-WebSocket-Version") or "").strip() != "13":  # RFC 6455 4.4: say which we speak
            handler.close_connection = True
            raise _Answer(
                426,
                {"message": "Upgrade Required"},
                {"Content-Type": "application/json", "Sec-WebSocket-Version": "13"},
            )
        assert key is not None
        connection_id = base64.urlsafe_b64encode(uuid.uuid4().bytes[:12]).decode()
        connected_at = time.time()
        identity = {"sourceIp": request.source_ip, "userAgent": request.header("User-Agent")}
        headers, multi_headers = request.headers_v1()
        query, multi_query = request.query_v1()
        connect_event = self._ws_event(
            api,
            stage,
            connection_id,
            "$connect",
            "CONNECT",
            connected_at,
            identity=identity,
            headers=headers,
            multiValueHeaders=multi_headers,
            queryStringParameters=query,
            multiValueQueryStringParameters=multi_query,
            isBase64Encoded=False,
        )
        route = api.routes.get("$connect")
        accept_headers: list[tuple[str, str]] = []
        auth_context: dict[str, Any] = {}
        if route is not None:
            authorizer = route["authorizer"]
            if route.get("iam"):
                # IAM on $connect: a SigV4-signed handshake (an Authorization header, or a presigned URL as
                # browsers must use), else 403 as API Gateway answers. Presence only: the signature is not verified.
                access_key = request.sigv4_access_key()
                if access_key is None:
                    raise _gateway_error(403, "Forbidden", "ForbiddenException")
                identity.update(
                    accessKey=access_key,
                    accountId=self.account,
                    caller=access_key,
                    user=access_key,
                    userArn=f"arn:aws:iam::{self.account}:user/local",
                )
            if authorizer is not None:
                values = self._identity_values(
                    authorizer, request, {}, connect_event["requestContext"], api.stages[stage]
                )
                method_arn = f"arn:aws:execute-api:{self.region}:{self.account}:{api.api_id}/{stage}/$connect"
                auth_event = {
                    "type": "REQUEST",
                    "methodArn": method_arn,
                    "headers": headers,
                    "multiValueHeaders": multi_headers,
                    "queryStringParameters": query,
                    "multiValueQueryStringParameters": multi_query,
                    "stageVariables": api.stages[stage] or None,
                    "requestContext": connect_event["requestContext"],
                }
                auth = self._authorize(authorizer, values, auth_event, method_arn)
                # Context values reach the routes as strings, as for REST APIs (api-gateway-lambda-authorizer-output).
                auth_context = {
                    **{key: self._stringify(value) for key, value in auth.context.items()},
                    "principalId": auth.principal_id,
                    "integrationLatency": 0,
                }
                connect_event["requestContext"]["authorizer"] = auth_context
            if route["function_arn"]:
                result = self._invoke(route["function_arn"], connect_event, None, WEBSOCKET_INTEGRATION_TIMEOUT)
                if result.function_error:
                    raise _gateway_error(502, "Internal server error", "InternalServerErrorException")
                try:
                    answer = json.loads(result.payload)
                except ValueError:
                    answer = None
                if isinstance(answer, dict):
                    status = answer.get("statusCode", 200)
                    if isinstance(status, int) and not 200 <= status < 300:
                        raise _Answer(status, b"", {})
                    protocol = (answer.get("headers") or {}).get("Sec-WebSocket-Protocol")
                    if isinstance(protocol, str):
                        accept_headers.append(("Sec-WebSocket-Protocol", protocol))
            elif route["has_integration"]:
                raise _gateway_error(500, "Internal server error", "InternalServerErrorException")
        handler.send_response(101)
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept_key(key))
        for name, value in accept_headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.flush()
        handler.close_connection = True
        ws = WebSocketConnection(
            handler.connection,
            handler.rfile,  # type: ignore[arg-type]
            idle_timeout=self.ws_idle_timeout,
            send_timeout=self.ws_send_timeout,
        )
        client = _WsClient(
            ws, api.api_id, stage, connected_at, request.source_ip, request.header("User-Agent") or "", connected_at
        )
        with self._lock:
            self._clients[connection_id] = client
        # Messages are handled concurrently, as API Gateway invokes a route per message without waiting for
        # the previous one: a slow route neither delays the next message nor the answer to a ping. At most
        # WS_IN_FLIGHT messages of one connection run at once; beyond that, reading waits (backpressure).
        in_flight = threading.BoundedSemaphore(WS_IN_FLIGHT)

        def handle(is_text: bool, data: bytes) -> None:
            try:
                self._ws_message(api, stage, client, connection_id, identity, auth_context, is_text, data)
            except Exception:  # a bug in one message's handling never ends the connection
                pass
            finally:
                in_flight.release()

        try:
            while not self._stopping.is_set():
                message = ws.receive()
                if message is None:
                    break
                client.last_active = time.time()
                while not in_flight.acquire(timeout=0.5):
                    if self._stopping.is_set():
                        break
                else:
                    threading.Thread(target=handle, args=message, name="front-door-ws-message", daemon=True).start()
        finally:
            with self._lock:
                self._clients.pop(connection_id, None)
            ws.close(1001, "Going away")
            route = api.routes.get("$disconnect")
            if route is not None and route["function_arn"]:
                event = self._ws_event(
                    api,
                    stage,
                    connection_id,
                    "$disconnect",
                    "DISCONNECT",
                    connected_at,
                    identity=identity,
                    context={
                        "disconnectStatusCode": ws.close_code or 1006,
                        "disconnectReason": ws.close_reason,
                        **({"authorizer": auth_context} if auth_context else {}),
                    },
                    headers=headers,
                    multiValueHeaders=multi_headers,
                    isBase64Encoded=False,
                )
                with contextlib.suppress(Exception):
                    self._invoke(route["function_arn"], event, None, WEBSOCKET_INTEGRATION_TIMEOUT)

    def _select_route(self, api: _WsApi, is_text: bool, data: bytes) -> str:
        match = re.fullmatch(r"\$request\.body\.(.+)", api.selection.strip())
        if is_text and match:
            try:
                value: Any = json.loads(data)
                for part in match.group(1).split("."):
                    value = value.get(part) if isinstance(value, dict) else None
            except ValueError:
                value = None
            chosen = str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
            if chosen in api.routes and chosen not in (
                "$connect",
                "$disconnect",
            ):  # lifecycle routes: never by a message
                return chosen
        return "$default"

    def _ws_message(
        self,
        api: _WsApi,
        stage: str,
        client: _WsClient,
        connection_id: str,
        identity: dict[str, Any],
        auth_context: dict[str, Any],
        is_text: bool,
        data: bytes,
    ) -> None:
        route_key = self._select_route(api, is_text, data)
        route = api.routes.get(route_key)
        event = self._ws_event(
            api,
            stage,
            connection_id,
            route_key,
            "MESSAGE",
            client.connected_at,
            identity=identity,
            context={
                "messageId": base64.urlsafe_b64encode(uuid.uuid4().bytes[:12]).decode(),
                **({"authorizer": auth_context} if auth_context else {}),
            },
            body=data.decode("utf-8") if is_text else base64.b64encode(data).decode(),
            isBase64Encoded=not is_text,
        )
        request_id = event["requestContext"]["requestId"]
        if route is None or not route["function_arn"]:
            client.connection.send_text(
                json.dumps({"message": "Forbidden", "connectionId": connection_id, "requestId": request_id})
            )
            return
        if route.get("asynchronous"):
            # A Lambda (non-proxy) integration with X-Amz-Invocation-Type 'Event': API Gateway hands the event to
            # Lambda's asynchronous queue (retries, destinations) and answers the client nothing; the function may
            # run longer than the 29 s integration timeout and post to the connection itself. The request template
            # is not evaluated (no VTL engine here): the function gets the proxy event, which is what the streaming
            # pattern's template rebuilds.
            submit = getattr(self.invoker, "invoke_async", None)
            payload = json.dumps(event).encode()
            try:
                if submit is not None:
                    submit(route["function_arn"], payload)
                else:
                    self._pool.submit(self.invoker.invoke, route["function_arn"], payload, tenant_id=None)
            except Exception:
                with contextlib.suppress(OSError, ConnectionError):
                    client.connection.send_text(
                        json.dumps(
                            {"message": "Internal server error", "connectionId": connection_id, "requestId": request_id}
                        )
                    )
            return
        try:
            result = self._invoke(route["function_arn"], event, None, WEBSOCKET_INTEGRATION_TIMEOUT)
            if result.function_error:
                raise ValueError("function error")
        except (_Answer, ValueError, Exception):
            with contextlib.suppress(OSError, ConnectionError):
                client.connection.send_text(
                    json.dumps(
                        {"message": "Internal server error", "connectionId": connection_id, "requestId": request_id}
                    )
                )
            return
        if route["respond"]:
            try:
                answer = json.loads(result.payload)
            except ValueError:
                return
            body = answer.get("body") if isinstance(answer, dict) else None
            if isinstance(body, str):
                with contextlib.suppress(OSError, ConnectionError):
                    client.connection.send_text(body)

    # -- the management API (@connections) ----------------------------------------------------------
    def post_to_connection(self, connection_id: str, data: bytes) -> bool:
        """Sends ``data`` to a WebSocket client (text frame when valid UTF-8, else binary); False when it is gone."""
        with self._lock:
            client = self._clients.get(connection_id)
        if client is None or client.connection.closed:
            return False
        try:
            client.connection.send_data(data)
        except (OSError, ConnectionError):
            return False
        return True

    def connection_info(self, connection_id: str) -> dict[str, Any] | None:
        """What ``GetConnection`` answers for a connected client, else None."""
        with self._lock:
            client = self._clients.get(connection_id)
        if client is None or client.connection.closed:
            return None

        def iso(at: float) -> str:
            return (
                datetime.datetime.fromtimestamp(at, datetime.UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )

        return {
            "connectedAt": iso(client.connected_at),
            "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent},
            "lastActiveAt": iso(client.last_active),
        }

    def disconnect(self, connection_id: str) -> bool:
        """Closes a WebSocket client's connection ($disconnect follows); False when it is gone."""
        with self._lock:
            client = self._clients.get(connection_id)
        if client is None or client.connection.closed:
            return False
        client.connection.close(1000, "")
        return True

    def _management(self, handler: _Handler, request: _Request) -> None:
        match = re.search(r"/@connections/([^/]+)$", request.raw_path)
        if not match:
            raise _Answer(404, {"message": "Not Found"})
        connection_id = urllib.parse.unquote(match.group(1))
        # The management API is IAM-authorized in AWS: an unsigned call is refused there, so here too (the
        # signature itself is not verified; boto3's apigatewaymanagementapi client always signs).
        signed = (request.header("Authorization") or "").startswith("AWS4-HMAC-SHA256 ") or (
            dict(request.query).get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256"
        )
        if not signed:
            raise _gateway_error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        gone = _gateway_error(410, None, "GoneException")
        scope = re.fullmatch(r"/ws/([^/]+)/([^/]+)/@connections/[^/]+", request.raw_path)
        if scope:  # an API's own endpoint reaches only its own stage's connections
            with self._lock:
                client = self._clients.get(connection_id)
            if client is None or (client.api_id, client.stage) != (
                scope.group(1),
                urllib.parse.unquote(scope.group(2)),
            ):
                raise gone
        if request.method == "POST":
            if len(request.body) > 128 * 1024:
                raise _gateway_error(413, "Message too long", "PayloadTooLargeException")
            if not self.post_to_connection(connection_id, request.body):
                raise gone
            self._send(handler, 200, [], b"")
        elif request.method == "GET":
            info = self.connection_info(connection_id)
            if info is None:
                raise gone
            self._send(handler, 200, [("Content-Type", "application/json")], json.dumps(info).encode())
        elif request.method == "DELETE":
            if not self.disconnect(connection_id):
                raise gone
            self._send(handler, 204, [], b"")
        else:
            raise _Answer(405, {"message": "Method Not Allowed"})

    def patch_moto_management_api(self) -> Callable[[], None]:
        """Routes moto's ``apigatewaymanagementapi`` (PostToConnection, GetConnection, DeleteConnection) here.

        moto 5.2.5 keeps posted data in memory and invents connections; with this patch a function using
        boto3's ``apigatewaymanagementapi`` against moto's endpoint reaches the front door's clients, and an
        unknown connection is ``GoneException`` (410). Returns the undo callable.
        """
        from moto.apigatewaymanagementapi.models import ApiGatewayManagementApiBackend
        from moto.core.exceptions import JsonRESTError

        class GoneException(JsonRESTError):
            code = 410

            def __init__(self, connection_id: str) -> None:
                super().__init__("GoneException", f"Connection {connection_id} is gone")

        front_door = self

        class _Info:
            def __init__(self, info: dict[str, Any]) -> None:
                self.info = info

            def to_dict(self) -> dict[str, Any]:
                return self.info

        def post_to_connection(backend: Any, data: bytes, connection_id: str) -> None:
            if not front_door.post_to_connection(connection_id, bytes(data)):
                raise GoneException(connection_id)

        def get_connection(backend: Any, connection_id: str) -> _Info:
            info = front_door.connection_info(connection_id)
            if info is None:
                raise GoneException(connection_id)
            return _Info(info)

        def delete_connection(backend: Any, connection_id: str) -> None:
            if not front_door.disconnect(connection_id):
                raise GoneException(connection_id)

        names = ("post_to_connection", "get_connection", "delete_connection")
        originals = {name: ApiGatewayManagementApiBackend.__dict__[name] for name in names}
        for name, function in zip(names, (post_to_connection, get_connection, delete_connection), strict=True):
            setattr(ApiGatewayManagementApiBackend, name, function)

        def undo() -> None:
            for name, function in originals.items():
                setattr(ApiGatewayManagementApiBackend, name, function)

        return undo
