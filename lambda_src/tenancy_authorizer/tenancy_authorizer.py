"""Lambda REQUEST authorizer of ``TenantApi``: proves who the tenant is before a PER_TENANT function runs.

For each request it
1. takes the bearer token from the ``Authorization`` header (at most 8 KiB);
2. checks the token's header: ``alg`` must be exactly the pinned algorithm (RS256, ES256 or HS256;
   ``none`` and every other algorithm are refused before any key is touched, so an HS256 token can
   never be checked against an RSA public key), and ``kid`` must name a key of the configured set;
3. verifies the signature and the claims with PyJWT: ``exp``, ``iss`` and ``aud`` are required,
   ``nbf`` and ``iat`` are honoured, with a small leeway for clock skew; ``exp``, ``nbf`` and ``iat``
   must be JSON numbers (RFC 7519 NumericDate: PyJWT also takes ``"1700000000"`` and ``true``);
4. takes the tenant claim (``tenant_id`` by default, top level), which must match the strict tenant
   pattern (1-64 of ``A-Z a-z 0-9 _ -``, starting with a letter or digit);
5. refuses a request whose client-sent ``X-Amz-Tenant-Id`` header names another tenant;
6. reads the tenant in the registry table (status ``ACTIVE``; ``SUSPENDED`` and unknown tenants are
   refused) with a strongly consistent read (a suspension just written is never read stale and then
   cached), through a short per-environment cache;
7. answers an IAM policy for the whole stage (so that API Gateway's result cache, keyed by the token,
   is right for every method) with ``tenantId`` and ``plan`` in the context, and the tenant's
   usage-plan key when the registry holds one.

Every bad request gets a clean ``Deny`` policy (API Gateway answers 403), never an exception or a
5xx, and the reason is logged as one JSON line (the reason never reaches the caller).

A failure of our dependencies (Secrets Manager, the JWKS endpoint, DynamoDB) is not the caller's
fault and must not be remembered as theirs: the handler raises :class:`DependencyFailure` (logged),
so API Gateway answers 500 and caches nothing, and the next request tries again. A cached ``Deny``
would lock a valid token out for the whole authorizer cache TTL. Each dependency is bounded in time
(botocore timeouts and one retry; 3 s in all for the JWKS fetch).

Keys come from a JWKS URL (``TENANCY_KEY_SOURCE=jwks_url``; refreshed every 10 minutes) or from a
Secrets Manager secret holding a JWKS document or a single JWK (``TENANCY_KEY_SOURCE=secret``;
refreshed every 5 minutes; RSA/EC public keys, or ``oct`` keys of at least 32 bytes for HS256), never
from a literal in the environment. Only keys of the pinned algorithm's type (and curve) are loaded: a
key of another type is never tried. An RSA key of fewer than ``MIN_RSA_KEY_BITS`` bits, or a key PyJWT
cannot load, is left out of the set (logged): a token naming it is an unknown ``kid`` (Deny), and the
set's other keys keep working. A private RSA/EC JWK (the signing key itself) is used by its public half
(logged: PyJWT would load the private key, which cannot verify, and every valid token would fail).
A failed refresh keeps the last good keys for up to ``STALE_GRACE_SECONDS`` past their refresh time,
and refetches are backed off: at most one attempt per ``RETRY_BACKOFF_SECONDS`` after a failure, and at
most one per ``UNKNOWN_KID_REFRESH_SECONDS`` for an unknown ``kid`` (a stream of forged ``kid`` values
never turns into a stream of fetches).

Decisions are cached in the execution environment by the token's SHA-256 for at most
``TENANCY_DECISION_CACHE_SECONDS`` (never beyond the token's ``exp``, never longer than the registry
cache), on top of API Gateway's own result cache. The names shared with the constructs are copies
of ``cdk_serverless_patterns.tenancy.contract`` (this asset ships without the library).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import jwt
from botocore.config import Config

# --- copies of the contract (tests/tenancy/test_tenancy_contract.py holds them equal) ------------------
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
TENANT_HEADER = "X-Amz-Tenant-Id"
DEFAULT_TENANT_CLAIM = "tenant_id"
TABLE_KEY = "tenantId"
STATUS_ATTRIBUTE = "status"
PLAN_ATTRIBUTE = "plan"
USAGE_KEY_ATTRIBUTE = "usageKey"
ACTIVE = "ACTIVE"
CONTEXT_TENANT = "tenantId"
CONTEXT_PLAN = "plan"
LAMBDA_AUTHORIZER_ALGORITHMS = ("RS256", "ES256", "HS256")
KEY_SOURCE_JWKS_URL = "jwks_url"
KEY_SOURCE_SECRET = "secret"
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

#: Key type each pinned algorithm needs (and curve, for EC): a key of another type is never used.
KEY_TYPES = {"RS256": ("RSA", None), "ES256": ("EC", "P-256"), "HS256": ("oct", None)}
MAX_TOKEN_CHARS = 8192
MIN_HMAC_KEY_BYTES = 32
#: RSA keys shorter than this are never used (NIST SP 800-131A: 2048 bits since 2013).
MIN_RSA_KEY_BITS = 2048
#: Private members of RSA and EC JWKs (RFC 7518 6.2.2, 6.3.2): never needed to verify.
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})
#: Claims that must be JSON numbers when present (``exp`` is also required).
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")
JWKS_TTL_SECONDS = 600.0
SECRET_TTL_SECONDS = 300.0
UNKNOWN_KID_REFRESH_SECONDS = 60.0
#: After a failed key-set fetch, the next attempt waits this long (requests meanwhile use the stale keys).
RETRY_BACKOFF_SECONDS = 10.0
#: How long past their refresh time the last good keys still verify tokens while refreshes fail.
STALE_GRACE_SECONDS = 3600.0
JWKS_TIMEOUT_SECONDS = 3.0
MAX_JWKS_BYTES = 65536
MAX_CACHE_ENTRIES = 10000
#: botocore: a hung DynamoDB or Secrets Manager costs at most about 2 x (1 + 2) seconds.
AWS_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1, "mode": "standard"})

logger = logging.getLogger("tenancy_authorizer")
logger.setLevel(logging.INFO)


class Denied(Exception):
    """A request that must be refused; ``reason`` is logged, never returned to the caller."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class ConfigurationError(Exception):
    """The authorizer's environment is wrong: every request is denied until it is fixed."""


