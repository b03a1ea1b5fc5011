"""The Lambda Runtime API and Extensions API of one execution environment, served in Python.

One :class:`RuntimeApi` per environment: a ``ThreadingHTTPServer`` on a free port of 127.0.0.1
(``AWS_LAMBDA_RUNTIME_API``) and the state both APIs share (:class:`ApiState`), guarded by one
condition variable that the runner waits on. The runner (``lambda_runtime.py``) queues an
:class:`Invocation`; the runtime takes it from ``/next`` and answers it; extensions take their
INVOKE and SHUTDOWN events from ``/event/next``. Routes, as Lambda serves them:

- ``GET /2018-06-01/runtime/invocation/next`` (long poll; headers Request-Id, Deadline-Ms,
  Invoked-Function-Arn, Trace-Id, Client-Context, Aws-Tenant-Id);
- ``POST .../invocation/{id}/response``: buffered (Content-Length, 6 MB cap: 413
  ``RequestEntityTooLarge``) or streamed (``Lambda-Runtime-Function-Response-Mode: streaming``,
  chunked: every chunk reaches the invocation's queue as it is read, the error trailers are read
  after the last chunk; 200 MB cap, 6 MB when the caller invoked buffered);
- ``POST .../invocation/{id}/error``, ``POST /2018-06-01/runtime/init/error``;
- ``POST /2020-01-01/extension/register`` (``Lambda-Extension-Name``; events INVOKE, SHUTDOWN),
  ``GET /2020-01-01/extension/event/next``, ``POST .../extension/init/error``, ``.../exit/error``.

Answers follow Lambda's: 202 ``{"status":"OK"}`` for accepted posts; 400 ``InvalidRequestID``
for an unknown request id; 403 ``InvalidStateTransition`` for a second answer to an invocation;
400 ``InvalidFunctionResponseMode`` for a mode header other than ``streaming``; 400
``TruncatedHTTPRequest`` for a chunked body that ends before its last chunk (the caller sees
``Runtime.TruncatedResponse``); 403 for an unknown extension identifier.
"""

from __future__ import annotations

import base64
import binascii
import json
import queue
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Lambda's limit of a buffered response (and of a streamed response to a buffered invoke).
BUFFERED_LIMIT = 6_291_556
#: Lambda's limit of a streamed response.
STREAMING_LIMIT = 200 * 1024 * 1024
ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY = "Lambda-Runtime-Function-Error-Body"
RUNTIME = "/2018-06-01/runtime"
EXTENSION = "/2020-01-01/extension"
_POLL = 0.5  # how often a blocked long poll looks whether the environment closed


def trace_id() -> str:
    """An X-Ray trace header as Lambda hands it to the runtime (not sampled)."""
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"


@dataclass
class Invocation:
    """One invocation, from the runner's queue to the runtime's answer.

    ``chunks`` receives the body as the runtime posts it (``None`` ends it) when ``streaming``;
    ``body`` collects it in every mode. ``error_type``/``error_body`` are set by ``/error``, by the
    streamed error trailers (``error_body`` decoded from base64), or by the runner (crash, timeout).
    """

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    client_context: str | None = None
    tenant_id: str | None = None
    streaming: bool = False
    trace: str = field(default_factory=trace_id)
    chunks: queue.Queue[bytes | None] = field(default_factory=queue.Queue)
    body: bytearray = field(default_factory=bytearray)
    state: str = "queued"  # queued -> sent -> responding -> done
    error_type: str | None = None
    error_body: str | None = None
    content_type: str | None = None

    @property
    def done(self) -> bool:
        return self.state == "done"

    def finish(self, error_type: str | None = None, error_body: str | None = None) -> None:
        """Ends the invocation (the caller holds the state's lock): first answer wins."""
        if self.state == "done":
            return
        if error_type is not None:
            self.error_type, self.error_body = error_type, error_body
        self.state = "done"
        self.chunks.put(None)


@dataclass
class Extension:
    """An extension registered with the Extensions API."""

    identifier: str
    name: str
    events: frozenset[str]
    external: bool
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    waiting: bool = False  # blocked in event/next (or about to be)
    next_calls: int = 0
    failed: tuple[str, str] | None = None  # (error type, body) from init/error or exit/error

    @property
    def idle(self) -> bool:
        """Waiting for an event with none queued: done with the last one."""
        return self.waiting and not self.pending


