"""One Lambda execution environment on this machine, without Docker: the Runtime Interface Emulator.

- The AWS Lambda Runtime Interface Emulator (RIE) runs the function with ``awslambdaric`` as its
  runtime and starts the extensions it finds in ``/opt/extensions``, exactly as Lambda does. The
  RIE binary ships inside the ``aws-sam-cli`` wheel on PyPI: :func:`rie_binary` downloads only that
  wheel (``pip download --no-deps``), extracts the binary for this machine's architecture and
  caches it (``$XDG_CACHE_HOME/cdk-serverless-patterns``, else ``~/.cache/...``).
- A layer folder is bind-mounted onto ``/opt`` inside a private mount namespace (``unshare -m`` as
  root, ``unshare -rm`` otherwise), so ``/opt/extensions`` and ``/opt/python`` are what a deployed
  function sees, and nothing outside the environment changes.
- AWS is a :class:`~cdk_serverless_patterns.local.server.MotoServer`; the environment's SDKs reach
  it through ``AWS_ENDPOINT_URL``.

The circuit-breaker extension tests run the real extension process in it; the emulator's Lambda
runner (which also serves the streaming and tenant routes the RIE lacks) builds on the same pieces.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

from cdk_serverless_patterns.local.server import DUMMY_CREDENTIALS, HOST, REGION, MotoServer, free_port

SAM_CLI_VERSION = "1.170.0"  # the aws-sam-cli release whose wheel carries the RIE we run
T = TypeVar("T")


def cache_dir() -> Path:
    """Where downloaded tools are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cdk-serverless-patterns"


def rie_binary() -> Path:
    """The RIE for this machine, from the aws-sam-cli wheel on PyPI (cached, see :func:`cache_dir`)."""
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    folder = cache_dir() / "aws-lambda-rie" / SAM_CLI_VERSION
    target = folder / f"aws-lambda-rie-{arch}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", tmp,
             f"aws-sam-cli=={SAM_CLI_VERSION}"],
            check=True,
            timeout=300,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob("aws_sam_cli-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(f"samcli/local/rapid/aws-lambda-rie-{arch}")
        partial = Path(tmp) / target.name
        partial.write_bytes(data)
        partial.chmod(0o755)
        partial.replace(target)  # atomic: a concurrent run sees all of it or nothing
    return target


def lambda_base_env(*, function_name: str, memory_size: int = 512) -> dict[str, str]:
    """What Lambda sets in every execution environment that code here reads (region, credentials, names)."""
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": "/opt/python",  # what Lambda's Python runtimes put on the path for layers
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_size),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **DUMMY_CREDENTIALS,
    }


class LambdaEnvironment:
    """One Lambda execution environment: RIE + ``awslambdaric`` + ``layer`` at ``/opt`` + a handler.

    Args:
        workdir: A folder for the task root and the RIE's log.
        moto: The AWS the function's SDKs reach.
        handler: Source of ``handler.py``, whose ``handler`` function is invoked.
        layer: The folder mounted at ``/opt`` (a layer's contents: ``extensions/``, ``python/``).
        function_name: ``AWS_LAMBDA_FUNCTION_NAME``. Default: ``"function"``.
        env: More environment variables (they override the defaults).

    ``token`` is a random ``AWS_SESSION_TOKEN`` that tells this environment's processes apart.
    """

    def __init__(
        self,
        workdir: Path,
        moto: MotoServer,
        *,
        handler: str,
        layer: Path,
        function_name: str = "function",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.layer = layer
        self.moto = moto
        self.token = secrets.token_urlsafe(24)
        self.invoke_port = free_port()
        self.api_port = free_port()
        self.log_path = workdir / "rie.log"
        task = workdir / "task"
        task.mkdir(parents=True, exist_ok=True)
        (task / "handler.py").write_text(handler)
        self.task = task
        self.env = {
            **lambda_base_env(function_name=function_name),
            "AWS_SESSION_TOKEN": self.token,
            "AWS_ENDPOINT_URL": moto.endpoint,
            **dict(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self, timeout: float = 15.0) -> Self:
        rie = rie_binary()
        script = "\n".join(
            [
                "set -e",
                f"mount --bind {shlex.quote(str(self.layer))} /opt",
                f"cd {shlex.quote(str(self.task))}",
                f"exec {shlex.quote(str(rie))} --log-level debug"
                f" --runtime-interface-emulator-address {HOST}:{self.invoke_port}"
                f" --runtime-api-address {HOST}:{self.api_port}"
                f" {shlex.quote(sys.executable)} -m awslambdaric handler.handler",
            ]
        )
        unshare = ["unshare", "-m", "--propagation", "private"] if os.geteuid() == 0 else ["unshare", "-rm"]
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*unshare, "sh", "-c", script],
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the RIE exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.invoke_port), timeout=0.2):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"the RIE did not listen within {timeout:g} s:\n{self.log()}")

    def invoke(self, event: Any, timeout: float = 30.0) -> Any:
        """Invokes the function (the first invoke runs the init phase: extensions, then runtime)."""
        request = urllib.request.Request(
            f"http://{HOST}:{self.invoke_port}/2015-03-31/functions/function/invocations",
            data=json.dumps(event).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def connection(self, port: int, timeout: float = 10.0) -> http.client.HTTPConnection:
        """An HTTP connection to ``port`` on the loopback interface (where extensions listen)."""
        return http.client.HTTPConnection(HOST, port, timeout=timeout)

    def pids(self, marker: bytes) -> list[int]:
        """Processes of this environment whose command line contains ``marker`` (an extension's module)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue
            if any(marker in part for part in cmdline) and f"AWS_SESSION_TOKEN={self.token}".encode() in environ:
                pids.append(int(proc.name))
        return pids

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def shutdown(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to the RIE: it sends SHUTDOWN to the extensions and waits for them."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.process.returncode

    def kill(self, marker: bytes | None = None) -> None:
        """Teardown: shutdown, then whatever of ``marker`` survived SHUTDOWN (it should not) is killed."""
        self.shutdown()
        for pid in self.pids(marker) if marker else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_for(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.02) -> T:
    """Polls ``predicate`` until it returns something true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@contextlib.contextmanager
def lambda_environment(
    workdir: Path, moto: MotoServer, *, kill_marker: bytes | None = None, **kwargs: Any
) -> Iterator[LambdaEnvironment]:
    """A started :class:`LambdaEnvironment`, killed on exit (with the processes of ``kill_marker``)."""
    environment = LambdaEnvironment(workdir, moto, **kwargs).start()
    try:
        yield environment
    finally:
        environment.kill(kill_marker)
