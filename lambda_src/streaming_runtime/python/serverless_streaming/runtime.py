"""A Lambda runtime client for Python that streams: ``python -m serverless_streaming.runtime``.

The exec wrapper (``/opt/serverless-streaming``) runs this module instead of Lambda's Python bootstrap.
It speaks the Runtime API (``$AWS_LAMBDA_RUNTIME_API``) over plain sockets, as the Node.js and Go runtime
clients do, byte for byte as the Lambda docs' response-streaming section describes:

- Start: ``sys.path`` as the Python bootstrap builds it (``LAMBDA_TASK_ROOT``,
  ``/opt/python/lib/pythonX.Y/site-packages``, ``/opt/python`` first), ``_LAMBDA_TELEMETRY_LOG_FD`` read
  and removed, logging set up as Lambda's Python runtime does (JSON lines when
  ``AWS_LAMBDA_LOG_FORMAT=JSON``, level ``AWS_LAMBDA_LOG_LEVEL``), the handler ``$_HANDLER`` imported; a
  failure is posted to ``/runtime/init/error`` with the type Lambda uses, and the process exits 1.
  Only ``os``, ``sys``, ``socket``, ``json``, ``time`` and ``select`` are imported before the first
  invocation (plus ``logging``): a cold start costs less than ``python -m awslambdaric``'s.
- Each invocation (``GET /next``, long poll, no timeout: Lambda freezes the environment between
  invocations) is answered with ONE chunked ``POST .../response`` with
  ``Lambda-Runtime-Function-Response-Mode: streaming`` and both error trailers declared. Every item the
  handler yields is written as one chunk as soon as it is produced (no buffering, no Nagle delay; memory
  is bounded by one chunk, so a 50 MB answer streams in constant memory). The runtime is never told
  whether the caller streams, so every invocation is answered this way (Lambda caps a streamed answer to
  a buffered invoke at 6 MB).
- API Gateway REST proxy events and function URL events get the HTTP integration content type and the
  prelude (``http.py``), sent as soon as the handler's first item arrives (so the client gets the status
  and headers early) and even for an empty body; other invokes get the raw body with the handler's
  content type.
- SSE mode (``@streaming(sse=True)``): ``str``/``bytes`` items become ``data:`` events, :class:`Event`
  items are framed as given, ``: keep-alive`` goes out after ``keep_alive_seconds`` of silence (once the
  handler's first item has gone out: until then it may still yield the Response that sets the status, and
  the prelude goes out exactly once), and a complete stream ends with ``event: done``. For keep-alives
  the handler runs on a producer thread that hands items to the writer through a small bounded queue
  (backpressure; about 0.1 ms per item); without keep-alives it runs on the writer's own thread.
- Errors before the first byte go to ``POST .../error`` (JSON body as awslambdaric's, error type
  header); after it, the stream ends with the ``Lambda-Runtime-Function-Error-Type`` /
  ``-Error-Body`` trailers (``Function.<ExceptionName>``, standard base64 of the JSON
  ``{"errorMessage", "errorType", "stackTrace"}``, both together under 3 KB: the stack trace, then the
  message, are cut to fit), and in SSE mode an in-band ``event: error`` first (``core.public_error``:
  the class name and a safe message, no stack trace).
- Deadline: a stream still running ``DEADLINE_MARGIN`` (0.5 s) before the invocation's deadline is ended by
  the runtime with a ``StreamTimeout`` error (in-band ``event: error`` in SSE mode, and the trailers), so a
  client can tell a timeout from a cut connection; in SSE keep-alive mode this works while the handler is
  blocked too (its thread is left to stop at its next ``yield``).
- A dead answer (the Runtime API answered 400/413 mid-body, or closed or reset the connection) stops the
  stream: the user's generator is closed (``GeneratorExit`` in its code) and the error logged; the next
  ``/next`` goes on a new connection. A server that closes the connection after its 202 is handled the
  same way (the connection is checked before it is reused).
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence

from . import contract
from .core import (
    Event,
    HandlerLoadError,
    Response,
    StreamError,
    StreamOptions,
    iterate,
    load_handler,
    options,
    public_error,
    sse_frame,
)
from .http import is_http_event, prelude

TYPE_CHECKING = False  # typing costs about 4 ms of a cold start
if TYPE_CHECKING:
    from typing import Any

API = "/2018-06-01/runtime"
#: Both trailers together stay under this (Go's trailer buffer is about 4 KB).
TRAILER_BUDGET = 3000
CONNECT_TIMEOUT = 5.0
#: How long the runtime waits for the Runtime API's answer to a finished POST.
ANSWER_TIMEOUT = 30.0
#: How many items the producer thread (SSE keep-alive mode) may be ahead of the writer.
QUEUE_DEPTH = 8
KEEP_ALIVE_FRAME = b": keep-alive\n\n"
#: A stream still running this close to the invocation's deadline is ended by the runtime (an in-band
#: ``StreamTimeout`` error in SSE mode, the error trailers) rather than cut by Lambda's timeout.
DEADLINE_MARGIN = 0.5
DONE_FRAME = sse_frame(Event(data="", event="done"))
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_ERROR_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class RuntimeApiError(Exception):
    """The Runtime API answered with something unreadable, or is gone."""


class StreamTimeout(StreamError):
    """The stream was still running :data:`DEADLINE_MARGIN` before the invocation's deadline."""

    def __init__(self) -> None:
        super().__init__("the stream stopped before the function's timeout", "StreamTimeout")


