"""Attacks on the Lambda runner, as an outside user would make them: faults, hostile code, races.

Each test runs real processes (and moto in-process where the Invoke API is involved) and asserts
what Lambda does (answers, error types, no process left behind). The regression tests of the
defects the review found are marked with the defect in their docstring.
"""

from __future__ import annotations

import io
import json
import os
import signal
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
from cdk_serverless_patterns.local.lambda_runtime import FunctionSpec, LambdaRunner, _marked_pids, merge_layers

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"

pytestmark = pytest.mark.slow

ATTACKS = r"""
import os, subprocess, sys, time
STARTED = time.time()
if os.environ.get("SLOW_INIT"):
    time.sleep(float(os.environ["SLOW_INIT"]))

def handler(event, context):
    action = event.get("action")
    if action == "remaining":
        return {"remaining_ms": context.get_remaining_time_in_millis()}
    if action == "pid":
        return {"pid": os.getpid()}
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "logs":
        line = "x" * 1023 + "\n"
        for _ in range(event["kb"]):
            sys.stdout.write(line)
        sys.stdout.flush()
        print("LAST LINE")
        return {"done": True}
    if action == "orphan":  # a child that leaves the process group and drops the environment
        child = subprocess.Popen(["/bin/sleep", "300"], start_new_session=True, env={},
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {"child": child.pid}
    if action == "child":  # a child that outlives the invoke, in the process group
        child = subprocess.Popen(["/bin/sleep", "300"])
        return {"child": child.pid}
    return {"ok": True}
"""


def write_function(folder: Path, source: str, name: str = "app.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(source)
    return folder


def make_spec(code: Path, name: str = "fn", **kwargs: Any) -> FunctionSpec:
    settings: dict[str, Any] = {"handler": "app.handler", "runtime": "python3.12", "timeout": 10.0, **kwargs}
    return FunctionSpec(name=name, arn=ARN.format(name), code_dir=code, **settings)


def invoke(runner: LambdaRunner, spec: FunctionSpec, event: dict[str, Any], **kwargs: Any) -> Any:
    return runner.invoke(spec, json.dumps(event).encode(), **kwargs)


def alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture()
def runner(tmp_path: Path) -> Iterator[LambdaRunner]:
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "runner")
    try:
        yield runner
    finally:
        envs = runner.environments()
        runner.shutdown(timeout=1.0)
        for info in envs:
            assert not _marked_pids(info.environment_id), info


@pytest.fixture()
def code(tmp_path: Path) -> Path:
    return write_function(tmp_path / "code", ATTACKS)


# -- hostile handlers -----------------------------------------------------------------------------
def test_a_runtime_sigkilled_mid_invoke_answers_exit_error_and_the_next_invoke_is_cold(
    runner: LambdaRunner, code: Path
) -> None:
    spec = make_spec(code)
    pid = invoke(runner, spec, {"action": "pid"}).json()["pid"]
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(invoke(runner, spec, {"action": "sleep", "seconds": 30})))
    thread.start()
    wait_for(lambda: runner.environments()[0].state == "busy", timeout=5)
    os.kill(pid, signal.SIGKILL)
    thread.join(10)
    (result,) = done
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Runtime.ExitError"
    assert result.json()["errorMessage"].endswith("Runtime exited with error: signal: killed")
    again = invoke(runner, spec, {"action": "pid"})
    assert again.init_ms is not None and again.json()["pid"] != pid


def test_ten_megabytes_of_logs_keep_the_tail_and_the_invoke_fast(runner: LambdaRunner, code: Path) -> None:
    spec = make_spec(code)
    started = time.monotonic()
    result = invoke(runner, spec, {"action": "logs", "kb": 10 * 1024})
    assert result.json() == {"done": True}
    assert time.monotonic() - started < 10
    assert len(result.log_tail.encode()) <= lambda_runtime.TAIL_BYTES
    assert "LAST LINE" in result.log_tail and "REPORT RequestId" in result.log_tail
    (info,) = runner.environments()
    assert info.log_path.stat().st_size > 10 * 1024 * 1024  # everything went to the environment's log


def test_a_child_that_outlives_the_invoke_dies_with_the_environment(runner: LambdaRunner, code: Path) -> None:
    spec = make_spec(code)
    child = invoke(runner, spec, {"action": "child"}).json()["child"]
    assert alive(child)
    assert invoke(runner, spec, {"action": "pid"}).json()["pid"]  # the warm environment still answers
    runner.shutdown(timeout=1.0)
    assert wait_for(lambda: not alive(child), timeout=5)


