"""Which CDK app a command works on, how it is loaded in-process, and which CDK CLI runs it.

The app (:func:`resolve_app`), as ``cdk`` itself would find it in the user's own project:

1. ``--app``: a Python file (run with this interpreter), a cloud assembly folder (``cdk.out``), or a
   command (anything with a space, run as is, as ``cdk --app`` does);
2. else the ``"app"`` of the project's ``cdk.json`` (the nearest folder at or above the current one
   that has one): a command, run as is from that folder;
3. else ``./app.py`` of the project, run with this interpreter;
4. else, only inside this repository's checkout, the sample app ``integ/app.py``.

``check`` and ``demo`` load a Python app in-process (:func:`load_app`); for a ``cdk.json`` command
that is the ``.py`` file it names. The app then gets the project's context (``cdk.json``'s
``"context"`` and ``cdk.context.json``), as the CDK CLI passes it, and path metadata, as the CLI
turns it on, so findings point at construct paths.

The CLI (:func:`cdk_cli`) is a compatible one found on this machine or the pinned one, installed
once into a per-user cache: see :mod:`cdk_serverless_patterns.toolkit.cdk_cli_install`.
"""

from __future__ import annotations

import json
import os
import runpy
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdk_serverless_patterns.toolkit import cdk_cli_install

if TYPE_CHECKING:
    import aws_cdk as cdk

SAMPLE_APP = Path("integ") / "app.py"
#: Context the CDK CLI gives every app (path metadata: resources carry their construct path).
CLI_CONTEXT: dict[str, Any] = {"aws:cdk:enable-path-metadata": True}
#: The folder of this package's checkout, when it runs from one (editable install or source tree).
_CHECKOUT = Path(__file__).resolve().parents[3]

#: Resolved CLIs by (project folder, PATH): ``cdk --version`` costs about a second.
_CLI_CACHE: dict[tuple[str, str], list[str]] = {}


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


def repository_root() -> Path | None:
    """This repository's checkout when the package runs from it (not from an installed wheel), else None."""
    if (_CHECKOUT / SAMPLE_APP).is_file() and (_CHECKOUT / "constructs" / "cdk_serverless_patterns").is_dir():
        return _CHECKOUT
    return None


@dataclass(frozen=True)
class AppSpec:
    """The app a command works on.

    - ``command``: what ``cdk --app`` gets (a command line, or a cloud assembly folder);
    - ``root``: the folder the CDK CLI runs in (the project's);
    - ``file``: the Python file of the app when there is one (``check`` and ``demo`` load it);
    - ``source``: where it came from, for messages (``--app``, ``cdk.json``, ``./app.py``, ``the sample app``).
    """

    command: str
    root: Path
    file: Path | None
    source: str

    def python_file(self) -> Path:
        """The app's Python file; a :class:`ToolkitError` when the app is a command without one."""
        if self.file is None:
            raise ToolkitError(
                f"the app ({self.source}: {self.command}) names no Python file to load: pass --app path/to/app.py"
            )
        return self.file


def _python_command(file: Path) -> str:
    return shlex.join([sys.executable, str(file)])


def _python_file_of(command: str, root: Path) -> Path | None:
    """The ``.py`` file a command runs (``python3 app.py``, ``.venv/bin/python -m ... app.py``), if it names one."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for word in words:
        if word.endswith(".py"):
            path = Path(word) if Path(word).is_absolute() else root / word
            if path.is_file():
                return path.resolve()
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ToolkitError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ToolkitError(f"{path} does not hold a JSON object")
    return data


def resolve_app(app: str | None, start: Path | None = None) -> AppSpec:
    """The app to use: ``--app``, else cdk.json's ``"app"``, else ``./app.py``, else (in this repository only)
    the sample app. ``start`` is the folder to look from (default: the current one)."""
    root = project_root(start)
    if app:
        path = Path(app)
        if path.is_dir() and (path / "manifest.json").is_file():
            return AppSpec(command=str(path.resolve()), root=root, file=None, source="--app")
        if not path.is_file() and " " in app.strip():
            return AppSpec(command=app, root=root, file=_python_file_of(app, root), source="--app")
        if not path.is_file():
            raise ToolkitError(f"--app: {app} is not a file (give the path of a Python CDK app)")
        if path.suffix != ".py":
            raise ToolkitError(f"--app: {app} is not a Python file (.py)")
        return AppSpec(command=_python_command(path.resolve()), root=root, file=path.resolve(), source="--app")
    configured = _read_json(root / "cdk.json").get("app")
    if isinstance(configured, str) and configured.strip():
        return AppSpec(command=configured, root=root, file=_python_file_of(configured, root), source="cdk.json")
    if (root / "app.py").is_file():
        file = (root / "app.py").resolve()
        return AppSpec(command=_python_command(file), root=root, file=file, source="./app.py")
    repository = repository_root()
    if repository is not None and (root == repository or root.is_relative_to(repository)):
        sample = repository / SAMPLE_APP
        return AppSpec(command=_python_command(sample), root=repository, file=sample, source="the sample app")
    raise ToolkitError(
        f'no app: no --app, no "app" in {root / "cdk.json"}, no {root / "app.py"}: pass --app path/to/app.py'
    )


def resolve_app_file(app: str | None) -> Path:
    """The Python file of the app to use (see :func:`resolve_app`)."""
    return resolve_app(app).python_file()


def project_context(root: Path) -> dict[str, Any]:
    """The context the CDK CLI would give the app of ``root``: cdk.json's ``"context"``, then cdk.context.json."""
    context = _read_json(root / "cdk.json").get("context") or {}
    if not isinstance(context, dict):
        raise ToolkitError(f'{root / "cdk.json"}: "context" is not a JSON object')
    return {**context, **_read_json(root / "cdk.context.json")}


