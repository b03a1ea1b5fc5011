"""The Lambda runner: real processes, Runtime and Extensions APIs, warm environments, moto routing.

Every test writes a small function (and, where needed, a layer or a custom runtime client) to
``tmp_path`` and runs it in a :class:`LambdaRunner`; no Docker, no network but the loopback.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdk_serverless_patterns.local import lambda_runtime
from cdk_serverless_patterns.local.lambda_environment import wait_for
from cdk_serverless_patterns.local.lambda_runtime import (
    FunctionSpec,
    LambdaRunner,
    _marked_pids,
    route_moto_invoke,
)

pytestmark = pytest.mark.slow

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"

HANDLER = r"""
import os, signal, tempfile, time
COUNT = 0

def handler(event, context):
    global COUNT
    COUNT += 1
    print(f"handled {COUNT} in {os.getpid()}")
    action = event.get("action")
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "raise":
        raise ValueError("the handler failed on purpose")
    elif action == "exit":
        os._exit(event["code"])
    elif action == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == "big":
        return "x" * event["size"]
    elif action == "rendezvous":  # wait until `count` invokes have arrived in `folder`
        folder = event["folder"]
        open(os.path.join(folder, str(os.getpid())), "w").close()
        deadline = time.monotonic() + 5
        while len(os.listdir(folder)) < event["count"] and time.monotonic() < deadline:
            time.sleep(0.01)
    elif action == "hold":  # wait until a file exists
        deadline = time.monotonic() + 5
        while not os.path.exists(event["until"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    elif action == "tmp":
        path = os.path.join(tempfile.gettempdir(), "mine")
        seen = os.path.exists(path)
        open(path, "w").write(event["value"])
        return {"seen_before": seen, "tmp": tempfile.gettempdir()}
    return {
        "count": COUNT,
        "pid": os.getpid(),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "arn": context.invoked_function_arn,
        "request_id": context.aws_request_id,
        "tenant_id": getattr(context, "tenant_id", None),
        "env": {k: os.environ.get(k) for k in (
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "_HANDLER", "TZ",
            "AWS_REGION", "AWS_EXECUTION_ENV", "MY_SETTING", "AWS_ENDPOINT_URL")},
    }
"""


def write_function(folder: Path, source: str = HANDLER, name: str = "app.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(source)
    return folder


def make_spec(code: Path, name: str = "fn", **kwargs: Any) -> FunctionSpec:
    settings: dict[str, Any] = {"handler": "app.handler", "runtime": "python3.12", "timeout": 10.0, **kwargs}
    return FunctionSpec(name=name, arn=ARN.format(name), code_dir=code, **settings)


def alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.fixture()
def runner(tmp_path: Path) -> Iterator[LambdaRunner]:
    runner = LambdaRunner(aws_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, workdir=tmp_path / "runner")
    try:
        yield runner
    finally:
        envs = runner.environments()
        runner.shutdown()
        for info in envs:
            assert not any(alive(pid) for pid in info.pids), info


@pytest.fixture()
def code(tmp_path: Path) -> Path:
    return write_function(tmp_path / "code")


def invoke(runner: LambdaRunner, spec: FunctionSpec, event: dict[str, Any], **kwargs: Any) -> Any:
    return runner.invoke(spec, json.dumps(event).encode(), **kwargs)


# -- buffered invokes ---------------------------------------------------------------------------
def test_buffered_invoke_with_lambdas_context_and_environment(runner: LambdaRunner, code: Path) -> None:
    spec = make_spec(code, memory_mb=256, environment={"MY_SETTING": "on", "TZ": "Europe/Paris"})
    result = invoke(runner, spec, {})
    assert result.function_error is None and result.status_code == 200
    body = json.loads(result.payload)
    assert (body["function_name"], body["memory"], body["arn"]) == ("fn", "256", ARN.format("fn"))
    assert body["request_id"] == result.request_id
    assert 0 < body["remaining_ms"] <= 10_000
    assert body["tenant_id"] is None
    env = body["env"]
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST" and env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/fn"
    assert env["LAMBDA_TASK_ROOT"] == str(code) and env["_HANDLER"] == "app.handler"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12" and env["AWS_REGION"] == "us-east-1"
    assert env["TZ"] == "Europe/Paris"  # an unreserved variable the function may set
    assert env["MY_SETTING"] == "on" and env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert result.init_ms is not None and result.init_ms > 0  # a cold start
    lines = result.log_tail.splitlines()
    assert lines[0] == f"START RequestId: {result.request_id} Version: $LATEST"
    assert f"handled 1 in {body['pid']}" in lines
    assert lines[-2] == f"END RequestId: {result.request_id}"
    assert lines[-1].startswith(f"REPORT RequestId: {result.request_id}\tDuration: ") and "Init Duration" in lines[-1]


def test_sequential_invokes_reuse_the_warm_environment(runner: LambdaRunner, code: Path) -> None:
    spec = make_spec(code)
    first, second = invoke(runner, spec, {}), invoke(runner, spec, {})
    one, two = json.loads(first.payload), json.loads(second.payload)
    assert one["pid"] == two["pid"] and (one["count"], two["count"]) == (1, 2)  # module state survived
    assert first.init_ms is not None and second.init_ms is None
    assert "Init Duration" not in second.log_tail and "handled 1" not in second.log_tail
    (info,) = runner.environments()
    assert (info.key, info.runtime_pid, info.invocations, info.state) == (("fn", None), one["pid"], 2, "idle")


def test_handler_exception_is_an_unhandled_function_error(runner: LambdaRunner, code: Path) -> None:
    result = invoke(runner, make_spec(code), {"action": "raise"})
    assert result.function_error == "Unhandled" and result.status_code == 200
    error = json.loads(result.payload)
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "the handler failed on purpose")
    assert any("app.py" in frame for frame in error["stackTrace"])
    assert json.loads(invoke(runner, make_spec(code), {}).payload)["count"] == 2  # still warm


def test_import_error_fails_the_init_phase(runner: LambdaRunner, tmp_path: Path) -> None:
    code = write_function(tmp_path / "broken", "import no_such_module_here\ndef handler(e, c): return 1\n")
    result = invoke(runner, make_spec(code), {})
    assert result.function_error == "Unhandled" and result.init_failed
    error = json.loads(result.payload)
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module_here" in error["errorMessage"]
    assert all(info.state == "dead" for info in runner.environments())
    missing = invoke(runner, make_spec(code, handler="app.nope"), {})
    assert json.loads(missing.payload)["errorType"] == "Runtime.ImportModuleError"  # each invoke re-inits


def test_a_timeout_kills_the_environment_and_the_next_invoke_is_cold(runner: LambdaRunner, code: Path) -> None:
    spec = make_spec(code, timeout=1.0)
    pid = json.loads(invoke(runner, spec, {}).payload)["pid"]
    started = time.monotonic()
    result = invoke(runner, spec, {"action": "sleep", "seconds": 30})
    assert time.monotonic() - started < 10  # never waits for the handler
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds",
    }
    assert f"{result.request_id} Task timed out after 1.00 seconds" in result.log_tail
    assert wait_for(lambda: not alive(pid))
    after = invoke(runner, spec, {})
    assert after.init_ms is not None and json.loads(after.payload)["count"] == 1


@pytest.mark.parametrize(
    ("event", "status"),
    [({"action": "exit", "code": 3}, "exit status 3"), ({"action": "segfault"}, "signal: segmentation fault")],
)
def test_a_crashed_runtime_answers_runtime_exit_error(
    runner: LambdaRunner, code: Path, event: dict[str, Any], status: str
) -> None:
    spec = make_spec(code)
    result = invoke(runner, spec, event)
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: {status}",
    }
    again = invoke(runner, spec, {})
    assert again.function_error is None and json.loads(again.payload)["count"] == 1


# -- tenants and concurrency --------------------------------------------------------------------
def test_per_tenant_functions_get_one_environment_per_tenant(runner: LambdaRunner, code: Path) -> None:
    spec = make_spec(code, per_tenant=True)
    a1 = json.loads(invoke(runner, spec, {}, tenant_id="tenant-a").payload)
    b1 = json.loads(invoke(runner, spec, {}, tenant_id="tenant-b").payload)
    a2 = json.loads(invoke(runner, spec, {}, tenant_id="tenant-a").payload)
    assert (a1["tenant_id"], b1["tenant_id"], a2["tenant_id"]) == ("tenant-a", "tenant-b", "tenant-a")
    assert a1["pid"] == a2["pid"] != b1["pid"]
    assert (a1["count"], b1["count"], a2["count"]) == (1, 1, 2)  # module state is not shared
    tmp_a = json.loads(invoke(runner, spec, {"action": "tmp", "value": "a"}, tenant_id="tenant-a").payload)
    tmp_b = json.loads(invoke(runner, spec, {"action": "tmp", "value": "b"}, tenant_id="tenant-b").payload)
    assert not tmp_a["seen_before"] and not tmp_b["seen_before"] and tmp_a["tmp"] != tmp_b["tmp"]
    assert {info.key for info in runner.environments()} == {("fn", "tenant-a"), ("fn", "tenant-b")}


def test_tenant_ids_are_checked_as_lambda_does(runner: LambdaRunner, code: Path) -> None:
    missing = invoke(runner, make_spec(code, per_tenant=True), {})
    assert (missing.status_code, missing.function_error) == (400, "Unhandled")
    error = json.loads(missing.payload)
    assert error["errorType"] == "InvalidParameterValueException" and "tenant ID" in error["errorMessage"]
    extra = invoke(runner, make_spec(code), {}, tenant_id="tenant-a")
    assert extra.status_code == 400 and "Remove the tenant ID" in json.loads(extra.payload)["errorMessage"]
    assert runner.environments() == []  # refused before any environment started


def test_concurrent_invokes_run_in_distinct_environments(runner: LambdaRunner, code: Path, tmp_path: Path) -> None:
    folder = tmp_path / "rendezvous"
    folder.mkdir()
    spec = make_spec(code)
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                invoke(runner, spec, {"action": "rendezvous", "folder": str(folder), "count": 2})
            )
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    pids = {json.loads(result.payload)["pid"] for result in results}
    assert len(pids) == 2 and len(os.listdir(folder)) == 2  # both were in their handler at once
    assert len(runner.environments()) == 2


def test_beyond_the_maximum_concurrency_an_invoke_is_throttled(tmp_path: Path, code: Path) -> None:
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "runner", max_environments_per_function=1)
    try:
        spec = make_spec(code)
        release = tmp_path / "release"
        holder = threading.Thread(target=invoke, args=(runner, spec, {"action": "hold", "until": str(release)}))
        holder.start()
        assert wait_for(lambda: [i for i in runner.environments() if i.state == "busy"], timeout=10)
        throttled = invoke(runner, spec, {})
        release.touch()
        holder.join(30)
        assert throttled.status_code == 429
        assert json.loads(throttled.payload)["errorType"] == "TooManyRequestsException"
        assert invoke(runner, spec, {}).status_code == 200
    finally:
        runner.shutdown()


# -- payload limits -----------------------------------------------------------------------------
def test_payloads_over_6_mb_are_refused(runner: LambdaRunner, code: Path) -> None:
    spec = make_spec(code)
    request = invoke(runner, spec, {"pad": "x" * 6_300_000})
    assert request.status_code == 413
    assert json.loads(request.payload)["errorType"] == "RequestEntityTooLargeException"
    response = invoke(runner, spec, {"action": "big", "size": 7_000_000})
    assert response.function_error == "Unhandled"
    assert json.loads(response.payload)["errorType"] == "Function.ResponseSizeTooLarge"
    fits = invoke(runner, spec, {"action": "big", "size": 5_000_000})
    assert fits.function_error is None and len(fits.payload) == 5_000_002


# -- layers and extensions ----------------------------------------------------------------------
EXTENSION = """#!{python}
import json, os, sys, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
log = open(os.environ["EVENTS_FILE"], "a", buffering=1)
request = urllib.request.Request(api + "/register", data=json.dumps({{"events": ["INVOKE", "SHUTDOWN"]}}).encode(),
                                 headers={{"Lambda-Extension-Name": os.path.basename(sys.argv[0])}}, method="POST")
with urllib.request.urlopen(request, timeout=10) as answer:
    identifier = answer.headers["Lambda-Extension-Identifier"]
    log.write(json.dumps({{"registered": identifier, "opt": os.path.exists("/opt/python/shared.py")}}) + "\\n")
while True:
    request = urllib.request.Request(api + "/event/next", headers={{"Lambda-Extension-Identifier": identifier}})
    with urllib.request.urlopen(request, timeout=60) as answer:
        event = json.loads(answer.read())
    log.write(json.dumps(event) + "\\n")
    if event["eventType"] == "SHUTDOWN":
        sys.exit(0)
    time.sleep(0.3)  # post-invoke work: the invoke is not complete until the next call
    log.write(json.dumps({{"done": event["requestId"]}}) + "\\n")
"""


def make_layers(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "layer1", tmp_path / "layer2"
    (first / "python").mkdir(parents=True)
    (first / "python" / "shared.py").write_text("WHO = 'layer1'\n")
    (first / "python" / "only_first.py").write_text("VALUE = 1\n")
    (second / "python").mkdir(parents=True)
    (second / "python" / "shared.py").write_text("WHO = 'layer2'\n")  # the later layer wins
    (second / "extensions").mkdir()
    launcher = second / "extensions" / "recorder"
    launcher.write_text(EXTENSION.format(python=sys.executable))
    launcher.chmod(0o755)
    return first, second


LAYER_HANDLER = """
import shared, only_first
def handler(event, context):
    return {"who": shared.WHO, "first": only_first.VALUE}
"""


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("mode", ["namespace", "fallback"])
def test_an_extension_from_a_layer_gets_invoke_and_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    if mode == "namespace" and lambda_runtime.isolation_mode() != "namespace":
        pytest.skip("unshare is refused here")
    monkeypatch.setattr(lambda_runtime, "_MODE", mode)
    events_file = tmp_path / "events.jsonl"
    code = write_function(tmp_path / "code", LAYER_HANDLER)
    spec = make_spec(code, layer_dirs=make_layers(tmp_path), environment={"EVENTS_FILE": str(events_file)})
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "runner")
    try:
        result = invoke(runner, spec, {})
        assert json.loads(result.payload) == {"who": "layer2", "first": 1}
        events = read_events(events_file)
        assert events[0]["opt"] is (mode == "namespace")  # /opt exists only in the namespace
        invoke_event = next(e for e in events if e.get("eventType") == "INVOKE")
        assert invoke_event["requestId"] == result.request_id
        assert invoke_event["invokedFunctionArn"] == ARN.format("fn") and invoke_event["deadlineMs"] > 0
        # The extension handled INVOKE (Lambda answers the caller without waiting for it: poll).
        assert wait_for(lambda: {"done": result.request_id} in read_events(events_file), timeout=5)
        assert f"External agent recorder ({events[0]['registered']}) registered" in result.log_tail
        (info,) = runner.environments()
        (extension_pid,) = info.extension_pids
        assert info.mode == mode
    finally:
        runner.shutdown()
    shutdown = [e for e in read_events(events_file) if e.get("eventType") == "SHUTDOWN"]
    assert [e["shutdownReason"] for e in shutdown] == ["spindown"]
    assert not alive(extension_pid)


# -- streaming ----------------------------------------------------------------------------------
STREAM_RUNTIME = r"""
import base64, http.client, json, os, sys, time
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "argv.json"), "w") as f:
    json.dump(sys.argv, f)
