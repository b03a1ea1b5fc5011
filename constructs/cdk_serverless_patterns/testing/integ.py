"""Offline checks of integration-test apps: ``integ_<name>.py`` files built on ``aws_cdk.integ_tests_alpha``.

An integ app declares test-case stacks and an ``IntegTest`` whose assertion stack holds the API calls
(``Custom::DeployAssert@SdkCall...`` custom resources) and the results they expect. The CDK
integ-runner deploys it to an account; these helpers test, without one, what it would deploy:

- ``synth_integ_app``: the app synthesized as the CDK CLI (and so the runner) would, with the
  cdk-nag packs (``testing.checks``); ``integ_test_cases``, ``stack_environments``,
  ``nag_findings_on``, ``nag_evaluated_stacks`` and ``acknowledgments`` read the cloud assembly
  it wrote (the last three work for any app synthesized with ``synth_with_checks``);
- ``sdk_calls``: the assertion stack's API calls as ``SdkCall`` objects, parameters and expected
  results decoded as the assertion provider decodes them; ``depends_on`` and ``call_chain`` give
  their order, ``export_target`` and ``resource_ref`` what their parameters refer to;
- ``expected_matcher`` / ``expected_mismatch`` / ``assert_expected``: an expected result as the
  aws-cdk-lib matcher the provider builds from it, to check real answers (from moto, or the handler
  itself) against what the assertions expect;
- ``waiter_budgets`` and ``granted_actions``: every waiter gives up within a custom resource's hour,
  and the providers may make their calls;
- ``normalize_integ_template``: a snapshot-stable template (asset hashes and the assertions' salt
  replaced); ``resources_without_stack_ids`` compares a test-case stack with the stack it copies.

Needs the ``check`` extra (cdk-nag, cfn-lint) for ``synth_integ_app``. A test, for example::

    import integ_orders  # integ/integ_orders.py, with build_app(outdir=...)
    from cdk_serverless_patterns.testing.integ import integ_test_cases, sdk_calls, synth_integ_app

    def test_orders_integ_app(tmp_path):
        assembly = synth_integ_app(integ_orders.build_app, tmp_path)
        assert not assembly.nag_findings
        (case,) = integ_test_cases(assembly.outdir).values()
        calls = sdk_calls(assembly.templates[case.assertion_stack], "StepFunctions", "startExecution")
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Match, Matcher

from cdk_serverless_patterns.testing.checks import CheckedAssembly, Finding, synth_with_checks
from cdk_serverless_patterns.testing.snapshot import normalize_template

__all__ = [
    "AGNOSTIC_ENVIRONMENT",
    "CUSTOM_RESOURCE_TIMEOUT_SECONDS",
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "SDK_CALL_TYPE",
    "IntegTestCase",
    "SdkCall",
    "acknowledgments",
    "assert_expected",
    "call_chain",
    "cli_environment",
    "decode_parameter",
    "depends_on",
    "expected_matcher",
    "expected_mismatch",
    "export_target",
    "granted_actions",
    "imported_export",
    "integ_app_problems",
    "integ_test_cases",
    "nag_evaluated_stacks",
    "nag_findings_on",
    "normalize_integ_template",
    "resource_ref",
    "resources_without_stack_ids",
    "sdk_calls",
    "stack_environments",
    "stack_problems",
    "string_token",
    "synth_integ_app",
    "waiter_budgets",
    "without_salt",
]

#: The account and region ``synth_integ_app`` sets, as the CLI would from a profile (never contacted).
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
#: The environment of a stack created without ``env`` (the assertion stack ``IntegTest`` adds is one).
AGNOSTIC_ENVIRONMENT = "aws://unknown-account/unknown-region"
#: The resource type prefix of the assertion stack's API calls (``...SdkCall<Service><api>``).
SDK_CALL_TYPE = "Custom::DeployAssert@SdkCall"
#: CloudFormation waits at most this long for a custom resource: every waiter must give up before.
CUSTOM_RESOURCE_TIMEOUT_SECONDS = 3600


# ------------------------------------------------------------------------------------- synthesis
@contextmanager
def cli_environment(account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> Iterator[None]:
    """Sets ``CDK_DEFAULT_ACCOUNT`` and ``CDK_DEFAULT_REGION`` as the CDK CLI does for an app; restores them after."""
    saved = {name: os.environ.get(name) for name in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION")}
    os.environ["CDK_DEFAULT_ACCOUNT"] = account
    os.environ["CDK_DEFAULT_REGION"] = region
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def synth_integ_app(
    build_app: Callable[..., cdk.App],
    outdir: str | Path,
    *,
    account: str = DEFAULT_ACCOUNT,
    region: str = DEFAULT_REGION,
) -> CheckedAssembly:
    """``build_app(outdir=...)`` built and synthesized with the cdk-nag packs, with the CLI's variables set.

    The integ-runner synthesizes an app through the CDK CLI, which sets ``CDK_DEFAULT_ACCOUNT`` and
    ``CDK_DEFAULT_REGION``; an app that reads them is tested as the runner would deploy it.
    """
    with cli_environment(account, region):
        return synth_with_checks(build_app(outdir=str(outdir)))


# ------------------------------------------------------------------------------- cloud assembly
@dataclass(frozen=True)
class IntegTestCase:
    """One test case of ``integ.json`` (what the integ-runner reads)."""

    name: str
    #: The test-case stacks, in the order the runner deploys them.
    stacks: list[str]
    #: The construct path of the assertion stack (also its key in ``CheckedAssembly.templates``).
    assertion_stack: str


def integ_test_cases(outdir: Path) -> dict[str, IntegTestCase]:
    """The test cases of the ``integ.json`` that ``IntegTest`` wrote into the cloud assembly ``outdir``."""
    manifest = json.loads((Path(outdir) / "integ.json").read_text())
    return {
        name: IntegTestCase(name=name, stacks=list(case["stacks"]), assertion_stack=str(case["assertionStack"]))
        for name, case in manifest["testCases"].items()
    }


def stack_environments(outdir: Path) -> dict[str, str]:
    """The environment (``aws://account/region``) of every stack of the cloud assembly, by display name.

    The assertion stack refers to the test cases' resources, which CDK allows only within one environment.
    """
    manifest = json.loads((Path(outdir) / "manifest.json").read_text())
    return {
        str(artifact["displayName"]): str(artifact["environment"])
        for artifact in manifest["artifacts"].values()
        if artifact["type"] == "aws:cloudformation:stack"
    }


def acknowledgments(outdir: Path, stacks: list[str] | set[str] | None = None) -> dict[str, str]:
    """Every cdk-nag acknowledgment in the cloud assembly ``outdir`` (of ``stacks`` only, if given):
    ``"<construct path> <rule>"`` to its reason, for checking that each reason says something."""
    found: dict[str, str] = {}
    for metadata_file in sorted(Path(outdir).glob("*.metadata.json")):
        for path, entries in json.loads(metadata_file.read_text()).items():
            if stacks is not None and str(path).split("/")[1] not in stacks:
                continue
            for entry in entries:
                if entry.get("type") == "aws:cdk:acknowledged-rules":
                    for rule, reason in entry["data"].items():
                        found[f"{path} {rule}"] = str(reason)
    return found


def nag_findings_on(assembly: CheckedAssembly, stacks: list[str] | set[str]) -> list[Finding]:
    """The unacknowledged cdk-nag findings on ``stacks`` (the test cases; the assertion stack is scaffolding)."""
    return [finding for finding in assembly.nag_findings if finding.path.split("/")[0] in stacks]


def nag_evaluated_stacks(outdir: Path, plugin: str = "AwsSolutions") -> set[str]:
    """The stacks a cdk-nag pack reported on, acknowledged findings included: proof that it evaluated them."""
    report = json.loads((Path(outdir) / "validation-report.json").read_text())
    return {
        str(construct["constructPath"]).split("/")[0]
        for plugin_report in report["pluginReports"]
        if plugin_report["pluginName"] == plugin
        for violation in plugin_report.get("suppressedViolations", []) + plugin_report.get("violations", [])
        for construct in violation["violatingConstructs"]
    }


# ------------------------------------------------------------------------------------ API calls
@dataclass(frozen=True)
class SdkCall:
    """One API call of an assertion stack, decoded as the assertion provider decodes it."""

    logical_id: str
    service: str  # e.g. "StepFunctions", as given to ``aws_api_call``
    api: str  # e.g. "startExecution"
    #: Each top-level value JSON-decoded; a value built from a token stays as synthesized (see ``string_token``).
    parameters: dict[str, Any]
    #: The expected result (``ExpectedResult``), decoded: ``{"$ObjectLike": {...}}`` and so on; None if none.
    expected: Any
    #: The call's ``DependsOn`` (other calls, and the resources of their waiters).
    depends_on: tuple[str, ...]
    #: Whether a waiter state machine polls the call until ``expected`` matches (``wait_for_assertions``).
    waits: bool


def decode_parameter(value: Any) -> Any:
    """A parameter as the assertion provider decodes it (``JSON.parse`` of each top-level value).

    A value holding a token (an import, an attribute of another call) is returned as synthesized.
    """
    if isinstance(value, str):
        return json.loads(value)
    return value


def sdk_calls(template: Mapping[str, Any], service: str | None = None, api: str | None = None) -> dict[str, SdkCall]:
    """The API calls of an assertion stack's template, by logical id; only ``service`` / ``api`` if given."""
    calls = {}
    for logical_id, resource in template["Resources"].items():
        if not str(resource["Type"]).startswith(SDK_CALL_TYPE):
            continue
        props = resource["Properties"]
        if (service is not None and props["service"] != service) or (api is not None and props["api"] != api):
            continue
        calls[logical_id] = SdkCall(
            logical_id=logical_id,
            service=str(props["service"]),
            api=str(props["api"]),
            parameters={key: decode_parameter(value) for key, value in props.get("parameters", {}).items()},
            expected=json.loads(props["expected"]) if "expected" in props else None,
            depends_on=tuple(resource.get("DependsOn", [])),
            waits="stateMachineArn" in props,
        )
    return calls


def string_token(value: Any) -> Any:
    """The token inside a string parameter, which the provider encodes as ``Fn::Join ['', ['"', token, '"']]``."""
    try:
        separator, parts = value["Fn::Join"]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"not a JSON-encoded string token: {value!r}") from None
    if separator != "" or len(parts) != 3 or parts[0] != '"' or parts[2] != '"':
        raise ValueError(f"not a JSON-encoded string token: {value!r}")
    return parts[1]


