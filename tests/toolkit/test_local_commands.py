"""``serverless-patterns local up|redeploy|down``: a real emulator in a subprocess, in a project of its own.

The project is a temporary folder with a small CDK app (one queue and an output), a cdk.json and the
repository's node_modules linked in (where a user's project has its CLI). Everything is judged by
state: the state file, what the emulator's endpoint answers, which processes exist.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from cdk_serverless_patterns.local.lambda_environment import wait_for
from cdk_serverless_patterns.toolkit import local_commands

ROOT = Path(__file__).resolve().parents[2]
STACK = "LocalUpTest"
APP = textwrap.dedent(
    f"""
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs

    app = cdk.App()
    stack = cdk.Stack(app, "{STACK}")
    queue = sqs.Queue(stack, "Queue")
    cdk.CfnOutput(stack, "QueueUrl", value=queue.queue_url)
    app.synth()
    """
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("local-project")
    (folder / "app.py").write_text(APP)
    (folder / "cdk.json").write_text(json.dumps({"app": f"{sys.executable} app.py"}))
    (folder / "node_modules").symlink_to(ROOT / "node_modules")
    return folder


def cli(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdk_serverless_patterns", "local", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _age(pid: int) -> float:
    """Seconds since ``pid`` started (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return 0.0
    started = int(stat[stat.rfind(")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")
    return uptime - started


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


@pytest.fixture()
def up_process(project: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    log = tmp_path / "up.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cdk_serverless_patterns", "local", "up", "--app", "app.py"],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the test can stop the whole tree if it fails half-way
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        (project / local_commands.STATE_DIR / local_commands.STATE_FILE).unlink(missing_ok=True)


def client(endpoint: str, service: str) -> Any:
    import boto3

    return cast(Any, boto3).client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_up_serves_the_app_redeploys_it_and_down_leaves_nothing(
    project: Path, up_process: tuple[subprocess.Popen[str], Path]
) -> None:
    process, log = up_process
    state_file = project / local_commands.STATE_DIR / local_commands.STATE_FILE

    def ready() -> dict[str, Any] | None:
        if process.poll() is not None:
            raise AssertionError(f"local up exited {process.returncode}:\n{log.read_text()[-3000:]}")
        state = local_commands.read_state(state_file)
        return state if state and state.get("status") == "ready" else None

    state = wait_for(ready, timeout=240, interval=0.2)
    assert state, f"local up never became ready:\n{log.read_text()[-3000:]}"
    assert state["pid"] == process.pid and state["stacks"] == [STACK]
    endpoint = state["endpoint"]
    assert endpoint == f"http://localhost:{state['port']}"
    [stack] = client(endpoint, "cloudformation").describe_stacks(StackName=STACK)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    sqs = client(endpoint, "sqs")
    [queue] = sqs.list_queues()["QueueUrls"]
    sqs.send_message(QueueUrl=queue, MessageBody="before the redeploy")

    # redeploy: destroy and recreate (moto cannot update), so the queue is a new, empty one.
    redeployed = cli(project, "redeploy")
    assert redeployed.returncode == 0, redeployed.stderr
    state = local_commands.read_state(state_file)
    assert state is not None and state["deployments"] == 2 and state["status"] == "ready"
    [new_queue] = sqs.list_queues()["QueueUrls"]
    assert new_queue != queue
    assert sqs.receive_message(QueueUrl=new_queue, WaitTimeSeconds=0).get("Messages", []) == []

    tree = descendants(process.pid)
    stopped = cli(project, "down", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert process.wait(timeout=30) == 0
    assert not state_file.exists()
    assert [pid for pid in tree if alive(pid)] == []
    with socket.socket() as sock:  # nothing listens on the port any more (TIME_WAIT connections may remain)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", state["port"]))

    again = cli(project, "down")
    assert again.returncode == 0 and "no local emulator is running" in again.stdout
    assert cli(project, "status").returncode == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_deploy_stops_everything(
    project: Path, up_process: tuple[subprocess.Popen[str], Path], signum: int
) -> None:
    """Ctrl-C (or SIGTERM) while the CDK CLI deploys: a non-zero exit, no process and no state file left."""
    process, log = up_process
    state_file = project / local_commands.STATE_DIR / local_commands.STATE_FILE

    def cli_running() -> set[int]:
        """The process tree once the CDK CLI has run for a second (a user's Ctrl-C, not one that lands while
        Python is still inside Popen starting it)."""
        if process.poll() is not None:
            raise AssertionError(f"local up exited {process.returncode}:\n{log.read_text()[-3000:]}")
        tree = descendants(process.pid)
        nodes = [pid for pid in tree if _command(pid).startswith(b"node")]
        return tree if state_file.exists() and any(_age(pid) >= 1.0 for pid in nodes) else set()

    tree = wait_for(cli_running, timeout=120, interval=0.05)
    assert tree, f"the CDK CLI never ran:\n{log.read_text()[-3000:]}"
    process.send_signal(signum)
    assert process.wait(timeout=60) == 130
    left = wait_for(lambda: not [pid for pid in tree if alive(pid)], timeout=10)
    assert left, [(pid, _command(pid)[:200]) for pid in tree if alive(pid)]
    assert not state_file.exists()
    assert "interrupted" in log.read_text()


def test_up_on_a_taken_port_is_one_line_and_non_zero(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli(project, "up", "--app", "app.py", "--port", str(port), timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} is taken" in lines[0], result.stderr
    assert not (project / local_commands.STATE_DIR / local_commands.STATE_FILE).exists()


def test_a_stack_that_fails_to_create_is_one_line_naming_the_resource(project: Path) -> None:
    broken = APP.replace(
        "app.synth()",
        'cdk.CfnResource(stack, "Broken", type="AWS::DynamoDB::Table", properties={"KeySchema": '
        '[{"AttributeName": "missing", "KeyType": "HASH"}], "AttributeDefinitions": []})\napp.synth()',
    )
    (project / "broken.py").write_text(broken)
    result = cli(project, "up", "--app", "broken.py", timeout=240)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"stack {STACK} failed: resource Broken (AWS::DynamoDB::Table)" in lines[0], lines
    assert not (project / local_commands.STATE_DIR / local_commands.STATE_FILE).exists()
    leftovers = [
        entry.name
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and str(project).encode() in _command(int(entry.name))
    ]
    assert leftovers == []


def test_redeploy_and_status_without_an_emulator(project: Path) -> None:
    result = cli(project, "redeploy")
    assert result.returncode != 0 and "no local emulator is running" in result.stderr
    assert cli(project, "status").returncode == 1


def test_a_stale_state_file_is_never_signalled(tmp_path: Path) -> None:
    """A pid that now belongs to another process (different start time) is not ours: down removes the file."""
    state_file = tmp_path / local_commands.STATE_FILE
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state_file.write_text(json.dumps({"pid": sleeper.pid, "processStart": "1", "endpoint": "x"}))
        assert local_commands.read_state(state_file) is None
        assert local_commands.down(state_file) == 0
        assert sleeper.poll() is None and not state_file.exists()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)


def test_context_pairs_are_parsed_or_refused() -> None:
    from cdk_serverless_patterns.toolkit.apps import ToolkitError

    assert local_commands.parse_context(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ToolkitError, match="KEY=VALUE"):
        local_commands.parse_context(["novalue"])
