"""Defence in depth inside a tenant-isolated function: the function-side helper of the tenancy pattern.

Shipped as a Lambda layer (``TenantIsolatedFunction`` adds it; ``python/`` lands on ``sys.path`` at
``/opt/python``) and importable without the CDK or the library::

    from tenancy_runtime import current, tenant_handler

    @tenant_handler
    def handler(event, context):
        scope = current()
        scope.cache["greeting"] = f"hello {scope.tenant_id}"
        (scope.tmp_dir / "notes.txt").write_text("only this tenant's")
        return {"statusCode": 200, "body": scope.cache["greeting"]}

For every invocation :func:`tenant_handler`
- reads the tenant Lambda routed the invocation for (``context.tenant_id``, from ``X-Amz-Tenant-Id``)
  and refuses it unless it matches the strict tenant pattern;
- compares it with the tenant the authorizer proved, in the API Gateway request context
  (``requestContext.authorizer.tenantId`` from the Lambda authorizer, or
  ``requestContext.authorizer.claims.<claim>`` from API Gateway's JWT authorizer), and refuses a
  mismatch or a missing claim: a mapping mistake in the API cannot hand one tenant's request to
  another tenant's environment unnoticed;
- with the JWT authorizer (no Lambda at the edge) checks the tenant registry (status ``ACTIVE``)
  through a short cache;
- puts ``tenantId`` on every log line of the invocation (a logging filter on the root logger; with
  Lambda's JSON log format the field appears in each JSON line), and emits one embedded metric line
  (requests, errors, duration in milliseconds, with the tenant as a dimension);
- gives :func:`current`: a tenant-scoped cache (a dict) and ``/tmp`` directory (mode 0700). An
  execution environment belongs to one tenant; if it ever serves a second tenant (a mapping mistake,
  or a function without PER_TENANT tenancy), the helper logs an error and wipes the first tenant's
  cache and directory before the second tenant's code runs, so nothing crosses.

A refusal is an API Gateway proxy answer ``403 {"message": "Forbidden"}`` for API events, or a
:class:`TenantMismatch` raised for other events; the reason is logged, never returned.

The names shared with the constructs are copies of ``cdk_serverless_patterns.tenancy.contract``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

# --- copies of the contract (tests/tenancy/test_tenancy_contract.py holds them equal) ------------------
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DEFAULT_TENANT_CLAIM = "tenant_id"
TABLE_KEY = "tenantId"
STATUS_ATTRIBUTE = "status"
ACTIVE = "ACTIVE"
CONTEXT_TENANT = "tenantId"
METRIC_NAMESPACE = "CdkServerlessPatterns/Tenancy"
METRIC_DIMENSION = "TenantId"
ENV_REGISTRY_TABLE = "TENANCY_REGISTRY_TABLE"
ENV_REGISTRY_CACHE_SECONDS = "TENANCY_REGISTRY_CACHE_SECONDS"
ENV_TENANT_CLAIM = "TENANCY_TENANT_CLAIM"
ENV_AUTHORIZER_KIND = "TENANCY_AUTHORIZER_KIND"
ENV_METRIC_NAMESPACE = "TENANCY_METRIC_NAMESPACE"
AUTHORIZER_KIND_LAMBDA = "lambda"
AUTHORIZER_KIND_JWT = "jwt"
AUTHORIZER_KIND_CLIENT_HEADER = "client_header"

#: Where the tenant directories live (tests point it elsewhere). Default: the temporary directory,
#: ``/tmp`` in Lambda (``TMPDIR`` where set, as the local emulator sets it per execution environment).
ENV_TMP_ROOT = "TENANCY_TMP_ROOT"
FORBIDDEN = {"statusCode": 403, "headers": {"Content-Type": "application/json"}, "body": '{"message": "Forbidden"}'}

logger = logging.getLogger("tenancy_runtime")
Handler = TypeVar("Handler", bound=Callable[..., Any])


class TenantMismatch(Exception):
    """The invocation's tenant cannot be trusted; raised for non-API events (API events get a 403)."""


