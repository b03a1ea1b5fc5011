"""The names the tenant-isolation pattern's parts must agree on, without the CDK.

``TenantIsolatedFunction`` and ``TenantApi`` (the constructs), the Lambda authorizer
(``lambda_src/tenancy_authorizer``), the function-side helper (``lambda_src/tenancy_runtime``) and
the tests read and write the same registry items, authorizer context and environment. The runtime
code ships alone and keeps its own copies; ``tests/tenancy/test_tenancy_contract.py`` asserts they
equal these.
"""

from __future__ import annotations

import re

# --- tenants -----------------------------------------------------------------------------------
#: What a tenant id may be: 1-64 of letters, digits, ``_`` and ``-``, starting with a letter or a
#: digit. Stricter than Lambda's ``X-Amz-Tenant-Id`` (1-256 of ``[a-zA-Z0-9._:/=+-@ ]``): no dots,
#: slashes or spaces, so a tenant id is also a safe file name, log field and metric dimension.
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: The header Lambda reads the tenant of a PER_TENANT invocation from.
TENANT_HEADER = "X-Amz-Tenant-Id"
#: The token claim holding the tenant id, unless the construct is told another (top-level claims only).
DEFAULT_TENANT_CLAIM = "tenant_id"

# --- the tenant registry: one item per tenant -----------------------------------------------------
#: Partition key (String) of the registry table.
TABLE_KEY = "tenantId"
STATUS_ATTRIBUTE = "status"
PLAN_ATTRIBUTE = "plan"
#: API key value of the tenant's usage plan (per-tenant throttling and quotas), optional.
USAGE_KEY_ATTRIBUTE = "usageKey"
ACTIVE = "ACTIVE"
SUSPENDED = "SUSPENDED"
TENANT_STATUSES = (ACTIVE, SUSPENDED)

# --- what the Lambda authorizer puts in the request context ----------------------------------------
#: ``context.authorizer.tenantId``: the integration maps it into ``X-Amz-Tenant-Id``.
CONTEXT_TENANT = "tenantId"
CONTEXT_PLAN = "plan"

# --- token verification -------------------------------------------------------------------------------
#: Algorithms the Lambda authorizer can be pinned to (one per authorizer; never ``none``).
LAMBDA_AUTHORIZER_ALGORITHMS = ("RS256", "ES256", "HS256")
#: Algorithms API Gateway's own JWT authorizer accepts.
GATEWAY_JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
#: Where the Lambda authorizer takes its verification keys from.
KEY_SOURCE_JWKS_URL = "jwks_url"
KEY_SOURCE_SECRET = "secret"

# --- observability ------------------------------------------------------------------------------------
METRIC_NAMESPACE = "CdkServerlessPatterns/Tenancy"
METRIC_DIMENSION = "TenantId"

# --- environment variables the constructs set ----------------------------------------------------------
ENV_REGISTRY_TABLE = "TENANCY_REGISTRY_TABLE"
ENV_REGISTRY_CACHE_SECONDS = "TENANCY_REGISTRY_CACHE_SECONDS"
ENV_ISSUER = "TENANCY_ISSUER"
ENV_AUDIENCE = "TENANCY_AUDIENCE"
ENV_ALGORITHM = "TENANCY_ALGORITHM"
ENV_KEY_SOURCE = "TENANCY_KEY_SOURCE"
ENV_JWKS_URL = "TENANCY_JWKS_URL"
ENV_KEY_SECRET_ARN = "TENANCY_KEY_SECRET_ARN"
ENV_TENANT_CLAIM = "TENANCY_TENANT_CLAIM"
ENV_LEEWAY_SECONDS = "TENANCY_LEEWAY_SECONDS"
ENV_DECISION_CACHE_SECONDS = "TENANCY_DECISION_CACHE_SECONDS"
#: The function-side helper's own: where the tenant claim is in the request context
#: (``lambda`` for ``authorizer.tenantId``, ``jwt`` for ``authorizer.claims.<claim>``).
ENV_AUTHORIZER_KIND = "TENANCY_AUTHORIZER_KIND"
ENV_METRIC_NAMESPACE = "TENANCY_METRIC_NAMESPACE"
#: The user's handler (``module.function``) that the helper's entry point ``tenancy_runtime.handler`` runs.
ENV_HANDLER = "TENANCY_HANDLER"
AUTHORIZER_KIND_LAMBDA = "lambda"
AUTHORIZER_KIND_JWT = "jwt"
AUTHORIZER_KIND_CLIENT_HEADER = "client_header"

# --- Lambda assets -------------------------------------------------------------------------------------
AUTHORIZER_ASSET = "tenancy_authorizer"
RUNTIME_ASSET = "tenancy_runtime"
