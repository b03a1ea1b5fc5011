"""Lambda functions run their deployed code: warm execution environments as local processes.

moto 5.2.5 runs Lambda code only in Docker (``LambdaFunction._invoke_lambda``); without Docker it
answers every invoke with an error. We run the code as Lambda does, without containers:

- :class:`LambdaRunner` keeps a pool of execution environments, one per function (one per
  ``(function, tenant)`` for ``PER_TENANT`` functions). An environment is a group of processes:
  the external extensions found in ``/opt/extensions`` (started first, as Lambda does), then the
  runtime, ``python -m awslambdaric <handler>`` (``bootstrap`` for ``provided.*``; for ``nodejs*``
  ``node node_runtime/bootstrap.mjs``, our own Runtime API client: see :func:`node_path`), behind
  ``AWS_LAMBDA_EXEC_WRAPPER`` when the function sets it. They talk to the environment's own Runtime
  API and Extensions API (``runtime_api.py``, standard library ``http.server``). Init completes
  when every registered extension and the runtime have called ``next``; an invoke phase ends when
  the runtime has answered and every extension subscribed to INVOKE has called ``next`` again. As
  Lambda, the caller gets the runtime's answer without waiting for the extensions (after
  :data:`EXTENSION_GRACE`, 0.1 s, which keeps the environment warm for a sequential invoke when
  they are quick); the environment stays busy until they are done, and is shut down (SHUTDOWN
  reason ``timeout``) if they are not done by the function's timeout. (The legacy
  ``lambda_environment`` wrapper still waits for them, as its tests expect.)
- Sequential invokes reuse a warm environment (no re-init, module state survives); concurrent
  invokes of one function get another environment, up to ``max_environments_per_function``, then
  a ``TooManyRequestsException`` result (HTTP 429), as Lambda's concurrency limit answers.
- An invoke longer than the function's timeout kills the environment (its process group: runtime
  and extensions, after a SHUTDOWN event with reason ``timeout``) and answers ``Sandbox.Timedout``;
  a runtime that exits mid-invoke answers ``Runtime.ExitError``; the next invoke cold-starts.
- Layers are merged into one folder per function (later layers win, as Lambda) and bind-mounted
  onto ``/opt`` (read-only, as in Lambda) in a private mount namespace: a holder process
  (``unshare -m`` as root, ``unshare -rm`` otherwise) mounts it and every process of the
  environment joins it with ``nsenter``. Merging never writes through an earlier layer's file (the
  layers' unzipped copies are shared by every function that uses them). Where ``unshare`` is
  refused (or ``CDK_SP_LAMBDA_ISOLATION=fallback``) the
  *fallback* runs the same processes without a namespace: the merged folder's ``python/`` is on
  ``PYTHONPATH``, extensions start from the merged folder's ``extensions/``, and
  ``LAMBDA_LOCAL_OPT`` names the merged folder; what differs: ``/opt`` itself is absent (code that
  opens ``/opt/...`` by absolute path fails). :func:`isolation_mode` logs which mode is used.
- Every process of an environment is reaped when it ends: its process group, the processes whose
  environment carries its marker, and (namespace mode) every process left in its mount namespace,
  so that a daemon that called ``setsid`` and cleared its environment goes too (the fallback cannot
  find such a process). An invoke racing :meth:`LambdaRunner.shutdown` starts nothing.
- The Invoke API's own checks come first, as Lambda's: a payload that is not JSON is a 400
  ``InvalidRequestContentException``; a code or layer zip that does not unzip, a 502
  ``InvalidZipFileException`` (moto 5.2.5 accepts such a zip at ``CreateFunction``). The
  function's time (``Lambda-Runtime-Deadline-Ms``) starts after the init phase.
- Not emulated: memory limits (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` is only reported), the
  read-only file system (``/tmp`` is per environment through ``TMPDIR``, not a mount), the Telemetry
  and Logs APIs, SnapStart, provisioned concurrency, and other runtimes than Python and
  ``provided.*`` (answered ``Runtime.InvalidRuntime``). The interpreter is this venv's Python
  whatever ``python3.X`` the function names, so the venv's packages are importable too.

:func:`route_moto_invoke` patches ``moto.awslambda.models.LambdaFunction.invoke(self, body,
request_headers, response_headers)`` to run the function here (:func:`spec_from_moto` unzips the
code and layers, cached by SHA-256). It sets ``x-amz-function-error: Unhandled`` (moto says
``Handled``; Lambda has reported ``Unhandled`` for every function error since 2020) and
``x-amz-log-result`` (``LogType=Tail``), raises moto's JSON errors for the Invoke API's own
errors (tenant id, payload size, throttling), and runs ``Event`` invocations in a thread.
moto 5.2.5 drops ``TenancyConfig`` from ``CreateFunction``: the patch keeps it on the function.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import queue
import re
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdk_serverless_patterns.local.runtime_api import ApiState, Extension, Invocation, RuntimeApi

LOG = logging.getLogger(__name__)

#: The Invoke API's limit of a synchronous request payload.
REQUEST_LIMIT = 6_291_456
#: How long an answered invoke waits for its extensions before the answer goes back without them
#: (Lambda answers at once; a short wait keeps a warm environment for the next sequential invoke).
EXTENSION_GRACE = 0.1
#: Lambda's limit of the init phase of an on-demand function.
INIT_TIMEOUT = 10.0
#: How much of an invoke's log ``LogType=Tail`` returns.
TAIL_BYTES = 4096
#: The variable that marks every process of an environment (how stray processes are found and reaped).
ENV_MARKER = "_CDK_SP_LAMBDA_ENV"
ISOLATION_VARIABLE = "CDK_SP_LAMBDA_ISOLATION"
_KEEP_LOG = 1 << 20  # bytes of an environment's output kept in memory (all of it goes to its log file)
#: The Node.js runtime (``nodejs*`` functions): our Runtime API client, run by the host's ``node``.
NODE_BOOTSTRAP = Path(__file__).with_name("node_runtime") / "bootstrap.mjs"
#: Folders (``:``-separated) that play the managed Node.js runtime's own ``node_modules`` (where Lambda
#: has the AWS SDK v3, ``@aws-sdk/*``); default: ``./node_modules`` when it holds ``@aws-sdk``.
NODE_MODULES_VARIABLE = "CDK_SP_NODE_MODULES"


@dataclass(frozen=True)
class FunctionSpec:
    """What an execution environment runs: a deployed function's configuration and unzipped code."""

    name: str
    arn: str
    handler: str
    runtime: str
    code_dir: Path
    layer_dirs: tuple[Path, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 3.0
    memory_mb: int = 128
    per_tenant: bool = False
    streaming: bool = False


@dataclass
class InvokeResult:
    """One invoke's answer, as the Invoke API gives it.

    ``function_error`` is ``None`` or ``"Unhandled"`` (``X-Amz-Function-Error``). ``status_code`` is
    200 unless the Invoke API itself refused the call (400 tenant id, 413 payload, 429 throttled,
    500 runner shut down): then ``payload`` is ``{"errorType": <exception>, "errorMessage": ...}``
    and ``function_error`` is ``"Unhandled"`` too, so a caller that only looks there still sees
    an error. ``init_failed``: the init phase failed (the error is the init error).
    """

    payload: bytes
    function_error: str | None
    log_tail: str
    request_id: str
    duration_ms: float
    init_ms: float | None
    status_code: int = 200
    init_failed: bool = False

    def json(self) -> Any:
        """The payload, decoded."""
        return json.loads(self.payload)


@dataclass(frozen=True)
class EnvironmentInfo:
    """A snapshot of one execution environment."""

    key: tuple[str, str | None]  # (function name, tenant id)
    environment_id: str  # the value of ENV_MARKER in its processes' environment
    pids: tuple[int, ...]  # every process: the namespace holder, extensions, runtime
    runtime_pid: int | None
    extension_pids: tuple[int, ...]
    state: str  # cold, init, idle, busy, dead
    invocations: int
    mode: str  # namespace or fallback
    tmpdir: Path
    log_path: Path


class StreamingInvoke:
    """A streamed invoke: iterate to get the body's chunks as the runtime posts them.

    After the iteration ends, ``error_type``/``error_body`` hold the error, if any: the
    ``Lambda-Runtime-Function-Error-Type``/``-Body`` trailers (the body decoded from base64 to its
    JSON text), an ``/error`` post, or the runner's own (``Runtime.ExitError``, ``Sandbox.Timedout``,
    or an Invoke API error such as ``InvalidParameterValueException``).
    """

    def __init__(self, invocation: Invocation, limit: float) -> None:
        self._invocation = invocation
        self._limit = limit
        self._finished = threading.Event()
        self.result: InvokeResult | None = None  # set when the environment is done with the invoke

    @property
    def request_id(self) -> str:
        return self._invocation.request_id

    @property
    def error_type(self) -> str | None:
        return self._invocation.error_type

    @property
    def error_body(self) -> str | None:
        return self._invocation.error_body

    def __iter__(self) -> Iterator[bytes]:
        deadline = time.monotonic() + self._limit
        while True:
            try:
                chunk = self._invocation.chunks.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no end of the stream of {self.request_id} within {self._limit:g} s") from None
            if chunk is None:
                return
            yield chunk

    def wait(self, timeout: float | None = None) -> InvokeResult | None:
        """Waits until the environment is done (extensions included); returns the buffered view."""
        self._finished.wait(self._limit if timeout is None else timeout)
        return self.result

    def _done(self, result: InvokeResult) -> None:
        self.result = result
        self._finished.set()


# -- isolation ----------------------------------------------------------------------------------
_MODE: str | None = None
_MODE_LOCK = threading.Lock()


def _unshare_argv() -> list[str]:
    return ["unshare", "-m", "--propagation", "private"] if os.geteuid() == 0 else ["unshare", "-rm"]


def isolation_mode() -> str:
    """``"namespace"`` (layers at ``/opt`` in a private mount namespace) or ``"fallback"``; probed once."""
    global _MODE
    with _MODE_LOCK:
        if _MODE is None:
            wanted = os.environ.get(ISOLATION_VARIABLE, "")
            mode = "fallback"
            if wanted != "fallback" and shutil.which("unshare") and shutil.which("nsenter") and Path("/opt").is_dir():
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    probe = subprocess.run(
                        [*_unshare_argv(), "sh", "-c", "mount --bind / /opt"],
                        capture_output=True,
                        timeout=10,
                        check=False,
                    )
                    if probe.returncode == 0:
                        mode = "namespace"
            how = (
                " ".join(_unshare_argv()) if mode == "namespace" else "no namespace: /opt absent, see LAMBDA_LOCAL_OPT"
            )
            LOG.info("Lambda environments: layers in %s mode (%s)", mode, how)
            _MODE = mode
        return _MODE


def _clear(path: Path) -> None:
    """Removes whatever ``path`` is (file, symlink or folder), if anything."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _overlay(layer: Path, target: Path) -> None:
    """Copies ``layer`` over ``target``: what the layer has replaces what is there (files, links, folders).

    Files are hard-linked where possible. A file that exists is unlinked first, never written
    through: it may be a hard link into an earlier layer's cached copy.
    """
    for folder, dirs, files in os.walk(layer):
        source = Path(folder)
        destination = target / source.relative_to(layer)
        for name in [*dirs, *files]:
            src, dst = source / name, destination / name
            if src.is_symlink():
                _clear(dst)
                os.symlink(os.readlink(src), dst)
            elif src.is_dir():
                if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
                    _clear(dst)
                dst.mkdir(exist_ok=True)
            else:
                _clear(dst)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
        dirs[:] = [name for name in dirs if not (source / name).is_symlink()]


def merge_layers(layer_dirs: tuple[Path, ...], root: Path) -> Path:
    """One folder with the layers' contents, later layers winning (cached under ``root``)."""
    if len(layer_dirs) == 1:
        return layer_dirs[0]
    digest = hashlib.sha256("\0".join(str(p.resolve()) for p in layer_dirs).encode()).hexdigest()[:24]
    target = root / digest
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{digest}.{uuid.uuid4().hex}"
    partial.mkdir()
    for layer in layer_dirs:
        _overlay(layer, partial)
    try:
        partial.rename(target)
    except OSError:  # another thread merged the same layers first
        shutil.rmtree(partial, ignore_errors=True)
    return target


def node_path(spec: FunctionSpec, opt: str) -> list[str]:
    """``NODE_PATH`` of a ``nodejs*`` function, in Lambda's order.

    Lambda: ``/opt/nodejs/node<major>/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:
    /var/runtime:/var/task``. The runtime's ``node_modules`` (the AWS SDK v3) is not on this machine's
    ``node``: the folders named by ``CDK_SP_NODE_MODULES``, else ``./node_modules`` when it has ``@aws-sdk``.
    """
    major = re.sub(r"\D", "", spec.runtime.split(".")[0]) or "20"
    own = [p for p in os.environ.get(NODE_MODULES_VARIABLE, "").split(":") if p]
    if not own and (Path.cwd() / "node_modules" / "@aws-sdk").is_dir():
        own = [str(Path.cwd() / "node_modules")]
    return [f"{opt}/nodejs/node{major}/node_modules", f"{opt}/nodejs/node_modules", *own, str(spec.code_dir)]


def _exit_text(code: int | None) -> str:
    """Go's ``ProcessState`` text, which Lambda's messages use: ``exit status 1``, ``signal: killed``."""
    if code is None:
        return "unknown"
    if code < 0:
        name = signal.strsignal(-code) or f"signal {-code}"
        return f"signal: {name.lower()}"
    return f"exit status {code}"


def _error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _as_error_json(error_type: str, body: str | None) -> bytes:
    """An error body as the caller receives it: the runtime's JSON, or one built around its text."""
    if body:
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                return json.dumps(parsed).encode()
    return _error_payload(error_type, body or error_type)


@dataclass
class _Outcome:
    payload: bytes
    function_error: str | None
    init_ms: float | None
    init_failed: bool = False
    # The runtime answered but an extension subscribed to INVOKE has not called next yet: the caller
    # has its answer, the environment stays busy until the extensions are done (or the deadline).
    extensions_pending_until: float | None = None


class _Environment:
    """One execution environment: its processes, its Runtime/Extensions API, its log."""

    def __init__(self, runner: LambdaRunner, spec: FunctionSpec, tenant_id: str | None, index: int) -> None:
        self.runner = runner
        self.spec = spec
        self.tenant_id = tenant_id
        self.key = (spec.name, tenant_id)
        self.id = uuid.uuid4().hex
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name)[:60]
        self.dir = runner.workdir / "envs" / f"{safe}-{index}-{self.id[:8]}"
        self.tmpdir = self.dir / "tmp"
        self.tmpdir.mkdir(parents=True)
        self.log_path = self.dir / "output.log"
        self.mode = isolation_mode()
        self.state = "cold"
        self.claimed = False  # an invoke holds it (the runner's lock guards this flag)
        self.retired = False  # its function was deleted: shut down once the invoke under way ends
        self.invocations = 0
        self.opt = merge_layers(spec.layer_dirs, runner.workdir / "opt") if spec.layer_dirs else self.dir / "opt"
        self.opt.mkdir(parents=True, exist_ok=True)
        self.holder: subprocess.Popen[bytes] | None = None
        self.mount_namespace: str | None = None  # "mnt:[inode]" of the holder's namespace (namespace mode)
        self.runtime: subprocess.Popen[bytes] | None = None
        self.extensions: dict[str, subprocess.Popen[bytes]] = {}
        self.exit_codes: dict[int, int] = {}
        self._log_lock = threading.Lock()
        self._log = bytearray()
        self._log_total = 0
        self._log_file = self.log_path.open("ab")
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)  # never block while holding the log's lock
        self._fds_closed = False
        self._term_lock = threading.Lock()
        self.api_state = ApiState(function_name=spec.name, handler=spec.handler, log=self.note)
        self.api = RuntimeApi(self.api_state)
        threading.Thread(target=self._read_output, name=f"lambda-log-{self.id[:8]}", daemon=True).start()

    # -- logs ---------------------------------------------------------------------------------
    def _pump(self) -> bool:
        """Moves what the processes wrote into the log (lock held); False at end of file."""
        if self._fds_closed:
            return False
        size = struct.unpack("i", fcntl.ioctl(self._read_fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        if not size:
            return True
        data = os.read(self._read_fd, size)
        self._append(data)
        return bool(data)

    def _append(self, data: bytes) -> None:
        self._log += data
        self._log_total += len(data)
        if len(self._log) > 2 * _KEEP_LOG:
            del self._log[:-_KEEP_LOG]
        with contextlib.suppress(ValueError, OSError):
            self._log_file.write(data)
            self._log_file.flush()

    def _read_output(self) -> None:
        fd = self._read_fd
        while True:
            try:
                ready, _, _ = select.select([fd], [], [], 0.5)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            with self._log_lock:
                if self._fds_closed:
                    return
                try:
                    size = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
                    data = os.read(fd, max(size, 1))
                except BlockingIOError:
                    continue  # note() took it first
                except OSError:
                    return
                if not data:
                    return
                self._append(data)

    def note(self, line: str) -> None:
        """A line of the runner's own (as Lambda's START/END/REPORT and agent lines)."""
        with self._log_lock:
            with contextlib.suppress(OSError):
                self._pump()
            self._append(line.encode() + b"\n")

    def log_offset(self) -> int:
        with self._log_lock:
            return self._log_total

    def log_since(self, offset: int) -> str:
        """What was logged since ``offset``, at most the last :data:`TAIL_BYTES`."""
        with self._log_lock:
            with contextlib.suppress(OSError):
                self._pump()
            new = self._log_total - offset
            data = bytes(self._log[-min(new, TAIL_BYTES, len(self._log)) :]) if new > 0 else b""
        return data.decode(errors="replace")

    # -- processes ----------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        spec = self.spec
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        opt = "/opt" if self.mode == "namespace" else str(self.opt)
        versions = [spec.runtime] if spec.runtime.startswith("python") else []
        versions += [version] if version not in versions else []
        paths = [str(spec.code_dir), *(f"{opt}/python/lib/{v}/site-packages" for v in versions), f"{opt}/python"]
        own_path = spec.environment.get("PYTHONPATH")
        region = spec.arn.split(":")[3] if spec.arn.count(":") >= 6 else None
        region = region or self.runner.aws_env.get("AWS_REGION") or "us-east-1"
        stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{self.id}"
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/opt/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            # Lambda always gives the execution role's temporary credentials, session token included (code
            # such as the circuit-breaker extension relies on it); the environment given may set its own.
            "AWS_SESSION_TOKEN": f"local-{self.id}",
            **spec.environment,
            **self.runner.aws_env,
            "PYTHONPATH": ":".join([own_path, *paths] if own_path else paths),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "_HANDLER": spec.handler,
            "TMPDIR": str(self.tmpdir),
            ENV_MARKER: self.id,
        }
        if self.mode == "fallback":
            env["LAMBDA_LOCAL_OPT"] = str(self.opt)
        if spec.runtime.startswith("nodejs") and "NODE_PATH" not in spec.environment:
            env["NODE_PATH"] = ":".join(node_path(spec, opt))
        return env

    def _start_holder(self) -> None:
        """The process group leader (and, in namespace mode, the mount namespace with /opt)."""
        # The holder outlives nothing: once this process is gone (even SIGKILLed) it kills its group.
        watch = 'while kill -0 "$2" 2>/dev/null; do sleep 1; done; kill -KILL 0'
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), ENV_MARKER: self.id}
        if self.mode == "namespace":
            # /opt is read-only, as in Lambda (and the merged layers are hard links into the layer cache).
            mount = 'mount --bind "$1" /opt && { mount -o remount,bind,ro /opt || true; }'
            script = f"{mount} || exit 1; echo ready; {watch}"
            argv = [*_unshare_argv(), "sh", "-c", script, "sh", str(self.opt), str(os.getpid())]
            with self._term_lock:
                if self.state == "dead":
                    raise OSError("the execution environment shut down")
                holder = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=self._write_fd,
                    process_group=0,
                )
                self.holder = holder
            assert holder.stdout is not None
            ready, _, _ = select.select([holder.stdout], [], [], INIT_TIMEOUT)
            line = holder.stdout.readline() if ready else b""
            holder.stdout.close()
            if line.strip() != b"ready":
                raise OSError(f"the mount namespace did not start ({line!r}): see {self.log_path}")
            with contextlib.suppress(OSError):
                self.mount_namespace = os.readlink(f"/proc/{holder.pid}/ns/mnt")
        else:
            argv = ["sh", "-c", watch, "sh", "", str(os.getpid())]
            with self._term_lock:
                if self.state == "dead":
                    raise OSError("the execution environment shut down")
                self.holder = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=self._write_fd,
                    process_group=0,
                )

    def _spawn(self, argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        assert self.holder is not None
        prefix: list[str] = []
        if self.mode == "namespace":
            prefix = ["nsenter", "-t", str(self.holder.pid), "-m"]
            if os.geteuid() != 0:
                prefix[1:1] = ["-U", "--preserve-credentials"]
        with self._term_lock:  # either terminate() sees this process, or it is not started
            if self.state == "dead":
                raise OSError("the execution environment shut down")
            process = subprocess.Popen(
                [*prefix, *argv],
                env=dict(env),
                cwd=self.spec.code_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._write_fd,
                stderr=self._write_fd,
                process_group=self.holder.pid,
            )
        threading.Thread(target=self._watch, args=(process,), name=f"lambda-proc-{process.pid}", daemon=True).start()
        return process

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self.api_state.cond:
            self.exit_codes[process.pid] = code
            self.api_state.cond.notify_all()

    def wait_ready(self, timeout: float) -> bool:
        """A warm environment is ready when its runtime asked for the next invocation again.

        (Lambda answers the caller as soon as the response is in, and reuses the environment only
        once the runtime is back in ``next``: a runtime that exits after answering is reset.)
        """
        st = self.api_state
        deadline = time.monotonic() + timeout
        with st.cond:
            while not st.runtime_waiting and self._exited(self.runtime) is None and time.monotonic() < deadline:
                st.cond.wait(max(0.005, min(0.5, deadline - time.monotonic())))
            return st.runtime_waiting and self._exited(self.runtime) is None

    def runtime_gone(self) -> bool:
        """The runtime was started and has exited."""
        return self.runtime is not None and self.runtime.poll() is not None

    def _exited(self, process: subprocess.Popen[bytes] | None) -> int | None:
        """The exit code of ``process`` once its watcher saw it exit (lock held)."""
        return None if process is None else self.exit_codes.get(process.pid)

    def _runtime_argv(self, env: Mapping[str, str]) -> list[str] | None:
        spec = self.spec
        if spec.runtime.startswith("python"):
            argv = [sys.executable, "-m", "awslambdaric", spec.handler]
        elif spec.runtime.startswith("nodejs"):
            node = shutil.which("node")
            if node is None:
                return None
            argv = [node, str(NODE_BOOTSTRAP)]
        elif spec.runtime.startswith("provided"):
            task = spec.code_dir / "bootstrap"
            opt = "/opt/bootstrap" if self.mode == "namespace" else str(self.opt / "bootstrap")
            argv = [str(task) if task.exists() else opt]
        else:
            return None
        wrapper = env.get("AWS_LAMBDA_EXEC_WRAPPER")
        if wrapper and not spec.runtime.startswith("provided"):
            argv = [self._exec_wrapper(wrapper), *argv]
        return argv

    def _exec_wrapper(self, wrapper: str) -> str:
        """The wrapper's path: a layer's ``/opt/...`` wrapper is found in the merged folder in fallback mode.

        (Namespace mode has the layers at ``/opt``; the fallback has no ``/opt``, so a wrapper shipped in a
        layer, such as the streaming pattern's ``/opt/serverless-streaming``, runs from ``LAMBDA_LOCAL_OPT``.)
        """
        if self.mode == "fallback" and wrapper.startswith("/opt/"):
            local = self.opt / wrapper[len("/opt/") :]
            if local.is_file():
                return str(local)
        return wrapper

    def pids(self) -> tuple[int | None, tuple[int, ...]]:
        runtime = self.runtime.pid if self.runtime is not None and self.runtime.returncode is None else None
        extensions = tuple(p.pid for p in self.extensions.values() if p.returncode is None)
        return runtime, extensions

    # -- the init phase -----------------------------------------------------------------------
    def init(self, request_id: str) -> tuple[str, bytes] | None:
        """Runs the init phase; returns ``(error type, payload)`` when it fails."""
        with self._term_lock:
            if self.state == "dead":  # shut down before it started
                return "Runtime.Unknown", _error_payload("Runtime.Unknown", "the execution environment shut down")
            self.state = "init"
        st = self.api_state
        deadline = time.monotonic() + INIT_TIMEOUT
        try:
            self._start_holder()
        except OSError as error:
            return "Runtime.Unknown", _error_payload("Runtime.Unknown", f"cannot start the environment: {error}")
        env = self._env()
        argv = self._runtime_argv(env)
        if argv is None:
            message = f"RequestId: {request_id} Error: runtime {self.spec.runtime!r} is not supported here"
            return "Runtime.InvalidRuntime", _error_payload("Runtime.InvalidRuntime", message)
        folder = self.opt / "extensions"
        names = (
            sorted(p.name for p in folder.iterdir() if p.is_file() and os.access(p, os.X_OK)) if folder.is_dir() else []
        )
        with st.cond:
            st.external_names = set(names)
        for name in names:
            path = f"/opt/extensions/{name}" if self.mode == "namespace" else str(folder / name)
            try:
                self.extensions[name] = self._spawn([path], env)
            except OSError as error:
                return "Extension.LaunchError", _error_payload("Extension.LaunchError", f"{name}: {error}")
        with st.cond:  # Extension init: each extension registers (or exits)
            while True:
                registered = {ext.name for ext in st.extensions.values()}
                for name, process in self.extensions.items():
                    code = self._exited(process)
                    if name not in registered and code is not None:
                        message = f"RequestId: {request_id} Error: exit code {code} Extension.Crash"
                        self.note(f"Extension {name} exited before registering: {_exit_text(code)}")
                        return "Extension.Crash", _error_payload("Extension.Crash", message)
                if registered >= set(names):
                    break
                if time.monotonic() > deadline:
                    return self._init_timeout(request_id)
                st.cond.wait(max(0.01, min(0.5, deadline - time.monotonic())))
        try:
            self.runtime = self._spawn(argv, env)
        except OSError as error:
            message = f"RequestId: {request_id} Error: cannot start the runtime: {error}"
            return "Runtime.InvalidEntrypoint", _error_payload("Runtime.InvalidEntrypoint", message)
        with st.cond:  # Runtime and function init: everyone calls next
            while True:
                if st.init_error is not None:
                    kind, body = st.init_error
                    return kind, _as_error_json(kind, body)
                for ext in st.extensions.values():
                    if ext.failed is not None:
                        kind, body = ext.failed
                        return kind, _extension_error(kind, body)
                for name, process in self.extensions.items():
                    code = self._exited(process)
                    if code is not None:
                        message = f"RequestId: {request_id} Error: exit code {code} Extension.Crash"
                        self.note(f"Extension {name} exited in the init phase: {_exit_text(code)}")
                        return "Extension.Crash", _error_payload("Extension.Crash", message)
                code = self._exited(self.runtime)
                if code is not None:
                    message = f"RequestId: {request_id} Error: Runtime exited with error: {_exit_text(code)}"
                    return "Runtime.ExitError", _error_payload("Runtime.ExitError", message)
                if st.runtime_waiting and all(ext.next_calls for ext in st.extensions.values()):
                    st.accept_registrations = False
                    return None
                if time.monotonic() > deadline:
                    return self._init_timeout(request_id)
                st.cond.wait(max(0.01, min(0.5, deadline - time.monotonic())))

    def _init_timeout(self, request_id: str) -> tuple[str, bytes]:
        message = f"RequestId: {request_id} Error: Task timed out after {INIT_TIMEOUT:.2f} seconds"
        return "Sandbox.Timedout", _error_payload("Sandbox.Timedout", message)

    # -- the invoke phase ---------------------------------------------------------------------
    def execute(self, invocation: Invocation, timeout: float, *, wait_for_extensions: bool = True) -> _Outcome:
        """Runs ``invocation`` here (init first on a cold start); the environment is dead after an error.

        ``wait_for_extensions=False``: as Lambda, the answer comes back once the runtime has answered,
        even if extensions are still running (after :data:`EXTENSION_GRACE`): the outcome then says
        until when :meth:`finish_extensions` must wait for them.
        """
        request_id = invocation.request_id
        init_ms: float | None = None
        if self.state == "dead":  # shut down between being chosen and running (the runner's shutdown)
            payload = _error_payload("Runtime.Unknown", f"RequestId: {request_id} Error: the environment shut down")
            with self.api_state.cond:
                invocation.finish("Runtime.Unknown", payload.decode())
            return _Outcome(payload, "Unhandled", None, init_failed=True)
        if self.state == "cold":
            started = time.monotonic()
            init_failure = self.init(request_id)
            init_ms = (time.monotonic() - started) * 1000
            if init_failure is not None:
                kind, payload = init_failure
                self.note(
                    f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: init\tStatus: error\tError Type: {kind}"
                )
                with self.api_state.cond:
                    invocation.finish(kind, payload.decode())
                self.terminate("failure", grace=0.5)
                return _Outcome(payload, "Unhandled", init_ms, init_failed=True)
        self.state = "busy"
        self.invocations += 1
        st = self.api_state
        deadline = time.monotonic() + timeout
        # The function's time starts now, after the init phase (which has its own limit), as in Lambda.
        invocation.deadline_ms = int(time.time() * 1000 + timeout * 1000)
        st.invoke(invocation)
        grace = None if wait_for_extensions else EXTENSION_GRACE
        failure = self._await(invocation, deadline, timeout, answered_grace=grace)
        if isinstance(failure, str):  # "pending"
            if invocation.error_type is not None:
                answer = _as_error_json(invocation.error_type, invocation.error_body)
                return _Outcome(answer, "Unhandled", init_ms, extensions_pending_until=deadline)
            return _Outcome(bytes(invocation.body), None, init_ms, extensions_pending_until=deadline)
        if failure is not None:
            kind, payload, reason = failure
            if kind == "Sandbox.Timedout":
                self.note(
                    f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ} {request_id} Task timed out after {timeout:.2f} seconds"
                )
            with st.cond:
                invocation.finish(kind, payload.decode())
            self.terminate(reason, grace=0.5)
            return _Outcome(payload, "Unhandled", init_ms)
        self.state = "idle"
        if invocation.error_type is not None:
            return _Outcome(_as_error_json(invocation.error_type, invocation.error_body), "Unhandled", init_ms)
        return _Outcome(bytes(invocation.body), None, init_ms)

    def finish_extensions(self, invocation: Invocation, deadline: float, timeout: float) -> None:
        """Waits until the extensions are done with ``invocation`` (its answer already went back): the
        environment is idle again, or, past the deadline or after a crash, shut down (as Lambda)."""
        failure = self._await(invocation, deadline, timeout, answered_grace=None)
        if failure is None:
            self.state = "idle"
            return
        kind, _, reason = failure if isinstance(failure, tuple) else ("", b"", "failure")
        if kind == "Sandbox.Timedout":
            self.note(
                f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ} {invocation.request_id} Task timed out after"
                f" {timeout:.2f} seconds (extensions still running after the response)"
            )
        self.terminate(reason, grace=0.5)

    def _await(
        self, invocation: Invocation, deadline: float, timeout: float, *, answered_grace: float | None
    ) -> tuple[str, bytes, str] | str | None:
        """Waits for the end of the invoke phase: ``None`` (done), a failure ``(type, payload, shutdown
        reason)``, or ``"pending"`` (answered, extensions still busy ``answered_grace`` s after the answer)."""
        st = self.api_state
        request_id = invocation.request_id
        failure: tuple[str, bytes, str] | None = None
        answered_at: float | None = None
        with st.cond:
            while True:
                if invocation.done and st.extensions_idle():
                    break
                if answered_grace is not None and invocation.done and invocation.error_type != "Runtime.ExitError":
                    answered_at = answered_at if answered_at is not None else time.monotonic()
                    if time.monotonic() - answered_at >= answered_grace:
                        st.current = None
                        return "pending"
                code = self._exited(self.runtime)
                if code is not None:
                    message = f"RequestId: {request_id} Error: Runtime exited with error: {_exit_text(code)}"
                    failure = ("Runtime.ExitError", _error_payload("Runtime.ExitError", message), "failure")
                    break
                crashed = [name for name, p in self.extensions.items() if self._exited(p) is not None]
                if crashed:
                    message = f"RequestId: {request_id} Error: exit code {self._exited(self.extensions[crashed[0]])}"
                    failure = (
                        "Extension.Crash",
                        _error_payload("Extension.Crash", message + " Extension.Crash"),
                        "failure",
                    )
                    break
                if time.monotonic() >= deadline:
                    message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
                    failure = ("Sandbox.Timedout", _error_payload("Sandbox.Timedout", message), "timeout")
                    break
                wait = deadline - time.monotonic()
                if answered_at is not None and answered_grace is not None:
                    wait = min(wait, answered_grace - (time.monotonic() - answered_at))
                st.cond.wait(max(0.005, min(0.5, wait)))
            if failure is None:
                st.current = None
        return failure

    def max_memory_mb(self) -> int:
        if self.runtime is None:
            return 0
        with contextlib.suppress(OSError, ValueError, AttributeError):
            for line in Path(f"/proc/{self.runtime.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return math.ceil(int(line.split()[1]) / 1024)
        return 0

    # -- shutdown -----------------------------------------------------------------------------
    def terminate(self, reason: str = "spindown", grace: float = 2.0) -> None:
        """SIGTERM to the runtime, SHUTDOWN (``reason``) to the extensions, then the group killed. Idempotent."""
        with self._term_lock:
            if self.state == "dead":
                return
            previous, self.state = self.state, "dead"
            st = self.api_state
            deadline = time.monotonic() + grace
            if previous != "cold" and self.holder is not None:
                runtime = self.runtime
                if runtime is not None and runtime.poll() is None:
                    if reason == "spindown" and self.extensions:
                        runtime.send_signal(signal.SIGTERM)
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            runtime.wait(timeout=min(0.5, grace))
                    if runtime.poll() is None:
                        runtime.kill()
                deadline_ms = int(time.time() * 1000 + grace * 1000)
                subscribed = st.shutdown_event(reason, deadline_ms)
                with st.cond:
                    while time.monotonic() < deadline and not all(self._settled(ext) for ext in subscribed):
                        st.cond.wait(max(0.005, min(0.1, deadline - time.monotonic())))
            self._kill_all()
            self.api.close()
            with self._log_lock:
                with contextlib.suppress(OSError):
                    os.close(self._write_fd)
                    self._pump()
                self._fds_closed = True
                with contextlib.suppress(OSError):
                    os.close(self._read_fd)
                self._log_file.close()

    def _settled(self, ext: Extension) -> bool:
        """The extension is done with SHUTDOWN: it exited, or asked for its next event (lock held)."""
        process = self.extensions.get(ext.name)
        return ext.idle or (process is not None and self._exited(process) is not None)

    def _kill_all(self) -> None:
        # Processes that left the group and dropped the marker (setsid, env -i) are still in the mount
        # namespace: found while the holder keeps it alive (so that its inode cannot be reused yet).
        strays = _namespace_pids(self.mount_namespace) if self.mount_namespace else []
        for pid in strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.holder is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.holder.pid, signal.SIGKILL)
        for process in [self.holder, self.runtime, *self.extensions.values()]:
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
        for pid in _marked_pids(self.id):  # what left the process group (setsid, daemons)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def info(self) -> EnvironmentInfo:
        runtime, extensions = self.pids()
        holder = self.holder.pid if self.holder is not None and self.holder.returncode is None else None
        pids = tuple(p for p in (holder, *extensions, runtime) if p is not None)
        return EnvironmentInfo(
            key=self.key,
            environment_id=self.id,
            pids=pids,
            runtime_pid=runtime,
            extension_pids=extensions,
            state=self.state,
            invocations=self.invocations,
            mode=self.mode,
            tmpdir=self.tmpdir,
            log_path=self.log_path,
        )


