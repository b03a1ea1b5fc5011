#!/usr/bin/env python3
"""Synthesis through the library versus the same stack written with aws-cdk-lib directly.

Both variants build identical templates (checked before timing). They alternate, after a warm-up,
in one process, so that the ratio compares like with like on this machine. the target in ARCHITECTURE.md:
library / direct <= 1.1.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

import aws_cdk as cdk
from aws_cdk import assertions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from cdk_serverless_patterns.core import PropErrors, acknowledge, asset_path, pattern_function
from cdk_serverless_patterns.core.assets import ASSET_EXCLUDES

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
FUNCTIONS = 6


def first_asset() -> str:
    """An asset without requirements: bundling is pip's time, not the library's."""
    root = Path(__file__).resolve().parent.parent / "lambda_src"
    plain = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))]
    return sorted(name for name in plain if not (root / name / "requirements.txt").exists())[0]


ASSET = first_asset()


def through_library() -> dict[str, object]:
    app = cdk.App()
    stack = cdk.Stack(app, "Bench")
    for i in range(FUNCTIONS):
        errors = PropErrors("Bench")
        errors.duration_between(cdk.Duration.seconds(10), "timeout", maximum=cdk.Duration.minutes(15))
        errors.raise_if_any()
        pattern_function(stack, f"Fn{i}", asset=ASSET, handler="index.handler", description=f"bench function {i}")
    return assertions.Template.from_stack(stack).to_json()


def written_directly() -> dict[str, object]:
    app = cdk.App()
    stack = cdk.Stack(app, "Bench")
    for i in range(FUNCTIONS):
        log_group = logs.LogGroup(
            stack, f"Fn{i}LogGroup", retention=logs.RetentionDays.ONE_MONTH, removal_policy=cdk.RemovalPolicy.RETAIN
        )
        role = iam.Role(
            stack,
            f"Fn{i}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of bench function {i}",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            )
        )
        lambda_.Function(
            stack,
            f"Fn{i}",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            code=lambda_.Code.from_asset(str(asset_path(ASSET)), exclude=ASSET_EXCLUDES),
            handler="index.handler",
            description=f"bench function {i}",
            environment={},
            timeout=cdk.Duration.seconds(10),
            memory_size=256,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
        )
        acknowledge(
            role,
            "X-Ray PutTraceSegments and PutTelemetryRecords have no resource-level permissions (AWS forces '*').",
            "AwsSolutions-IAM5[Resource::*]",
        )
    return assertions.Template.from_stack(stack).to_json()


def timed(build: object) -> float:
    started = time.perf_counter()
    build()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> int:
    if through_library() != written_directly():
        print("the two variants do not synthesize the same template: the comparison would be meaningless")
        return 1
    for _ in range(2):  # warm-up: jsii loads modules lazily
        timed(through_library)
        timed(written_directly)
    library, direct = [], []
    for _ in range(ROUNDS):
        library.append(timed(through_library))
        direct.append(timed(written_directly))
    lib_p50, dir_p50 = statistics.median(library), statistics.median(direct)
    print(f"stack of {FUNCTIONS} functions, {ROUNDS} rounds each, alternating")
    print(f"  written directly with aws-cdk-lib (baseline): p50 {dir_p50 * 1000:.1f} ms")
    print(f"  through cdk_serverless_patterns.core:          p50 {lib_p50 * 1000:.1f} ms")
    print(f"  ratio library/direct: {lib_p50 / dir_p50:.3f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