class ApiState:
    """What the runtime, the extensions and the runner share, behind ``cond``."""

    def __init__(self, *, function_name: str, handler: str, log: Callable[[str], None]) -> None:
        self.cond = threading.Condition()
        self.function_name = function_name
        self.handler = handler
        self.log = log
        self.closed = False
        self.accept_registrations = True
        self.external_names: set[str] = set()  # executables found in /opt/extensions
        self.extensions: dict[str, Extension] = {}
        self.runtime_waiting = False
        self.runtime_next_calls = 0
        self.init_error: tuple[str, str] | None = None
        self.pending: Invocation | None = None
        self.current: Invocation | None = None
        self.answered: deque[str] = deque(maxlen=64)  # request ids answered lately: a second answer is a 403

    def close(self) -> None:
        with self.cond:
            self.closed = True
            if self.current is not None:  # an answer cut short by the environment's end is an error
                message = {"errorType": "Runtime.ExitError", "errorMessage": "the execution environment shut down"}
                self.current.finish("Runtime.ExitError", json.dumps(message))
            self.cond.notify_all()

    def invoke(self, invocation: Invocation) -> None:
        """Queues ``invocation`` for the runtime and its INVOKE event for the subscribed extensions."""
        with self.cond:
            for ext in self.extensions.values():
                if "INVOKE" in ext.events:
                    ext.pending.append(
                        {
                            "eventType": "INVOKE",
                            "deadlineMs": invocation.deadline_ms,
                            "requestId": invocation.request_id,
                            "invokedFunctionArn": invocation.function_arn,
                            "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace},
                        }
                    )
            if invocation.request_id in self.answered:  # a retry of an asynchronous event (same request id)
                self.answered.remove(invocation.request_id)
            self.pending = invocation
            self.cond.notify_all()

    def shutdown_event(self, reason: str, deadline_ms: int) -> list[Extension]:
        """Queues SHUTDOWN for every subscribed extension; returns them."""
        with self.cond:
            subscribed = [ext for ext in self.extensions.values() if "SHUTDOWN" in ext.events]
            for ext in subscribed:
                ext.pending.append({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms})
            self.cond.notify_all()
            return subscribed

    def extensions_idle(self, events: str = "INVOKE") -> bool:
        """Every extension subscribed to ``events`` has asked for its next event (lock held)."""
        return all(ext.idle for ext in self.extensions.values() if events in ext.events)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms Nagle/delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the runner logs what matters

    # -- plumbing -------------------------------------------------------------------------------
    def _answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, error_type: str, message: str) -> None:
        self._answer(status, {"errorMessage": message, "errorType": error_type})

    def _read_body(self, limit: int = BUFFERED_LIMIT) -> bytes | None:
        """The request body (Content-Length), or ``None`` after draining one over ``limit``."""
        length = int(self.headers.get("Content-Length") or 0)
        if length <= limit:
            return self.rfile.read(length)
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        return None

    @property
    def state(self) -> ApiState:
        return self.server.state

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == f"{RUNTIME}/invocation/next":
            self._runtime_next()
        elif path == f"{EXTENSION}/event/next":
            self._extension_next()
        else:
            self._error(404, "NotFound", f"unknown route GET {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith(f"{RUNTIME}/invocation/"):
            parts = path[len(f"{RUNTIME}/invocation/") :].split("/")
            if len(parts) == 2 and parts[1] == "response":
                return self._runtime_response(parts[0])
            if len(parts) == 2 and parts[1] == "error":
                return self._runtime_error(parts[0])
        elif path == f"{RUNTIME}/init/error":
            return self._runtime_init_error()
        elif path == f"{EXTENSION}/register":
            return self._extension_register()
        elif path in (f"{EXTENSION}/init/error", f"{EXTENSION}/exit/error"):
            return self._extension_error(path.rsplit("/", 2)[-2])
        self._read_body()
        self._error(404, "NotFound", f"unknown route POST {path}")

    # -- Runtime API ----------------------------------------------------------------------------
    def _runtime_next(self) -> None:
        state = self.state
        with state.cond:
            state.runtime_waiting = True
            state.runtime_next_calls += 1
            state.cond.notify_all()
            while state.pending is None and not state.closed:
                state.cond.wait(_POLL)
            if state.closed:
                self.close_connection = True
                return
            invocation = state.pending
            assert invocation is not None
            state.pending = None
            state.current = invocation
            state.runtime_waiting = False
            invocation.state = "sent"
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace,
        }
        if invocation.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        if invocation.tenant_id is not None:
            headers["Lambda-Runtime-Aws-Tenant-Id"] = invocation.tenant_id
        self._answer(200, invocation.payload, headers)

    def _claim(self, request_id: str) -> Invocation | None:
        """The invocation ``request_id`` names, if it may still be answered (else answers the error)."""
        state = self.state
        with state.cond:
            invocation = state.current
            if request_id in state.answered:
                self._read_body()
                self._error(403, "InvalidStateTransition", "State transition from Ready to InvocationResponse failed")
                return None
            if invocation is None or invocation.request_id != request_id:
                self._read_body()
                self._error(400, "InvalidRequestID", f"Invalid request ID: {request_id!r}")
                return None
            if invocation.state != "sent":
                self._read_body()
                self._error(403, "InvalidStateTransition", "State transition from Ready to InvocationResponse failed")
                return None
            invocation.state = "responding"
            state.answered.append(request_id)
            return invocation

    def _runtime_response(self, request_id: str) -> None:
        mode = self.headers.get("Lambda-Runtime-Function-Response-Mode")
        if mode is not None and mode.lower() != "streaming":
            self._read_body()
            return self._error(400, "InvalidFunctionResponseMode", f"unknown response mode {mode!r}")
        invocation = self._claim(request_id)
        if invocation is None:
            return
        invocation.content_type = self.headers.get("Content-Type")
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if mode is not None and chunked:
            return self._streamed(invocation)
        if chunked:  # a chunked POST without the mode header: read it whole, as a buffered body
            return self._streamed(invocation, forward=False)
        limit = STREAMING_LIMIT if invocation.streaming else BUFFERED_LIMIT
        body = self._read_body(limit)
        state = self.state
        with state.cond:
            if body is None:
                invocation.finish("Function.ResponseSizeTooLarge", _too_large(limit))
            else:
                invocation.body += body
                if invocation.streaming and body:
                    invocation.chunks.put(body)
                invocation.finish()
            state.cond.notify_all()
        if body is None:
            return self._error(413, "RequestEntityTooLarge", f"Exceeded maximum allowed payload size ({limit} bytes).")
        self._answer(202, {"status": "OK"})

    def _streamed(self, invocation: Invocation, *, forward: bool = True) -> None:
        """Reads a chunked body chunk by chunk into ``invocation``, then its trailers."""
        state = self.state
        limit = STREAMING_LIMIT if invocation.streaming else BUFFERED_LIMIT
        size = 0
        trailers: dict[str, str] = {}
        try:
            while True:
                line = self.rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise EOFError
                length = int(line.split(b";", 1)[0].strip(), 16)
                if length == 0:
                    break
                data = self.rfile.read(length)
                if len(data) < length or self.rfile.read(2) != b"\r\n":
                    raise EOFError
                size += length
                if size > limit:
                    with state.cond:
                        invocation.finish("Function.ResponseSizeTooLarge", _too_large(limit))
                        state.cond.notify_all()
                    self.close_connection = True
                    return self._error(
                        413, "RequestEntityTooLarge", f"Exceeded maximum allowed payload size ({limit} bytes)."
                    )
                with state.cond:
                    invocation.body += data
                if forward and invocation.streaming:
                    invocation.chunks.put(data)
            while True:  # the trailer section, up to the empty line
                line = self.rfile.readline(65536)
                if not line.endswith(b"\n"):
                    raise EOFError
                if not line.strip():
                    break
                name, _, value = line.decode("latin-1").partition(":")
                trailers[name.strip().lower()] = value.strip()
        except (EOFError, ValueError, OSError):
            with state.cond:
                invocation.finish(
                    "Runtime.TruncatedResponse",
                    json.dumps({"errorType": "Runtime.TruncatedResponse", "errorMessage": "response stream truncated"}),
                )
                state.cond.notify_all()
            self.close_connection = True
            return self._error(400, "TruncatedHTTPRequest", "the response body ended before its last chunk")
        error_type = trailers.get(ERROR_TYPE.lower())
        with state.cond:
            if error_type:
                raw = trailers.get(ERROR_BODY.lower(), "")
                try:
                    decoded = base64.b64decode(raw, validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    decoded = raw
                invocation.finish(error_type, decoded)
            else:
                invocation.finish()
            state.cond.notify_all()
        self._answer(202, {"status": "OK"})

    def _runtime_error(self, request_id: str) -> None:
        invocation = self._claim(request_id)
        if invocation is None:
            return
        body = self._read_body() or b""
        error_type = self.headers.get(ERROR_TYPE) or "Unhandled"
        state = self.state
        with state.cond:
            invocation.finish(error_type, body.decode(errors="replace"))
            state.cond.notify_all()
        self._answer(202, {"status": "OK"})

    def _runtime_init_error(self) -> None:
        body = self._read_body() or b""
        state = self.state
        with state.cond:
            if state.init_error is not None or state.runtime_next_calls:
                self._error(403, "InvalidStateTransition", "init/error after the init phase")
                return
            state.init_error = (self.headers.get(ERROR_TYPE) or "Runtime.Unknown", body.decode(errors="replace"))
            state.cond.notify_all()
        self._answer(202, {"status": "OK"})

    # -- Extensions API -------------------------------------------------------------------------
    def _extension(self) -> Extension | None:
        identifier = self.headers.get("Lambda-Extension-Identifier") or ""
        ext = self.state.extensions.get(identifier)
        if ext is None:
            self._error(403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier")
        return ext

    def _extension_register(self) -> None:
        body = self._read_body() or b"{}"
        name = self.headers.get("Lambda-Extension-Name") or ""
        try:
            events = json.loads(body).get("events", [])
            if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
                raise ValueError(events)
        except (ValueError, AttributeError):
            return self._error(400, "InvalidRequestFormat", 'the body must be {"events": [...]}')
        state = self.state
        with state.cond:
            if not name:
                return self._error(403, "Extension.MissingHeader", "Lambda-Extension-Name is required")
            unknown = [e for e in events if e not in ("INVOKE", "SHUTDOWN")]
            if unknown:
                return self._error(400, "InvalidEventType", f"unknown events {unknown}")
            external = name in state.external_names
            if not external and "SHUTDOWN" in events:
                return self._error(
                    400, "ShutdownEventNotSupportedForInternalExtension", "internal extensions get no SHUTDOWN"
                )
            if not state.accept_registrations or any(e.name == name for e in state.extensions.values()):
                return self._error(403, "Extension.InvalidState", f"cannot register {name!r} now")
            ext = Extension(str(uuid.uuid4()), name, frozenset(events), external)
            state.extensions[ext.identifier] = ext
            state.cond.notify_all()
        kind = "External" if external else "Internal"
        state.log(f"{kind} agent {name} ({ext.identifier}) registered, subscribed to [{' '.join(events)}]")
        self._answer(
            200,
            {"functionName": state.function_name, "functionVersion": "$LATEST", "handler": state.handler},
            {"Lambda-Extension-Identifier": ext.identifier},
        )

    def _extension_next(self) -> None:
        state = self.state
        with state.cond:
            ext = self._extension()
            if ext is None:
                return
            ext.waiting = True
            ext.next_calls += 1
            state.cond.notify_all()
            while not ext.pending and not state.closed:
                state.cond.wait(_POLL)
            if not ext.pending:
                self.close_connection = True
                return
            event = ext.pending.popleft()
            ext.waiting = False
            state.cond.notify_all()
        self._answer(200, event, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())})

    def _extension_error(self, phase: str) -> None:
        body = self._read_body() or b""
        state = self.state
        with state.cond:
            ext = self._extension()
            if ext is None:
                return
            error_type = self.headers.get(ERROR_TYPE) or "Extension.Unknown"
            ext.failed = (error_type, body.decode(errors="replace"))
            state.cond.notify_all()
        state.log(f"Extension {ext.name} reported {phase} error {error_type}")
        self._answer(202, {"status": "OK"})


def _too_large(limit: int) -> str:
    return json.dumps(
        {
            "errorMessage": f"Response payload size exceeded maximum allowed payload size ({limit} bytes).",
            "errorType": "Function.ResponseSizeTooLarge",
        }
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], state: ApiState) -> None:
        self.state = state
        super().__init__(address, _Handler)


class RuntimeApi:
    """The Runtime and Extensions APIs of one environment, served on ``address`` (``host:port``)."""

    def __init__(self, state: ApiState, host: str = "127.0.0.1") -> None:
        self.state = state
        self._server = _Server((host, 0), state)
        self.address = f"{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"runtime-api-{self.address}"
        )
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        """Stops serving; long polls under way return (their connections close)."""
        self.state.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
