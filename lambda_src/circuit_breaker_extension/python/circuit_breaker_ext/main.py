"""The extension's life: register first, then serve, follow INVOKE and SHUTDOWN events.

Start-up order, to keep the function's cold start short:
1. register with the Extensions API (``socket`` only: nothing else is imported yet);
2. import the rest, bind 127.0.0.1:$CIRCUIT_BREAKER_PORT and start serving;
3. call ``event/next`` at once, which lets the runtime's init go on; boto3 is imported and the
   circuits of ``CIRCUIT_BREAKER_CIRCUITS`` are prefetched in a background thread meanwhile.
On every INVOKE the stale entries are read again in the background; on SHUTDOWN the process
closes its socket and exits 0.
"""

from __future__ import annotations

import os
import sys

from . import EXTENSION_NAME, runtime_api


def main(argv: list[str]) -> int:
    name = argv[0] if argv else EXTENSION_NAME
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API", "")
    if not address:
        sys.stderr.write("circuit-breaker: AWS_LAMBDA_RUNTIME_API is not set: run me as a Lambda extension\n")
        return 1
    extension_id = runtime_api.register(address, name)
    return _run(address, extension_id)


def _run(address: str, extension_id: str) -> int:
    import json
    import queue
    import threading

    from .config import ConfigError, Settings
    from .logs import log
    from .server import LocalServer
    from .store import CircuitStore

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        runtime_api.report_error(address, extension_id, "init", "Extension.ConfigError", str(error))
        log("ERROR", "bad configuration", error=str(error))
        return 1

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

    server = LocalServer(settings, store, lambda circuit_id: jobs.put(("trip", (circuit_id,))))
    try:
        server.bind()
    except OSError as error:
        message = f"cannot listen on 127.0.0.1:{settings.port}: {error}"
        runtime_api.report_error(address, extension_id, "init", "Extension.PortUnavailable", message)
        log("ERROR", message)
        return 1
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

    while True:
        try:
            event = json.loads(runtime_api.next_event(address, extension_id))
        except Exception as error:
            log("ERROR", "lost the Extensions API", error=f"{type(error).__name__}: {error}")
            try:
                runtime_api.report_error(address, extension_id, "exit", "Extension.EventLoopFailed", str(error))
            finally:
                server.close()
            return 1
        if event.get("eventType") == "SHUTDOWN":
            server.close()
            log("INFO", "shutdown", reason=event.get("shutdownReason"), dynamodbReads=store.reads)
            sys.stdout.flush()
            os._exit(0)  # daemon threads may be inside boto3: do not wait for them
        jobs.put(("refresh", settings.circuits))