class DependencyFailure(Exception):
    """Secrets Manager, the JWKS endpoint or the registry failed: raised out of the handler, so API Gateway
    answers 500 and caches no decision (a bad token is a :class:`Denied`, never this)."""


def _short(value: Any, limit: int = 80) -> str:
    """A hostile value as it may appear in a log line: repr'd (escapes control characters), bounded."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


@dataclass(frozen=True)
class Settings:
    """The authorizer's configuration, read from the environment the construct sets."""

    issuer: str
    audiences: tuple[str, ...]
    algorithm: str
    key_source: str
    jwks_url: str | None
    secret_arn: str | None
    registry_table: str
    tenant_claim: str
    leeway_seconds: float
    registry_cache_seconds: float
    decision_cache_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        problems = []

        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                problems.append(f"{name} is not set")
            return value

        algorithm = need(ENV_ALGORITHM)
        if algorithm and algorithm not in LAMBDA_AUTHORIZER_ALGORITHMS:
            problems.append(f"{ENV_ALGORITHM}={algorithm!r} is not one of {', '.join(LAMBDA_AUTHORIZER_ALGORITHMS)}")
        key_source = need(ENV_KEY_SOURCE)
        jwks_url = env.get(ENV_JWKS_URL) or None
        secret_arn = env.get(ENV_KEY_SECRET_ARN) or None
        if key_source == KEY_SOURCE_JWKS_URL:
            if not jwks_url or not jwks_url.startswith("https://"):
                problems.append(f"{ENV_JWKS_URL} must be an https:// URL")
            if algorithm == "HS256":
                problems.append("HS256 keys are secret: they come from Secrets Manager, never from a JWKS URL")
        elif key_source == KEY_SOURCE_SECRET:
            if not secret_arn:
                problems.append(f"{ENV_KEY_SECRET_ARN} is not set")
        elif key_source:
            problems.append(f"{ENV_KEY_SOURCE}={key_source!r} is not {KEY_SOURCE_JWKS_URL} or {KEY_SOURCE_SECRET}")
        audiences = tuple(a.strip() for a in need(ENV_AUDIENCE).split(",") if a.strip())

        def seconds(name: str, default: float, maximum: float) -> float:
            raw = env.get(name, "")
            try:
                value = float(raw) if raw else default
            except ValueError:
                problems.append(f"{name}={raw!r} is not a number")
                return default
            if not 0 <= value <= maximum:
                problems.append(f"{name}={raw!r} must be between 0 and {maximum:g}")
            return value

        settings = cls(
            issuer=need(ENV_ISSUER),
            audiences=audiences,
            algorithm=algorithm,
            key_source=key_source,
            jwks_url=jwks_url,
            secret_arn=secret_arn,
            registry_table=need(ENV_REGISTRY_TABLE),
            tenant_claim=env.get(ENV_TENANT_CLAIM) or DEFAULT_TENANT_CLAIM,
            leeway_seconds=seconds(ENV_LEEWAY_SECONDS, 30, 300),
            registry_cache_seconds=seconds(ENV_REGISTRY_CACHE_SECONDS, 30, 300),
            decision_cache_seconds=seconds(ENV_DECISION_CACHE_SECONDS, 30, 300),
        )
        if problems:
            raise ConfigurationError("; ".join(problems))
        return settings


