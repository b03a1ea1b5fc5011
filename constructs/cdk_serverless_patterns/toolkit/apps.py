"""Finding and loading CDK apps, and the prerequisites of the pinned CDK CLI."""

from __future__ import annotations

import os
import runpy
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aws_cdk as cdk

SAMPLE_APP = Path("integ") / "app.py"


class ToolkitError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""


def quiet_environment() -> None:
    """Settings every tool run needs offline: no jsii banner, a region so SDKs do not probe EC2 metadata."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
    os.environ.setdefault("JSII_DEPRECATED", "quiet")
    os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
    os.environ.setdefault("NODE_NO_WARNINGS", "1")  # Node 20 deprecation notices of the CLI's own SDK


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding a cdk.json, else ``start`` itself."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "cdk.json").exists():
            return folder
    return here


def resolve_app_file(app: str | None) -> Path:
    """The Python file of the app to use: ``--app`` or the sample app of this project."""
    if app:
        path = Path(app)
        if not path.is_file():
            raise ToolkitError(f"--app: {app} is not a file (give the path of a Python CDK app)")
        if path.suffix != ".py":
            raise ToolkitError(f"--app: {app} is not a Python file (.py)")
        return path.resolve()
    sample = project_root() / SAMPLE_APP
    if not sample.is_file():
        raise ToolkitError(f"no app given and no sample app at {sample}: pass --app path/to/app.py")
    return sample


def load_app(app_file: Path, outdir: Path) -> cdk.App:
    """Runs ``app_file`` without synthesizing it and returns its ``App``.

    The file may define ``build_app(outdir=...)`` (preferred) or create an ``App`` at module level;
    a top-level ``app.synth()`` is harmless: the caller synthesizes again with ``force``.
    """
    import aws_cdk as cdk

    os.environ["CDK_OUTDIR"] = str(outdir)
    sys.path.insert(0, str(app_file.parent))
    try:
        namespace: dict[str, Any] = runpy.run_path(str(app_file), run_name="__cdk_app__")
    finally:
        sys.path.remove(str(app_file.parent))
    builder = namespace.get("build_app")
    if callable(builder):
        built = builder(outdir=str(outdir))
        if isinstance(built, cdk.App):
            return built
    apps = [value for value in namespace.values() if isinstance(value, cdk.App)]
    if len(apps) != 1:
        raise ToolkitError(
            f"--app: {app_file} defines {len(apps)} App objects and no build_app(outdir=...) function; "
            "expose exactly one App or a build_app function"
        )
    return apps[0]


def cdk_cli(root: Path | None = None) -> list[str]:
    """The command line of the pinned CDK CLI, after checking Node and node_modules."""
    if shutil.which("node") is None:
        raise ToolkitError("Node.js is not installed: the CDK CLI needs Node 20 or newer (then run `npm ci`)")
    base = root or project_root()
    cli = base / "node_modules" / "aws-cdk" / "bin" / "cdk"
    if not cli.exists():
        raise ToolkitError(f"the pinned CDK CLI is not installed in {base / 'node_modules'}: run `npm ci` there first")
    return ["node", str(cli)]
