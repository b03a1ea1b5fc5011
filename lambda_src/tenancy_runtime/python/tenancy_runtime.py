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

``TenantIsolatedFunction`` does not rely on the decorator: it sets the function's handler to
:func:`handler` of this module and passes the user's handler in ``TENANCY_HANDLER``, so every
invocation goes through the checks below whether or not the code is decorated (a decorated handler is
not wrapped twice).

For every invocation :func:`tenant_handler`
- reads the tenant Lambda routed the invocation for (``context.tenant_id``, from ``X-Amz-Tenant-Id``)
  and refuses it unless it matches the strict tenant pattern;
- refuses an API event whose client sent an ``X-Amz-Tenant-Id`` header naming another tenant (checked
  on every invocation: API Gateway's authorizer cache means the authorizer does not see every request);
- compares it with the tenant the authorizer proved, in the API Gateway request context
  (``requestContext.authorizer.tenantId`` from the Lambda authorizer, or
  ``requestContext.authorizer.claims.<claim>`` from API Gateway's JWT authorizer), and refuses a
  mismatch or a missing claim: a mapping mistake in the API cannot hand one tenant's request to
  another tenant's environment unnoticed;
- with the JWT authorizer or the client-header opt-in (no Lambda at the edge) checks the tenant
  registry (status ``ACTIVE``, a strongly consistent read) through a short cache;
- puts ``tenantId`` on every log line of the invocation (a logging filter on the root logger; with
  Lambda's JSON log format the field appears in each JSON line), and emits one embedded metric line
  (requests, errors, duration in milliseconds, with the tenant as a dimension);
- gives :func:`current`: a tenant-scoped cache (a dict) and ``/tmp`` directory (mode 0700). An
  execution environment belongs to one tenant; if it ever serves a second tenant (a mapping mistake,
  or a function without PER_TENANT tenancy), the helper logs an error and wipes the first tenant's
  cache and directory before the second tenant's code runs, so nothing crosses.

A refusal is an API Gateway proxy answer ``403 {"message": "Forbidden"}`` for API events, or a
:class:`TenantMismatch` raised for other events; the reason is logged, never returned. Behind API
Gateway's JWT authorizer the integration is not a proxy one: an exception of the handler would reach
API Gateway as an ``errorMessage`` that only a selection pattern turns into an error (an empty message
matches none), so there the helper logs it and answers ``500 {"message": "Internal server error"}``.

The tenant directory is created fresh per tenant: a symbolic link (or anything else) in its place is
removed, never followed, and the directory must resolve inside the temporary root.

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
ENV_HANDLER = "TENANCY_HANDLER"
TENANT_HEADER = "X-Amz-Tenant-Id"
AUTHORIZER_KIND_LAMBDA = "lambda"
AUTHORIZER_KIND_JWT = "jwt"
AUTHORIZER_KIND_CLIENT_HEADER = "client_header"

#: Where the tenant directories live (tests point it elsewhere). Default: the temporary directory,
#: ``/tmp`` in Lambda (``TMPDIR`` where set, as the local emulator sets it per execution environment).
ENV_TMP_ROOT = "TENANCY_TMP_ROOT"
FORBIDDEN = {"statusCode": 403, "headers": {"Content-Type": "application/json"}, "body": '{"message": "Forbidden"}'}
INTERNAL_ERROR = {
    "statusCode": 500,
    "headers": {"Content-Type": "application/json"},
    "body": '{"message": "Internal server error"}',
}

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


def _remove(path: Path) -> None:
    """Removes ``path`` without following it: a symbolic link is unlinked, never its target emptied."""
    try:
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    except FileNotFoundError:
        pass


def _tenant_dir(tenant_id: str) -> Path:
    """A fresh directory of mode 0700 for the tenant, inside the temporary root, never through a link."""
    root = _tmp_root().resolve()
    root.mkdir(parents=True, exist_ok=True)
    tmp_dir = root / f"tenant-{tenant_id}"
    _remove(tmp_dir)  # never inherit a directory (or a link) of the same name
    os.mkdir(tmp_dir, 0o700)  # fails if something re-appeared there: never reuse it
    descriptor = os.open(tmp_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.path.realpath(tmp_dir) != str(tmp_dir) or os.fstat(descriptor).st_uid != os.getuid():
            raise RuntimeError(f"the tenant directory {tmp_dir} escapes the temporary root")
    finally:
        os.close(descriptor)
    return tmp_dir


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
            _remove(previous.tmp_dir)
        _STATE.scope = TenantScope(tenant_id=tenant_id, tmp_dir=_tenant_dir(tenant_id))
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


def _client_tenant_headers(event: Any) -> list[Any]:
    """Every ``X-Amz-Tenant-Id`` value the client sent with an API event (any case, single or multi-value)."""
    values: list[Any] = []
    if not isinstance(event, Mapping):
        return values
    wanted = TENANT_HEADER.lower()
    for field_name in ("headers", "multiValueHeaders"):
        headers = event.get(field_name)
        if not isinstance(headers, Mapping):
            continue
        for name, value in headers.items():
            if isinstance(name, str) and name.lower() == wanted:
                values += value if isinstance(value, list) else [value]
    return values


def _status_code(result: Any) -> int | None:
    """The proxy answer's status code, or None when it has none or it is not a number."""
    if not isinstance(result, Mapping):
        return None
    try:
        return int(result.get("statusCode") or 200)
    except (TypeError, ValueError, OverflowError):
        return None


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
    # Strongly consistent: a suspension just written is never read stale and then cached.
    item = _STATE.table.get_item(Key={TABLE_KEY: tenant_id}, ConsistentRead=True).get("Item")
    if ttl > 0:
        _STATE.registry[tenant_id] = (now + ttl, item)
    return cast("Mapping[str, Any] | None", item)


def reset() -> None:
    """Forgets the environment's tenant, registry cache and client (tests simulate fresh environments)."""
    with _STATE.lock:
        _STATE.scope = None
        _STATE.registry.clear()
        _STATE.table = None
    with _WRAPPED_LOCK:
        _WRAPPED.clear()


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
            Default: behind API Gateway's JWT authorizer and the client-header opt-in
            (``TENANCY_AUTHORIZER_KIND`` ``jwt`` or ``client_header``): only the Lambda authorizer has
            checked it already.
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
            sent = _client_tenant_headers(event) if is_api else []
            if any(value != tenant for value in sent):
                return _refuse(is_api, "client tenant header disagrees", tenantId=tenant, sent=repr(sent)[:80])
            check = (
                registry_check
                if registry_check is not None
                else kind in (AUTHORIZER_KIND_JWT, AUTHORIZER_KIND_CLIENT_HEADER)
            )
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
            outer = getattr(_STATE.local, "scope", None)
            _STATE.local.scope = scope  # per thread: another thread's invocation never sees it
            started = time.perf_counter()
            failed = True
            try:
                try:
                    result = inner(event, context)
                except Exception:
                    if not (is_api and kind == AUTHORIZER_KIND_JWT):
                        raise
                    logger.exception(json.dumps({"event": "handler failed", "tenantId": tenant}))
                    return dict(INTERNAL_ERROR)
                status = _status_code(result)
                if isinstance(result, Mapping) and status is None:
                    logger.error(
                        json.dumps(
                            {"event": "statusCode is not a number", "statusCode": repr(result.get("statusCode"))[:40]}
                        )
                    )
                failed = isinstance(result, Mapping) and (status is None or status >= 500)
                return result
            finally:
                _STATE.local.scope = outer
                if metrics:
                    namespace = os.environ.get(ENV_METRIC_NAMESPACE) or METRIC_NAMESPACE
                    _emit_metrics(tenant, namespace, error=failed, millis=(time.perf_counter() - started) * 1000)

        wrapper.__tenancy_wrapped__ = True  # type: ignore[attr-defined]
        return cast("Handler", wrapper)

    if function is not None:
        return decorate(function)
    return decorate


_WRAPPED: dict[str, Callable[..., Any]] = {}
_WRAPPED_LOCK = threading.Lock()


def _user_handler() -> Callable[..., Any]:
    """The handler named by ``TENANCY_HANDLER`` (``module.function``, the module may be dotted), wrapped by
    :func:`tenant_handler` unless it is decorated already; loaded once per execution environment."""
    name = os.environ.get(ENV_HANDLER, "")
    with _WRAPPED_LOCK:
        found = _WRAPPED.get(name)
        if found is not None:
            return found
        module_name, _, attribute = name.rpartition(".")
        if not module_name or not attribute:
            raise RuntimeError(f"{ENV_HANDLER}={name!r} is not module.function")
        import importlib

        inner = getattr(importlib.import_module(module_name.replace("/", ".")), attribute)
        if not callable(inner):
            raise RuntimeError(f"{ENV_HANDLER}={name!r} is not callable")
        wrapped = inner if getattr(inner, "__tenancy_wrapped__", False) else tenant_handler(inner)
        _WRAPPED[name] = wrapped
        return wrapped  # type: ignore[no-any-return]


def handler(event: Any, context: Any) -> Any:
    """The handler ``TenantIsolatedFunction`` sets: runs the user's handler (``TENANCY_HANDLER``) through
    :func:`tenant_handler`, so the checks never depend on the code remembering the decorator."""
    return _user_handler()(event, context)
