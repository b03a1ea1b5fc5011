"""cdk-serverless-patterns: AWS CDK L3 constructs for four serverless patterns.

The public API is what this module exports; everything else is internal. The constructs load on
first use (PEP 562), so that ``import cdk_serverless_patterns`` and the ``serverless-patterns``
command start without the CDK (its import costs seconds and needs Node).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdk_serverless_patterns._lazy import lazy_exports

__version__ = "0.1.0"

# Public name -> module that defines it. A new export goes here, in the TYPE_CHECKING block and in __all__.
_EXPORTS = {
    "CallbackPattern": "cdk_serverless_patterns.callback",
    "CallbackUrls": "cdk_serverless_patterns.callback",
    "JobSource": "cdk_serverless_patterns.callback",
    "MacieJobStatusForwarder": "cdk_serverless_patterns.callback",
    "Circuit": "cdk_serverless_patterns.circuit_breaker",
    "CircuitBreaker": "cdk_serverless_patterns.circuit_breaker",
    "HealthCheck": "cdk_serverless_patterns.circuit_breaker",
    "PropError": "cdk_serverless_patterns.core.props",
    "StreamingFunction": "cdk_serverless_patterns.streaming",
    "StreamingFunctionUrl": "cdk_serverless_patterns.streaming",
    "StreamingRestApi": "cdk_serverless_patterns.streaming",
    "WebSocketStreamingApi": "cdk_serverless_patterns.streaming",
    "TenantApi": "cdk_serverless_patterns.tenancy",
    "TenantIsolatedFunction": "cdk_serverless_patterns.tenancy",
    "TenantPlan": "cdk_serverless_patterns.tenancy",
    "TenantRegistry": "cdk_serverless_patterns.tenancy",
}

if TYPE_CHECKING:
    from cdk_serverless_patterns.callback import CallbackPattern, CallbackUrls, JobSource, MacieJobStatusForwarder
    from cdk_serverless_patterns.circuit_breaker import Circuit, CircuitBreaker, HealthCheck
    from cdk_serverless_patterns.core.props import PropError
    from cdk_serverless_patterns.streaming import (
        StreamingFunction,
        StreamingFunctionUrl,
        StreamingRestApi,
        WebSocketStreamingApi,
    )
    from cdk_serverless_patterns.tenancy import TenantApi, TenantIsolatedFunction, TenantPlan, TenantRegistry

__all__ = [
    "CallbackPattern",
    "CallbackUrls",
    "Circuit",
    "CircuitBreaker",
    "HealthCheck",
    "JobSource",
    "MacieJobStatusForwarder",
    "PropError",
    "StreamingFunction",
    "StreamingFunctionUrl",
    "StreamingRestApi",
    "TenantApi",
    "TenantIsolatedFunction",
    "TenantPlan",
    "TenantRegistry",
    "WebSocketStreamingApi",
    "__version__",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
