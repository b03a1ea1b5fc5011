"""The streaming sample on the embedded emulator: one generator through REST, a function URL and a WebSocket.

One LocalCloud for the module (moto keeps one AWS state per process): the streaming sample stack alone is
deployed with the real CDK CLI, with the context ``streaming_offline_delay_ms`` (:data:`DELAY_MS`), so the
offline token source pauses before each token but the first, as a model does. That pause is the proof that
chunks are streamed and not buffered: the handler cannot finish before ``(tokens - 1) * DELAY_MS`` after its
first token, so when the first ``data:`` event reaches a raw HTTP client (``http.client``, reading the chunked
body one chunk at a time) at least half of that time before ``event: done``, the client saw the first chunk
while the handler was still running. The time to first byte is measured and printed (``-s`` shows it); only a
generous sanity bound is asserted on it.

Callers authenticate as the sample says: the REST API with the demo bearer token (a TOKEN authorizer reading
the secret Secrets Manager generated at deploy time), the function URL with a SigV4 ``Authorization`` header
(the emulator checks its presence, not the signature) and the WebSocket with a presigned handshake query
(``X-Amz-Algorithm`` and ``X-Amz-Credential``). The WebSocket's connections table and the driver's execution
environment (the Lambda runner's own state) show what happens on the server side of a connection.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cdk_serverless_patterns.local.lambda_environment import wait_for

pytestmark = pytest.mark.slow

INTEG = Path(__file__).resolve().parents[2] / "integ"
APP = f"""
import os, sys
sys.path.insert(0, {str(INTEG)!r})
import aws_cdk as cdk
from sample_streaming import StreamingSampleStack
app = cdk.App()
StreamingSampleStack(app, env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
                                              region=os.environ.get("CDK_DEFAULT_REGION")))
app.synth()
"""
#: The offline source's pause before each token (ms): a stream of ~70 tokens takes ~2.8 s.
DELAY_MS = 40
PROMPT = "Tell me about streaming"
#: A SigV4 Authorization header (service lambda): the emulator's function URL checks its presence.
SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=AKIDLOCAL/20261130/us-east-1/lambda/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
)
#: A presigned WebSocket handshake (service execute-api): the emulator checks the query's presence.
PRESIGNED = urllib.parse.urlencode(
    {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": "AKIDLOCAL/20261130/us-east-1/execute-api/aws4_request",
        "X-Amz-Date": "20261130T000000Z",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": "0" * 64,
    }
)
#: How the offline source splits text into tokens (``serverless_streaming.tokens._TOKEN``).
TOKEN = re.compile(r"\s*\S+\s*|\s+")
#: Generous bounds: a cold start on a busy 2-core machine included.
TTFB_SANITY_S = 30.0
WAIT_S = 30.0


@dataclass
class Sample:
    """The deployed sample: the cloud, its outputs, endpoints by kind and the demo bearer token."""

    cloud: Any
    outputs: Mapping[str, str]
    endpoints: Mapping[str, str]
    token: str
    log: list[str]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sample]:
    """The streaming sample deployed alone into a LocalCloud, with a per-token delay."""
    from cdk_serverless_patterns.local.cloud import LocalCloud

    app = tmp_path_factory.mktemp("streaming-app") / "app.py"
    app.write_text(APP)
    lines: list[str] = []
    with LocalCloud(log=lines.append) as cloud:
        [stack] = cloud.deploy(str(app), context={"streaming_offline_delay_ms": str(DELAY_MS)})
        secrets = cloud.session().client("secretsmanager")
        token = secrets.get_secret_value(SecretId=stack.outputs["DemoTokenSecretArn"])["SecretString"]
        endpoints = {endpoint.kind: endpoint.url for endpoint in stack.endpoints}
        assert set(endpoints) == {"rest", "function_url", "websocket"}
        yield Sample(cloud, dict(stack.outputs), endpoints, token, lines)


# -- a raw HTTP client that reads the chunked body as it arrives -------------------------------------------------
@dataclass
class SseEvent:
    """One server-sent event and when its last byte arrived (seconds after the request was sent)."""

    event: str
    data: str
    at: float


@dataclass
class Streamed:
    """An HTTP answer read incrementally: status, headers, the body's reads with their arrival times."""

    status: int
    headers: Mapping[str, str]
    reads: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(chunk for _, chunk in self.reads)

    def events(self) -> list[SseEvent]:
        """The SSE events (text/event-stream parsing: ``data:`` lines joined with newlines, comments skipped)."""
        events: list[SseEvent] = []
        pending = b""
        name, data = "message", []
        for at, chunk in self.reads:
            pending += chunk
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                line = raw.decode("utf-8").rstrip("\r")
                if not line:
                    if data:
                        events.append(SseEvent(name, "\n".join(data), at))
                    elif name != "message":
                        events.append(SseEvent(name, "", at))
                    name, data = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    key, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if key == "data":
                        data.append(value)
                    elif key == "event":
                        name = value
        assert pending == b"", f"the stream ended inside an event: {pending[:200]!r}"
        return events


