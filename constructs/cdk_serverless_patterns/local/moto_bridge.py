"""The one adapter between the synthesized templates and moto: what moto 5.2.5 lacks, bridged.

Measured in moto 5.2.5 (``moto/stepfunctions/parser``), used by the tests and the demo alike,
never by changing what a construct synthesizes:

1. **JSONata.** moto's interpreter parses JSONata states but evaluates them through a JVM bridge
   that is not shipped (``eval_jsonata_expression`` calls ``None``). :func:`install` plugs in
   ``jsonata-python`` (a port of the same jsonata-java engine) and provides Step Functions'
   ``$hash``, which moto stubs out.
2. **AWS SDK integrations' parameter names.** Step Functions takes an ``aws-sdk:`` task's
   parameters in PascalCase (``TaskToken``) and maps them onto the API's names; moto passes them
   to boto3 unchanged, which breaks every API whose members are camelCase (``sfn:sendTaskSuccess``
   wants ``taskToken``). The bridge maps them with botocore's own input shapes. APIs moto lacks
   (the Lambda durable-execution callbacks) can be routed to another local emulator with
   :func:`route_aws_sdk`.
3. **EventBridge -> Step Functions.** moto's rules deliver to SQS, logs and buses only (a
   ``states`` target raises ``NotImplementedError``). The bridge starts the execution, with the
   target's input transformer applied by moto's own template parser, an explicit execution name
   (moto needs one), and the target's dead-letter queue when the start fails.
4. **SendTaskFailure's cause.** moto's API handler drops the ``cause`` parameter; the bridge
   passes it on.
5. **A Parallel branch's ``States.*`` error.** moto re-raises a branch failure as a custom error
   name, which may not start with ``States.``, so a ``States.Timeout`` inside a Parallel state
   crashes the interpreter instead of reaching the Parallel state's Catch; the bridge keeps it a
   ``States.*`` error, as Step Functions does.
6. **StopExecution and waiting tasks.** moto marks a stopped execution stopped but leaves its
   ``.waitForTaskToken`` tasks waiting (until their timeout) and still accepting their tokens;
   Step Functions closes them. The bridge interrupts them, so that a later SendTaskSuccess fails
   (``TaskDoesNotExist``) as it does in AWS.
7. **Concurrent executions.** moto's ASL preprocessor keeps its query-language scope stack in a
   class attribute shared by every parse, so two executions that start at once (one parsing a
   JSONata state while the other parses a JSONPath one) can fail to parse and hang as RUNNING;
   the bridge gives each parse its own stack.
8. **TTL** never runs in moto: :func:`expire_items` deletes what DynamoDB TTL would.

:func:`deploy_template` creates the resources of a synthesized stack that these flows need
(DynamoDB tables, SQS queues, state machines, EventBridge rules) in moto, resolving the
template's intrinsic functions with moto's names and ARNs.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

_LOCK = threading.Lock()
_INSTALLED = False
ACCOUNT = "123456789012"


def install() -> None:
    """Installs the bridges into moto (idempotent, process-wide)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        _install_jsonata()
        _install_aws_sdk_parameter_names()
        _install_eventbridge_to_stepfunctions()
        _install_send_task_failure_cause()
        _install_parallel_states_errors()
        _install_stop_closes_waiting_tasks()
        _install_preprocessor_scope_per_parse()
        _INSTALLED = True


# --------------------------------------------------------------------------- 1. JSONata
def _hash(value: Any, algorithm: str) -> str:
    algorithms = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
    if algorithm not in algorithms:
        raise ValueError(f"$hash: unsupported algorithm {algorithm!r}")
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return hashlib.new(algorithms[algorithm], text.encode()).hexdigest()


def _install_jsonata() -> None:
    import jsonata  # type: ignore[import-untyped]
    from moto.stepfunctions.parser.asl.component.intrinsic import jsonata as intrinsic_jsonata
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata

    def evaluate(expression: str) -> Any:
        compiled = jsonata.Jsonata(expression)
        compiled.register_lambda("hash", _hash)
        return compiled.evaluate(None)

    # moto declares `$hash` as a stub returning an error string; drop it so the real one is used.
    intrinsic_jsonata._DECLARATION_BY_VARIABLE_REFERENCE.pop("$hash", None)
    moto_jsonata._eval_jsonata = evaluate


# --------------------------------------------------------------------------- 2. aws-sdk names
_ROUTES: dict[tuple[str, str], Callable[..., Any]] = {}