def test_a_daemon_that_leaves_the_group_and_drops_its_environment_is_killed(runner: LambdaRunner, code: Path) -> None:
    """Defect: a child in a new session with an empty environment escaped the reaping (namespace mode)."""
    if lambda_runtime.isolation_mode() != "namespace":
        pytest.skip("only a mount namespace identifies such a process")
    child = invoke(runner, make_spec(code), {"action": "orphan"}).json()["child"]
    assert alive(child)
    runner.shutdown(timeout=1.0)
    assert wait_for(lambda: not alive(child), timeout=5)


def test_twenty_concurrent_invokes_all_answer(tmp_path: Path, code: Path) -> None:
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "runner20", max_environments_per_function=20)
    spec = make_spec(code)
    results: list[Any] = []
    lock = threading.Lock()

    def one() -> None:
        result = invoke(runner, spec, {"action": "sleep", "seconds": 0.3})
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one) for _ in range(20)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 20
        assert all(r.status_code == 200 and r.function_error is None for r in results), results
        assert len(runner.environments()) > 1
    finally:
        envs = runner.environments()
        runner.shutdown(timeout=1.0)
    assert not any(_marked_pids(info.environment_id) for info in envs)


def test_concurrency_beyond_the_limit_is_throttled_never_hung(tmp_path: Path, code: Path) -> None:
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "runner3", max_environments_per_function=3)
    spec = make_spec(code)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(invoke(runner, spec, {"action": "sleep", "seconds": 0.5})))
        for _ in range(8)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        codes = sorted(r.status_code for r in results)
        assert len(codes) == 8 and codes.count(200) >= 3 and set(codes) <= {200, 429}
        assert all(r.json()["errorType"] == "TooManyRequestsException" for r in results if r.status_code == 429)
    finally:
        runner.shutdown(timeout=1.0)


def test_remaining_time_does_not_count_the_init_phase(runner: LambdaRunner, code: Path) -> None:
    """Defect: Lambda-Runtime-Deadline-Ms was set before the init phase, so a slow init ate the function's time."""
    spec = make_spec(code, timeout=3.0, environment={"SLOW_INIT": "1.5"})
    result = invoke(runner, spec, {"action": "remaining"})
    assert result.init_ms is not None and result.init_ms >= 1500
    assert result.json()["remaining_ms"] > 2500


def test_non_json_payload_is_refused_as_lambda_refuses_it(runner: LambdaRunner, code: Path) -> None:
    """Defect: a payload that is not JSON reached the runtime (Runtime.UnmarshalError) instead of a 400."""
    result = runner.invoke(make_spec(code), b"not json")
    assert result.status_code == 400
    assert result.json()["errorType"] == "InvalidRequestContentException"
    assert runner.environments() == []  # refused before any environment started
    assert runner.invoke(make_spec(code), b"").status_code == 200  # an empty payload is the empty event


# -- extensions misbehaving -----------------------------------------------------------------------
EXTENSION = r"""#!{python}
import json, os, sys, time, urllib.request
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
mode = os.environ.get("EXT_MODE", "")
request = urllib.request.Request(f"http://{{api}}/2020-01-01/extension/register", method="POST",
    data=json.dumps({{"events": ["INVOKE", "SHUTDOWN"]}}).encode(),
    headers={{"Lambda-Extension-Name": os.path.basename(sys.argv[0])}})
ident = urllib.request.urlopen(request).headers["Lambda-Extension-Identifier"]
while True:
    nxt = urllib.request.Request(f"http://{{api}}/2020-01-01/extension/event/next",
                                 headers={{"Lambda-Extension-Identifier": ident}})
    event = json.loads(urllib.request.urlopen(nxt, timeout=300).read())
    if event["eventType"] == "INVOKE" and mode == "hang-invoke":
        time.sleep(300)
    if event["eventType"] == "INVOKE" and mode == "crash-invoke":
        os._exit(3)
    if event["eventType"] == "SHUTDOWN":
        if mode == "hang-shutdown":
            time.sleep(300)
        break
"""


def extension_layer(tmp_path: Path) -> Path:
    layer = tmp_path / "layer"
    (layer / "extensions").mkdir(parents=True)
    path = layer / "extensions" / "attacker"
    path.write_text(EXTENSION.format(python=sys.executable))
    path.chmod(0o755)
    return layer