@contextmanager
def _apps_created_with(outdir: Path, context: Mapping[str, Any]) -> Iterator[None]:
    """While active, every ``cdk.App`` gets ``context`` on top of its own and ``outdir`` unless it names one.

    The CDK CLI passes both through environment variables (``CDK_CONTEXT_JSON``, ``CDK_OUTDIR``) that
    the jsii kernel reads once, when ``aws_cdk`` is first imported; in-process they must go to the App.
    """
    import aws_cdk as cdk

    original: Callable[..., None] = cdk.App.__init__

    def init(self: cdk.App, **kwargs: Any) -> None:
        kwargs["context"] = {**(kwargs.get("context") or {}), **context}
        if kwargs.get("outdir") is None:
            kwargs["outdir"] = str(outdir)
        original(self, **kwargs)

    cdk.App.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        cdk.App.__init__ = original  # type: ignore[method-assign]


def load_app(app_file: Path, outdir: Path, *, context: Mapping[str, Any] | None = None) -> cdk.App:
    """Runs ``app_file`` without synthesizing it and returns its ``App``.

    The file may define ``build_app(outdir=...)`` (preferred) or create an ``App`` at module level;
    a top-level ``app.synth()`` is harmless: the caller synthesizes again with ``force``. It runs
    from its project's folder with its own folder on ``sys.path`` (for its own modules), and its App
    gets the project's context, :data:`CLI_CONTEXT` and ``context``.
    """
    import aws_cdk as cdk

    root = project_root(app_file.parent)
    merged = {**project_context(root), **CLI_CONTEXT, **(context or {})}
    os.environ["CDK_OUTDIR"] = str(outdir)
    sys.path.insert(0, str(app_file.parent))
    cwd = Path.cwd()
    try:
        os.chdir(root)
        with _apps_created_with(outdir, merged):
            namespace: dict[str, Any] = runpy.run_path(str(app_file), run_name="__cdk_app__")
            builder = namespace.get("build_app")
            built = builder(outdir=str(outdir)) if callable(builder) else None
    finally:
        os.chdir(cwd)
        sys.path.remove(str(app_file.parent))
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
    """The command line of a CDK CLI that reads this package's cloud assemblies.

    A compatible ``aws-cdk`` in the project's ``node_modules``, else ``cdk`` on PATH, else the pinned
    version from the per-user cache, installed there once with npm when missing (progress on stderr).
    Raises :class:`ToolkitError` (one line, with the exact command to run) when Node is missing or
    the CLI cannot be installed.
    """
    if shutil.which("node") is None:
        raise ToolkitError(
            f"Node.js is not installed: the CDK CLI needs Node 20 or newer (then the toolkit installs "
            f"aws-cdk@{cdk_cli_install.PINNED_VERSION} itself, or run `npm ci` in this repository)"
        )
    base = (root or project_root()).resolve()
    key = (str(base), os.environ.get("PATH", ""))
    if key in _CLI_CACHE:
        return list(_CLI_CACHE[key])
    found, rejected = cdk_cli_install.find_cdk_cli(base)
    if found is None:
        for cli in rejected:
            print(
                f"the CDK CLI {cli.version} ({cli.source}: {' '.join(cli.command)}) cannot read this package's "
                f"cloud assemblies (needs {cdk_cli_install.REQUIRED_MAJOR}.{cdk_cli_install.MINIMUM_MINOR} or a "
                f"newer {cdk_cli_install.REQUIRED_MAJOR}.x): using the pinned {cdk_cli_install.PINNED_VERSION}",
                file=sys.stderr,
            )
        try:
            found = cdk_cli_install.install_pinned_cli()
        except cdk_cli_install.CdkCliError as error:
            raise ToolkitError(str(error)) from None
    _CLI_CACHE[key] = found.argv()
    return found.argv()
