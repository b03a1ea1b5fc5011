"""``serverless-patterns``: synthesize, check and deploy your CDK app, run it locally, and demo the patterns.

Every command works in your own project (the app is ``--app``, else cdk.json's ``"app"``, else
``./app.py``; see :mod:`cdk_serverless_patterns.toolkit.apps`) with a compatible CDK CLI found on
this machine or the pinned one, installed once into a per-user cache.

``demo`` and ``local`` are registered from their own modules (``toolkit.demo``,
``toolkit.local_commands``) like ``circuit``: each has ``add_parser(commands)`` and ``run(args)``.
A command whose module cannot be imported (an extra it needs is missing) is still listed, and
says in one line what to install.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from cdk_serverless_patterns.toolkit import circuit, tenants
from cdk_serverless_patterns.toolkit.apps import (
    AppSpec,
    ToolkitError,
    cdk_cli,
    load_app,
    quiet_environment,
    resolve_app,
)

PROG = "serverless-patterns"
APP_HELP = (
    'the CDK app: a Python file, a cdk.out folder or a command; default: cdk.json\'s "app", then ./app.py '
    "(in this repository: the sample app integ/app.py)"
)
#: Commands that live in their own modules: name -> (module, help shown when the module cannot load, extra).
PLUGGED_COMMANDS = {
    "demo": (
        "cdk_serverless_patterns.toolkit.demo",
        "deploy the sample app into the local emulator and run one scenario per pattern",
        "local",
    ),
    "local": (
        "cdk_serverless_patterns.toolkit.local_commands",
        "run your CDK app in an embedded AWS emulator on localhost (up, down)",
        "local",
    ),
}
#: Top-level modules the extras provide: a command that misses one names its extra instead of a traceback.
EXTRA_MODULES = {
    "moto",
    "awslambdaric",
    "jsonata",
    "websockets",
    "flask",
    "flask_cors",
    "werkzeug",
    "cfnlint",
    "cdk_nag",
}
#: Context ``check`` gives the app: CDK does not print its own report (check prints each finding once).
CHECK_CONTEXT = {"@aws-cdk/core:failSynthOnValidationErrors": False}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _plugged(name: str) -> tuple[ModuleType | None, str]:
    """The module of a plugged command, or None and why it cannot be imported."""
    module_name, _, _ = PLUGGED_COMMANDS[name]
    try:
        return importlib.import_module(module_name), ""
    except ImportError as error:
        return None, str(error)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    synth = commands.add_parser("synth", help="synthesize your app with a compatible CDK CLI")
    synth.add_argument("--app", help=APP_HELP)
    synth.add_argument("--output", "-o", default="cdk.out", help="cloud assembly folder (default: cdk.out)")

    check = commands.add_parser(
        "check", help="cdk-nag and cfn-lint findings, each once with the id to acknowledge it; exit 1 on errors"
    )
    check.add_argument("--app", help=APP_HELP + "; a command must name the app's .py file")
    check.add_argument("--region", action="append", help="region cfn-lint checks against (repeatable; us-east-1)")

    deploy = commands.add_parser("deploy", help="deploy with a compatible CDK CLI to the account of your credentials")
    deploy.add_argument("--app", help=APP_HELP)
    deploy.add_argument("stacks", nargs="*", help="stack names (default: all)")
    deploy.add_argument(
        "--require-approval",
        choices=["never", "any-change", "broadening"],
        default="broadening",
        help="when to ask before deploying IAM or security-group changes (default: broadening)",
    )

    circuit.add_parser(commands)
    tenants.add_parser(commands)
    for name in PLUGGED_COMMANDS:
        module, _ = _plugged(name)
        if module is not None:
            module.add_parser(commands)
        else:
            placeholder = commands.add_parser(name, help=PLUGGED_COMMANDS[name][1])
            placeholder.set_defaults(unavailable_command=True)  # its own options are unknown here: accepted
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_environment()
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "unavailable_command", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "check":
            return _check(args)
        if args.command == "deploy":
            return _deploy(args)
        if args.command == "circuit":
            return circuit.run(args)
        if args.command == "tenant":
            return tenants.run(args)
        if args.command in PLUGGED_COMMANDS:
            return _run_plugged(args)
        raise ToolkitError(f"unknown command {args.command}")  # pragma: no cover - argparse refuses it first
    except ToolkitError as error:
        print(f"{PROG} {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


def _run_plugged(args: argparse.Namespace) -> int:
    module, why = _plugged(args.command)
    if module is None:
        extra = PLUGGED_COMMANDS[args.command][2]
        raise ToolkitError(
            f"this command needs the '{extra}' extra: pip install 'cdk-serverless-patterns[{extra}]' ({why})"
        )
    try:
        result: Any = module.run(args)
    except ModuleNotFoundError as error:  # the command's module imports its extra's packages when it runs
        if (error.name or "").split(".")[0] not in EXTRA_MODULES:
            raise
        extra = PLUGGED_COMMANDS[args.command][2]
        raise ToolkitError(
            f"this command needs the '{extra}' extra: pip install 'cdk-serverless-patterns[{extra}]' ({error})"
        ) from None
    return int(result)


def _run_cli(spec: AppSpec, *arguments: str) -> int:
    """Runs the CDK CLI in the app's project folder; Ctrl-C stops it and its children."""
    command = [*cdk_cli(spec.root), *arguments]
    process = subprocess.Popen(command, cwd=spec.root, start_new_session=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        raise


def _synth(args: argparse.Namespace) -> int:
    spec = resolve_app(args.app)
    output = str(Path(args.output).resolve())
    code = _run_cli(spec, "synth", "--app", spec.command, "--output", output, "--quiet", "--no-notices")
    if code == 0:
        print(f"synthesized {spec.command} ({spec.source}) into {args.output}")
    return code


def _check(args: argparse.Namespace) -> int:
    try:
        from cdk_serverless_patterns.testing.checks import (
            Finding,
            cfn_lint_findings,
            format_report,
            synth_with_checks,
        )
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        hint = "pip install 'cdk-serverless-patterns[check]'"
        raise ToolkitError(f"check needs the 'check' extra: {hint} ({error})") from error
    app_file = resolve_app(args.app).python_file()
    with tempfile.TemporaryDirectory(prefix="sp-check-") as outdir:
        app = load_app(app_file, Path(outdir), context=CHECK_CONTEXT)
        assembly = synth_with_checks(app)
        findings = [
            *assembly.nag_findings,
            *cfn_lint_findings(assembly.templates, regions=args.region or ["us-east-1"]),
        ]
    blocking = [f for f in findings if f.blocking]
    stacks = ", ".join(sorted(assembly.templates)) or "none"
    if findings:
        print(format_report(findings))
        print()
    warnings = [f for f in findings if not f.blocking]

    def per_tool(group: list[Finding]) -> str:
        return ", ".join(f"{tool} {sum(1 for f in group if f.tool == tool)}" for tool in ("cdk-nag", "cfn-lint"))

    print(
        f"checked {len(assembly.templates)} stack(s) ({stacks}): {len(blocking)} blocking error(s) "
        f"({per_tool(blocking)}), {len(warnings)} warning(s) ({per_tool(warnings)})"
    )
    if blocking:
        print(
            "errors block (exit 1); warnings do not. Fix a finding, or acknowledge it with a reason in the "
            "construct that causes it: from cdk_serverless_patterns.core import acknowledge; "
            'acknowledge(construct, "why", "<id>")'
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
    spec = resolve_app(args.app)
    arguments = ["deploy", "--app", spec.command, "--require-approval", args.require_approval]
    arguments += args.stacks or ["--all"]
    return _run_cli(spec, *arguments)
