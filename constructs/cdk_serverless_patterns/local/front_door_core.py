"""The front door's shared machinery: the HTTP server, invoking, streaming, authorizers, mapping expressions.

:class:`FrontDoorCore` holds the state and the plumbing every kind of endpoint uses; REST APIs
(``front_door_rest``), function URLs (``front_door_url``) and WebSocket APIs (``front_door_ws``) are
mixins over it, and :class:`~cdk_serverless_patterns.local.front_door.FrontDoor` combines them.
See ``front_door.py`` for what is served and how it matches AWS.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import http.server
import json
import queue
import re
import select
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from cdk_serverless_patterns.local.front_door_rest import _RestApi
    from cdk_serverless_patterns.local.front_door_url import _FunctionUrl
    from cdk_serverless_patterns.local.front_door_ws import _WsApi, _WsClient

MAX_BODY = 10 * 1024 * 1024
STREAM_PRELUDE_LIMIT = 16 * 1024
DEFAULT_INTEGRATION_TIMEOUT = 29.0
STREAM_IDLE_TIMEOUT = 300.0
AUTHORIZER_TIMEOUT = 30.0
WEBSOCKET_INTEGRATION_TIMEOUT = 29.0
AUTH_CACHE_LIMIT = 10_000
MAX_AUTHORIZER_TTL = 3600
TENANT_HEADER = "x-amz-tenant-id"
#: Lambda's ``TenantId`` (botocore's lambda 2015-03-31 model): 1 to 256 of these characters.
TENANT_ID = re.compile(r"[a-zA-Z0-9._:/=+\-@ ]{1,256}")
_NUL8 = b"\x00" * 8


class InvokeResult(Protocol):
    """A buffered invocation's outcome (contract A's ``InvokeResult``)."""

    @property
    def payload(self) -> bytes: ...
    @property
    def function_error(self) -> str | None: ...
    @property
    def request_id(self) -> str: ...


class StreamingInvoke(Protocol):
    """A streamed invocation: iterate for body chunks; after iteration ``error_type`` says whether it failed."""

    def __iter__(self) -> Iterator[bytes]: ...
    @property
    def error_type(self) -> str | None: ...
    @property
    def error_body(self) -> Any: ...
    @property
    def request_id(self) -> str: ...


class Invoker(Protocol):
    """Runs deployed functions (the integrator implements it over the Lambda runner)."""

    def invoke(self, function_arn: str, payload: bytes, *, tenant_id: str | None = None) -> InvokeResult: ...
    def invoke_stream(self, function_arn: str, payload: bytes, *, tenant_id: str | None = None) -> StreamingInvoke: ...


@dataclass(frozen=True)
class Endpoint:
    """Something the front door serves: ``kind`` is ``rest``, ``function_url`` or ``websocket``."""

    kind: str
    logical_id: str
    url: str
    stack_name: str


def _target(value: Any) -> str | None:
    """The logical id a ``Ref`` or ``Fn::GetAtt`` points at, else None."""
    if isinstance(value, dict) and len(value) == 1:
        if isinstance(value.get("Ref"), str):
            return str(value["Ref"])
        attr = value.get("Fn::GetAtt")
        if isinstance(attr, list) and attr and isinstance(attr[0], str):
            return attr[0]
        if isinstance(attr, str):
            return attr.split(".", 1)[0]
    return None


def _refs(value: Any) -> Iterator[str]:
    """Every logical id referenced anywhere inside ``value``."""
    target = _target(value)
    if target is not None:
        yield target
    if isinstance(value, dict):
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _function_arn(uri: str) -> tuple[str, bool]:
    """The function ARN of an API Gateway Lambda integration URI, and whether the URI asks for streaming."""
    match = re.search(r"/functions/(.+?)/(response-streaming-invocations|invocations)$", uri)
    if not match:
        raise ValueError(f"not a Lambda integration URI: {uri!r}")
    return match.group(1), match.group(2) == "response-streaming-invocations"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT (``Bearer`` prefix allowed), unverified: the emulator cannot check Cognito's signature."""
    token = token.removeprefix("Bearer ").strip()
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    if not isinstance(claims, dict) or (isinstance(claims.get("exp"), int | float) and claims["exp"] < time.time()):
        return None
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in claims.items()}


