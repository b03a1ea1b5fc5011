"""The HTTP adapters: which events get the prelude, the prelude's exact bytes and its validation, and the
error trailers' encoding (serverless_streaming.http and runtime helpers), in-process."""

from __future__ import annotations

import base64
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambda_src" / "streaming_runtime" / "python"))
from serverless_streaming import Response
from serverless_streaming.http import DELIMITER, is_http_event, prelude
from serverless_streaming.runtime import trailer_error_type, trailers

REST = {"httpMethod": "GET", "requestContext": {"resourcePath": "/x", "httpMethod": "GET", "stage": "prod"}}
URL = {"version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "GET", "path": "/"}}}
WEBSOCKET = {"requestContext": {"routeKey": "stream", "eventType": "MESSAGE", "connectionId": "c"}, "body": "{}"}
SQS = {"Records": [{"eventSource": "aws:sqs", "body": "x"}]}


@pytest.mark.parametrize(
    ("event", "http"),
    [
        (REST, True),
        (URL, True),
        (WEBSOCKET, False),
        (SQS, False),
        ({}, False),
        ([], False),
        ("x", False),
        (None, False),
        ({"requestContext": "x"}, False),
        ({"version": "1.0", "requestContext": {"http": {}}}, False),
    ],
)
def test_which_events_are_http(event: Any, http: bool) -> None:
    assert is_http_event(event) is http


def test_the_prelude_bytes() -> None:
    assert prelude(None, content_type="text/plain") == b'{"statusCode":200,"headers":{"content-type":"text/plain"}}' + (
        b"\0" * 8
    )
    assert DELIMITER == b"\0" * 8
    data = prelude(
        Response(404, {"Content-Type": "application/json", "vary": ("a", "b")}, ["c=1"]),
        content_type="text/plain",
        sse=True,
    )
    assert data == (
        b'{"statusCode":404,"headers":{"Content-Type":"application/json","cache-control":"no-cache"},'
        b'"multiValueHeaders":{"vary":["a","b"]},"cookies":["c=1"]}' + b"\0" * 8
    )


def test_an_sse_response_keeps_its_own_cache_control_and_unicode_values() -> None:
    data = prelude(Response(headers={"Cache-Control": "no-store", "x-name": "Zoë"}), content_type="t", sse=True)
    assert json.loads(data[:-8]) == {
        "statusCode": 200,
        "headers": {"Cache-Control": "no-store", "x-name": "Zoë", "content-type": "t"},
    }


@pytest.mark.parametrize(
    "response",
    [
        Response(status_code=99),
        Response(status_code=600),
        Response(status_code=True),
        Response(status_code="200"),  # type: ignore[arg-type]
        Response(headers={"bad name": "v"}),
        Response(headers={"": "v"}),
        Response(headers={"x": "a\r\nset-cookie: evil"}),
        Response(headers={"x": "a\0"}),
        Response(headers={"x": "a\x0bb"}),  # other control characters: refused by HTTP stacks
        Response(headers={"x": ["ok", "a\x1bb"]}),
        Response(cookies=["a=1\x7f"]),
        Response(headers={"x": 1}),  # type: ignore[dict-item]
        Response(cookies=["a=1\nb=2"]),
        Response(cookies="a=1"),  # type: ignore[arg-type]
        Response(headers={"x": "y" * 20_000}),
    ],
)
def test_invalid_responses_are_refused(response: Response) -> None:
    with pytest.raises((ValueError, TypeError)):
        prelude(response, content_type="text/plain")


header_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
CTL = {chr(c) for c in range(0x20) if c != 0x09} | {"\x7f"}


@settings(max_examples=300, deadline=None)
@given(
    name=header_text,
    value=header_text | st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=30),
    status=st.integers(min_value=-5, max_value=700),
)
def test_a_prelude_is_valid_or_refused_never_an_injection(name: str, value: str, status: int) -> None:
    valid = 100 <= status <= 599 and bool(name) and set(name) <= TCHAR and not set(value) & CTL
    try:
        data = prelude(Response(status, {name: value}), content_type="text/plain")
    except (ValueError, TypeError):
        assert not valid
        return
    assert valid
    assert data.endswith(b"\0" * 8) and len(data) <= 16 * 1024
    document = json.loads(data[:-8])
    assert set(document) <= {"statusCode", "headers", "multiValueHeaders", "cookies"}
    assert document["statusCode"] == status and document["headers"][name] == value


# -- error trailers -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ValueError", "Function.ValueError"),
        ("HTTP2Error", "Function.Unhandled"),
        ("my_error", "Function.Unhandled"),
        ("Runtime.ExitError", "Runtime.ExitError"),
        ("", "Function.Unhandled"),
        ("Bad\r\nX", "Function.Unhandled"),
        ("Runtime.UnmarshalError", "Runtime.UnmarshalError"),
        ("Function.Bad\r\nX-Injected: 1", "Function.Unhandled"),  # a header/trailer value: no CR/LF through
        ("Runtime." + "A" * 5000, "Function.Unhandled"),
        ("Other.ValueError", "Function.Unhandled"),
    ],
)
def test_trailer_error_types(name: str, expected: str) -> None:
    assert trailer_error_type(name) == expected


def test_trailers_with_a_huge_categorised_error_type_still_fit() -> None:
    """A ``Function.``-prefixed 5 KB type used to pass through and make the fitting loop spin forever."""
    result: list[bytes] = []
    worker = threading.Thread(
        target=lambda: result.append(trailers({"errorType": "Function." + "A" * 5000, "errorMessage": "m"})),
        daemon=True,
    )
    worker.start()
    worker.join(5)
    assert result, "trailers() did not return"
    section = result[0]
    assert section.startswith(b"Lambda-Runtime-Function-Error-Type: Function.Unhandled\r\n") and len(section) < 3100


@settings(max_examples=100, deadline=None)
@given(message=st.text(max_size=20_000), frames=st.lists(st.text(max_size=300), max_size=60))
def test_trailers_fit_under_3_kb_as_strict_base64_json(message: str, frames: list[str]) -> None:
    section = trailers({"errorType": "ValueError", "errorMessage": message, "stackTrace": frames})
    assert section.endswith(b"\r\n\r\n") and len(section) < 3100
    lines = section.decode("latin-1").split("\r\n")
    assert lines[0] == "Lambda-Runtime-Function-Error-Type: Function.ValueError"
    name, _, encoded = lines[1].partition(": ")
    assert name == "Lambda-Runtime-Function-Error-Body"
    document = json.loads(base64.b64decode(encoded, validate=True))
    assert document["errorType"] == "ValueError"
    assert message.startswith(document["errorMessage"].removesuffix("..."))
    assert frames[len(frames) - len(document["stackTrace"]) :] == document["stackTrace"]  # the innermost kept
