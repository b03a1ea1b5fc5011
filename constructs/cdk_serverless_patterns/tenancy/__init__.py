"""The tenant-isolation pattern: PER_TENANT Lambda functions behind a REST API that proves who the tenant is.

``contract`` (the names the constructs, the authorizer, the function-side helper and the tests share)
imports without the CDK; the construct classes load on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdk_serverless_patterns._lazy import lazy_exports
from cdk_serverless_patterns.tenancy import contract
from cdk_serverless_patterns.tenancy.contract import METRIC_NAMESPACE, TENANT_HEADER, TENANT_ID_PATTERN

_EXPORTS = {
    "TenantApi": "cdk_serverless_patterns.tenancy.tenant_api",
    "TenantPlan": "cdk_serverless_patterns.tenancy.tenant_api",
    "TenantIsolatedFunction": "cdk_serverless_patterns.tenancy.tenant_isolated_function",
    "TenantRegistry": "cdk_serverless_patterns.tenancy.tenant_registry",
}

if TYPE_CHECKING:
    from cdk_serverless_patterns.tenancy.tenant_api import TenantApi, TenantPlan
    from cdk_serverless_patterns.tenancy.tenant_isolated_function import TenantIsolatedFunction
    from cdk_serverless_patterns.tenancy.tenant_registry import TenantRegistry

__all__ = [
    "METRIC_NAMESPACE",
    "TENANT_HEADER",
    "TENANT_ID_PATTERN",
    "TenantApi",
    "TenantIsolatedFunction",
    "TenantPlan",
    "TenantRegistry",
    "contract",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
