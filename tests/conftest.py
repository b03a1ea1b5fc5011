"""Shared fixtures: one synthesized sample app per test session (CDK costs ~5 s per import)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Offline: a region and dummy credentials, so neither SDK nor CDK probe the EC2 metadata address.
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_DEPRECATED", "quiet")

sys.path.insert(0, str(ROOT / "integ"))


@pytest.fixture(scope="session")
def sample_assembly(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The sample app synthesized once, with the cdk-nag packs: templates and findings."""
    from app import build_app  # integ/app.py

    from cdk_serverless_patterns.testing.checks import synth_with_checks

    outdir = tmp_path_factory.mktemp("sample-cdk-out")
    return synth_with_checks(build_app(outdir=str(outdir)))


@pytest.fixture(scope="session")
def sample_templates(sample_assembly: Any) -> dict[str, dict[str, Any]]:
    templates: dict[str, dict[str, Any]] = sample_assembly.templates
    return templates
