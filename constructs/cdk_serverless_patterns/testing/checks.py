"""cdk-nag and cfn-lint over a CDK app: one synthesis, every finding, readable rows.

Needs the ``check`` extra (``pip install 'cdk-serverless-patterns[check]'``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk


@dataclass(frozen=True)
class Finding:
    """One unacknowledged finding of a checker."""

    tool: str  # "cdk-nag" or "cfn-lint"
    rule: str  # e.g. "AwsSolutions-SQS4" or "E3002"
    severity: str  # "error", "warning" or "informational"
    path: str  # construct path (cdk-nag) or "<stack>:<logical id>" (cfn-lint)
    message: str
    acknowledge_with: str = ""

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
                        tool="cdk-nag",
                        rule=violation["ruleName"],
                        severity=violation.get("severity", "error"),
                        path=construct.get("constructPath", "?"),
                        message=violation.get("description", ""),
                        acknowledge_with=f"{plugin['pluginName']}::{violation['ruleName']}",
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
        for match in lint(json.dumps(template), regions=list(regions)):
            rule_id = str(match.rule.id)
            severity = {"E": "error", "W": "warning"}.get(rule_id[:1], "informational")
            if severity == "informational":
                continue
            where = "/".join(str(part) for part in (getattr(match, "path", None) or []))
            findings.append(
                Finding(
                    tool="cfn-lint",
                    rule=rule_id,
                    severity=severity,
                    path=f"{stack_name}:{where}",
                    message=match.message,
                )
            )
    return findings


def format_table(findings: Sequence[Finding]) -> str:
    """Findings as an aligned plain-text table, one row each."""
    header = ("TOOL", "SEVERITY", "RULE", "WHERE", "WHAT")
    rows = [header, *(finding.row() for finding in findings)]
    widths = [min(max(len(row[i]) for row in rows), 60) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell[:60].ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
