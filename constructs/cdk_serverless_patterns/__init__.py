"""cdk-serverless-patterns: AWS CDK L3 constructs for four serverless patterns.

The public API is what this module exports; everything else is internal.
"""

from cdk_serverless_patterns.callback import CallbackPattern, JobSource
from cdk_serverless_patterns.callback.callback_urls import CallbackUrls
from cdk_serverless_patterns.circuit_breaker import Circuit, CircuitBreaker

__version__ = "0.1.0"

__all__ = ["CallbackPattern", "CallbackUrls", "Circuit", "CircuitBreaker", "JobSource", "__version__"]
