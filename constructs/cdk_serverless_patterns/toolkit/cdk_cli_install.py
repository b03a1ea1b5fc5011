"""Which CDK CLI the toolkit runs: a compatible one the project already has, else the pinned one, installed once.

The package pins the CLI it was tested with (:data:`PINNED_VERSION`, the same as ``package.json``'s
``aws-cdk`` in the repository; a test keeps the two equal), so that an installed wheel knows it
without the repository. aws-cdk-lib 2.275 writes cloud-assembly schema 55, which the pinned 2.1148
reads (measured; the 3.x CLI is another major and rejects it). So a CLI is *compatible* when its
major is 2 and its minor at least the pinned one (:data:`MINIMUM_MINOR`): newer 2.x CLIs read
older schemas, older ones may not read 55.

:func:`find_cdk_cli` looks, in this order, at

1. the project's ``node_modules/aws-cdk`` (its ``package.json`` version; nothing is run),
2. ``cdk`` on ``PATH`` (``cdk --version``, bounded by a timeout),
3. the per-user cache, ``<cache>/cdk-cli/<PINNED_VERSION>`` (``<cache>`` is
   ``$CDK_SERVERLESS_PATTERNS_CACHE`` or ``~/.cache/cdk-serverless-patterns``, as for asset bundles),

and takes the first compatible one. When none is, :func:`install_pinned_cli` runs
``npm install --prefix <cache>/cdk-cli/<ver> aws-cdk@<ver>`` once, with npm's progress on the
terminal, into a temporary folder renamed into place (a half-finished install is never used) under a
file lock (two commands starting together install once). If it cannot (no npm, offline, npm
failing), the error names the exact command to run by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The CDK CLI this package is tested with (package.json's aws-cdk in the repository).
PINNED_VERSION = "2.1148.1"
#: A compatible CLI has this major ...
REQUIRED_MAJOR = 2
#: ... and at least this minor: the pinned one, which reads cloud-assembly schema 55 (aws-cdk-lib 2.275).
MINIMUM_MINOR = 1148
#: Seconds ``cdk --version`` may take (a cold ``npx`` shim can be slow).
VERSION_TIMEOUT = 60.0
#: Seconds ``npm install`` may take before it is stopped.
INSTALL_TIMEOUT = 900.0

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)\.(\d+)")


class CdkCliError(Exception):
    """No usable CDK CLI: the message says what to do, in one line."""


@dataclass(frozen=True)
class CdkCli:
    """A CDK CLI found on this machine: the command line that runs it, its version and where it came from."""

    command: tuple[str, ...]
    version: str
    source: str  # "node_modules", "PATH" or "cache"

    def argv(self) -> list[str]:
        """The command line, as a list to extend with the CLI's arguments."""
        return list(self.command)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of ``"2.1148.1 (build fcf5e34)"``; None for anything else."""
    match = _VERSION.match(text)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def is_compatible(version: str) -> bool:
    """Whether a CLI of ``version`` reads the cloud assembly that this package's aws-cdk-lib writes."""
    parsed = parse_version(version)
    return parsed is not None and parsed[0] == REQUIRED_MAJOR and parsed[1] >= MINIMUM_MINOR


