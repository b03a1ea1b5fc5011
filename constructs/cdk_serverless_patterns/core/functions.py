"""Secure, production-grade defaults for the Lambda functions the patterns create."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from cdk_serverless_patterns.core.assets import lambda_code
from cdk_serverless_patterns.core.nag import acknowledge
from constructs import Construct

#: The runtime of every function the library creates (cdk-nag AwsSolutions-L1 wants the latest).
DEFAULT_RUNTIME = lambda_.Runtime.PYTHON_3_14
DEFAULT_ARCHITECTURE = lambda_.Architecture.ARM_64
DEFAULT_LOG_RETENTION = logs.RetentionDays.ONE_MONTH


def pattern_function(
    scope: Construct,
    id: str,
    *,
    asset: str | None = None,
    code_path: Path | None = None,
    handler: str,
    description: str,
    environment: Mapping[str, str] | None = None,
    timeout: cdk.Duration = cdk.Duration.seconds(10),
    memory_size: int = 256,
    architecture: lambda_.Architecture = DEFAULT_ARCHITECTURE,
    log_retention: logs.RetentionDays = DEFAULT_LOG_RETENTION,
    log_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    environment_encryption: kms.IKey | None = None,
    layers: list[lambda_.ILayerVersion] | None = None,
) -> lambda_.Function:
    """A function running ``lambda_src/<asset>``, or the folder ``code_path``, with the library's defaults.

    Give exactly one of ``asset`` (a folder under ``lambda_src/``, shipped with the package) and
    ``code_path`` (a folder of Lambda code anywhere else, such as a sample's own function).
    Its own role holds only what it needs to write its own log group and traces; callers grant
    the rest against their own resources. Logs are JSON, in a log group with a retention period.
    """
    code: str | Path | None = code_path if code_path is not None else asset
    if code is None or (asset is not None and code_path is not None):
        raise ValueError(f"{id}: give exactly one of asset (a folder under lambda_src/) and code_path (a folder)")
    log_group = logs.LogGroup(
        scope,
        f"{id}LogGroup",
        retention=log_retention,
        removal_policy=log_removal_policy,
    )
    role = iam.Role(
        scope,
        f"{id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"Execution role of {description}"[:1000],
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        )
    )
    function = lambda_.Function(
        scope,
        id,
        runtime=DEFAULT_RUNTIME,
        architecture=architecture,
        code=lambda_code(code, architecture=architecture, runtime=DEFAULT_RUNTIME),
        handler=handler,
        description=description,
        environment=dict(environment or {}),
        environment_encryption=environment_encryption,
        timeout=timeout,
        memory_size=memory_size,
        role=role,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        tracing=lambda_.Tracing.ACTIVE,
        layers=layers,
    )
    # The Lambda service adds X-Ray permissions to the role's default policy with Resource "*".
    acknowledge(
        role,
        "X-Ray PutTraceSegments and PutTelemetryRecords have no resource-level permissions (AWS forces '*').",
        "AwsSolutions-IAM5[Resource::*]",
    )
    return function
