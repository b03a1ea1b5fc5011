"""A regional REST API with the defaults every pattern's endpoint needs.

:func:`regional_rest_api` creates, in the caller's scope (construct ids ``AccessLogKey``,
``AccessLogs``, ``Api``, ``Validator``, ``WebAclAssociation``): a regional ``RestApi`` with X-Ray
tracing, stage throttling, metrics, JSON access logs in a log group encrypted with a rotating
customer-managed key (or the user's group), no data tracing (request data may carry secrets), a
request validator for bodies and parameters, an optional WAFv2 web ACL, resource policy and custom
domain (TLS 1.2). The cdk-nag findings these defaults leave are acknowledged here with their
reasons; the authentication finding is the caller's to answer, since only it knows how callers are
authenticated. :func:`check_api_props` reports every problem of these props into ``PropErrors``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2

from cdk_serverless_patterns.core.nag import acknowledge
from cdk_serverless_patterns.core.props import PropErrors
from constructs import Construct

_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class RestApiParts:
    """What :func:`regional_rest_api` created."""

    api: apigw.RestApi
    validator: apigw.RequestValidator
    access_log_group: logs.ILogGroup
    #: The key of the access-log group (``None`` with an existing group).
    access_log_key: kms.IKey | None


def check_api_props(
    errors: PropErrors,
    *,
    stage_name: str,
    throttling_rate_limit: float,
    throttling_burst_limit: int,
    access_log_encryption_key: kms.IKey | None,
    existing_access_log_group: logs.ILogGroup | None,
    web_acl_arn: str | None,
    allowed_source_cidrs: Sequence[str] | None,
    domain_name: str | None,
    certificate: acm.ICertificate | None,
    disable_execute_api_endpoint: bool,
) -> None:
    """Records every problem of the API props :func:`regional_rest_api` takes."""
    errors.require(
        isinstance(stage_name, str) and bool(_STAGE_NAME.match(stage_name)),
        "stage_name",
        f"{stage_name!r} must be 1-128 of A-Z a-z 0-9 _ -",
    )
    errors.require(
        isinstance(throttling_rate_limit, int | float) and 0 < throttling_rate_limit <= 10000,
        "throttling_rate_limit",
        f"must be in (0, 10000], got {throttling_rate_limit}",
    )
    errors.require(
        isinstance(throttling_burst_limit, int) and 1 <= throttling_burst_limit <= 5000,
        "throttling_burst_limit",
        f"must be an integer between 1 and 5000, got {throttling_burst_limit!r}",
    )
    errors.exclusive(
        existing_access_log_group=existing_access_log_group, access_log_encryption_key=access_log_encryption_key
    )
    if web_acl_arn is not None and not cdk.Token.is_unresolved(web_acl_arn):
        errors.require(
            web_acl_arn.startswith("arn:") and ":wafv2:" in web_acl_arn and ":regional/webacl/" in web_acl_arn,
            "web_acl_arn",
            f"{web_acl_arn!r} is not the ARN of a regional WAFv2 web ACL",
        )
    if allowed_source_cidrs is not None and errors.require(
        bool(list(allowed_source_cidrs)), "allowed_source_cidrs", "must not be empty when given"
    ):
        for cidr in allowed_source_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                errors.add("allowed_source_cidrs", f"{cidr!r} is not an IP address range (CIDR)")
    errors.require(
        (domain_name is None) == (certificate is None),
        "certificate" if certificate is None else "domain_name",
        "domain_name and certificate go together: give both or neither",
    )
    errors.require(
        domain_name is not None or not disable_execute_api_endpoint,
        "disable_execute_api_endpoint",
        "needs domain_name: without a custom domain the API would have no endpoint at all",
    )


def encrypted_access_logs(
    scope: Construct,
    *,
    purpose: str,
    retention: logs.RetentionDays,
    removal_policy: cdk.RemovalPolicy,
    key: kms.IKey | None = None,
) -> tuple[logs.LogGroup, kms.IKey]:
    """An API's access-log group (``AccessLogs``), encrypted with ``key`` or a new rotating key (``AccessLogKey``)
    whose policy lets CloudWatch Logs of this stack's region use it for this account's log groups only.

    ``purpose`` completes the key's description ("Encrypts the access logs of <purpose>").
    """
    stack = cdk.Stack.of(scope)
    access_log_key = key or kms.Key(
        scope,
        "AccessLogKey",
        enable_key_rotation=True,
        description=f"Encrypts the access logs of {purpose}"[:8192],
        removal_policy=removal_policy,
    )
    access_log_key.add_to_resource_policy(
        iam.PolicyStatement(
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            resources=["*"],  # in a key policy, "*" is this key
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="*",
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            },
        )
    )
    log_group = logs.LogGroup(
        scope, "AccessLogs", retention=retention, encryption_key=access_log_key, removal_policy=removal_policy
    )
    return log_group, access_log_key


def regional_rest_api(
    scope: Construct,
    *,
    rest_api_name: str,
    description: str,
    purpose: str,
    stage_name: str,
    throttling_rate_limit: float,
    throttling_burst_limit: int,
    access_log_retention: logs.RetentionDays,
    access_log_encryption_key: kms.IKey | None = None,
    existing_access_log_group: logs.ILogGroup | None = None,
    web_acl_arn: str | None = None,
    allowed_source_cidrs: Sequence[str] | None = None,
    domain_name: str | None = None,
    certificate: acm.ICertificate | None = None,
    disable_execute_api_endpoint: bool = False,
    removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    waf_reason: str,
) -> RestApiParts:
    """The API, its validator and its access logs (see the module docstring); check the props first.

    ``purpose`` names the API in the access-log key's description (``"the callback URL API"``);
    ``waf_reason`` says why the API is safe without a web ACL (the acknowledgment of
    AwsSolutions-APIG3 when ``web_acl_arn`` is not given).
    """
    access_log_key: kms.IKey | None = None
    if existing_access_log_group is not None:
        access_log_group: logs.ILogGroup = existing_access_log_group
    else:
        access_log_group, access_log_key = encrypted_access_logs(
            scope,
            purpose=f"{purpose} {scope.node.path}",
            retention=access_log_retention,
            removal_policy=removal_policy,
            key=access_log_encryption_key,
        )

    api = apigw.RestApi(
        scope,
        "Api",
        rest_api_name=rest_api_name,
        description=description,
        endpoint_types=[apigw.EndpointType.REGIONAL],
        cloud_watch_role=False,  # execution logging needs an account-wide role: not ours to set
        policy=_source_policy(allowed_source_cidrs) if allowed_source_cidrs else None,
        # Every endpoint is HTTPS only; a custom domain also refuses anything older than TLS 1.2.
        domain_name=apigw.DomainNameOptions(
            domain_name=domain_name,
            certificate=certificate,
            endpoint_type=apigw.EndpointType.REGIONAL,
            security_policy=apigw.SecurityPolicy.TLS_1_2,
        )
        if domain_name is not None and certificate is not None
        else None,
        disable_execute_api_endpoint=disable_execute_api_endpoint,
        deploy_options=apigw.StageOptions(
            stage_name=stage_name,
            tracing_enabled=True,
            access_log_destination=apigw.LogGroupLogDestination(access_log_group),
            access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                caller=False,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=False,
            ),
            throttling_rate_limit=throttling_rate_limit,
            throttling_burst_limit=throttling_burst_limit,
            # Never log request data: it may carry credentials.
            data_trace_enabled=False,
            metrics_enabled=True,
        ),
    )
    validator = apigw.RequestValidator(
        scope,
        "Validator",
        rest_api=api,
        validate_request_body=True,
        validate_request_parameters=True,
    )
    acknowledge(
        api,
        "Execution logging needs the account-wide API Gateway CloudWatch role, which one construct "
        "must not set for the whole account; access logs (JSON, encrypted) and the handler's own "
        "structured logs record every call.",
        "AwsSolutions-APIG6",
    )
    if web_acl_arn is not None:
        wafv2.CfnWebACLAssociation(
            scope,
            "WebAclAssociation",
            resource_arn=api.deployment_stage.stage_arn,
            web_acl_arn=web_acl_arn,
        )
    else:
        acknowledge(api, waf_reason, "AwsSolutions-APIG3")
    return RestApiParts(api=api, validator=validator, access_log_group=access_log_group, access_log_key=access_log_key)


def _source_policy(cidrs: Sequence[str], principals: Sequence[iam.IPrincipal] | None = None) -> iam.PolicyDocument:
    """Only the given source ranges may invoke the API; with ``principals``, only those principals.

    ``principals`` defaults to anyone (``AWS: *``), which is right for methods whose authorizer proves the
    caller (tokens, Cognito): the policy then only limits where calls come from. Methods authorized by
    IAM (SigV4) for trusted callers should name them (an account, roles): otherwise any AWS account's
    signed requests from those ranges pass the policy.

    ``aws:SourceIp`` is the caller's public address as API Gateway sees it: private ranges (10.0.0.0/8 and
    the like) never match traffic from a VPC, which reaches a regional API through a NAT gateway's public
    address, and traffic through a VPC endpoint carries ``aws:VpcSourceIp`` (and ``aws:SourceVpce``)
    instead, which this policy does not check.
    """
    invoke = "execute-api:/*"
    allowed = list(principals) if principals else [iam.AnyPrincipal()]
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(actions=["execute-api:Invoke"], principals=allowed, resources=[invoke]),
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                actions=["execute-api:Invoke"],
                principals=[iam.AnyPrincipal()],
                resources=[invoke],
                conditions={"NotIpAddress": {"aws:SourceIp": list(cidrs)}},
            ),
        ]
    )