def cache_root() -> Path:
    """``$CDK_SERVERLESS_PATTERNS_CACHE`` or ``~/.cache/cdk-serverless-patterns`` (the asset bundles' cache too)."""
    configured = os.environ.get("CDK_SERVERLESS_PATTERNS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "cdk-serverless-patterns"


def cache_prefix(version: str = PINNED_VERSION) -> Path:
    """The ``npm --prefix`` folder of the cached CLI of ``version``."""
    return cache_root() / "cdk-cli" / version


def install_command(version: str = PINNED_VERSION) -> list[str]:
    """The npm command that installs the pinned CLI into the cache (also printed when it cannot run)."""
    return ["npm", "install", "--prefix", str(cache_prefix(version)), f"aws-cdk@{version}", "--no-audit", "--no-fund"]


def _package_version(package_dir: Path) -> str | None:
    try:
        data = json.loads((package_dir / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _node_modules_cli(prefix: Path, source: str) -> CdkCli | None:
    """The CLI installed under ``prefix/node_modules/aws-cdk``, if it is there and complete."""
    package = prefix / "node_modules" / "aws-cdk"
    entry = package / "bin" / "cdk"
    version = _package_version(package)
    if version is None or not entry.is_file():
        return None
    return CdkCli(command=("node", str(entry)), version=version, source=source)


def _path_cli() -> CdkCli | None:
    """``cdk`` on PATH with the version it reports; None when there is none or it does not answer."""
    found = shutil.which("cdk")
    if found is None:
        return None
    try:
        returncode, stdout = _run_bounded([found, "--version"], timeout=VERSION_TIMEOUT, capture=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = stdout.strip().split(" ")[0] if returncode == 0 else ""
    return CdkCli(command=(found,), version=version or "unknown", source="PATH")


def _run_bounded(command: list[str], *, timeout: float, capture: bool, stream: Any = None) -> tuple[int, str]:
    """Runs ``command`` in its own process group; on timeout or Ctrl-C the whole group is killed (a shim's
    children too, which would otherwise hold the pipes open), then the error is raised."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else stream,
        stderr=subprocess.DEVNULL if capture else stream,
        text=True,
        start_new_session=True,
        env={**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true"},
    )
    try:
        stdout, _ = process.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return process.returncode, stdout or ""


def find_cdk_cli(project: Path) -> tuple[CdkCli | None, list[CdkCli]]:
    """The first compatible CLI (project's node_modules, PATH, cache) and the incompatible ones seen before it."""
    rejected: list[CdkCli] = []
    finders: tuple[Callable[[], CdkCli | None], ...] = (
        lambda: _node_modules_cli(project, "node_modules"),
        _path_cli,
        lambda: _node_modules_cli(cache_prefix(), "cache"),
    )
    for finder in finders:
        cli = finder()
        if cli is None:
            continue
        if is_compatible(cli.version):
            return cli, rejected
        rejected.append(cli)
    return None, rejected


@contextlib.contextmanager
def _install_lock(prefix: Path) -> Iterator[None]:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f".{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install_pinned_cli(*, log: object = None) -> CdkCli:
    """Installs the pinned CLI into the per-user cache once (npm's progress shown) and returns it.

    ``log`` is a file for the progress lines (default: ``sys.stderr``). Raises :class:`CdkCliError`
    with the exact command to run when npm is missing or the install fails.
    """
    stream: Any = log if log is not None else sys.stderr
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        stream = None  # a captured stream without a file descriptor: npm writes to the inherited stderr
    prefix = cache_prefix()
    by_hand = " ".join(install_command())
    npm = shutil.which("npm")
    if npm is None:
        raise CdkCliError(
            f"no compatible CDK CLI and no npm to install it: install Node.js with npm, then run {by_hand}"
        )
    with _install_lock(prefix):
        ready = _node_modules_cli(prefix, "cache")
        if ready is not None and ready.version == PINNED_VERSION:
            return ready  # another command installed it while this one waited for the lock
        print(
            f"installing the CDK CLI {PINNED_VERSION} once into {prefix} (npm install) ...",
            file=stream or sys.stderr,
            flush=True,
        )
        staging = Path(tempfile.mkdtemp(prefix=f".{PINNED_VERSION}-", dir=prefix.parent))
        command = [npm, *install_command()[1:]]
        command[command.index("--prefix") + 1] = str(staging)
        try:
            returncode, _ = _run_bounded(command, timeout=INSTALL_TIMEOUT, capture=False, stream=stream)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            raise CdkCliError(
                f"npm install of aws-cdk@{PINNED_VERSION} took over {INSTALL_TIMEOUT:.0f} s: run {by_hand}"
            ) from None
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise CdkCliError(f"cannot run npm ({error}): run {by_hand}") from None
        except BaseException:  # Ctrl-C: npm is stopped above; nothing half-installed stays
            shutil.rmtree(staging, ignore_errors=True)
            raise
        installed = _node_modules_cli(staging, "cache")
        if returncode != 0 or installed is None or installed.version != PINNED_VERSION:
            shutil.rmtree(staging, ignore_errors=True)
            raise CdkCliError(
                f"npm could not install aws-cdk@{PINNED_VERSION} (exit {returncode}; offline?): "
                f"when online, run {by_hand}"
            )
        shutil.rmtree(prefix, ignore_errors=True)
        staging.rename(prefix)
    cli = _node_modules_cli(prefix, "cache")
    if cli is None:  # pragma: no cover - the rename above put it there
        raise CdkCliError(f"the CDK CLI vanished from {prefix}: run {by_hand}")
    print(f"installed the CDK CLI {cli.version} into {prefix}", file=stream or sys.stderr, flush=True)
    return cli
