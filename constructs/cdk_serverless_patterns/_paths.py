"""Where ``lambda_src/`` is, in a checkout, an editable install or an installed wheel (no CDK import).

``core.assets`` builds Lambda code from these folders; ``testing.moto`` loads runtime modules from
them for tests that must not need the CDK.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE_DIR / "_lambda_src"
_CHECKOUT = _PACKAGE_DIR.parent.parent / "lambda_src"


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
