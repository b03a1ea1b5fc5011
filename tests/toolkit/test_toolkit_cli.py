"""The serverless-patterns command: help, clear one-line errors, app resolution, synth and deploy guards.

``check`` has its own file (test_toolkit_check.py), the CLI resolution test_toolkit_cdk_cli.py, and the
whole toolkit from an installed wheel outside the checkout tests/packaging/test_packaging_outside_checkout.py.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cdk_serverless_patterns.toolkit import cli
from cdk_serverless_patterns.toolkit.apps import ToolkitError, load_app, repository_root, resolve_app
from cdk_serverless_patterns.toolkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["synth", "check", "deploy", "circuit", "demo", "local"]


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


def test_synth_without_any_cdk_cli_or_npm_prints_the_exact_install_command(tmp_path: Path) -> None:
    """No node_modules, no cdk on PATH, an empty cache and no npm: one line naming the npm command to run."""
    (tmp_path / "cdk.json").write_text("{}")
    app = tmp_path / "app.py"
    app.write_text("import aws_cdk as cdk\napp = cdk.App()\n")
    node_only = tmp_path / "bin"
    node_only.mkdir()
    (node_only / "node").symlink_to(shutil.which("node") or "/usr/bin/node")
    cache = tmp_path / "cache"
    result = run_cli(
        "synth",
        "--app",
        str(app),
        cwd=tmp_path,
        env={"PATH": str(node_only), "CDK_SERVERLESS_PATTERNS_CACHE": str(cache)},
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("serverless-patterns synth: no compatible CDK CLI and no npm to install it")
    assert f"npm install --prefix {cache}/cdk-cli/2.1148.1 aws-cdk@2.1148.1" in line
    assert not (tmp_path / "cdk.out").exists()


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


# ------------------------------------------------------------------------------ which app
def test_the_app_is_cdk_json_app_run_as_is_then_app_py(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "cdk.json").write_text(json.dumps({"app": "python3 -u src/main.py --flag"}))
    (project / "src").mkdir()
    (project / "src" / "main.py").write_text("")
    spec = resolve_app(None, project / "sub")  # from a subfolder: the nearest cdk.json
    assert (spec.command, spec.root, spec.file, spec.source) == (
        "python3 -u src/main.py --flag",
        project.resolve(),
        (project / "src" / "main.py").resolve(),
        "cdk.json",
    )
    (project / "cdk.json").write_text(json.dumps({"context": {}}))
    with pytest.raises(ToolkitError, match=r"no app: no --app, no \"app\" in .*cdk.json, no .*app.py"):
        resolve_app(None, project)
    (project / "app.py").write_text("")
    spec = resolve_app(None, project)
    assert spec.file == (project / "app.py").resolve() and spec.source == "./app.py"
    assert shlex.split(spec.command) == [sys.executable, str((project / "app.py").resolve())]


def test_a_command_app_without_a_python_file_cannot_be_checked(tmp_path: Path) -> None:
    (tmp_path / "cdk.json").write_text(json.dumps({"app": "npx ts-node bin/app.ts"}))
    spec = resolve_app(None, tmp_path)
    assert spec.command == "npx ts-node bin/app.ts" and spec.file is None
    with pytest.raises(ToolkitError, match=r"names no Python file to load: pass --app path/to/app\.py"):
        spec.python_file()


def test_app_option_takes_a_file_a_cloud_assembly_or_a_command(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    (tmp_path / "cdk.out").mkdir()
    (tmp_path / "cdk.out" / "manifest.json").write_text("{}")
    assert resolve_app(str(tmp_path / "app.py"), tmp_path).file == (tmp_path / "app.py").resolve()
    assembly = resolve_app(str(tmp_path / "cdk.out"), tmp_path)
    assert assembly.command == str((tmp_path / "cdk.out").resolve()) and assembly.file is None
    command = resolve_app(f"python3 {tmp_path / 'app.py'}", tmp_path)
    assert command.command == f"python3 {tmp_path / 'app.py'}" and command.file == (tmp_path / "app.py").resolve()
    with pytest.raises(ToolkitError, match="is not a Python file"):
        (tmp_path / "app.ts").write_text("")
        resolve_app(str(tmp_path / "app.ts"), tmp_path)


def test_the_sample_app_is_the_default_only_inside_this_repository(tmp_path: Path) -> None:
    assert repository_root() == ROOT
    inside = resolve_app(None, ROOT / "docs")  # the repository's cdk.json runs the sample app
    assert inside.source == "cdk.json" and inside.file == ROOT / "integ" / "app.py"
    with pytest.raises(ToolkitError, match="no app"):
        resolve_app(None, tmp_path)  # outside: no sample app as a fallback


def test_a_python_app_gets_the_project_context_as_cdk_would_give_it(tmp_path: Path) -> None:
    (tmp_path / "cdk.json").write_text(json.dumps({"app": "python3 app.py", "context": {"stage": "dev", "n": 1}}))
    (tmp_path / "cdk.context.json").write_text(json.dumps({"n": 2}))
    (tmp_path / "helper.py").write_text("NAME = 'FromHelper'\n")
    (tmp_path / "app.py").write_text(
        "import aws_cdk as cdk\nfrom helper import NAME\napp = cdk.App()\ncdk.Stack(app, NAME)\napp.synth()\n"
    )
    app = load_app(tmp_path / "app.py", tmp_path / "out")
    assert app.node.try_get_context("stage") == "dev" and app.node.try_get_context("n") == 2
    assert app.node.try_get_context("aws:cdk:enable-path-metadata") is True
    assert Path(app.outdir) == tmp_path / "out"
    import aws_cdk as cdk

    assert [child.node.id for child in app.node.children if cdk.Stack.is_stack(child)] == ["FromHelper"]


# ----------------------------------------------------------------- commands of other modules
def test_demo_and_local_dispatch_to_their_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name, (module_name, _, _) in cli.PLUGGED_COMMANDS.items():
        module = importlib.import_module(module_name)
        monkeypatch.setattr(module, "run", lambda args, name=name: calls.append(f"{name}:{args.command}") or 7)
    assert main(["demo"]) == 7
    assert main(["local", "down"]) == 7
    assert calls == ["demo:demo", "local:local"]


def test_a_command_whose_module_cannot_load_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(
        cli.PLUGGED_COMMANDS, "demo", ("cdk_serverless_patterns.toolkit.no_such_module", "the demo", "local")
    )
    assert main(["demo", "--keep"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("serverless-patterns demo: this command needs the 'local' extra: ")
    assert "pip install 'cdk-serverless-patterns[local]'" in line


def test_a_command_missing_a_package_of_its_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    local_commands = importlib.import_module(cli.PLUGGED_COMMANDS["local"][0])

    def run(args: object) -> int:
        raise ModuleNotFoundError("No module named 'moto'", name="moto")

    monkeypatch.setattr(local_commands, "run", run)
    assert main(["local", "status"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "needs the 'local' extra: pip install 'cdk-serverless-patterns[local]'" in line

    def broken(args: object) -> int:
        raise ModuleNotFoundError("No module named 'my_own_code'", name="my_own_code")

    monkeypatch.setattr(local_commands, "run", broken)
    with pytest.raises(ModuleNotFoundError):  # not an extra's package: a real bug, not hidden
        main(["local", "status"])
