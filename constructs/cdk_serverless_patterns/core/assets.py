"""Where the runtime code in ``lambda_src/`` lives, wherever the package is installed, and how it is bundled.

Three layouts, one lookup:
- installed wheel: ``cdk_serverless_patterns/_lambda_src/<asset>`` (pyproject force-includes it);
- checkout or editable install: ``<repo>/lambda_src/<asset>``, two levels above this package.

An asset folder with a ``requirements.txt`` is bundled at synth time without Docker: pip installs the
requirements for the function's platform (``--platform manylinux2014_<arch> --only-binary=:all:``)
into a cache keyed by the hash of the requirements, platform and Python version, and the source is
laid over them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from aws_cdk import aws_lambda as lambda_

from cdk_serverless_patterns._paths import AssetNotFoundError, asset_path, lambda_src_root

__all__ = [
    "ASSET_EXCLUDES",
    "AssetNotFoundError",
    "asset_path",
    "bundle_with_requirements",
    "lambda_code",
    "lambda_src_root",
]

# Never shipped in an asset zip: caches and test leftovers would change the asset hash.
ASSET_EXCLUDES = ["__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", "*.egg-info"]


def lambda_code(
    name: str | Path,
    *,
    architecture: lambda_.Architecture | None = None,
    runtime: lambda_.Runtime | None = None,
) -> lambda_.Code:
    """``Code.from_asset`` for one asset folder, with caches excluded so the hash is stable.

    ``name`` is a folder under ``lambda_src/`` (``"callback_url"``), or a ``Path`` to a folder of
    Lambda code anywhere else (for example an application's own function, or a sample's).
    A folder with a ``requirements.txt`` is bundled for ``architecture`` (default ARM64) and
    ``runtime`` (default Python 3.14) first; see the module documentation.
    """
    folder = name if isinstance(name, Path) else asset_path(name)
    if not folder.is_dir():
        raise AssetNotFoundError(f"no folder of Lambda code at {folder}")
    if not (folder / "requirements.txt").exists():
        return lambda_.Code.from_asset(str(folder), exclude=ASSET_EXCLUDES)
    arch = architecture.name if architecture else "arm64"
    python = (runtime.name if runtime else "python3.14").removeprefix("python")
    return lambda_.Code.from_asset(str(bundle_with_requirements(folder, arch=arch, python_version=python)))


def cache_root() -> Path:
    """Where bundles are cached: ``$CDK_SERVERLESS_PATTERNS_CACHE`` or ``~/.cache/cdk-serverless-patterns``."""
    configured = os.environ.get("CDK_SERVERLESS_PATTERNS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "cdk-serverless-patterns"


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()[:32]


def _source_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def bundle_with_requirements(folder: Path, *, arch: str, python_version: str) -> Path:
    """A folder holding the requirements of ``folder`` for the Lambda platform, with its source on top."""
    platform = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}.get(arch)
    if platform is None:
        raise ValueError(f"architecture {arch!r} is not one Lambda runs (arm64 or x86_64)")
    requirements = (folder / "requirements.txt").read_bytes()
    deps_key = _digest(requirements, platform.encode(), python_version.encode())
    deps = cache_root() / f"deps-{deps_key}"
    if not deps.is_dir():
        _pip_install(folder / "requirements.txt", deps, platform=platform, python_version=python_version)
    sources = _source_files(folder)
    source_key = _digest(
        deps_key.encode(), *(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes() for p in sources)
    )
    bundle = cache_root() / f"asset-{folder.name}-{source_key}"
    if not bundle.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=cache_root()))
        shutil.copytree(deps, staging, dirs_exist_ok=True)
        for path in sources:
            target = staging / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        _publish(staging, bundle)
    return bundle


def _pip_install(requirements: Path, target: Path, *, platform: str, python_version: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".deps-", dir=target.parent))
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--requirement", str(requirements), "--target", str(staging),
        "--platform", platform, "--implementation", "cp", "--python-version", python_version,
        "--only-binary=:all:", "--no-compile",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"bundling {requirements}: pip could not install the requirements for {platform}: {detail}")
    _publish(staging, target)


def _publish(staging: Path, final: Path) -> None:
    """Moves a finished folder into place; a concurrent synth that got there first wins."""
    try:
        staging.rename(final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not final.is_dir():
            raise