@dataclass
class TenantScope:
    """What one tenant may use in this execution environment."""

    tenant_id: str
    tmp_dir: Path
    cache: dict[str, Any] = field(default_factory=dict)


class _State:
    """Per-environment state: the tenant this environment serves, and the scope of the running invocation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scope: TenantScope | None = None
        self.local = threading.local()
        self.registry: dict[str, tuple[float, Mapping[str, Any] | None]] = {}
        self.table: Any = None


_STATE = _State()


def current() -> TenantScope:
    """The scope of the invocation running on this thread (inside a :func:`tenant_handler`)."""
    scope: TenantScope | None = getattr(_STATE.local, "scope", None)
    if scope is None:
        raise RuntimeError("current() is only available inside a function decorated with @tenant_handler")
    return scope


class _TenantFilter(logging.Filter):
    """Adds ``tenantId`` to every record logged while an invocation runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope: TenantScope | None = getattr(_STATE.local, "scope", None)
        if scope is not None and not hasattr(record, "tenantId"):
            record.tenantId = scope.tenant_id
        return True


_FILTER = _TenantFilter()


def _install_log_filter() -> None:
    root = logging.getLogger()
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    if _FILTER not in root.filters:
        root.addFilter(_FILTER)


def _tmp_root() -> Path:
    return Path(os.environ.get(ENV_TMP_ROOT) or tempfile.gettempdir())


def _enter(tenant_id: str) -> TenantScope:
    """The scope of ``tenant_id``; a different tenant than the last one wipes the last one's data first."""
    with _STATE.lock:
        previous = _STATE.scope
        if previous is not None and previous.tenant_id == tenant_id:
            return previous
        if previous is not None:
            logger.error(
                json.dumps(
                    {
                        "event": "execution environment shared by two tenants",
                        "previousTenantId": previous.tenant_id,
                        "tenantId": tenant_id,
                        "action": "wiped the previous tenant's cache and /tmp directory",
                    }
                )
            )
            previous.cache.clear()
            shutil.rmtree(previous.tmp_dir, ignore_errors=True)
        tmp_dir = _tmp_root() / f"tenant-{tenant_id}"
        shutil.rmtree(tmp_dir, ignore_errors=True)  # never inherit a directory of the same name
        tmp_dir.mkdir(mode=0o700, parents=True)
        _STATE.scope = TenantScope(tenant_id=tenant_id, tmp_dir=tmp_dir)
        return _STATE.scope


def _claimed_tenant(event: Any, kind: str, claim: str) -> tuple[bool, Any]:
    """(is this an API Gateway event, the tenant its authorizer proved or None)."""
    if not isinstance(event, Mapping):
        return False, None
    request_context = event.get("requestContext")
    if not isinstance(request_context, Mapping):
        return False, None
    authorizer = request_context.get("authorizer")
    if not isinstance(authorizer, Mapping):
        return True, None
    if kind == AUTHORIZER_KIND_JWT:
        claims = authorizer.get("claims")
        value = claims.get(claim) if isinstance(claims, Mapping) else None
        if isinstance(value, str) and value.startswith('"'):
            try:  # parameter mappings and templates carry claims as JSON text
                value = json.loads(value)
            except ValueError:
                return True, None
        return True, value
    return True, authorizer.get(CONTEXT_TENANT)


def _registry_item(tenant_id: str, ttl: float) -> Mapping[str, Any] | None:
    now = time.monotonic()
    cached = _STATE.registry.get(tenant_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    if _STATE.table is None:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1, "mode": "standard"})
        _STATE.table = boto3.resource("dynamodb", config=config).Table(os.environ[ENV_REGISTRY_TABLE])
    item = _STATE.table.get_item(Key={TABLE_KEY: tenant_id}).get("Item")
    if ttl > 0:
        _STATE.registry[tenant_id] = (now + ttl, item)
    return cast("Mapping[str, Any] | None", item)


def reset() -> None:
    """Forgets the environment's tenant, registry cache and client (tests simulate fresh environments)."""
    with _STATE.lock:
        _STATE.scope = None
        _STATE.registry.clear()
        _STATE.table = None