def imported_export(value: Any) -> str:
    """The export a string parameter imports from a test-case stack (``Fn::ImportValue`` in its token)."""
    token = string_token(value)
    if not isinstance(token, dict) or "Fn::ImportValue" not in token:
        raise ValueError(f"the parameter imports no export: {value!r}")
    return str(token["Fn::ImportValue"])


def depends_on(calls: Mapping[str, SdkCall], logical_id: str) -> list[str]:
    """The calls among ``calls`` that ``logical_id`` (one of them) waits for."""
    return [dependency for dependency in calls[logical_id].depends_on if dependency in calls]


def call_chain(calls: Mapping[str, SdkCall], *, all_calls: Mapping[str, SdkCall]) -> list[str]:
    """Logical ids of ``calls`` in the order their ``DependsOn`` (among ``all_calls``) runs them.

    Raises ``ValueError`` unless they form one chain, each call depending on the one before.
    """
    remaining = set(calls)
    order: list[str] = []
    while remaining:
        ready = [c for c in remaining if not (set(depends_on(all_calls, c)) & remaining)]
        if len(ready) != 1:
            raise ValueError(f"calls {sorted(remaining)} are not one chain (ready: {sorted(ready)})")
        order.append(ready[0])
        remaining.remove(ready[0])
    return order


