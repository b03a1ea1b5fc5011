"""The wheel: built from this checkout, installed into a fresh virtual environment outside it, used by a
small CDK app that finds the bundled Lambda assets there."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import zipfile
from pathlib import Path

import pytest
from wheel_venv import WheelVenv

import cdk_serverless_patterns
from cdk_serverless_patterns.core import lambda_src_root

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_ASSETS = ROOT / "lambda_src"

pytestmark = pytest.mark.slow


def asset_folders() -> list[str]:
    return sorted(p.name for p in CHECKOUT_ASSETS.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def files_of(folder: Path) -> set[str]:
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_editable_install_uses_the_checkout() -> None:
    assert Path(cdk_serverless_patterns.__file__).is_relative_to(ROOT / "constructs")
    assert lambda_src_root() == CHECKOUT_ASSETS


def test_wheel_carries_the_package_and_every_asset_but_no_caches(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "cdk_serverless_patterns/__init__.py" in names
    assert "cdk_serverless_patterns/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("constructs/", "lambda_src/", "tests/", "integ/"))]
    for folder in asset_folders():
        for file in files_of(CHECKOUT_ASSETS / folder):
            assert f"cdk_serverless_patterns/_lambda_src/{folder}/{file}" in names
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: cdk-serverless-patterns" in text
    assert "Requires-Dist: aws-cdk-lib<3,>=2.275" in text
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "serverless-patterns = cdk_serverless_patterns.toolkit.cli:main" in entry_points


def test_wheel_carries_no_sample_code(wheel: Path) -> None:
    """Samples (integ/: the sample app, its stacks and their functions) stay in the repository; the
    assets in the wheel are exactly lambda_src/'s folders, none of them a sample."""
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert not [n for n in names if n.startswith("integ/") or "/integ/" in n]
    sample_sources = {
        path.read_bytes(): str(path.relative_to(ROOT))
        for path in (ROOT / "integ").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc" and path.stat().st_size
    }
    assert any(source.startswith("integ/functions/") for source in sample_sources.values()), sample_sources
    copied = {name: sample_sources[data] for name in names if (data := archive.read(name)) in sample_sources}
    assert not copied, f"sample code in the wheel: {copied}"
    bundled = "cdk_serverless_patterns/_lambda_src/"
    shipped = {n.removeprefix(bundled).split("/")[0] for n in names if n.startswith(bundled) and n.count("/") > 2}
    assert shipped == set(asset_folders()), f"assets in the wheel: {sorted(shipped)}"
    assert not [asset for asset in shipped if "sample" in asset], f"a sample asset in the wheel: {sorted(shipped)}"


def test_installed_wheel_synthesizes_an_app_with_its_bundled_assets(installed_wheel: WheelVenv, tmp_path: Path) -> None:
    folders = asset_folders()
    assert folders, "lambda_src has no asset folder to look for"
    # With pip: assets that list requirements are bundled by running pip from the app's interpreter.
    python = installed_wheel.python
    new_site = installed_wheel.site
    app_dir = tmp_path / "user-app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(
        textwrap.dedent(
            f"""
            import json, sys
            import aws_cdk as cdk
            from aws_cdk import aws_lambda as lambda_
            import cdk_serverless_patterns
            from cdk_serverless_patterns.core import asset_path, lambda_code, lambda_src_root

            app = cdk.App(outdir=sys.argv[1])
            stack = cdk.Stack(app, "WheelUser")
            for name in {folders!r}:
                lambda_.LayerVersion(stack, name, code=lambda_code(name))
            app.synth()
            print(json.dumps({{"package": cdk_serverless_patterns.__file__, "root": str(lambda_src_root()),
                              "assets": {{n: str(asset_path(n)) for n in {folders!r}}}}}))
            """
        )
    )
    outdir = tmp_path / "cdk.out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["CDK_SERVERLESS_PATTERNS_CACHE"] = str(tmp_path / "bundle-cache")  # bundle for real, in the new venv
    result = subprocess.run(
        [str(python), "app.py", str(outdir)],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).is_relative_to(new_site), report["package"]
    assert Path(report["root"]) == new_site / "cdk_serverless_patterns" / "_lambda_src"
    assets = json.loads((outdir / "WheelUser.assets.json").read_text())["files"]
    staged = {outdir / a["source"]["path"] for a in assets.values() if a["source"].get("packaging") == "zip"}
    assert len(staged) == len(folders)
    for folder in folders:
        assert Path(report["assets"][folder]).is_relative_to(new_site)
        expected = files_of(CHECKOUT_ASSETS / folder)
        if (CHECKOUT_ASSETS / folder / "requirements.txt").exists():  # bundled: its packages beside the source
            assert any(expected < files_of(stage) for stage in staged), f"{folder} was not bundled from the wheel"
        else:
            assert any(files_of(stage) == expected for stage in staged), f"{folder} was not staged as in the checkout"
