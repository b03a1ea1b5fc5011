"""The toolkit as a new user has it: the wheel installed into a fresh venv, a project of their own in a folder
outside this checkout, no node_modules there. ``synth``, ``check``, ``deploy`` and ``local`` find the user's
app (cdk.json's "app", run as is) and a compatible CDK CLI (on PATH, or the pinned one from the per-user
cache), with no part of the checkout on the path.

The venv: see wheel_venv.py (pip install --no-deps of the wheel; the dependencies through a .pth entry
naming the dev venv's site-packages, offline). The CDK CLI: this checkout's node_modules/aws-cdk stands
in for one the user has (a ``cdk`` shim on PATH, or the cache folder), so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from wheel_venv import ROOT, WheelVenv

from cdk_serverless_patterns.local.lambda_environment import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("node") is None or not (ROOT / "node_modules" / "aws-cdk" / "bin" / "cdk").exists(),
        reason="needs Node and the pinned CLI (make test installs them)",
    ),
]

REPO_CLI = ROOT / "node_modules" / "aws-cdk"
PINNED = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]

APP = """
import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

from cdk_serverless_patterns import CircuitBreaker
from cdk_serverless_patterns.core import acknowledge

app = cdk.App()
stack = cdk.Stack(app, "UserOrders")
function = lambda_.Function(
    stack, "Orders", runtime=lambda_.Runtime.PYTHON_3_14, handler="index.handler", memory_size=256,
    timeout=cdk.Duration.seconds(10), tracing=lambda_.Tracing.ACTIVE,
    code=lambda_.Code.from_inline("def handler(event, context):\\n    return {'ok': True}\\n"),
)
breaker = CircuitBreaker(stack, "Breaker")
breaker.add_circuit("stock", health_check_url="https://stock.example.com/health")
breaker.protect(function)
if stack.node.try_get_context("acknowledge") != "no":
    acknowledge(function, "the managed basic execution role: only the function's own logs",
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]")
    acknowledge(function, "X-Ray's trace actions take no resource-level permission", "AwsSolutions-IAM5[Resource::*]")
    acknowledge(function, "invoked synchronously: its caller receives every error", "Serverless-LambdaDLQ")
    acknowledge(stack, "CDK lists a function's role in DependsOn beside its GetAtt", "W3005")
app.synth()
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user-project")
    assert not folder.is_relative_to(ROOT)
    (folder / "app.py").write_text(APP)
    (folder / "cdk.json").write_text(json.dumps({"app": "python app.py"}))  # `python`: the venv's, on PATH
    return folder


def tools(folder: Path, *, cdk: str | None = None) -> Path:
    """A bin folder with node and, if given, a ``cdk`` script."""
    folder.mkdir(parents=True, exist_ok=True)
    node = shutil.which("node")
    assert node is not None
    if not (folder / "node").exists():
        (folder / "node").symlink_to(node)
    if cdk is not None:
        (folder / "cdk").write_text(cdk)
        (folder / "cdk").chmod(0o755)
    return folder


