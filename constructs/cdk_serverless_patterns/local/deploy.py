"""A synthesized template's resources, created in moto through its API (not moto's CloudFormation).

:func:`deploy_template` creates what the flows need (DynamoDB tables, SQS queues, state machines,
EventBridge rules), resolving the template's intrinsic functions (``Ref``, ``Fn::GetAtt``,
``Fn::Join`` and the pseudo parameters) with the names and ARNs moto gives them. Each supported
CloudFormation type has one entry in :data:`RESOURCE_TYPES`: how it is named, and how it is
created. Other types get a name but are not created: IAM is not enforced by moto, and logs,
alarms and policies do not take part in the flows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

#: The account moto serves by default.
ACCOUNT = "123456789012"
#: Longest physical name given (the shortest limit of the supported types, SQS's, is 80).
MAX_NAME = 80

#: A boto3 client of a service, by its name (``"dynamodb"``).
Clients = Callable[[str], Any]


class ResourceType:
    """How one CloudFormation type is deployed.

    - ``names(logical_id, physical_name, region)``: its ``Ref`` value and its ARN.
    - ``create(client, physical_name, properties)``: creates it from its resolved properties with
      ``client(service)``, a boto3 client bound to moto; ``None``: it is named, not created.
    - ``order``: resources are created in ascending order, in template order within one (a rule's
      target must exist before the rule).
    """

    __slots__ = ("create", "names", "order")

    def __init__(
        self,
        names: Callable[[str, str, str], tuple[str, str]],
        create: Callable[[Clients, str, dict[str, Any]], None] | None = None,
        order: int = 0,
    ) -> None:
        self.names = names
        self.create = create
        self.order = order


class Deployment:
    """What :func:`deploy_template` created: physical names and ARNs by logical id."""

    def __init__(self) -> None:
        self.refs: dict[str, str] = {}
        self.arns: dict[str, str] = {}

    def ref(self, logical_id: str) -> str:
        return str(self.refs[logical_id])

    def arn(self, logical_id: str) -> str:
        return self.arns[logical_id]

    def find(self, template: Mapping[str, Any], resource_type: str, contains: str = "") -> str:
        """The one logical id of ``resource_type`` whose id contains ``contains``."""
        matches = [k for k, v in template["Resources"].items() if v["Type"] == resource_type and contains in k]
        if len(matches) != 1:
            raise LookupError(f"expected one {resource_type} matching {contains!r}, found {matches}")
        return str(matches[0])


# --------------------------------------------------------------------------- one entry per type
def _table_names(logical_id: str, physical: str, region: str) -> tuple[str, str]:
    return physical, f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{physical}"


def _create_table(client: Clients, physical: str, props: dict[str, Any]) -> None:
    dynamodb = client("dynamodb")
    dynamodb.create_table(
        TableName=physical,
        KeySchema=props["KeySchema"],
        AttributeDefinitions=props["AttributeDefinitions"],
        BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
    )
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(TableName=physical, TimeToLiveSpecification=ttl)


def _queue_names(logical_id: str, physical: str, region: str) -> tuple[str, str]:
    return f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{physical}", f"arn:aws:sqs:{region}:{ACCOUNT}:{physical}"


def _create_queue(client: Clients, physical: str, props: dict[str, Any]) -> None:
    client("sqs").create_queue(QueueName=physical)


def _state_machine_names(logical_id: str, physical: str, region: str) -> tuple[str, str]:
    arn = f"arn:aws:states:{region}:{ACCOUNT}:stateMachine:{physical}"
    return arn, arn


def _create_state_machine(client: Clients, physical: str, props: dict[str, Any]) -> None:
    client("stepfunctions").create_state_machine(
        name=physical,
        definition=props["DefinitionString"],
        roleArn=props["RoleArn"],
        type=props.get("StateMachineType", "STANDARD"),
    )


def _event_bus_names(logical_id: str, physical: str, region: str) -> tuple[str, str]:
    return physical, f"arn:aws:events:{region}:{ACCOUNT}:event-bus/{physical}"


def _create_event_bus(client: Clients, physical: str, props: dict[str, Any]) -> None:
    client("events").create_event_bus(Name=physical)


def _create_rule(client: Clients, physical: str, props: dict[str, Any]) -> None:
    events = client("events")
    bus = props.get("EventBusName", "default")
    events.put_rule(Name=physical, EventBusName=bus, EventPattern=json.dumps(props["EventPattern"]), State="ENABLED")
    events.put_targets(Rule=physical, EventBusName=bus, Targets=props.get("Targets", []))


def _role_names(logical_id: str, physical: str, region: str) -> tuple[str, str]:
    return physical, f"arn:aws:iam::{ACCOUNT}:role/{physical}"


def _bucket_names(logical_id: str, physical: str, region: str) -> tuple[str, str]:
    return physical.lower(), f"arn:aws:s3:::{physical.lower()}"


def _other_names(logical_id: str, physical: str, region: str) -> tuple[str, str]:
    # Not the type's real ARN format: nothing here needs one yet.
    return physical, f"arn:aws:cloudformation:{region}:{ACCOUNT}:{logical_id}"


#: CloudFormation type -> how it is named and created. Types not listed are named by
#: :data:`OTHER` and not created.
RESOURCE_TYPES: dict[str, ResourceType] = {
    "AWS::DynamoDB::Table": ResourceType(_table_names, _create_table, order=0),
    "AWS::SQS::Queue": ResourceType(_queue_names, _create_queue, order=0),
    "AWS::Events::EventBus": ResourceType(_event_bus_names, _create_event_bus, order=0),
    "AWS::StepFunctions::StateMachine": ResourceType(_state_machine_names, _create_state_machine, order=1),
    "AWS::Events::Rule": ResourceType(_other_names, _create_rule, order=2),
    "AWS::IAM::Role": ResourceType(_role_names),
    "AWS::S3::Bucket": ResourceType(_bucket_names),
}
OTHER = ResourceType(_other_names)


def deploy_template(
    template: Mapping[str, Any], session: Any, *, region: str = "us-east-1", prefix: str = ""
) -> Deployment:
    """Creates the template's resources of the types in :data:`RESOURCE_TYPES` in moto (via
    ``session``, a boto3 session bound to moto), each named ``prefix + logical id`` (at most 80
    characters)."""
    deployment = Deployment()
    resources = template["Resources"]
    pseudo = {
        "AWS::Partition": "aws",
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com",
    }

    def name(logical_id: str) -> str:
        return f"{prefix}{logical_id}"[:MAX_NAME]

    # Names and ARNs first, so that any resource may reference any other.
    for logical_id, resource in resources.items():
        kind = RESOURCE_TYPES.get(resource["Type"], OTHER)
        deployment.refs[logical_id], deployment.arns[logical_id] = kind.names(logical_id, name(logical_id), region)

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Ref"}:
                target = value["Ref"]
                return pseudo.get(target) or deployment.refs[target]
            if set(value) == {"Fn::GetAtt"}:
                target, attribute = value["Fn::GetAtt"]
                if attribute in ("Arn", "StreamArn"):
                    return deployment.arns[target]
                if attribute in ("QueueName", "Name", "TableName"):
                    return name(target)
                return deployment.refs[target]
            if set(value) == {"Fn::Join"}:
                separator, parts = value["Fn::Join"]
                return separator.join(str(resolve(part)) for part in parts)
            return {key: resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return value

    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, region_name=region)
        return clients[service]

    created = [
        (RESOURCE_TYPES[resource["Type"]], logical_id, resource)
        for logical_id, resource in resources.items()
        if resource["Type"] in RESOURCE_TYPES and RESOURCE_TYPES[resource["Type"]].create is not None
    ]
    for kind, logical_id, resource in sorted(created, key=lambda entry: entry[0].order):  # stable: template order
        assert kind.create is not None
        kind.create(client, name(logical_id), resolve(resource.get("Properties", {})))
    return deployment
