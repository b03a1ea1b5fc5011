"""Shared setup of the circuit-breaker tests: moto with the state table, and the probe function.

The extension and client tests run the real extension process in a Lambda execution environment
(``cdk_serverless_patterns.testing.circuit_breaker``); the function they run is
``functions/probe_handler.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cdk_serverless_patterns.testing.circuit_breaker import CircuitMoto, ProtectedFunction, protected_function

if TYPE_CHECKING:
    from cdk_serverless_patterns.testing.checks import CheckedAssembly

#: The source of the function the environments run.
PROBE_HANDLER = (Path(__file__).parent / "functions" / "probe_handler.py").read_text()


@pytest.fixture(scope="module")
def moto() -> Iterator[CircuitMoto]:
    """moto's server with the breaker's state table, for one test module."""
    with CircuitMoto() as server:
        yield server


@pytest.fixture(scope="session")
def lambda_environment() -> Callable[..., AbstractContextManager[ProtectedFunction]]:
    """``lambda_environment(workdir, moto, **CIRCUIT_BREAKER_env)``: the probe function, protected, started."""
    return functools.partial(protected_function, handler=PROBE_HANDLER)


@pytest.fixture(scope="session")
def circuit_breaker_integ_assembly(tmp_path_factory: pytest.TempPathFactory) -> CheckedAssembly:
    """integ/integ_circuit_breaker.py synthesized once, as the CDK CLI (and the integ-runner) would, with cdk-nag."""
    import integ_circuit_breaker  # integ/ is on sys.path (tests/conftest.py)

    from cdk_serverless_patterns.testing.integ import synth_integ_app

    return synth_integ_app(integ_circuit_breaker.build_app, tmp_path_factory.mktemp("integ_circuit_breaker"))