def export_target(templates: Mapping[str, Mapping[str, Any]], export: str) -> tuple[str, Any]:
    """The stack and value an exported output refers to, e.g. ``("Stack", {"Ref": "Workflow193EF7C1"})``.

    CDK names the exports it adds for cross-stack references ``<stack>:<name>``.
    """
    stack, _, _ = export.partition(":")
    for output in templates[stack].get("Outputs", {}).values():
        if output.get("Export", {}).get("Name") == export:
            return stack, output["Value"]
    raise LookupError(f"{export} is not exported by {stack}")


def resource_ref(
    templates: Mapping[str, Mapping[str, Any]], stack: str, prefix: str, resource_type: str
) -> tuple[str, dict[str, str]]:
    """The one resource of ``stack`` of ``resource_type`` whose logical id starts with ``prefix``, as
    ``export_target`` gives an export of its ``Ref``; ``LookupError`` unless there is exactly one."""
    matches = [
        logical_id
        for logical_id, resource in templates[stack]["Resources"].items()
        if logical_id.startswith(prefix) and resource["Type"] == resource_type
    ]
    if len(matches) != 1:
        raise LookupError(f"{stack}: {prefix}* of type {resource_type}: {matches}")
    return stack, {"Ref": matches[0]}


# -------------------------------------------------------------------------------- expectations
_MATCHERS: dict[str, Callable[[Any], Matcher]] = {
    "$ObjectLike": Match.object_like,
    "$ArrayWith": Match.array_with,
    "$SerializedJson": Match.serialized_json,
    "$StringLike": Match.string_like_regexp,
}