while True:
    conn = http.client.HTTPConnection(api, timeout=60)
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    answer = conn.getresponse()
    event = json.loads(answer.read())
    rid = answer.headers["Lambda-Runtime-Aws-Request-Id"]
    conn.putrequest("POST", f"/2018-06-01/runtime/invocation/{rid}/response")
    conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
    conn.endheaders()
    for index, chunk in enumerate(event["chunks"]):
        if index and event.get("gate"):  # the next chunk only once the caller has seen the previous one
            deadline = time.monotonic() + 5
            while not os.path.exists(f"{event['gate']}.{index}") and time.monotonic() < deadline:
                time.sleep(0.005)
        data = chunk.encode()
        conn.send(b"%x\r\n%s\r\n" % (len(data), data))
    trailer = b""
    if event.get("error"):
        body = base64.b64encode(json.dumps({"errorType": "Function.ValueError", "errorMessage": "late"}).encode())
        trailer = b"Lambda-Runtime-Function-Error-Type: Function.ValueError\r\n"
        trailer += b"Lambda-Runtime-Function-Error-Body: " + body + b"\r\n"
    conn.send(b"0\r\n" + trailer + b"\r\n")
    reply = conn.getresponse()
    reply.read()
    with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "status"), "w") as f:
        f.write(str(reply.status))
    conn.close()
