"""The handler API of the streaming runtime: what a handler yields, and how it is driven.

A streaming handler is an ordinary Lambda handler ``(event, context)`` that is a generator (sync or
async) or returns something iterable. It may yield, in order:

- optionally, FIRST, one :class:`Response` (status code, headers, cookies; for API Gateway REST
  STREAM and function URLs it becomes the HTTP prelude);
- then ``bytes`` / ``str`` chunks (``str`` is sent as UTF-8) and, in SSE mode, :class:`Event` objects.

:func:`iterate` turns any such handler into one iterator of ``Response | bytes | Event`` items. It is
the one place that knows the handler shapes, so the HTTP runtime (``runtime.py``) and the WebSocket
driver (``websocket.py``) stream exactly the same user code:

- a sync generator is driven item by item; an async generator (or an ``async def`` returning a
  value) runs on an event loop that :func:`iterate` creates and closes itself;
- a plain function's result is one chunk (``str`` / ``bytes``), nothing (``None``), a JSON chunk
  (a ``dict``, serialised as Lambda serialises a buffered result), or an iterable of items;
- empty chunks are dropped (an empty chunk would end an HTTP/1.1 chunked body);
- a :class:`Response` after the first item is a ``TypeError`` (headers cannot follow the body), and so
  is any other item type;
- when the consumer stops early (``close()`` on the iterator, or garbage collection), the user's
  generator is closed: ``GeneratorExit`` reaches the user's code so its ``finally`` blocks run.

:func:`streaming` marks a handler and stores its options; an undecorated generator handler streams raw
bytes with the content type ``application/octet-stream`` unless its :class:`Response` sets one.
:func:`sse_frame` is the ``text/event-stream`` framing of one event.

Standard library only; never imports aws_cdk or boto3 (this module is on the cold-start path).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping, Sequence

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs about 4 ms of a cold start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    Handler = Callable[..., Any]
    F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "SSE_CONTENT_TYPE",
    "Event",
    "HandlerLoadError",
    "Response",
    "StreamError",
    "StreamOptions",
    "iterate",
    "load_handler",
    "options",
    "public_error",
    "sse_frame",
    "streaming",
]

OPTIONS_ATTRIBUTE = "__serverless_streaming__"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
SSE_CONTENT_TYPE = "text/event-stream"


class _Frozen:
    """What ``@dataclass(frozen=True)`` gives (init by keyword or position, eq, hash, repr, no assignment),
    written out: importing ``dataclasses`` (and ``inspect`` with it) costs about 14 ms of every cold start."""

    __slots__: tuple[str, ...] = ()

    def _init(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Response(_Frozen):
    """The optional FIRST item a handler yields: the HTTP status line, headers and cookies (frozen).

    Args:
        status_code: HTTP status, 100-599 (validated when the prelude is written). Default 200.
        headers: response headers (names and values without CR, LF or NUL). Default none.
        cookies: ``Set-Cookie`` values, one per cookie (function URLs and REST APIs send each). Default none.
    """

    __slots__ = ("status_code", "headers", "cookies")  # noqa: RUF023 (constructor order, as repr shows)
    status_code: int
    headers: Mapping[str, str]
    cookies: Sequence[str]

    def __init__(
        self, status_code: int = 200, headers: Mapping[str, str] | None = None, cookies: Sequence[str] = ()
    ) -> None:
        self._init(status_code=status_code, headers={} if headers is None else headers, cookies=cookies)


class Event(_Frozen):
    """One server-sent event (``text/event-stream``; frozen).

    Args:
        data: the event's data; newlines (LF, CR or CRLF) split it into several ``data:`` lines, which the
            browser joins back with LF.
        event: the event type (``event:`` field; no CR/LF). Default none (the browser's ``message``).
        id: the event id (``id:`` field; no CR or LF; an id with NUL is dropped, as browsers drop it). Default none.
        retry_ms: the reconnection time in milliseconds (``retry:`` field, a non-negative int). Default none.
    """

    __slots__ = ("data", "event", "id", "retry_ms")
    data: str
    event: str | None
    id: str | None
    retry_ms: int | None

    def __init__(self, data: str, event: str | None = None, id: str | None = None, retry_ms: int | None = None) -> None:
        self._init(data=data, event=event, id=id, retry_ms=retry_ms)


class StreamOptions(_Frozen):
    """How a handler streams (set by :func:`streaming`; the defaults when the handler is undecorated; frozen).

    Attributes:
        sse: frame chunks as server-sent events (``text/event-stream``), with keep-alives, an in-band
            ``event: error`` and a final ``event: done``.
        keep_alive_seconds: in SSE mode, send ``: keep-alive`` after this many seconds of silence; ``None``
            disables keep-alives.
        content_type: the content type when the handler's :class:`Response` sets none.
        decorated: whether the handler carried :func:`streaming` (False: the defaults).
    """

    __slots__ = ("sse", "keep_alive_seconds", "content_type", "decorated")  # noqa: RUF023 (constructor order)
    sse: bool
    keep_alive_seconds: float | None
    content_type: str | None
    decorated: bool

    def __init__(
        self,
        sse: bool = False,
        keep_alive_seconds: float | None = 15.0,
        content_type: str | None = None,
        decorated: bool = False,
    ) -> None:
        self._init(sse=sse, keep_alive_seconds=keep_alive_seconds, content_type=content_type, decorated=decorated)

    def resolved_content_type(self) -> str:
        """The content type to send when the handler's Response names none."""
        if self.content_type:
            return self.content_type
        return SSE_CONTENT_TYPE if self.sse else DEFAULT_CONTENT_TYPE


class HandlerLoadError(Exception):
    """The handler named by ``_HANDLER`` / ``STREAMING_HANDLER`` cannot be loaded.

    ``error_type`` is the type Lambda's Python runtime reports for the same failure
    (``Runtime.MalformedHandlerName``, ``Runtime.ImportModuleError``, ``Runtime.HandlerNotFound``,
    ``Runtime.UserCodeSyntaxError``).
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class StreamError(Exception):
    """Raise from a streaming handler to end the stream with a message its clients may see.

    Any other exception reaches clients only as its class name and a generic message (its text may hold
    secrets); a ``StreamError`` shows ``message`` and ``error_type`` (default ``StreamError``) as given.
    """

    def __init__(self, message: str, error_type: str = "StreamError") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


def public_error(exc: BaseException) -> dict[str, str]:
    """What a client may see of an error: ``{"errorType": ..., "message": ...}``, never a stack trace.

    A :class:`StreamError` shows its own type and message; any other exception its class name and a
    generic message (the details go to the function's log).
    """
    if isinstance(exc, StreamError):
        return {"errorType": exc.error_type, "message": exc.message}
    return {"errorType": type(exc).__name__, "message": "The function failed while streaming its response."}


def streaming(
    *, sse: bool = False, keep_alive_seconds: float | None = 15.0, content_type: str | None = None
) -> Callable[[F], F]:
    """Marks a handler as streaming and stores its options on it (``__serverless_streaming__``).

    Args:
        sse: send ``text/event-stream``: ``str``/``bytes`` items become ``data:`` events, :class:`Event`
            items are framed as given, silence longer than ``keep_alive_seconds`` sends a keep-alive comment,
            a complete stream ends with ``event: done`` and an error after the first byte with
            ``event: error``. Default False (raw bytes).
        keep_alive_seconds: seconds of silence before a keep-alive comment (SSE only); positive, or ``None``
            for no keep-alives. Default 15.
        content_type: the content type when the handler's :class:`Response` sets none. Default
            ``text/event-stream`` with ``sse``, else ``application/octet-stream``.

    Returns:
        A decorator returning the same function (not a wrapper), so it still runs as an ordinary handler.
    """
    if keep_alive_seconds is not None and not keep_alive_seconds > 0:
        raise ValueError(f"keep_alive_seconds must be positive or None, got {keep_alive_seconds!r}")
    if content_type is not None and (not content_type or any(c in content_type for c in "\r\n\0")):
        raise ValueError(f"content_type must be a non-empty header value without CR/LF/NUL, got {content_type!r}")
    opts = StreamOptions(sse=sse, keep_alive_seconds=keep_alive_seconds, content_type=content_type, decorated=True)

    def decorate(handler: F) -> F:
        setattr(handler, OPTIONS_ATTRIBUTE, opts)
        return handler

    return decorate


def options(handler: Handler) -> StreamOptions:
    """The handler's streaming options: those :func:`streaming` stored, or the defaults."""
    found = getattr(handler, OPTIONS_ATTRIBUTE, None)
    return found if isinstance(found, StreamOptions) else StreamOptions()


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (which UTF-8 cannot encode) becomes ``?`` instead of failing the stream."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _chunk(item: object, first: bool) -> Response | bytes | Event | None:
    """Normalises one yielded item; None means 'drop it' (an empty chunk)."""
    if isinstance(item, bytes):
        return item or None
    if isinstance(item, str):
        return _utf8(item) or None
    if isinstance(item, bytearray | memoryview):
        return bytes(item) or None
    if isinstance(item, Event):
        return item
    if isinstance(item, Response):
        if not first:
            raise TypeError("a Response may only be the first item a streaming handler yields")
        return item
    raise TypeError(f"a streaming handler may yield str, bytes, Event or (first) Response, not {type(item).__name__}")


def _normalise(items: Iterator[object]) -> Generator[Response | bytes | Event, None, None]:
    first = True
    for item in items:
        chunk = _chunk(item, first)
        first = False
        if chunk is not None:
            yield chunk


def _drive_sync(gen: Iterator[object]) -> Iterator[object]:
    try:
        yield from gen
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()


def _drive_async(agen: AsyncIterator[object]) -> Iterator[object]:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                item = loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        try:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                loop.run_until_complete(aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _await(coro: Any) -> Any:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def _value_items(result: object) -> Iterator[object]:
    """The items of a plain function's (or awaited coroutine's) result."""
    if result is None:
        return iter(())
    if isinstance(result, str | bytes | bytearray | memoryview | Response | Event):
        return iter((result,))
    if isinstance(result, Mapping):
        return iter((json.dumps(result),))
    if hasattr(result, "__anext__"):
        return _drive_async(result)  # type: ignore[arg-type]
    if isinstance(result, Iterator):
        return _drive_sync(result)
    if isinstance(result, Iterable):
        return iter(result)
    raise TypeError(
        f"a streaming handler must be a generator or return str, bytes, None, a dict or an iterable, "
        f"not {type(result).__name__}"
    )


def iterate(handler: Handler, event: Any, context: Any) -> Generator[Response | bytes | Event, None, None]:
    """Runs the handler and yields its items, normalised: an optional first Response, then bytes/Events.

    The handler runs on the first ``next()`` (not when ``iterate`` is called), so errors in it surface
    from the iteration. Closing the returned iterator closes the user's generator (``GeneratorExit``
    reaches its code; an async generator's ``aclose()`` runs on its loop).
    """

    def run() -> Generator[object, None, None]:
        result = handler(event, context)
        if hasattr(result, "__await__") and not hasattr(result, "__anext__"):
            result = _await(result)
        inner = _value_items(result)
        try:
            yield from inner
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()

    items = run()
    normalised = _normalise(items)

    def guarded() -> Generator[Response | bytes | Event, None, None]:
        try:
            yield from normalised
        finally:
            normalised.close()
            items.close()

    return guarded()


def _field_value(name: str, value: str, forbidden: str) -> str:
    if any(c in value for c in forbidden):
        raise ValueError(f"the SSE {name} field may not contain {forbidden!r}: {value!r}")
    return value


def sse_frame(item: Event | str | bytes) -> bytes:
    """The ``text/event-stream`` bytes of one event, ending with the blank line that dispatches it.

    ``str`` and ``bytes`` are the data of a plain ``message`` event. Data is split on CRLF, CR and LF into
    one ``data:`` line each (so no data can inject fields or end the event early); the browser joins them
    with LF. ``event`` and ``id`` may not contain CR/LF: ``ValueError``. An ``id`` containing NUL is dropped
    (the WHATWG parser ignores such an id line; the event itself is sent).
    """
    if isinstance(item, Event):
        head = b""
        if item.event is not None:
            head += b"event: " + _utf8(_field_value("event", item.event, "\r\n")) + b"\n"
        # an id with NUL is dropped, as the WHATWG parser drops it (a browser would ignore the line anyway);
        # failing the whole stream for it would lose the events that follow
        if item.id is not None and "\0" not in item.id:
            head += b"id: " + _utf8(_field_value("id", item.id, "\r\n")) + b"\n"
        if item.retry_ms is not None:
            if isinstance(item.retry_ms, bool) or not isinstance(item.retry_ms, int) or item.retry_ms < 0:
                raise ValueError(f"the SSE retry field must be a non-negative int, got {item.retry_ms!r}")
            head += b"retry: " + str(item.retry_ms).encode("ascii") + b"\n"
        data = _utf8(item.data)
    elif isinstance(item, str):
        head, data = b"", _utf8(item)
    elif isinstance(item, bytes | bytearray | memoryview):
        head, data = b"", bytes(item)
    else:
        raise TypeError(f"sse_frame takes an Event, str or bytes, not {type(item).__name__}")
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


def load_handler(spec: str) -> Handler:
    """Imports the handler named ``module.function`` (dots allowed in the module; ``/`` too, as in Lambda).

    ``LAMBDA_TASK_ROOT`` is put first on ``sys.path`` if it is not already there. Failures raise
    :class:`HandlerLoadError` with the error type Lambda's Python runtime reports.
    """
    import importlib

    if not isinstance(spec, str) or "." not in spec.strip("."):
        raise HandlerLoadError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': not enough values to unpack")
    module_name, _, function_name = spec.rpartition(".")
    module_name = module_name.replace("/", ".")
    if not module_name or not function_name:
        raise HandlerLoadError("Runtime.MalformedHandlerName", f"Bad handler '{spec}'")
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root and task_root not in sys.path:
        sys.path.insert(0, task_root)
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise HandlerLoadError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}") from exc
    except ImportError as exc:
        raise HandlerLoadError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    handler = getattr(module, function_name, None)
    if handler is None or not callable(handler):
        raise HandlerLoadError(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        )
    return handler  # type: ignore[no-any-return]
