"""cdk-nag and cfn-lint over a CDK app: one synthesis, every finding, readable rows.

A finding *blocks* when its severity is ``error``: cdk-nag's errors fail ``cdk synth`` (its
warnings do not: measured with cdk-nag 3.0 and aws-cdk-lib 2.275), and cfn-lint's errors are
template errors CloudFormation would reject or misread. ``format_report`` prints each finding once,
with its full rule id, what the rule checks, and the id to pass to
``cdk_serverless_patterns.core.acknowledge``.

Needs the ``check`` extra (``pip install 'cdk-serverless-patterns[check]'``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk

#: The policy-validation plugin names of the cdk-nag packs.
NAG_PACKS = {"AwsSolutions", "Serverless", "HIPAA.Security", "NIST.800.53.R4", "NIST.800.53.R5", "PCI.DSS.321"}


@dataclass(frozen=True)
class Finding:
    """One unacknowledged finding of a checker."""

    tool: str  # "cdk-nag" or "cfn-lint"
    rule: str  # e.g. "AwsSolutions-SQS4" or "E3002"
    severity: str  # "error", "warning" or "informational"
    path: str  # construct path (cdk-nag) or "<stack>:<logical id>" (cfn-lint)
    message: str
    acknowledge_with: str = ""
    #: What the rule checks (cfn-lint's short description of the rule; cdk-nag's message already says it).
    description: str = ""
    #: The construct path of the resource (cfn-lint findings, when the template carries path metadata).
    construct: str = ""

    @property
    def blocking(self) -> bool:
        """Whether the finding fails ``serverless-patterns check`` (and, for cdk-nag, ``cdk synth``)."""
        return self.severity == "error"

    @property
    def acknowledge_id(self) -> str:
        """The id ``cdk_serverless_patterns.core.acknowledge`` takes: the full rule id, without the pack prefix."""
        return self.rule

    def row(self) -> tuple[str, str, str, str, str]:
        return (self.tool, self.severity, self.rule, self.path, self.message)


@dataclass(frozen=True)
class CheckedAssembly:
    """What one synthesis produced: the templates by stack name, and the cdk-nag findings."""

    outdir: Path
    templates: dict[str, dict[str, Any]]
    nag_findings: list[Finding]

    def template(self, stack_name: str) -> dict[str, Any]:
        return self.templates[stack_name]


def add_nag_packs(app: cdk.App) -> None:
    """Adds the AwsSolutions and Serverless packs as policy-validation plugins of ``app``."""
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))


def synth_with_checks(app: cdk.App, *, packs_added: bool = False) -> CheckedAssembly:
    """Synthesizes ``app`` with the cdk-nag packs and returns templates and unacknowledged findings.

    cdk-nag 3 fails synthesis when a finding is left; the templates are written before that,
    so this reads them, and the findings, from the cloud assembly folder.
    """
    if not packs_added:
        add_nag_packs(app)
    outdir = Path(app.outdir)
    try:
        app.synth(force=True)
    except RuntimeError as error:
        if "ValidationFailed" not in str(error) and "Validation failed" not in str(error):
            raise
    return CheckedAssembly(outdir=outdir, templates=read_templates(outdir), nag_findings=read_nag_report(outdir))


def read_templates(outdir: Path) -> dict[str, dict[str, Any]]:
    """Every stack template of a cloud assembly (nested assemblies included), by stack name."""
    templates: dict[str, dict[str, Any]] = {}
    manifest = json.loads((outdir / "manifest.json").read_text())
    for artifact in manifest.get("artifacts", {}).values():
        props = artifact.get("properties", {})
        if artifact.get("type") == "aws:cloudformation:stack":
            name = props.get("stackName") or artifact.get("displayName")
            templates[name] = json.loads((outdir / props["templateFile"]).read_text())
        elif artifact.get("type") == "cdk:cloud-assembly":
            templates.update(read_templates(outdir / props["directoryName"]))
    return templates


def read_nag_report(outdir: Path) -> list[Finding]:
    """The unacknowledged findings of the policy-validation report, if synthesis wrote one."""
    report = outdir / "validation-report.json"
    if not report.exists():
        return []
    findings = []
    for plugin in json.loads(report.read_text()).get("pluginReports", []):
        for violation in plugin.get("violations", []):
            for construct in violation.get("violatingConstructs", []):
                findings.append(
                    Finding(
                        tool="cdk-nag" if plugin["pluginName"] in NAG_PACKS else str(plugin["pluginName"]),
                        rule=violation["ruleName"],
                        severity=violation.get("severity", "error"),
                        path=construct.get("constructPath", "?"),
                        message=violation.get("description", ""),
                        acknowledge_with=f"{plugin['pluginName']}::{violation['ruleName']}",
                        construct=construct.get("constructPath", ""),
                    )
                )
    return findings


def cfn_lint_findings(
    templates: dict[str, dict[str, Any]], *, regions: Sequence[str] = ("us-east-1",)
) -> list[Finding]:
    """cfn-lint over each template, through its Python API; informational matches are left out."""
    from cfnlint.api import lint

    findings = []
    for stack_name, template in templates.items():
        resources = template.get("Resources", {})
        for match in lint(json.dumps(template), regions=list(regions)):
            rule_id = str(match.rule.id)
            severity = {"E": "error", "W": "warning"}.get(rule_id[:1], "informational")
            if severity == "informational":
                continue
            parts = [str(part) for part in (getattr(match, "path", None) or [])]
            resource = resources.get(parts[1], {}) if len(parts) > 1 and parts[0] == "Resources" else {}
            findings.append(
                Finding(
                    tool="cfn-lint",
                    rule=rule_id,
                    severity=severity,
                    path=f"{stack_name}:{'/'.join(parts)}",
                    message=match.message,
                    acknowledge_with=rule_id,
                    description=str(getattr(match.rule, "shortdesc", "") or ""),
                    construct=str((resource.get("Metadata") or {}).get("aws:cdk:path", "")),
                )
            )
    return findings


def format_table(findings: Sequence[Finding]) -> str:
    """Findings as an aligned plain-text table, one row each."""
    header = ("TOOL", "SEVERITY", "RULE", "WHERE", "WHAT")
    rows = [header, *(finding.row() for finding in findings)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def format_report(findings: Sequence[Finding]) -> str:
    """Each finding once, blocking ones first: severity, full rule id, where, what, and how to acknowledge it.

    ::

        ERROR  AwsSolutions-IAM5[Resource::*]  (cdk-nag AwsSolutions)
          where        Orders/Handler/ServiceRole/DefaultPolicy/Resource
          what         The IAM entity contains wildcard permissions ...
          acknowledge  acknowledge(<that construct or a parent>, "<why>", "AwsSolutions-IAM5[Resource::*]")
    """
    blocks = []
    for finding in sorted(findings, key=lambda f: (not f.blocking, f.tool, f.rule, f.path)):
        pack = f" {finding.acknowledge_with.split('::', 1)[0]}" if "::" in finding.acknowledge_with else ""
        title = f"{finding.rule} {finding.description}" if finding.description else finding.rule
        where = finding.construct or finding.path
        if finding.construct and finding.tool == "cfn-lint":
            where = f"{finding.construct} ({finding.path})"
        blocks.append(
            "\n".join(
                [
                    f"{finding.severity.upper():7}  {title}  ({finding.tool}{pack})",
                    f"  where        {where}",
                    f"  what         {finding.message}",
                    f'  acknowledge  acknowledge(<that construct or a parent>, "<why>", "{finding.acknowledge_id}")',
                ]
            )
        )
    return "\n\n".join(blocks)
