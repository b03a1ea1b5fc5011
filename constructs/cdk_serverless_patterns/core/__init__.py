"""What every construct shares: prop validation, asset lookup, cdk-nag acknowledgments, defaults."""

from cdk_serverless_patterns.core.assets import AssetNotFoundError, asset_path, lambda_code, lambda_src_root
from cdk_serverless_patterns.core.functions import DEFAULT_ARCHITECTURE, DEFAULT_RUNTIME, pattern_function
from cdk_serverless_patterns.core.nag import acknowledge, acknowledge_wildcards, rule_id
from cdk_serverless_patterns.core.props import PropError, PropErrors
from cdk_serverless_patterns.core.resources import alarm_on_any, dead_letter_queue

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_RUNTIME",
    "AssetNotFoundError",
    "PropError",
    "PropErrors",
    "acknowledge",
    "acknowledge_wildcards",
    "alarm_on_any",
    "asset_path",
    "dead_letter_queue",
    "lambda_code",
    "lambda_src_root",
    "pattern_function",
    "rule_id",
]
