"""``TenantApi``: a regional REST API whose Lambda integrations set ``X-Amz-Tenant-Id`` from a proven tenant.

Three ways to prove the tenant, one per API (``authorizer``):

- ``"gateway_jwt"``: API Gateway's own JWT authorizer (``AWS::ApiGateway::Authorizer`` ``Type: JWT``
  with ``JwtConfiguration``; aws-cdk-lib 2.275 has no typed property, so it is written with property
  overrides). No Lambda in the request path. The tenant claim must be a single string (an
  ``AdditionalClaims`` rule with ``Format: SINGLE_STRING, Required: true``). In parameter mappings
  API Gateway passes claims as JSON text (``"acme"``, quotes included), which Lambda's tenant-id
  pattern refuses; so the integration is a non-proxy Lambda integration whose request template sets
  ``$context.requestOverride.header.X-Amz-Tenant-Id`` to ``$util.parseJson(<claim>)`` and builds
  the proxy event the handler expects; its response template maps the proxy answer back
  (statusCode, Content-Type, body). The registry check moves into the function-side helper.
- ``"lambda"``: our REQUEST authorizer (``lambda_src/tenancy_authorizer``): RS256/ES256 from a JWKS
  URL or Secrets Manager, or HS256 from Secrets Manager; registry status at the edge; per-tenant
  usage plans. A Lambda proxy integration maps ``integration.request.header.X-Amz-Tenant-Id`` from
  ``context.authorizer.tenantId``.
- ``"auto"`` (default): ``gateway_jwt`` where it fits (RS*/ES* tokens of an issuer with public OIDC
  discovery, no JWKS URL or secret given, no usage plans), else ``lambda``.

``unsafe_trust_client_tenant_header`` maps the tenant from a client header instead: any caller picks
any tenant. It exists only for trusted internal callers: it requires ``allowed_source_cidrs`` and puts
the methods behind IAM (SigV4) authorization.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns

from cdk_serverless_patterns.core import PropErrors, acknowledge, alarm_on_any, pattern_function
from cdk_serverless_patterns.core.apis import _source_policy, check_api_props, regional_rest_api
from cdk_serverless_patterns.core.functions import DEFAULT_ARCHITECTURE
from cdk_serverless_patterns.tenancy import contract
from cdk_serverless_patterns.tenancy.tenant_isolated_function import TenantIsolatedFunction, readable_name
from cdk_serverless_patterns.tenancy.tenant_registry import TenantRegistry
from constructs import Construct

__all__ = ["AUTHORIZERS", "MAX_AUTHORIZER_CACHE_TTL", "TenantApi", "TenantPlan"]

AUTHORIZERS = ("auto", "gateway_jwt", "lambda")
#: API Gateway allows an hour; a suspended tenant keeps access for up to this long plus the registry cache.
MAX_AUTHORIZER_CACHE_TTL = cdk.Duration.minutes(15)
#: Claims API Gateway's JWT authorizer reserves (no AdditionalClaims rule may name them).
RESERVED_CLAIMS = frozenset({"iss", "aud", "exp", "nbf", "iat", "scope", "scp"})
_CLAIM = re.compile(r"[A-Za-z0-9_]{1,64}")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
_PATH = re.compile(r"/([A-Za-z0-9._~-]+|\{[A-Za-z0-9_]+\+?\})(/([A-Za-z0-9._~-]+|\{[A-Za-z0-9_]+\+?\}))*|/")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")


@dataclass(frozen=True)
class TenantPlan:
    """Throttling and quota of one plan, applied per tenant through a usage plan and the tenant's API key.

    Args:
        rate_limit: Steady-state requests per second per tenant.
        burst_limit: Burst per tenant.
        quota_per_day: Requests per day per tenant. Default: no quota.
    """

    rate_limit: float
    burst_limit: int
    quota_per_day: int | None = None


class TenantApi(Construct):
    """A REST API in front of tenant-isolated functions (see the module documentation).

    Args:
        issuer: The token issuer (``iss``), exactly; an ``https://`` URL without query or fragment for
            ``gateway_jwt``. Required unless ``unsafe_trust_client_tenant_header``.
        audiences: Accepted audiences (``aud``); at least one. Required unless
            ``unsafe_trust_client_tenant_header``.
        authorizer: ``"auto"``, ``"gateway_jwt"`` or ``"lambda"``. Default: ``"auto"``.
        algorithm: The one signing algorithm accepted: RS256, ES256 or HS256 for ``lambda``; RS256-512
            or ES256-512 for ``gateway_jwt``. Default: RS256.
        jwks_url: The issuer's JWKS (``https://``), for the Lambda authorizer. Excludes
            ``signing_key_secret``.
        signing_key_secret: A Secrets Manager secret holding a JWKS document (public RSA/EC keys, or
            ``oct`` keys of at least 32 bytes for HS256), for the Lambda authorizer.
        tenant_claim: The top-level claim holding the tenant id. Default: ``tenant_id``.
        leeway: Clock skew allowed on ``exp``/``nbf``/``iat``. Default: 30 seconds; at most 5 minutes.
        registry: The tenant registry. Default: a new ``TenantRegistry``.
        registry_cache_ttl: How long the authorizer (or the helper) trusts a registry read.
            Default: 30 seconds; at most 5 minutes.
        authorizer_cache_ttl: How long API Gateway caches the Lambda authorizer's decision per token.
            Default: 60 seconds; at most 15 minutes. A cached Allow outlives the token's ``exp`` by up
            to this long (API Gateway does not look at ``exp`` on a cache hit), and a suspension takes
            effect within this plus twice ``registry_cache_ttl`` (the authorizer's and the helper's
            caches).
        plans: Usage plans by plan name (Lambda authorizer only); every method then requires the API key
            the authorizer names (the registry's ``usageKey``, the key's value). Tenants are added after
            deployment, so their keys are not made here: ``serverless-patterns tenant add ID --plan P
            --api-key`` creates the key, adds it to plan P's usage plan and stores its value (see
            docs/tenancy.md, "Per-tenant API keys"). Default: none.
        unsafe_trust_client_tenant_header: The name of a client header to take the tenant from, for
            trusted internal callers only: needs ``allowed_source_cidrs``; methods use IAM
            authorization, and the resource policy admits only ``trusted_principals`` from those
            ranges. Default: none (the tenant always comes from a verified token).
        trusted_principals: With ``unsafe_trust_client_tenant_header``: the IAM principals the resource
            policy admits. Default: this account (its IAM principals whose own policies allow
            ``execute-api:Invoke``).
        rest_api_name: Default: derived from the construct path.
        stage_name: Default: ``prod``.
        throttling_rate_limit: Stage-wide requests per second. Default: 100.
        throttling_burst_limit: Stage-wide burst. Default: 200.
        access_log_retention: Default: one month.
        web_acl_arn: A regional WAFv2 web ACL to associate. Default: none.
        allowed_source_cidrs: Only these source ranges may call the API. Default: any.
        removal_policy: Of the access logs and their key. Default: RETAIN.
        alarm_topic: Where the alarms notify: any 5xx answer of the API, and (Lambda authorizer) any
            failed authorizer invocation (a timeout or crash: bad tokens are clean denials). Default:
            no alarms.
        authorizer_architecture: The Lambda authorizer's architecture; its compiled dependency
            (``cryptography``) is bundled for it. Default: ARM64.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        issuer: str | None = None,
        audiences: Sequence[str] | None = None,
        authorizer: str = "auto",
        algorithm: str = "RS256",
        jwks_url: str | None = None,
        signing_key_secret: secretsmanager.ISecret | None = None,
        tenant_claim: str = contract.DEFAULT_TENANT_CLAIM,
        leeway: cdk.Duration = cdk.Duration.seconds(30),
        registry: TenantRegistry | None = None,
        registry_cache_ttl: cdk.Duration = cdk.Duration.seconds(30),
        authorizer_cache_ttl: cdk.Duration = cdk.Duration.seconds(60),
        plans: Mapping[str, TenantPlan] | None = None,
        unsafe_trust_client_tenant_header: str | None = None,
        trusted_principals: Sequence[iam.IPrincipal] | None = None,
        rest_api_name: str | None = None,
        stage_name: str = "prod",
        throttling_rate_limit: float = 100,
        throttling_burst_limit: int = 200,
        access_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        web_acl_arn: str | None = None,
        allowed_source_cidrs: Sequence[str] | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        alarm_topic: sns.ITopic | None = None,
        authorizer_architecture: lambda_.Architecture = DEFAULT_ARCHITECTURE,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        check_api_props(
            errors,
            stage_name=stage_name,
            throttling_rate_limit=throttling_rate_limit,
            throttling_burst_limit=throttling_burst_limit,
            access_log_encryption_key=None,
            existing_access_log_group=None,
            web_acl_arn=web_acl_arn,
            allowed_source_cidrs=allowed_source_cidrs,
            domain_name=None,
            certificate=None,
            disable_execute_api_endpoint=False,
        )
        kind = self._check(
            errors,
            issuer=issuer,
            audiences=audiences,
            authorizer=authorizer,
            algorithm=algorithm,
            jwks_url=jwks_url,
            signing_key_secret=signing_key_secret,
            tenant_claim=tenant_claim,
            leeway=leeway,
            registry_cache_ttl=registry_cache_ttl,
            authorizer_cache_ttl=authorizer_cache_ttl,
            plans=plans,
            client_header=unsafe_trust_client_tenant_header,
            allowed_source_cidrs=allowed_source_cidrs,
        )
        errors.require(
            trusted_principals is None or (kind == "client_header" and bool(list(trusted_principals))),
            "trusted_principals",
            "applies only with unsafe_trust_client_tenant_header, and needs at least one principal",
        )
        errors.raise_if_any()

        self._kind = kind
        self._tenant_claim = tenant_claim
        self._client_header = unsafe_trust_client_tenant_header
        self._registry = registry or TenantRegistry(self, "Registry")
        self._registry_cache_ttl = registry_cache_ttl
        self._routes: set[tuple[str, str]] = set()
        self._methods: list[apigw.Method] = []
        parts = regional_rest_api(
            self,
            rest_api_name=rest_api_name or f"{readable_name(self)[-200:]}-tenants",
            description="Tenant-isolated functions: the tenant is proven before X-Amz-Tenant-Id is set",
            purpose="the tenant API",
            stage_name=stage_name,
            throttling_rate_limit=throttling_rate_limit,
            throttling_burst_limit=throttling_burst_limit,
            access_log_retention=access_log_retention,
            web_acl_arn=web_acl_arn,
            # The client-header opt-in gets its own, narrower resource policy below.
            allowed_source_cidrs=allowed_source_cidrs if kind != "client_header" else None,
            removal_policy=removal_policy,
            waf_reason="WAF is opt-in (web_acl_arn): every method needs a verified token (or SigV4 for the "
            "client-header opt-in), the stage is throttled, and the tenant is checked against the registry.",
        )
        self._api = parts.api
        self._validator = parts.validator
        self._access_log_group = parts.access_log_group
        self._authorizer_function: lambda_.Function | None = None
        self._lambda_authorizer: apigw.RequestAuthorizer | None = None
        self._jwt_authorizer: apigw.CfnAuthorizer | None = None
        self._usage_plans: dict[str, apigw.UsagePlan] = {}
        if kind == "lambda":
            self._build_lambda_authorizer(
                issuer=str(issuer),
                audiences=list(audiences or []),
                algorithm=algorithm,
                jwks_url=jwks_url,
                signing_key_secret=signing_key_secret,
                leeway=leeway,
                authorizer_cache_ttl=authorizer_cache_ttl,
                architecture=authorizer_architecture,
            )
            self._build_usage_plans(plans or {})
            acknowledge(
                self._api,
                "Methods use the tenancy Lambda REQUEST authorizer, which verifies the issuer's signed tokens "
                "(pinned algorithm, exp, iss, aud) and the tenant registry; cdk-nag only recognises Cognito user "
                "pool authorizers.",
                "AwsSolutions-COG4",
            )
        elif kind == "gateway_jwt":
            self._build_jwt_authorizer(issuer=str(issuer), audiences=list(audiences or []), algorithm=algorithm)
            acknowledge(
                self._api,
                "Methods use API Gateway's JWT authorizer (AuthorizationType JWT), which verifies the issuer's "
                "signed tokens in the gateway; cdk-nag only recognises Cognito user pool authorizers.",
                "AwsSolutions-COG4",
            )
        else:
            # Only IAM principals of the account (or trusted_principals) from allowed_source_cidrs: an
            # Allow for any principal would let another account's SigV4 callers pick any tenant.
            cfn_api = self._api.node.default_child
            assert isinstance(cfn_api, apigw.CfnRestApi)
            cfn_api.policy = _source_policy(
                list(allowed_source_cidrs or []),
                principals=list(trusted_principals or [iam.AccountPrincipal(cdk.Stack.of(self).account)]),
            )
            acknowledge(
                self._api,
                "The client-header opt-in serves trusted internal callers only: methods require IAM (SigV4) "
                "authorization and the resource policy admits only allowed_source_cidrs.",
                "AwsSolutions-COG4",
            )

        self._alarms: list[cloudwatch.Alarm] = []
        if alarm_topic is not None:
            self._alarms.append(
                alarm_on_any(
                    self,
                    "ServerErrorAlarm",
                    description=f"The tenant API {self.node.path} answered a 5xx",
                    metric=self._api.metric_server_error(period=cdk.Duration.minutes(1), statistic="Sum"),
                    alarm_topic=alarm_topic,
                )
            )
            if self._authorizer_function is not None:
                self._alarms.append(
                    alarm_on_any(
                        self,
                        "AuthorizerErrorAlarm",
                        description=f"The tenant authorizer of {self.node.path} failed (timeout or crash)",
                        metric=self._authorizer_function.metric_errors(period=cdk.Duration.minutes(1), statistic="Sum"),
                        alarm_topic=alarm_topic,
                    )
                )

    # ----------------------------------------------------------------------------------------------
    @staticmethod
    def _check(
        errors: PropErrors,
        *,
        issuer: str | None,
        audiences: Sequence[str] | None,
        authorizer: str,
        algorithm: str,
        jwks_url: str | None,
        signing_key_secret: secretsmanager.ISecret | None,
        tenant_claim: str,
        leeway: cdk.Duration,
        registry_cache_ttl: cdk.Duration,
        authorizer_cache_ttl: cdk.Duration,
        plans: Mapping[str, TenantPlan] | None,
        client_header: str | None,
        allowed_source_cidrs: Sequence[str] | None,
    ) -> str:
        """Every problem of the authorization props; returns the authorizer kind."""
        errors.duration_between(leeway, "leeway", maximum=cdk.Duration.minutes(5), concrete=True, whole_seconds=True)
        errors.duration_between(
            registry_cache_ttl, "registry_cache_ttl", maximum=cdk.Duration.minutes(5), concrete=True, whole_seconds=True
        )
        errors.duration_between(
            authorizer_cache_ttl,
            "authorizer_cache_ttl",
            maximum=MAX_AUTHORIZER_CACHE_TTL,
            concrete=True,
            whole_seconds=True,
        )
        errors.require(
            isinstance(tenant_claim, str)
            and bool(_CLAIM.fullmatch(tenant_claim))
            and tenant_claim not in RESERVED_CLAIMS,
            "tenant_claim",
            f"{tenant_claim!r} must be a top-level claim name of 1-64 of A-Z a-z 0-9 _ (API Gateway maps top-level "
            f"claims only), not one of {', '.join(sorted(RESERVED_CLAIMS))}",
        )
        if client_header is not None:
            errors.require(
                isinstance(client_header, str) and bool(_HEADER.fullmatch(client_header)),
                "unsafe_trust_client_tenant_header",
                f"{client_header!r} is not a header name",
            )
            errors.require(
                bool(allowed_source_cidrs),
                "unsafe_trust_client_tenant_header",
                "lets any caller pick any tenant: give allowed_source_cidrs (trusted internal callers only)",
            )
            for name, value in (("issuer", issuer), ("audiences", audiences), ("jwks_url", jwks_url),
                                ("signing_key_secret", signing_key_secret), ("plans", plans)):  # fmt: skip
                errors.require(value is None, name, "does not apply with unsafe_trust_client_tenant_header")
            errors.require(authorizer == "auto", "authorizer", "does not apply with unsafe_trust_client_tenant_header")
            return "client_header"

        if not errors.one_of(authorizer, "authorizer", AUTHORIZERS):
            return "lambda"
        kind = authorizer
        if kind == "auto":
            fits = (
                jwks_url is None
                and signing_key_secret is None
                and not plans
                and algorithm in contract.GATEWAY_JWT_ALGORITHMS
            )
            kind = "gateway_jwt" if fits else "lambda"
        errors.require(isinstance(issuer, str) and bool(issuer.strip()), "issuer", "is required (the token's iss)")
        audience_list = [audiences] if isinstance(audiences, str) else list(audiences or [])
        errors.require(
            bool(audience_list) and all(isinstance(a, str) and a.strip() and "," not in a for a in audience_list),
            "audiences",
            "needs at least one non-empty audience (without commas)",
        )
        if kind == "gateway_jwt":
            errors.one_of(algorithm, "algorithm", contract.GATEWAY_JWT_ALGORITHMS)
            if isinstance(issuer, str) and not cdk.Token.is_unresolved(issuer):
                parsed = urlparse(issuer)
                errors.require(
                    parsed.scheme == "https"
                    and bool(parsed.hostname)
                    and not parsed.query
                    and not parsed.fragment
                    and not parsed.username,
                    "issuer",
                    f"{issuer!r} must be an absolute https URL without user, query or fragment (API Gateway reads "
                    "its OIDC discovery document)",
                )
            for name, value in (("jwks_url", jwks_url), ("signing_key_secret", signing_key_secret)):
                errors.require(value is None, name, "applies to the Lambda authorizer only (authorizer='lambda')")
            errors.require(
                not plans, "plans", "per-tenant usage plans need the Lambda authorizer (authorizer='lambda')"
            )
            return kind
        errors.one_of(algorithm, "algorithm", contract.LAMBDA_AUTHORIZER_ALGORITHMS)
        errors.require(
            (jwks_url is None) != (signing_key_secret is None),
            "jwks_url" if jwks_url is not None else "signing_key_secret",
            "the Lambda authorizer needs exactly one key source: jwks_url or signing_key_secret",
        )
        if jwks_url is not None and not cdk.Token.is_unresolved(jwks_url):
            errors.require(jwks_url.startswith("https://"), "jwks_url", f"{jwks_url!r} must be an https:// URL")
        errors.require(
            algorithm != "HS256" or signing_key_secret is not None,
            "algorithm",
            "HS256 keys are secret: give signing_key_secret (never a literal, never a JWKS URL)",
        )
        for name, plan in (plans or {}).items():
            errors.require(bool(_CLAIM.fullmatch(str(name))), "plans", f"{name!r} is not a plan name (A-Z a-z 0-9 _)")
            errors.require(
                isinstance(plan, TenantPlan)
                and 0 < plan.rate_limit <= 10000
                and 1 <= plan.burst_limit <= 5000
                and (plan.quota_per_day is None or plan.quota_per_day >= 1),
                "plans",
                f"{name}: rate_limit in (0, 10000], burst_limit 1-5000, quota_per_day at least 1 or None",
            )
        return kind

    def _build_lambda_authorizer(
        self,
        *,
        issuer: str,
        audiences: list[str],
        algorithm: str,
        jwks_url: str | None,
        signing_key_secret: secretsmanager.ISecret | None,
        leeway: cdk.Duration,
        authorizer_cache_ttl: cdk.Duration,
        architecture: lambda_.Architecture,
    ) -> None:
        environment = {
            contract.ENV_ISSUER: issuer,
            contract.ENV_AUDIENCE: ",".join(audiences),
            contract.ENV_ALGORITHM: algorithm,
            contract.ENV_KEY_SOURCE: contract.KEY_SOURCE_JWKS_URL if jwks_url else contract.KEY_SOURCE_SECRET,
            contract.ENV_REGISTRY_TABLE: self._registry.table.table_name,
            contract.ENV_TENANT_CLAIM: self._tenant_claim,
            contract.ENV_LEEWAY_SECONDS: str(int(leeway.to_seconds())),
            contract.ENV_REGISTRY_CACHE_SECONDS: str(int(self._registry_cache_ttl.to_seconds())),
            contract.ENV_DECISION_CACHE_SECONDS: str(int(self._registry_cache_ttl.to_seconds())),
        }
        if jwks_url:
            environment[contract.ENV_JWKS_URL] = jwks_url
        if signing_key_secret is not None:
            environment[contract.ENV_KEY_SECRET_ARN] = signing_key_secret.secret_arn
        function = pattern_function(
            self,
            "Authorizer",
            asset=contract.AUTHORIZER_ASSET,
            handler="tenancy_authorizer.handler",
            description="Tenant authorizer: verifies the token, checks the tenant registry, allows or denies",
            environment=environment,
            timeout=cdk.Duration.seconds(10),
            memory_size=512,  # RSA/EC verification is CPU-bound: more memory, more CPU
            architecture=architecture,
        )
        self._registry.grant_read_tenants(function)
        if signing_key_secret is not None:
            signing_key_secret.grant_read(function)
        acknowledge(
            function,
            "API Gateway invokes the authorizer synchronously and denies the request when it fails; a "
            "dead-letter queue or failure destination only applies to asynchronous invocations.",
            "Serverless-LambdaDLQ",
            "Serverless-LambdaAsyncFailureDestination",
        )
        self._authorizer_function = function
        self._lambda_authorizer = apigw.RequestAuthorizer(
            self,
            "RequestAuthorizer",
            handler=function,
            identity_sources=[apigw.IdentitySource.header("Authorization")],
            results_cache_ttl=authorizer_cache_ttl,
        )

    def _build_jwt_authorizer(self, *, issuer: str, audiences: list[str], algorithm: str) -> None:
        # aws-cdk-lib 2.275 has no typed JwtConfiguration: a TOKEN authorizer overridden to Type JWT.
        authorizer = apigw.CfnAuthorizer(
            self,
            "JwtAuthorizer",
            rest_api_id=self._api.rest_api_id,
            name=f"{readable_name(self)[-100:]}-jwt",
            type="TOKEN",
            identity_source="method.request.header.Authorization",
        )
        authorizer.add_property_override("Type", "JWT")
        authorizer.add_property_override(
            "JwtConfiguration",
            {
                "DefaultAlgorithms": [algorithm],
                "Issuers": [
                    {
                        "Issuer": issuer,
                        "Audiences": audiences,
                        "AdditionalClaims": [
                            {"ClaimName": self._tenant_claim, "Format": "SINGLE_STRING", "Required": True}
                        ],
                    }
                ],
            },
        )
        # cfn-lint 1.58's schema and the CDK's own template validation predate JwtConfiguration (the
        # API Gateway API of botocore 1.44 has it): told per resource, with the reason.
        authorizer.cfn_options.metadata = {"cfn-lint": {"config": {"ignore_checks": ["E3002"]}}}
        cdk.Validations.of(authorizer).acknowledge(
            cdk.Acknowledgment(
                id="CloudFormation-Validate::F3002",
                reason="JwtConfiguration is the REST API JWT authorizer's configuration (CreateAuthorizer "
                "jwtConfiguration); the bundled CloudFormation schema predates it.",
            )
        )
        self._jwt_authorizer = authorizer

    def _build_usage_plans(self, plans: Mapping[str, TenantPlan]) -> None:
        if not plans:
            return
        cfn_api = self._api.node.default_child
        assert isinstance(cfn_api, apigw.CfnRestApi)
        cfn_api.api_key_source_type = "AUTHORIZER"  # the authorizer names each tenant's key
        for name, plan in sorted(plans.items()):
            self._usage_plans[name] = apigw.UsagePlan(
                self,
                f"Plan{name}",
                name=f"{readable_name(self)[-150:]}-{name}",
                description=f"Per-tenant throttling and quota of the {name} plan",
                throttle=apigw.ThrottleSettings(rate_limit=plan.rate_limit, burst_limit=plan.burst_limit),
                quota=apigw.QuotaSettings(limit=plan.quota_per_day, period=apigw.Period.DAY)
                if plan.quota_per_day
                else None,
                api_stages=[apigw.UsagePlanPerApiStage(api=self._api, stage=self._api.deployment_stage)],
            )

    # ----------------------------------------------------------------------------------------------
    def add_function(
        self, path: str, function: TenantIsolatedFunction, *, methods: Sequence[str] = ("GET",)
    ) -> list[apigw.Method]:
        """Routes ``methods`` on ``path`` (``/orders``, ``/orders/{id}``) to ``function``, with the tenant header
        set from the proven tenant, and tells the function's helper where to find the tenant."""
        errors = PropErrors(f"{type(self).__name__}.add_function")
        errors.require(
            isinstance(function, TenantIsolatedFunction),
            "function",
            "must be a TenantIsolatedFunction (a function without PER_TENANT tenancy would serve every tenant "
            "from shared environments)",
        )
        errors.require(
            isinstance(path, str) and bool(_PATH.fullmatch(path)), "path", f"{path!r} is not a resource path"
        )
        for method in methods:
            if errors.one_of(method, "methods", _METHODS):
                errors.require((path, method) not in self._routes, "methods", f"{method} {path} is routed already")
        errors.require(bool(list(methods)), "methods", "needs at least one method")
        registry: TenantRegistry | None = None
        if isinstance(function, TenantIsolatedFunction):
            kind = {"gateway_jwt": contract.AUTHORIZER_KIND_JWT, "lambda": contract.AUTHORIZER_KIND_LAMBDA}.get(
                self._kind, contract.AUTHORIZER_KIND_CLIENT_HEADER
            )
            # No Lambda at the edge checks the registry for these two: the function-side helper does.
            registry = (
                self._registry
                if kind in (contract.AUTHORIZER_KIND_JWT, contract.AUTHORIZER_KIND_CLIENT_HEADER)
                else None
            )
            problem = function._bind_authorizer(
                kind, tenant_claim=self._tenant_claim, registry_table=registry.table if registry else None
            )
            errors.require(problem is None, "function", str(problem))
        errors.raise_if_any()
        if registry is not None:
            registry.grant_read_tenants(function.function)
            function._set_tenancy_variable(
                contract.ENV_REGISTRY_CACHE_SECONDS, str(int(self._registry_cache_ttl.to_seconds()))
            )

        resource = self._api.root.resource_for_path(path)
        created = []
        for method in methods:
            self._routes.add((path, method))
            created.append(self._add_method(resource, method, function))
        return created

    def _add_method(
        self, resource: apigw.IResource, http_method: str, function: TenantIsolatedFunction
    ) -> apigw.Method:
        header = f"integration.request.header.{contract.TENANT_HEADER}"
        if self._kind == "lambda":
            assert self._lambda_authorizer is not None
            method = resource.add_method(
                http_method,
                apigw.LambdaIntegration(
                    function.function,
                    proxy=True,
                    request_parameters={header: f"context.authorizer.{contract.CONTEXT_TENANT}"},
                ),
                authorizer=self._lambda_authorizer,
                authorization_type=apigw.AuthorizationType.CUSTOM,
                api_key_required=bool(self._usage_plans),
            )
        elif self._kind == "gateway_jwt":
            assert self._jwt_authorizer is not None
            method = resource.add_method(
                http_method,
                apigw.LambdaIntegration(
                    function.function,
                    proxy=False,
                    passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                    request_templates={"application/json": _jwt_request_template(self._tenant_claim)},
                    integration_responses=[
                        apigw.IntegrationResponse(
                            status_code="200", response_templates={"application/json": _PROXY_RESPONSE_TEMPLATE}
                        ),
                        apigw.IntegrationResponse(
                            status_code="502",
                            # Any non-empty errorMessage, newlines included (".+" stops at a newline); an
                            # empty one reaches the 200 response, whose template answers 502 without a
                            # statusCode, and the helper turns a crash into a 500 proxy answer anyway.
                            selection_pattern=r"[\s\S]+",
                            response_templates={"application/json": '{"message": "Internal server error"}'},
                        ),
                    ],
                ),
                method_responses=[apigw.MethodResponse(status_code="200"), apigw.MethodResponse(status_code="502")],
                authorization_type=apigw.AuthorizationType.CUSTOM,
            )
            cfn_method = method.node.default_child
            assert isinstance(cfn_method, apigw.CfnMethod)
            cfn_method.add_property_override("AuthorizationType", "JWT")
            cfn_method.add_property_override("AuthorizerId", self._jwt_authorizer.ref)
        else:
            method = resource.add_method(
                http_method,
                apigw.LambdaIntegration(
                    function.function,
                    proxy=True,
                    request_parameters={header: f"method.request.header.{self._client_header}"},
                ),
                authorization_type=apigw.AuthorizationType.IAM,
                request_parameters={f"method.request.header.{self._client_header}": True},
                request_validator=self._validator,
            )
        self._methods.append(method)
        return method

    # ----------------------------------------------------------------------------------------------
    @property
    def api(self) -> apigw.RestApi:
        """The REST API."""
        return self._api

    @property
    def url(self) -> str:
        """The stage URL."""
        return self._api.url

    @property
    def authorizer_kind(self) -> str:
        """``gateway_jwt``, ``lambda`` or ``client_header``: what proves the tenant."""
        return self._kind

    @property
    def authorizer_function(self) -> lambda_.Function | None:
        """The Lambda authorizer's function (``lambda`` only)."""
        return self._authorizer_function

    @property
    def lambda_authorizer(self) -> apigw.RequestAuthorizer | None:
        """The REQUEST authorizer (``lambda`` only)."""
        return self._lambda_authorizer

    @property
    def jwt_authorizer(self) -> apigw.CfnAuthorizer | None:
        """API Gateway's JWT authorizer (``gateway_jwt`` only)."""
        return self._jwt_authorizer

    @property
    def registry(self) -> TenantRegistry:
        """The tenant registry."""
        return self._registry

    @property
    def usage_plans(self) -> Mapping[str, apigw.UsagePlan]:
        """Usage plans by plan name (``plans``)."""
        return dict(self._usage_plans)

    @property
    def access_log_group(self) -> logs.ILogGroup:
        """The API's access-log group."""
        return self._access_log_group

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        """The alarms created with ``alarm_topic``: API 5xx answers, authorizer failures."""
        return list(self._alarms)

    @property
    def methods(self) -> list[apigw.Method]:
        """Every method added with ``add_function``."""
        return list(self._methods)


