"""The one app the tenancy construct tests synthesize (once per session, with the cdk-nag packs).

Stacks:
- ``TenancyLambda``: ``TenantApi`` with the Lambda authorizer (RS256 keys in Secrets Manager) and usage
  plans, two tenant-isolated functions on three routes;
- ``TenancyJwt``: ``TenantApi`` with defaults (``auto`` picks API Gateway's JWT authorizer), one function;
- ``TenancyJwksCmk``: the Lambda authorizer with a JWKS URL and ES256, a registry under a customer-managed
  key, a function with an error alarm and a saved query for one tenant;
- ``TenancyClientHeader``: the loudly named client-header opt-in, behind IAM and source ranges;
- ``ServerlessPatternsTenancy``: the sample stack (integ/sample_tenancy.py), as the sample app will hold it;
- ``IntegServerlessPatternsTenancy`` and ``TenancyInteg/DefaultTest/DeployAssert``: the integration-test
  app of integ/integ_tenancy.py (its ``add_integ_test``), in this same app so that the session
  synthesizes once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns

from cdk_serverless_patterns.core import acknowledge
from cdk_serverless_patterns.tenancy import TenantApi, TenantIsolatedFunction, TenantPlan, TenantRegistry
from cdk_serverless_patterns.testing.checks import CheckedAssembly, synth_with_checks

ENV = cdk.Environment(account="123456789012", region="us-east-1")
HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': context.tenant_id}\n"
COGNITO_ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example"


def function(scope: Any, id: str, **props: Any) -> TenantIsolatedFunction:
    return TenantIsolatedFunction(scope, id, code=lambda_.Code.from_inline(HANDLER), handler="index.handler", **props)


@dataclass
class TenancyApp:
    assembly: CheckedAssembly
    ids: dict[str, str]

    def template(self, stack: str) -> dict[str, Any]:
        return self.assembly.templates[stack]


def build(outdir: Path) -> TenancyApp:
    app = cdk.App(outdir=str(outdir))
    ids: dict[str, str] = {}

    def logical(construct: Any) -> str:
        child = construct.node.default_child or construct
        return str(cdk.Stack.of(construct).get_logical_id(child))

    stack = cdk.Stack(app, "TenancyLambda", env=ENV)
    secret = secretsmanager.Secret(stack, "SigningKeys", description="JWKS of the token issuer's public keys")
    acknowledge(
        secret, "Holds the issuer's public keys: they rotate with the issuer, not on a schedule.", "AwsSolutions-SMG4"
    )
    api = TenantApi(
        stack,
        "Api",
        issuer="https://issuer.example.com/",
        audiences=["orders-api"],
        authorizer="lambda",
        signing_key_secret=secret,
        plans={"gold": TenantPlan(rate_limit=50, burst_limit=100, quota_per_day=100000), "basic": TenantPlan(5, 10)},
    )
    orders = function(stack, "Orders")
    reports = function(stack, "Reports", memory_size=512, application_log_level="DEBUG", system_log_level="INFO")
    api.add_function("/orders", orders, methods=["GET", "POST"])
    api.add_function("/reports/{reportId}", reports)
    ids |= {
        "orders": logical(orders.function),
        "reports": logical(reports.function),
        "authorizer": logical(api.authorizer_function),
        "registry": logical(api.registry.table),
        "secret": logical(secret),
        "layer": str(stack.get_logical_id(orders.layer.node.default_child)),  # type: ignore[union-attr]
    }

    jwt_stack = cdk.Stack(app, "TenancyJwt", env=ENV)
    jwt_api = TenantApi(jwt_stack, "Api", issuer=COGNITO_ISSUER, audiences=["client-id-1"])
    jwt_function = function(jwt_stack, "Orders")
    jwt_api.add_function("/orders", jwt_function, methods=["GET", "POST"])
    ids |= {"jwt_function": logical(jwt_function.function), "jwt_registry": logical(jwt_api.registry.table)}

    cmk_stack = cdk.Stack(app, "TenancyJwksCmk", env=ENV)
    key = kms.Key(cmk_stack, "Key", enable_key_rotation=True)
    registry = TenantRegistry(cmk_stack, "Registry", encryption_key=key, deletion_protection=False)
    topic = sns.Topic(cmk_stack, "Alarms", enforce_ssl=True, master_key=key)
    cmk_api = TenantApi(
        cmk_stack,
        "Api",
        issuer="https://login.example.com",
        audiences=["a", "b"],
        algorithm="ES256",
        jwks_url="https://login.example.com/.well-known/jwks.json",
        registry=registry,
        tenant_claim="org",
        leeway=cdk.Duration.seconds(10),
        registry_cache_ttl=cdk.Duration.seconds(5),
        authorizer_cache_ttl=cdk.Duration.minutes(1),
        alarm_topic=topic,
    )
    audited = function(cmk_stack, "Audited", alarm_topic=topic)
    audited.add_tenant_query("acme")
    cmk_api.add_function("/audit", audited, methods=["ANY"])
    ids |= {"cmk_authorizer": logical(cmk_api.authorizer_function), "key": logical(key)}

    header_stack = cdk.Stack(app, "TenancyClientHeader", env=ENV)
    header_api = TenantApi(
        header_stack,
        "Api",
        unsafe_trust_client_tenant_header="X-Tenant-Id",
        allowed_source_cidrs=["10.0.0.0/8"],
    )
    header_api.add_function("/internal", function(header_stack, "Internal"))

    import integ_tenancy  # integ/ is on sys.path (tests/conftest.py)
    import sample_tenancy

    sample = sample_tenancy.TenancySampleStack(app)  # environment-agnostic, like the integ test case
    ids["sample_orders"] = logical(sample.orders.function)
    integ_tenancy.add_integ_test(app)
    return TenancyApp(synth_with_checks(app), ids)
