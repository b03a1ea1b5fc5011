"""The public API: every public class of a pattern is exported from its package and from the top level,
the constructs show the same faces (alarms, dead-letter queue), and their properties are typed."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs

import cdk_serverless_patterns
from cdk_serverless_patterns import callback, circuit_breaker

PATTERN_PACKAGES = [callback, circuit_breaker]
#: Names a construct module imports for type checking only (to avoid an import cycle).
LOCALNS = {"CallbackUrls": cdk_serverless_patterns.CallbackUrls}
CONSTRUCTS = [
    cdk_serverless_patterns.CallbackPattern,
    cdk_serverless_patterns.CircuitBreaker,
    cdk_serverless_patterns.MacieJobStatusForwarder,
]


@pytest.mark.parametrize("package", PATTERN_PACKAGES, ids=lambda p: p.__name__)
def test_every_public_class_of_a_pattern_is_exported_from_the_top(package: Any) -> None:
    classes = {name for name in package.__all__ if inspect.isclass(getattr(package, name))}
    assert classes, f"{package.__name__} exports no class"
    assert classes <= set(cdk_serverless_patterns.__all__), classes - set(cdk_serverless_patterns.__all__)
    for name in classes:
        assert getattr(cdk_serverless_patterns, name) is getattr(package, name)
    assert package.contract.__name__ == f"{package.__name__}.contract"


@pytest.mark.parametrize("construct", CONSTRUCTS, ids=lambda c: c.__name__)
def test_the_constructs_expose_alarms_and_a_dead_letter_queue_alike(construct: type) -> None:
    hints = {
        name: typing.get_type_hints(getattr(construct, name).fget, localns=LOCALNS)
        for name in ("alarms", "dead_letter_queue")
    }
    assert hints["alarms"]["return"] == list[cloudwatch.Alarm]
    assert hints["dead_letter_queue"]["return"] is sqs.IQueue


@pytest.mark.parametrize("construct", [*CONSTRUCTS, cdk_serverless_patterns.CallbackUrls], ids=lambda c: c.__name__)
def test_every_property_is_typed(construct: type) -> None:
    properties = {name: value for name, value in vars(construct).items() if isinstance(value, property)}
    assert properties
    untyped = {
        name: hints.get("return")
        for name, prop in properties.items()
        if (hints := typing.get_type_hints(prop.fget, localns=LOCALNS)).get("return") in (None, Any)
    }
    assert not untyped, f"{construct.__name__} has untyped properties: {untyped}"