def test_an_extension_that_never_calls_next_does_not_hold_the_answer(runner: LambdaRunner, tmp_path: Path) -> None:
    """Defect: the caller waited for every extension's next call, so an extension that never called
    it turned the function's answer into Sandbox.Timedout. Lambda returns the runtime's response
    even while extensions run; the environment stays busy and is reset at the timeout."""
    code = write_function(tmp_path / "code", ATTACKS)
    environment = {"EXT_MODE": "hang-invoke"}
    spec = make_spec(code, timeout=1.0, layer_dirs=(extension_layer(tmp_path),), environment=environment)
    started = time.monotonic()
    result = invoke(runner, spec, {"action": "pid"})
    assert time.monotonic() - started < 0.9  # answered before the timeout
    assert result.function_error is None
    pid = result.json()["pid"]
    (info,) = runner.environments()
    assert info.state == "busy"  # its extension is still working
    second = invoke(runner, spec, {"action": "pid"})  # meanwhile another environment answers
    assert second.json()["pid"] != pid
    # At the timeout the busy environment is shut down (SHUTDOWN reason timeout), as Lambda resets it.
    assert wait_for(lambda: not alive(pid), timeout=5)


def test_an_extension_crashing_mid_invoke_is_an_extension_crash(runner: LambdaRunner, tmp_path: Path) -> None:
    code = write_function(tmp_path / "code", ATTACKS)
    layer = extension_layer(tmp_path)
    spec = make_spec(code, layer_dirs=(layer,), environment={"EXT_MODE": "crash-invoke"})
    result = invoke(runner, spec, {})
    assert result.function_error == "Unhandled" and result.json()["errorType"] == "Extension.Crash"
    assert invoke(runner, spec, {"action": "pid"}).init_ms is not None  # the next invoke is cold


def test_an_extension_hanging_on_shutdown_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    code = write_function(tmp_path / "code", ATTACKS)
    layer = extension_layer(tmp_path)
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "runner")
    spec = make_spec(code, layer_dirs=(layer,), environment={"EXT_MODE": "hang-shutdown"})
    assert invoke(runner, spec, {}).json() == {"ok": True}
    (info,) = runner.environments()
    started = time.monotonic()
    runner.shutdown(timeout=1.0)
    assert time.monotonic() - started < 4
    assert not _marked_pids(info.environment_id)


# -- layers ---------------------------------------------------------------------------------------
def test_conflicting_layers_merge_without_touching_the_cached_layers(tmp_path: Path) -> None:
    """Defect: merging hard-linked the first layer's file, then copied the second over it: the
    first layer's cached copy (shared with every function using it) was overwritten."""
    first, second = tmp_path / "l1", tmp_path / "l2"
    for layer, text in ((first, "one"), (second, "two")):
        (layer / "python").mkdir(parents=True)
        (layer / "python" / "conflict.py").write_text(f"WHO = {text!r}\n")
        (layer / "python" / f"only_{text}.py").write_text("")
    os.symlink("conflict.py", first / "python" / "alias.py")
    os.symlink("only_two.py", second / "python" / "alias.py")
    (first / "python" / "shape").mkdir()  # a folder in one layer, a file in the next
    (second / "python" / "shape").write_text("file")
    merged = merge_layers((first, second), tmp_path / "opt")
    assert (merged / "python" / "conflict.py").read_text() == "WHO = 'two'\n"
    assert (first / "python" / "conflict.py").read_text() == "WHO = 'one'\n"  # the cache is intact
    assert os.readlink(merged / "python" / "alias.py") == "only_two.py"
    assert (merged / "python" / "shape").read_text() == "file"
    assert {p.name for p in (merged / "python").iterdir()} >= {"only_one.py", "only_two.py"}


# -- races with shutdown --------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["_check", "_acquire"])
def test_an_invoke_racing_shutdown_leaves_no_environment(tmp_path: Path, code: Path, stage: str) -> None:
    """Defect: an invoke that passed its checks (or took a cold environment) just before shutdown()
    started an environment nobody would stop."""
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "race")
    original = getattr(runner, stage)

    def racing(*args: Any) -> Any:
        value = original(*args)
        runner.shutdown(timeout=1.0)
        return value

    setattr(runner, stage, racing)
    result = invoke(runner, make_spec(code), {"action": "pid"})
    assert result.function_error == "Unhandled"
    assert result.status_code == 500 if stage == "_check" else result.init_failed
    assert wait_for(lambda: not _envs_alive(tmp_path), timeout=5)


