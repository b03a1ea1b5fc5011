"""Test a function protected by ``CircuitBreaker`` as Lambda runs it, without Docker or an account.

- :func:`client_module`: the client your function imports (``circuit_breaker_client``, shipped in the
  breaker's layer at ``/opt/python``), made importable in your own unit tests, no extension needed:
  without one, the client's policy decides (``fail_open`` lets calls pass, ``fail_closed`` takes the
  fallback), which is what your function does in Lambda when the extension cannot answer.
- :class:`CircuitMoto`: moto's server on localhost with the breaker's state table, to set circuits
  (``put_circuit``) and read them back (``circuit``) as the health checker and the extension do.
- :class:`ProtectedFunction`: a Lambda execution environment (the Runtime Interface Emulator with
  ``awslambdaric``, see :mod:`cdk_serverless_patterns.local.lambda_environment`) with the breaker's
  layer at ``/opt``, so the real extension process starts beside your handler; ``ask`` talks to the
  extension's port as the client in the function does.

::

    with CircuitMoto() as moto, protected_function(tmp_path, moto, handler=source) as function:
        moto.put_circuit("payments", "OPEN", 1)
        assert function.invoke({...}) == ...
"""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from cdk_serverless_patterns._paths import asset_path
from cdk_serverless_patterns.circuit_breaker import contract
from cdk_serverless_patterns.local.lambda_environment import LambdaEnvironment
from cdk_serverless_patterns.local.server import MotoServer, free_port
from cdk_serverless_patterns.testing.moto import create_circuit_table, load_runtime_module

#: The module name your function imports the client by (``from circuit_breaker_client import protected``).
CLIENT_MODULE = "circuit_breaker_client"

#: The module the extension runs as (``python -m circuit_breaker_ext``): how its processes are found.
EXTENSION_MARKER = b"circuit_breaker_ext"


def client_module(*, fresh: bool = False) -> ModuleType:
    """The circuit-breaker client as your protected function imports it, from the layer this package ships.

    Lambda puts the layer's ``python/`` folder on the function's path (``/opt/python``); this puts the
    same folder on ``sys.path`` and imports ``circuit_breaker_client`` from it, so that the import in
    your handler module resolves in your tests too. Call it before importing your handler (in
    ``conftest.py``, for example). ``fresh=True`` drops an imported copy first and imports it again: its
    module-level client then reads ``CIRCUIT_BREAKER_*`` from the environment anew (set them with
    ``monkeypatch.setenv`` first), with no memo, queue or policy state left from another test.
    """
    if fresh:
        old = sys.modules.pop(CLIENT_MODULE, None)
        close = getattr(getattr(old, "_default", None), "close", None)
        if callable(close):
            close()
    return load_runtime_module(contract.EXTENSION_ASSET, CLIENT_MODULE)


class CircuitMoto(MotoServer):
    """moto's server with one circuit-breaker state table (``table``), created on ``start``."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.table = f"circuit-breaker-state-{self.port}"  # moto's data is per process: one table per server
        self._created = False

    def start(self) -> CircuitMoto:
        super().start()
        if not self._created:
            create_circuit_table(self.client("dynamodb"), self.table)
            self._created = True
        return self

    @property
    def get_item_calls(self) -> int:
        """GetItem requests moto answered in this process (the tests' own reads through ``circuit`` excluded)."""
        return MotoServer.calls("dynamodb:GetItem")

    def put_circuit(self, circuit_id: str, state: str, version: int, **extra: int | str) -> None:
        """Writes a circuit's item as the health checker would."""
        item: dict[str, Any] = {
            contract.TABLE_KEY: {"S": circuit_id},
            "state": {"S": state},
            "version": {"N": str(version)},
            "updatedAt": {"N": str(int(time.time() * 1000))},
            "updatedBy": {"S": "health-checker"},
        }
        for key, value in extra.items():
            item[key] = {"N": str(value)} if isinstance(value, int) else {"S": value}
        self.client("dynamodb").put_item(TableName=self.table, Item=item)

    def circuit(self, circuit_id: str) -> dict[str, Any]:
        """A circuit's item, as plain values (a consistent read that does not count in ``get_item_calls``)."""
        raw = self.client("dynamodb").get_item(
            TableName=self.table, Key={contract.TABLE_KEY: {"S": circuit_id}}, ConsistentRead=True
        )
        MotoServer.uncount("dynamodb:GetItem")
        return {k: (v.get("S") if "S" in v else int(v["N"]) if "N" in v else v) for k, v in raw["Item"].items()}


class ProtectedFunction(LambdaEnvironment):
    """A function with the breaker's extension layer, configured as ``CircuitBreaker.protect`` does.

    ``env`` overrides the ``CIRCUIT_BREAKER_*`` defaults (cache TTL 2 s, no prefetch, fail open);
    the extension listens on a free port (``port``) with the environment's ``token``.
    """

    def __init__(
        self,
        workdir: Path,
        moto: CircuitMoto,
        *,
        handler: str,
        layer: Path | None = None,
        function_name: str = "protected-function",
        **env: str,
    ) -> None:
        self.port = free_port()
        settings = {
            contract.ENV_TABLE: moto.table,
            contract.ENV_PORT: str(self.port),
            contract.ENV_CACHE_TTL_MS: "2000",
            contract.ENV_CIRCUITS: "",
            contract.ENV_ON_EXTENSION_ERROR: "fail_open",
            **env,
        }
        super().__init__(
            workdir,
            moto,
            handler=handler,
            layer=layer or asset_path(contract.EXTENSION_ASSET),
            function_name=function_name,
            env=settings,
        )

    def ask(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request straight to the extension's port, with this environment's token (``token=""``: none)."""
        own = conn is None
        conn = conn or self.connection()
        headers = {contract.TOKEN_HEADER: self.token if token is None else token}
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

    def connection(self, port: int | None = None, timeout: float = 10.0) -> http.client.HTTPConnection:
        """A connection to the extension (or to ``port``)."""
        return super().connection(self.port if port is None else port, timeout)

    def extension_pids(self) -> list[int]:
        """Processes running the extension in this environment."""
        return self.pids(EXTENSION_MARKER)


@contextlib.contextmanager
def protected_function(workdir: Path, moto: CircuitMoto, **kwargs: Any) -> Iterator[ProtectedFunction]:
    """A started :class:`ProtectedFunction`; on exit it is shut down and any surviving extension killed."""
    function = ProtectedFunction(workdir, moto, **kwargs).start()
    try:
        yield function
    finally:
        function.kill(EXTENSION_MARKER)