def stream(url: str, headers: Mapping[str, str] | None = None) -> Streamed:
    """GET ``url`` with http.client, reading the body one chunk at a time (``read1``), each read timestamped."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "localhost", parts.port, timeout=WAIT_S)
    try:
        started = time.monotonic()
        connection.request(
            "GET", f"{parts.path}?{parts.query}" if parts.query else parts.path, headers=dict(headers or {})
        )
        response = connection.getresponse()
        answer = Streamed(response.status, {k.lower(): v for k, v in response.getheaders()})
        while True:
            chunk = response.read1(65536)
            if not chunk:
                break
            answer.reads.append((time.monotonic() - started, chunk))
        return answer
    finally:
        connection.close()


def query(prompt: str = PROMPT) -> str:
    return urllib.parse.urlencode({"prompt": prompt})


def assert_streamed_sse(answer: Streamed, label: str) -> list[SseEvent]:
    """The SSE answer of the sample: status and headers from the prelude, tokens streamed, summary, done."""
    assert answer.status == 200, answer.body[:300]
    assert answer.headers["content-type"] == "text/event-stream"
    assert answer.headers["cache-control"] == "no-cache"
    assert b"\x00" not in answer.body  # the prelude and its 8-NUL delimiter are consumed by the front door
    events = answer.events()
    tokens = [e for e in events if e.event == "message"]
    [summary] = [e for e in events if e.event == "summary"]
    assert [e.event for e in events[-2:]] == ["summary", "done"]  # complete, not truncated
    assert json.loads(summary.data) == {"tokens": len(tokens)}
    text = "".join(e.data for e in tokens)
    assert text.startswith(f"You asked: {PROMPT}\n")
    assert len(TOKEN.findall(text)) == len(tokens)
    first, done = tokens[0].at, events[-1].at
    # The handler pauses DELAY_MS before each token but the first: it cannot finish sooner than this after its
    # first token. Half of it between the client's first token and `done` means the first chunk came out early.
    handler_span = (len(tokens) - 1) * DELAY_MS / 1000
    print(
        f"\n{label}: time to first byte {first * 1000:.0f} ms, total {done * 1000:.0f} ms, {len(tokens)} tokens "
        f"in {len(answer.reads)} reads (handler needs >= {handler_span * 1000:.0f} ms after its first token)"
    )
    assert first < TTFB_SANITY_S
    assert done - first >= handler_span / 2, f"{label}: the tokens arrived together (buffered), not streamed"
    assert len({at for at, _ in answer.reads}) >= len(tokens) // 4  # many separate arrivals
    return events


# -- REST API and function URL ----------------------------------------------------------------------------------
def test_rest_api_streams_sse_chunks_before_the_handler_finishes(sample: Sample) -> None:
    answer = stream(f"{sample.endpoints['rest']}stream?{query()}", {"Authorization": f"Bearer {sample.token}"})
    assert_streamed_sse(answer, "REST API")


def test_function_url_streams_sse_chunks_before_the_handler_finishes(sample: Sample) -> None:
    answer = stream(f"{sample.endpoints['function_url']}?{query()}", {"Authorization": SIGV4})
    assert_streamed_sse(answer, "function URL")


def test_the_same_prompt_gives_the_same_tokens_on_both_http_transports(sample: Sample) -> None:
    prompt = "Same answer twice?"
    rest = stream(f"{sample.endpoints['rest']}stream?{query(prompt)}", {"Authorization": f"Bearer {sample.token}"})
    url = stream(f"{sample.endpoints['function_url']}?{query(prompt)}", {"Authorization": SIGV4})
    assert rest.status == url.status == 200
    assert [(e.event, e.data) for e in rest.events()] == [(e.event, e.data) for e in url.events()]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-demo-token"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no token", "wrong token", "not a bearer token"],
)
def test_rest_api_refuses_callers_without_the_demo_token(sample: Sample, headers: dict[str, str]) -> None:
    function = sample.outputs["StreamingFunctionName"]
    before = invocations(sample, function)
    answer = stream(f"{sample.endpoints['rest']}stream?{query()}", headers)
    # API Gateway: 401 without the identity source; the sample authorizer's "Unauthorized" is a 401 too
    assert answer.status == 401, answer.body[:300]
    assert answer.headers.get("x-amzn-errortype") == "UnauthorizedException"
    assert b"data:" not in answer.body
    assert invocations(sample, function) == before  # the streaming function never ran


def test_function_url_refuses_unsigned_callers(sample: Sample) -> None:
    function = sample.outputs["StreamingFunctionName"]
    before = invocations(sample, function)
    answer = stream(f"{sample.endpoints['function_url']}?{query()}")
    assert answer.status == 403, answer.body[:300]
    assert answer.headers.get("x-amzn-errortype") == "AccessDeniedException"
    assert invocations(sample, function) == before


# -- WebSocket ----------------------------------------------------------------------------------------------------
def invocations(sample: Sample, function: str) -> int:
    """How many invocations the function's execution environments have run (the Lambda runner's state)."""
    return sum(info.invocations for info in sample.cloud._runner.environments() if info.key[0] == function)


def connection_ids(sample: Sample) -> set[str]:
    """The connection ids in the WebSocket's connections table."""
    table = sample.outputs["ConnectionsTableName"]
    items = sample.cloud.session().client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    return {item["connectionId"]["S"] for item in items}


