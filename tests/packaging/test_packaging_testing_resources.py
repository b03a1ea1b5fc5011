"""testing.resources: a resource of a synthesized template found by its construct, not by a
substring of its logical id."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from cdk_serverless_patterns.testing.resources import logical_id, logical_ids, resource_paths


@pytest.fixture(scope="module")
def apps() -> dict[str, Any]:
    """The same stack with and without path metadata: two queues whose ids share a prefix, a
    state machine nested in a construct, and a queue whose id contains another's."""
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs
    from aws_cdk import aws_stepfunctions as sfn

    from constructs import Construct

    built: dict[str, Any] = {}
    for name, context in (("with", {"aws:cdk:enable-path-metadata": True}), ("without", {})):
        app = cdk.App(context=context)
        stack = cdk.Stack(app, "Flows")
        orders = sqs.Queue(stack, "Orders")
        orders_dlq = sqs.Queue(stack, "OrdersDlq")
        group = Construct(stack, "Billing")
        machine = sfn.StateMachine(
            group, "Workflow", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(group, "P"))
        )
        other = sfn.StateMachine(
            stack, "Workflow", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "Q"))
        )
        template = app.synth().get_stack_by_name("Flows").template
        built[name] = {"template": template, "orders": orders, "dlq": orders_dlq, "machine": machine, "other": other}
    return built


def test_a_construct_and_its_path_find_the_same_resource(apps: dict[str, Any]) -> None:
    built = apps["with"]
    template = built["template"]
    orders = logical_id(template, built["orders"])
    assert logical_id(template, "Flows/Orders") == orders == logical_id(template, "Orders")
    assert template["Resources"][orders]["Metadata"]["aws:cdk:path"] == "Flows/Orders/Resource"
    # "Orders" is a substring of the dead-letter queue's logical id too: the path is not ambiguous.
    assert logical_id(template, "OrdersDlq") != orders
    assert len([k for k in template["Resources"] if "Orders" in k]) == 2


def test_nested_constructs_with_the_same_id_are_told_apart(apps: dict[str, Any]) -> None:
    built = apps["with"]
    template = built["template"]
    nested = logical_id(template, "Billing/Workflow", resource_type="AWS::StepFunctions::StateMachine")
    top = logical_id(template, "Workflow", resource_type="AWS::StepFunctions::StateMachine")
    assert nested != top
    assert nested == logical_id(template, built["machine"]) and top == logical_id(template, built["other"])


def test_the_role_of_a_construct_is_found_by_its_own_path(apps: dict[str, Any]) -> None:
    template = apps["with"]["template"]
    role = logical_id(template, "Billing/Workflow/Role")
    assert template["Resources"][role]["Type"] == "AWS::IAM::Role"
    assert logical_ids(template, "Billing/Workflow") == [logical_id(template, apps["with"]["machine"])]


def test_a_missing_or_ambiguous_path_names_what_is_there(apps: dict[str, Any]) -> None:
    template = apps["with"]["template"]
    with pytest.raises(LookupError, match=r"found none; paths that look close: \['Flows/Billing/Workflow/Resource'"):
        logical_id(template, "Billing/Workflow", resource_type="AWS::SQS::Queue")
    with pytest.raises(LookupError, match="expected one resource at construct path 'Nowhere'"):
        logical_id(template, "Nowhere")
    with pytest.raises(TypeError, match="construct or a construct path"):
        logical_id(template, 42)


def test_without_path_metadata_a_construct_still_finds_its_resource(apps: dict[str, Any]) -> None:
    """Python's cdk.App() writes no path metadata unless asked; the construct's stack computes the id."""
    built = apps["without"]
    template = built["template"]
    assert resource_paths(template) == {}
    assert logical_id(template, built["orders"]) == logical_id(apps["with"]["template"], apps["with"]["orders"])
    assert logical_id(template, built["machine"]) in template["Resources"]
    with pytest.raises(LookupError, match="enable-path-metadata"):
        logical_id(template, "Orders")


def test_the_helper_imports_neither_the_cdk_nor_moto() -> None:
    code = (
        "import sys; import cdk_serverless_patterns.testing.resources as r; "
        "t = {'Resources': {'Q1': {'Type': 'AWS::SQS::Queue', 'Metadata': {'aws:cdk:path': 'S/Q/Resource'}}}}; "
        "assert r.logical_id(t, 'Q') == 'Q1'; "
        "assert 'aws_cdk' not in sys.modules and 'moto' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
