"""``serverless-patterns check``: each finding once with its full rule id and the id that acknowledges it,
counts that agree with the exit code, cfn-lint rules explained, and acknowledgments that really clear them.

The app runs in a subprocess (as a user runs the command), so that everything CDK writes to stderr is seen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cdk_serverless_patterns.toolkit.cli import main

ROOT = Path(__file__).resolve().parents[2]

INSECURE_APP = """
import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from cdk_serverless_patterns.core import acknowledge

app = cdk.App()
stack = cdk.Stack(app, "Insecure")
sqs.Queue(stack, "Queue")
function = lambda_.Function(
    stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_12, handler="index.handler",
    code=lambda_.Code.from_inline("def handler(event, context): return 1"),
)
function.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=["*"]))
ACKNOWLEDGE = []
if ACKNOWLEDGE:
    acknowledge(stack, "accepted for this test: the ids are the ones check printed", *ACKNOWLEDGE)
app.synth()
"""

BLOCK = re.compile(r"^(ERROR|WARNING)\s+(\S+)(?: (.*?))?  \(([^)]*)\)$")


def run_check(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdk_serverless_patterns", "check", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": ""},
    )


def findings_of(output: str) -> list[dict[str, str]]:
    """The printed findings: severity, rule, description, tool, where, acknowledge id."""
    found = []
    for block in output.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines or not (match := BLOCK.match(lines[0])):
            continue
        fields = dict(line.strip().split(None, 1) for line in lines[1:])
        acknowledge = re.fullmatch(
            r'acknowledge\(<that construct or a parent>, "<why>", "(.+)"\)', fields["acknowledge"]
        )
        assert acknowledge, fields["acknowledge"]
        found.append(
            {
                "severity": match.group(1),
                "rule": match.group(2),
                "description": match.group(3) or "",
                "tool": match.group(4),
                "where": fields["where"],
                "id": acknowledge.group(1),
            }
        )
    return found


def summary_counts(output: str) -> tuple[int, int]:
    match = re.search(r"(\d+) blocking error\(s\) \([^)]*\), (\d+) warning\(s\)", output)
    assert match, output
    return int(match.group(1)), int(match.group(2))


@pytest.fixture(scope="module")
def insecure(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    project = tmp_path_factory.mktemp("insecure")
    (project / "app.py").write_text(INSECURE_APP)
    (project / "cdk.json").write_text('{"app": "python3 app.py"}')
    return project, run_check(project)


def test_each_finding_is_printed_once_with_its_full_rule_id(
    insecure: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, result = insecure
    assert result.returncode == 1, result.stderr
    findings = findings_of(result.stdout)
    keys = [(f["rule"], f["where"]) for f in findings]
    assert len(keys) == len(set(keys)), "a finding printed twice"
    rules = {f["rule"] for f in findings}
    assert "AwsSolutions-IAM5[Resource::*]" in rules
    assert any(rule.startswith("AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/") for rule in rules)
    assert {"AwsSolutions-SQS4", "Serverless-LambdaTracing", "W3005"} <= rules
    # CDK's own report (its "Acknowledge with" lines) is not printed beside ours.
    assert "Acknowledge with" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_counts_agree_with_what_blocks_the_exit_code(insecure: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, result = insecure
    findings = findings_of(result.stdout)
    errors = [f for f in findings if f["severity"] == "ERROR"]
    warnings = [f for f in findings if f["severity"] == "WARNING"]
    assert summary_counts(result.stdout) == (len(errors), len(warnings))
    assert errors and warnings
    # cdk-nag's warnings do not fail synthesis, so they do not block here either.
    assert {f["tool"] for f in warnings} == {"cdk-nag Serverless", "cfn-lint"}


def test_cfn_lint_findings_say_what_the_rule_is_and_where(
    insecure: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    from cfnlint.rules.resources.DependsOnObsolete import DependsOnObsolete

    _, result = insecure
    (w3005,) = [f for f in findings_of(result.stdout) if f["rule"] == "W3005"]
    assert DependsOnObsolete.id == "W3005"
    assert w3005["description"] == DependsOnObsolete.shortdesc
    assert w3005["where"].startswith(
        "Insecure/Fn/Resource (Insecure:Resources/Fn"
    )  # construct path, then template path


def test_the_printed_ids_acknowledge_every_finding(insecure: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    project, result = insecure
    ids = sorted({f["id"] for f in findings_of(result.stdout)})
    acknowledged = project.parent / f"{project.name}-acknowledged"
    acknowledged.mkdir()
    (acknowledged / "app.py").write_text(INSECURE_APP.replace("ACKNOWLEDGE = []", f"ACKNOWLEDGE = {ids!r}"))
    again = run_check(acknowledged, "--app", "app.py")
    assert again.returncode == 0, again.stdout + again.stderr
    assert findings_of(again.stdout) == []
    assert summary_counts(again.stdout) == (0, 0)


def test_warnings_alone_pass(tmp_path: Path) -> None:
    app = INSECURE_APP.replace(
        "ACKNOWLEDGE = []",
        "ACKNOWLEDGE = ['AwsSolutions-SQS3', 'AwsSolutions-SQS4', 'Serverless-SQSRedrivePolicy', 'AwsSolutions-L1', "
        "'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', "
        "'AwsSolutions-IAM5[Resource::*]', 'Serverless-LambdaDLQ', 'Serverless-LambdaDefaultMemorySize', "
        "'Serverless-LambdaDefaultTimeout', 'Serverless-LambdaLatestVersion']",
    )
    (tmp_path / "app.py").write_text(app)
    result = run_check(tmp_path)  # ./app.py: no cdk.json needed
    assert result.returncode == 0, result.stdout + result.stderr
    assert {f["severity"] for f in findings_of(result.stdout)} == {"WARNING"}
    assert summary_counts(result.stdout) == (0, 2)


def test_a_cdk_json_command_without_a_python_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "cdk.json").write_text('{"app": "npx ts-node --prefer-ts-exts bin/app.ts"}')
    result = run_check(tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "names no Python file to load: pass --app path/to/app.py" in line


def test_check_passes_on_the_sample_app(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert findings_of(out) == [] or all(f["severity"] == "WARNING" for f in findings_of(out))
    blocking, warnings = summary_counts(out)
    assert blocking == 0 and warnings == len(findings_of(out))


def test_acknowledge_refuses_unknown_ids_and_empty_reasons() -> None:
    import aws_cdk as cdk

    from cdk_serverless_patterns.core import acknowledge

    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(ValueError, match="not a cfn-lint rule id"):
        acknowledge(stack, "a reason long enough to be accepted", "SQS4")
    with pytest.raises(ValueError, match="needs a real reason"):
        acknowledge(stack, "ok", "W3005")