# -- the Runtime API connection --------------------------------------------------------------------
class Connection:
    """One keep-alive HTTP/1.1 connection to the Runtime API, reopened whenever it is not usable."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise RuntimeApiError(f"AWS_LAMBDA_RUNTIME_API {address!r} is not host:port")
        self.address = address
        self._target = (host.strip("[]"), int(port))
        self.sock: socket.socket | None = None
        self._rfile: Any = None

    def open(self) -> socket.socket:
        """The connection, (re)opened if the server closed it or left unread data on it."""
        if self.sock is not None and not self._usable(self.sock):
            self.close()
        if self.sock is None:
            host, port = self._target
            # bytes, not str: a str host goes through the idna codec (one more import on the cold start)
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect((host.encode("ascii", "replace"), port))
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock, self._rfile = sock, sock.makefile("rb")
        return self.sock

    @staticmethod
    def _usable(sock: socket.socket) -> bool:
        try:
            return not select.select([sock], [], [], 0)[0]  # readable while idle: EOF, reset or junk
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        """Closes the connection (the next request opens a new one)."""
        sock, rfile = self.sock, self._rfile
        self.sock = self._rfile = None
        for closable in (rfile, sock):
            if closable is not None:
                try:  # noqa: SIM105 (contextlib is one import more on the cold-start path)
                    closable.close()
                except OSError:
                    pass

    def readable(self) -> bool:
        """The server has sent something (an early answer) or closed: a streamed POST is over."""
        return self.sock is not None and not self._usable(self.sock)

    def send(self, parts: Sequence[bytes], timeout: float | None) -> None:
        """Writes ``parts`` in one system call where possible, never copying them.

        A partial send (the rule for a large chunk) goes on from where it stopped through memoryviews: joining
        the parts to send the rest would hold a large chunk three times (chunk, joined copy, sliced copy), so a
        40 MB item would cost 120 MB on a 128 MB function.
        """
        sock = self.open()
        sock.settimeout(timeout)
        sent = sock.sendmsg(parts) if len(parts) > 1 else sock.send(parts[0])
        for part in parts:
            if sent >= len(part):
                sent -= len(part)
                continue
            sock.sendall(memoryview(part)[sent:])
            sent = 0

    def read_answer(self, timeout: float | None) -> tuple[int, dict[str, str], bytes]:
        """Reads one HTTP answer: status, lower-cased headers, body (Content-Length, chunked or to EOF).

        An answer that cannot be parsed (a bad chunk size or Content-Length) is a :class:`RuntimeApiError`,
        as a closed connection is, so every caller's error handling covers it (it was a bare ``ValueError``
        that crashed the runtime with a traceback, even from the ``/error`` path).
        """
        try:
            return self._read_answer(timeout)
        except ValueError as exc:
            self.close()
            raise RuntimeApiError(f"unreadable answer from the Runtime API: {exc}") from exc

    def _read_answer(self, timeout: float | None) -> tuple[int, dict[str, str], bytes]:
        if self.sock is None or self._rfile is None:
            raise RuntimeApiError("no connection to read an answer from")
        self.sock.settimeout(timeout)
        rfile = self._rfile
        line = rfile.readline(65537)
        if not line:
            raise RuntimeApiError("the Runtime API closed the connection without an answer")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise RuntimeApiError(f"bad status line from the Runtime API: {line[:100]!r}")
        headers: dict[str, str] = {}
        while True:
            line = rfile.readline(65537)
            if not line:
                raise RuntimeApiError("the Runtime API closed the connection in the headers")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size = int(rfile.readline(1024).split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError(f"negative chunk size {size}")
                if size == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                piece = rfile.read(size)
                if len(piece) < size:
                    raise RuntimeApiError("the Runtime API closed the connection in the body")
                body += piece
                rfile.readline(3)
            data = bytes(body)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length < 0:
                raise ValueError(f"negative Content-Length {length}")
            data = rfile.read(length)
            if len(data) < length:
                raise RuntimeApiError("the Runtime API closed the connection in the body")
        else:
            data = rfile.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(parts[1]), headers, data

    def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes = b"", timeout: float | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request with a Content-Length body; retried once on a fresh connection if a reused one fails."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.address}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for attempt in (0, 1):
            reused = self.sock is not None
            try:
                self.send([head, body] if body else [head], timeout)
                return self.read_answer(timeout)
            except (OSError, RuntimeApiError):
                self.close()
                if attempt or not reused:
                    raise
        raise AssertionError("unreachable")


# -- the context object ----------------------------------------------------------------------------
class CognitoIdentity:
    """``context.identity`` (mobile SDK invokes), as awslambdaric builds it."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")