def _emit_metrics(tenant_id: str, namespace: str, *, error: bool, millis: float) -> None:
    """One CloudWatch embedded-metric-format line: requests, errors and duration for the tenant."""
    print(
        json.dumps(
            {
                "_aws": {
                    "Timestamp": int(time.time() * 1000),
                    "CloudWatchMetrics": [
                        {
                            "Namespace": namespace,
                            "Dimensions": [[METRIC_DIMENSION]],
                            "Metrics": [
                                {"Name": "Requests", "Unit": "Count"},
                                {"Name": "Errors", "Unit": "Count"},
                                {"Name": "Duration", "Unit": "Milliseconds"},
                            ],
                        }
                    ],
                },
                METRIC_DIMENSION: tenant_id,
                "Requests": 1,
                "Errors": int(error),
                "Duration": round(millis, 3),
            }
        ),
        flush=True,
    )


def _refuse(is_api: bool, reason: str, **details: Any) -> dict[str, Any]:
    logger.warning(json.dumps({"decision": "refused", "reason": reason, **details}, default=repr))
    if is_api:
        return dict(FORBIDDEN)
    raise TenantMismatch(reason)


def tenant_handler(
    function: Handler | None = None,
    *,
    registry_check: bool | None = None,
    metrics: bool = True,
) -> Any:
    """Decorates a Lambda handler of a PER_TENANT function (see the module documentation).

    Args:
        registry_check: Check the tenant's status in the registry (``TENANCY_REGISTRY_TABLE``) on
            every invocation, through a cache of ``TENANCY_REGISTRY_CACHE_SECONDS`` (default 30).
            Default: only behind API Gateway's JWT authorizer (``TENANCY_AUTHORIZER_KIND=jwt``): the
            Lambda authorizer has checked it already.
        metrics: Print one embedded-metric line per invocation. Default: True.
    """

    def decorate(inner: Handler) -> Handler:
        @functools.wraps(inner)
        def wrapper(event: Any, context: Any) -> Any:
            _install_log_filter()
            kind = os.environ.get(ENV_AUTHORIZER_KIND, AUTHORIZER_KIND_LAMBDA)
            claim = os.environ.get(ENV_TENANT_CLAIM) or DEFAULT_TENANT_CLAIM
            tenant = getattr(context, "tenant_id", None)
            is_api, claimed = _claimed_tenant(event, kind, claim)
            if not isinstance(tenant, str) or not TENANT_ID_PATTERN.fullmatch(tenant):
                return _refuse(is_api, "invocation without a valid tenant id", tenantId=repr(tenant)[:80])
            if is_api and kind != AUTHORIZER_KIND_CLIENT_HEADER and claimed != tenant:
                return _refuse(
                    is_api, "tenant differs from the authorizer's", tenantId=tenant, claimed=repr(claimed)[:80]
                )
            check = registry_check if registry_check is not None else kind == AUTHORIZER_KIND_JWT
            if check:
                try:
                    ttl = float(os.environ.get(ENV_REGISTRY_CACHE_SECONDS) or 30)
                    item = _registry_item(tenant, ttl)
                except Exception as error:  # fail closed: an unreadable registry admits nobody
                    logger.error(json.dumps({"event": "registry unavailable", "error": type(error).__name__}))
                    return _refuse(is_api, "registry unavailable", tenantId=tenant)
                if item is None or item.get(STATUS_ATTRIBUTE) != ACTIVE:
                    status = None if item is None else item.get(STATUS_ATTRIBUTE)
                    return _refuse(is_api, "tenant not active", tenantId=tenant, status=repr(status)[:40])
            scope = _enter(tenant)
            _STATE.local.scope = scope
            started = time.perf_counter()
            failed = True
            try:
                result = inner(event, context)
                failed = isinstance(result, Mapping) and int(result.get("statusCode") or 200) >= 500
                return result
            finally:
                _STATE.local.scope = None
                if metrics:
                    namespace = os.environ.get(ENV_METRIC_NAMESPACE) or METRIC_NAMESPACE
                    _emit_metrics(tenant, namespace, error=failed, millis=(time.perf_counter() - started) * 1000)

        return cast("Handler", wrapper)

    if function is not None:
        return decorate(function)
    return decorate
