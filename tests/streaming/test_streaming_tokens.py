"""Token sources (serverless_streaming.tokens): the offline source, and Bedrock ConverseStream on AWS's wire format.

moto 5.2.5 has no bedrock-runtime. :class:`FakeBedrock` is a local HTTP endpoint that answers
``POST /model/{modelId}/converse-stream`` as Bedrock does: HTTP 200, ``application/vnd.amazon.eventstream``,
chunked, one binary event-stream message per event (prelude, headers, JSON payload, both CRC32s). The encoder
below follows the event-stream format; a test decodes its output with botocore's own parser
(``botocore.eventstream.EventStreamBuffer``, which checks both CRCs) so it cannot drift from what boto3
reads. The source under test uses a real boto3 ``bedrock-runtime`` client with ``endpoint_url``.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambda_src" / "streaming_runtime" / "python"))

from serverless_streaming import core, tokens

from cdk_serverless_patterns.local.lambda_environment import wait_for

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


# -- the event-stream wire format ---------------------------------------------------------------------------
def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message: prelude (lengths, CRC), headers, payload, message CRC."""
    raw_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + raw_headers + payload
    return message + struct.pack("!I", zlib.crc32(message) & 0xFFFFFFFF)


def event(kind: str, body: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps({**body, "p": "abcdefgh"}).encode("utf-8"))


def exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    payload = {"message": message, "originalStatusCode": 424, "originalMessage": "upstream"}
    return encode_message(headers, json.dumps(payload).encode("utf-8"))


def delta(text: str) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})


def answer(*texts: str, stop: str = "end_turn") -> list[bytes]:
    return [
        event("messageStart", {"role": "assistant"}),
        *(delta(text) for text in texts),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": stop}),
        event(
            "metadata",
            {
                "usage": {"inputTokens": 7, "outputTokens": len(texts), "totalTokens": 7 + len(texts)},
                "metrics": {"latencyMs": 42},
            },
        ),
    ]


# -- a local Bedrock endpoint -------------------------------------------------------------------------------
@dataclass
class FakeBedrock:
    """What the endpoint answers next, and what it saw."""

    messages: list[bytes] = field(default_factory=list)
    #: after this many messages, wait for ``release`` (or the client's close) before sending the rest
    pause_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    client_closed: threading.Event = field(default_factory=threading.Event)
    #: answer with this error instead (status, error type, message)
    error: tuple[int, str, str] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


