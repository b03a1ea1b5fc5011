"""The handler API (serverless_streaming.core), in-process: iterate, streaming, sse_frame, load_handler.

SSE framing is checked against a parser written from the WHATWG event-stream algorithm, with
hypothesis over data full of newlines, CRs and non-ASCII text.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambda_src" / "streaming_runtime" / "python"))
from serverless_streaming import Event, Response, iterate, load_handler, sse_frame, streaming
from serverless_streaming.core import (
    HandlerLoadError,
    StreamError,
    StreamOptions,
    options,
    public_error,
)


def parse_sse(stream: bytes) -> list[dict[str, Any]]:
    """The events a browser's EventSource dispatches for ``stream`` (WHATWG HTML, 9.2.6)."""
    text = stream.decode("utf-8")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    events: list[dict[str, Any]] = []
    data, kind, last_id, retry = "", "", None, None
    for line in lines[:-1]:  # the last piece is an unterminated line: not processed
        if line == "":
            if data:
                events.append({"data": data[:-1], "event": kind or "message", "id": last_id, "retry": retry})
            data, kind = "", ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data += value + "\n"
        elif name == "event":
            kind = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isdigit():
            retry = int(value)
    return events


# -- iterate --------------------------------------------------------------------------------------
def test_a_sync_generator_is_normalised() -> None:
    def handler(event: Any, context: Any) -> Iterator[Any]:
        yield Response(201, {"a": "b"})
        yield "héllo"
        yield b""
        yield bytearray(b"x")
        yield Event("e")

    items = list(iterate(handler, {}, None))
    assert items == [Response(201, {"a": "b"}), "héllo".encode(), b"x", Event("e")]


@pytest.mark.parametrize(
    ("result", "expected"),
    [("text", [b"text"]), (b"raw", [b"raw"]), (None, []), ({"a": 1}, [b'{"a": 1}']), (["a", b"b"], [b"a", b"b"])],
)
def test_a_plain_function_result_is_one_chunk_or_its_items(result: Any, expected: list[bytes]) -> None:
    assert list(iterate(lambda e, c: result, {}, None)) == expected


def test_async_generators_and_coroutines_run_on_their_own_loop() -> None:
    async def agen(event: Any, context: Any) -> AsyncIterator[str]:
        for word in ("a", "b"):
            await asyncio.sleep(0)
            yield word

    async def coro(event: Any, context: Any) -> str:
        await asyncio.sleep(0)
        return "done"

    assert list(iterate(agen, {}, None)) == [b"a", b"b"]
    assert list(iterate(coro, {}, None)) == [b"done"]


def test_a_response_after_the_first_item_is_a_type_error_and_closes_the_generator() -> None:
    closed = []

    def handler(event: Any, context: Any) -> Iterator[Any]:
        try:
            yield "body"
            yield Response()
        finally:
            closed.append(True)

    with pytest.raises(TypeError, match="first item"):
        list(iterate(handler, {}, None))
    assert closed == [True]


@pytest.mark.parametrize("bad", [1, 2.5, object(), {"a": 1}])
def test_other_item_types_are_type_errors(bad: Any) -> None:
    def handler(event: Any, context: Any) -> Iterator[Any]:
        yield bad

    with pytest.raises(TypeError, match="may yield"):
        list(iterate(handler, {}, None))


def test_a_non_iterable_result_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must be a generator"):
        list(iterate(lambda e, c: 42, {}, None))


def test_stopping_early_raises_generator_exit_in_the_users_code() -> None:
    seen: list[str] = []

    def handler(event: Any, context: Any) -> Iterator[str]:
        try:
            while True:
                yield "x"
        except GeneratorExit:
            seen.append("GeneratorExit")
            raise

    items = iterate(handler, {}, None)
    assert next(items) == b"x"
    items.close()
    assert seen == ["GeneratorExit"]


def test_stopping_an_async_generator_early_runs_its_aclose() -> None:
    seen: list[str] = []

    async def handler(event: Any, context: Any) -> AsyncIterator[str]:
        try:
            while True:
                yield "x"
        finally:
            seen.append("closed")

    items = iterate(handler, {}, None)
    assert next(items) == b"x"
    items.close()
    assert seen == ["closed"]


def test_the_handler_runs_on_the_first_next_and_its_errors_surface_there() -> None:
    calls = []

    def handler(event: Any, context: Any) -> str:
        calls.append(event)
        raise ValueError("boom")

    items = iterate(handler, {"k": 1}, None)
    assert calls == []
    with pytest.raises(ValueError, match="boom"):
        next(items)


# -- streaming / options --------------------------------------------------------------------------
def test_the_decorator_stores_options_and_returns_the_same_function() -> None:
    def handler(event: Any, context: Any) -> None:
        return None

    decorated = streaming(sse=True, keep_alive_seconds=5, content_type="text/plain")(handler)
    assert decorated is handler
    assert options(handler) == StreamOptions(sse=True, keep_alive_seconds=5, content_type="text/plain", decorated=True)
    assert options(lambda e, c: None) == StreamOptions()
    assert StreamOptions().resolved_content_type() == "application/octet-stream"
    assert StreamOptions(sse=True).resolved_content_type() == "text/event-stream"


