"""Assets with a requirements.txt are bundled for the Lambda platform without Docker, and cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdk_serverless_patterns.core.assets import bundle_with_requirements

pytestmark = pytest.mark.slow


@pytest.fixture
def asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CDK_SERVERLESS_PATTERNS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "my_asset"
    (folder / "pkg").mkdir(parents=True)
    (folder / "handler.py").write_text("def handler(event, context):\n    return event\n")
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "requirements.txt").write_text("markupsafe==3.0.3\n")
    return folder


def test_requirements_are_installed_for_the_functions_architecture(asset: Path) -> None:
    arm = bundle_with_requirements(asset, arch="arm64", python_version="3.14")
    x86 = bundle_with_requirements(asset, arch="x86_64", python_version="3.14")
    assert (arm / "handler.py").read_text() == (asset / "handler.py").read_text()
    assert (arm / "pkg" / "__init__.py").exists()
    arm_libs = [p.name for p in (arm / "markupsafe").glob("*.so")]
    x86_libs = [p.name for p in (x86 / "markupsafe").glob("*.so")]
    assert arm_libs and all("aarch64" in name and "cpython-314" in name for name in arm_libs), arm_libs
    assert x86_libs and all("x86_64" in name for name in x86_libs), x86_libs


def test_bundles_are_cached_and_follow_source_changes(asset: Path) -> None:
    first = bundle_with_requirements(asset, arch="arm64", python_version="3.14")
    assert bundle_with_requirements(asset, arch="arm64", python_version="3.14") == first
    (asset / "handler.py").write_text("def handler(event, context):\n    return None\n")
    second = bundle_with_requirements(asset, arch="arm64", python_version="3.14")
    assert second != first
    assert "return None" in (second / "handler.py").read_text()
    deps = list(second.parent.glob("deps-*"))
    assert len(deps) == 1, "a source change must not download the requirements again"


def test_an_uninstallable_requirement_is_a_clear_error(asset: Path) -> None:
    (asset / "requirements.txt").write_text("this-package-does-not-exist-anywhere-42==0.0.1\n")
    with pytest.raises(RuntimeError, match=r"pip could not install the requirements for manylinux2014_aarch64"):
        bundle_with_requirements(asset, arch="arm64", python_version="3.14")


def test_an_unknown_architecture_is_refused(asset: Path) -> None:
    with pytest.raises(ValueError, match="arm64 or x86_64"):
        bundle_with_requirements(asset, arch="riscv", python_version="3.14")
