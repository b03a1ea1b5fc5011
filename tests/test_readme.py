"""Every Python example of the README runs as pasted, in a project of its own outside the checkout, with the
wheel installed (tests/packaging/wheel_venv.py: a fresh venv, the wheel installed with --no-deps, the
dependencies from the dev venv through a .pth entry).

Each ``python`` block is preceded by one marker comment, invisible on GitHub:

- ``<!-- file: PATH -->``: the block is that file of the user's project, as the text around it says;
- ``<!-- not-run: REASON -->``: a fragment that cannot run alone (kept to a few);
- none: a script, run with the project's Python.

The project is then used as the README says: ``python app.py`` synthesizes, ``serverless-patterns check``
finds nothing left, and the tests run with pytest: ``pytest --snapshot-update`` writes the snapshot (in
the temporary project: the README's first run), then ``pytest`` passes against it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- (file|not-run): (.+?) -->\s*$")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
#: Fragments are the exception: a README example should be something a reader can run.
MAX_FRAGMENTS = 2

pytestmark = pytest.mark.slow


def _wheel_venv() -> ModuleType:
    """tests/packaging/wheel_venv.py, one copy per session (tests/packaging's conftest imports it too)."""
    if "wheel_venv" in sys.modules:
        return sys.modules["wheel_venv"]
    spec = importlib.util.spec_from_file_location("wheel_venv", ROOT / "tests" / "packaging" / "wheel_venv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["wheel_venv"] = module
    spec.loader.exec_module(module)
    return module


def python_blocks(text: str) -> list[tuple[str, str, str]]:
    """``(kind, argument, code)`` of each python block: kind is "file", "not-run" or "script"."""
    blocks = []
    for match in BLOCK.finditer(text):
        if match.group(1) != "python":
            continue
        before = text[: match.start()].rstrip("\n").splitlines()
        marker = MARKER.search(before[-1]) if before else None
        kind, argument = (marker.group(1), marker.group(2)) if marker else ("script", "")
        blocks.append((kind, argument, match.group(2)))
    return blocks


def test_every_python_block_is_a_file_a_script_or_a_marked_fragment() -> None:
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no python example"
    fragments = [argument for kind, argument, _ in blocks if kind == "not-run"]
    assert len(fragments) <= MAX_FRAGMENTS, f"too many fragments: {fragments}"
    assert all(len(reason) > 20 for reason in fragments), "a fragment says why it does not run"
    files = [argument for kind, argument, _ in blocks if kind == "file"]
    assert len(files) == len(set(files)), "a file is given twice"
    for kind, _, code in blocks:
        if kind != "not-run":
            compile(code, "<README>", "exec")


def test_the_marker_parser_sees_what_a_reader_sees() -> None:
    text = (
        "<!-- file: a.py -->\n```python\nx = 1\n```\n\n"
        "```python\nprint(2)\n```\n\n"
        "<!-- not-run: a fragment of a stack, see elsewhere -->\n```python\nself.x\n```\n```sh\nls\n```\n"
    )
    assert python_blocks(text) == [
        ("file", "a.py", "x = 1\n"),
        ("script", "", "print(2)\n"),
        ("not-run", "a fragment of a stack, see elsewhere", "self.x\n"),
    ]


@pytest.fixture(scope="module")
def readme_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    venv = _wheel_venv().session_venv(tmp_path_factory)
    project = tmp_path_factory.mktemp("readme-project")
    assert not project.is_relative_to(ROOT)
    for kind, argument, code in python_blocks(README.read_text()):
        if kind == "file":
            path = project / argument
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
    return project, venv


def run(venv: Any, project: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        cwd=project,
        env=venv.env(**env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_readme_scripts_run(readme_project: tuple[Path, Any]) -> None:
    project, venv = readme_project
    scripts = [code for kind, _, code in python_blocks(README.read_text()) if kind == "script"]
    for code in scripts:
        result = run(venv, project, str(venv.python), "-c", code)
        assert result.returncode == 0, result.stderr


def test_the_readme_app_synthesizes_with_the_wheel(readme_project: tuple[Path, Any]) -> None:
    project, venv = readme_project
    if not (project / "app.py").exists():
        pytest.fail("the README shows no app.py")
    # As the CDK CLI runs it (CDK_OUTDIR); `python app.py` alone writes to a temporary folder.
    result = run(venv, project, str(venv.python), "app.py", CDK_OUTDIR=str(project / "cdk.out"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((project / "cdk.out" / "manifest.json").read_text())
    stacks = [a for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack"]
    assert stacks, "the app synthesized no stack"


def test_serverless_patterns_check_passes_on_the_readme_app(readme_project: tuple[Path, Any]) -> None:
    project, venv = readme_project
    result = run(venv, project, str(venv.bin / "serverless-patterns"), "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"0 blocking error\(s\) .*, 0 warning\(s\)", result.stdout), result.stdout


def test_the_readme_tests_pass_with_the_test_helpers(readme_project: tuple[Path, Any]) -> None:
    project, venv = readme_project
    tests = sorted(p.name for p in project.glob("test_*.py"))
    assert tests, "the README shows no test"
    pytest_command = [str(venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(project)]
    first = run(venv, project, *pytest_command, "--snapshot-update")  # the user's first run writes the snapshot
    assert first.returncode == 0, first.stdout + first.stderr
    assert list(project.glob("__snapshots__/*")), "the README's snapshot test wrote no snapshot"
    again = run(venv, project, *pytest_command)
    assert again.returncode == 0, again.stdout + again.stderr
    counts = re.search(r"(\d+) passed", again.stdout)
    assert counts and int(counts.group(1)) == sum(
        len(re.findall(r"^def test_", (project / name).read_text(), re.MULTILINE)) for name in tests
    ), again.stdout
    assert "snapshot passed" in again.stdout, again.stdout
