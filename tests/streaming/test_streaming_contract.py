"""The two copies of the streaming contract agree: the construct's and the runtime layer's.

``cdk_serverless_patterns.streaming.contract`` (what the constructs set) and the layer's own
``serverless_streaming/contract.py`` plus the names the WebSocket driver and the token sources keep in
their modules (what the runtime reads). A name changed on one side only would deploy functions that
silently ignore their configuration.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cdk_serverless_patterns._paths import asset_path
from cdk_serverless_patterns.streaming import contract

LAYER = asset_path(contract.RUNTIME_ASSET)
PACKAGE = LAYER / "python" / "serverless_streaming"
#: Names both copies must hold, with equal values.
SHARED = (
    "EXEC_WRAPPER_PATH",
    "ENV_EXEC_WRAPPER",
    "ENV_STREAMING_DISABLED",
    "ENV_STREAMING_HANDLER",
    "ENV_CONNECTIONS_TABLE",
    "ENV_TOKEN_SOURCE",
    "ENV_MODEL_ID",
    "ENV_FRAME_BYTES",
    "ENV_FRAME_MS",
    "TOKEN_SOURCES",
    "DEFAULT_FRAME_BYTES",
    "DEFAULT_FRAME_MS",
    "HTTP_INTEGRATION_CONTENT_TYPE",
    "MAX_STREAMED_BYTES",
)


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def layer_package() -> Any:
    """The layer's package, imported from lambda_src as Lambda imports it from /opt/python."""
    sys.path.insert(0, str(LAYER / "python"))
    try:
        import serverless_streaming
        import serverless_streaming.websocket

        yield serverless_streaming
    finally:
        sys.path.remove(str(LAYER / "python"))


def test_the_shared_names_are_equal() -> None:
    runtime = load(PACKAGE / "contract.py", "streaming_runtime_contract")
    for name in SHARED:
        assert getattr(contract, name) == getattr(runtime, name), name
    # and nothing the runtime reads is missing from the construct's copy
    runtime_names = {n for n in vars(runtime) if n.isupper()}
    missing = {n for n in runtime_names if not hasattr(contract, n)} - {
        "RESPONSE_MODE_HEADER", "RESPONSE_MODE_STREAMING", "ERROR_TYPE_TRAILER", "ERROR_BODY_TRAILER",
    }  # fmt: skip
    assert not missing, f"the runtime's contract has names the construct's copy lacks: {sorted(missing)}"
    for name in runtime_names & {n for n in vars(contract) if n.isupper()}:
        assert getattr(contract, name) == getattr(runtime, name), name


def test_the_websocket_drivers_names_match_the_construct(layer_package: Any) -> None:
    websocket = layer_package.websocket
    assert websocket.CONNECTION_KEY == contract.CONNECTIONS_TABLE_KEY
    assert websocket.TTL_ATTRIBUTE == contract.CONNECTIONS_TTL_ATTRIBUTE
    assert websocket.ENV_DISPATCH == contract.ENV_WS_DISPATCH
    assert contract.WS_DISPATCH_INLINE in websocket.DISPATCH_MODES
    assert websocket.STREAM_ACTION == contract.STREAM_ACTION
    module, function = contract.WEBSOCKET_DRIVER_HANDLER.rsplit(".", 1)
    assert module == "serverless_streaming.websocket" and callable(getattr(websocket, function))


def test_the_token_sources_read_the_names_the_construct_sets(
    layer_package: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = importlib.import_module("serverless_streaming.tokens")
    monkeypatch.setenv(contract.ENV_TOKEN_SOURCE, "offline")
    monkeypatch.delenv(contract.ENV_MODEL_ID, raising=False)
    source = tokens.from_environment()
    assert "".join(source.stream("hello"))  # the offline source answers
    monkeypatch.setenv(contract.ENV_TOKEN_SOURCE, "no-such-source")
    with pytest.raises(Exception, match=r"no-such-source|STREAMING_TOKEN_SOURCE"):
        tokens.from_environment()


def test_the_exec_wrapper_is_where_the_construct_points() -> None:
    wrapper = LAYER / contract.EXEC_WRAPPER_PATH.removeprefix("/opt/")
    assert wrapper.is_file(), wrapper
    assert os.access(wrapper, os.X_OK), f"{wrapper} is not executable"
    assert wrapper.read_bytes().startswith(b"#!/bin/sh")