def expected_matcher(encoded: Any) -> Matcher:
    """An expected result (``SdkCall.expected``) as the aws-cdk-lib matcher its assertion provider builds."""

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [convert(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key in _MATCHERS:
                return _MATCHERS[key](convert(inner))
        return {key: convert(item) for key, item in value.items()}

    converted = convert(encoded)
    return converted if isinstance(converted, Matcher) else Match.exact(converted)


def expected_mismatch(encoded: Any, actual: Any) -> str | None:
    """Why ``actual`` (an API answer, as JSON) fails the expected result ``encoded``; None when it matches.

    The matchers run in the jsii kernel, which serves one call at a time: serialize calls from threads.
    """
    result = expected_matcher(encoded).test(actual)
    result.finished()
    return str(result.render_mismatch()) if result.has_failed() else None


def assert_expected(encoded: Any, actual: Any) -> None:
    """Raises ``AssertionError`` with the mismatch unless ``actual`` matches the expected result ``encoded``."""
    mismatch = expected_mismatch(encoded, actual)
    if mismatch is not None:
        raise AssertionError(mismatch)


# ------------------------------------------------------------------------- the assertion stack
_RETRY = re.compile(r'"IntervalSeconds":(\d+),"MaxAttempts":(\d+)')


def waiter_budgets(template: Mapping[str, Any]) -> dict[str, int]:
    """How long each waiter state machine of an assertion stack polls at most, in seconds, by logical id.

    A waiter that gives up after ``CUSTOM_RESOURCE_TIMEOUT_SECONDS`` never reports: CloudFormation
    fails the stack first. Raises ``ValueError`` for a waiter without a retry.
    """
    budgets = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        definition = resource["Properties"]["DefinitionString"]
        if isinstance(definition, dict):
            definition = "".join(part for part in definition["Fn::Join"][1] if isinstance(part, str))
        retry = _RETRY.search(definition)
        if retry is None:
            raise ValueError(f"{logical_id}: no retry in {definition[:300]}")
        budgets[logical_id] = int(retry.group(1)) * int(retry.group(2))
    return budgets


def granted_actions(template: Mapping[str, Any]) -> set[str]:
    """The IAM actions the roles of a template allow in their inline policies (the assertion providers' roles)."""
    granted: set[str] = set()
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if statement["Effect"] == "Allow":
                    actions = statement["Action"]
                    granted.update([actions] if isinstance(actions, str) else actions)
    return granted


# ---------------------------------------------------------------------------------- comparisons
def without_salt(template: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` without the ``salt`` of the assertion custom resources.

    ``IntegTest`` salts each (``Date.now()`` at synthesis) so that the calls run on every deployment.
    """
    result: dict[str, Any] = json.loads(json.dumps(template))
    for resource in result.get("Resources", {}).values():
        if resource.get("Type", "").startswith("Custom::DeployAssert") and "salt" in resource.get("Properties", {}):
            resource["Properties"]["salt"] = "<salt>"
    return result


def normalize_integ_template(template: Mapping[str, Any]) -> dict[str, Any]:
    """``normalize_template`` of ``without_salt``: a template of an integ app that changes only with its content."""
    return normalize_template(without_salt(template))


# The one place a stack's own id shows in its resources: the Sid CDK gives a rule's SQS policy statement.
_STACK_DERIVED_SID = re.compile(r'"Sid": "AllowEventRule[A-Za-z0-9]+"')


def resources_without_stack_ids(template: Mapping[str, Any]) -> Any:
    """The normalized resources of ``template`` with the names CDK derives from the stack id replaced.

    Equal for a test-case stack and the stack it instantiates under another id (a sample stack).
    """
    text = json.dumps(normalize_template(dict(template))["Resources"], sort_keys=True)
    return json.loads(_STACK_DERIVED_SID.sub('"Sid": "AllowEventRule<stack>"', text))


def stack_problems(assembly: CheckedAssembly, stack: str, *, min_reason_length: int = 20) -> list[str]:
    """Everything a deployable stack of ``assembly`` must not have, one line each: an unacknowledged
    cdk-nag finding, an acknowledgment whose reason says nothing (shorter than ``min_reason_length``),
    a cfn-lint error. Empty when the stack is clean; a stack that acknowledges nothing is reported too
    (its metadata was not found, so the check would prove nothing)."""
    from cdk_serverless_patterns.testing.checks import cfn_lint_findings, format_table

    problems = []
    findings = nag_findings_on(assembly, [stack])
    if findings:
        problems.append("unacknowledged cdk-nag findings:\n" + format_table(findings))
    acknowledged = acknowledgments(assembly.outdir, [stack])
    if not acknowledged:
        problems.append(f"{stack} acknowledges nothing: are its metadata files where they were?")
    problems += [
        f"acknowledgment without a real reason: {where}: {reason!r}"
        for where, reason in acknowledged.items()
        if len(reason.strip()) < min_reason_length
    ]
    errors = [f for f in cfn_lint_findings({stack: assembly.templates[stack]}) if f.severity == "error"]
    if errors:
        problems.append("cfn-lint errors:\n" + format_table(errors))
    return problems


def integ_app_problems(
    assembly: CheckedAssembly,
    *,
    test_case_stacks: list[str],
    assertion_stack: str,
    sample_templates: Mapping[str, Mapping[str, Any]],
    expect_waiters: bool = True,
) -> list[str]:
    """What an ``integ_<pattern>.py`` app must not have, one line each; empty when it is sound.

    - integ.json (what the integ-runner reads) lists exactly ``test_case_stacks`` and ``assertion_stack``;
    - every stack shares one environment (the assertion stack refers to the test cases' resources,
      which CDK allows only within one environment);
    - each test-case stack named in ``sample_templates`` (test-case stack -> the sample app's template)
      has the same resources and outputs as that sample stack, plus exports for the assertion stack;
    - cdk-nag's packs evaluated every test-case stack and left no finding on it (the assertion stack is
      scaffolding), and cfn-lint finds no error in any stack;
    - the assertion stack waits in state machines that give up before CloudFormation stops waiting for
      a custom resource (an hour); with ``expect_waiters``, there is at least one such waiter.
    """
    from cdk_serverless_patterns.testing.checks import cfn_lint_findings, format_table

    problems = []
    cases = list(integ_test_cases(assembly.outdir).values())
    if [(c.stacks, c.assertion_stack) for c in cases] != [(test_case_stacks, assertion_stack)]:
        problems.append(f"integ.json registers {[(c.stacks, c.assertion_stack) for c in cases]}")
    if set(assembly.templates) != {*test_case_stacks, assertion_stack}:
        problems.append(f"the app synthesizes {sorted(assembly.templates)}")
    environments = stack_environments(assembly.outdir)
    if len(environments) != len(test_case_stacks) + 1 or set(environments.values()) != {AGNOSTIC_ENVIRONMENT}:
        problems.append(f"the stacks do not share one environment-agnostic environment: {environments}")
    for integ_stack, sample in sample_templates.items():
        template = assembly.templates[integ_stack]
        if resources_without_stack_ids(template) != resources_without_stack_ids(sample):
            problems.append(f"{integ_stack} does not have the sample stack's resources")
        outputs = template.get("Outputs", {})
        expected = sample.get("Outputs", {})
        added = set(outputs) - set(expected)
        if {k: v for k, v in outputs.items() if k in expected} != expected or not all(
            k.startswith("ExportsOutput") for k in added
        ):
            problems.append(f"{integ_stack} outputs differ from the sample stack's beyond exports: {sorted(added)}")
    findings = nag_findings_on(assembly, test_case_stacks)
    if findings:
        problems.append("unacknowledged cdk-nag findings:\n" + format_table(findings))
    missed = set(test_case_stacks) - nag_evaluated_stacks(assembly.outdir)
    if missed:
        problems.append(f"cdk-nag did not evaluate {sorted(missed)}")
    errors = [f for f in cfn_lint_findings(assembly.templates) if f.severity == "error"]
    if errors:
        problems.append("cfn-lint errors:\n" + format_table(errors))
    budgets = waiter_budgets(assembly.templates[assertion_stack]) if assertion_stack in assembly.templates else {}
    if expect_waiters and not budgets:
        problems.append(f"{assertion_stack} has no waiter state machine: its waits cannot be checked")
    limit = CUSTOM_RESOURCE_TIMEOUT_SECONDS
    problems += [
        f"{logical_id} waits {seconds} s, past CloudFormation's {limit} s for a custom resource"
        for logical_id, seconds in budgets.items()
        if seconds >= limit
    ]
    return problems
