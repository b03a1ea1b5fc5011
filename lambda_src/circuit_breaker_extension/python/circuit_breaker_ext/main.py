"""The extension's life: register first, then serve, follow INVOKE and SHUTDOWN events.

Start-up order, to keep the function's cold start short (measured by bench/bench_circuit_breaker.py):
1. register with the Extensions API: only ``socket`` and ``signal`` are imported by then;
2. read the settings (``os`` only), check that boto3 can be found (without importing it) and
   bind 127.0.0.1:$CIRCUIT_BREAKER_PORT, so that a bad setting, a missing boto3 or a taken port
   is still reported as an init error;
3. send ``event/next``: Lambda may go on with the runtime's init from here;
4. only then import the server and the cache, start serving (connections made meanwhile wait in
   the listen backlog), and start the worker that imports boto3 and prefetches
   ``CIRCUIT_BREAKER_CIRCUITS``; then block for the event.
On every INVOKE the stale entries are read again in the background; on SHUTDOWN or SIGTERM the
process closes its socket and exits 0.

A start-up that fails writes one JSON line (level ERROR, with ``errorType``) and exits 1: after
registering it also reports the error to ``/extension/init/error``, so Lambda fails the init phase
with that error type; before (the Extensions API unreachable, or registration refused) there is
no extension identifier to report it with, and Lambda sees the process exit.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from . import EXTENSION_NAME, runtime_api

TYPE_CHECKING = False  # typing costs ~4 ms to import: not on the start-up path
if TYPE_CHECKING:
    from types import FrameType

    from .config import Settings

#: Modules the extension needs besides the standard library (the Lambda Python runtimes ship them).
REQUIRED_MODULES = ("boto3", "botocore")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM before the server runs: nothing to close, exit cleanly (``_serve`` replaces this)."""
    os._exit(0)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    name = argv[0] if argv else EXTENSION_NAME
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API", "")
    if not address:
        return _fail("Extension.NoRuntimeApi", "AWS_LAMBDA_RUNTIME_API is not set: run me as a Lambda extension")
    try:
        extension_id = runtime_api.register(address, name)
    except (OSError, ValueError, runtime_api.ExtensionsApiError) as error:  # ValueError: a garbled answer
        what = f"{type(error).__name__}: {error}"
        return _fail("Extension.RegisterFailed", f"cannot register with the Extensions API at {address}: {what}")

    from .config import ConfigError, Settings

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        return _init_error(address, extension_id, "Extension.ConfigError", f"bad configuration: {error}")
    missing = [module for module in REQUIRED_MODULES if not _importable(module)]
    if missing:
        message = (
            f"{' and '.join(missing)} cannot be imported by {sys.executable}: run the function on a Lambda "
            "Python runtime (they ship boto3), or add boto3 to the function's layers"
        )
        return _init_error(address, extension_id, "Extension.MissingDependency", message)
    try:
        listener = _listen(settings.port)
    except OSError as error:
        message = f"cannot listen on 127.0.0.1:{settings.port}: {error}"
        return _init_error(address, extension_id, "Extension.PortUnavailable", message)
    try:
        pending = runtime_api.send_next(address, extension_id)
    except OSError as error:
        listener.close()
        return _fail(
            "Extension.EventLoopFailed", f"lost the Extensions API at {address}: {type(error).__name__}: {error}"
        )
    return _serve(address, extension_id, settings, listener, pending)


def _fail(error_type: str, message: str) -> int:
    """One JSON line for a failed start-up; returns the exit status (1)."""
    from .logs import log

    log("ERROR", message, errorType=error_type)
    return 1


def _init_error(address: str, extension_id: str, error_type: str, message: str) -> int:
    """Logs the failure, reports it to ``/extension/init/error`` (Lambda fails the init phase with
    ``error_type``) and returns the exit status (1)."""
    import contextlib  # a failure path: the cost of the import does not matter here

    _fail(error_type, message)
    with contextlib.suppress(OSError, runtime_api.ExtensionsApiError):  # the line above says it all
        runtime_api.report_error(address, extension_id, "init", error_type, message)
    return 1


def _importable(module: str) -> bool:
    """Whether ``module`` can be found on ``sys.path``, without importing it (boto3 costs ~250 ms)."""
    from importlib.machinery import PathFinder

    return PathFinder.find_spec(module) is not None


def _listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port: only processes of this environment can connect."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _serve(address: str, extension_id: str, settings: Settings, listener: socket.socket, first: socket.socket) -> int:
    import json
    import queue
    import threading

    from .logs import log
    from .server import LocalServer
    from .store import CircuitStore

    store = CircuitStore(settings)
    jobs: queue.Queue[tuple[str, tuple[str, ...]]] = queue.Queue()
    server = LocalServer(settings, store, lambda circuit_id: jobs.put(("trip", (circuit_id,))), listener)

    def shut_down(reason: object) -> None:
        server.close()
        log(
            "INFO",
            "shutdown",
            reason=reason,
            dynamodbReads=store.reads,
            connectionsEvicted=server.evicted,  # idle connections closed to make room
            connectionsRefused=server.refused,  # 503: every slot was in the middle of a request
        )
        sys.stdout.flush()
        os._exit(0)  # daemon threads may be inside boto3: do not wait for them

    signal.signal(signal.SIGTERM, lambda signum, frame: shut_down("SIGTERM"))

    def worker() -> None:
        while True:
            kind, ids = jobs.get()
            try:
                if kind == "trip":
                    store.trip(ids[0])
                else:  # "warm-up" or "refresh"
                    if kind == "warm-up":
                        _load_sdk(store)
                    store.refresh_stale(ids)
            except Exception as error:  # keep the worker alive whatever happens
                log("ERROR", f"{kind} failed", error=f"{type(error).__name__}: {error}")

    def _load_sdk(store: CircuitStore) -> None:
        try:
            store.client()
        except ImportError as error:  # found at start-up, yet it does not import: nothing can be served
            message = f"cannot import boto3: {type(error).__name__}: {error}"
            log("ERROR", message, errorType="Extension.MissingDependency")
            try:
                runtime_api.report_error(address, extension_id, "exit", "Extension.MissingDependency", message)
            finally:
                os._exit(1)

    server.start()
    threading.Thread(target=worker, name="circuit-breaker-worker", daemon=True).start()
    jobs.put(("warm-up", settings.circuits))
    if not settings.token:
        log("WARNING", "AWS_SESSION_TOKEN is not set: every request will be refused")
    log(
        "INFO",
        "ready",
        port=settings.port,
        table=settings.table,
        cacheTtlMs=settings.cache_ttl_ms,
        circuits=list(settings.circuits),
        pid=os.getpid(),
    )

    pending: socket.socket | None = first
    while True:
        try:
            if pending is None:
                pending = runtime_api.send_next(address, extension_id)
            event = json.loads(runtime_api.read_event(pending))
        except Exception as error:
            log("ERROR", "lost the Extensions API", error=f"{type(error).__name__}: {error}")
            try:
                runtime_api.report_error(address, extension_id, "exit", "Extension.EventLoopFailed", str(error))
            except (OSError, runtime_api.ExtensionsApiError):
                pass
            finally:
                server.close()
            return 1
        pending = None
        if event.get("eventType") == "SHUTDOWN":
            shut_down(event.get("shutdownReason"))
        jobs.put(("refresh", settings.circuits))
