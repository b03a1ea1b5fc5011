"""A strict Lambda Runtime API server for conformance tests of the streaming runtime client.

Raw sockets, no http.server: it reads the client's bytes exactly as they arrive, so it can check the
framing byte for byte and hand each chunk to the test the moment it is read (the handshake tests of
real streaming). It checks the list "What a conformance server checks" of
``../shared/reference/lambda-response-streaming.md``; every breach is recorded in
``Record.violations`` (and answered as Lambda answers where Lambda answers it), so a test asserts
``record.violations == []`` as well as the body.

1. one ``/response`` or ``/error`` per invocation id; a second one is a 403 ``InvalidStateTransition``;
2. the mode header exactly ``streaming`` (else 400 ``InvalidFunctionResponseMode``), chunked, no
   Content-Length, both trailer names declared (two ``Trailer`` lines or one comma-joined);
3. ``application/vnd.awslambda.http-integration-response`` for API Gateway and function URL events;
4. strict chunk framing (hex size line, exact data, CRLF), no empty chunk but the last; EOF before the
   last chunk is a truncation (400 ``TruncatedHTTPRequest``);
5. for HTTP events a prelude with allowed keys and types, then 8 NULs, within 16 KB, even when empty;
6. each chunk is queued for the test as soon as it is read (``Record.arrivals``);
7. no trailers on success; on error both trailers, strict base64 of a JSON object with ``errorType`` and
   ``errorMessage``, together under 4 KB;
8. ``/error`` before any ``/response`` is fine; ``/error`` after ``/response`` started is a 403;
9. faults: ``reject_after`` (answer 400/413 mid-body, then close), ``close_after_answer`` (close the
   connection right after the 202);
10. a total-size cap (``cap``, default 200 MB) answered 413 ``RequestEntityTooLarge``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "lambda_src" / "streaming_runtime"
WRAPPER = LAYER / "serverless-streaming"
HTTP_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
ERROR_TYPE = "lambda-runtime-function-error-type"
ERROR_BODY = "lambda-runtime-function-error-body"
PRELUDE_KEYS = {"statusCode", "headers", "multiValueHeaders", "cookies"}
KEEP_BYTES = 8 << 20  # body bytes kept per record (the digest and size cover all of it)


@dataclass
class Fault:
    """How the server misbehaves for one invocation."""

    reject_after: int | None = None  # answer mid-body once this many body bytes arrived...
    reject_status: int = 413  # ...with this status (400 or 413), then close the connection
    close_after_answer: bool = False  # close the connection right after the 202


@dataclass
class Record:
    """One invocation as the server saw it."""

    request_id: str
    event: Any
    http: bool
    fault: Fault = field(default_factory=Fault)
    path: str | None = None  # "response" or "error"
    headers: dict[str, list[str]] = field(default_factory=dict)
    content_type: str | None = None
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    kept: bytearray = field(default_factory=bytearray)
    chunk_sizes: list[int] = field(default_factory=list)
    arrivals: queue.Queue[tuple[float, bytes] | None] = field(default_factory=queue.Queue)
    trailers: dict[str, str] = field(default_factory=dict)
    trailer_bytes: int = 0
    error_type: str | None = None
    error: dict[str, Any] | None = None  # the decoded error (trailer body or /error body)
    answer: int | None = None  # the status the server answered
    truncated: bool = False
    violations: list[str] = field(default_factory=list)
    next_headers: dict[str, str] = field(default_factory=dict)  # extra headers of its /next answer
    deadline: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def body(self) -> bytes:
        """The body as received (up to :data:`KEEP_BYTES`)."""
        return bytes(self.kept)

    def payload(self) -> bytes:
        """The body after the prelude and its delimiter (HTTP events), else the whole body."""
        if not self.http:
            return self.body
        _, sep, rest = self.body.partition(b"\0" * 8)
        return rest if sep else b""

    def prelude(self) -> dict[str, Any] | None:
        """The decoded prelude (HTTP events)."""
        head, sep, _ = self.body[: 16 * 1024].partition(b"\0" * 8)
        return json.loads(head) if sep else None

    def wait(self, timeout: float = 10.0) -> bool:
        """Waits until the invocation was answered (or the connection died)."""
        return self.done.wait(timeout)


class ConformanceServer:
    """The Runtime API of one execution environment, strict, on 127.0.0.1 (``address``)."""

    def __init__(self, *, cap: int = 200 * 1024 * 1024) -> None:
        self.cap = cap
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._cond = threading.Condition()
        self._pending: list[Record] = []
        self.records: dict[str, Record] = {}
        self.init_errors: list[tuple[str | None, Any]] = []
        self.next_calls = 0
        self.connections = 0
        self.violations: list[str] = []  # breaches not tied to one invocation
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        accept = threading.Thread(target=self._accept, name="conformance-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

    # -- the test's side ------------------------------------------------------------------------
    def invoke(self, event: Any, *, fault: Fault | None = None, timeout_s: float = 30.0, **headers: str) -> Record:
        """Queues an invocation for ``/next``; ``headers``: extra ``Lambda-Runtime-*`` headers (name: value)."""
        request_id = str(uuid.uuid4())
        record = Record(request_id, event, _is_http(event), fault or Fault())
        record.next_headers = dict(headers)
        record.deadline = time.time() + timeout_s
        with self._cond:
            self.records[request_id] = record
            self._pending.append(record)
            self._cond.notify_all()
        return record

    def wait_next(self, calls: int, timeout: float = 10.0) -> bool:
        """Waits until the client has called ``/next`` ``calls`` times."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.next_calls < calls and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return self.next_calls >= calls

    def close(self) -> None:
        """Stops serving; blocked long polls end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._sock.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    # -- serving --------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve, args=(conn,), name="conformance-conn", daemon=True)
            self._conns.add(conn)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            while not self._closed:
                line = rfile.readline(8192)
                if not line:
                    return
                if not line.endswith(b"\r\n"):
                    self.violations.append(f"request line not CRLF-terminated: {line!r}")
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, list[str]] = {}
                while True:
                    hline = rfile.readline(65536)
                    if hline == b"\r\n":
                        break
                    if not hline.endswith(b"\r\n"):
                        self.violations.append(f"header line not CRLF-terminated: {hline!r}")
                        return
                    name, _, value = hline.decode("latin-1").partition(":")
                    headers.setdefault(name.strip().lower(), []).append(value.strip())
                if not self._route(conn, rfile, method, path, headers):
                    return
        except OSError:
            return
        finally:
            self._conns.discard(conn)
            rfile.close()
            conn.close()

    def _reply(self, conn: socket.socket, status: int, body: Any, extra: Mapping[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        head = [f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}", "Content-Type: application/json"]
        head += [f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in (extra or {}).items())]
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)

    def _fixed_body(self, rfile: Any, headers: dict[str, list[str]]) -> bytes:
        return bytes(rfile.read(int(headers.get("content-length", ["0"])[0])))

    def _route(self, conn: socket.socket, rfile: Any, method: str, path: str, headers: dict[str, list[str]]) -> bool:
        base = "/2018-06-01/runtime"
        if method == "GET" and path == f"{base}/invocation/next":
            return self._next(conn)
        if method == "POST" and path == f"{base}/init/error":
            body = self._fixed_body(rfile, headers)
            self.init_errors.append((headers.get(ERROR_TYPE, [None])[0], json.loads(body or b"null")))
            self._reply(conn, 202, {"status": "OK"})
            return True
        prefix = f"{base}/invocation/"
        if method == "POST" and path.startswith(prefix) and path.count("/") == 5:
            request_id, what = path[len(prefix) :].split("/")
            with self._cond:
                record = self.records.get(request_id)
            if record is None:
                self.violations.append(f"{what} for an unknown request id {request_id!r}")
                self._drain(rfile, headers)
                self._reply(conn, 400, {"errorType": "InvalidRequestID"})
                return True
            if what == "response":
                return self._response(conn, rfile, record, headers)
            if what == "error":
                return self._error(conn, rfile, record, headers)
        self.violations.append(f"unknown route {method} {path}")
        self._drain(rfile, headers)
        self._reply(conn, 404, {"errorType": "NotFound"})
        return True

    def _drain(self, rfile: Any, headers: dict[str, list[str]]) -> None:
        if "chunked" in ",".join(headers.get("transfer-encoding", [])):
            with contextlib.suppress(ValueError):
                _read_chunked(rfile, lambda data: None)
        else:
            self._fixed_body(rfile, headers)

    def _next(self, conn: socket.socket) -> bool:
        with self._cond:
            self.next_calls += 1
            self._cond.notify_all()
            while not self._pending and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                return False
            record = self._pending.pop(0)
        extra = {
            "Lambda-Runtime-Aws-Request-Id": record.request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(record.deadline * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:fn",
            "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0",
        }
        extra.update(record.next_headers)
        self._reply(conn, 200, json.dumps(record.event).encode(), extra)
        return True

    def _claim(self, conn: socket.socket, rfile: Any, record: Record, what: str, headers: dict[str, list[str]]) -> bool:
        with self._cond:
            if record.path is None:
                record.path = what
                return True
            previous = record.path
        record.violations.append(f"a second answer ({what} after {previous})")
        self._drain(rfile, headers)
        self._reply(conn, 403, {"errorType": "InvalidStateTransition"})
        return False

    def _error(self, conn: socket.socket, rfile: Any, record: Record, headers: dict[str, list[str]]) -> bool:
        if not self._claim(conn, rfile, record, "error", headers):
            return True
        body = self._fixed_body(rfile, headers)
        record.error_type = headers.get(ERROR_TYPE, [None])[0]
        try:
            record.error = json.loads(body)
        except ValueError:
            record.violations.append(f"/error body is not JSON: {body[:200]!r}")
        if not isinstance(record.error, dict) or not {"errorType", "errorMessage"} <= set(record.error):
            record.violations.append(f"/error body lacks errorType/errorMessage: {record.error!r}")
        record.answer = 202
        self._reply(conn, 202, {"status": "OK"})
        record.arrivals.put(None)
        record.done.set()
        return True

    def _response(self, conn: socket.socket, rfile: Any, record: Record, headers: dict[str, list[str]]) -> bool:
        if not self._claim(conn, rfile, record, "response", headers):
            return True
        record.headers = headers
        record.content_type = headers.get("content-type", [None])[0]
        v = record.violations
        mode = headers.get("lambda-runtime-function-response-mode")
        if mode != ["streaming"]:
            v.append(f"mode header {mode!r}, not exactly 'streaming'")
            self._drain(rfile, headers)
            return self._finish(conn, record, 400, "InvalidFunctionResponseMode")
        if "content-length" in headers:
            v.append("Content-Length on a streamed response")
        if headers.get("transfer-encoding") != ["chunked"]:
            v.append(f"Transfer-Encoding {headers.get('transfer-encoding')!r}, not chunked")
        declared = {n.strip().lower() for value in headers.get("trailer", []) for n in value.split(",")}
        if not {ERROR_TYPE, ERROR_BODY} <= declared:
            v.append(f"trailers declared: {sorted(declared)}")
        if record.http and record.content_type != HTTP_CONTENT_TYPE:
            v.append(f"content type {record.content_type!r} for an HTTP event")
        fault = record.fault

        def take(data: bytes) -> None:
            record.arrivals.put((time.monotonic(), data))
            record.chunk_sizes.append(len(data))
            record.size += len(data)
            record.digest.update(data)
            if len(record.kept) < KEEP_BYTES:
                record.kept += data[: KEEP_BYTES - len(record.kept)]
            if record.size > self.cap:
                raise _Reject(413, "RequestEntityTooLarge")
            if fault.reject_after is not None and record.size >= fault.reject_after:
                raise _Reject(fault.reject_status, "RequestEntityTooLarge" if fault.reject_status == 413 else "Bad")

        try:
            trailer_lines = _read_chunked(rfile, take)
        except _Reject as reject:
            return self._finish(conn, record, reject.status, reject.kind, close=True)
        except ValueError as exc:
            record.truncated = True
            v.append(f"framing: {exc}")
            return self._finish(conn, record, 400, "TruncatedHTTPRequest", close=True)
        record.trailer_bytes = sum(len(line) for line in trailer_lines)
        for line in trailer_lines:
            name, _, value = line.decode("latin-1").partition(":")
            record.trailers[name.strip().lower()] = value.strip()
        self._check_body(record)
        self._check_trailers(record)
        return self._finish(conn, record, 202, None, close=fault.close_after_answer)

    def _finish(self, conn: socket.socket, record: Record, status: int, kind: str | None, close: bool = False) -> bool:
        record.answer = status
        with contextlib.suppress(OSError):
            self._reply(conn, status, {"status": "OK"} if kind is None else {"errorType": kind})
        record.arrivals.put(None)
        record.done.set()
        return not close

    @staticmethod
    def _check_body(record: Record) -> None:
        if not record.http:
            return
        head = record.body[: 16 * 1024]
        index = head.find(b"\0" * 8)
        if index < 0:
            record.violations.append("no 8-NUL delimiter within the first 16 KB")
            return
        try:
            prelude = json.loads(head[:index])
        except ValueError:
            record.violations.append(f"prelude is not JSON: {head[:index][:200]!r}")
            return
        if not isinstance(prelude, dict) or not set(prelude) <= PRELUDE_KEYS:
            record.violations.append(f"prelude keys: {prelude!r}")
            return
        checks = {
            "statusCode": lambda x: isinstance(x, int) and not isinstance(x, bool) and 100 <= x <= 599,
            "headers": lambda x: isinstance(x, dict) and all(isinstance(s, str) for s in x.values()),
            "multiValueHeaders": lambda x: (
                isinstance(x, dict)
                and all(isinstance(s, list) and all(isinstance(i, str) for i in s) for s in x.values())
            ),
            "cookies": lambda x: isinstance(x, list) and all(isinstance(s, str) for s in x),
        }
        for key, value in prelude.items():
            if not checks[key](value):
                record.violations.append(f"prelude {key} has the wrong type: {value!r}")

    @staticmethod
    def _check_trailers(record: Record) -> None:
        names = set(record.trailers)
        if not names:
            return
        if names != {ERROR_TYPE, ERROR_BODY}:
            record.violations.append(f"trailers sent: {sorted(names)}")
            return
        if record.trailer_bytes >= 4096:
            record.violations.append(f"trailers are {record.trailer_bytes} bytes")
        record.error_type = record.trailers[ERROR_TYPE]
        try:
            record.error = json.loads(base64.b64decode(record.trailers[ERROR_BODY], validate=True))
        except (binascii.Error, ValueError) as exc:
            record.violations.append(f"error body is not strict base64 JSON: {exc}")
            return
        if not isinstance(record.error, dict) or not all(
            isinstance(record.error.get(k), str) for k in ("errorType", "errorMessage")
        ):
            record.violations.append(f"error body lacks errorType/errorMessage: {record.error!r}")


class _Reject(Exception):
    def __init__(self, status: int, kind: str) -> None:
        super().__init__(kind)
        self.status, self.kind = status, kind


def _read_chunked(rfile: Any, take: Any) -> list[bytes]:
    """Reads a chunked body strictly, calling ``take`` per chunk; returns the trailer lines (ValueError if bad)."""
    while True:
        line = rfile.readline(1024)
        if not line:
            raise ValueError("EOF before the last chunk")
        if not line.endswith(b"\r\n") or not line[:-2] or any(c not in b"0123456789abcdefABCDEF" for c in line[:-2]):
            raise ValueError(f"bad chunk size line {line[:40]!r}")
        size = int(line[:-2], 16)
        if size == 0:
            break
        data = rfile.read(size)
        if len(data) < size:
            raise ValueError("EOF inside a chunk")
        if rfile.read(2) != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")
        take(data)
    trailer_lines: list[bytes] = []
    while True:
        line = rfile.readline(8192)
        if not line:
            raise ValueError("EOF in the trailer section")
        if not line.endswith(b"\r\n"):
            raise ValueError(f"trailer line not CRLF-terminated: {line[:40]!r}")
        if line == b"\r\n":
            return trailer_lines
        trailer_lines.append(line)


def _is_http(event: Any) -> bool:
    if not isinstance(event, dict) or not isinstance(event.get("requestContext"), dict):
        return False
    context = event["requestContext"]
    return (
        "httpMethod" in context
        or "resourcePath" in context
        or (isinstance(context.get("http"), dict) and event.get("version") == "2.0")
    )


REST_EVENT: dict[str, Any] = {
    "resource": "/chat",
    "path": "/chat",
    "httpMethod": "POST",
    "headers": {"accept": "text/event-stream"},
    "requestContext": {"resourcePath": "/chat", "httpMethod": "POST", "stage": "prod", "requestId": "r-1"},
    "body": "{}",
    "isBase64Encoded": False,
}
URL_EVENT: dict[str, Any] = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/",
    "rawQueryString": "",
    "headers": {"host": "abc.lambda-url.us-east-1.on.aws"},
    "requestContext": {"http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"}},
    "isBase64Encoded": False,
}


def start_runtime(
    address: str, handler: str, task_root: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts the runtime as Lambda does: ``<wrapper> <python> -m awslambdaric <handler>``; stop it with stop()."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": address,
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]abc",
        "AWS_REGION": "us-east-1",
        **(env or {}),
    }
    with open(task_root / "runtime.log", "ab") as log:
        return subprocess.Popen(
            [str(WRAPPER), sys.executable, "-m", "awslambdaric", handler],
            env=environment,
            cwd=task_root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def output(task_root: Path) -> str:
    """What the runtime wrote to stdout/stderr so far."""
    path = task_root / "runtime.log"
    return path.read_text(errors="replace") if path.exists() else ""


def stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stops the runtime (SIGTERM, then SIGKILL) and reaps it."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
