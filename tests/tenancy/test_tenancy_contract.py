"""The runtime's copies of the contract names equal the contract (the runtime ships without the library)."""

from __future__ import annotations

import re

import pytest

from cdk_serverless_patterns.tenancy import contract
from cdk_serverless_patterns.testing.moto import load_runtime_module

authorizer = load_runtime_module("tenancy_authorizer", "tenancy_authorizer", name="tenancy_authorizer_contract")
runtime = load_runtime_module("tenancy_runtime", "tenancy_runtime")


@pytest.mark.parametrize("module", [authorizer, runtime], ids=["authorizer", "runtime"])
def test_runtime_copies_equal_the_contract(module: object) -> None:
    copies = {name: getattr(module, name) for name in dir(contract) if name.isupper() and hasattr(module, name)}
    assert len(copies) >= 10
    for name, value in copies.items():
        expected = getattr(contract, name)
        if isinstance(expected, re.Pattern):
            assert value.pattern == expected.pattern, name
        else:
            assert value == expected, name


def test_the_tenant_pattern_is_stricter_than_lambdas() -> None:
    """Every tenant id we accept, Lambda accepts too (X-Amz-Tenant-Id: 1-256 of [a-zA-Z0-9._:/=+-@ ])."""
    lambda_pattern = re.compile(r"[a-zA-Z0-9._:/=+\-@ ]{1,256}")
    for tenant in ("a", "acme", "ACME-01", "t_" + "x" * 62, "0"):
        assert contract.TENANT_ID_PATTERN.fullmatch(tenant) and lambda_pattern.fullmatch(tenant)
    for tenant in ("", "-a", "_a", "a.b", "a/b", "a b", "a" * 65, "é"):
        assert not contract.TENANT_ID_PATTERN.fullmatch(tenant)


def test_the_contract_imports_without_the_cdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import cdk_serverless_patterns.tenancy as t; t.contract.TENANT_HEADER; "
        "sys.exit(1 if 'aws_cdk' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