def _serve(fake: FakeBedrock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            if fake.error is not None:
                status, kind, message = fake.error
                raw = json.dumps({"message": message}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-amzn-ErrorType", f"{kind}:http://internal.amazon.com/coral/")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.amazon.eventstream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("x-amzn-RequestId", "req-1")
            self.end_headers()
            for index, message in enumerate(fake.messages):
                if fake.pause_after is not None and index == fake.pause_after:
                    self.wfile.flush()
                    if self._wait_release_or_close():
                        return
                self.wfile.write(f"{len(message):x}\r\n".encode() + message + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _wait_release_or_close(self) -> bool:
            """Waits (at most 10 s) for the test's release or the client's close; True when the client closed."""
            self.connection.settimeout(0.05)
            for _ in range(200):
                if fake.release.is_set():
                    return False
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        fake.client_closed.set()
                        return True
                except TimeoutError:
                    continue
                except OSError:
                    fake.client_closed.set()
                    return True
            return False

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that closes early (the point of some tests) is not an error here


@pytest.fixture()
def bedrock() -> Iterator[FakeBedrock]:
    fake = FakeBedrock()
    server = _QuietServer(("127.0.0.1", 0), _serve(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def client(fake: FakeBedrock) -> Any:
    config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=fake.url, config=config)


# -- the wire format itself ---------------------------------------------------------------------------------
def test_the_encoder_writes_what_botocores_own_parser_reads() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(b"".join(answer("Hel", "lo")) + exception("throttlingException", "slow down"))
    decoded = list(buffer)
    assert [m.headers[":event-type"] for m in decoded[:-1]] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert json.loads(decoded[1].payload)["delta"] == {"text": "Hel"}
    assert decoded[-1].headers[":exception-type"] == "throttlingException"


# -- Bedrock ConverseStream -----------------------------------------------------------------------------------
def test_bedrock_streams_text_deltas_and_keeps_stop_reason_and_usage(bedrock: FakeBedrock) -> None:
    bedrock.messages = answer("Hello", ", ", "world", "!", stop="max_tokens")
    source = tokens.BedrockConverseStream(MODEL, client=client(bedrock), max_tokens=99, temperature=0.2)
    assert isinstance(source, tokens.TokenSource)
    assert list(source.stream("Say hello", system="Be brief")) == ["Hello", ", ", "world", "!"]
    assert source.stop_reason == "max_tokens"
    assert source.usage == {"inputTokens": 7, "outputTokens": 4, "totalTokens": 11}
    assert source.metrics == {"latencyMs": 42}
    (request,) = bedrock.requests
    assert request["path"] == f"/model/{MODEL.replace(':', '%3A')}/converse-stream"
    assert request["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 ")  # a real, signed SDK call
    assert request["body"] == {
        "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
        "system": [{"text": "Be brief"}],
        "inferenceConfig": {"maxTokens": 99, "temperature": 0.2},
    }


def test_max_tokens_per_call_overrides_the_default(bedrock: FakeBedrock) -> None:
    bedrock.messages = answer("ok")
    source = tokens.BedrockConverseStream(MODEL, client=client(bedrock))
    assert list(source.stream("x", max_tokens=5)) == ["ok"]
    assert bedrock.requests[0]["body"]["inferenceConfig"] == {"maxTokens": 5}
    assert "system" not in bedrock.requests[0]["body"]


def test_tokens_arrive_before_the_stream_ends(bedrock: FakeBedrock) -> None:
    bedrock.messages = answer("first", "second")
    bedrock.pause_after = 2  # messageStart, "first"; then waits for the test
    stream = tokens.BedrockConverseStream(MODEL, client=client(bedrock)).stream("x")
    assert next(stream) == "first"  # while the endpoint is still holding "second" back
    bedrock.release.set()
    assert list(stream) == ["second"]


@pytest.mark.parametrize(
    ("kind", "error_type", "retryable"),
    [
        ("modelStreamErrorException", "ModelStreamErrorException", True),
        ("throttlingException", "ThrottlingException", True),
        ("validationException", "ValidationException", False),
        ("internalServerException", "InternalServerException", True),
        ("serviceUnavailableException", "ServiceUnavailableException", True),
    ],
)
def test_stream_exception_events_are_clear_errors(
    bedrock: FakeBedrock, kind: str, error_type: str, retryable: bool
) -> None:
    bedrock.messages = [event("messageStart", {"role": "assistant"}), delta("partial"), exception(kind, "it broke")]
    stream = tokens.BedrockConverseStream(MODEL, client=client(bedrock)).stream("x")
    assert next(stream) == "partial"
    with pytest.raises(tokens.TokenSourceError) as raised:
        next(stream)
    assert raised.value.error_type == error_type
    assert raised.value.retryable is retryable
    assert "it broke" in raised.value.message
    # what a client is shown (SSE event: error, WebSocket error frame)
    assert core.public_error(raised.value) == {"errorType": error_type, "message": "the model stream failed: it broke"}


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (403, "AccessDeniedException", False),
        (404, "ResourceNotFoundException", False),
        (400, "ValidationException", False),
    ],
)
def test_a_refused_request_is_a_clear_error(bedrock: FakeBedrock, status: int, kind: str, retryable: bool) -> None:
    bedrock.error = (status, kind, "no access to this model")
    stream = tokens.BedrockConverseStream(MODEL, client=client(bedrock)).stream("x")
    with pytest.raises(tokens.TokenSourceError) as raised:
        next(stream)
    assert (raised.value.error_type, raised.value.retryable) == (kind, retryable)
    assert raised.value.message == "the model stream failed: no access to this model"


def test_a_refusal_shows_the_client_no_arn_and_no_account_id(bedrock: FakeBedrock) -> None:
    """AccessDenied names the role, the session (the function) and the account: not for the client's eyes."""
    bedrock.error = (
        403,
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/chat-fn-role/chat-fn is not authorized to perform: "
        "bedrock:InvokeModelWithResponseStream on resource: arn:aws:bedrock:us-east-1::foundation-model/x "
        "because no identity-based policy allows it (account 123456789012)",
    )
    stream = tokens.BedrockConverseStream(MODEL, client=client(bedrock)).stream("x")
    with pytest.raises(tokens.TokenSourceError) as raised:
        next(stream)
    shown = core.public_error(raised.value)["message"]
    assert "123456789012" not in shown and "arn:" not in shown and "chat-fn" not in shown
    assert shown.startswith("the model stream failed: User: <arn> is not authorized to perform:")


def test_stopping_early_closes_the_http_stream(bedrock: FakeBedrock) -> None:
    bedrock.messages = answer("one", "two", "three")
    bedrock.pause_after = 3
    stream = tokens.BedrockConverseStream(MODEL, client=client(bedrock)).stream("x")
    assert [next(stream), next(stream)] == ["one", "two"]
    stream.close()  # the consumer is gone (a WebSocket client left, an HTTP client disconnected)
    assert wait_for(bedrock.client_closed.is_set, timeout=5)  # Bedrock sees the connection close


def test_bedrock_source_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="model_id"):
        tokens.BedrockConverseStream("  ")
    with pytest.raises(ValueError, match="max_tokens"):
        tokens.BedrockConverseStream(MODEL, max_tokens=0)


@pytest.mark.parametrize(
    ("prompt", "system", "max_tokens"),
    [(None, None, None), ("", None, None), ("  \n", None, None), (5, None, None), ({"text": "x"}, None, None),
     ("ok", "", None), ("ok", 7, None), ("ok", None, 0), ("ok", None, True), ("ok", None, "9")],
)  # fmt: skip
def test_a_bad_prompt_is_a_clear_error_before_any_call(
    bedrock: FakeBedrock, prompt: Any, system: Any, max_tokens: Any
) -> None:
    """What a client sends reaches the prompt: it is checked before Bedrock is called (and billed)."""
    stream = tokens.BedrockConverseStream(MODEL, client=client(bedrock)).stream(
        prompt, system=system, max_tokens=max_tokens
    )
    with pytest.raises(tokens.TokenSourceError) as raised:
        next(stream)
    assert raised.value.error_type == "ValidationException" and "must be" in raised.value.message
    assert bedrock.requests == []


@pytest.mark.parametrize("model_id", ["", "  ", "anthropic.claude\n", "a b", "x" * 2049, None, 7])
def test_bad_model_ids_are_refused_at_construction(model_id: Any) -> None:
    with pytest.raises(ValueError, match="model_id"):
        tokens.BedrockConverseStream(model_id)


def test_max_seconds_bounds_a_stream_that_keeps_trickling(bedrock: FakeBedrock) -> None:
    """The read timeout bounds one read; ``max_seconds`` bounds the whole stream."""
    bedrock.messages = answer("first", "second", "third")
    bedrock.pause_after = 2  # messageStart, "first"; then holds the rest until released
    timer = threading.Timer(0.6, bedrock.release.set)
    timer.start()
    try:
        stream = tokens.BedrockConverseStream(MODEL, client=client(bedrock), max_seconds=0.3).stream("x")
        assert next(stream) == "first"
        with pytest.raises(tokens.TokenSourceError) as raised:
            next(stream)
    finally:
        timer.cancel()
    assert raised.value.error_type == "ModelTimeoutException" and raised.value.retryable
    assert core.public_error(raised.value)["message"] == "the model did not finish within 0.3 s"
    with pytest.raises(ValueError, match="max_seconds"):
        tokens.BedrockConverseStream(MODEL, max_seconds=0)


# -- offline tokens -----------------------------------------------------------------------------------------
def test_offline_tokens_from_a_text_join_back_to_the_text() -> None:
    text = "Streaming  lets a client\nsee tokens early. 日本語 ok "
    source = tokens.OfflineTokens(text)
    assert isinstance(source, tokens.TokenSource)
    got = list(source.stream("ignored"))
    assert "".join(got) == text
    assert len(got) == 9
    assert list(source.stream("ignored", max_tokens=3)) == got[:3]
    assert list(source.stream("ignored", max_tokens=0)) == []


def test_offline_tokens_are_deterministic_per_seed_and_per_prompt() -> None:
    seeded = tokens.OfflineTokens(seed=7, count=20)
    assert (
        list(seeded.stream("a")) == list(seeded.stream("b")) == list(tokens.OfflineTokens(seed=7, count=20).stream("c"))
    )
    assert len(list(seeded.stream("a"))) == 20
    assert list(seeded.stream("a")) != list(tokens.OfflineTokens(seed=8, count=20).stream("a"))
    by_prompt = tokens.OfflineTokens(count=10)
    answer_one = "".join(by_prompt.stream("What is streaming?"))
    assert answer_one.startswith("You asked: What is streaming?\n")
    assert answer_one == "".join(tokens.OfflineTokens(count=10).stream("What is streaming?"))
    assert answer_one != "".join(by_prompt.stream("Something else"))


def test_offline_delay_paces_tokens() -> None:
    import time

    source = tokens.OfflineTokens("a b c d e", delay_seconds=0.02)
    started = time.monotonic()
    assert list(source.stream("x")) == ["a ", "b ", "c ", "d ", "e"]
    assert time.monotonic() - started >= 0.08  # four delays (none before the first token)


@pytest.mark.parametrize("prompt", [None, 5, {"text": "x"}])
def test_offline_tokens_refuse_a_prompt_that_is_not_text(prompt: Any) -> None:
    with pytest.raises(tokens.TokenSourceError) as raised:
        next(tokens.OfflineTokens().stream(prompt))
    assert raised.value.error_type == "ValidationException"


def test_offline_source_validates_its_arguments() -> None:
    with pytest.raises(ValueError):
        tokens.OfflineTokens(delay_seconds=-1)
    with pytest.raises(ValueError):
        tokens.OfflineTokens(count=-1)


# -- from_environment -----------------------------------------------------------------------------------------
def test_from_environment() -> None:
    assert isinstance(tokens.from_environment({}), tokens.OfflineTokens)
    offline = tokens.from_environment({"STREAMING_TOKEN_SOURCE": "offline", "STREAMING_OFFLINE_DELAY_MS": "25"})
    assert isinstance(offline, tokens.OfflineTokens) and offline.delay_seconds == 0.025
    source = tokens.from_environment({"STREAMING_TOKEN_SOURCE": "bedrock", "STREAMING_MODEL_ID": MODEL})
    assert isinstance(source, tokens.BedrockConverseStream) and source.model_id == MODEL


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({"STREAMING_TOKEN_SOURCE": "openai"}, "bedrock, offline"),
        ({"STREAMING_TOKEN_SOURCE": "bedrock"}, "STREAMING_MODEL_ID"),
        ({"STREAMING_TOKEN_SOURCE": "bedrock", "STREAMING_MODEL_ID": " "}, "STREAMING_MODEL_ID"),
        ({"STREAMING_OFFLINE_DELAY_MS": "soon"}, "milliseconds"),
        ({"STREAMING_OFFLINE_DELAY_MS": "-5"}, "between"),
        ({"STREAMING_OFFLINE_DELAY_MS": "nan"}, "between"),
    ],
)
def test_from_environment_names_what_is_wrong(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tokens.from_environment(environ)
