"""What every construct shares: prop validation, asset lookup, cdk-nag acknowledgments, defaults."""

from cdk_serverless_patterns.core.assets import AssetNotFoundError, asset_path, lambda_code, lambda_src_root
from cdk_serverless_patterns.core.functions import DEFAULT_ARCHITECTURE, DEFAULT_RUNTIME, pattern_function
from cdk_serverless_patterns.core.nag import acknowledge, acknowledge_wildcards, rule_id
from cdk_serverless_patterns.core.props import PropError, PropErrors

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_RUNTIME",
    "AssetNotFoundError",
    "PropError",
    "PropErrors",
    "acknowledge",
    "acknowledge_wildcards",
    "asset_path",
    "lambda_code",
    "lambda_src_root",
    "pattern_function",
    "rule_id",
]
