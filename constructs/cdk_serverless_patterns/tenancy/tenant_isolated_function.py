"""``TenantIsolatedFunction``: a Lambda function with PER_TENANT tenancy and what it needs around it.

The function gets ``TenancyConfig: {TenantIsolationMode: PER_TENANT}`` (set at creation only), JSON
logs with application and system log levels in its own log group, X-Ray tracing, its own role, the
function-side helper as a layer (``tenancy_runtime``: see ``lambda_src/tenancy_runtime``), and
CloudWatch Logs Insights query definitions for one tenant's lines and for the execution environments
(log streams) of each tenant.

What AWS only rejects at deploy or run time is refused at synthesis, each problem naming the prop
or the resource, all in one error:
- in the props: ``function_props`` that set SnapStart, provisioned concurrency, event sources or
  the tenancy itself;
- in the stack, at synthesis (a validation, so that it also catches what is added after the
  construct), whether they name the function or one of its versions or aliases: event source
  mappings (SQS, DynamoDB, Kinesis, MSK, Kafka), function URLs, aliases or versions with provisioned
  concurrency, SnapStart, EventBridge rule, Scheduler and Pipes targets (and Pipes enrichments),
  asynchronous-invocation destinations (EventInvokeConfig), Step Functions Lambda tasks that pass no
  ``TenantId``, AppSync data sources, Firehose record processors, SNS subscriptions, HTTP API (v2)
  integrations, API Gateway Lambda authorizers (REST and v2), custom resource providers
  (``ServiceToken``), invoke permissions for any AWS service but API Gateway, REST API methods that do not
  set ``X-Amz-Tenant-Id`` from the authorizer (a client header only with TenantApi's
  ``unsafe_trust_client_tenant_header`` opt-in), and a changed or removed ``TenancyConfig``
  (tenancy can only be set when a function is created; an override that drops or changes it would
  replace the function or fail the update).

The construct's validation sees its own stack; :class:`TenancyTemplateCheck`, run over every template of
the app, finds the same invokers when they name the function from another stack (``Fn::ImportValue``)
or by its literal name or ARN.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns

from cdk_serverless_patterns.core import PropErrors, acknowledge, alarm_on_any, lambda_code
from cdk_serverless_patterns.core.functions import DEFAULT_ARCHITECTURE, DEFAULT_LOG_RETENTION, DEFAULT_RUNTIME
from cdk_serverless_patterns.tenancy import contract
from constructs import Construct, IConstruct, IValidation

__all__ = ["FORBIDDEN_FUNCTION_PROPS", "TenantIsolatedFunction"]

#: ``function_props`` a tenant-isolated function cannot take, and why.
FORBIDDEN_FUNCTION_PROPS = {
    "tenancy_config": "is set by the construct (PER_TENANT) and can only be set when the function is created",
    "snap_start": "SnapStart cannot be combined with tenant isolation",
    "events": "event sources cannot pass a tenant id: only API Gateway REST APIs can (use TenantApi)",
    "current_version_options": "provisioned concurrency cannot be combined with tenant isolation",
    "code": "give code or code_path instead",
    "handler": "give handler instead",
    "runtime": "give runtime instead",
    "role": "the construct creates the function's own role; extend it through function.role",
    "log_group": "the construct creates the function's log group",
    "logging_format": "tenant-isolated functions log JSON (tenantId on every line)",
}
#: Services whose invocations carry a tenant id: only API Gateway (REST APIs, through TenantApi).
TENANT_CAPABLE_PRINCIPALS = frozenset({"apigateway.amazonaws.com"})
_CLAIM = re.compile(r"[A-Za-z0-9_]{1,64}")
#: The function's handler when the helper layer is on: it runs the user's handler (``TENANCY_HANDLER``).
RUNTIME_HANDLER = "tenancy_runtime.handler"
#: The only safe source of ``X-Amz-Tenant-Id`` in a method's request parameters: what an authorizer proved.
_AUTHORIZER_SOURCE = re.compile(r"context\.authorizer\.[A-Za-z0-9_]{1,64}")


def readable_name(construct: IConstruct) -> str:
    """``<stack name>-<path below the stack>``: a name for the API, plans and saved queries that is stable
    and readable (an integration test's copy of a stack differs only by its stack name)."""
    stack = cdk.Stack.of(construct)
    below = construct.node.path.split("/")[len(stack.node.scopes) :]
    return "-".join([stack.stack_name, *below])


def _references(value: Any, logical_id: str | frozenset[str]) -> bool:
    """Whether a resolved template value refers to the resource ``logical_id`` (or any of a set of them)."""
    ids = frozenset([logical_id]) if isinstance(logical_id, str) else logical_id
    if isinstance(value, dict):
        if value.get("Ref") in ids:
            return True
        get_att = value.get("Fn::GetAtt")
        if isinstance(get_att, list) and get_att and get_att[0] in ids:
            return True
        return any(_references(item, ids) for item in value.values())
    if isinstance(value, list):
        return any(_references(item, ids) for item in value)
    return False


def _cfn_resources(root: IConstruct) -> Iterator[cdk.CfnResource]:
    for node in root.node.find_all():
        if isinstance(node, cdk.CfnResource):
            yield node


def _properties(resource: cdk.CfnResource) -> dict[str, Any]:
    """The resource's CloudFormation properties as synthesized, without raw overrides (jsii hides them)."""
    stack = cdk.Stack.of(resource)
    properties = stack.resolve(resource._render_properties(stack.resolve(resource._cfn_properties)))
    return properties if isinstance(properties, dict) else {}


#: Resource metadata marking a tenant-isolated function in the template, for :class:`TenancyTemplateCheck`.
TENANCY_MARKER = "cdk-serverless-patterns:tenancy"
TEMPLATE_CHECK_NAME = "cdk-serverless-patterns-tenancy"


@dataclass(frozen=True)
class _MarkedFunction:
    """A tenant-isolated function as the template check sees it."""

    template_path: str
    logical_id: str
    name: str | None  # FunctionName, when it is a literal
    exports: frozenset[str]  # export names of outputs that name the function, a version or an alias
    client_header: bool


def _imports(value: Any, exports: frozenset[str]) -> bool:
    """Whether a template value holds ``Fn::ImportValue`` of one of ``exports``."""
    if isinstance(value, dict):
        imported = value.get("Fn::ImportValue")
        if isinstance(imported, str) and imported in exports:
            return True
        return any(_imports(item, exports) for item in value.values())
    if isinstance(value, list):
        return any(_imports(item, exports) for item in value)
    return False


def _names(value: Any, name: str | None) -> bool:
    """Whether a template value names the function literally: its name, or ``...:function:<name>`` (an ARN,
    qualified or not, also inside an integration URI or a piece of ``Fn::Join``/``Fn::Sub``)."""
    if not name:
        return False
    if isinstance(value, str):
        return value == name or re.search(rf":function:{re.escape(name)}(?=$|[:/])", value) is not None
    if isinstance(value, dict):
        return any(_names(item, name) for item in value.values())
    if isinstance(value, list):
        return any(_names(item, name) for item in value)
    return False


def _marked_functions(templates: Mapping[str, dict[str, Any]]) -> list[_MarkedFunction]:
    found = []
    for path, template in templates.items():
        resources = template.get("Resources") or {}
        for logical_id, resource in resources.items():
            if TENANCY_MARKER not in (resource.get("Metadata") or {}):
                continue
            properties = resource.get("Properties") or {}
            ids = {logical_id}
            for _ in range(2):  # versions and aliases (of versions) of the function are the function
                for other_id, other in resources.items():
                    if other.get("Type") in ("AWS::Lambda::Version", "AWS::Lambda::Alias") and _references(
                        other.get("Properties") or {}, frozenset(ids)
                    ):
                        ids.add(other_id)
            exports = frozenset(
                str(output["Export"]["Name"])
                for output in (template.get("Outputs") or {}).values()
                if isinstance(output, dict)
                and isinstance(output.get("Export"), dict)
                and isinstance(output["Export"].get("Name"), str)
                and _references(output.get("Value"), frozenset(ids))
            )
            name = properties.get("FunctionName")
            variables = (properties.get("Environment") or {}).get("Variables") or {}
            found.append(
                _MarkedFunction(
                    template_path=path,
                    logical_id=logical_id,
                    name=name if isinstance(name, str) else None,
                    exports=exports,
                    client_header=variables.get(contract.ENV_AUTHORIZER_KIND) == contract.AUTHORIZER_KIND_CLIENT_HEADER,
                )
            )
    return found


def _indirect_invokers(templates: Mapping[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(template path, logical id, problem) of every resource that invokes a tenant-isolated function in a way
    that cannot pass a tenant id, naming it from another stack (``Fn::ImportValue``) or by its literal name.
    References within the function's own stack (``Ref``/``Fn::GetAtt``) are :class:`TenancyIsRespected`'s."""
    problems = []
    for function in _marked_functions(templates):

        def direct(value: Any, function: _MarkedFunction = function) -> bool:
            return _imports(value, function.exports) or _names(value, function.name)

        for path, template in templates.items():
            resources = template.get("Resources") or {}
            local: set[str] = set()  # this template's versions and aliases of the imported or named function
            for _ in range(2):
                for other_id, other in resources.items():
                    if other.get("Type") in ("AWS::Lambda::Version", "AWS::Lambda::Alias"):
                        properties = other.get("Properties") or {}
                        if direct(properties) or _references(properties, frozenset(local)):
                            local.add(other_id)
            frozen = frozenset(local)

            def refers(value: Any, direct: Callable[[Any], bool] = direct, frozen: frozenset[str] = frozen) -> bool:
                return direct(value) or _references(value, frozen)

            checks = _invoker_checks(refers, client_header=function.client_header)
            for logical_id, resource in resources.items():
                if path == function.template_path and logical_id == function.logical_id:
                    continue
                check = _check_for(checks, str(resource.get("Type")))
                problem = check(resource.get("Properties") or {}) if check else None
                if problem:
                    problems.append((path, logical_id, f"{problem} (tenant-isolated function {function.logical_id})"))
    return problems


@jsii.implements(cdk.IPolicyValidationPlugin)
class TenancyTemplateCheck:
    """Checks the synthesized templates, escape-hatch overrides included (a construct cannot read those):
    a marked tenant-isolated function must still be PER_TENANT and without SnapStart. Registered once per
    app as a policy-validation plugin, like cdk-nag's packs; its findings fail synthesis.

    It sees every stack of the app, so it also finds what the construct's own validation cannot: invokers
    that cannot pass a tenant id and name the function from another stack (a cross-stack reference is an
    ``Fn::ImportValue`` of the function's export) or by its literal name or ARN (``function_name`` set,
    ``Function.from_function_name``/``from_function_arn`` with a string)."""

    @property
    def name(self) -> str:
        return TEMPLATE_CHECK_NAME

    @property
    def version(self) -> str | None:
        return None

    @property
    def rule_ids(self) -> list[str] | None:
        return ["TenancyUnchanged", "NoSnapStart", "NoTenantlessInvoker"]

    def validate(self, context: cdk.IPolicyValidationContext) -> cdk.PolicyValidationPluginReport:
        changed: list[cdk.PolicyViolatingResource] = []
        snap_start: list[cdk.PolicyViolatingResource] = []
        templates = {path: json.loads(Path(path).read_text()) for path in context.template_paths}
        for path, template in templates.items():
            for logical_id, resource in (template.get("Resources") or {}).items():
                if TENANCY_MARKER not in (resource.get("Metadata") or {}):
                    continue
                properties = resource.get("Properties") or {}
                if properties.get("TenancyConfig") != {"TenantIsolationMode": "PER_TENANT"}:
                    changed.append(
                        cdk.PolicyViolatingResource(
                            resource_logical_id=logical_id, template_path=path, locations=["Properties/TenancyConfig"]
                        )
                    )
                if properties.get("SnapStart"):
                    snap_start.append(
                        cdk.PolicyViolatingResource(
                            resource_logical_id=logical_id, template_path=path, locations=["Properties/SnapStart"]
                        )
                    )
        violations = []
        if changed:
            violations.append(
                cdk.PolicyViolation(
                    rule_name="TenancyUnchanged",
                    description="TenancyConfig of a TenantIsolatedFunction was changed or removed (an override): "
                    "tenancy can only be set when a function is created; CloudFormation would replace the function "
                    "or fail the update",
                    violating_resources=changed,
                    fix="Create a new function for another tenancy; remove the override",
                    severity="error",
                )
            )
        if snap_start:
            violations.append(
                cdk.PolicyViolation(
                    rule_name="NoSnapStart",
                    description="SnapStart cannot be combined with tenant isolation",
                    violating_resources=snap_start,
                    fix="Remove the SnapStart override",
                    severity="error",
                )
            )
        invokers: dict[str, list[cdk.PolicyViolatingResource]] = {}
        for path, logical_id, problem in _indirect_invokers(templates):
            invokers.setdefault(problem, []).append(
                cdk.PolicyViolatingResource(
                    resource_logical_id=logical_id, template_path=path, locations=["Properties"]
                )
            )
        for problem, resources in sorted(invokers.items()):
            violations.append(
                cdk.PolicyViolation(
                    rule_name="NoTenantlessInvoker",
                    description=problem,
                    violating_resources=resources,
                    fix="Invoke tenant-isolated functions only through TenantApi (or an SDK call that passes TenantId)",
                    severity="error",
                )
            )
        return cdk.PolicyValidationPluginReport(success=not violations, violations=violations)


#: A construct (without resources) marking a stage whose app has the template check already.
_CHECK_MARKER = "CdkServerlessPatternsTenancyTemplateCheck"


def _register_template_check(scope: Construct) -> None:
    """Adds :class:`TenancyTemplateCheck` to the scope's stage (the app) once."""
    stage = cdk.Stage.of(scope)
    if stage is None or stage.node.try_find_child(_CHECK_MARKER) is not None:
        return
    Construct(stage, _CHECK_MARKER)
    cdk.Validations.of(stage).add_plugins(TenancyTemplateCheck())


@jsii.implements(IValidation)
class TenancyIsRespected:
    """Synth-time checks of everything in the app that would invoke the function without a tenant id."""

    def __init__(self, owner: TenantIsolatedFunction) -> None:
        self._owner = owner

    def validate(self) -> list[str]:
        owner = self._owner
        function = owner.function
        cfn = function.node.default_child
        assert isinstance(cfn, lambda_.CfnFunction)
        stack = cdk.Stack.of(function)
        logical_id = stack.get_logical_id(cfn)
        where = f"TenantIsolatedFunction {owner.node.path}"
        problems: list[str] = []
        own = _properties(cfn)
        if own.get("TenancyConfig") != {"TenantIsolationMode": "PER_TENANT"}:
            problems.append(
                f"{where}: TenancyConfig: changed to {own.get('TenancyConfig')!r}; tenancy can only be set when a "
                "function is created (CloudFormation would replace the function or fail the update)"
            )
        if own.get("SnapStart"):
            problems.append(f"{where}: SnapStart: cannot be combined with tenant isolation")
        variables = (own.get("Environment") or {}).get("Variables") or {}
        expected = {name: stack.resolve(value) for name, value in owner._tenancy_environment.items()}
        for name in sorted(set(expected) | {n for n in variables if isinstance(n, str) and n.startswith("TENANCY_")}):
            if variables.get(name) != expected.get(name):
                problems.append(
                    f"{where}: environment {name}: {variables.get(name)!r} instead of {expected.get(name)!r}; the "
                    "construct owns the TENANCY_* variables (the helper's tenant checks rest on them): set them "
                    "through its props and TenantApi, never with add_environment or an override"
                )
        resources = list(_cfn_resources(stack))
        # An invoker may name the function through a version or an alias (of a version): each is the function.
        targets = {logical_id}
        for _ in range(2):
            for resource in resources:
                if resource.cfn_resource_type in ("AWS::Lambda::Version", "AWS::Lambda::Alias"):
                    try:
                        if _references(_properties(resource).get("FunctionVersion"), frozenset(targets)) or _references(
                            _properties(resource).get("FunctionName"), frozenset(targets)
                        ):
                            targets.add(str(stack.resolve(resource.logical_id)))  # overrides included
                    except Exception:  # an unresolvable value: CloudFormation's to judge
                        continue
        logical_id = frozenset(targets)  # type: ignore[assignment]
        client_header = owner._authorizer_kind == contract.AUTHORIZER_KIND_CLIENT_HEADER
        checks = _invoker_checks(lambda value: _references(value, logical_id), client_header=client_header)
        for resource in resources:
            if resource is cfn:
                continue
            check = _check_for(checks, resource.cfn_resource_type)
            if check is None:
                continue
            try:
                properties = _properties(resource)
            except Exception:  # a value this check cannot resolve: CloudFormation's to judge
                continue
            problem = check(properties)
            if problem:
                problems.append(f"{where}: {problem} ({resource.node.path})")
        return problems


def _invoker_checks(
    refers: Callable[[Any], bool], *, client_header: bool
) -> dict[str, Callable[[dict[str, Any]], str | None]]:
    """Per resource type: the problem of a resource (its resolved properties) that invokes the function in a way
    that cannot pass a tenant id, or None. ``refers`` tells whether a property value names the function."""
    return {
        "AWS::Lambda::EventSourceMapping": lambda p: (
            "event source mapping: Lambda rejects event sources (SQS, DynamoDB, Kinesis, MSK, Kafka) for "
            "tenant-isolated functions"
            if refers(p.get("FunctionName"))
            else None
        ),
        "AWS::Lambda::Url": lambda p: (
            "function URL: cannot be combined with tenant isolation" if refers(p.get("TargetFunctionArn")) else None
        ),
        "AWS::Lambda::Alias": lambda p: (
            "provisioned concurrency: cannot be combined with tenant isolation"
            if refers(p.get("FunctionName")) and p.get("ProvisionedConcurrencyConfig")
            else None
        ),
        "AWS::Lambda::Version": lambda p: (
            "provisioned concurrency: cannot be combined with tenant isolation"
            if refers(p.get("FunctionName")) and p.get("ProvisionedConcurrencyConfig")
            else None
        ),
        "AWS::Events::Rule": lambda p: (
            "EventBridge rule target: EventBridge cannot pass a tenant id, so every delivery would fail"
            if refers(p.get("Targets"))
            else None
        ),
        "AWS::Scheduler::Schedule": lambda p: (
            "EventBridge Scheduler target: Scheduler cannot pass a tenant id, so every invocation would fail"
            if refers(p.get("Target"))
            else None
        ),
        "AWS::SNS::Subscription": lambda p: (
            "SNS subscription: SNS cannot pass a tenant id, so every delivery would fail"
            if refers(p.get("Endpoint"))
            else None
        ),
        "AWS::ApiGatewayV2::Integration": lambda p: (
            "HTTP API (v2) integration: only REST APIs can set X-Amz-Tenant-Id (use TenantApi)"
            if refers(p.get("IntegrationUri"))
            else None
        ),
        "AWS::ApiGateway::Method": lambda p: (
            _method_problem(p.get("Integration") or {}, client_header=client_header)
            if refers((p.get("Integration") or {}).get("Uri"))
            else None
        ),
        "AWS::Pipes::Pipe": lambda p: (
            "EventBridge Pipes target or enrichment: Pipes cannot pass a tenant id, so every invocation would fail"
            if refers(p.get("Target")) or refers(p.get("Enrichment"))
            else None
        ),
        "AWS::Lambda::EventInvokeConfig": lambda p: (
            "asynchronous invocation destination (EventInvokeConfig OnSuccess/OnFailure): Lambda cannot pass a "
            "tenant id to a destination function, so every delivery would fail"
            if refers(p.get("DestinationConfig"))
            else None
        ),
        "AWS::StepFunctions::StateMachine": lambda p: (
            "Step Functions task (LambdaInvoke, arn:aws:states:::lambda:invoke): the task does not pass a "
            "tenant id, so every invocation would fail"
            if (
                refers(p.get("DefinitionString"))
                or refers(p.get("Definition"))
                or refers(p.get("DefinitionSubstitutions"))
            )
            and "TenantId" not in json.dumps([p.get("DefinitionString"), p.get("Definition")], default=str)
            else None
        ),
        "AWS::AppSync::DataSource": lambda p: (
            "AppSync Lambda data source: AppSync cannot pass a tenant id, so every resolver call would fail"
            if refers(p.get("LambdaConfig"))
            else None
        ),
        "AWS::KinesisFirehose::DeliveryStream": lambda p: (
            "Firehose record processor: Firehose cannot pass a tenant id, so every batch would fail"
            if refers(p)
            else None
        ),
        "AWS::Lambda::Permission": lambda p: (
            f"invoke permission for {p.get('Principal')}: only API Gateway can pass a tenant id"
            if refers(p.get("FunctionName"))
            and isinstance(p.get("Principal"), str)
            and str(p.get("Principal")).endswith(".amazonaws.com")
            and p.get("Principal") not in TENANT_CAPABLE_PRINCIPALS
            and p.get("Principal") not in ("events.amazonaws.com", "sns.amazonaws.com", "scheduler.amazonaws.com")
            else None
        ),
        # API Gateway invokes a Lambda authorizer without a tenant id (only integrations can set the header).
        "AWS::ApiGateway::Authorizer": lambda p: (
            "API Gateway Lambda authorizer: API Gateway invokes authorizers without a tenant id, so every request "
            "would fail (the authorizer must be an ordinary function)"
            if refers(p.get("AuthorizerUri"))
            else None
        ),
        "AWS::ApiGatewayV2::Authorizer": lambda p: (
            "API Gateway (v2) Lambda authorizer: API Gateway invokes authorizers without a tenant id"
            if refers(p.get("AuthorizerUri"))
            else None
        ),
        # CloudFormation invokes a custom resource's provider without a tenant id: the deployment would hang.
        "AWS::CloudFormation::CustomResource": lambda p: (
            "custom resource provider (ServiceToken): CloudFormation cannot pass a tenant id, so the stack "
            "operation would fail or wait for its timeout"
            if refers(p.get("ServiceToken"))
            else None
        ),
    }


def _check_for(
    checks: Mapping[str, Callable[[dict[str, Any]], str | None]], resource_type: str
) -> Callable[[dict[str, Any]], str | None] | None:
    """The invoker check of a resource type (``Custom::*`` types are custom resources)."""
    if resource_type.startswith("Custom::"):
        resource_type = "AWS::CloudFormation::CustomResource"
    return checks.get(resource_type)


def _method_problem(integration: Mapping[str, Any], *, client_header: bool) -> str | None:
    """What is wrong with how a REST method sets ``X-Amz-Tenant-Id``, or None.

    The header must come from what an authorizer proved (``context.authorizer.<key>``, or the JWT
    authorizer's claim through TenantApi's request template); a client header (or a literal) only with
    the ``unsafe_trust_client_tenant_header`` opt-in, which TenantApi records on the function."""
    use = f"map integration.request.header.{contract.TENANT_HEADER} from the authorizer's context (use TenantApi)"
    parameters = integration.get("RequestParameters") or {}
    wanted = f"integration.request.header.{contract.TENANT_HEADER}".lower()
    sources = [value for name, value in parameters.items() if str(name).lower() == wanted]
    if sources:
        for source in sources:
            if isinstance(source, str) and _AUTHORIZER_SOURCE.fullmatch(source):
                continue
            if client_header and isinstance(source, str) and source.startswith("method.request.header."):
                continue
            return (
                f"REST API method maps {contract.TENANT_HEADER} from {source!r}, which the caller controls (only "
                f"context.authorizer.<key> is proven; a client header needs unsafe_trust_client_tenant_header): {use}"
            )
        return None
    templates = integration.get("RequestTemplates") or {}
    override = f"#set($context.requestOverride.header.{contract.TENANT_HEADER} = $tenant)"
    if templates and all(
        override in str(t) and "#set($tenant = $util.parseJson($context.authorizer.claims." in str(t)
        for t in templates.values()
    ):
        return None
    return f"REST API method without {contract.TENANT_HEADER} from the authorizer: {use}"


class TenantIsolatedFunction(Construct):
    """A Lambda function whose every tenant gets its own execution environments (PER_TENANT).

    Args:
        handler: The handler, ``module.function``.
        code: The function's code. Give exactly one of ``code`` and ``code_path``.
        code_path: A folder of Lambda code (bundled with its ``requirements.txt``, if any, without Docker).
        description: The function's description. Default: none.
        runtime: A Python runtime. Default: Python 3.14.
        architecture: Default: ARM64.
        memory_size: Default: 256 MB; 128 to 10240.
        timeout: Default: 10 seconds; at most 29 seconds (API Gateway's integration timeout).
        environment: Environment variables. Default: none (the construct adds the helper's own);
            ``function_props["environment"]`` is merged over it.
        environment_encryption: Customer-managed key for the environment. Default: AWS-managed key.
        application_log_level: ``TRACE``, ``DEBUG``, ``INFO``, ``WARN``, ``ERROR`` or ``FATAL``.
            Default: ``INFO``.
        system_log_level: ``DEBUG``, ``INFO`` or ``WARN``. Default: ``WARN``.
        log_retention: Retention of the function's log group. Default: one month.
        log_removal_policy: What happens to the log group when it leaves the stack. Default: RETAIN.
        runtime_layer: Add the function-side helper layer (``from tenancy_runtime import tenant_handler``)
            and run the handler through it: the function's handler becomes ``tenancy_runtime.handler``,
            which runs ``handler`` (in ``TENANCY_HANDLER``) under ``tenant_handler``'s checks whether or
            not the code is decorated. Default: True.
        metric_namespace: Namespace of the helper's per-tenant metrics. Default:
            ``CdkServerlessPatterns/Tenancy``.
        alarm_topic: Where the error alarm (any tenant's invocation failed) notifies. Default: no
            alarm.
        function_props: Other ``lambda_.Function`` properties merged over the defaults; not those in
            ``FORBIDDEN_FUNCTION_PROPS`` (SnapStart, provisioned concurrency, event sources, tenancy).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        handler: str,
        code: lambda_.Code | None = None,
        code_path: Path | None = None,
        description: str | None = None,
        runtime: lambda_.Runtime = DEFAULT_RUNTIME,
        architecture: lambda_.Architecture = DEFAULT_ARCHITECTURE,
        memory_size: int = 256,
        timeout: cdk.Duration = cdk.Duration.seconds(10),
        environment: Mapping[str, str] | None = None,
        environment_encryption: kms.IKey | None = None,
        application_log_level: str = "INFO",
        system_log_level: str = "WARN",
        log_retention: logs.RetentionDays = DEFAULT_LOG_RETENTION,
        log_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        runtime_layer: bool = True,
        metric_namespace: str = contract.METRIC_NAMESPACE,
        alarm_topic: sns.ITopic | None = None,
        function_props: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        errors.require(
            (code is None) != (code_path is None), "code", "give exactly one of code and code_path (a folder)"
        )
        if code_path is not None:
            errors.require(Path(code_path).is_dir(), "code_path", f"{code_path} is not a folder")
        errors.require(
            isinstance(handler, str) and bool(re.fullmatch(r"[^\s]{1,128}", handler)),
            "handler",
            f"{handler!r} must be 1-128 characters without spaces (module.function)",
        )
        errors.require(
            not (runtime_layer and isinstance(handler, str) and handler.split(".")[0] == "tenancy_runtime"),
            "handler",
            f"{handler!r} is the helper itself: with runtime_layer the function runs tenancy_runtime.handler, which "
            "runs this handler (give your own module.function; it would call itself)",
        )
        errors.require(
            runtime.family == lambda_.RuntimeFamily.PYTHON or not runtime_layer,
            "runtime",
            f"{runtime.name} is not Python: the function-side helper layer is Python (set runtime_layer=False)",
        )
        errors.require(
            isinstance(memory_size, int) and 128 <= memory_size <= 10240,
            "memory_size",
            f"must be an integer from 128 to 10240, got {memory_size!r}",
        )
        errors.duration_between(
            timeout, "timeout", minimum=cdk.Duration.seconds(1), maximum=cdk.Duration.seconds(29), whole_seconds=True
        )
        errors.one_of(
            application_log_level, "application_log_level", ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
        )
        errors.one_of(system_log_level, "system_log_level", ("DEBUG", "INFO", "WARN"))
        errors.require(
            bool(re.fullmatch(r"[A-Za-z0-9_./#:-]{1,255}", metric_namespace))
            and not metric_namespace.startswith("AWS/"),
            "metric_namespace",
            f"{metric_namespace!r} is not a valid custom CloudWatch namespace",
        )
        extra = dict(function_props or {})
        for prop in sorted(set(extra) & set(FORBIDDEN_FUNCTION_PROPS)):
            errors.add(f"function_props.{prop}", FORBIDDEN_FUNCTION_PROPS[prop])
        for prop, variables in (("environment", environment), ("function_props.environment", extra.get("environment"))):
            for name in variables or {}:
                errors.require(
                    not str(name).startswith("TENANCY_"), prop, f"{name}: TENANCY_* variables are set by the construct"
                )
        errors.raise_if_any()

        self._metric_namespace = metric_namespace
        self._authorizer_kind: str | None = None
        self._log_group = logs.LogGroup(self, "LogGroup", retention=log_retention, removal_policy=log_removal_policy)
        self._role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the tenant-isolated function {self.node.path}"[:1000],
        )
        self._role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self._log_group.log_group_arn]
            )
        )
        self._layer = _runtime_layer(self) if runtime_layer else None
        props: dict[str, Any] = {
            "runtime": runtime,
            "architecture": architecture,
            "code": code
            if code is not None
            else lambda_code(Path(str(code_path)), architecture=architecture, runtime=runtime),
            # With the helper layer, the helper's entry point runs the user's handler (TENANCY_HANDLER) through
            # its checks: they never depend on the code remembering the decorator.
            "handler": RUNTIME_HANDLER if runtime_layer else handler,
            "description": description,
            # function_props' environment adds to (and overrides) the environment prop; TENANCY_* stay ours.
            "environment": {
                **dict(environment or {}),
                **dict(extra.pop("environment", None) or {}),
                contract.ENV_METRIC_NAMESPACE: metric_namespace,
                **({contract.ENV_HANDLER: handler} if runtime_layer else {}),
            },
            "environment_encryption": environment_encryption,
            "timeout": timeout,
            "memory_size": memory_size,
            "role": self._role,
            "log_group": self._log_group,
            "logging_format": lambda_.LoggingFormat.JSON,
            "application_log_level_v2": lambda_.ApplicationLogLevel[application_log_level],
            "system_log_level_v2": lambda_.SystemLogLevel[system_log_level],
            "tracing": lambda_.Tracing.ACTIVE,
            "tenancy_config": lambda_.TenancyConfig.PER_TENANT,
        }
        layers = list(extra.pop("layers", None) or [])
        props.update(extra)
        props["layers"] = [*([self._layer] if self._layer else []), *layers] or None
        self._function = lambda_.Function(self, "Function", **props)
        #: The TENANCY_* variables this construct set, checked at synthesis (the helper's checks rest on them).
        self._tenancy_environment: dict[str, str] = {
            name: value for name, value in props["environment"].items() if name.startswith("TENANCY_")
        }
        cfn = self._function.node.default_child
        assert isinstance(cfn, lambda_.CfnFunction)
        cfn.add_metadata(TENANCY_MARKER, "PER_TENANT")
        _register_template_check(self)
        acknowledge(
            self._role,
            "X-Ray PutTraceSegments and PutTelemetryRecords have no resource-level permissions (AWS forces '*').",
            "AwsSolutions-IAM5[Resource::*]",
        )
        acknowledge(
            self._function,
            "A tenant-isolated function is invoked synchronously through API Gateway, which returns its errors to "
            "the caller; asynchronous dead-letter queues and failure destinations never apply.",
            "Serverless-LambdaDLQ",
            "Serverless-LambdaAsyncFailureDestination",
        )
        self._queries = self._query_definitions()
        self._error_alarm: cloudwatch.Alarm | None = None
        if alarm_topic is not None:
            self._error_alarm = alarm_on_any(
                self,
                "ErrorAlarm",
                description=f"An invocation of the tenant-isolated function {self.node.path} failed",
                metric=self._function.metric_errors(period=cdk.Duration.minutes(1), statistic="Sum"),
                alarm_topic=alarm_topic,
            )
        self.node.add_validation(TenancyIsRespected(self))

    # ----------------------------------------------------------------------------------------------
    def _query_definitions(self) -> dict[str, logs.QueryDefinition]:
        base = readable_name(self)[-180:]
        tenant = "coalesce(tenantId, record.tenantId)"
        return {
            "tenant_lines": logs.QueryDefinition(
                self,
                "TenantLinesQuery",
                query_definition_name=f"{base}/tenant-lines",
                log_groups=[self._log_group],
                query_string=logs.QueryString(
                    fields=["@timestamp", f"{tenant} as tenant", "level", "message", "@logStream", "@requestId"],
                    filter_statements=[f"ispresent({tenant})"],
                    sort="@timestamp desc",
                    limit=1000,
                ),
            ),
            "tenant_environments": logs.QueryDefinition(
                self,
                "TenantEnvironmentsQuery",
                query_definition_name=f"{base}/tenant-environments",
                log_groups=[self._log_group],
                query_string=logs.QueryString(
                    fields=[f"{tenant} as tenant"],
                    filter_statements=["ispresent(tenant)"],
                    stats=(
                        "count_distinct(@logStream) as environments, count(*) as lines, "
                        "earliest(@timestamp) as first, latest(@timestamp) as last by tenant"
                    ),
                    sort="environments desc",
                ),
            ),
        }

    def add_tenant_query(self, tenant_id: str) -> logs.QueryDefinition:
        """A saved Logs Insights query of one tenant's lines (for an on-call runbook)."""
        errors = PropErrors(f"{type(self).__name__}.add_tenant_query")
        errors.require(
            isinstance(tenant_id, str) and bool(contract.TENANT_ID_PATTERN.fullmatch(tenant_id)),
            "tenant_id",
            f"{tenant_id!r} is not a tenant id (1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit)",
        )
        errors.require(f"tenant:{tenant_id}" not in self._queries, "tenant_id", f"{tenant_id!r} has a query already")
        errors.raise_if_any()
        query = logs.QueryDefinition(
            self,
            f"TenantQuery{tenant_id}",
            query_definition_name=f"{readable_name(self)[-150:]}/tenant/{tenant_id}",
            log_groups=[self._log_group],
            query_string=logs.QueryString(
                fields=["@timestamp", "level", "message", "@logStream", "@requestId"],
                filter_statements=[f'coalesce(tenantId, record.tenantId) = "{tenant_id}"'],
                sort="@timestamp desc",
                limit=1000,
            ),
        )
        self._queries[f"tenant:{tenant_id}"] = query
        return query

    def metric(
        self,
        metric_name: str,
        *,
        tenant_id: str,
        statistic: str = "Sum",
        period: cdk.Duration = cdk.Duration.minutes(1),
    ) -> cloudwatch.Metric:
        """A per-tenant metric the helper emits: ``Requests``, ``Errors`` (Sum) or ``Duration`` (milliseconds)."""
        errors = PropErrors(f"{type(self).__name__}.metric")
        errors.one_of(metric_name, "metric_name", ("Requests", "Errors", "Duration"))
        errors.require(
            isinstance(tenant_id, str) and bool(contract.TENANT_ID_PATTERN.fullmatch(tenant_id)),
            "tenant_id",
            f"{tenant_id!r} is not a tenant id",
        )
        errors.raise_if_any()
        return cloudwatch.Metric(
            namespace=self._metric_namespace,
            metric_name=metric_name,
            dimensions_map={contract.METRIC_DIMENSION: tenant_id},
            statistic=statistic,
            period=period,
        )

    def _set_tenancy_variable(self, name: str, value: str) -> None:
        """Sets a TENANCY_* variable of the function (the package's own constructs only: the synth-time check
        refuses TENANCY_* variables set any other way)."""
        self._function.add_environment(name, value)
        self._tenancy_environment[name] = value

    def _bind_authorizer(self, kind: str, *, tenant_claim: str, registry_table: Any = None) -> str | None:
        """Called by ``TenantApi.add_function``: tells the helper where the proven tenant is. Returns a
        problem when the function is already behind an API of another kind."""
        if self._authorizer_kind is not None and self._authorizer_kind != kind:
            return f"is already behind an API with the {self._authorizer_kind} authorizer; one kind per function"
        if self._authorizer_kind is None:
            bound = {contract.ENV_AUTHORIZER_KIND: kind, contract.ENV_TENANT_CLAIM: tenant_claim}
            if registry_table is not None:
                bound[contract.ENV_REGISTRY_TABLE] = registry_table.table_name
            for name, value in bound.items():
                self._set_tenancy_variable(name, value)
        self._authorizer_kind = kind
        return None

    # ----------------------------------------------------------------------------------------------
    @property
    def function(self) -> lambda_.Function:
        """The PER_TENANT function."""
        return self._function

    @property
    def role(self) -> iam.Role:
        """The function's execution role (shared by all tenants: isolation is of compute, not of data)."""
        return self._role

    @property
    def log_group(self) -> logs.ILogGroup:
        """The function's log group: one log stream per execution environment, so per tenant."""
        return self._log_group

    @property
    def layer(self) -> lambda_.ILayerVersion | None:
        """The function-side helper layer, if added."""
        return self._layer

    @property
    def query_definitions(self) -> Mapping[str, logs.QueryDefinition]:
        """Saved Logs Insights queries: ``tenant_lines``, ``tenant_environments``, ``tenant:<id>``."""
        return dict(self._queries)

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        """The error alarm, when ``alarm_topic`` was given."""
        return [self._error_alarm] if self._error_alarm else []


def _runtime_layer(scope: Construct) -> lambda_.LayerVersion:
    """One helper layer per stack, shared by its tenant-isolated functions."""
    stack = cdk.Stack.of(scope)
    layer_id = "CdkServerlessPatternsTenancyRuntime"
    existing = stack.node.try_find_child(layer_id)
    if isinstance(existing, lambda_.LayerVersion):
        return existing
    return lambda_.LayerVersion(
        stack,
        layer_id,
        code=lambda_code(contract.RUNTIME_ASSET),
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_12, lambda_.Runtime.PYTHON_3_13, lambda_.Runtime.PYTHON_3_14],
        compatible_architectures=[lambda_.Architecture.ARM_64, lambda_.Architecture.X86_64],
        description="cdk-serverless-patterns tenancy: the function-side helper (tenant checks, scoped cache and /tmp)",
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
