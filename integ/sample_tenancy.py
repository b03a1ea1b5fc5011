"""Sample stack: a tenant-isolated orders function behind ``TenantApi``, two tenants in the registry.

- ``TenantApi`` with the Lambda authorizer: HS256 tokens signed with a key that Secrets Manager
  generates (a JWKS document with one ``oct`` key, never a literal in the template or environment);
- the registry seeded with ``acme`` (plan gold) and ``globex`` (plan basic), both ACTIVE, by a Python
  custom resource (``integ/functions/tenancy_seed``) with conditional writes (an existing tenant is
  never overwritten; no Node.js provider, so the local emulator can run it);
- ``GET /orders`` routed to a PER_TENANT function that reports which tenant, process and invocation
  served it (``integ/functions/tenancy_orders``);
- a sample-only token issuer (``integ/functions/tenancy_token_issuer``), invoked through IAM only, that
  stands in for an identity provider so that the demo and the integration test can call the API.

The context ``tenancy_registry_cache_seconds`` (default 30, 1-300) sets how long the authorizer
trusts a registry read: a suspension takes effect within it (the demo deploys 3 s so that its
suspension scenario does not wait half a minute).

The functions run on ARM64 unless the CDK context ``tenancy_architecture`` says ``x86_64``. The
authorizer bundles a compiled dependency (``cryptography``) for its architecture, and the local
emulator runs the deployed code on the host's CPU: so ``make demo`` deploys the sample for the host's
architecture (an aarch64 extension cannot be loaded on an x86_64 host, and the reverse).
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager

from cdk_serverless_patterns.core import acknowledge, pattern_function
from cdk_serverless_patterns.tenancy import TenantApi, TenantIsolatedFunction
from constructs import Construct

STACK_ID = "ServerlessPatternsTenancy"
DESCRIPTION = "cdk-serverless-patterns: tenant-isolated functions behind a REST API that proves the tenant"
FUNCTIONS = Path(__file__).resolve().parent / "functions"
ISSUER = "https://tenancy-sample.example.com/"
AUDIENCE = "tenancy-sample-api"
SIGNING_KEY_ID = "sample-hs256-1"
#: The seeded tenants: id -> plan.
TENANTS = {"acme": "gold", "globex": "basic"}
#: CDK context key: the functions' architecture, ``arm64`` (default) or ``x86_64``.
ARCHITECTURE_CONTEXT = "tenancy_architecture"
REGISTRY_CACHE_CONTEXT = "tenancy_registry_cache_seconds"
ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}


def architecture_from_context(scope: Construct) -> lambda_.Architecture:
    """The architecture the context ``tenancy_architecture`` names (default arm64); anything else is an error."""
    value = scope.node.try_get_context(ARCHITECTURE_CONTEXT) or "arm64"
    if value not in ARCHITECTURES:
        raise ValueError(f"context {ARCHITECTURE_CONTEXT}={value!r}: must be one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[value]


def registry_cache_from_context(scope: Construct) -> cdk.Duration:
    """The authorizer's registry cache the context ``tenancy_registry_cache_seconds`` names (default 30 s)."""
    raw = scope.node.try_get_context(REGISTRY_CACHE_CONTEXT)
    try:
        seconds = int(raw) if raw is not None else 30
    except (TypeError, ValueError):
        seconds = -1
    if not 1 <= seconds <= 300:
        raise ValueError(f"context {REGISTRY_CACHE_CONTEXT}={raw!r}: must be whole seconds from 1 to 300")
    return cdk.Duration.seconds(seconds)