def command(
    venv: WheelVenv, project: Path, *args: str, path: list[Path], cache: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """``serverless-patterns ARGS`` run from the user's project with only ``path`` (and the venv) on PATH."""
    environment = venv.env(CDK_SERVERLESS_PATTERNS_CACHE=str(cache), **env)
    environment["PATH"] = os.pathsep.join([str(venv.bin), *(str(p) for p in path), "/usr/bin", "/bin"])
    environment.pop("CDK_OUTDIR", None)
    return subprocess.run(
        ["serverless-patterns", *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def test_the_command_and_the_package_come_from_the_wheel(installed_wheel: WheelVenv, project: Path) -> None:
    probe = (
        "import json, cdk_serverless_patterns as p\n"
        "from cdk_serverless_patterns.toolkit import apps, cdk_cli_install as c\n"
        "print(json.dumps({'file': p.__file__, 'repository': str(apps.repository_root()), 'pinned': c.PINNED_VERSION}))"
    )
    result = subprocess.run(
        [str(installed_wheel.python), "-c", probe],
        cwd=project,
        env=installed_wheel.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout)
    assert Path(report["file"]).is_relative_to(installed_wheel.site)
    assert report["repository"] == "None"  # no sample-app fallback outside the repository
    assert report["pinned"] == PINNED  # the pinned CLI version ships in the wheel
    help_text = subprocess.run(
        [str(installed_wheel.bin / "serverless-patterns"), "--help"],
        env=installed_wheel.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for name in ("synth", "check", "deploy", "local", "demo", "circuit"):
        assert name in help_text


def test_synth_runs_cdk_json_s_app_with_a_compatible_cdk_on_path(
    installed_wheel: WheelVenv, project: Path, tmp_path: Path
) -> None:
    shim = tools(tmp_path / "bin", cdk=f'#!/bin/sh\nexec node {REPO_CLI}/bin/cdk "$@"\n')
    cache = tmp_path / "cache"
    result = command(installed_wheel, project, "synth", "-o", str(tmp_path / "out"), path=[shim], cache=cache)
    assert result.returncode == 0, result.stderr
    template = json.loads((tmp_path / "out" / "UserOrders.template.json").read_text())
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert {"AWS::DynamoDB::Table", "AWS::Lambda::LayerVersion", "AWS::Lambda::Function"} <= types
    orders = next(r for r in template["Resources"].values() if r["Properties"].get("Handler") == "index.handler")
    assert orders["Properties"]["Environment"]["Variables"]["CIRCUIT_BREAKER_CIRCUITS"] == "stock"
    assert not cache.exists(), "a compatible CLI was on PATH: nothing is installed"


def test_synth_uses_the_pinned_cli_from_the_per_user_cache(
    installed_wheel: WheelVenv, project: Path, tmp_path: Path
) -> None:
    node_only = tools(tmp_path / "bin")
    cache = tmp_path / "cache"
    cached = cache / "cdk-cli" / PINNED / "node_modules"
    cached.mkdir(parents=True)
    (cached / "aws-cdk").symlink_to(REPO_CLI)  # as `npm install --prefix <cache>/cdk-cli/<ver>` leaves it
    result = command(installed_wheel, project, "synth", "-o", str(tmp_path / "out"), path=[node_only], cache=cache)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "UserOrders.template.json").exists()
    assert "installing the CDK CLI" not in result.stderr


def test_without_a_cli_and_npm_synth_prints_the_command_to_run(
    installed_wheel: WheelVenv, project: Path, tmp_path: Path
) -> None:
    node_only = tools(tmp_path / "bin")
    environment = installed_wheel.env(CDK_SERVERLESS_PATTERNS_CACHE=str(tmp_path / "cache"))
    environment["PATH"] = os.pathsep.join([str(installed_wheel.bin), str(node_only)])  # no /usr/bin: no npm
    result = subprocess.run(
        [str(installed_wheel.bin / "serverless-patterns"), "synth"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"run npm install --prefix {tmp_path / 'cache'}/cdk-cli/{PINNED} aws-cdk@{PINNED}" in line


def test_check_in_the_users_project(installed_wheel: WheelVenv, project: Path, tmp_path: Path) -> None:
    clean = command(installed_wheel, project, "check", path=[], cache=tmp_path / "cache")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert re.search(r"0 blocking error\(s\) .*, 0 warning\(s\)", clean.stdout), clean.stdout

    unacknowledged = tmp_path / "unacknowledged"
    unacknowledged.mkdir()
    (unacknowledged / "app.py").write_text(APP.replace('!= "no"', '== "yes"'))
    findings = command(installed_wheel, unacknowledged, "check", path=[], cache=tmp_path / "cache")
    assert findings.returncode == 1
    printed = set(re.findall(r'acknowledge\(<that construct or a parent>, "<why>", "(.+)"\)', findings.stdout))
    assert printed == {
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "AwsSolutions-IAM5[Resource::*]",
        "Serverless-LambdaDLQ",
        "W3005",
    }


def test_deploy_runs_the_cli_on_the_projects_app_from_the_project(
    installed_wheel: WheelVenv, project: Path, tmp_path: Path
) -> None:
    record = tmp_path / "cdk-calls.jsonl"
    recorder = textwrap.dedent(
        f"""\
        #!/bin/sh
        if [ "$1" = "--version" ]; then echo "{PINNED} (build test)"; exit 0; fi
        python -c 'import json, os, sys; print(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}))' \\
            "$@" >> {record}
        """
    )
    fake = tools(tmp_path / "bin", cdk=recorder)
    result = command(
        installed_wheel,
        project,
        "deploy",
        "--require-approval",
        "never",
        path=[fake],
        cache=tmp_path / "cache",
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_REGION="eu-west-1",
    )
    assert result.returncode == 0, result.stderr
    (call,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert call == {
        "argv": ["deploy", "--app", "python app.py", "--require-approval", "never", "--all"],
        "cwd": str(project),
    }


def test_local_up_and_down_in_the_users_project(installed_wheel: WheelVenv, project: Path, tmp_path: Path) -> None:
    """`local up` deploys the user's app into the emulator with the CLI from PATH; `local down` ends it."""
    import boto3

    shim = tools(tmp_path / "bin", cdk=f'#!/bin/sh\nexec node {REPO_CLI}/bin/cdk "$@"\n')
    environment = installed_wheel.env(CDK_SERVERLESS_PATTERNS_CACHE=str(tmp_path / "cache"))
    environment["PATH"] = os.pathsep.join([str(installed_wheel.bin), str(shim), "/usr/bin", "/bin"])
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            ["serverless-patterns", "local", "up"],
            cwd=project,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state = project / ".serverless-patterns" / "local.json"
    try:

        def deployed() -> bool:
            if up.poll() is not None:
                return True
            try:
                return json.loads(state.read_text()).get("status") in ("ready", "failed")
            except (OSError, ValueError):
                return False  # not written yet, or being replaced

        wait_for(deployed, timeout=300, interval=0.5)
        assert up.poll() is None, log.read_text()
        assert json.loads(state.read_text())["status"] == "ready", log.read_text()
        endpoint = json.loads(state.read_text())["endpoint"]
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert any("Breaker" in name for name in dynamodb.list_tables()["TableNames"]), log.read_text()
        down = subprocess.run(
            ["serverless-patterns", "local", "down"],
            cwd=project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=60) == 0, log.read_text()
        assert not state.exists()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(timeout=30)
