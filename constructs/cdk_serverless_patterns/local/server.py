"""moto's server in this process, on a free port of the loopback interface.

``MotoServer`` is what the emulator, the extension tests and the benchmarks run AWS on: moto's
``ThreadedMotoServer`` with the endpoint environment a process needs to use it (``endpoint_env``),
and a count of the requests it answered per operation (``calls``), so that a test can say how many
calls to DynamoDB a cache saved. moto keeps its data per process: a restarted server on the same
port (``restart``) still has it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from typing import Any, cast

#: The address the server listens on (an IP address: a name would cost a resolution per connection).
HOST = "127.0.0.1"
REGION = "us-east-1"
#: moto accepts any credentials; these keep SDKs from looking for real ones.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

_COUNT_LOCK = threading.Lock()
_CALLS: Counter[str] = Counter()
_COUNTING = False


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _count_calls() -> None:
    """Counts the DynamoDB operations moto's server answers (instrumentation of moto, not of the code under test)."""
    global _COUNTING
    with _COUNT_LOCK:
        if _COUNTING:
            return
        from moto.dynamodb.responses import DynamoHandler

        original = DynamoHandler.call_action

        def call_action(self: Any) -> Any:
            with _COUNT_LOCK:
                _CALLS[f"dynamodb:{self._get_action()}"] += 1
            return original(self)

        setattr(DynamoHandler, "call_action", call_action)  # noqa: B010
        _COUNTING = True


class MotoServer:
    """moto's ``ThreadedMotoServer`` on a free port (or ``port``) of ``127.0.0.1``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self._server: Any = None
        _count_calls()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> MotoServer:
        from moto.server import ThreadedMotoServer

        from cdk_serverless_patterns.local import patches

        patches.install()  # what AWS delivers where moto does not (atomic DynamoDB writes, ...)
        if self._server is None:
            server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
            server.start()
            self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def restart(self) -> None:
        """A new server on the same port (moto's state lives in this process, so the data stays)."""
        self.stop()
        self.start()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, service: str) -> Any:
        """A boto3 client of ``service`` bound to this server."""
        import boto3

        return cast(Any, boto3).client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def endpoint_env(self) -> dict[str, str]:
        """The environment that points a process's AWS SDKs (and the CDK CLI) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **DUMMY_CREDENTIALS,
        }

    @staticmethod
    def calls(operation: str) -> int:
        """How many ``<service>:<Operation>`` requests (``"dynamodb:GetItem"``) moto's servers in
        this process answered so far."""
        with _COUNT_LOCK:
            return _CALLS[operation]

    @staticmethod
    def uncount(operation: str, times: int = 1) -> None:
        """Takes back ``times`` of ``operation`` (a test's own reads, which must not count)."""
        with _COUNT_LOCK:
            _CALLS[operation] -= times


class BlackHoleServer:
    """A TCP server on a free port of ``127.0.0.1`` that accepts every connection and never answers.

    What a frozen dependency looks like from a client: the connection succeeds, the request is
    sent, and no byte ever comes back. Point an SDK at ``endpoint`` (``http://127.0.0.1:<port>``)
    to see what a hung AWS endpoint costs. ``connections`` counts the connections accepted,
    ``received`` the bytes read from them (read and dropped, so a sender never blocks).
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.connections = 0
        self.received = 0
        self._listener: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> BlackHoleServer:
        if self._listener is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, self.port))
            listener.listen(128)
            self._listener = listener
            threading.Thread(target=self._accept, args=(listener,), name="black-hole", daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self.connections += 1
                self._held.append(conn)
            threading.Thread(target=self._drain, args=(conn,), name="black-hole-conn", daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        try:
            while chunk := conn.recv(65536):
                with self._lock:
                    self.received += len(chunk)
        except OSError:
            pass

    def stop(self) -> None:
        """Closes the listener and every connection (their clients then see the connection close)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept() under way: close() alone would not free the port
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            held, self._held = self._held, []
        for conn in held:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def __enter__(self) -> BlackHoleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
