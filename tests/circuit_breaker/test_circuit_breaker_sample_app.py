"""The circuit-breaker sample stack (integ/sample_circuit_breaker.py) in the sample app: cdk-nag clean with
real reasons, cfn-lint clean, and its normalized snapshot. The app is synthesized once per session
(``sample_assembly`` in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.testing import normalize_template
from cdk_serverless_patterns.testing.checks import CheckedAssembly
from cdk_serverless_patterns.testing.integ import stack_problems

STACK = "ServerlessPatternsCircuitBreaker"


def test_sample_stack_is_nag_and_lint_clean(sample_assembly: CheckedAssembly) -> None:
    assert sample_assembly.templates[STACK].get("Resources"), f"{STACK} has no resources"
    problems = stack_problems(sample_assembly, STACK)
    assert not problems, "\n".join(problems)


def test_snapshot(sample_templates: dict[str, dict[str, Any]], snapshot: Any) -> None:
    """The stack's JSON snapshot (__snapshots__/test_circuit_breaker_sample_app/)."""
    json_snapshot = snapshot.use_extension(JSONSnapshotExtension)
    assert normalize_template(sample_templates[STACK]) == json_snapshot(name=STACK)
