"""Where the runtime code in ``lambda_src/`` lives, wherever the package is installed.

Three layouts, one lookup:
- installed wheel: ``cdk_serverless_patterns/_lambda_src/<asset>`` (pyproject force-includes it);
- checkout or editable install: ``<repo>/lambda_src/<asset>``, two levels above this package.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_lambda as lambda_

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_BUNDLED = _PACKAGE_DIR / "_lambda_src"
_CHECKOUT = _PACKAGE_DIR.parent.parent / "lambda_src"

# Never shipped in an asset zip: caches and test leftovers would change the asset hash.
ASSET_EXCLUDES = ["__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", "*.egg-info"]


class AssetNotFoundError(FileNotFoundError):
    """A Lambda asset folder is missing from the installed package."""


def lambda_src_root() -> Path:
    """The folder that holds every asset folder."""
    for candidate in (_BUNDLED, _CHECKOUT):
        if candidate.is_dir():
            return candidate
    raise AssetNotFoundError(
        f"cdk_serverless_patterns cannot find its Lambda sources: looked in {_BUNDLED} and {_CHECKOUT}. "
        "Reinstall the package (the wheel carries them as package data)."
    )


def asset_path(name: str) -> Path:
    """The folder of one asset, for example ``asset_path("callback_url")``."""
    parts = name.split("/")
    if not name or name.startswith("/") or ".." in parts:
        raise ValueError(f"asset name {name!r} is not a folder name under lambda_src/")
    path = lambda_src_root() / name
    if not path.is_dir():
        available = sorted(p.name for p in lambda_src_root().iterdir() if p.is_dir() and not p.name.startswith("_"))
        raise AssetNotFoundError(f"no Lambda asset {name!r} in {lambda_src_root()}; available: {', '.join(available)}")
    return path


def lambda_code(name: str) -> lambda_.Code:
    """``Code.from_asset`` for one asset folder, with caches excluded so the hash is stable."""
    return lambda_.Code.from_asset(str(asset_path(name)), exclude=ASSET_EXCLUDES)