def _request_time(now: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


@dataclass
class Authorizer:
    """A Lambda authorizer (REST ``AWS::ApiGateway::Authorizer`` or WebSocket ``AWS::ApiGatewayV2::Authorizer``)."""

    key: str
    type: str  # TOKEN | REQUEST
    function_arn: str
    identity_sources: list[str]
    ttl: int
    validation: str | None = None


@dataclass
class AuthResult:
    """An authorizer's answer: None ``error`` means allowed; ``context`` goes to the request."""

    status: int = 200
    message: str | None = None
    principal_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


def _arn_pattern(resource: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in resource) + r"\Z")


def evaluate_policy(policy: Any, method_arn: str) -> bool | None:
    """Whether an IAM policy document allows ``execute-api:Invoke`` on ``method_arn``.

    True: allowed; False: explicitly denied; None: no statement allows it (implicit deny).
    Raises ValueError for a malformed document.
    """
    if not isinstance(policy, dict):
        raise ValueError("policyDocument is not an object")
    statements = policy.get("Statement")
    if not isinstance(statements, list | dict):
        raise ValueError("policyDocument has no Statement")
    allowed = False
    for statement in _as_list(statements):
        if not isinstance(statement, dict):
            raise ValueError("a Statement is not an object")
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise ValueError("a Statement has no valid Effect")
        action_key = "NotAction" if "NotAction" in statement else "Action"
        resource_key = "NotResource" if "NotResource" in statement else "Resource"
        actions = _as_list(statement.get(action_key))
        resources = _as_list(statement.get(resource_key))
        if not all(isinstance(item, str) for item in actions + resources):
            raise ValueError("Action and Resource must be strings")
        action_match = any(_arn_pattern(action.lower()).match("execute-api:invoke") for action in actions)
        resource_match = any(_arn_pattern(resource).match(method_arn) for resource in resources)
        action_match ^= action_key == "NotAction"  # NotAction/NotResource: every action/resource but these
        resource_match ^= resource_key == "NotResource"
        if action_match and resource_match:
            if effect == "Deny":
                return False
            allowed = True
    return True if allowed else None


