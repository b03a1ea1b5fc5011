"""Normalized templates for snapshot tests."""

from __future__ import annotations

import re
from typing import Any

_ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
_ASSET_PLACEHOLDER = "<asset-hash>"
_VOLATILE_RESOURCES = {"AWS::CDK::Metadata"}
_VOLATILE_PARAMETERS = {"BootstrapVersion"}


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _ASSET_HASH.sub(_ASSET_PLACEHOLDER, value)
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    return value


def normalize_template(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` that changes only when the infrastructure changes.

    Replaces asset hashes (the 64-hex-digit names of asset zips and their content hashes),
    drops CDK's version metadata and bootstrap rules, keeps everything else as synthesized.
    """
    result: dict[str, Any] = _scrub(template)
    resources = {
        logical_id: resource
        for logical_id, resource in result.get("Resources", {}).items()
        if resource.get("Type") not in _VOLATILE_RESOURCES
    }
    result["Resources"] = resources
    if "Parameters" in result:
        result["Parameters"] = {k: v for k, v in result["Parameters"].items() if k not in _VOLATILE_PARAMETERS}
        if not result["Parameters"]:
            del result["Parameters"]
    if "Rules" in result:
        result["Rules"] = {k: v for k, v in result["Rules"].items() if k != "CheckBootstrapVersion"}
        if not result["Rules"]:
            del result["Rules"]
    conditions = result.get("Conditions", {})
    conditions.pop("CDKMetadataAvailable", None)
    if "Conditions" in result and not conditions:
        del result["Conditions"]
    return result