def driver_environments(sample: Sample) -> dict[str, Any]:
    function = sample.outputs["WebSocketDriverName"]
    return {info.environment_id: info for info in sample.cloud._runner.environments() if info.key[0] == function}


def test_websocket_streams_chunk_frames_then_done_and_tracks_the_connection(sample: Sample) -> None:
    from websockets.sync.client import connect

    before = connection_ids(sample)
    started = time.monotonic()
    with connect(f"{sample.endpoints['websocket']}?{PRESIGNED}", open_timeout=WAIT_S, close_timeout=5) as ws:
        added = connection_ids(sample) - before
        assert len(added) == 1  # $connect stored this connection before the handshake completed
        sent = time.monotonic()
        ws.send(json.dumps({"action": "stream", "prompt": PROMPT}))
        frames: list[tuple[float, dict[str, Any]]] = []
        while not frames or frames[-1][1]["type"] not in ("done", "error"):
            frames.append((time.monotonic() - sent, json.loads(ws.recv(timeout=WAIT_S))))
        assert connection_ids(sample) - before == added  # still connected: the row is still there
    [connection_id] = added
    assert wait_for(lambda: connection_id not in connection_ids(sample), timeout=WAIT_S)  # $disconnect deleted it
    messages = [message for _, message in frames]
    assert messages[-1] == {"type": "done"}
    chunks = [m for m in messages if m["type"] == "chunk" and "event" not in m]
    [summary] = [m for m in messages if m.get("event") == "summary"]
    assert all(len(json.dumps(m).encode()) < 32 * 1024 for m in messages)
    text = "".join(m["data"] for m in chunks)
    assert text.startswith(f"You asked: {PROMPT}\n")
    assert json.loads(summary["data"]) == {"tokens": len(TOKEN.findall(text))}
    first, done = frames[0][0], frames[-1][0]
    tokens = len(TOKEN.findall(text))
    print(
        f"\nWebSocket: first frame {first * 1000:.0f} ms after the request (connected in "
        f"{(sent - started) * 1000:.0f} ms), done at {done * 1000:.0f} ms, {len(messages)} frames"
    )
    assert first < TTFB_SANITY_S
    # batched frames (<= 50 ms each) while the handler paces its tokens: several frames spread over the stream
    assert len(chunks) >= 5
    assert done - first >= (tokens - 1) * DELAY_MS / 1000 / 2


def test_websocket_refuses_an_unsigned_handshake(sample: Sample) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    before = connection_ids(sample)
    with pytest.raises(InvalidStatus) as refused, connect(sample.endpoints["websocket"], open_timeout=WAIT_S):
        pass
    assert refused.value.response.status_code == 403
    assert connection_ids(sample) == before  # $connect never stored it


def test_a_client_that_disconnects_mid_stream_stops_the_drivers_generator(sample: Sample) -> None:
    from websockets.sync.client import connect

    before = connection_ids(sample)
    with connect(f"{sample.endpoints['websocket']}?{PRESIGNED}", open_timeout=WAIT_S, close_timeout=5) as ws:
        [connection_id] = connection_ids(sample) - before
        ws.send(json.dumps({"action": "stream", "prompt": "a long answer, then the client leaves"}))
        first = json.loads(ws.recv(timeout=WAIT_S))
        assert first["type"] == "chunk"
        streaming = wait_for(
            lambda: [i for i in driver_environments(sample).values() if i.state == "busy"], timeout=WAIT_S
        )
        assert streaming, "no driver environment is running the stream"
    left = time.monotonic()
    # The environment that runs the stream ($disconnect cannot run in a busy one, so it is this stream's).
    stream_env = {info.environment_id for info in streaming}

    def stopped() -> bool:
        envs = driver_environments(sample)
        return all(envs[e].state in ("idle", "dead") for e in stream_env)

    assert wait_for(stopped, timeout=WAIT_S)
    stopped_after = time.monotonic() - left
    # Left to run, the generator needs >= 60 * DELAY_MS more (the sample answers ~70 tokens): it was stopped.
    print(f"\nWebSocket: the driver stopped {stopped_after * 1000:.0f} ms after the client left")
    assert stopped_after < 60 * DELAY_MS / 1000
    logs = wait_for(
        lambda: (
            "the client is gone; stream stopped"
            in "".join(info.log_path.read_text(errors="replace") for info in streaming)
        ),
        timeout=WAIT_S,
    )
    assert logs, "the driver did not log that the client was gone"
    assert wait_for(lambda: connection_id not in connection_ids(sample), timeout=WAIT_S)
