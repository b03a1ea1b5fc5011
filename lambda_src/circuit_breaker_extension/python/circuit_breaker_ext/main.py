"""The extension's life: register first, then serve, follow INVOKE and SHUTDOWN events.

Start-up order, to keep the function's cold start short (measured by bench/bench_circuit_breaker.py):
1. register with the Extensions API: only ``socket`` is imported by then;
2. read the settings (``os`` only) and bind 127.0.0.1:$CIRCUIT_BREAKER_PORT, so that a bad
   setting or a taken port is still reported as an init error;
3. send ``event/next``: Lambda may go on with the runtime's init from here;
4. only then import the server and the cache, start serving (connections made meanwhile wait in
   the listen backlog), and start the worker that imports boto3 and prefetches
   ``CIRCUIT_BREAKER_CIRCUITS``; then block for the event.
On every INVOKE the stale entries are read again in the background; on SHUTDOWN the process
closes its socket and exits 0.
"""

from __future__ import annotations

import os
import socket
import sys

from . import EXTENSION_NAME, runtime_api

TYPE_CHECKING = False  # typing costs ~4 ms to import: not on the start-up path
if TYPE_CHECKING:
    from .config import Settings


def main(argv: list[str]) -> int:
    name = argv[0] if argv else EXTENSION_NAME
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API", "")
    if not address:
        sys.stderr.write("circuit-breaker: AWS_LAMBDA_RUNTIME_API is not set: run me as a Lambda extension\n")
        return 1
    extension_id = runtime_api.register(address, name)

    from .config import ConfigError, Settings

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        runtime_api.report_error(address, extension_id, "init", "Extension.ConfigError", str(error))
        sys.stderr.write(f"circuit-breaker: bad configuration: {error}\n")
        return 1
    try:
        listener = _listen(settings.port)
    except OSError as error:
        message = f"cannot listen on 127.0.0.1:{settings.port}: {error}"
        runtime_api.report_error(address, extension_id, "init", "Extension.PortUnavailable", message)
        sys.stderr.write(f"circuit-breaker: {message}\n")
        return 1
    pending = runtime_api.send_next(address, extension_id)
    return _serve(address, extension_id, settings, listener, pending)


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

    def worker() -> None:
        while True:
            kind, ids = jobs.get()
            try:
                if kind == "trip":
                    store.trip(ids[0])
                else:  # "warm-up" or "refresh"
                    if kind == "warm-up":
                        store.client()
                    store.refresh_stale(ids)
            except Exception as error:  # keep the worker alive whatever happens
                log("ERROR", f"{kind} failed", error=f"{type(error).__name__}: {error}")

    server = LocalServer(settings, store, lambda circuit_id: jobs.put(("trip", (circuit_id,))), listener)
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
            finally:
                server.close()
            return 1
        pending = None
        if event.get("eventType") == "SHUTDOWN":
            server.close()
            log("INFO", "shutdown", reason=event.get("shutdownReason"), dynamodbReads=store.reads)
            sys.stdout.flush()
            os._exit(0)  # daemon threads may be inside boto3: do not wait for them
        jobs.put(("refresh", settings.circuits))