@pytest.mark.parametrize("kwargs", [{"keep_alive_seconds": 0}, {"keep_alive_seconds": -1}, {"content_type": "a\r\nb"}])
def test_the_decorator_refuses_bad_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        streaming(**kwargs)


def test_public_error_hides_the_text_of_unexpected_errors() -> None:
    assert public_error(StreamError("quota", "Quota")) == {"errorType": "Quota", "message": "quota"}
    shown = public_error(RuntimeError("password=hunter2"))
    assert shown["errorType"] == "RuntimeError" and "hunter2" not in shown["message"]


# -- sse_frame ------------------------------------------------------------------------------------
def test_sse_frame_exact_bytes() -> None:
    assert sse_frame("hi") == b"data: hi\n\n"
    assert sse_frame(b"a\r\nb") == b"data: a\ndata: b\n\n"
    assert sse_frame(Event("x", event="tick", id="1", retry_ms=500)) == b"event: tick\nid: 1\nretry: 500\ndata: x\n\n"
    assert sse_frame(Event("")) == b"data: \n\n"


@pytest.mark.parametrize(
    "event",
    [
        Event("x", event="a\nb"),
        Event("x", event="a\rdata: evil"),
        Event("x", id="1\n"),
        Event("x", retry_ms=-1),
        Event("x", retry_ms=True),
    ],
)
def test_sse_frame_refuses_field_injection(event: Event) -> None:
    with pytest.raises(ValueError):
        sse_frame(event)


sse_text = st.lists(
    st.sampled_from(["a", "é", "€", "😀", "\n", "\r", "\r\n", " ", ":", "\u2028", "\0", "data: x", "event: e"])
    | st.text(max_size=5)
).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    data=sse_text,
    kind=st.none() | st.text(min_size=1).filter(lambda s: not set(s) & set("\r\n")),
    ident=st.none() | st.text().filter(lambda s: not set(s) & set("\r\n")),
)
def test_sse_frame_round_trips_through_a_browser_parser(data: str, kind: str | None, ident: str | None) -> None:
    events = parse_sse(sse_frame(Event(data, event=kind, id=ident)))
    assert len(events) == 1
    assert events[0]["data"] == data.replace("\r\n", "\n").replace("\r", "\n")
    assert events[0]["event"] == (kind or "message")
    assert events[0]["id"] == (None if ident is not None and "\0" in ident else ident)


def test_an_id_with_nul_is_dropped_not_fatal() -> None:
    """WHATWG: an id line containing NUL is ignored; the event is still sent, without the id line."""
    assert sse_frame(Event("x", event="tick", id="a\0b")) == b"event: tick\ndata: x\n\n"
    assert parse_sse(sse_frame(Event("x", id="\0"))) == [{"data": "x", "event": "message", "id": None, "retry": None}]


@settings(max_examples=100, deadline=None)
@given(st.lists(sse_text, max_size=8))
def test_a_stream_of_frames_is_the_same_events_in_order(datas: list[str]) -> None:
    stream = b"".join(sse_frame(d) for d in datas) + b": keep-alive\n\n"
    assert [e["data"] for e in parse_sse(stream)] == [d.replace("\r\n", "\n").replace("\r", "\n") for d in datas]


# -- load_handler ---------------------------------------------------------------------------------
def test_load_handler_finds_dotted_modules_in_the_task_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg_s1" / "sub"
    package.mkdir(parents=True)
    (tmp_path / "pkg_s1" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("def handler(event, context):\n    return 'ok'\n")
    (tmp_path / "broken_s1.py").write_text("def handler(:\n")
    (tmp_path / "raising_s1.py").write_text("import not_there_s1\n")
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert load_handler("pkg_s1.sub.mod.handler")({}, None) == "ok"
    assert load_handler("pkg_s1/sub/mod.handler")({}, None) == "ok"
    assert sys.path[0] == str(tmp_path)
    cases = {
        "nodots": "Runtime.MalformedHandlerName",
        "pkg_s1.sub.mod.missing": "Runtime.HandlerNotFound",
        "nope_s1.handler": "Runtime.ImportModuleError",
        "raising_s1.handler": "Runtime.ImportModuleError",
        "broken_s1.handler": "Runtime.UserCodeSyntaxError",
    }
    for spec, error_type in cases.items():
        with pytest.raises(HandlerLoadError) as caught:
            load_handler(spec)
        assert caught.value.error_type == error_type, spec


def test_a_lone_surrogate_is_replaced_not_fatal() -> None:
    """UTF-8 cannot encode a lone surrogate (text decoded with surrogateescape, or sliced JSON): the item goes out
    with ``?`` in its place instead of failing the rest of the stream."""

    def handler(event: Any, context: Any) -> Iterator[str]:
        yield "before \ud800 after"
        yield "next"

    assert list(iterate(handler, {}, None)) == [b"before ? after", b"next"]
    assert sse_frame("a\udfffb") == b"data: a?b\n\n"
    assert sse_frame(Event("x\ud800", event="e\ud800")) == b"event: e?\ndata: x?\n\n"
