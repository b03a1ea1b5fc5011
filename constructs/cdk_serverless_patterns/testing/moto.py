"""moto helpers for testing the patterns' runtime code: the tables the constructs create, and the
Lambda modules under ``lambda_src/``. Imports neither aws_cdk nor moto: pass in a boto3 client that
points at moto (``mock_aws`` or a moto server).

The key schemas come from the patterns' contracts; ``tests/packaging/test_packaging_testing_moto.py``
checks them against the synthesized templates, so a test built on them sees the table the construct deploys.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

from cdk_serverless_patterns._paths import asset_path
from cdk_serverless_patterns.callback import contract as callback_contract
from cdk_serverless_patterns.circuit_breaker import contract as circuit_contract

#: CallbackPattern's token table: partition key ``id`` (``"<namespace>#<jobId>"``), TTL on ``ttl``.
CALLBACK_TABLE_KEY = callback_contract.TABLE_KEY
CALLBACK_TABLE_TTL_ATTRIBUTE = callback_contract.TTL_ATTRIBUTE
#: CircuitBreaker's state table: one item per circuit, partition key ``circuitId``.
CIRCUIT_TABLE_KEY = circuit_contract.TABLE_KEY


def _create_table(dynamodb: Any, table_name: str, key: str) -> None:
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def create_callback_table(dynamodb: Any, table_name: str) -> None:
    """Creates CallbackPattern's token table (key and TTL as deployed) with ``dynamodb``, a boto3 client."""
    _create_table(dynamodb, table_name, CALLBACK_TABLE_KEY)
    dynamodb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": CALLBACK_TABLE_TTL_ATTRIBUTE},
    )


def create_circuit_table(dynamodb: Any, table_name: str) -> None:
    """Creates CircuitBreaker's state table (key as deployed) with ``dynamodb``, a boto3 client."""
    _create_table(dynamodb, table_name, CIRCUIT_TABLE_KEY)


def load_runtime_module(asset: str, module: str, *, name: str | None = None) -> ModuleType:
    """Loads a module of ``lambda_src/<asset>`` (from the checkout or the installed wheel) as Lambda would.

    - A function asset: ``<asset>/<module>.py`` is loaded as a fresh module. ``name`` is its key in
      ``sys.modules`` (default ``<asset>.<module>``); give a distinct name to get an independent copy,
      for example to test two execution environments.
    - A layer asset (one with a ``python/`` folder, which Lambda puts on ``sys.path`` as
      ``/opt/python``): that folder goes on ``sys.path`` and ``module`` (dotted, e.g.
      ``circuit_breaker_ext.config``) is imported from it, so its relative imports work;
      ``name`` is not accepted.
    """
    root = asset_path(asset)
    layer = root / "python"
    if layer.is_dir():
        if name is not None:
            raise ValueError(f"{asset} is a layer: its modules are imported by their own names")
        if str(layer) not in sys.path:
            sys.path.insert(0, str(layer))
        return importlib.import_module(module)
    path = root / f"{module.replace('.', '/')}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no module {module!r} in Lambda asset {asset!r} ({path})")
    spec = importlib.util.spec_from_file_location(name or f"{asset}.{module}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded
