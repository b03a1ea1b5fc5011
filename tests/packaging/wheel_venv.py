"""The wheel of this checkout, installed into a fresh virtual environment outside it, once per test session.

How, offline and fast: ``python -m build --wheel --no-isolation`` builds the wheel (about a second);
``python -m venv --without-pip`` creates the environment in a temporary folder; a ``.pth`` file in
its site-packages names the dev environment's site-packages *after* its own, so the dependencies
(aws-cdk-lib alone is about 100 MB, cdk-nag, cfn-lint, moto, pytest, syrupy) come from there
without a download; then ``pip --python <venv> install --no-deps <wheel>`` installs the package and
its ``serverless-patterns`` script. The dev environment's editable install of this checkout is a
``.pth`` import hook of that folder, which Python does not process for a folder named by another
``.pth`` file, so the new environment imports the package from the wheel only (the tests check it).

Used by tests/packaging (through its conftest's ``installed_wheel`` fixture) and tests/test_readme.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SESSION: dict[str, object] = {}


@dataclass(frozen=True)
class WheelVenv:
    """A virtual environment with the wheel installed: its interpreter, scripts folder and site-packages."""

    wheel: Path
    root: Path
    python: Path
    bin: Path
    site: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a user's shell with this venv activated: its bin first on PATH, no PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        env.setdefault("AWS_REGION", "us-east-1")
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
        env.setdefault("JSII_DEPRECATED", "quiet")
        env.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
        env.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        env.update(extra)
        return env


def build_wheel(dist: Path) -> Path:
    """Builds the wheel of this checkout into ``dist``."""
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = dist.glob("cdk_serverless_patterns-*.whl")
    return built


def install_wheel(wheel: Path, root: Path) -> WheelVenv:
    """A new venv at ``root`` with ``wheel`` installed (``--no-deps``; dependencies from the dev venv)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    )
    (site / "zz_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)],
        check=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return WheelVenv(wheel=wheel, root=root, python=python, bin=root / "bin", site=site)


def session_wheel(factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once per test session."""
    if "wheel" not in _SESSION:
        _SESSION["wheel"] = build_wheel(factory.mktemp("dist"))
    wheel = _SESSION["wheel"]
    assert isinstance(wheel, Path)
    return wheel


def session_venv(factory: pytest.TempPathFactory) -> WheelVenv:
    """The venv with the wheel installed, created once per test session."""
    if "venv" not in _SESSION:
        _SESSION["venv"] = install_wheel(session_wheel(factory), factory.mktemp("wheel-venv") / "venv")
    venv = _SESSION["venv"]
    assert isinstance(venv, WheelVenv)
    return venv
