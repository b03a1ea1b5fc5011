"""The extras a user installs: ``check`` (the check command), ``test`` (the test helpers, so the README's
testing example runs as pasted), ``local`` (the emulator), and ``dev`` with all three. Read from the built
wheel's metadata, as pip reads them, and checked against what this environment has installed (the README
and outside-the-checkout tests run on it)."""

from __future__ import annotations

import zipfile
from email.parser import Parser
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement


def extras(wheel: Path) -> dict[str, list[Requirement]]:
    archive = zipfile.ZipFile(wheel)
    metadata = Parser().parsestr(archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode())
    found: dict[str, list[Requirement]] = {extra: [] for extra in metadata.get_all("Provides-Extra") or []}
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        for extra in found:
            if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
                found[extra].append(requirement)
    return found


def by_name(requirements: list[Requirement]) -> dict[str, set[str]]:
    """Package name -> the union of its extras (moto[server,dynamodb] -> {"server", "dynamodb"})."""
    names: dict[str, set[str]] = {}
    for requirement in requirements:
        names.setdefault(requirement.name.lower(), set()).update(requirement.extras)
    return names


def test_the_test_extra_has_what_the_helpers_and_the_readme_example_need(wheel: Path) -> None:
    test = by_name(extras(wheel)["test"])
    assert {"pytest", "syrupy", "moto", "cdk-nag", "cfn-lint"} <= set(test)
    # testing.moto and testing.circuit_breaker: DynamoDB tables, moto's server; the emulator helpers' services.
    assert {"server", "dynamodb", "stepfunctions", "events", "sqs"} <= test["moto"]


def test_the_local_extra_has_what_the_emulator_needs(wheel: Path) -> None:
    local = extras(wheel)["local"]
    names = by_name(local)
    assert {"moto", "awslambdaric", "jsonata-python", "websockets"} <= set(names)
    # The CDK CLI deploys through moto's CloudFormation, with Lambda (no Docker), S3 assets, SSM (bootstrap),
    # Scheduler, API Gateway v1 and v2.
    assert {"server", "cloudformation", "awslambda-simple", "s3", "ssm", "scheduler", "apigateway", "apigatewayv2"} <= (
        names["moto"]
    )
    (websockets,) = [r for r in local if r.name == "websockets"]
    assert websockets.specifier.contains("13.0") and not websockets.specifier.contains("12.0")


def test_dev_installs_every_user_extra(wheel: Path) -> None:
    def key(requirement: Requirement) -> str:
        return f"{requirement.name.lower()}{sorted(requirement.extras)}{requirement.specifier}"

    found = extras(wheel)
    dev = {key(r) for r in found["dev"]}
    for extra in ("check", "test", "local"):
        missing = {key(r) for r in found[extra]} - dev
        assert not missing, f"dev lacks the {extra} extra's {sorted(missing)}"


@pytest.mark.parametrize("extra", ["check", "test", "local"])
def test_this_environment_satisfies_the_extra(wheel: Path, extra: str) -> None:
    unmet = []
    for requirement in extras(wheel)[extra]:
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            unmet.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{requirement} (installed {installed})")
    assert not unmet, unmet
