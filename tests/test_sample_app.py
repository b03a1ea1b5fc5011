"""The sample app as a whole: cdk-nag clean, cfn-lint clean, normalized snapshots."""

from __future__ import annotations

import json
from typing import Any

from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.testing import normalize_template
from cdk_serverless_patterns.testing.checks import cfn_lint_findings, format_table


def test_sample_app_has_stacks(sample_templates: dict[str, dict[str, Any]]) -> None:
    assert sample_templates, "the sample app synthesized no stack"
    for name, template in sample_templates.items():
        assert template.get("Resources"), f"{name} has no resources"


def test_cdk_nag_packs_leave_no_unacknowledged_finding(sample_assembly: Any) -> None:
    findings = sample_assembly.nag_findings
    assert not findings, "unacknowledged cdk-nag findings:\n" + format_table(findings)


def test_every_acknowledgment_has_a_real_reason(sample_assembly: Any) -> None:
    acknowledged: dict[str, str] = {}
    for metadata_file in sample_assembly.outdir.glob("*.metadata.json"):
        for path, entries in json.loads(metadata_file.read_text()).items():
            for entry in entries:
                if entry.get("type") == "aws:cdk:acknowledged-rules":
                    for rule, reason in entry["data"].items():
                        acknowledged[f"{path} {rule}"] = reason
    weak = {where: reason for where, reason in acknowledged.items() if len(str(reason).strip()) < 20}
    assert not weak, f"acknowledgments without a real reason: {weak}"


def test_cfn_lint_finds_no_error(sample_templates: dict[str, dict[str, Any]]) -> None:
    findings = [f for f in cfn_lint_findings(sample_templates) if f.severity == "error"]
    assert not findings, "cfn-lint errors:\n" + format_table(findings)


def test_snapshots(sample_templates: dict[str, dict[str, Any]], snapshot: Any) -> None:
    """One JSON snapshot per stack (tests/__snapshots__/), so a change shows where it happened."""
    json_snapshot = snapshot.use_extension(JSONSnapshotExtension)
    for name, template in sorted(sample_templates.items()):
        assert normalize_template(template) == json_snapshot(name=name)
