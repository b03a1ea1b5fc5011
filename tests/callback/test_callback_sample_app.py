"""The callback sample stack (integ/sample_callback.py) in the sample app: cdk-nag clean with real
reasons, cfn-lint clean, and its normalized snapshot. The app is synthesized once per session
(``sample_assembly`` in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.testing import normalize_template
from cdk_serverless_patterns.testing.checks import CheckedAssembly, cfn_lint_findings, format_table
from cdk_serverless_patterns.testing.integ import acknowledgments, nag_findings_on

STACK = "ServerlessPatternsCallback"


def test_sample_stack_has_resources(sample_templates: dict[str, dict[str, Any]]) -> None:
    assert sample_templates[STACK].get("Resources"), f"{STACK} has no resources"


def test_cdk_nag_packs_leave_no_unacknowledged_finding(sample_assembly: CheckedAssembly) -> None:
    findings = nag_findings_on(sample_assembly, [STACK])
    assert not findings, "unacknowledged cdk-nag findings:\n" + format_table(findings)


def test_every_acknowledgment_has_a_real_reason(sample_assembly: CheckedAssembly) -> None:
    acknowledged = acknowledgments(sample_assembly.outdir, [STACK])
    assert acknowledged, f"{STACK} acknowledges nothing: are its metadata files where they were?"
    weak = {where: reason for where, reason in acknowledged.items() if len(reason.strip()) < 20}
    assert not weak, f"acknowledgments without a real reason: {weak}"


def test_cfn_lint_finds_no_error(sample_templates: dict[str, dict[str, Any]]) -> None:
    findings = [f for f in cfn_lint_findings({STACK: sample_templates[STACK]}) if f.severity == "error"]
    assert not findings, "cfn-lint errors:\n" + format_table(findings)


def test_snapshot(sample_templates: dict[str, dict[str, Any]], snapshot: Any) -> None:
    """The stack's JSON snapshot (__snapshots__/test_callback_sample_app/)."""
    json_snapshot = snapshot.use_extension(JSONSnapshotExtension)
    assert normalize_template(sample_templates[STACK]) == json_snapshot(name=STACK)