class TenancySampleStack(cdk.Stack):
    """One API, one tenant-isolated function, a registry of two tenants, a signing key in Secrets Manager."""

    def __init__(self, scope: Construct, id: str = STACK_ID, *, env: cdk.Environment | None = None) -> None:
        super().__init__(scope, id, env=env, description=DESCRIPTION)
        architecture = architecture_from_context(self)
        # Secrets Manager generates the HS256 key into a JWK ("k"): 64 characters of A-Z a-z 0-9 are
        # base64url for 48 bytes.
        self.signing_key = secretsmanager.Secret(
            self,
            "SigningKey",
            description="HS256 signing key of the tenancy sample (one JWK of type oct)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"kty": "oct", "kid": SIGNING_KEY_ID, "alg": "HS256", "use": "sig"}),
                generate_string_key="k",
                exclude_punctuation=True,
                include_space=False,
                password_length=64,
            ),
        )
        acknowledge(
            self.signing_key,
            "The sample's signing key is rotated by replacing the secret with a new key id; an automatic "
            "rotation Lambda would invalidate every token in flight without a second key.",
            "AwsSolutions-SMG4",
        )
        self.api = TenantApi(
            self,
            "Api",
            issuer=ISSUER,
            audiences=[AUDIENCE],
            authorizer="lambda",
            algorithm="HS256",
            signing_key_secret=self.signing_key,
            authorizer_architecture=architecture,
            registry_cache_ttl=registry_cache_from_context(self),
        )
        self.orders = TenantIsolatedFunction(
            self,
            "Orders",
            code_path=FUNCTIONS / "tenancy_orders",
            handler="orders.handler",
            description="Sample orders listing, one execution environment per tenant",
            architecture=architecture,
        )
        self.api.add_function("/orders", self.orders)
        self.token_issuer = pattern_function(
            self,
            "TokenIssuer",
            code_path=FUNCTIONS / "tenancy_token_issuer",
            handler="token_issuer.handler",
            description="Sample-only identity provider stand-in: mints HS256 tokens for a tenant",
            architecture=architecture,
            environment={
                "SIGNING_KEY_SECRET_ARN": self.signing_key.secret_arn,
                "ISSUER": ISSUER,
                "AUDIENCE": AUDIENCE,
            },
        )
        self.signing_key.grant_read(self.token_issuer)
        acknowledge(
            self.token_issuer,
            "The token issuer is invoked synchronously through IAM by the demo and the integration test, which "
            "receive its errors; asynchronous dead-letter queues never apply.",
            "Serverless-LambdaDLQ",
            "Serverless-LambdaAsyncFailureDestination",
        )
        self._seed_registry(architecture)

        cdk.CfnOutput(self, "ApiUrl", value=self.api.url, description="Stage URL: GET <url>orders with a bearer token")
        cdk.CfnOutput(self, "RegistryTableName", value=self.api.registry.table.table_name)
        cdk.CfnOutput(self, "SigningKeySecretArn", value=self.signing_key.secret_arn)
        cdk.CfnOutput(self, "OrdersFunctionName", value=self.orders.function.function_name)
        cdk.CfnOutput(self, "TokenIssuerFunctionName", value=self.token_issuer.function_name)

    def _seed_registry(self, architecture: lambda_.Architecture) -> None:
        """A Python custom resource (integ/functions/tenancy_seed) puts the tenants with conditional writes."""
        table = self.api.registry.table
        seeder = pattern_function(
            self,
            "RegistrySeeder",
            code_path=FUNCTIONS / "tenancy_seed",
            handler="seed.handler",
            description="Sample-only custom resource: seeds the tenant registry (never overwrites a tenant)",
            timeout=cdk.Duration.seconds(60),
            architecture=architecture,
        )
        seeder.add_to_role_policy(iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[table.table_arn]))
        acknowledge(
            seeder,
            "CloudFormation invokes the seeder synchronously as a custom resource and receives every failure "
            "through its response URL; asynchronous dead-letter queues never apply.",
            "Serverless-LambdaDLQ",
            "Serverless-LambdaAsyncFailureDestination",
        )
        self.registry_seed = cdk.CustomResource(
            self,
            "RegistrySeed",
            service_token=seeder.function_arn,
            resource_type="Custom::TenantRegistrySeed",
            properties={"TableName": table.table_name, "Tenants": dict(TENANTS)},
        )
