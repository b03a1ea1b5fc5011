"""The Lambda authorizer against moto (registry, Secrets Manager) with keys generated in the test.

Every bad case must be a clean Deny policy (API Gateway answers 403), never an exception or a 5xx,
and its reason must be logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tenancy_support import AUDIENCE, ISSUER, METHOD_ARN, REGISTRY, STAGE_ARN, Keys, claims, request_event

from cdk_serverless_patterns.testing.moto import load_runtime_module

authorizer_module = load_runtime_module("tenancy_authorizer", "tenancy_authorizer")


def env(**overrides: str) -> dict[str, str]:
    base = {
        "TENANCY_ISSUER": ISSUER,
        "TENANCY_AUDIENCE": AUDIENCE,
        "TENANCY_ALGORITHM": "RS256",
        "TENANCY_KEY_SOURCE": "secret",
        "TENANCY_KEY_SECRET_ARN": "tenancy/signing-keys",
        "TENANCY_REGISTRY_TABLE": REGISTRY,
        "TENANCY_LEEWAY_SECONDS": "5",
        "TENANCY_REGISTRY_CACHE_SECONDS": "30",
        "TENANCY_DECISION_CACHE_SECONDS": "30",
    }
    base.update(overrides)
    return base


class Harness:
    """An authorizer wired to moto's Secrets Manager and the registry table, with its secret set."""

    def __init__(self, registry: Any, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
        self.registry = registry
        self.keys = keys
        self.monkeypatch = monkeypatch
        self.secrets = boto3.client("secretsmanager", region_name="us-east-1")

    def make(self, jwks: dict[str, Any] | None = None, **overrides: str) -> Any:
        self.secrets.create_secret(Name="tenancy/signing-keys", SecretString=json.dumps(jwks or self.keys.rsa_jwks()))
        for name, value in env(**overrides).items():
            self.monkeypatch.setenv(name, value)
        authorizer_module.reset()
        return authorizer_module

    def rs256(self, tenant: Any = "acme", *, kid: str = "rsa-1", key: Any = None, **overrides: Any) -> str:
        return jwt.encode(claims(tenant, **overrides), key or self.keys.rsa, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def harness(registry: Any, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield Harness(registry, keys, monkeypatch)
    authorizer_module.reset()


def decide(module: Any, event: Any) -> dict[str, Any]:
    answer: dict[str, Any] = module.handler(event, None)
    return answer


def assert_denied(answer: dict[str, Any], caplog: pytest.LogCaptureFixture, reason: str) -> None:
    statement = answer["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "execute-api:Invoke"
    assert "context" not in answer and "usageIdentifierKey" not in answer
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tenancy_authorizer"]
    assert any(entry.get("decision") == "deny" and entry.get("reason") == reason for entry in logged), logged


# ----- allowed --------------------------------------------------------------------------------------------
def test_valid_rs256_token_allows_the_whole_stage_with_the_tenant_in_the_context(harness: Harness) -> None:
    module = harness.make()
    answer = decide(module, request_event(harness.rs256("acme")))
    assert answer["principalId"] == "acme"
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": STAGE_ARN}
    ]
    assert answer["context"] == {"tenantId": "acme", "plan": "gold"}
    assert answer["usageIdentifierKey"] == "acme-usage-key-0001"


def test_valid_es256_token_from_a_jwks_url(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return harness.keys.ec_jwks()

    monkeypatch.setattr(authorizer_module, "fetch_jwks_url", fetch)
    for name, value in env(
        TENANCY_ALGORITHM="ES256", TENANCY_KEY_SOURCE="jwks_url", TENANCY_JWKS_URL="https://issuer.example.com/jwks"
    ).items():
        monkeypatch.setenv(name, value)
    authorizer_module.reset()
    settings_ = authorizer_module.Settings.from_env()
    auth = authorizer_module.Authorizer(settings_, keys=authorizer_module.KeySet(settings_, fetch_url=fetch))
    token = jwt.encode(claims("globex"), harness.keys.ec, algorithm="ES256", headers={"kid": "ec-1"})
    answer = auth.decide(request_event(token))
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert answer["context"] == {"tenantId": "globex", "plan": "basic"}
    assert "usageIdentifierKey" not in answer
    assert fetched == ["https://issuer.example.com/jwks"]


def test_valid_hs256_token_with_the_secret_from_secrets_manager(harness: Harness) -> None:
    module = harness.make(harness.keys.hmac_jwks(), TENANCY_ALGORITHM="HS256")
    token = jwt.encode(claims("globex"), harness.keys.hmac, algorithm="HS256", headers={"kid": "hs-1"})
    assert decide(module, request_event(token))["context"]["tenantId"] == "globex"


def test_the_same_tenant_in_the_client_header_is_allowed(harness: Harness) -> None:
    module = harness.make()
    answer = decide(module, request_event(harness.rs256("acme"), tenant_header="acme"))
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_clock_skew_within_the_leeway_is_accepted(harness: Harness) -> None:
    module = harness.make()
    now = int(time.time())
    token = harness.rs256("acme", exp=now - 2, nbf=now + 2, iat=now + 2)  # leeway is 5 s
    assert decide(module, request_event(token))["policyDocument"]["Statement"][0]["Effect"] == "Allow"


# ----- denied: the token ---------------------------------------------------------------------------------
def test_expired_token(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    now = int(time.time())
    assert_denied(decide(module, request_event(harness.rs256(exp=now - 60, iat=now - 400))), caplog, "token expired")


def test_token_not_yet_valid(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    token = harness.rs256(nbf=int(time.time()) + 120)
    assert_denied(decide(module, request_event(token)), caplog, "token not yet valid")


def test_wrong_signature(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    token = harness.rs256(key=harness.keys.rsa_other)  # same kid, another key
    assert_denied(decide(module, request_event(token)), caplog, "bad signature")


def test_tampered_payload(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    header, _, signature = harness.rs256("acme").split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims("globex")).encode()).rstrip(b"=").decode()
    assert_denied(decide(module, request_event(f"{header}.{forged}.{signature}")), caplog, "bad signature")


def test_wrong_issuer(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    assert_denied(decide(module, request_event(harness.rs256(iss="https://evil.example.com/"))), caplog, "wrong issuer")


def test_wrong_audience(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    assert_denied(decide(module, request_event(harness.rs256(aud="another-api"))), caplog, "wrong audience")


@pytest.mark.parametrize("claim", ["exp", "iss", "aud"])
def test_required_claims(harness: Harness, caplog: pytest.LogCaptureFixture, claim: str) -> None:
    module = harness.make()
    token = harness.rs256(**{claim: ...})
    assert_denied(decide(module, request_event(token)), caplog, "missing required claim")


def test_alg_none(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    token = jwt.encode(claims("acme"), None, algorithm="none")
    assert_denied(decide(module, request_event(token)), caplog, "algorithm not allowed")


def test_hand_made_alg_none_with_an_empty_signature(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    token = f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'rsa-1'})}.{part(claims('acme'))}."
    assert_denied(decide(module, request_event(token)), caplog, "algorithm not allowed")


def test_hs256_token_against_an_rs256_key(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """Algorithm confusion: an HS256 token 'signed' with the RSA public key as the HMAC secret."""
    module = harness.make()
    public_pem = harness.keys.rsa.public_key().public_bytes(
        encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def part(value: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}) + b"." + part(claims("acme"))
    mac = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    token = (signing_input + b"." + mac).decode()
    assert_denied(decide(module, request_event(token)), caplog, "algorithm not allowed")


def test_unknown_kid(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    assert_denied(decide(module, request_event(harness.rs256(kid="rsa-9"))), caplog, "unknown key id")


def test_a_key_of_another_type_in_the_set_is_never_used(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """An ES256-pinned authorizer whose secret also holds an RSA key: an RS256 token is refused by alg,
    and an ES256 token naming the RSA key's kid finds no key."""
    jwks = {"keys": harness.keys.ec_jwks()["keys"] + harness.keys.rsa_jwks()["keys"]}
    module = harness.make(jwks, TENANCY_ALGORITHM="ES256")
    assert_denied(decide(module, request_event(harness.rs256())), caplog, "algorithm not allowed")
    token = jwt.encode(claims("acme"), harness.keys.ec, algorithm="ES256", headers={"kid": "rsa-1"})
    assert_denied(decide(module, request_event(token)), caplog, "unknown key id")


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer not.a.jwt", "Bearer a.b", "Bearer ...", "x" * 9000],
)
def test_malformed_authorization_headers(harness: Harness, header: str | None) -> None:
    module = harness.make()
    event = request_event(None)
    if header is not None:
        event["headers"]["Authorization"] = header
        event["multiValueHeaders"]["Authorization"] = [header]
    answer = decide(module, event)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_two_authorization_headers(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    event = request_event(harness.rs256("acme"))
    event["multiValueHeaders"]["Authorization"].append(f"Bearer {harness.rs256('globex')}")
    assert_denied(decide(module, event), caplog, "expected exactly one Authorization header")


# ----- denied: the tenant ----------------------------------------------------------------------------------
def test_unknown_tenant(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    assert_denied(decide(module, request_event(harness.rs256("umbrella"))), caplog, "unknown tenant")


def test_suspended_tenant(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    assert_denied(decide(module, request_event(harness.rs256("initech"))), caplog, "tenant not active")


def test_token_for_tenant_a_with_tenant_b_in_the_header(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make()
    event = request_event(harness.rs256("acme"), tenant_header="globex")
    assert_denied(decide(module, event), caplog, "client tenant header disagrees with the token")
    # and the same token, cached as allowed a moment ago, is still refused with the wrong header
    assert decide(module, request_event(harness.rs256("acme")))["context"]["tenantId"] == "acme"
    assert_denied(decide(module, event), caplog, "client tenant header disagrees with the token")


@pytest.mark.parametrize("tenant", [None, 42, ["acme"], {"id": "acme"}, "", "../etc", "acme/x", "a" * 65, "ac me"])
def test_malformed_tenant_claims(harness: Harness, caplog: pytest.LogCaptureFixture, tenant: Any) -> None:
    module = harness.make()
    token = harness.rs256(... if tenant is None else tenant)
    assert_denied(decide(module, request_event(token)), caplog, "malformed tenant claim")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tenant=st.one_of(
        st.text(min_size=0, max_size=300),
        st.text(alphabet=st.sampled_from("./\\:%@ \x00\n\t-_aZ9é\u202e"), min_size=1, max_size=80),
        st.sampled_from(
            ["..", "../../tmp", "acme\x00", "acme\n", "ACME", "a" * 64, "a" * 257, "acme;drop", "\u0430cme"]
        ),
    )
)
def test_hostile_tenant_ids_are_denied_cleanly(harness: Harness, tenant: str) -> None:
    """Any tenant claim that is not a registered active tenant is a Deny, never an exception."""
    if not harness.secrets.list_secrets()["SecretList"]:
        harness.make()
    module = authorizer_module
    answer = decide(module, request_event(harness.rs256(tenant)))
    allowed = answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert allowed == (tenant in {"acme", "globex"})
    if allowed:
        assert answer["context"]["tenantId"] == tenant


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.text(max_size=200), method_arn=st.one_of(st.none(), st.text(max_size=120), st.just(METHOD_ARN)))
def test_hostile_tenant_headers_and_method_arns(harness: Harness, header: str, method_arn: str | None) -> None:
    if not harness.secrets.list_secrets()["SecretList"]:
        harness.make()
    event = request_event(harness.rs256("acme"), tenant_header=header)
    event["methodArn"] = method_arn
    answer = decide(authorizer_module, event)
    effect = answer["policyDocument"]["Statement"][0]["Effect"]
    assert effect == ("Allow" if header == "acme" and method_arn == METHOD_ARN else "Deny")


@pytest.mark.parametrize("event", [None, [], "token", 42, {}, {"headers": None}, {"headers": {"Authorization": 7}}])
def test_junk_events_are_denied(harness: Harness, event: Any) -> None:
    module = harness.make()
    answer = decide(module, event)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"


# ----- failures of dependencies and configuration ------------------------------------------------------------
def assert_dependency_failure(module: Any, event: Any, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    """The handler raises (API Gateway answers 500 and caches no decision) and logs why."""
    with pytest.raises(authorizer_module.DependencyFailure, match=reason):
        module.handler(event, None)
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tenancy_authorizer"]
    assert any(entry.get("decision") == "error" and reason in entry.get("error", "") for entry in logged), logged


def test_registry_unavailable_is_an_error_not_a_cached_deny(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make(TENANCY_REGISTRY_TABLE="no-such-table")
    assert_dependency_failure(module, request_event(harness.rs256("acme")), caplog, "registry unavailable")


def test_key_secret_unavailable_is_an_error_not_a_cached_deny(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    module = harness.make(TENANCY_KEY_SECRET_ARN="no-such-secret")
    assert_dependency_failure(module, request_event(harness.rs256("acme")), caplog, "no usable keys")


def test_a_bad_token_stays_a_deny_while_a_dependency_fails(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    module = harness.make(TENANCY_REGISTRY_TABLE="no-such-table")
    assert_denied(decide(module, request_event(harness.rs256("acme", exp=int(time.time()) - 600))), caplog,
                  "token expired")  # fmt: skip
    assert_denied(decide(module, request_event("not-a-jwt")), caplog, "malformed token")


def test_a_hanging_registry_is_an_error_within_a_bound(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB accepts the connection and never answers: botocore's read timeout ends it, and the
    handler raises (500, nothing cached) instead of hanging or denying."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # never answers
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        module = harness.make()
        settings_ = authorizer_module.Settings.from_env()
        table = boto3.resource(
            "dynamodb",
            region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
            config=authorizer_module.AWS_CONFIG,
        ).Table(REGISTRY)
        monkeypatch.setattr(
            module, "_AUTHORIZER", module.Authorizer(settings_, registry=module.Registry(settings_, table=table))
        )
        started = time.monotonic()
        assert_dependency_failure(module, request_event(harness.rs256("acme")), caplog, "registry unavailable")
        assert time.monotonic() - started < 15  # read_timeout 2 s x 1 attempt, plus the key fetch
    finally:
        stop.set()
        thread.join(5)
        for connection in accepted:
            connection.close()
        listener.close()


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # minting the short-keyed token
def test_short_hmac_secret_is_refused(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """A key set that cannot be used is the authorizer's failure (500 and an alarm), not the caller's."""
    jwks = {"keys": [json.loads(jwt.algorithms.HMACAlgorithm.to_jwk(b"short")) | {"kid": "hs-1"}]}
    module = harness.make(jwks, TENANCY_ALGORITHM="HS256")
    token = jwt.encode(claims("acme"), b"short", algorithm="HS256", headers={"kid": "hs-1"})
    assert_dependency_failure(module, request_event(token), caplog, "at least 32 bytes")


@pytest.mark.parametrize(
    "overrides",
    [
        {"TENANCY_ALGORITHM": "none"},
        {"TENANCY_ALGORITHM": "HS256", "TENANCY_KEY_SOURCE": "jwks_url", "TENANCY_JWKS_URL": "https://x/jwks"},
        {"TENANCY_KEY_SOURCE": "jwks_url", "TENANCY_JWKS_URL": "http://insecure/jwks"},
        {"TENANCY_ISSUER": ""},
        {"TENANCY_LEEWAY_SECONDS": "3600"},
    ],
)
def test_misconfiguration_denies_everything(
    harness: Harness, caplog: pytest.LogCaptureFixture, overrides: dict[str, str]
) -> None:
    module = harness.make(**overrides)
    assert_denied(decide(module, request_event(harness.rs256("acme"))), caplog, "authorizer misconfigured")


# ----- caches --------------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_table(table: Any) -> tuple[Any, list[str]]:
    calls: list[str] = []

    class Counting:
        def get_item(self, **kwargs: Any) -> Any:
            calls.append(kwargs["Key"]["tenantId"])
            return table.get_item(**kwargs)

    return Counting(), calls


def test_registry_cache_is_short_and_a_suspension_takes_effect_after_it(harness: Harness) -> None:
    harness.make()
    clock = Clock()
    settings_ = authorizer_module.Settings.from_env()
    table, calls = counting_table(harness.registry)
    auth = authorizer_module.Authorizer(
        settings_,
        registry=authorizer_module.Registry(settings_, table=table, clock=clock),
        monotonic=clock,
    )
    first, second = harness.rs256("acme"), harness.rs256("acme", sub="user-2")
    assert auth.decide(request_event(first))["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert auth.decide(request_event(second))["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert calls == ["acme"]  # the second token verified, but the registry answered from cache
    harness.registry.update_item(
        Key={"tenantId": "acme"}, UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "SUSPENDED"},
    )  # fmt: skip
    clock.now += 29
    assert auth.decide(request_event(first))["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    clock.now += 2  # past the 30 s registry and decision caches
    assert auth.decide(request_event(first))["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert calls == ["acme", "acme"]


def test_decision_cache_skips_verification_but_not_expiry(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.make()
    settings_ = authorizer_module.Settings.from_env()
    auth = authorizer_module.Authorizer(settings_)
    verified: list[str] = []
    real = auth._verify

    def counting(token: str) -> Any:
        verified.append(token)
        return real(token)

    monkeypatch.setattr(auth, "_verify", counting)
    token = harness.rs256("acme")
    for _ in range(3):
        assert auth.decide(request_event(token))["context"]["tenantId"] == "acme"
    assert len(verified) == 1
    now = int(time.time())
    short = harness.rs256("acme", exp=now + 1, iat=now - 10)
    auth.decide(request_event(short))
    assert len(verified) == 2

    def expired(token: str) -> Any:  # what PyJWT answers a minute later
        verified.append(token)
        raise authorizer_module.Denied("token expired")

    monkeypatch.setattr(auth, "_verify", expired)
    auth._clock = lambda: now + 60
    answer = auth.decide(request_event(short))
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"  # the cached grant did not outlive its token
    assert len(verified) == 3


def test_unknown_kid_refreshes_the_key_set_at_most_once_a_minute(harness: Harness) -> None:
    harness.make()
    settings_ = authorizer_module.Settings.from_env()
    clock = Clock()
    loads: list[int] = []
    documents = [harness.keys.rsa_jwks("rsa-1")]

    class Secrets:
        def get_secret_value(self, **_: Any) -> dict[str, str]:
            loads.append(1)
            return {"SecretString": json.dumps(documents[-1])}

    key_set = authorizer_module.KeySet(settings_, secrets_client=Secrets(), clock=clock)
    auth = authorizer_module.Authorizer(settings_, keys=key_set)
    rotated = harness.rs256("acme", kid="rsa-2")
    assert auth.decide(request_event(harness.rs256("acme")))["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert auth.decide(request_event(rotated))["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert len(loads) == 1  # loaded less than a minute ago: no refresh storm
    documents.append(harness.keys.rsa_jwks("rsa-2"))
    clock.now += 61
    assert auth.decide(request_event(rotated))["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert len(loads) == 2


class FlakySecrets:
    """A Secrets Manager client whose answers the test scripts: a document, or an exception."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.failing = False
        self.calls = 0

    def get_secret_value(self, **_: Any) -> dict[str, str]:
        self.calls += 1
        if self.failing:
            raise ConnectionError("Secrets Manager is down")
        return {"SecretString": json.dumps(self.document)}


def test_a_failed_refresh_keeps_the_last_good_keys_and_backs_off(harness: Harness) -> None:
    harness.make()
    settings_ = authorizer_module.Settings.from_env()
    clock = Clock()
    secrets = FlakySecrets(harness.keys.rsa_jwks("rsa-1"))
    auth = authorizer_module.Authorizer(
        settings_, keys=authorizer_module.KeySet(settings_, secrets_client=secrets, clock=clock)
    )
    allow = harness.rs256("acme")
    assert auth.decide(request_event(allow))["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    secrets.failing = True
    clock.now += authorizer_module.SECRET_TTL_SECONDS + 1  # due for a refresh, which fails
    for n in range(5):  # fresh tokens (no decision cache): all verified with the stale keys
        token = harness.rs256("acme", sub=f"user-{n}")
        assert auth.decide(request_event(token))["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert secrets.calls == 2  # one failed attempt, then backed off
    clock.now += authorizer_module.RETRY_BACKOFF_SECONDS
    assert auth.decide(request_event(harness.rs256("acme", sub="x")))["context"]["tenantId"] == "acme"
    assert secrets.calls == 3  # one retry per back-off period
    secrets.failing = False
    clock.now += authorizer_module.RETRY_BACKOFF_SECONDS
    assert auth.decide(request_event(harness.rs256("acme", sub="y")))["context"]["tenantId"] == "acme"
    assert secrets.calls == 4  # refreshed: fresh keys again


def test_stale_keys_expire_after_the_grace_period(harness: Harness) -> None:
    harness.make()
    settings_ = authorizer_module.Settings.from_env()
    clock = Clock()
    secrets = FlakySecrets(harness.keys.rsa_jwks("rsa-1"))
    auth = authorizer_module.Authorizer(
        settings_, keys=authorizer_module.KeySet(settings_, secrets_client=secrets, clock=clock)
    )
    assert auth.decide(request_event(harness.rs256("acme")))["context"]["tenantId"] == "acme"
    secrets.failing = True
    clock.now += authorizer_module.SECRET_TTL_SECONDS + authorizer_module.STALE_GRACE_SECONDS
    with pytest.raises(authorizer_module.DependencyFailure, match="no usable keys"):
        auth.decide(request_event(harness.rs256("acme", sub="late")))


def test_unknown_kids_do_not_refetch_on_every_request_when_the_fetch_fails(harness: Harness) -> None:
    harness.make()
    settings_ = authorizer_module.Settings.from_env()
    clock = Clock()
    secrets = FlakySecrets(harness.keys.rsa_jwks("rsa-1"))
    auth = authorizer_module.Authorizer(
        settings_, keys=authorizer_module.KeySet(settings_, secrets_client=secrets, clock=clock)
    )
    assert auth.decide(request_event(harness.rs256("acme")))["context"]["tenantId"] == "acme"
    secrets.failing = True
    clock.now += authorizer_module.UNKNOWN_KID_REFRESH_SECONDS
    with pytest.raises(authorizer_module.DependencyFailure):  # the one refetch failed: unknowable, not cached
        auth.decide(request_event(harness.rs256("acme", kid="forged-first")))
    for n in range(20):
        clock.now += 1
        forged = harness.rs256("acme", kid=f"forged-{n}")
        assert auth.decide(request_event(forged))["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert secrets.calls == 2  # the load, and one refetch for the first unknown kid
    assert auth.decide(request_event(harness.rs256("acme", sub="ok")))["context"]["tenantId"] == "acme"


def test_stage_resource_forms() -> None:
    assert authorizer_module.stage_resource(METHOD_ARN) == STAGE_ARN
    assert authorizer_module.stage_resource("arn:aws:execute-api:us-east-1:1:api/stage/POST/a/b") == (
        "arn:aws:execute-api:us-east-1:1:api/stage/*"
    )
    for junk in (None, "", "*", "arn:aws:execute-api", "arn:aws:execute-api:r:a:/", 7):
        assert authorizer_module.stage_resource(junk) == "*"


def test_handler_log_lines_are_json(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tenancy_authorizer")
    module = harness.make()
    decide(module, request_event(harness.rs256("acme")))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tenancy_authorizer"]
    assert {"decision": "allow", "tenantId": "acme", "plan": "gold"} in lines


class FakeResponse:
    def __init__(self, status: int, chunks: list[bytes], delay: float = 0.0) -> None:
        self.status = status
        self.chunks = list(chunks)
        self.delay = delay

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def read(self, size: int) -> bytes:
        if self.delay:
            time.sleep(self.delay)  # a trickling server, not a timing assertion
        return self.chunks.pop(0) if self.chunks else b""


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (FakeResponse(200, [b"x" * 8192] * 9), "larger than"),
        (FakeResponse(404, [b"{}"]), "answered 404"),
        (FakeResponse(200, [b"[1, 2]"]), "not a JSON object"),
        (FakeResponse(200, [b"{"] * 100, delay=0.05), "longer than 0.2 seconds"),
    ],
)
def test_jwks_fetch_is_bounded(monkeypatch: pytest.MonkeyPatch, response: FakeResponse, error: str) -> None:
    monkeypatch.setattr(authorizer_module, "JWKS_TIMEOUT_SECONDS", 0.2 if response.delay else 3.0)
    monkeypatch.setattr(authorizer_module._OPENER, "open", lambda request, timeout: response)
    with pytest.raises((ValueError, TimeoutError), match=error):
        authorizer_module.fetch_jwks_url("https://issuer.example.com/jwks")


def test_jwks_fetch_bounds_the_total_time_not_each_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that trickles, each read just under the socket timeout, or hangs in one read: the caller
    still gets its answer within JWKS_TIMEOUT_SECONDS."""
    import threading

    release = threading.Event()

    class Hanging(FakeResponse):
        def read(self, size: int) -> bytes:
            release.wait(30)  # one read that outlasts the whole budget
            return b""

    monkeypatch.setattr(authorizer_module, "JWKS_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(authorizer_module._OPENER, "open", lambda request, timeout: Hanging(200, []))
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"longer than 0\.3 seconds"):
            authorizer_module.fetch_jwks_url("https://issuer.example.com/jwks")
        assert time.monotonic() - started < 5
    finally:
        release.set()


def test_jwks_fetch_refuses_http_and_redirects() -> None:
    with pytest.raises(ValueError, match="https"):
        authorizer_module.fetch_jwks_url("http://issuer.example.com/jwks")
    handler = authorizer_module._NoRedirects()
    assert handler.redirect_request(None, None, 302, "Found", {}, "http://evil.example.com/") is None


# ----- second review: keys, time claims, consistent registry reads ------------------------------------------
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # minting the weak-keyed token
def test_an_rsa_key_under_2048_bits_is_never_used(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """A 1024-bit key in the set is left out (logged); the set's good key keeps working."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(weak.public_key())) | {"kid": "weak", "alg": "RS256"}
    jwks = harness.keys.rsa_jwks("rsa-1")
    module = harness.make({"keys": [weak_jwk, *jwks["keys"]]})
    assert_denied(decide(module, request_event(harness.rs256("acme", kid="weak", key=weak))), caplog, "unknown key id")
    assert decide(module, request_event(harness.rs256("acme")))["context"]["tenantId"] == "acme"
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tenancy_authorizer"]
    assert any(e.get("event") == "key left out of the key set" and "1024 bits" in e.get("why", "") for e in logged)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_a_set_of_only_weak_rsa_keys_is_the_authorizers_failure(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(weak.public_key())) | {"kid": "weak"}
    module = harness.make({"keys": [weak_jwk]})
    token = harness.rs256("acme", kid="weak", key=weak)
    assert_dependency_failure(module, request_event(token), caplog, "no usable keys")


def test_a_broken_key_in_the_set_does_not_take_the_others_down(harness: Harness) -> None:
    broken = {"kty": "RSA", "kid": "broken", "n": "not*base64", "e": "AQAB"}
    module = harness.make({"keys": [broken, *harness.keys.rsa_jwks("rsa-1")["keys"]]})
    assert decide(module, request_event(harness.rs256("acme")))["context"]["tenantId"] == "acme"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", "9999999999"),  # PyJWT takes int("9999999999")
        ("exp", 1e300),  # never expires
        ("exp", 10**400),  # float() overflows: was an 'internal error'
        ("nbf", "0"),
        ("iat", "1"),
    ],
    ids=["exp-string", "exp-1e300", "exp-10**400", "nbf-string", "iat-string"],
)
def test_time_claims_must_be_json_numbers(
    harness: Harness, caplog: pytest.LogCaptureFixture, claim: str, value: Any
) -> None:
    module = harness.make()
    header = {"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}
    payload = claims("acme") | {claim: value}

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(payload).encode())
    signature = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(signing_input, harness.keys.rsa)
    token = (signing_input + b"." + b64(signature)).decode()
    answer = decide(module, request_event(token))
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tenancy_authorizer"]
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert not any(e.get("reason") == "internal error" for e in logged), logged
    assert any(e.get("reason") in ("malformed time claim", "invalid token") for e in logged), logged


def test_registry_reads_are_strongly_consistent(harness: Harness) -> None:
    """An eventually consistent read just after ``tenant suspend`` could return ACTIVE and be cached."""
    harness.make()
    settings_ = authorizer_module.Settings.from_env()
    reads: list[dict[str, Any]] = []

    class Recording:
        def get_item(self, **kwargs: Any) -> Any:
            reads.append(kwargs)
            return harness.registry.get_item(**kwargs)

    auth = authorizer_module.Authorizer(settings_, registry=authorizer_module.Registry(settings_, table=Recording()))
    assert auth.decide(request_event(harness.rs256("acme")))["context"]["tenantId"] == "acme"
    assert reads == [{"Key": {"tenantId": "acme"}, "ConsistentRead": True}]


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_a_private_jwk_in_the_secret_verifies_by_its_public_half(
    harness: Harness, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """A team storing its signing JWK (with ``d``) in the secret: PyJWT loads a private key, whose verify() does
    not exist, so every valid token was an 'internal error' Deny (cached by API Gateway)."""
    if kind == "rsa":
        private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(harness.keys.rsa)) | {"kid": "rsa-1"}
        module = harness.make({"keys": [private]})
        token = harness.rs256("acme")
    else:
        private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(harness.keys.ec)) | {"kid": "ec-1"}
        module = harness.make(private, TENANCY_ALGORITHM="ES256")
        token = jwt.encode(claims("acme"), harness.keys.ec, algorithm="ES256", headers={"kid": "ec-1"})
    assert "d" in private
    answer = decide(module, request_event(token))
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow", answer
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tenancy_authorizer"]
    assert any("private key material" in e.get("why", "") for e in logged), logged
