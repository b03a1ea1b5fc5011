"""What every construct shares: prop validation, asset lookup, cdk-nag acknowledgments, defaults.

``core.apis`` (the regional REST API) is imported from its module: it pulls in API Gateway.
"""

from cdk_serverless_patterns.core.assets import AssetNotFoundError, asset_path, lambda_code, lambda_src_root
from cdk_serverless_patterns.core.functions import DEFAULT_ARCHITECTURE, DEFAULT_RUNTIME, pattern_function
from cdk_serverless_patterns.core.nag import acknowledge, acknowledge_wildcards, rule_id
from cdk_serverless_patterns.core.props import PropError, PropErrors, human_duration
from cdk_serverless_patterns.core.resources import alarm_on_any, dead_letter_queue
from cdk_serverless_patterns.core.tables import check_table_props, grant_table_key, pattern_table

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
    "check_table_props",
    "dead_letter_queue",
    "grant_table_key",
    "human_duration",
    "lambda_code",
    "lambda_src_root",
    "pattern_function",
    "pattern_table",
    "rule_id",
]
