"""CloudFormation intrinsic functions, resolved against a stack that moto's CloudFormation deployed.

:class:`StackResolver` turns a template value (``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``,
``Fn::Join``, ``Fn::Sub``, ``Fn::Select``, ``Fn::Split``, ``Fn::If``, ``Fn::FindInMap``,
``Fn::ImportValue``, ``Fn::Base64``, ``Fn::GetAZs`` and the pseudo parameters) into the physical
value of the deployed stack, as CloudFormation would. It looks a resource up in this order:

1. ``bridged(logical_id, attribute)``: what the emulator created itself for a type moto's
   CloudFormation skips (a Scheduler schedule, an API Gateway stage, a function URL, ...);
2. the moto model object of the resource (moto 5.2.5 keeps them in the stack's resource map):
   ``physical_resource_id`` for ``Ref`` (a layer version's ARN: moto 5.2.5 leaves its physical id
   empty), ``get_cfn_attribute`` for ``Fn::GetAtt``;
3. the physical id moto reports in ``ListStackResources``.

A resource of a type nobody created resolves to ``None`` (and :attr:`StackResolver.unresolved`
names it), never to a made-up value. Nothing here imports moto or the CDK.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

#: What the emulator answers for a resource moto skipped: (logical id, attribute or None for Ref) -> value or None.
Bridged = Callable[[str, str | None], Any]

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class StackResolver:
    """Resolves intrinsics of one deployed stack (see the module docstring)."""

    def __init__(
        self,
        stack_name: str,
        template: Mapping[str, Any],
        *,
        account: str,
        region: str,
        stack_id: str = "",
        models: Mapping[str, Any] | None = None,
        physical: Mapping[str, str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        exports: Mapping[str, Any] | None = None,
        bridged: Bridged | None = None,
    ) -> None:
        self.stack_name = stack_name
        self.template = template
        self.resources: Mapping[str, Any] = template.get("Resources", {})
        self.models = models or {}
        self.physical = physical or {}
        self.parameters = parameters or {}
        self.exports = exports or {}
        self.bridged = bridged
        self.unresolved: set[str] = set()
        self.pseudo: dict[str, Any] = {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
            "AWS::StackId": stack_id,
            "AWS::NoValue": None,
            "AWS::NotificationARNs": [],
        }

    # ------------------------------------------------------------------ lookups
    def ref(self, name: str) -> Any:
        """What ``{"Ref": name}`` resolves to."""
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        declared = self.template.get("Parameters", {}).get(name)
        if declared is not None and name not in self.resources:
            return declared.get("Default")
        if name not in self.resources:
            raise KeyError(f"Ref to {name}: no such resource or parameter in stack {self.stack_name}")
        if self.bridged is not None:
            value = self.bridged(name, None)
            if value is not None:
                return value
        model = self.models.get(name)
        if model is not None:
            if self.resources[name].get("Type") == "AWS::Lambda::LayerVersion" and getattr(model, "arn", None):
                return model.arn  # moto 5.2.5 leaves a layer version's physical id empty
            value = getattr(model, "physical_resource_id", None)
            if value:
                return value
        if self.physical.get(name):
            return self.physical[name]
        self.unresolved.add(name)
        return None

    def get_att(self, name: str, attribute: str) -> Any:
        """What ``{"Fn::GetAtt": [name, attribute]}`` resolves to."""
        if name not in self.resources:
            raise KeyError(f"Fn::GetAtt of {name}: no such resource in stack {self.stack_name}")
        if self.bridged is not None:
            value = self.bridged(name, attribute)
            if value is not None:
                return value
        model = self.models.get(name)
        if model is not None:
            try:
                value = model.get_cfn_attribute(attribute)
            except Exception:  # moto raises NotImplementedError or its own errors for what it lacks
                value = None
            if value is not None:
                return value
        self.unresolved.add(f"{name}.{attribute}")
        return None

    # ------------------------------------------------------------------ resolution
    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function resolved."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                name, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return self.get_att(name, self.resolve(attribute))
            if key == "Fn::Join":
                separator, parts = argument
                return str(separator).join(_text(part) for part in self.resolve(parts))
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key == "Fn::If":
                condition, when_true, when_false = argument
                return self.resolve(when_true if self.condition(condition) else when_false)
            if key == "Fn::FindInMap":
                mapping, first, second = (self.resolve(item) for item in argument[:3])
                return self.template["Mappings"][mapping][first][second]
            if key == "Fn::ImportValue":
                export = self.resolve(argument)
                if export not in self.exports:
                    raise KeyError(f"Fn::ImportValue: no export named {export}")
                return self.exports[export]
            if key == "Fn::Base64":
                return base64.b64encode(str(self.resolve(argument)).encode()).decode()
            if key == "Fn::GetAZs":
                region = self.resolve(argument) or self.pseudo["AWS::Region"]
                return [f"{region}a", f"{region}b", f"{region}c"]
            if key == "Fn::ToJsonString":
                return json.dumps(self.resolve(argument), separators=(",", ":"))
        return {key: self.resolve(item) for key, item in value.items()}

    def condition(self, name: str) -> bool:
        """The value of the template's condition ``name``."""
        return bool(self._condition(self.template.get("Conditions", {})[name]))

    def _condition(self, expression: Any) -> Any:
        if isinstance(expression, dict) and len(expression) == 1:
            ((key, argument),) = expression.items()
            if key == "Fn::Equals":
                left, right = (self._condition(item) for item in argument)
                return left == right
            if key == "Fn::Not":
                return not self._condition(argument[0])
            if key == "Fn::And":
                return all(self._condition(item) for item in argument)
            if key == "Fn::Or":
                return any(self._condition(item) for item in argument)
            if key == "Condition":
                return self.condition(argument)
        return self.resolve(expression)

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {key: self.resolve(item) for key, item in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return _text(variables[name])
            if "." in name and name not in self.pseudo:
                logical_id, attribute = name.split(".", 1)
                return _text(self.get_att(logical_id, attribute))
            return _text(self.ref(name))

        return _SUB_VARIABLE.sub(replace, str(text)).replace("${!", "${")

    def outputs(self) -> dict[str, str]:
        """The template's Outputs, resolved (an output whose condition is false is left out)."""
        resolved: dict[str, str] = {}
        for key, output in self.template.get("Outputs", {}).items():
            if "Condition" in output and not self.condition(output["Condition"]):
                continue
            resolved[key] = _text(self.resolve(output["Value"]))
        return resolved


def _text(value: Any) -> str:
    """A resolved value as CloudFormation renders it in a string ("" for nothing, JSON for structures)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
