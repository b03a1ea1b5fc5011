"""``serverless-patterns``: synthesize, check, deploy and demo the sample stacks or your own app."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cdk_serverless_patterns.toolkit import circuit
from cdk_serverless_patterns.toolkit.apps import (
    ToolkitError,
    cdk_cli,
    load_app,
    project_root,
    quiet_environment,
    resolve_app_file,
)

PROG = "serverless-patterns"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    synth = commands.add_parser("synth", help="synthesize the sample app (or --app) with the pinned CDK CLI")
    synth.add_argument("--app", help="path of a Python CDK app; default: integ/app.py of this project")
    synth.add_argument("--output", "-o", default="cdk.out", help="cloud assembly folder (default: cdk.out)")

    check = commands.add_parser("check", help="cdk-nag and cfn-lint findings as a table; non-zero on any left")
    check.add_argument("--app", help="path of a Python CDK app; default: integ/app.py of this project")
    check.add_argument("--region", action="append", help="region cfn-lint checks against (repeatable; us-east-1)")

    deploy = commands.add_parser("deploy", help="deploy with the pinned CDK CLI to the account of your credentials")
    deploy.add_argument("--app", help="path of a Python CDK app; default: integ/app.py of this project")
    deploy.add_argument("stacks", nargs="*", help="stack names (default: all)")
    deploy.add_argument(
        "--require-approval",
        choices=["never", "any-change", "broadening"],
        default="broadening",
        help="when to ask before deploying IAM or security-group changes (default: broadening)",
    )

    demo = commands.add_parser("demo", help="synthesize the sample app and show what it produces")
    demo.add_argument("--app", help="path of a Python CDK app; default: integ/app.py of this project")

    circuit.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_environment()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "check":
            return _check(args)
        if args.command == "deploy":
            return _deploy(args)
        if args.command == "circuit":
            return circuit.run(args)
        return _demo(args)
    except ToolkitError as error:
        print(f"{PROG} {args.command}: {error}", file=sys.stderr)
        return 2


def _app_command(app_file: Path) -> str:
    return shlex.join([sys.executable, str(app_file)])


def _synth(args: argparse.Namespace) -> int:
    app_file = resolve_app_file(args.app)
    cli = cdk_cli()
    command = [*cli, "synth", "--app", _app_command(app_file), "--output", args.output, "--quiet", "--no-notices"]
    result = subprocess.run(command, cwd=project_root(), check=False)
    if result.returncode == 0:
        print(f"synthesized {app_file} into {args.output}")
    return result.returncode


def _check(args: argparse.Namespace) -> int:
    try:
        from cdk_serverless_patterns.testing.checks import cfn_lint_findings, format_table, synth_with_checks
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        hint = "pip install 'cdk-serverless-patterns[check]'"
        raise ToolkitError(f"check needs the 'check' extra: {hint} ({error})") from error
    app_file = resolve_app_file(args.app)
    with tempfile.TemporaryDirectory(prefix="sp-check-") as outdir:
        app = load_app(app_file, Path(outdir))
        assembly = synth_with_checks(app)
        findings = [
            *assembly.nag_findings,
            *cfn_lint_findings(assembly.templates, regions=args.region or ["us-east-1"]),
        ]
    blocking = [f for f in findings if f.tool == "cdk-nag" or f.severity == "error"]
    stacks = ", ".join(sorted(assembly.templates)) or "none"
    if findings:
        print(format_table(findings))
    print(
        f"checked {len(assembly.templates)} stack(s) ({stacks}): {len(blocking)} blocking finding(s), "
        f"{len(findings) - len(blocking)} warning(s)"
    )
    return 1 if blocking else 0


def _deploy(args: argparse.Namespace) -> int:
    import boto3

    session = boto3.Session()
    if session.get_credentials() is None:
        raise ToolkitError(
            "no AWS credentials are configured: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "(or run `aws configure`), then deploy again"
        )
    if not session.region_name:
        raise ToolkitError("no AWS region is configured: set AWS_REGION (or AWS_DEFAULT_REGION)")
    app_file = resolve_app_file(args.app)
    cli = cdk_cli()
    command = [*cli, "deploy", "--app", _app_command(app_file), "--require-approval", args.require_approval]
    command += args.stacks or ["--all"]
    return subprocess.run(command, cwd=project_root(), check=False).returncode


def _demo(args: argparse.Namespace) -> int:
    from cdk_serverless_patterns.testing.checks import read_templates

    app_file = resolve_app_file(args.app)
    with tempfile.TemporaryDirectory(prefix="sp-demo-") as outdir:
        app = load_app(app_file, Path(outdir))
        app.synth(force=True)
        templates = read_templates(Path(outdir))
    print(f"sample app {app_file} synthesizes {len(templates)} stack(s):")
    for name, template in sorted(templates.items()):
        resources = template.get("Resources", {})
        print(f"\n  {name}: {len(resources)} resources")
        counts: dict[str, int] = {}
        for resource in resources.values():
            counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
        for kind, count in sorted(counts.items()):
            print(f"    {count:3d}  {kind}")
        outputs = template.get("Outputs", {})
        for output in sorted(outputs):
            print(f"    output {output}: {outputs[output].get('Description', '')}")
    if os.environ.get("CI") is None:
        print("\nNext: `make test` runs every test; `serverless-patterns deploy` deploys with AWS credentials.")
    return 0