#: After ``$util.escapeJavaScript``: it escapes ``'`` as ``\'``, which JSON does not allow (AWS's own
#: proxy-like templates undo it the same way); every other escape it makes (``\"``, ``\\``, ``\/``,
#: ``\n``, ``\uXXXX``) is valid JSON.
UNESCAPE_APOSTROPHE = r""".replaceAll("\\'", "'")"""


def _json_string(expression: str) -> str:
    """VTL giving ``expression`` as the inside of a JSON string."""
    return f"$util.escapeJavaScript({expression}){UNESCAPE_APOSTROPHE}"


def _jwt_request_template(claim: str) -> str:
    """The request template of ``gateway_jwt`` integrations: sets the tenant header from the claim's JSON text
    (``$util.parseJson`` turns ``"acme"`` into ``acme``) and builds the Lambda proxy event the handler expects.
    Every client-controlled value goes through :func:`_json_string`, so the event is valid JSON whatever
    quotes, apostrophes, backslashes, control or non-ASCII characters the request holds."""

    def pairs(kind: str) -> str:
        return (
            f'{{#foreach($name in $params.{kind}.keySet())"{_json_string("$name")}": '
            f'"{_json_string(f"$params.{kind}.get($name)")}"#if($foreach.hasNext),#end#end}}'
        )

    return "\n".join(
        [
            f"#set($tenant = $util.parseJson($context.authorizer.claims.{claim}))",
            f"#set($context.requestOverride.header.{contract.TENANT_HEADER} = $tenant)",
            "#set($params = $input.params())",
            "{",
            '  "resource": "$context.resourcePath",',
            f'  "path": "{_json_string("$context.path")}",',
            '  "httpMethod": "$context.httpMethod",',
            f'  "headers": {pairs("header")},',
            f'  "queryStringParameters": {pairs("querystring")},',
            f'  "pathParameters": {pairs("path")},',
            f'  "body": #if("$!input.body" != "")"{_json_string("$input.body")}"#{{else}}null#end,',
            '  "isBase64Encoded": false,',
            '  "requestContext": {"requestId": "$context.requestId", "stage": "$context.stage", '
            '"apiId": "$context.apiId", '
            f'"authorizer": {{"claims": {{"{claim}": $context.authorizer.claims.{claim}}}}}}}',
            "}",
        ]
    )


#: The response template of ``gateway_jwt`` integrations: a Lambda proxy answer mapped back to HTTP. An
#: answer without a ``statusCode`` (a crash's ``errorMessage``/``errorType`` with an empty message, which no
#: selection pattern matches) is a 502, as a Lambda proxy integration answers a malformed response.
_PROXY_RESPONSE_TEMPLATE = "\n".join(
    [
        "#set($answer = $input.path('$'))",
        '#if("$!answer.statusCode" != "")#set($context.responseOverride.status = $answer.statusCode)',
        '#if("$!answer.headers.get(\'Content-Type\')" != "")'
        "#set($context.responseOverride.header.Content-Type = $answer.headers.get('Content-Type'))#end",
        "$!answer.body",
        '#{else}#set($context.responseOverride.status = 502){"message": "Internal server error"}#end',
    ]
)