def _extension_error(kind: str, body: str) -> bytes:
    message = body
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("errorMessage", body)
    return _error_payload(kind, str(message))


def _namespace_pids(namespace: str) -> list[int]:
    """Processes in the mount namespace ``namespace`` (``mnt:[inode]``), this process excluded."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if os.readlink(proc / "ns" / "mnt") == namespace:
                    found.append(int(proc.name))
    return found


def _marked_pids(env_id: str) -> list[int]:
    """Processes whose environment carries this environment's marker."""
    needle = f"{ENV_MARKER}={env_id}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
    return found


# -- the runner ---------------------------------------------------------------------------------
class LambdaRunner:
    """A pool of warm Lambda execution environments on this machine.

    Args:
        aws_env: The AWS endpoint environment of every process (``MotoServer.endpoint_env()``).
        workdir: Where environments keep their ``/tmp``, logs and merged layers.
        max_environments_per_function: Concurrent environments of one function (per tenant);
            one more concurrent invoke is throttled (429 ``TooManyRequestsException``).
    """

    def __init__(self, *, aws_env: Mapping[str, str], workdir: Path, max_environments_per_function: int = 8) -> None:
        self.aws_env = dict(aws_env)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.max_environments = max_environments_per_function
        self._lock = threading.Lock()
        self._pool: dict[tuple[str, str | None], list[_Environment]] = {}
        self._count = 0
        self._closed = False
        self._threads: list[threading.Thread] = []

    # -- pool ---------------------------------------------------------------------------------
    def _check(self, spec: FunctionSpec, payload: bytes, tenant_id: str | None) -> tuple[int, str, str] | None:
        if self._closed:
            return 500, "ServiceException", "the Lambda runner is shut down"
        if len(payload) > REQUEST_LIMIT:
            message = (
                f"{len(payload)} byte payload is too large for the RequestResponse invocation type"
                f" (limit {REQUEST_LIMIT} bytes)"
            )
            return 413, "RequestEntityTooLargeException", message
        if payload.strip():
            try:
                json.loads(payload)
            except ValueError as error:
                message = f"Could not parse request body into json: {error}"
                return 400, "InvalidRequestContentException", message
        if spec.per_tenant and not tenant_id:
            message = (
                "The invoked function is enabled with tenancy configuration."
                " Add a valid tenant ID in your request and try again."
            )
            return 400, "InvalidParameterValueException", message
        if not spec.per_tenant and tenant_id:
            message = (
                "The invoked function is not enabled with tenancy configuration."
                " Remove the tenant ID from your request and try again."
            )
            return 400, "InvalidParameterValueException", message
        return None

    def _acquire(self, spec: FunctionSpec, tenant_id: str | None) -> _Environment | None:
        key = (spec.name, tenant_id if spec.per_tenant else None)
        stale: list[_Environment] = []
        with self._lock:
            if self._closed:  # shutdown() ran after the checks: start nothing it would not stop
                return None
            envs = self._pool.setdefault(key, [])
            for env in list(envs):
                if env.state == "dead":
                    envs.remove(env)
                elif not env.claimed and env.runtime_gone():
                    envs.remove(env)  # its runtime exited between invokes (Lambda resets such an environment)
                    stale.append(env)
                elif env.spec != spec and not env.claimed:
                    envs.remove(env)  # the function changed (code, configuration): a new environment
                    stale.append(env)
            chosen = next(
                (env for env in envs if not env.claimed and not env.retired and env.state in ("idle", "cold")), None
            )
            if chosen is None and len(envs) < self.max_environments:
                self._count += 1
                chosen = _Environment(self, spec, key[1], self._count)
                envs.append(chosen)
            if chosen is not None:
                chosen.claimed = True  # one invoke at a time: the init (if cold) runs in the caller's thread
        for env in stale:
            env.terminate("failure" if env.runtime_gone() else "spindown", grace=0.5)
        return chosen

    def _release(self, env: _Environment) -> None:
        with self._lock:
            env.claimed = False
            retired = env.retired and env.state != "dead"
            if env.state == "dead" or env.retired:
                envs = self._pool.get(env.key, [])
                if env in envs:
                    envs.remove(env)
        if retired:
            env.terminate("spindown", grace=2.0)

    def discard(self, function_name: str) -> int:
        """Retires the environments of ``function_name`` (deleted or replaced): idle ones are shut
        down now (SHUTDOWN to extensions), busy ones when their invoke ends. Returns how many."""
        with self._lock:
            envs = [env for key, group in self._pool.items() if key[0] == function_name for env in group]
            idle = []
            for env in envs:
                env.retired = True
                if not env.claimed:
                    self._pool[env.key].remove(env)
                    idle.append(env)
        stoppers = [threading.Thread(target=env.terminate, args=("spindown", 2.0), daemon=True) for env in idle]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(15)
        return len(envs)

    # -- invokes ------------------------------------------------------------------------------
    def invoke(
        self,
        spec: FunctionSpec,
        payload: bytes,
        *,
        tenant_id: str | None = None,
        client_context: str | None = None,
        request_id: str | None = None,
    ) -> InvokeResult:
        """Invokes ``spec`` with ``payload`` (RequestResponse) and waits for the answer.

        ``request_id``: the invocation's id (``context.aws_request_id``); a new one by default. The
        asynchronous invoker passes its own, so that every attempt of one event has the same id.
        """
        invocation = self._invocation(spec, payload, tenant_id, client_context, False, None, request_id)
        return self._invoke(
            spec,
            payload,
            tenant_id=tenant_id,
            client_context=client_context,
            invocation=invocation,
            wait_for_extensions=False,
        )

    def _invoke(
        self,
        spec: FunctionSpec,
        payload: bytes,
        *,
        tenant_id: str | None = None,
        client_context: str | None = None,
        timeout: float | None = None,
        streaming: bool = False,
        invocation: Invocation | None = None,
        wait_for_extensions: bool = True,
    ) -> InvokeResult:
        started = time.monotonic()
        invocation = invocation or self._invocation(spec, payload, tenant_id, client_context, streaming, timeout)
        refused = self._check(spec, payload, tenant_id)
        env = None if refused else self._acquire(spec, tenant_id)
        if env is not None and env.state == "idle" and not env.wait_ready(spec.timeout):
            env.terminate("failure", grace=0.5)  # the runtime died after its last answer: a fresh environment
            self._release(env)
            env = self._acquire(spec, tenant_id)
        if refused is None and env is None:
            refused = (
                (500, "ServiceException", "the Lambda runner is shut down")
                if self._closed
                else (429, "TooManyRequestsException", "Rate Exceeded.")
            )
        if refused is not None or env is None:
            status, kind, message = refused or (500, "ServiceException", "no environment")
            invocation.finish(kind, json.dumps({"errorType": kind, "errorMessage": message}))
            body = _error_payload(kind, message)
            return InvokeResult(body, "Unhandled", "", invocation.request_id, 0.0, None, status_code=status)
        offset = env.log_offset()
        env.note(f"START RequestId: {invocation.request_id} Version: $LATEST")
        limit = spec.timeout if timeout is None else timeout
        pending: float | None = None
        try:
            outcome = env.execute(invocation, limit, wait_for_extensions=wait_for_extensions)
            pending = outcome.extensions_pending_until
        except BaseException:
            env.terminate("failure", grace=0.5)
            raise
        finally:
            if pending is None:
                self._release(env)
        if pending is not None:  # answered; the environment is busy until its extensions are done

            def finish(env: _Environment = env, until: float = pending) -> None:
                try:
                    env.finish_extensions(invocation, until, limit)
                finally:
                    self._release(env)

            thread = threading.Thread(target=finish, name=f"lambda-post-{invocation.request_id[:8]}", daemon=True)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
        duration = (time.monotonic() - started) * 1000
        init = f"\tInit Duration: {outcome.init_ms:.2f} ms" if outcome.init_ms is not None else ""
        if env.state != "dead" or not outcome.init_failed:
            env.note(f"END RequestId: {invocation.request_id}")
            env.note(
                f"REPORT RequestId: {invocation.request_id}\tDuration: {duration:.2f} ms\t"
                f"Billed Duration: {math.ceil(duration)} ms\tMemory Size: {spec.memory_mb} MB\t"
                f"Max Memory Used: {env.max_memory_mb()} MB{init}"
            )
        tail = env.log_since(offset)
        return InvokeResult(
            outcome.payload,
            outcome.function_error,
            tail,
            invocation.request_id,
            duration,
            outcome.init_ms,
            init_failed=outcome.init_failed,
        )

    def _invocation(
        self,
        spec: FunctionSpec,
        payload: bytes,
        tenant_id: str | None,
        client_context: str | None,
        streaming: bool,
        timeout: float | None,
        request_id: str | None = None,
    ) -> Invocation:
        limit = spec.timeout if timeout is None else timeout
        return Invocation(
            request_id=request_id or str(uuid.uuid4()),
            payload=payload,
            deadline_ms=int(time.time() * 1000 + limit * 1000),
            function_arn=spec.arn,
            client_context=client_context,
            tenant_id=tenant_id,
            streaming=streaming,
        )

    def invoke_stream(self, spec: FunctionSpec, payload: bytes, *, tenant_id: str | None = None) -> StreamingInvoke:
        """Invokes ``spec`` in streaming mode: the answer's chunks arrive as the runtime posts them."""
        invocation = self._invocation(spec, payload, tenant_id, None, True, None)
        stream = StreamingInvoke(invocation, INIT_TIMEOUT + spec.timeout + 30)

        def run() -> None:
            result = self._invoke(
                spec, payload, tenant_id=tenant_id, streaming=True, invocation=invocation, wait_for_extensions=False
            )
            stream._done(result)

        thread = threading.Thread(target=run, name=f"lambda-stream-{invocation.request_id[:8]}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return stream

    def environments(self) -> list[EnvironmentInfo]:
        """The environments alive now (and those being torn down)."""
        with self._lock:
            envs = [env for group in self._pool.values() for env in group]
        return [env.info() for env in envs]

    def shutdown(self, timeout: float = 5.0, *, reason: str = "spindown") -> None:
        """SHUTDOWN (``reason``) to every environment's extensions, then their processes killed; idempotent."""
        with self._lock:
            self._closed = True
            envs = [env for group in self._pool.values() for env in group]
            self._pool.clear()
            threads = list(self._threads)
        stoppers = [threading.Thread(target=env.terminate, args=(reason, timeout), daemon=True) for env in envs]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(timeout + 10)
        for thread in threads:
            thread.join(timeout)


# -- moto ---------------------------------------------------------------------------------------
def _unzip(data: bytes, root: Path, digest: str | None = None) -> Path:
    """``data`` (a zip) unpacked under ``root``/<sha256>, file modes kept (cached).

    ``digest``: moto's base64 ``CodeSha256`` of ``data``, when known (spares hashing it per invoke).
    """
    try:
        name = base64.b64decode(digest or "", validate=True).hex()
    except ValueError:
        name = ""
    if len(name) != 64:
        name = hashlib.sha256(data).hexdigest()
    target = root / name
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{target.name}.{uuid.uuid4().hex}"
    partial.mkdir()
    try:
        _extract(data, partial)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise InvalidZipFile(f"Lambda was unable to unzip the deployment package: {error}") from None
    try:
        partial.rename(target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return target


class InvalidZipFile(ValueError):
    """A function's or layer's zip cannot be unpacked (the Invoke API's ``InvalidZipFileException``)."""


def _extract(data: bytes, partial: Path) -> None:
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                link = partial / info.filename
                if not link.resolve().is_relative_to(partial.resolve()):
                    continue
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(archive.read(info).decode(), link)
                continue
            path = Path(archive.extract(info, partial))
            if mode & 0o777 and not info.is_dir():
                path.chmod(mode & 0o777)


def spec_from_moto(function: Any, workdir: Path) -> FunctionSpec:
    """The :class:`FunctionSpec` of a moto ``LambdaFunction``: code and layers unzipped under ``workdir``."""
    from moto.awslambda.models import lambda_backends

    empty = b"PK\x05\x06" + b"\0" * 18  # an empty zip (an image function has no code here)
    code = _unzip(function.code_bytes or empty, workdir / "code", getattr(function, "code_sha_256", None) or None)
    backend = lambda_backends[function.account_id][function.region]
    layers = []
    for layer in function.layers or []:
        version = backend.layers_versions_by_arn(layer["Arn"])
        if version is None:
            raise ValueError(f"layer version {layer['Arn']} not found")
        digest = getattr(version, "code_sha_256", None) or None
        layers.append(_unzip(version.code_bytes or empty, workdir / "layers", digest))
    tenancy = getattr(function, "tenancy_config", None) or {}
    return FunctionSpec(
        name=function.function_name,
        arn=function.function_arn,
        handler=function.handler or "",
        runtime=function.run_time or "python3.12",
        code_dir=code,
        layer_dirs=tuple(layers),
        environment={str(k): str(v) for k, v in (function.environment_vars or {}).items()},
        timeout=float(function.timeout or 3),
        memory_mb=int(function.memory_size or 128),
        per_tenant=tenancy.get("TenantIsolationMode") == "PER_TENANT",
    )


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def route_moto_invoke(runner: LambdaRunner, workdir: Path) -> Callable[[], None]:
    """Patches moto's ``LambdaFunction.invoke`` to run functions in ``runner``; returns the undo."""
    from moto.awslambda.models import LambdaFunction
    from moto.core.exceptions import JsonRESTError

    original_invoke = LambdaFunction.invoke
    original_init = LambdaFunction.__init__

    def init(self: Any, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        original_init(self, account_id, spec, *args, **kwargs)
        self.tenancy_config = spec.get("TenancyConfig")

    def save_logs(function: Any, text: str) -> None:
        with contextlib.suppress(Exception):  # CloudWatch Logs is a courtesy: never fail the invoke over it
            function.logs_backend.ensure_log_group(function.logs_group_name)
            function.save_logs(text)

    def invoke(self: Any, body: str | bytes, request_headers: Any, response_headers: Any) -> str | bytes:
        kind = _header(request_headers, "x-amz-invocation-type") or "RequestResponse"
        if kind == "DryRun":
            return b""
        try:
            spec = spec_from_moto(self, workdir)
        except InvalidZipFile as error:  # Lambda answers 502 InvalidZipFileException
            failure = JsonRESTError("InvalidZipFileException", str(error))
            failure.code = 502
            raise failure from None
        payload = (body.encode() if isinstance(body, str) else body) or b"{}"
        tenant_id = _header(request_headers, "x-amz-tenant-id")
        request_id = _header(request_headers, "x-cdk-sp-request-id")  # the async invoker's (events.py)
        client_context = _header(request_headers, "x-amz-client-context")
        if client_context:
            with contextlib.suppress(ValueError):
                client_context = base64.b64decode(client_context).decode()
        if kind == "Event":

            def run() -> None:
                try:
                    result = runner.invoke(spec, payload, tenant_id=tenant_id, client_context=client_context)
                    save_logs(self, result.log_tail)
                except Exception:  # an Event invoke has no caller to tell
                    LOG.exception("asynchronous invoke of %s failed", spec.name)

            threading.Thread(target=run, name=f"lambda-event-{spec.name}", daemon=True).start()
            return b""
        result = runner.invoke(spec, payload, tenant_id=tenant_id, client_context=client_context, request_id=request_id)
        if result.status_code != 200:
            refusal = json.loads(result.payload)
            failure = JsonRESTError(refusal["errorType"], refusal["errorMessage"])
            failure.code = result.status_code
            raise failure
        if result.function_error:
            response_headers["x-amz-function-error"] = result.function_error
        if (_header(request_headers, "x-amz-log-type") or "").lower() == "tail":
            tail = result.log_tail.encode()[-TAIL_BYTES:]
            response_headers["x-amz-log-result"] = base64.b64encode(tail).decode()
        response_headers["x-amz-executed-version"] = "$LATEST"
        save_logs(self, result.log_tail)
        return result.payload

    setattr(LambdaFunction, "invoke", invoke)  # noqa: B010
    setattr(LambdaFunction, "__init__", init)  # noqa: B010

    def undo() -> None:
        setattr(LambdaFunction, "invoke", original_invoke)  # noqa: B010
        setattr(LambdaFunction, "__init__", original_init)  # noqa: B010

    return undo
