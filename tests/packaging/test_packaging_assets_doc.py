"""docs/assets.md lists every bundled asset with its module, handler and environment variables, and stays
true: the handlers exist, every variable a construct sets (the contracts' ENV_* names) is documented
under its asset, and every documented variable is read by that asset's code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cdk_serverless_patterns.callback import contract as callback_contract
from cdk_serverless_patterns.callback import macie_forwarder
from cdk_serverless_patterns.circuit_breaker import contract as circuit_contract

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "assets.md"
ASSETS = sorted(p.name for p in (ROOT / "lambda_src").iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def sections() -> dict[str, str]:
    parts = re.split(r"^## `([a-z_]+)`\n", DOC.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def overview() -> dict[str, list[str]]:
    """The overview table's rows by asset: kind, module, handler, deployed by."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| \[`([a-z_]+)`\]\(#[a-z_]+\) \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split(" | ")]
    return rows


def documented_variables(section: str) -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, flags=re.MULTILINE))


def source_of(asset: str) -> str:
    folder = ROOT / "lambda_src" / asset
    files = [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return "\n".join(p.read_text() for p in files if p.name != "requirements.txt")


def env_constants(module: object) -> set[str]:
    return {value for name, value in vars(module).items() if name.startswith("ENV_") and isinstance(value, str)}


def test_every_asset_has_a_row_and_a_section() -> None:
    assert set(sections()) == set(ASSETS)
    assert set(overview()) == set(ASSETS)
    assert "(docs/assets.md)" in (ROOT / "README.md").read_text(), "the README links the asset list"


@pytest.mark.parametrize("asset", ASSETS)
def test_the_documented_modules_and_handlers_exist(asset: str) -> None:
    _, modules, handler, _ = overview()[asset]
    folder = ROOT / "lambda_src" / asset
    for module in re.findall(r"`([^`]+)`", modules):
        assert (folder / module.rstrip("/")).exists(), f"{asset}: {module} is not in {folder}"
    named = re.fullmatch(r"`([a-z_]+)\.([a-z_]+)`", handler)
    if named:
        tree = ast.parse((folder / f"{named.group(1)}.py").read_text())
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert named.group(2) in functions, f"{asset}: no function {named.group(2)} in {named.group(1)}.py"
    else:
        assert handler.startswith("none"), handler


@pytest.mark.parametrize("asset", ASSETS)
def test_every_documented_variable_is_read_by_the_asset(asset: str) -> None:
    variables = documented_variables(sections()[asset])
    assert variables, f"{asset}: no environment variable documented"
    source = source_of(asset)
    unread = {name for name in variables if f'"{name}"' not in source and f"``{name}``" not in source}
    assert not unread, f"{asset}: documented but never read: {sorted(unread)}"


@pytest.mark.parametrize(
    ("asset", "names"),
    [
        ("callback_url", env_constants(callback_contract)),
        ("callback_macie_forwarder", env_constants(macie_forwarder)),
        (
            "circuit_breaker_extension",
            env_constants(circuit_contract) - {circuit_contract.ENV_EVENT_BUS, circuit_contract.ENV_METRIC_NAMESPACE},
        ),
        (
            "circuit_breaker_health_checker",
            {circuit_contract.ENV_TABLE, circuit_contract.ENV_EVENT_BUS, circuit_contract.ENV_METRIC_NAMESPACE},
        ),
    ],
)
def test_every_variable_a_construct_sets_is_documented(asset: str, names: set[str]) -> None:
    assert names
    missing = names - documented_variables(sections()[asset])
    assert not missing, f"{asset}: set by the construct, not documented: {sorted(missing)}"


def test_tenancy_variables_are_documented_where_they_are_set() -> None:
    tenancy = pytest.importorskip("cdk_serverless_patterns.tenancy.contract")
    names = env_constants(tenancy)
    documented = documented_variables(sections()["tenancy_authorizer"]) | documented_variables(
        sections()["tenancy_runtime"]
    )
    assert not names - documented, sorted(names - documented)


def test_streaming_variables_are_documented_where_they_are_set() -> None:
    from cdk_serverless_patterns.streaming import contract as streaming

    lambdas_own = {streaming.ENV_EXEC_WRAPPER, streaming.ENV_HANDLER_VARIABLE}  # Lambda's variables, not ours
    names = env_constants(streaming) - lambdas_own
    assert names
    missing = names - documented_variables(sections()["streaming_runtime"])
    assert not missing, f"streaming_runtime: set by the construct, not documented: {sorted(missing)}"
