"""The HTTP integration prelude: what API Gateway REST (STREAM) and function URLs read before the body.

A streamed answer to an API Gateway REST proxy event or a function URL event starts with a JSON object
(``statusCode``, ``headers``, ``multiValueHeaders``, ``cookies``; ``{}`` at least), then exactly eight
NUL bytes, all within the first 16 KB; the POST's content type is
``application/vnd.awslambda.http-integration-response``. API Gateway answers 500 to its client when the
prelude is missing or malformed, so it is validated here, before anything is sent: status 100-599, header
names HTTP tokens, header values and cookies strings without control characters (CR, LF, NUL, ...; HTAB is
allowed, as RFC 9110 allows it). A header value given as a list
or tuple goes to ``multiValueHeaders`` (which wins over ``headers`` for the same name in API Gateway).

The content type of the body (``content-type`` header) is added when the handler's :class:`Response` sets
none; SSE responses also get ``cache-control: no-cache`` unless they set their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .contract import HTTP_INTEGRATION_CONTENT_TYPE
from .core import Response

TYPE_CHECKING = False  # typing costs about 4 ms of a cold start
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DELIMITER", "HTTP_INTEGRATION_CONTENT_TYPE", "MAX_PRELUDE_BYTES", "is_http_event", "prelude"]

#: The 8 NUL bytes between the prelude and the body.
DELIMITER = b"\x00" * 8
#: Prelude and delimiter must arrive within the first 16 KB of the stream.
MAX_PRELUDE_BYTES = 16 * 1024
#: RFC 9110 field values: no control characters but HTAB (CR, LF and NUL split or end a header; the rest are
#: refused by HTTP stacks, so API Gateway would answer its client 500 for a prelude that "succeeded").
_CTL = frozenset(chr(c) for c in (*range(0x20), 0x7F)) - {"\t"}
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def is_http_event(event: Any) -> bool:
    """True for an API Gateway REST proxy event or a function URL (payload 2.0) event."""
    if not isinstance(event, Mapping):
        return False
    context = event.get("requestContext")
    if not isinstance(context, Mapping):
        return False
    if "httpMethod" in context or "resourcePath" in context:
        return True
    return isinstance(context.get("http"), Mapping) and event.get("version") == "2.0"


def _value(kind: str, name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{kind} {name!r} must be a str, not {type(value).__name__}")
    if not _CTL.isdisjoint(value):
        raise ValueError(f"{kind} {name!r} contains CR, LF, NUL or another control character")
    return value


def prelude(response: Response | None, *, content_type: str, sse: bool = False) -> bytes:
    """The prelude JSON followed by the 8-NUL delimiter, validated (``ValueError``/``TypeError`` otherwise).

    Args:
        response: the handler's first item, or ``None`` (status 200, no headers of its own).
        content_type: the ``content-type`` to add when the response sets none.
        sse: add ``cache-control: no-cache`` unless the response sets a cache-control.
    """
    response = response or Response()
    status = response.status_code
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"status_code must be an int from 100 to 599, got {status!r}")
    if not isinstance(response.headers, Mapping):
        raise TypeError(f"headers must be a mapping, not {type(response.headers).__name__}")
    headers: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in response.headers.items():
        if not isinstance(name, str) or not name or not set(name) <= _TCHAR:
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if isinstance(value, list | tuple):
            multi[name] = [_value("header", name, v) for v in value]
        else:
            headers[name] = _value("header", name, value)
    if isinstance(response.cookies, str):
        raise TypeError("cookies must be a sequence of Set-Cookie values, not one str")
    cookies = [_value("cookie", str(i), c) for i, c in enumerate(response.cookies)]
    present = {name.lower() for name in (*headers, *multi)}
    if "content-type" not in present:
        headers["content-type"] = _value("header", "content-type", content_type)
    if sse and "cache-control" not in present:
        headers["cache-control"] = "no-cache"
    document: dict[str, Any] = {"statusCode": status, "headers": headers}
    if multi:
        document["multiValueHeaders"] = multi
    if cookies:
        document["cookies"] = cookies
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(data) + len(DELIMITER) > MAX_PRELUDE_BYTES:
        raise ValueError(f"the response prelude is {len(data)} bytes; status and headers must fit in 16 KB")
    return data + DELIMITER