def _prelude(data: bytes) -> dict[str, Any]:
    """A streamed response's HTTP prelude, checked as API Gateway and function URLs check it.

    Only ``statusCode`` (an integer 100-599), ``headers`` (string values), ``multiValueHeaders``
    (string arrays) and ``cookies`` (strings), all optional; anything else is malformed (ValueError).
    """
    prelude = json.loads(data)
    if not isinstance(prelude, dict) or set(prelude) - {"statusCode", "headers", "multiValueHeaders", "cookies"}:
        raise ValueError("the prelude is not an object with the allowed keys")
    status = prelude.get("statusCode", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError("statusCode is not an integer from 100 to 599")
    headers, multi, cookies = (
        prelude.get("headers", {}),
        prelude.get("multiValueHeaders", {}),
        prelude.get("cookies", []),
    )
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError("headers values must be strings")
    if not isinstance(multi, dict) or not all(
        isinstance(v, list) and all(isinstance(item, str) for item in v) for v in multi.values()
    ):
        raise ValueError("multiValueHeaders values must be string arrays")
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise ValueError("cookies must be strings")
    return prelude


class _Request:
    """The parts of an HTTP request the front door reads."""

    def __init__(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str):
        self.method = method
        path, _, query = raw_path.partition("?")
        self.raw_query = query
        self.raw_path = path
        self.path = urllib.parse.unquote(path, errors="replace")
        self.header_list = headers
        self.body = body
        self.source_ip = source_ip
        self.query = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="replace")

    def header(self, name: str) -> str | None:
        for key, value in reversed(self.header_list):
            if key.lower() == name.lower():
                return value
        return None

    def headers_v1(self) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for key, value in self.header_list:
            single[key] = value
            multi.setdefault(key, []).append(value)
        return (single or None), (multi or None)

    def sigv4_access_key(self) -> str | None:
        """The access key of a SigV4 ``Authorization`` header or presigned query (``X-Amz-Algorithm``,
        ``X-Amz-Credential``), or None when the request is not signed. Presence only: the signature is not verified."""
        match = re.match(r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/", self.header("Authorization") or "")
        presigned = dict(self.query)
        if not match and presigned.get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256":
            match = re.match(r"([^/\s]+)/", presigned.get("X-Amz-Credential", ""))
        return match.group(1) if match else None

    def query_v1(self) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for key, value in self.query:
            single[key] = value
            multi.setdefault(key, []).append(value)
        return (single or None), (multi or None)


class _Answer(Exception):
    """A complete HTTP answer raised from deep inside request handling."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = dict(headers or {"Content-Type": "application/json"})
        self.response_type: str | None = None
        self.message: str | None = None


_RESPONSE_TYPES = {
    "MissingAuthenticationTokenException": "MISSING_AUTHENTICATION_TOKEN",
    "UnauthorizedException": "UNAUTHORIZED",
    "AccessDeniedException": "ACCESS_DENIED",
    "AuthorizerConfigurationException": "AUTHORIZER_CONFIGURATION_ERROR",
    "AuthorizerFailure": "AUTHORIZER_FAILURE",
    "IntegrationTimeout": "INTEGRATION_TIMEOUT",
    "BadRequestBody": "BAD_REQUEST_BODY",
    "BadRequestParameters": "BAD_REQUEST_PARAMETERS",
    "RequestTooLarge": "REQUEST_TOO_LARGE",
}
_WIRE_ERROR_TYPES = {"BadRequestBody": "BadRequestException", "BadRequestParameters": "BadRequestException"}


def _gateway_error(status: int, message: str | None, error_type: str) -> _Answer:
    wire = _WIRE_ERROR_TYPES.get(error_type, error_type)
    answer = _Answer(status, {"message": message}, {"Content-Type": "application/json", "x-amzn-ErrorType": wire})
    answer.response_type = _RESPONSE_TYPES.get(error_type)
    answer.message = message
    return answer


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    front_door: FrontDoorCore


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FrontDoor"
    timeout = 60.0  # a slow client's request read
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.front_door._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.front_door._track(self.connection, False)

    default_request_version = "HTTP/1.1"  # a request line without a version still gets a status line

    def handle_expect_100(self) -> bool:
        """No ``100 Continue`` for a body over the limit: its 413 answer comes without the body being sent."""
        length = (self.headers.get("Content-Length") or "").strip()
        if length.isdigit() and int(length) > MAX_BODY:
            return True
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, headers too large...) as JSON, then close."""
        self.close_connection = True
        body = json.dumps({"message": self.responses.get(code, ("Error",))[0]}).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        self.server.front_door._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


def _clean_header(name: Any, value: Any) -> tuple[str, str] | None:
    """A header safe to send (no CR/LF injection, latin-1 encodable), else None."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    if not isinstance(name, str) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    if not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) or re.search(r"[\r\n\x00]", text):
        return None
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return None
    return name, text


class FrontDoorCore:
    """State and plumbing shared by the REST, function URL and WebSocket parts of the front door."""

    #: The longest a streamed response may last (API Gateway REST STREAM: 15 minutes); then it is cut off.
    stream_max_seconds: float = 900.0

    def __init__(
        self,
        invoker: Invoker,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        account: str = "123456789012",
    ) -> None:
        self.invoker = invoker
        self.host, self.region, self.account = host, region, account
        self._requested_port = port
        self._port: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._sockets: set[socket.socket] = set()
        self._rest: dict[str, _RestApi] = {}
        self._urls: dict[str, _FunctionUrl] = {}
        self._ws: dict[str, _WsApi] = {}
        self._clients: dict[str, _WsClient] = {}
        self._auth_cache: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=128, thread_name_prefix="front-door-invoke")
        self._stopping = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> Self:
        """Starts serving in background threads; returns self."""
        server = _Server((self.host, self._requested_port), _Handler)
        server.front_door = self
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.name = "front-door"
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes every connection (WebSocket clients see close 1001)."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            clients = list(self._clients.values())
            sockets = list(self._sockets)
        for client in clients:
            client.connection.close(1001, "Going away")
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served on."""
        if self._port is None:
            raise RuntimeError("the front door is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://localhost:<port>``."""
        return f"http://localhost:{self.port}"

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    @staticmethod
    def _url_id(stack_name: str, logical_id: str) -> str:
        digest = hashlib.sha256(f"{stack_name}/{logical_id}".encode()).digest()
        return base64.b32encode(digest).decode().lower()[:32]

    def _authorizer(
        self, key: str, props: Mapping[str, Any], resolve: Callable[[Any], Any], v2: bool
    ) -> Authorizer | None:
        kind = str(props.get("AuthorizerType" if v2 else "Type", ""))
        if kind not in ("TOKEN", "REQUEST"):
            return None
        try:
            function_arn, _ = _function_arn(str(resolve(props.get("AuthorizerUri"))))
        except Exception:  # an authorizer we cannot call: every request it guards answers 500
            function_arn = ""
        if v2:
            sources = [str(item) for item in _as_list(props.get("IdentitySource"))]
            ttl = 0
        else:
            raw = props.get("IdentitySource") or ("method.request.header.Authorization" if kind == "TOKEN" else "")
            sources = [item.strip() for item in str(raw).split(",") if item.strip()]
            ttl_value = props.get("AuthorizerResultTtlInSeconds", 300)
            try:
                ttl = int(ttl_value)
            except (TypeError, ValueError):
                ttl = -1
            if not 0 <= ttl <= MAX_AUTHORIZER_TTL or isinstance(ttl_value, bool):
                raise ValueError(
                    f"{key}: AuthorizerResultTtlInSeconds {ttl_value!r} is not an integer from 0 to"
                    f" {MAX_AUTHORIZER_TTL} (CloudFormation refuses this authorizer)"
                )
        validation = props.get("IdentityValidationExpression")
        return Authorizer(key, kind, function_arn, sources, ttl, str(validation) if validation else None)

    # -- invoking -----------------------------------------------------------------------------------
    def _invoke(self, function_arn: str, event: Any, tenant_id: str | None, timeout: float) -> InvokeResult:
        payload = json.dumps(event).encode()
        future = self._pool.submit(self.invoker.invoke, function_arn, payload, tenant_id=tenant_id)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise _gateway_error(504, "Endpoint request timed out", "IntegrationTimeout") from None

    def _stream(
        self, function_arn: str, event: Any, tenant_id: str | None, alive: Callable[[], bool] | None = None
    ) -> tuple[Iterator[bytes], Callable[[], bool]]:
        """Chunks of a streamed invocation pulled by a worker thread (each wait bounded by the idle timeout).

        Returns the chunk iterator and a function telling, after iteration, whether the stream failed.
        ``alive`` (the client is still connected) is asked while the function is silent: a client that
        went away ends the iteration at once, and the worker stops reading the function's stream.
        """
        chunks: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=64)
        cancelled = threading.Event()
        outcome = {"failed": False}

        def put(item: tuple[str, Any]) -> bool:
            while not cancelled.is_set() and not self._stopping.is_set():
                try:
                    chunks.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def pump() -> None:
            iterator: Iterator[bytes] | None = None
            try:
                stream = self.invoker.invoke_stream(function_arn, json.dumps(event).encode(), tenant_id=tenant_id)
                iterator = iter(stream)
                for chunk in iterator:
                    if cancelled.is_set() or (chunk and not put(("data", bytes(chunk)))):
                        return  # the client is gone: stop reading the function's stream
                put(("end", stream.error_type))
            except Exception as error:
                put(("error", error))
            finally:
                close = getattr(iterator, "close", None)
                if callable(close):
                    with contextlib.suppress(Exception):
                        close()

        self._pool.submit(pump)

        def iterate() -> Iterator[bytes]:
            try:
                idle_since = started = time.monotonic()
                while True:
                    if time.monotonic() - started > self.stream_max_seconds:  # API Gateway: 15 minutes at most
                        outcome["failed"] = True
                        return
                    try:
                        kind, value = chunks.get(timeout=0.5)
                    except queue.Empty:  # idle: give up after the idle timeout, when stopping, or the client left
                        if (
                            self._stopping.is_set()
                            or time.monotonic() - idle_since > STREAM_IDLE_TIMEOUT
                            or (alive is not None and not alive())
                        ):
                            outcome["failed"] = True
                            return
                        continue
                    idle_since = time.monotonic()
                    if kind == "data":
                        yield value
                        continue
                    outcome["failed"] = kind == "error" or value is not None
                    return
            finally:
                cancelled.set()

        return iterate(), lambda: outcome["failed"]

    # -- authorizers --------------------------------------------------------------------------------
    def _identity_values(
        self,
        authorizer: Authorizer,
        request: _Request,
        path_params: Mapping[str, str],
        context: Mapping[str, Any] | None = None,
        stage_variables: Mapping[str, str] | None = None,
    ) -> list[str]:
        """The identity source values (headers, query strings, ``stageVariables.*``, ``context.*``); 401 if missing."""
        values = []
        for source in authorizer.identity_sources:
            value = self._parameter(source, request, path_params, context or {}, stage_variables or {})
            if value is None or value == "":
                raise _gateway_error(401, "Unauthorized", "UnauthorizedException")
            values.append(value)
        if authorizer.type == "TOKEN" and authorizer.validation:
            try:
                matched = re.fullmatch(authorizer.validation, values[0] if values else "") is not None
            except re.error:
                matched = False
            if not matched:
                raise _gateway_error(401, "Unauthorized", "UnauthorizedException")
        return values

    def _authorize(
        self, authorizer: Authorizer, values: list[str], event: dict[str, Any], method_arn: str
    ) -> AuthResult:
        """Runs (or answers from cache) ``authorizer`` for ``method_arn``; raises ``_Answer`` when not allowed."""
        cache_key = (authorizer.key, authorizer.function_arn, tuple(values))
        now = time.monotonic()
        cached = None
        if authorizer.ttl > 0 and values:
            with self._lock:
                entry = self._auth_cache.get(cache_key)
                if entry and entry[0] > now:
                    cached = entry[1]
        answer: dict[str, Any]
        if cached is not None:
            answer = cached
        else:
            if not authorizer.function_arn:
                raise _gateway_error(500, None, "AuthorizerConfigurationException")
            try:
                result = self._invoke(authorizer.function_arn, event, None, AUTHORIZER_TIMEOUT)
            except _Answer:
                raise _gateway_error(500, None, "AuthorizerConfigurationException") from None
            except Exception:
                raise _gateway_error(500, None, "AuthorizerFailure") from None
            if result.function_error:
                try:
                    message = json.loads(result.payload).get("errorMessage")
                except (ValueError, AttributeError):
                    message = None
                if message == "Unauthorized":
                    raise _gateway_error(401, "Unauthorized", "UnauthorizedException")
                raise _gateway_error(500, None, "AuthorizerConfigurationException")
            try:
                answer = json.loads(result.payload)
                if not isinstance(answer, dict) or not isinstance(answer.get("principalId"), str | int | float):
                    raise ValueError("no principalId")
                context = answer.get("context") or {}
                if not isinstance(context, dict) or not all(
                    isinstance(v, str | int | float | bool) for v in context.values()
                ):
                    raise ValueError("context values must be strings, numbers or booleans")
                evaluate_policy(answer.get("policyDocument"), method_arn)
            except ValueError:
                raise _gateway_error(500, None, "AuthorizerConfigurationException") from None
            if authorizer.ttl > 0 and values:
                with self._lock:
                    if len(self._auth_cache) >= AUTH_CACHE_LIMIT:  # bounded: drop expired, then the oldest
                        for key in [k for k, (expiry, _) in self._auth_cache.items() if expiry <= now]:
                            del self._auth_cache[key]
                        while len(self._auth_cache) >= AUTH_CACHE_LIMIT:
                            del self._auth_cache[next(iter(self._auth_cache))]
                    self._auth_cache[cache_key] = (now + authorizer.ttl, answer)
        verdict = evaluate_policy(answer.get("policyDocument"), method_arn)
        if verdict is False:
            raise _gateway_error(
                403, "User is not authorized to access this resource with an explicit deny", "AccessDeniedException"
            )
        if verdict is None:
            raise _gateway_error(403, "User is not authorized to access this resource", "AccessDeniedException")
        return AuthResult(principal_id=str(answer["principalId"]), context=dict(answer.get("context") or {}))

    # -- request parameters -------------------------------------------------------------------------
    @staticmethod
    def _parameter(
        source: str,
        request: _Request,
        path_params: Mapping[str, str],
        context: Mapping[str, Any],
        stage_variables: Mapping[str, str],
    ) -> str | None:
        """The value of a mapping expression (``method.request.header.X``, ``context.authorizer.k``, ``'x'``)."""
        source = source.strip()
        if len(source) >= 2 and source[0] == source[-1] == "'":
            return source[1:-1]
        for prefix in ("method.request.header.", "route.request.header."):
            if source.startswith(prefix):
                return request.header(source[len(prefix) :])
        for prefix in ("method.request.querystring.", "route.request.querystring."):
            if source.startswith(prefix):
                name = source[len(prefix) :]
                values = [v for k, v in request.query if k == name]
                return values[-1] if values else None
        if source.startswith("method.request.multivaluequerystring."):
            name = source[len("method.request.multivaluequerystring.") :]
            values = [v for k, v in request.query if k == name]
            return ",".join(values) if values else None
        if source.startswith("method.request.path."):
            return path_params.get(source[len("method.request.path.") :])
        if source.startswith("stageVariables."):
            return stage_variables.get(source[len("stageVariables.") :])
        if source.startswith("context."):
            value: Any = context
            for part in source[len("context.") :].split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            if isinstance(value, bool):
                return "true" if value else "false"
            return None if value is None or isinstance(value, Mapping | list) else str(value)
        return None

    def _serve(self, handler: _Handler) -> None:
        """Answers one HTTP request (the combined class dispatches to REST, function URLs or WebSockets)."""
        raise NotImplementedError

    def _read_request(self, handler: _Handler) -> _Request:
        # Body framing is strict (no request smuggling): Transfer-Encoding is "chunked" or absent, and
        # Content-Length is digits, once. Anything two parsers could read differently is a 400, then close.
        codings = handler.headers.get_all("Transfer-Encoding") or []
        lengths = {value.strip() for value in handler.headers.get_all("Content-Length") or []}
        if codings and ([c.strip().lower() for c in codings] != ["chunked"] or lengths):
            handler.close_connection = True
            raise _Answer(400, {"message": "Unsupported Transfer-Encoding"})
        if len(lengths) > 1 or any(not value.isdigit() or not value.isascii() for value in lengths):
            handler.close_connection = True
            raise _Answer(400, {"message": "Invalid Content-Length"})
        if codings:
            body = self._read_chunked(handler)
        else:
            length = int(next(iter(lengths), "0"))
            if length > MAX_BODY:
                handler.close_connection = True
                raise _gateway_error(413, "Request Too Long", "RequestTooLarge")
            body = handler.rfile.read(length) if length else b""
            if len(body) < length:
                raise ConnectionError("the client closed the connection mid-body")
        headers = [(str(k), str(v)) for k, v in handler.headers.items()]
        # http.server decodes the request line as latin-1: raw UTF-8 bytes become text again here.
        target = handler.path.encode("latin-1", "replace").decode("utf-8", "replace")
        absolute = re.match(r"(?i)https?://[^/?#]*", target)  # absolute-form (RFC 9112 3.2.2): keep the path
        if absolute:
            target = target[absolute.end() :] or "/"
            if not target.startswith("/"):
                target = "/" + target
        return _Request(handler.command, target, headers, body, handler.client_address[0])

    @staticmethod
    def _read_chunked(handler: _Handler) -> bytes:
        body = bytearray()
        bad = _Answer(400, {"message": "Bad chunked encoding"})
        while True:
            token = handler.rfile.readline(1024).split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", token):  # hex digits only: no sign, no 0x, no empty line
                handler.close_connection = True
                raise bad
            size = int(token, 16)
            if size == 0:
                for _ in range(100):  # trailers, bounded
                    if not handler.rfile.readline(1024).strip():
                        return bytes(body)
                handler.close_connection = True
                raise bad
            if len(body) + size > MAX_BODY:
                handler.close_connection = True
                raise _gateway_error(413, "Request Too Long", "RequestTooLarge")
            data = handler.rfile.read(size)
            if len(data) < size or handler.rfile.readline(8) not in (b"\r\n", b"\n"):
                handler.close_connection = True
                raise bad
            body += data

    def _send(self, handler: _Handler, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        handler.send_response(status)
        names = set()
        for name, value in headers:
            clean = _clean_header(name, value)
            if clean and clean[0].lower() not in ("content-length", "transfer-encoding", "connection"):
                handler.send_header(*clean)
                names.add(clean[0].lower())
        if "content-type" not in names and body:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD" and body:
            handler.wfile.write(body)
        handler.wfile.flush()

    def _send_stream(
        self,
        handler: _Handler,
        chunks: Iterator[bytes],
        failed: Callable[[], bool],
        started: list[bool],
        error_status: int,
        raw_fallback: bool = False,
    ) -> None:
        """Streams a function's HTTP-integration response: JSON prelude, 8 NULs, then the body as chunks.

        ``raw_fallback`` (function URLs): a stream that does not start with a prelude is the body itself,
        200 ``application/octet-stream``; REST APIs answer 500 for it.
        """
        buffer = b""
        raw = False
        for chunk in chunks:
            buffer += chunk
            if raw_fallback and buffer.lstrip()[:1] not in (b"", b"{"):
                raw = True
                break
            if _NUL8 in buffer[: STREAM_PRELUDE_LIMIT + 8]:
                break
            if len(buffer) > STREAM_PRELUDE_LIMIT + 8:
                if not raw_fallback:
                    raise _gateway_error(500, "Internal server error", "InternalServerErrorException")
                raw = True
                break
        else:
            if failed() or not (buffer and raw_fallback):
                status = error_status if failed() else 500  # a failed function, else a missing prelude
                raise _gateway_error(status, "Internal server error", "InternalServerErrorException")
            raw = True
        if raw:
            status, headers, rest = 200, [("Content-Type", "application/octet-stream")], buffer
        else:
            prelude_bytes, _, rest = buffer.partition(_NUL8)
            try:
                prelude = _prelude(prelude_bytes)
            except ValueError:
                raise _gateway_error(500, "Internal server error", "InternalServerErrorException") from None
            status = int(prelude.get("statusCode", 200))
            headers = self._merge_headers(prelude.get("headers"), prelude.get("multiValueHeaders"))
            headers += [("Set-Cookie", str(c)) for c in _as_list(prelude.get("cookies")) if isinstance(c, str)]
        handler.send_response(status)
        for name, value in headers:
            clean = _clean_header(name, value)
            if clean and clean[0].lower() not in ("content-length", "transfer-encoding", "connection"):
                handler.send_header(*clean)
        chunked = handler.request_version != "HTTP/1.0"  # an HTTP/1.0 client reads the body up to the close
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.close_connection = True
            handler.send_header("Connection", "close")
        handler.end_headers()
        started[0] = True

        def write(data: bytes) -> None:
            if data and handler.command != "HEAD":
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            handler.wfile.flush()

        write(rest)
        for chunk in chunks:
            write(chunk)
        if not chunked or handler.command == "HEAD":
            return
        if failed():
            handler.close_connection = True  # no last chunk: the client sees a truncated body
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    @staticmethod
    def _client_alive(handler: _Handler) -> Callable[[], bool]:
        """Whether the client of ``handler`` is still connected (no EOF or error waiting on its socket).

        A client that half-closes its side (FIN) while a response streams is taken as gone, as proxies do.
        """
        sock = handler.connection

        def alive() -> bool:
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                return not readable or bool(sock.recv(1, socket.MSG_PEEK))
            except (OSError, ValueError):
                return False

        return alive

    @staticmethod
    def _merge_headers(headers: Any, multi: Any) -> list[tuple[str, str]]:
        result: list[tuple[str, str]] = []
        multi_names = set()
        if isinstance(multi, dict):
            for name, values in multi.items():
                multi_names.add(str(name).lower())
                result += [(str(name), value) for value in _as_list(values)]
        if isinstance(headers, dict):
            result += [(str(n), v) for n, v in headers.items() if str(n).lower() not in multi_names]
        return result

    def _forwarded(self, request: _Request, lower: bool = False) -> None:
        """The headers API Gateway and function URLs add: X-Forwarded-For (appended), -Port, -Proto, X-Amzn-Trace-Id."""
        forwarded_for = request.header("X-Forwarded-For")
        request.header_list = [(k, v) for k, v in request.header_list if k.lower() != "x-forwarded-for"]
        trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
        added = [
            ("X-Forwarded-For", f"{forwarded_for}, {request.source_ip}" if forwarded_for else request.source_ip),
            ("X-Forwarded-Port", str(self.port)),
            ("X-Forwarded-Proto", "http"),
        ]
        if request.header("X-Amzn-Trace-Id") is None:
            added.append(("X-Amzn-Trace-Id", trace))
        for name, value in added:
            if name.lower() != "x-forwarded-for":
                request.header_list = [(k, v) for k, v in request.header_list if k.lower() != name.lower()]
            request.header_list.append((name.lower() if lower else name, value))

    @staticmethod
    def _stringify(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
