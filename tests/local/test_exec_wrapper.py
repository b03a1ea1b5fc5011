"""The emulator's runner runs an exec wrapper shipped in a layer: the streaming runtime, end to end.

The streaming layer (``lambda_src/streaming_runtime``) is the function's layer and
``AWS_LAMBDA_EXEC_WRAPPER=/opt/serverless-streaming`` its setting, as the streaming constructs deploy
it. In namespace mode the layer is at ``/opt``; in the fallback mode (no ``/opt``) the runner finds the
wrapper in the merged layer folder. Either way the runner's Runtime API (``local/runtime_api.py``) must
accept the runtime's chunked answer and hand each chunk to the caller before the handler goes on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdk_serverless_patterns.local import lambda_runtime
from cdk_serverless_patterns.local.lambda_runtime import FunctionSpec, LambdaRunner

pytestmark = pytest.mark.slow

LAYER = Path(__file__).resolve().parents[2] / "lambda_src" / "streaming_runtime"
APP = r"""
import os, sys, time
from serverless_streaming import Response

def handler(event, context):
    gates = event.get("gates")
    if event.get("http"):
        yield Response(200, {"content-type": "text/plain"})
    yield f"runtime={'awslambdaric' in sys.modules};wrapper={os.environ.get('AWS_LAMBDA_EXEC_WRAPPER')}|"
    for i in range(event.get("n", 0)):
        if gates:
            path = os.path.join(gates, f"gate.{i}")
            deadline = time.monotonic() + 10
            while not os.path.exists(path):
                if time.monotonic() > deadline:
                    raise TimeoutError(path)
                time.sleep(0.002)
        yield f"chunk {i}|"
    if event.get("fail"):
        raise ValueError("late failure")
"""
HTTP_EVENT = {"requestContext": {"resourcePath": "/", "httpMethod": "GET"}, "http": True}


@pytest.fixture(params=["namespace", "fallback"])
def spec(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FunctionSpec:
    mode = request.param
    if mode == "namespace" and lambda_runtime.isolation_mode() != "namespace":
        pytest.skip("no private mount namespace here")
    monkeypatch.setattr(lambda_runtime, "_MODE", mode)
    layer = tmp_path / "layer"
    shutil.copytree(LAYER, layer, ignore=shutil.ignore_patterns("__pycache__"))
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(APP)
    return FunctionSpec(
        name="streamer",
        arn="arn:aws:lambda:us-east-1:123456789012:function:streamer",
        handler="app.handler",
        runtime="python3.12",
        code_dir=code,
        layer_dirs=(layer,),
        environment={"AWS_LAMBDA_EXEC_WRAPPER": "/opt/serverless-streaming"},
        timeout=15.0,
        streaming=True,
    )


@pytest.fixture()
def runner(tmp_path: Path) -> Iterator[LambdaRunner]:
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "runner")
    try:
        yield runner
    finally:
        envs = runner.environments()
        runner.shutdown()
        for info in envs:
            for pid in info.pids:
                status = Path(f"/proc/{pid}/status")
                assert not status.exists() or "State:\tZ" in status.read_text(), info


def test_chunks_reach_the_caller_before_the_handler_goes_on(
    runner: LambdaRunner, spec: FunctionSpec, tmp_path: Path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    stream = runner.invoke_stream(spec, json.dumps({"n": 3, "gates": str(gates)}).encode())
    seen = []
    for chunk in stream:
        seen.append(chunk)
        (gates / f"gate.{len(seen) - 1}").touch()  # only now may the handler yield its next chunk
    assert seen == [b"runtime=False;wrapper=/opt/serverless-streaming|", b"chunk 0|", b"chunk 1|", b"chunk 2|"]
    assert stream.error_type is None
    result = stream.wait(30)
    assert result is not None and result.function_error is None


def test_http_events_get_the_prelude_and_buffered_invokes_the_whole_body(
    runner: LambdaRunner, spec: FunctionSpec
) -> None:
    stream = runner.invoke_stream(spec, json.dumps({**HTTP_EVENT, "n": 1}).encode())
    body = b"".join(stream)
    assert body == (
        b'{"statusCode":200,"headers":{"content-type":"text/plain"}}'
        + b"\0" * 8
        + b"runtime=False;wrapper=/opt/serverless-streaming|chunk 0|"
    )
    buffered = runner.invoke(spec, json.dumps({"n": 2}).encode())
    assert buffered.function_error is None
    assert buffered.payload == b"runtime=False;wrapper=/opt/serverless-streaming|chunk 0|chunk 1|"


def test_an_error_after_the_first_byte_surfaces_through_the_runner(runner: LambdaRunner, spec: FunctionSpec) -> None:
    stream = runner.invoke_stream(spec, json.dumps({"n": 1, "fail": True}).encode())
    assert b"".join(stream).endswith(b"chunk 0|")
    assert stream.error_type == "Function.ValueError"
    assert stream.error_body is not None
    error = json.loads(stream.error_body)
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "late failure"
