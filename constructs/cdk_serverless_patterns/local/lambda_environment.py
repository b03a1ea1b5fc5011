"""One Lambda execution environment on this machine, without Docker, on the emulator's Lambda runner.

- :class:`LambdaEnvironment` runs one function (``handler.py``'s ``handler``) with a layer folder
  at ``/opt`` in a :class:`~cdk_serverless_patterns.local.lambda_runtime.LambdaRunner`: the
  runner serves the Runtime API and the Extensions API in Python, starts the extensions it finds
  in ``/opt/extensions`` before ``python -m awslambdaric``, and mounts the layer at ``/opt`` in a
  private mount namespace (``unshare -m`` as root, ``unshare -rm`` otherwise; see the runner's
  docstring for the fallback). It replaced the Runtime Interface Emulator (RIE) binary from the
  aws-sam-cli wheel: no download, and the streaming and tenant routes the RIE lacks.
- What the RIE did that callers rely on is kept: the first :meth:`~LambdaEnvironment.invoke` runs
  the init phase and a failed init raises ``urllib.error.HTTPError`` 502 (the RIE's Bad Gateway);
  extensions registering log ``External agent <name> (<id>) registered, subscribed to [...]``;
  :meth:`~LambdaEnvironment.shutdown` sends SHUTDOWN with the RIE's reason ``SandboxTerminated``
  (Lambda itself says ``spindown``: :attr:`LambdaEnvironment.shutdown_reason`).
- AWS is a :class:`~cdk_serverless_patterns.local.server.MotoServer`; the environment's SDKs reach
  it through ``AWS_ENDPOINT_URL``.

The circuit-breaker extension tests run the real extension process in it.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import secrets
import signal
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping
from email.message import Message
from pathlib import Path
from typing import Any, Self, TypeVar

from cdk_serverless_patterns.local.lambda_runtime import FunctionSpec, LambdaRunner
from cdk_serverless_patterns.local.server import DUMMY_CREDENTIALS, HOST, REGION, MotoServer

T = TypeVar("T")
#: ``AWS_LAMBDA_FUNCTION_TIMEOUT`` of the RIE, which this class stands in for.
DEFAULT_TIMEOUT = 300.0


def cache_dir() -> Path:
    """Where downloaded tools are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cdk-serverless-patterns"


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
    """One Lambda execution environment: the runner + ``awslambdaric`` + ``layer`` at ``/opt`` + a handler.

    Args:
        workdir: A folder for the task root, the environment's ``/tmp`` and its log.
        moto: The AWS the function's SDKs reach.
        handler: Source of ``handler.py``, whose ``handler`` function is invoked.
        layer: The folder mounted at ``/opt`` (a layer's contents: ``extensions/``, ``python/``).
        function_name: ``AWS_LAMBDA_FUNCTION_NAME``. Default: ``"function"``.
        env: More environment variables (they override the defaults).

    ``token`` is a random ``AWS_SESSION_TOKEN`` that tells this environment's processes apart.
    """

    #: The ``shutdownReason`` :meth:`shutdown` sends (the RIE's; Lambda's is ``spindown``).
    shutdown_reason = "SandboxTerminated"

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
        self.log_path = workdir / "runner"
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
        self.spec = FunctionSpec(
            name=function_name,
            arn=f"arn:aws:lambda:{REGION}:123456789012:function:{function_name}",
            handler="handler.handler",
            runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
            code_dir=task,
            layer_dirs=(layer,),
            environment=self.env,
            timeout=DEFAULT_TIMEOUT,
            memory_mb=int(self.env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")),
        )
        self.runner: LambdaRunner | None = None
        self._stopped = False

    def start(self, timeout: float = 15.0) -> Self:
        """Makes the environment ready to invoke (the init phase runs with the first invoke)."""
        if self.runner is None:
            self.runner = LambdaRunner(aws_env={"AWS_ENDPOINT_URL": self.moto.endpoint}, workdir=self.log_path)
        return self

    def invoke(self, event: Any, timeout: float = 30.0) -> Any:
        """Invokes the function (the first invoke runs the init phase: extensions, then runtime).

        Returns the decoded payload (a function error's payload too, as the RIE did); a failed
        init phase raises ``urllib.error.HTTPError`` 502, an invoke longer than ``timeout``
        raises ``TimeoutError`` (and resets the environment).
        """
        if self.runner is None:
            raise RuntimeError("start() the environment first")
        result = self.runner._invoke(self.spec, json.dumps(event).encode(), timeout=timeout)
        url = f"http://{HOST}/2015-03-31/functions/function/invocations"
        if result.init_failed:
            raise urllib.error.HTTPError(url, 502, "Bad Gateway", Message(), io.BytesIO(result.payload))
        if result.function_error and b'"Sandbox.Timedout"' in result.payload:
            raise TimeoutError(f"the invoke took longer than {timeout:g} s: {result.payload.decode()}")
        return json.loads(result.payload)

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
        """Everything the environment's processes wrote, with the runner's lines (START, agents...)."""
        files = sorted(self.log_path.glob("envs/*/output.log"), key=lambda path: path.stat().st_mtime_ns)
        return "".join(path.read_text(errors="replace") for path in files)

    def shutdown(self, timeout: float = 10.0) -> int | None:
        """SHUTDOWN to the extensions (:attr:`shutdown_reason`), SIGTERM to the runtime, then all killed.

        Returns 0 once stopped (``None`` if the environment was never started).
        """
        if self.runner is None:
            return None
        if not self._stopped:
            self.runner.shutdown(timeout, reason=self.shutdown_reason)
            self._stopped = True
        return 0

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
