"""Find a resource of a synthesized template by the construct that made it, not by its logical id.

CDK writes each resource's construct path into the template as ``Metadata["aws:cdk:path"]``
(``"MyStack/Workflow/Resource"``). Logical ids are derived from that path plus a hash, so a
substring of a logical id can match two resources, or stop matching when a construct moves. The
path says exactly which construct is meant::

    from cdk_serverless_patterns.testing.resources import logical_id

    workflow_id = logical_id(template, workflow)                 # the construct itself
    workflow_id = logical_id(template, "MyFlow/Workflow")        # or its path, with the stack name
    workflow_id = logical_id(template, "Workflow")               # or relative to the stack
    table_id = logical_id(template, callback.table)              # a construct's default child (Resource)
    workflow_arn = deployment.arn(workflow_id)                   # then look it up in the emulator

Imports neither the CDK nor moto for a path; a construct is recognized by its ``node.path``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The template metadata key holding a resource's construct path.
PATH_METADATA = "aws:cdk:path"
#: The id CDK gives an L2 construct's underlying CloudFormation resource.
DEFAULT_CHILD = "Resource"


def construct_path(target: object) -> str:
    """The construct path of ``target``: a string as given, or a construct's ``node.path``."""
    if isinstance(target, str):
        return target.strip("/")
    node = getattr(target, "node", None)
    path = getattr(node, "path", None)
    if not isinstance(path, str):
        raise TypeError(f"expected a construct or a construct path, got {type(target).__name__}")
    return path.strip("/")


def resource_paths(template: Mapping[str, Any]) -> dict[str, str]:
    """Every resource's construct path, by logical id (resources without path metadata left out)."""
    paths: dict[str, str] = {}
    for logical, resource in template.get("Resources", {}).items():
        path = (resource.get("Metadata") or {}).get(PATH_METADATA)
        if isinstance(path, str):
            paths[logical] = path
    return paths


def logical_ids(template: Mapping[str, Any], target: object, *, resource_type: str | None = None) -> list[str]:
    """Every logical id whose construct path is ``target``'s path or its default child
    (``<path>/Resource``), the path given with or without the stack's name, optionally only
    resources of ``resource_type``."""
    wanted = construct_path(target)
    candidates = {wanted, f"{wanted}/{DEFAULT_CHILD}"}
    found = []
    for logical, path in resource_paths(template).items():
        relative = path.split("/", 1)[1] if "/" in path else path
        type_ok = resource_type is None or template["Resources"][logical].get("Type") == resource_type
        if type_ok and (path in candidates or relative in candidates):
            found.append(logical)
    return sorted(found)


def logical_id(template: Mapping[str, Any], target: object, *, resource_type: str | None = None) -> str:
    """The one logical id of the resource that the construct ``target`` (or the construct path
    ``target``) synthesized; see :func:`logical_ids`. Raises ``LookupError`` naming the paths
    that are there when there is not exactly one, and when the template carries no path
    metadata and ``target`` is a path. Python's ``cdk.App()`` writes no path metadata unless its
    context sets ``aws:cdk:enable-path-metadata`` (the CDK CLI sets it); for a construct ``target``
    the logical id is then computed by its stack, as CDK computes it."""
    paths = resource_paths(template)
    if template.get("Resources") and not paths:
        computed = _computed_logical_id(target)
        if computed is not None and computed in template["Resources"]:
            return computed
        raise LookupError(
            f"the template has no {PATH_METADATA!r} metadata: pass the construct itself, or synthesize with "
            "cdk.App(context={'aws:cdk:enable-path-metadata': True}) (the CDK CLI turns it on)"
        )
    found = logical_ids(template, target, resource_type=resource_type)
    if len(found) != 1:
        wanted = construct_path(target)
        kind = f" of type {resource_type}" if resource_type else ""
        near = sorted(p for p in paths.values() if wanted.rsplit("/", 1)[-1] in p)[:10]
        raise LookupError(
            f"expected one resource{kind} at construct path {wanted!r}, found {found or 'none'}"
            + (f"; paths that look close: {near}" if near else "")
        )
    return found[0]


def _computed_logical_id(target: object) -> str | None:
    """The logical id a construct's stack gives it (or its default child), or None for a path."""
    if isinstance(target, str) or getattr(target, "node", None) is None:
        return None
    import aws_cdk as cdk  # a construct was passed: the CDK is loaded already

    element = target if isinstance(target, cdk.CfnElement) else target.node.default_child  # type: ignore[attr-defined]
    if not isinstance(element, cdk.CfnElement):
        return None
    stack = cdk.Stack.of(element)
    return str(stack.resolve(stack.get_logical_id(element)))
