"""moto's server in this process, on a free port of the loopback interface.

``MotoServer`` is what the emulator, the extension tests and the benchmarks run AWS on: moto's
``ThreadedMotoServer`` with the endpoint environment a process needs to use it (``endpoint_env``),
and a count of the requests it answered per operation (``calls``), so that a test can say how many
calls to DynamoDB a cache saved. moto keeps its data per process: a restarted server on the same
port (``restart``) still has it.
"""

from __future__ import annotations

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