"""


@pytest.fixture()
def streaming_spec(tmp_path: Path) -> FunctionSpec:
    code = write_function(tmp_path / "stream", STREAM_RUNTIME, "stream_runtime.py")
    wrapper = code / "wrapper.sh"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$LAMBDA_TASK_ROOT/stream_runtime.py" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return make_spec(code, name="streamer", environment={"AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)}, streaming=True)


def test_a_streamed_response_reaches_the_caller_chunk_by_chunk(
    runner: LambdaRunner, streaming_spec: FunctionSpec, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    event = {"chunks": ["one ", "two ", "three"], "gate": str(gate)}
    stream = runner.invoke_stream(streaming_spec, json.dumps(event).encode())
    seen: list[tuple[bytes, float]] = []
    for index, chunk in enumerate(stream):
        seen.append((chunk, time.monotonic()))
        Path(f"{gate}.{index + 1}").touch()  # only now may the runtime send the next chunk
    assert [chunk for chunk, _ in seen] == [b"one ", b"two ", b"three"]
    assert seen[0][1] < seen[-1][1]
    assert stream.error_type is None and stream.error_body is None
    result = stream.wait(30)
    assert result is not None and result.payload == b"one two three" and result.function_error is None
    status = streaming_spec.code_dir / "status"
    assert wait_for(lambda: status.exists() and status.read_text()) == "202"  # Lambda's answer to the stream
    argv = json.loads((streaming_spec.code_dir / "argv.json").read_text())
    assert argv[1:] == [sys.executable, "-m", "awslambdaric", "app.handler"]  # the wrapper got the bootstrap


def test_error_trailers_after_the_first_byte_surface_on_the_stream(
    runner: LambdaRunner, streaming_spec: FunctionSpec
) -> None:
    stream = runner.invoke_stream(streaming_spec, json.dumps({"chunks": ["partial"], "error": True}).encode())
    assert list(stream) == [b"partial"]
    assert stream.error_type == "Function.ValueError"
    assert stream.error_body is not None
    assert json.loads(stream.error_body) == {"errorType": "Function.ValueError", "errorMessage": "late"}
    buffered = runner.invoke(streaming_spec, json.dumps({"chunks": ["a", "b"], "error": True}).encode())
    assert buffered.function_error == "Unhandled"
    assert json.loads(buffered.payload)["errorType"] == "Function.ValueError"


def test_a_stream_of_a_crashing_runtime_ends_with_the_error(runner: LambdaRunner, code: Path) -> None:
    stream = runner.invoke_stream(make_spec(code), json.dumps({"action": "exit", "code": 7}).encode())
    assert list(stream) == []
    assert stream.error_type == "Runtime.ExitError"
    assert stream.error_body is not None and "exit status 7" in stream.error_body


# -- shutdown -----------------------------------------------------------------------------------
def test_shutdown_leaves_no_process(tmp_path: Path, code: Path) -> None:
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "runner")
    layers = make_layers(tmp_path)
    invoke(runner, make_spec(code, name="a"), {})
    invoke(runner, make_spec(code, name="b", per_tenant=True), {}, tenant_id="t1")
    layered = write_function(tmp_path / "layered", LAYER_HANDLER)
    events = tmp_path / "events.jsonl"
    invoke(runner, make_spec(layered, name="c", layer_dirs=layers, environment={"EVENTS_FILE": str(events)}), {})
    infos = runner.environments()
    pids = [pid for info in infos for pid in info.pids]
    assert len(infos) == 3 and len(pids) >= 7  # 3 holders, 3 runtimes, 1 extension
    runner.shutdown()
    runner.shutdown()  # idempotent
    assert not [pid for pid in pids if alive(pid)]
    assert not [pid for info in infos for pid in _marked_pids(info.environment_id)]
    assert runner.environments() == []
    assert invoke(runner, make_spec(code, name="a"), {}).status_code == 500  # no new environments after shutdown


def test_runtime_api_refuses_answers_lambda_refuses(runner: LambdaRunner, tmp_path: Path) -> None:
    """A second answer, an unknown request id and a bad response mode get Lambda's status codes."""
    source = r"""
import http.client, json, os
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
MODE = "Lambda-Runtime-Function-Response-Mode"
def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(api, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    answer = conn.getresponse()
    data = answer.read()
    return answer, data
while True:
    answer, _ = call("GET", "/2018-06-01/runtime/invocation/next")
    rid = answer.headers["Lambda-Runtime-Aws-Request-Id"]
    base = f"/2018-06-01/runtime/invocation/{rid}"
    codes = {
        "bad_mode": call("POST", base + "/response", b"{}", {MODE: "buffered"})[0].status,
        "unknown": json.loads(call("POST", "/2018-06-01/runtime/invocation/nope/response", b"{}")[1])["errorType"],
    }
    codes["first"] = call("POST", base + "/response", json.dumps(codes).encode())[0].status
    codes["second"] = call("POST", base + "/response", b"{}")[0].status
    codes["error_after"] = call("POST", base + "/error", b"{}")[0].status
    open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "codes.json"), "w").write(json.dumps(codes))
"""
    code = write_function(tmp_path / "client", source, "client.py")
    spec = make_spec(code, runtime="provided.al2023", handler="unused")
    (code / "bootstrap").write_text(f'#!/bin/sh\nexec {sys.executable} "$LAMBDA_TASK_ROOT/client.py"\n')
    (code / "bootstrap").chmod(0o755)
    result = invoke(runner, spec, {})
    assert json.loads(result.payload) == {"bad_mode": 400, "unknown": "InvalidRequestID"}
    codes = wait_for(lambda: (code / "codes.json").exists() and json.loads((code / "codes.json").read_text()))
    assert codes == {"bad_mode": 400, "unknown": "InvalidRequestID", "first": 202, "second": 403, "error_after": 403}


