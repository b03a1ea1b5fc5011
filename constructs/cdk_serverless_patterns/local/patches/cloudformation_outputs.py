"""A stack whose Outputs read an attribute of a resource moto does not model deploys, as in AWS.

Measured on moto 5.2.5: ``ResourceMap.validate_outputs`` looks up the moto class of every
``Fn::GetAtt`` target in the Outputs and calls ``has_cfn_attr`` on it; for a type moto's
CloudFormation does not model (``AWS::Lambda::Url``, ``AWS::ApiGatewayV2::*``, ...) the lookup is
``None`` and stack creation crashes with ``'NoneType' object has no attribute 'has_cfn_attr'`` (the
CDK CLI then reports a deserialization error). AWS models every type, so such an output is valid.
This patch skips the attribute check for types moto does not model (for modelled types moto's own
check, and its ``UnsupportedAttribute`` error, stay). ``DescribeStacks`` would then crash on the same
output ("Fn::GetAtt references undefined resource"): moto leaves such an output out of its answer
instead, and the emulator reads outputs from the template itself (``stack_resolver``), as it does
for every resource moto skips. Delete this module (and its line in ``patches.PATCHES``) when moto models the
types the samples use.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from moto.cloudformation import parsing

    original = parsing.ResourceMap.validate_outputs
    if getattr(original, "_skips_unmodelled", False):
        return

    def validate_outputs(self: Any) -> None:
        outputs = self._template.get("Outputs") or {}
        unmodelled = {}
        for key, output in outputs.items():
            value = output.get("Value") if isinstance(output, dict) else None
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                target = self._resource_json_map.get(value["Fn::GetAtt"][0]) or {}
                if parsing.resource_class_from_type(str(target.get("Type", ""))) is None:
                    unmodelled[key] = output
        if not unmodelled:
            return original(self)
        kept = {key: output for key, output in outputs.items() if key not in unmodelled}
        self._template["Outputs"] = kept
        try:
            return original(self)
        finally:
            self._template["Outputs"] = outputs

    validate_outputs._skips_unmodelled = True  # type: ignore[attr-defined]
    parsing.ResourceMap.validate_outputs = validate_outputs  # type: ignore[method-assign]

    parse_output = parsing.parse_output

    def parse_output_of_modelled(output_logical_id: str, output_json: Any, resources_map: Any) -> Any:
        value = output_json.get("Value") if isinstance(output_json, dict) else None
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target = resources_map._resource_json_map.get(value["Fn::GetAtt"][0]) or {}
            if parsing.resource_class_from_type(str(target.get("Type", ""))) is None:
                return None  # moto cannot resolve it: left out (the emulator resolves it from the template)
        return parse_output(output_logical_id, output_json, resources_map)

    parsing.parse_output = parse_output_of_modelled