def _envs_alive(tmp_path: Path) -> list[int]:
    """Processes of any environment under ``tmp_path`` (by their TMPDIR)."""
    needle = f"TMPDIR={tmp_path}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_shutdown_while_invokes_are_in_flight_answers_them_and_leaves_nothing(tmp_path: Path, code: Path) -> None:
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "inflight")
    spec = make_spec(code, timeout=60.0)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(invoke(runner, spec, {"action": "sleep", "seconds": 60})))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: sum(info.state == "busy" for info in runner.environments()) == 3, timeout=10)
    started = time.monotonic()
    runner.shutdown(timeout=1.0)
    for thread in threads:
        thread.join(10)
    assert time.monotonic() - started < 8
    assert len(results) == 3 and all(r.function_error == "Unhandled" for r in results)
    assert not _envs_alive(tmp_path)
    assert invoke(runner, spec, {}).status_code == 500  # a shut-down runner refuses


# -- the Invoke API through moto ------------------------------------------------------------------
def test_a_broken_code_zip_is_an_invalid_zip_error_not_a_server_error(tmp_path: Path) -> None:
    """Defect: a code zip that does not unzip raised BadZipFile inside moto (HTTP 500 with a traceback)."""
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    from cdk_serverless_patterns.local.lambda_runtime import route_moto_invoke

    workdir = tmp_path / "moto"
    runner = LambdaRunner(aws_env={}, workdir=workdir)
    with mock_aws():
        undo = route_moto_invoke(runner, workdir)
        try:
            role = boto3.client("iam", region_name="us-east-1").create_role(
                RoleName="r", AssumeRolePolicyDocument="{}"
            )["Role"]["Arn"]
            lam = boto3.client("lambda", region_name="us-east-1")
            good = zipped({"app.py": ATTACKS})
            common = {"Runtime": "python3.12", "Role": role, "Handler": "app.handler"}
            lam.create_function(FunctionName="broken", Code={"ZipFile": good[: len(good) // 2]}, **common)
            with pytest.raises(ClientError) as refused:
                lam.invoke(FunctionName="broken", Payload=b"{}")
            assert refused.value.response["Error"]["Code"] == "InvalidZipFileException"
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
            lam.create_function(FunctionName="good", Code={"ZipFile": good}, **common)
            with pytest.raises(ClientError) as not_json:
                lam.invoke(FunctionName="good", Payload=b"{oops")
            assert not_json.value.response["Error"]["Code"] == "InvalidRequestContentException"
        finally:
            undo()
            runner.shutdown(timeout=1.0)


WRITE_OPT = r"""
import errno

def handler(event, context):
    try:
        open("/opt/python/mine.py", "w").write("overwritten")
    except OSError as error:
        return {"errno": errno.errorcode[error.errno]}
    return {"errno": None}
"""


def test_opt_is_read_only_as_in_lambda(runner: LambdaRunner, tmp_path: Path) -> None:
    """Defect: /opt was writable: a handler could overwrite the layer cache shared by every function."""
    if lambda_runtime.isolation_mode() != "namespace":
        pytest.skip("/opt exists only in namespace mode")
    layer = tmp_path / "layer"
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "mine.py").write_text("X = 1\n")
    code = write_function(tmp_path / "code", WRITE_OPT)
    assert invoke(runner, make_spec(code, layer_dirs=(layer,)), {}).json() == {"errno": "EROFS"}
    assert (layer / "python" / "mine.py").read_text() == "X = 1\n"


@pytest.mark.parametrize("stage", ["init", "invoke"])
def test_ctrl_c_during_an_invoke_ends_its_environment(tmp_path: Path, stage: str) -> None:
    """A real SIGINT while the caller waits (in the init phase, or in the handler): KeyboardInterrupt
    reaches the caller at once and the environment's processes are gone."""
    code = write_function(tmp_path / "code", ATTACKS)
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "ctrl-c")
    environment = {"SLOW_INIT": "5"} if stage == "init" else {}
    spec = make_spec(code, timeout=30.0, environment=environment)
    timer = threading.Timer(0.8, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            invoke(runner, spec, {"action": "sleep", "seconds": 30})
        assert time.monotonic() - started < 5
        assert wait_for(lambda: not _envs_alive(tmp_path), timeout=5)
    finally:
        timer.cancel()
        runner.shutdown(timeout=1.0)