# -- moto ---------------------------------------------------------------------------------------
def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16
            archive.writestr(info, text)
    return buffer.getvalue()


def test_route_moto_invoke_runs_the_deployed_code(tmp_path: Path) -> None:
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    workdir = tmp_path / "moto"
    runner = LambdaRunner(aws_env={}, workdir=workdir)
    with mock_aws():
        undo = route_moto_invoke(runner, workdir)
        try:
            iam = boto3.client("iam", region_name="us-east-1")
            role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            lam = boto3.client("lambda", region_name="us-east-1")
            common = {
                "Runtime": "python3.12",
                "Role": role,
                "Handler": "app.handler",
                "Code": {"ZipFile": zipped({"app.py": HANDLER})},
            }
            lam.create_function(FunctionName="plain", Environment={"Variables": {"MY_SETTING": "moto"}}, **common)
            lam.create_function(FunctionName="tenanted", TenancyConfig={"TenantIsolationMode": "PER_TENANT"}, **common)

            answer = lam.invoke(FunctionName="plain", Payload=b"{}", LogType="Tail")
            body = json.loads(answer["Payload"].read())
            assert answer["StatusCode"] == 200 and "FunctionError" not in answer
            assert body["env"]["MY_SETTING"] == "moto" and body["function_name"] == "plain"
            log = base64.b64decode(answer["LogResult"]).decode()
            assert f"handled 1 in {body['pid']}" in log and "REPORT RequestId" in log

            failed = lam.invoke(FunctionName="plain", Payload=json.dumps({"action": "raise"}).encode())
            assert failed["FunctionError"] == "Unhandled" and "LogResult" not in failed
            assert json.loads(failed["Payload"].read())["errorType"] == "ValueError"

            tenant = lam.invoke(FunctionName="tenanted", Payload=b"{}", TenantId="blue")
            assert json.loads(tenant["Payload"].read())["tenant_id"] == "blue"
            with pytest.raises(ClientError) as refused:
                lam.invoke(FunctionName="tenanted", Payload=b"{}")
            assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"

            folder = tmp_path / "event"
            folder.mkdir()
            event = {"action": "rendezvous", "folder": str(folder), "count": 1}
            queued = lam.invoke(FunctionName="plain", InvocationType="Event", Payload=json.dumps(event).encode())
            assert queued["StatusCode"] == 202
            assert wait_for(lambda: os.listdir(folder), timeout=15)
        finally:
            undo()
            runner.shutdown()
    from moto.awslambda.models import LambdaFunction

    assert LambdaFunction.invoke.__qualname__ == "LambdaFunction.invoke"  # undone