def route_aws_sdk(service: str, action: str, handler: Callable[..., Any] | None) -> None:
    """Answers one ``aws-sdk:<service>:<action>`` task with ``handler`` instead of moto (``None``
    removes the route). For APIs moto does not have, answered by another local emulator: the
    Lambda durable-execution callback APIs by the durable SDK's local runner. ``handler`` gets the
    task's arguments as Step Functions evaluated them (PascalCase) and returns the response."""
    key = (service, action.lower())
    if handler is None:
        _ROUTES.pop(key, None)
    else:
        _ROUTES[key] = handler


def _install_aws_sdk_parameter_names() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    original = StateTaskServiceAwsSdk._eval_service_task

    def eval_service_task(
        self: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> None:
        import botocore.session

        service = self._get_boto_service_name()
        action = self.resource.api_action
        route = _ROUTES.get((service, action.lower()))
        if route is not None:
            env.stack.append(route(**normalised_parameters) or {})
            return
        model = botocore.session.get_session().get_service_model(service)
        operation = next((name for name in model.operation_names if name.lower() == action.lower()), None)
        if operation is not None:
            shape = model.operation_model(operation).input_shape
            if shape is not None:
                self._to_boto_request(normalised_parameters, shape)
        original(self, env, resource_runtime_part, normalised_parameters, state_credentials)

    setattr(StateTaskServiceAwsSdk, "_eval_service_task", eval_service_task)  # noqa: B010


# --------------------------------------------------------------------------- 3. EventBridge -> SFN
def _install_eventbridge_to_stepfunctions() -> None:
    from moto.events.models import Rule
    from moto.events.utils import EventTemplateParser
    from moto.utilities.arns import parse_arn

    original = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        states_targets = [t for t in self.targets if parse_arn(t["Arn"]).service == "states"]
        others = [t for t in self.targets if t not in states_targets]
        if others:
            saved = self.targets
            self.targets = others
            try:
                original(self, original_event, transform_input)
            finally:
                self.targets = saved
        if not states_targets or not self.event_pattern.matches_event(original_event):
            return
        from moto.stepfunctions.responses import get_backend

        for target in states_targets:
            transformer = target.get("InputTransformer", {})
            if "Input" in target:
                payload: Any = json.loads(target["Input"])
            elif "InputPath" in target:
                payload = _at_path(original_event, target["InputPath"])
            elif transformer:
                payload = EventTemplateParser.parse(
                    input_template=transformer.get("InputTemplate"),
                    input_paths_map=transformer.get("InputPathsMap", {}),
                    event=original_event,
                )
            else:
                payload = original_event
            arn = parse_arn(target["Arn"])
            try:
                get_backend(arn.account, arn.region).start_execution(
                    state_machine_arn=target["Arn"],
                    name=f"event-{uuid.uuid4()}",
                    execution_input=payload if isinstance(payload, str) else json.dumps(payload),
                )
            except Exception:
                dead_letter = target.get("DeadLetterConfig", {}).get("Arn")
                if not dead_letter:
                    raise
                self._send_to_sqs_queue(parse_arn(dead_letter).resource_id, original_event, None)

    setattr(Rule, "send_to_targets", send_to_targets)  # noqa: B010


def _at_path(event: Any, path: str) -> Any:
    node = event
    for key in path.lstrip("$").strip(".").split("."):
        if key:
            node = node[key]
    return node


# --------------------------------------------------------------------------- 4. SendTaskFailure
def _install_send_task_failure_cause() -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> ActionResult:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    setattr(StepFunctionResponse, "send_task_failure", send_task_failure)  # noqa: B010


# --------------------------------------------------------------------------- 5. Parallel errors
def _install_parallel_states_errors() -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl

    def error_name(error_name: str) -> Any:
        if error_name and error_name.startswith("States."):
            return StatesErrorName.from_name(error_name)
        return CustomErrorName(error_name=error_name)

    setattr(branches_decl, "CustomErrorName", error_name)  # noqa: B010


# --------------------------------------------------------------------------- 6. StopExecution
def _install_stop_closes_waiting_tasks() -> None:
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackConsumerLeft
    from moto.stepfunctions.parser.backend.execution import Execution

    original = Execution.stop

    def stop(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        original(self, stop_date, error, cause)
        worker = getattr(self, "exec_worker", None)
        env = getattr(worker, "env", None)
        pool = getattr(getattr(env, "callback_pool_manager", None), "_pool", {})
        for endpoint in list(pool.values()):
            if endpoint.get_outcome() is None:
                endpoint.report(CallbackConsumerLeft())
                endpoint.interrupt_all()

    setattr(Execution, "stop", stop)  # noqa: B010


# --------------------------------------------------------------------------- 7. concurrent parses
def _install_preprocessor_scope_per_parse() -> None:
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    original = Preprocessor.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._query_language_per_scope = []

    setattr(Preprocessor, "__init__", init)  # noqa: B010


# --------------------------------------------------------------------------- 8. TTL
def expire_items(dynamodb: Any, table_name: str, *, now: float | None = None, attribute: str = "ttl") -> list[str]:
    """Deletes the items whose TTL attribute lies in the past, as DynamoDB TTL would; returns
    their ids."""
    moment = time.time() if now is None else now
    expired = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table_name):
        for item in page["Items"]:
            value = item.get(attribute, {}).get("N")
            if value is not None and float(value) < moment:
                dynamodb.delete_item(TableName=table_name, Key={"id": item["id"]})
                expired.append(item["id"]["S"])
    return expired


# --------------------------------------------------------------------------- deploying a template
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


def deploy_template(
    template: Mapping[str, Any], session: Any, *, region: str = "us-east-1", prefix: str = ""
) -> Deployment:
    """Creates the template's tables, queues, state machines and rules in moto (via ``session``,
    a boto3 session bound to moto). Other resource types are left out: IAM is not enforced by
    moto, and logs, alarms and policies do not take part in the flows."""
    deployment = Deployment()
    resources = template["Resources"]
    pseudo = {
        "AWS::Partition": "aws",
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com",
    }

    def name(logical_id: str) -> str:
        return f"{prefix}{logical_id}"[:80]

    # Names and ARNs first, so that any resource may reference any other.
    for logical_id, resource in resources.items():
        kind = resource["Type"]
        physical = name(logical_id)
        if kind == "AWS::DynamoDB::Table":
            deployment.refs[logical_id] = physical
            deployment.arns[logical_id] = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{physical}"
        elif kind == "AWS::SQS::Queue":
            deployment.refs[logical_id] = f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{physical}"
            deployment.arns[logical_id] = f"arn:aws:sqs:{region}:{ACCOUNT}:{physical}"
        elif kind == "AWS::StepFunctions::StateMachine":
            arn = f"arn:aws:states:{region}:{ACCOUNT}:stateMachine:{physical}"
            deployment.refs[logical_id] = arn
            deployment.arns[logical_id] = arn
        elif kind == "AWS::IAM::Role":
            deployment.refs[logical_id] = physical
            deployment.arns[logical_id] = f"arn:aws:iam::{ACCOUNT}:role/{physical}"
        elif kind == "AWS::S3::Bucket":
            deployment.refs[logical_id] = physical.lower()
            deployment.arns[logical_id] = f"arn:aws:s3:::{physical.lower()}"
        else:
            deployment.refs[logical_id] = physical
            deployment.arns[logical_id] = f"arn:aws:cloudformation:{region}:{ACCOUNT}:{logical_id}"

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
                if attribute == "QueueUrl":
                    return deployment.refs[target]
                return deployment.refs[target]
            if set(value) == {"Fn::Join"}:
                separator, parts = value["Fn::Join"]
                return separator.join(str(resolve(part)) for part in parts)
            return {key: resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return value

    dynamodb = session.client("dynamodb", region_name=region)
    sqs = session.client("sqs", region_name=region)
    sfn = session.client("stepfunctions", region_name=region)
    events = session.client("events", region_name=region)
    for logical_id, resource in resources.items():
        props = resolve(resource.get("Properties", {}))
        kind = resource["Type"]
        if kind == "AWS::DynamoDB::Table":
            dynamodb.create_table(
                TableName=deployment.refs[logical_id],
                KeySchema=props["KeySchema"],
                AttributeDefinitions=props["AttributeDefinitions"],
                BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
            )
            ttl = props.get("TimeToLiveSpecification")
            if ttl:
                dynamodb.update_time_to_live(TableName=deployment.refs[logical_id], TimeToLiveSpecification=ttl)
        elif kind == "AWS::SQS::Queue":
            sqs.create_queue(QueueName=name(logical_id))
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::StepFunctions::StateMachine":
            props = resolve(resource["Properties"])
            sfn.create_state_machine(
                name=name(logical_id),
                definition=props["DefinitionString"],
                roleArn=props["RoleArn"],
                type=props.get("StateMachineType", "STANDARD"),
            )
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Events::Rule":
            props = resolve(resource["Properties"])
            bus = props.get("EventBusName", "default")
            events.put_rule(
                Name=name(logical_id), EventBusName=bus, EventPattern=json.dumps(props["EventPattern"]), State="ENABLED"
            )
            events.put_targets(Rule=name(logical_id), EventBusName=bus, Targets=props.get("Targets", []))
    return deployment