class TtlCache:
    """A small thread-safe cache with per-entry expiry and a bounded size (oldest entries go first)."""

    def __init__(self, max_entries: int = MAX_CACHE_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            if entry[0] <= self._clock():
                del self._entries[key]
                return False, None
            return True, entry[1]

    def put(self, key: str, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A JWKS URL is fetched as configured: a redirect (perhaps to http, or elsewhere) is an error."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def fetch_jwks_url(url: str) -> dict[str, Any]:
    """The JWKS document at ``url``: https only, no redirects, at most 64 KiB, within 3 seconds in all.

    Socket timeouts bound each connect and read, not their sum (a server trickling a byte just under the
    timeout would hold a request for minutes): the fetch runs on a worker thread and the caller waits
    ``JWKS_TIMEOUT_SECONDS`` at most. A fetch still running then is abandoned (its own socket timeouts and
    the size limit end it)."""
    if not url.startswith("https://"):
        raise ValueError("the JWKS URL must be https")
    limit = JWKS_TIMEOUT_SECONDS
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["document"] = _fetch_jwks_document(url, limit)
        except BaseException as error:  # handed to the caller
            outcome["error"] = error

    worker = threading.Thread(target=work, name="jwks-fetch", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise TimeoutError(f"the JWKS URL took longer than {limit:g} seconds")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["document"]  # type: ignore[no-any-return]


def _fetch_jwks_document(url: str, limit: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with _OPENER.open(request, timeout=limit) as response:
        if response.status != 200:
            raise ValueError(f"the JWKS URL answered {response.status}")
        body = b""
        while len(body) <= MAX_JWKS_BYTES:  # the whole read is bounded, not only each socket read
            if time.monotonic() > deadline:
                raise TimeoutError(f"the JWKS URL took longer than {limit:g} seconds")
            chunk = response.read(8192)
            if not chunk:
                break
            body += chunk
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"the JWKS document is larger than {MAX_JWKS_BYTES} bytes")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("the JWKS document is not a JSON object")
    return document


class KeySet:
    """Verification keys by ``kid``, from a JWKS URL or a Secrets Manager secret, refreshed on a schedule."""

    def __init__(
        self,
        settings: Settings,
        *,
        secrets_client: Any = None,
        fetch_url: Callable[[str], dict[str, Any]] = fetch_jwks_url,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._secrets = secrets_client
        self._fetch_url = fetch_url
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._loaded_at: float | None = None  # of the last good keys
        self._attempted_at: float | None = None  # of the last fetch, good or failed
        self._failure: str | None = None  # why the last fetch failed, if it did
        self._lock = threading.Lock()

    def _load(self) -> dict[str | None, jwt.PyJWK]:
        settings = self._settings
        if settings.key_source == KEY_SOURCE_SECRET:
            if self._secrets is None:
                self._secrets = boto3.client("secretsmanager", config=AWS_CONFIG)
            value = self._secrets.get_secret_value(SecretId=settings.secret_arn)
            document = json.loads(value.get("SecretString") or "null")
        else:
            document = self._fetch_url(str(settings.jwks_url))
        if isinstance(document, dict) and "kty" in document and "keys" not in document:
            document = {"keys": [document]}  # one JWK (as Secrets Manager can generate it) is a set of one
        keys_data = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys_data, list) or not keys_data:
            raise ValueError("the key set holds no keys (expected a JWKS document {'keys': [...]} or one JWK)")
        wanted_kty, wanted_curve = KEY_TYPES[settings.algorithm]
        keys: dict[str | None, jwt.PyJWK] = {}
        for data in keys_data:
            if not isinstance(data, dict) or data.get("kty") != wanted_kty:
                continue  # another algorithm's key: never usable with the pinned algorithm
            if wanted_curve and data.get("crv") != wanted_curve:
                continue
            if data.get("alg") not in (None, settings.algorithm) or data.get("use") not in (None, "sig"):
                continue
            if wanted_kty != "oct" and PRIVATE_JWK_MEMBERS & set(data):
                # A signing (private) JWK: PyJWT would load the private key, which cannot verify (every valid
                # token would crash the check). Only its public half is used; the secret should not hold it.
                _skipped_key(data, "holds private key material: only its public half is used", level=logging.WARNING)
                data = {name: value for name, value in data.items() if name not in PRIVATE_JWK_MEMBERS}
            try:
                key = jwt.PyJWK(data, algorithm=settings.algorithm)
            except jwt.PyJWTError as error:  # one broken key never takes the whole set down
                _skipped_key(data, f"cannot be loaded ({type(error).__name__})")
                continue
            if wanted_kty == "oct" and len(key.key) < MIN_HMAC_KEY_BYTES:
                raise ValueError(f"an HS256 key must hold at least {MIN_HMAC_KEY_BYTES} bytes")
            bits = getattr(key.key, "key_size", None)
            if wanted_kty == "RSA" and (not isinstance(bits, int) or bits < MIN_RSA_KEY_BITS):
                _skipped_key(data, f"an RSA key of {bits} bits (at least {MIN_RSA_KEY_BITS} are needed)")
                continue
            keys[data.get("kid")] = key
        if not keys:
            raise ValueError(f"the key set holds no {settings.algorithm} key")
        return keys

    def key(self, kid: str | None) -> jwt.PyJWK:
        """The key for ``kid`` (a set of one key also serves a token without ``kid``).

        Raises :class:`Denied` for a ``kid`` the (fresh or stale-but-usable) key set does not hold, and
        :class:`DependencyFailure` when no usable keys can be had (never fetched, or stale past the grace).
        """
        now = self._clock()
        ttl = SECRET_TTL_SECONDS if self._settings.key_source == KEY_SOURCE_SECRET else JWKS_TTL_SECONDS
        with self._lock:
            if self._loaded_at is None or now - self._loaded_at >= ttl:
                self._refresh(now, backoff=RETRY_BACKOFF_SECONDS)
            if self._loaded_at is None or now - self._loaded_at >= ttl + STALE_GRACE_SECONDS:
                raise DependencyFailure(f"no usable keys: {self._failure or 'never loaded'}")
            found = self._find(kid)
            if found is None:
                attempted = self._attempted_at != now
                if self._refresh(now, backoff=UNKNOWN_KID_REFRESH_SECONDS):
                    found = self._find(kid)  # a rotated key set
                elif attempted and self._attempted_at == now:
                    # The refetch failed: whether the kid is real cannot be known now; a 500 is not cached,
                    # a Deny would lock a freshly rotated token out (later unknown kids wait for the back-off).
                    raise DependencyFailure(f"unknown key id and the key set refresh failed: {self._failure}")
        if found is None:
            raise Denied("unknown key id", kid=_short(kid))
        return found

    def _refresh(self, now: float, *, backoff: float) -> bool:
        """Fetches the key set unless the last attempt is younger than ``backoff``; whether it fetched and
        succeeded. A failure keeps the last good keys (the caller decides whether they are still usable)."""
        if self._attempted_at is not None and now - self._attempted_at < backoff:
            return False
        self._attempted_at = now
        try:
            keys = self._load()
        except Exception as error:
            self._failure = f"{type(error).__name__}: {str(error)[:200]}"
            logger.error(
                json.dumps(
                    {
                        "event": "key set refresh failed",
                        "error": type(error).__name__,
                        "keptStaleKeys": bool(self._keys),
                        "retryInSeconds": RETRY_BACKOFF_SECONDS,
                    }
                )
            )
            return False
        self._keys, self._loaded_at, self._failure = keys, now, None
        return True

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)


def _skipped_key(data: Mapping[str, Any], why: str, *, level: int = logging.ERROR) -> None:
    event = "key left out of the key set" if level >= logging.ERROR else "key set warning"
    logger.log(level, json.dumps({"event": event, "kid": _short(data.get("kid")), "why": why}))


class Registry:
    """Tenant items of the registry table, through a short cache (unknown tenants are cached too)."""

    def __init__(self, settings: Settings, *, table: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._table = table
        self._cache = TtlCache(clock=clock)

    def tenant(self, tenant_id: str) -> dict[str, Any] | None:
        hit, item = self._cache.get(tenant_id)
        if hit:
            return item  # type: ignore[no-any-return]
        if self._table is None:
            self._table = boto3.resource("dynamodb", config=AWS_CONFIG).Table(self._settings.registry_table)
        # Strongly consistent: an eventually consistent read just after a suspension may return the old
        # ACTIVE item, which the cache would then keep (and the decision cache after it).
        response = self._table.get_item(Key={TABLE_KEY: tenant_id}, ConsistentRead=True)
        item = response.get("Item")
        self._cache.put(tenant_id, item, self._settings.registry_cache_seconds)
        return item  # type: ignore[no-any-return]


def _header(event: Mapping[str, Any], name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive) in a REQUEST authorizer event."""
    wanted = name.lower()
    values: list[str] = []
    multi = event.get("multiValueHeaders")
    if isinstance(multi, dict):
        for key, items in multi.items():
            if isinstance(key, str) and key.lower() == wanted and isinstance(items, list):
                values += [v for v in items if isinstance(v, str)]
    if not values:
        single = event.get("headers")
        if isinstance(single, dict):
            values += [
                v for k, v in single.items() if isinstance(k, str) and k.lower() == wanted and isinstance(v, str)
            ]
    return values


def bearer_token(event: Mapping[str, Any]) -> str:
    """The token of ``Authorization: Bearer <token>`` (or a TOKEN authorizer's ``authorizationToken``)."""
    raw: Any = event.get("authorizationToken")
    if raw is None:
        found = _header(event, "Authorization")
        if len(found) != 1:
            raise Denied("expected exactly one Authorization header", count=len(found))
        raw = found[0]
    if not isinstance(raw, str):
        raise Denied("the Authorization header is not text")
    scheme, _, token = raw.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Denied("the Authorization header is not 'Bearer <token>'")
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise Denied("the token is too long", chars=len(token))
    return token


def stage_resource(method_arn: Any) -> str:
    """``arn:aws:execute-api:<region>:<account>:<api>/<stage>/*``: every method of the stage.

    API Gateway caches the policy by token and reuses it for other methods: a policy naming only this
    method would deny the next. A malformed ARN gives ``"*"`` (only ever used in a Deny).
    """
    if not isinstance(method_arn, str) or not method_arn.startswith("arn:"):
        return "*"
    parts = method_arn.split(":", 5)
    if len(parts) != 6:
        return "*"
    path = parts[5].split("/")
    if len(path) < 2 or not path[0] or not path[1]:
        return "*"
    return ":".join(parts[:5]) + f":{path[0]}/{path[1]}/*"


def policy(effect: str, principal: str, resource: str, context: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway authorizer answer."""
    answer: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context is not None:
        answer["context"] = context
    return answer


@dataclass(frozen=True)
class Grant:
    """What a valid token of an active tenant earns: cached by token."""

    tenant_id: str
    plan: str
    usage_key: str | None
    expires_at: float  # epoch seconds of the token's exp


class Authorizer:
    """The decision: verify, check the tenant, allow or deny. One per execution environment."""

    def __init__(
        self,
        settings: Settings,
        *,
        keys: KeySet | None = None,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.keys = keys or KeySet(settings)
        self.registry = registry or Registry(settings)
        self._clock = clock
        self._decisions = TtlCache(clock=monotonic)

    def decide(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The policy for one authorizer event; never raises for bad input, raises :class:`DependencyFailure`
        when a dependency failed."""
        resource = stage_resource(event.get("methodArn"))
        try:
            grant = self._grant(event)
        except Denied as denied:
            logger.warning(json.dumps({"decision": "deny", "reason": denied.reason, **denied.details}, default=str))
            return policy("Deny", "denied", resource)
        if resource == "*":
            logger.warning(
                json.dumps({"decision": "deny", "reason": "malformed methodArn", "tenantId": grant.tenant_id})
            )
            return policy("Deny", "denied", resource)
        context = {CONTEXT_TENANT: grant.tenant_id, CONTEXT_PLAN: grant.plan}
        answer = policy("Allow", grant.tenant_id, resource, context)
        if grant.usage_key:
            answer["usageIdentifierKey"] = grant.usage_key
        logger.info(json.dumps({"decision": "allow", "tenantId": grant.tenant_id, "plan": grant.plan}))
        return answer

    def _grant(self, event: Mapping[str, Any]) -> Grant:
        if not isinstance(event, Mapping):
            raise Denied("the event is not an object")
        token = bearer_token(event)
        cache_key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        hit, cached = self._decisions.get(cache_key)
        if hit and isinstance(cached, Grant) and cached.expires_at > self._clock() - self.settings.leeway_seconds:
            grant = cached
        else:
            grant = self._verify(token)
            ttl = min(
                self.settings.decision_cache_seconds,
                self.settings.registry_cache_seconds,
                grant.expires_at + self.settings.leeway_seconds - self._clock(),
            )
            self._decisions.put(cache_key, grant, ttl)
        self._check_client_header(event, grant.tenant_id)
        return grant

    def _verify(self, token: str) -> Grant:
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise Denied("malformed token", error=type(error).__name__) from None
        alg = header.get("alg")
        if alg != settings.algorithm:  # also refuses "none" and any algorithm confusion
            raise Denied("algorithm not allowed", alg=_short(alg), expected=settings.algorithm)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Denied("malformed key id", kid=_short(kid))
        key = self.keys.key(kid)  # Denied (unknown kid) or DependencyFailure (no usable keys)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[settings.algorithm],
                audience=list(settings.audiences),
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise Denied("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Denied("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise Denied("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise Denied("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise Denied("bad signature") from None
        except jwt.MissingRequiredClaimError as error:
            raise Denied("missing required claim", claim=error.claim) from None
        except jwt.PyJWTError as error:
            raise Denied("invalid token", error=type(error).__name__) from None
        except (OverflowError, ValueError, TypeError) as error:  # e.g. "exp": 1e999 (PyJWT's int() overflows)
            raise Denied("invalid token", error=type(error).__name__) from None
        for name in NUMERIC_DATE_CLAIMS:
            value = claims.get(name)
            if name in claims and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not -1e15 < value < 1e15  # also NaN and infinities
            ):
                raise Denied("malformed time claim", claim=name, value=_short(value))
        tenant = claims.get(settings.tenant_claim)
        if not isinstance(tenant, str) or not TENANT_ID_PATTERN.fullmatch(tenant):
            raise Denied("malformed tenant claim", claim=settings.tenant_claim, value=_short(tenant))
        try:
            item = self.registry.tenant(tenant)
        except Exception as error:  # DynamoDB failed: a 500, never a Deny cached against a valid token
            raise DependencyFailure(f"registry unavailable: {type(error).__name__}") from error
        if item is None:
            raise Denied("unknown tenant", tenantId=tenant)
        status = item.get(STATUS_ATTRIBUTE)
        if status != ACTIVE:
            raise Denied("tenant not active", tenantId=tenant, status=_short(status))
        plan = item.get(PLAN_ATTRIBUTE)
        usage_key = item.get(USAGE_KEY_ATTRIBUTE)
        return Grant(
            tenant_id=tenant,
            plan=plan if isinstance(plan, str) else "",
            usage_key=usage_key if isinstance(usage_key, str) and usage_key else None,
            expires_at=float(claims["exp"]),
        )

    def _check_client_header(self, event: Mapping[str, Any], tenant: str) -> None:
        sent = _header(event, TENANT_HEADER)
        if any(value != tenant for value in sent):
            raise Denied("client tenant header disagrees with the token", tenantId=tenant, sent=_short(sent))


_AUTHORIZER: Authorizer | None = None
_INIT_LOCK = threading.Lock()


def _authorizer() -> Authorizer:
    global _AUTHORIZER
    with _INIT_LOCK:
        if _AUTHORIZER is None:
            _AUTHORIZER = Authorizer(Settings.from_env())
        return _AUTHORIZER


def reset() -> None:
    """Forgets the configured authorizer (tests change the environment between cases)."""
    global _AUTHORIZER
    with _INIT_LOCK:
        _AUTHORIZER = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: a policy for every event, Deny for anything wrong with the request; raises
    :class:`DependencyFailure` (API Gateway answers 500 and caches nothing) when a dependency failed."""
    resource = stage_resource(event.get("methodArn") if isinstance(event, dict) else None)
    try:
        return _authorizer().decide(event)
    except DependencyFailure as error:
        logger.error(json.dumps({"decision": "error", "reason": "dependency failed", "error": str(error)}))
        raise
    except ConfigurationError as error:
        logger.error(json.dumps({"decision": "deny", "reason": "authorizer misconfigured", "error": str(error)}))
    except Exception as error:  # never a 5xx: anything unexpected is a logged Deny
        logger.exception(json.dumps({"decision": "deny", "reason": "internal error", "error": type(error).__name__}))
    return policy("Deny", "denied", resource)