def test_spec_from_moto_keeps_file_modes_and_caches_by_digest(tmp_path: Path) -> None:
    data = zipped({"bootstrap": "#!/bin/sh\n", "pkg/mod.py": "X = 1\n"})
    first = lambda_runtime._unzip(data, tmp_path)
    assert first.name == __import__("hashlib").sha256(data).hexdigest()
    assert (first / "bootstrap").stat().st_mode & 0o111 and (first / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert lambda_runtime._unzip(data, tmp_path) == first


def test_signal_text_matches_lambdas() -> None:
    assert lambda_runtime._exit_text(-signal.SIGKILL) == "signal: killed"
    assert lambda_runtime._exit_text(2) == "exit status 2"


def test_environments_die_with_the_process_that_started_them(tmp_path: Path, code: Path) -> None:
    """A runner killed outright (SIGKILL: no shutdown) leaves no environment behind."""
    script = f"""
import json, sys
from pathlib import Path
from cdk_serverless_patterns.local.lambda_runtime import FunctionSpec, LambdaRunner
runner = LambdaRunner(aws_env={{}}, workdir=Path({str(tmp_path / "orphans")!r}))
spec = FunctionSpec(name="fn", arn="arn:aws:lambda:us-east-1:1:function:fn", handler="app.handler",
                    runtime="python3.12", code_dir=Path({str(code)!r}))
runner.invoke(spec, b"{{}}")
print(json.dumps([pid for info in runner.environments() for pid in info.pids]), flush=True)
sys.stdin.read()
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
    finally:
        parent.kill()
        parent.wait(10)
    assert wait_for(lambda: not any(alive(pid) for pid in pids), timeout=10)
