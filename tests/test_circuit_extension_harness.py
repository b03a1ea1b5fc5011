"""Harness for the circuit-breaker extension tests: a real Lambda environment on this machine.

- The AWS Lambda Runtime Interface Emulator (RIE) runs the function with ``awslambdaric`` as its
  runtime and starts the extensions it finds in ``/opt/extensions``, exactly as Lambda does.
  The RIE binary ships inside the ``aws-sam-cli`` wheel on PyPI: ``rie_binary()`` downloads only
  that wheel (``pip download --no-deps``), extracts the binary for this machine's architecture
  and caches it under ``.cache/`` (gitignored), so a fresh machine gets it from PyPI by itself.
- The layer folder ``lambda_src/circuit_breaker_extension`` is bind-mounted onto ``/opt`` inside a
  private mount namespace (``unshare -m`` as root, ``unshare -rm`` otherwise), so ``/opt/extensions``
  and ``/opt/python`` are what a deployed function sees, and nothing outside the test changes.
- DynamoDB is moto server on a free localhost port (``AWS_ENDPOINT_URL_DYNAMODB``).

This module holds no tests; ``test_circuit_extension.py`` and ``test_circuit_client.py`` use it.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

from cdk_serverless_patterns.testing.moto import create_circuit_table

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "lambda_src" / "circuit_breaker_extension"
LAYER_PYTHON = LAYER / "python"
SAM_CLI_VERSION = "1.170.0"  # the aws-sam-cli release whose wheel carries the RIE we run
RIE_CACHE = ROOT / ".cache" / "aws-lambda-rie" / SAM_CLI_VERSION
TOKEN_HEADER = "X-Circuit-Breaker-Token"

if str(LAYER_PYTHON) not in sys.path:
    sys.path.insert(0, str(LAYER_PYTHON))
#: The layer's function-side client, imported from python/ as a function (or a user's test) would.
client_module = importlib.import_module("circuit_breaker_client")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rie_binary() -> Path:
    """The RIE for this machine, from the aws-sam-cli wheel on PyPI (cached under .cache/)."""
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    target = RIE_CACHE / f"aws-lambda-rie-{arch}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    RIE_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RIE_CACHE) as tmp:
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


class MotoServer:
    """moto server on a free localhost port, with a count of the GetItem calls it answered."""

    get_item_calls = 0
    _patched = False

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.table = f"circuit-breaker-state-{self.port}"  # moto's data is per process: one table per server
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.running = False
        MotoServer._patch_get_item()

    @classmethod
    def _patch_get_item(cls) -> None:
        """Counts GetItem requests moto handles (instrumentation of moto, not of the extension)."""
        if cls._patched:
            return
        from moto.dynamodb.responses import DynamoHandler

        original = DynamoHandler.get_item

        def counting_get_item(self: Any) -> Any:
            MotoServer.get_item_calls += 1
            return original(self)

        DynamoHandler.get_item = counting_get_item
        cls._patched = True

    def start(self) -> None:
        self._server.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._server.stop()
            self.running = False

    def restart(self) -> None:
        """A new server on the same port (moto's state lives in this process, so the data stays)."""
        from moto.server import ThreadedMotoServer

        self.stop()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.start()

    def dynamodb(self) -> Any:
        return boto3.client("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1")

    def create_table(self) -> None:
        create_circuit_table(self.dynamodb(), self.table)

    def put_circuit(self, circuit_id: str, state: str, version: int, **extra: int | str) -> None:
        item: dict[str, Any] = {
            "circuitId": {"S": circuit_id},
            "state": {"S": state},
            "version": {"N": str(version)},
            "updatedAt": {"N": str(int(time.time() * 1000))},
            "updatedBy": {"S": "health-checker"},
        }
        for key, value in extra.items():
            item[key] = {"N": str(value)} if isinstance(value, int) else {"S": value}
        self.dynamodb().put_item(TableName=self.table, Item=item)

    def circuit(self, circuit_id: str) -> dict[str, Any]:
        raw = self.dynamodb().get_item(TableName=self.table, Key={"circuitId": {"S": circuit_id}}, ConsistentRead=True)
        MotoServer.get_item_calls -= 1  # the test's own read does not count
        return {k: (v.get("S") if "S" in v else int(v["N"]) if "N" in v else v) for k, v in raw["Item"].items()}


DEFAULT_HANDLER = """
import time
import circuit_breaker_client as cb

def handler(event, context):
    client = cb.default_client()
    action = event.get("action", "status")
    if action == "status":
        return [cb.default_client().status(c).__dict__ for c in event["circuits"]]
    if action == "protected":
        calls = []

        @cb.protected(event["circuit"], fallback=lambda: "fallback")
        def downstream():
            calls.append(1)
            if event.get("fail"):
                raise RuntimeError("downstream failed")
            return "called"

        results = []
        for _ in range(event.get("times", 1)):
            try:
                results.append(downstream())
            except RuntimeError as error:
                results.append(f"error: {error}")
        return {"results": results, "calls": len(calls), "policy": client.policy}
    raise ValueError(action)
"""


class LambdaEnvironment:
    """One Lambda execution environment: RIE + awslambdaric + the layer at /opt + a handler."""

    def __init__(
        self, workdir: Path, moto: MotoServer, *, handler: str = DEFAULT_HANDLER, layer: Path = LAYER, **env: str
    ) -> None:
        self.workdir = workdir
        self.layer = layer  # what is mounted at /opt: the layer folder, or a synthesized asset of it
        self.moto = moto
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.invoke_port = free_port()
        self.api_port = free_port()
        self.log_path = workdir / "rie.log"
        task = workdir / "task"
        task.mkdir(parents=True, exist_ok=True)
        (task / "handler.py").write_text(handler)
        self.task = task
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "PYTHONPATH": "/opt/python",  # what Lambda's Python runtimes put on the path for layers
            "AWS_LAMBDA_FUNCTION_NAME": "protected-function",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": self.token,
            "AWS_ENDPOINT_URL_DYNAMODB": moto.endpoint,
            "CIRCUIT_BREAKER_TABLE": moto.table,
            "CIRCUIT_BREAKER_PORT": str(self.port),
            "CIRCUIT_BREAKER_CACHE_TTL_MS": "2000",
            "CIRCUIT_BREAKER_CIRCUITS": "",
            "CIRCUIT_BREAKER_ON_EXTENSION_ERROR": "fail_open",
        }
        self.env.update(env)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self) -> LambdaEnvironment:
        rie = rie_binary()
        script = "\n".join(
            [
                "set -e",
                f"mount --bind {shlex.quote(str(self.layer))} /opt",
                f"cd {shlex.quote(str(self.task))}",
                f"exec {shlex.quote(str(rie))} --log-level debug"
                f" --runtime-interface-emulator-address 127.0.0.1:{self.invoke_port}"
                f" --runtime-api-address 127.0.0.1:{self.api_port}"
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
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the RIE exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.invoke_port), timeout=0.2):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"the RIE did not listen within 15 s:\n{self.log()}")

    def invoke(self, event: dict[str, Any]) -> Any:
        """Invokes the function (the first invoke runs the init phase: extensions, then runtime)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.invoke_port}/2015-03-31/functions/function/invocations",
            data=json.dumps(event).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def ask(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request straight to the extension's port (as a function would, with its token)."""
        own = conn is None
        conn = conn or self.connection()
        headers = {TOKEN_HEADER: self.token if token is None else token}
        if token == "":
            headers = {}
        data = json.dumps(body).encode() if body is not None else None
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read() or b"{}")
            return response.status, payload
        finally:
            if own:
                conn.close()

    def extension_pids(self) -> list[int]:
        """Processes running the extension (children of the RIE, whatever their parent shell)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue
            if b"circuit_breaker_ext" in cmdline and f"AWS_SESSION_TOKEN={self.token}".encode() in environ:
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

    def kill(self) -> None:
        """Teardown: whatever survived SHUTDOWN (it should not) is killed by process id."""
        self.shutdown()
        for pid in self.extension_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def lambda_environment(workdir: Path, moto: MotoServer, **kwargs: Any) -> Iterator[LambdaEnvironment]:
    environment = LambdaEnvironment(workdir, moto, **kwargs).start()
    try:
        yield environment
    finally:
        environment.kill()


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
