"""LocalCloud under faults, without a CDK deployment (functions created through the API): Ctrl-C
while starting, close() with invokes in flight. Each test starts its own cloud (one per process)."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cdk_serverless_patterns.local import cloud as cloud_module
from cdk_serverless_patterns.local.cloud import LocalCloud
from cdk_serverless_patterns.local.lambda_environment import wait_for

SLEEPER = r"""
import os, time

def handler(event, context):
    open(os.path.join(os.environ["MARKS"], str(os.getpid())), "w").close()
    time.sleep(event.get("seconds", 0))
    return {"pid": os.getpid()}
"""


def _function(cloud: LocalCloud, name: str, marks: Path, *, broken: bool = False) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", SLEEPER)
    code = buffer.getvalue()[:-30] if broken else buffer.getvalue()
    session = cloud.session()
    role = session.client("iam").create_role(RoleName=f"r-{name}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    session.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Timeout=120,
        Code={"ZipFile": code},
        Environment={"Variables": {"MARKS": str(marks)}},
    )


def _environment_pids(tmp_path: Path) -> list[int]:
    """Processes whose environment names a folder under ``tmp_path`` (the cloud's workdir)."""
    needle = str(tmp_path).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_ctrl_c_while_starting_undoes_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: a KeyboardInterrupt between the moto server's start and the runner's left the server
    running and the cloud registered: no other LocalCloud could start in this process."""
    import logging

    from moto.core.config import default_user_config

    before = dict(default_user_config.get("stepfunctions", {}))
    filters = list(logging.getLogger("moto").filters)
    real = cloud_module.urllib.request.urlopen

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(cloud_module.urllib.request, "urlopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        LocalCloud(workdir=tmp_path / "first", log=lambda line: None).start()
    monkeypatch.setattr(cloud_module.urllib.request, "urlopen", real)
    assert dict(default_user_config.get("stepfunctions", {})) == before  # moto's config restored
    assert list(logging.getLogger("moto").filters) == filters  # and its logger
    with LocalCloud(workdir=tmp_path / "second", log=lambda line: None) as cloud:  # the process is free again
        assert cloud.session().client("sqs").list_queues().get("QueueUrls", []) == []


def test_close_with_invokes_in_flight_is_quick_and_leaves_no_process(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    cloud = LocalCloud(workdir=tmp_path / "cloud", log=lambda line: None).start()
    answers: list[Any] = []
    try:
        _function(cloud, "sleeper", marks)
        lam = cloud.session().client("lambda")
        lam.invoke(FunctionName="sleeper", InvocationType="Event", Payload=json.dumps({"seconds": 100}).encode())

        def sync() -> None:
            from botocore.config import Config

            client = cloud.session().client("lambda", config=Config(read_timeout=120, retries={"max_attempts": 0}))
            try:
                answers.append(client.invoke(FunctionName="sleeper", Payload=json.dumps({"seconds": 100}).encode()))
            except Exception as error:  # the endpoint going away is an answer too
                answers.append(error)

        caller = threading.Thread(target=sync)
        caller.start()
        wait_for(lambda: len(list(marks.iterdir())) == 2, timeout=20)
        assert _environment_pids(tmp_path)
    finally:
        started = time.monotonic()
        cloud.close()
        closing = time.monotonic() - started
    caller.join(20)
    assert not caller.is_alive() and len(answers) == 1  # the caller got an answer, not a hang
    assert closing < 4, closing
    assert wait_for(lambda: not _environment_pids(tmp_path), timeout=10)


def test_a_function_whose_zip_is_broken_answers_an_error_through_every_path(tmp_path: Path) -> None:
    """Defect: LocalCloud.invoke (and the front door behind it) raised BadZipFile from the unzip."""
    from botocore.exceptions import ClientError

    with LocalCloud(workdir=tmp_path / "cloud", log=lambda line: None) as cloud:
        _function(cloud, "broken", tmp_path, broken=True)
        result = cloud.invoke("broken", {})
        assert result.status_code == 502 and result.json()["errorType"] == "InvalidZipFileException"
        with pytest.raises(ClientError) as refused:
            cloud.session().client("lambda").invoke(FunctionName="broken", Payload=b"{}")
        assert refused.value.response["Error"]["Code"] == "InvalidZipFileException"
