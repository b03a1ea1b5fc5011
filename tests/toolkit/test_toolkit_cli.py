"""The serverless-patterns command: help, clear one-line errors, check, synth and deploy guards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cdk_serverless_patterns.toolkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["synth", "check", "deploy", "demo", "circuit"]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdk_serverless_patterns", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_on_every_command(command: str | None) -> None:
    result = run_cli(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: serverless-patterns" in result.stdout
    if command is None:
        for name in COMMANDS:
            assert name in result.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "serverless-patterns"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0 and "synth" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
        (["deploy", "--require-approval", "sometimes"], "invalid choice: 'sometimes'"),
    ],
)
def test_wrong_arguments_give_one_line_and_exit_2(args: list[str], expected: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_missing_app_file_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--app", "no/such/app.py"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "serverless-patterns check: --app: no/such/app.py is not a file (give the path of a Python CDK app)"


def test_deploy_without_credentials_refuses_clearly(tmp_path: Path) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SESSION_TOKEN": "",
        "AWS_PROFILE": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
    }
    clean = {k: v for k, v in os.environ.items() if k not in env}
    result = subprocess.run(
        [sys.executable, "-m", "cdk_serverless_patterns", "deploy"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **{k: v for k, v in env.items() if v}},
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("serverless-patterns deploy: no AWS credentials are configured")
    assert "Traceback" not in result.stderr


def test_synth_without_node_modules_says_to_run_npm_ci(tmp_path: Path) -> None:
    (tmp_path / "cdk.json").write_text("{}")
    app = tmp_path / "app.py"
    app.write_text("import aws_cdk as cdk\napp = cdk.App()\n")
    result = run_cli("synth", "--app", str(app), cwd=tmp_path)
    assert result.returncode == 2
    assert "run `npm ci` there first" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_synth_without_node_says_node_is_needed(tmp_path: Path) -> None:
    python_only = tmp_path / "bin"
    python_only.mkdir()
    (python_only / "python").symlink_to(sys.executable)
    result = run_cli("synth", env={"PATH": str(python_only)})
    assert result.returncode == 2
    assert "Node.js is not installed" in result.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node for the CDK CLI")
def test_synth_runs_the_pinned_cli_offline(tmp_path: Path) -> None:
    out = tmp_path / "cdk.out"
    result = run_cli("synth", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "manifest.json").exists()
    assert list(out.glob("*.template.json"))


def test_check_passes_on_the_sample_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "0 blocking finding(s)" in out


def test_check_fails_and_tabulates_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "insecure.py"
    app.write_text(
        "import aws_cdk as cdk\nfrom aws_cdk import aws_sqs as sqs\n"
        "def build_app(outdir):\n"
        "    app = cdk.App(outdir=outdir)\n"
        "    sqs.Queue(cdk.Stack(app, 'Insecure'), 'Queue')\n"
        "    return app\n"
    )
    assert main(["check", "--app", str(app)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["TOOL", "SEVERITY", "RULE", "WHERE", "WHAT"]
    assert "AwsSolutions-SQS4" in out and "Insecure/Queue/Resource" in out
    assert "checked 1 stack(s) (Insecure)" in out


def test_demo_lists_every_stack_of_the_sample_app_with_its_resources(
    capsys: pytest.CaptureFixture[str], sample_templates: dict[str, dict[str, object]]
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert f"synthesizes {len(sample_templates)} stack(s)" in out
    for name, template in sample_templates.items():
        resources = template["Resources"]
        assert isinstance(resources, dict)
        assert f"{name}: {len(resources)} resources" in out


def test_package_and_command_start_without_loading_the_cdk() -> None:
    probe = (
        "import sys, cdk_serverless_patterns as p, cdk_serverless_patterns.toolkit.cli; "
        "assert 'aws_cdk' not in sys.modules, 'aws_cdk imported eagerly'; "
        "assert set(p.__all__) == {*p._EXPORTS, '__version__'}, 'public names out of step'; "
        "print(p.CircuitBreaker.__module__); assert 'aws_cdk' in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cdk_serverless_patterns.circuit_breaker")