class Client:
    """``context.client_context.client``, as awslambdaric builds it."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")


class ClientContext:
    """``context.client_context`` (``Lambda-Runtime-Client-Context``), as awslambdaric builds it."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        client = data.get("client")
        self.client = Client(client) if isinstance(client, Mapping) else None
        self.custom = data.get("custom")
        self.env = data.get("env")


def _json_header(value: str | None) -> Mapping[str, Any] | None:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, Mapping) else None


class LambdaContext:
    """The handler's ``context``, with awslambdaric's attributes (``memory_limit_in_mb`` is a str there too)."""

    def __init__(
        self,
        *,
        request_id: str,
        deadline_ms: int,
        invoked_function_arn: str,
        client_context: str | None = None,
        cognito_identity: str | None = None,
        tenant_id: str | None = None,
    ) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        identity = _json_header(cognito_identity)
        self.identity = CognitoIdentity(identity) if identity is not None else None
        client = _json_header(client_context)
        self.client_context = ClientContext(client) if client is not None else None
        self.tenant_id = tenant_id
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout (0 when past it)."""
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg: str) -> None:
        """Writes ``msg`` to the function's log (stdout), as awslambdaric's ``context.log``."""
        sys.stdout.write(str(msg))
        sys.stdout.flush()

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},function_name={self.function_name},"
            f"invoked_function_arn={self.invoked_function_arn}])"
        )


# -- logging ---------------------------------------------------------------------------------------
class Logs:
    """Log lines as Lambda's Python runtime writes them: text, or one JSON object a line."""

    def __init__(self) -> None:
        self.json = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
        self.request_id = ""
        self.ready = False

    def setup_if_imported(self) -> None:
        """Sets logging up once the function's code has imported ``logging`` (it costs ~5 ms to import)."""
        if not self.ready and "logging" in sys.modules:
            self.setup_logging()

    @staticmethod
    def _timestamp() -> str:
        now = time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"

    def setup_logging(self) -> None:
        """A root handler as awslambdaric installs (the request id on every line; JSON when asked)."""
        import logging

        self.ready = True

        logs = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    message = record.getMessage()
                    if logs.json:
                        doc: dict[str, Any] = {
                            "timestamp": logs._timestamp(),
                            "level": record.levelname,
                            "message": message,
                            "logger": record.name,
                        }
                        if logs.request_id:
                            doc["requestId"] = logs.request_id
                        if record.exc_info and record.exc_info[1] is not None:
                            doc["errorType"] = type(record.exc_info[1]).__name__
                            doc["errorMessage"] = str(record.exc_info[1])
                        line = json.dumps(doc, default=str)
                    else:
                        line = f"[{record.levelname}]\t{logs._timestamp()}\t{logs.request_id}\t{message}"
                        if record.exc_info:
                            line += "\n" + self.format(record).split("\n", 1)[-1]
                        line = line.replace("\n", "\r")
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
                except Exception:
                    self.handleError(record)

        root = logging.getLogger()
        root.handlers[:] = [_Handler()]
        level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
        if level in ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"):
            root.setLevel({"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level))

    def error(self, error: Mapping[str, Any], note: str | None = None) -> None:
        """An error line: ``[ERROR] Type: message`` and the stack, or one JSON object."""
        if self.json:
            doc = {"timestamp": self._timestamp(), "level": "ERROR", **error, "requestId": self.request_id}
            if note:
                doc["message"] = note
            line = json.dumps(doc, default=str)
        else:
            text = f"[ERROR] {error.get('errorType')}: {error.get('errorMessage')}"
            if note:
                text = f"[ERROR] {note}: {error.get('errorType')}: {error.get('errorMessage')}"
            stack = error.get("stackTrace") or []
            if stack:
                text += "\nTraceback (most recent call last):\n" + "".join(stack)
            line = text.rstrip("\n").replace("\n", "\r")
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def error_document(exc: BaseException, *, with_stack: bool = True) -> dict[str, Any]:
    """``{"errorMessage", "errorType", "stackTrace"}`` as awslambdaric reports, without this package's frames."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_PACKAGE_DIR)]
    error_type = getattr(exc, "error_type", None) if isinstance(exc, HandlerLoadError) else None
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_list(frames) if with_stack else [],
    }


def trailer_error_type(error_type: str) -> str:
    """``Function.<Name>`` (Lambda's ``Category.Reason`` form); ``Function.Unhandled`` for other names.

    A type that already has the ``Runtime.`` / ``Function.`` category is kept only when its reason has the same
    form (``[A-Z][a-zA-Z]*``, at most 100 letters): the value is written into a header and a trailer, so a
    class name with CR/LF (``type()`` accepts any str) or one of 3 KB must not pass through as it is.
    """
    category, dot, reason = error_type.partition(".")
    if dot and category in ("Runtime", "Function"):
        name = reason
    else:
        category, name = "Function", error_type
    if 0 < len(name) <= 100 and name[0].isupper() and set(name) <= _ERROR_TYPE_CHARS:
        return f"{category}.{name}"
    return "Function.Unhandled"


def trailers(error: Mapping[str, Any]) -> bytes:
    """The error trailer section (after ``0\\r\\n``): both trailers, together under :data:`TRAILER_BUDGET`."""
    import base64

    kind = trailer_error_type(str(error.get("errorType", "")))
    head = f"{contract.ERROR_TYPE_TRAILER}: {kind}\r\n{contract.ERROR_BODY_TRAILER}: ".encode("latin-1")
    budget = TRAILER_BUDGET - len(head) - 4
    message = str(error.get("errorMessage", ""))
    error_type = str(error.get("errorType", ""))
    stack = [str(line) for line in error.get("stackTrace") or []]
    while True:
        doc = {"errorMessage": message, "errorType": error_type, "stackTrace": stack}
        encoded = base64.b64encode(json.dumps(doc).encode("utf-8"))
        if len(encoded) <= budget:
            return head + encoded + b"\r\n\r\n"
        if stack:
            stack = stack[1:]  # keep the innermost frames
        elif len(message) > 16:
            message = message[: len(message) // 2] + "..."
        else:
            error_type, message = error_type[:64], ""


# -- one streamed answer ---------------------------------------------------------------------------
class ResponseStream:
    """The chunked ``POST .../response`` of one invocation; headers go out with the first chunk."""

    def __init__(self, conn: Connection, request_id: str, content_type: str, deadline_ms: int) -> None:
        self.conn = conn
        self.request_id = request_id
        self.content_type = content_type
        self.deadline_ms = deadline_ms
        self.started = False
        self.sent = 0
        self.failure: str | None = None  # why the answer is dead (the server's answer or the socket error)

    def _timeout(self) -> float:
        return max(self.deadline_ms / 1000 - time.time(), 0) + ANSWER_TIMEOUT

    def _head(self) -> bytes:
        return (
            f"POST {API}/invocation/{self.request_id}/response HTTP/1.1\r\n"
            f"Host: {self.conn.address}\r\n"
            f"{contract.RESPONSE_MODE_HEADER}: {contract.RESPONSE_MODE_STREAMING}\r\n"
            "Transfer-Encoding: chunked\r\n"
            f"Trailer: {contract.ERROR_TYPE_TRAILER}\r\n"
            f"Trailer: {contract.ERROR_BODY_TRAILER}\r\n"
            f"Content-Type: {self.content_type}\r\n\r\n"
        ).encode("latin-1")

    def write(self, datas: Sequence[bytes]) -> bool:
        """Sends each non-empty item of ``datas`` as one chunk; False when the answer is dead."""
        if self.failure is not None:
            return False
        parts: list[bytes] = []
        if not self.started:
            self.conn.open()
            parts.append(self._head())
        elif self.conn.readable():
            self._early_answer()
            return False
        for data in datas:
            if data:
                parts += (b"%x\r\n" % len(data), data, b"\r\n")
                self.sent += len(data)
        if not parts:
            return True
        try:
            self.conn.send(parts, self._timeout())
        except OSError as exc:
            self.started = True
            self._early_answer(exc)
            return False
        self.started = True
        return True

    def _early_answer(self, exc: BaseException | None = None) -> None:
        try:
            status, _, body = self.conn.read_answer(1.0)
            self.failure = f"{status} {body[:300].decode(errors='replace')}"
        except (OSError, RuntimeApiError, ValueError):
            self.failure = f"connection lost ({exc or 'closed by the Runtime API'})"
        self.conn.close()

    def finish(self, trailer_section: bytes = b"\r\n") -> bool:
        """Ends the body (``0`` chunk, then the trailers or none) and reads the answer; True on 202."""
        if self.failure is not None:
            return False
        parts = [] if self.started else [self._head()]
        try:
            if self.started and self.conn.readable():
                self._early_answer()
                return False
            self.conn.send([*parts, b"0\r\n" + trailer_section], self._timeout())
            self.started = True
            status, _, body = self.conn.read_answer(ANSWER_TIMEOUT)
        except (OSError, RuntimeApiError, ValueError) as exc:
            self.failure = f"no answer to the response ({exc})"
            self.conn.close()
            return False
        if status != 202:
            self.failure = f"{status} {body[:300].decode(errors='replace')}"
            self.conn.close()
            return False
        return True


# -- the handler's items, directly or from a producer thread ---------------------------------------
class _Direct:
    """Items pulled on the writer's thread (no keep-alives needed)."""

    def __init__(self, items: Generator[Response | bytes | Event, None, None]) -> None:
        self.items = items

    def get(self, timeout: float | None) -> tuple[str, Any]:
        try:
            return "item", next(self.items)
        except StopIteration:
            return "end", None
        except BaseException as exc:
            return "error", exc

    def close(self, wait: float) -> None:
        try:
            self.items.close()
        except Exception as exc:
            raise _CloseError(exc) from exc


class _CloseError(Exception):
    """The user's generator raised while being closed (logged, not answered)."""


class _Producer:
    """Items produced on their own thread, so the writer can send keep-alives while the handler works."""

    def __init__(self, items: Generator[Response | bytes | Event, None, None]) -> None:
        import queue
        import threading

        self._empty = queue.Empty
        self._full = queue.Full
        self.queue: Any = queue.Queue(maxsize=QUEUE_DEPTH)
        self.stop = threading.Event()
        self.items = items
        self.close_error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="serverless-streaming-producer", daemon=True)
        self.thread.start()

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(entry, timeout=0.05)
                return True
            except self._full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self.items:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as exc:
            self._put(("error", exc))
        finally:
            try:
                self.items.close()  # on this thread: GeneratorExit reaches the user's code
            except BaseException as exc:
                self.close_error = exc

    def get(self, timeout: float | None) -> tuple[str, Any]:
        try:
            entry: tuple[str, Any] = self.queue.get(timeout=timeout)
            return entry
        except self._empty:
            return "idle", None

    def close(self, wait: float) -> None:
        self.stop.set()
        self.thread.join(wait)
        if self.close_error is not None:
            raise _CloseError(self.close_error) from self.close_error


# -- the runtime -----------------------------------------------------------------------------------
class Runtime:
    """The /next loop: one streamed answer per invocation."""

    def __init__(self, address: str, handler: Callable[..., Any], logs: Logs) -> None:
        self.conn = Connection(address)
        self.handler = handler
        self.options: StreamOptions = options(handler)
        self.logs = logs

    def next_invocation(self) -> tuple[dict[str, str], bytes]:
        """``GET /next``: blocks until Lambda has an invocation (no timeout: the environment is frozen)."""
        status, headers, body = self.conn.request("GET", f"{API}/invocation/next", {}, timeout=None)
        if status != 200:
            raise RuntimeApiError(f"/next answered {status}: {body[:300]!r}")
        return headers, body

    def post_error(self, request_id: str, error: Mapping[str, Any]) -> None:
        """``POST .../error`` (an error before the first byte)."""
        body = json.dumps({**error, "requestId": request_id}).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            contract.ERROR_TYPE_TRAILER: trailer_error_type(str(error.get("errorType", ""))),
        }
        try:
            status, _, answer = self.conn.request(
                "POST", f"{API}/invocation/{request_id}/error", headers, body, ANSWER_TIMEOUT
            )
        except (OSError, RuntimeApiError) as exc:
            self.logs.error({"errorType": "Runtime.ApiError", "errorMessage": f"/error failed: {exc}"})
            return
        if status != 202:
            self.logs.error({"errorType": "Runtime.ApiError", "errorMessage": f"/error answered {status}: {answer!r}"})

    def run_once(self) -> None:
        """Takes one invocation from ``/next`` and answers it."""
        headers, payload = self.next_invocation()
        self.logs.setup_if_imported()
        request_id = headers.get("lambda-runtime-aws-request-id", "")
        self.logs.request_id = request_id
        trace = headers.get("lambda-runtime-trace-id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        try:
            deadline_ms = int(headers.get("lambda-runtime-deadline-ms", "0"))
        except ValueError:
            deadline_ms = 0
        context = LambdaContext(
            request_id=request_id,
            deadline_ms=deadline_ms,
            invoked_function_arn=headers.get("lambda-runtime-invoked-function-arn", ""),
            client_context=headers.get("lambda-runtime-client-context"),
            cognito_identity=headers.get("lambda-runtime-cognito-identity"),
            tenant_id=headers.get("lambda-runtime-aws-tenant-id"),
        )
        try:
            event = json.loads(payload) if payload else {}
        except ValueError as exc:
            error = {
                "errorMessage": f"Unable to parse the event: {exc}",
                "errorType": "Runtime.UnmarshalError",
                "stackTrace": [],
            }
            self.logs.error(error)
            self.post_error(request_id, error)
            return
        try:
            self.stream(request_id, event, context, deadline_ms)
        except Exception as exc:  # a bug of ours: answer (if nothing went out yet) rather than hang the caller
            error = error_document(exc)
            self.logs.error(error, "the streaming runtime failed")
            self.conn.close()
            self.post_error(request_id, {**error, "errorType": "Runtime.InternalError"})

    def stream(self, request_id: str, event: Any, context: LambdaContext, deadline_ms: int) -> None:
        """Runs the handler over ``event`` and streams its items as one chunked answer."""
        opts = self.options
        http = is_http_event(event)
        sse = opts.sse
        default_type = opts.resolved_content_type()
        writer = ResponseStream(
            self.conn, request_id, contract.HTTP_INTEGRATION_CONTENT_TYPE if http else default_type, deadline_ms
        )
        items = iterate(self.handler, event, context)
        keep_alive = opts.keep_alive_seconds if sse else None
        source: _Direct | _Producer = _Producer(items) if keep_alive else _Direct(items)
        pending: list[bytes] = []  # the prelude, until it goes out with the first chunk
        prelude_due = http
        last_write = time.monotonic()
        error: BaseException | None = None
        # Lambda kills the environment at the deadline, mid-stream: no error event, no trailers, and an SSE client
        # cannot tell a timeout from a dropped connection (EventSource reconnects: one more model call). The
        # runtime ends the stream itself just before, between items (and, with the producer thread, while the
        # handler is blocked); a handler blocked on the writer's own thread is still cut by Lambda.
        cutoff = deadline_ms / 1000 - DEADLINE_MARGIN if deadline_ms > 0 else None
        timed_out = False
        try:
            while True:
                if cutoff is not None and time.time() >= cutoff:
                    error, timed_out = StreamTimeout(), True
                    break
                # keep-alives only once the handler's first item went out: until then it may still yield
                # the Response that sets the status and headers (the prelude goes out once)
                wait = None
                if keep_alive is not None and writer.started:
                    wait = max(keep_alive - (time.monotonic() - last_write), 0.0)
                if cutoff is not None and isinstance(source, _Producer):
                    left = max(cutoff - time.time(), 0.0)
                    wait = left if wait is None else min(wait, left)
                kind, value = source.get(wait)
                if kind == "end":
                    break
                if kind == "error":
                    error = value
                    break
                if kind == "idle":
                    if cutoff is not None and time.time() >= cutoff:
                        continue  # the deadline, not silence: the loop's top ends the stream
                    if keep_alive is None or not writer.started:
                        continue
                    data = KEEP_ALIVE_FRAME
                elif isinstance(value, Response):
                    if http:
                        data = b""
                        pending.append(prelude(value, content_type=default_type, sse=sse))
                        prelude_due = False
                    else:
                        _adopt_content_type(writer, value)
                        continue
                elif isinstance(value, Event):
                    if not sse:
                        raise TypeError("Event items need a handler decorated with @streaming(sse=True)")
                    data = sse_frame(value)
                else:
                    data = sse_frame(value) if sse else value
                if prelude_due:
                    pending.append(prelude(None, content_type=default_type, sse=sse))
                    prelude_due = False
                if not writer.write([*pending, data]):
                    self._dead(writer)
                    return
                pending.clear()
                last_write = time.monotonic()
        except BaseException as exc:  # prelude validation, an Event without SSE
            error = exc
        finally:
            # out of time: do not wait for a blocked handler (it stops at its next yield, on its own thread)
            remaining = 0.05 if timed_out else max(deadline_ms / 1000 - time.time(), 1.0)
            try:
                source.close(remaining)
            except _CloseError as exc:
                self.logs.error(error_document(exc.__cause__ or exc), "error while closing the handler's generator")
        if error is not None:
            self._fail(request_id, writer, error, sse)
            return
        tail = [*pending]
        if prelude_due:
            tail.append(prelude(None, content_type=default_type, sse=sse))
        if sse:
            tail.append(DONE_FRAME)
        if tail and not writer.write(tail):
            self._dead(writer)
            return
        if not writer.finish():
            self._dead(writer)

    def _fail(self, request_id: str, writer: ResponseStream, exc: BaseException, sse: bool) -> None:
        error = error_document(exc)
        self.logs.error(error)
        if not writer.started:
            self.post_error(request_id, error)
            return
        if sse:
            frame = sse_frame(Event(data=json.dumps(public_error(exc)), event="error"))
            if not writer.write([frame]):
                self._dead(writer)
                return
        if not writer.finish(trailers(error)):
            self._dead(writer)

    def _dead(self, writer: ResponseStream) -> None:
        self.logs.error(
            {
                "errorType": "Runtime.StreamAborted",
                "errorMessage": f"the response stream ended early after {writer.sent} bytes: {writer.failure}",
            }
        )

    def loop(self) -> None:
        """Answers invocations until the Runtime API goes away."""
        while True:
            self.run_once()


def _adopt_content_type(writer: ResponseStream, response: Response) -> None:
    """For a non-HTTP invoke a Response's content-type becomes the answer's content type (before any byte)."""
    if writer.started:
        return
    for name, value in response.headers.items():
        if name.lower() == "content-type" and isinstance(value, str) and not set(value) & set("\r\n\0"):
            writer.content_type = value


def _bootstrap_path() -> None:
    """``sys.path`` as Lambda's Python bootstrap builds it: task root, the layers' folders, the runtime's, first."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    wanted = [task_root, f"/opt/python/lib/{version}/site-packages", "/opt/python"]
    runtime_dir = os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime")
    if os.path.isdir(runtime_dir):  # where the managed runtime keeps its own packages (boto3 on some versions)
        wanted.append(runtime_dir)
    rest = [p for p in sys.path if p not in wanted]
    sys.path[:] = [*wanted, *rest]


def _post_init_error(address: str, error: Mapping[str, Any]) -> None:
    conn = Connection(address)
    headers = {"Content-Type": "application/json", contract.ERROR_TYPE_TRAILER: str(error.get("errorType"))}
    try:
        conn.request("POST", f"{API}/init/error", headers, json.dumps(error).encode("utf-8"), ANSWER_TIMEOUT)
    except (OSError, RuntimeApiError):
        pass
    finally:
        conn.close()


def main() -> int:
    """The runtime's entry point (``python -m serverless_streaming.runtime``)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    os.environ.pop("_LAMBDA_TELEMETRY_LOG_FD", None)  # read and removed, as Lambda's runtime does
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        sys.stderr.write("serverless_streaming: AWS_LAMBDA_RUNTIME_API is not set\n")
        return 1
    _bootstrap_path()
    logs = Logs()
    # the package targets 3.11+, but Lambda still runs python3.9 functions: there every invocation would fail with
    # a puzzling TypeError (X | Y in isinstance), so say why at init
    if sys.version_info < (3, 10):  # noqa: UP036
        error = {
            "errorMessage": f"serverless_streaming needs Python 3.10 or later, not {sys.version.split()[0]}",
            "errorType": "Runtime.UnsupportedRuntime",
            "stackTrace": [],
        }
        logs.error(error)
        _post_init_error(address, error)
        return 1
    spec = os.environ.get(contract.ENV_HANDLER_VARIABLE, "")
    try:
        handler = load_handler(spec)
    except HandlerLoadError as exc:
        error = {"errorMessage": str(exc), "errorType": exc.error_type, "stackTrace": []}
        logs.error(error)
        _post_init_error(address, error)
        return 1
    except Exception as exc:  # the module raised while being imported
        error = error_document(exc)
        error["errorType"] = "Runtime.ImportModuleError"
        error["errorMessage"] = f"Unable to import module '{spec.rpartition('.')[0]}': {exc}"
        logs.error(error)
        _post_init_error(address, error)
        return 1
    logs.setup_if_imported()
    runtime = Runtime(address, handler, logs)
    try:
        runtime.loop()
    except (OSError, RuntimeApiError) as exc:
        logs.error({"errorType": "Runtime.ApiError", "errorMessage": f"the Runtime API is gone: {exc}"})
        return 1
    finally:
        runtime.conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
