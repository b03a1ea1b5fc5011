"""What the tenancy tests share besides fixtures: the test issuer, keys, claims and authorizer events.

(A module of its own, not ``conftest``: ``from conftest import`` finds whichever conftest pytest imported
last when several test folders are collected in one run.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://issuer.example.com/"
AUDIENCE = "orders-api"
REGISTRY = "tenant-registry"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/orders"
STAGE_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*"
HMAC_SECRET = b"0123456789abcdef0123456789abcdef-hs256-test-secret"


@dataclass
class Keys:
    """Signing keys generated for the session, and their public JWKS documents."""

    rsa: rsa.RSAPrivateKey
    rsa_other: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    hmac: bytes

    def rsa_jwks(self, kid: str = "rsa-1") -> dict[str, Any]:
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        return {"keys": [{**data, "kid": kid, "use": "sig", "alg": "RS256"}]}

    def ec_jwks(self, kid: str = "ec-1") -> dict[str, Any]:
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        return {"keys": [{**data, "kid": kid, "use": "sig"}]}

    def hmac_jwks(self, kid: str = "hs-1") -> dict[str, Any]:
        return {"keys": [json.loads(jwt.algorithms.HMACAlgorithm.to_jwk(self.hmac)) | {"kid": kid}]}


def claims(tenant: Any = "acme", **overrides: Any) -> dict[str, Any]:
    """Valid claims for ``tenant``; ``overrides`` replace (or, with value ``...``, remove) claims."""
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300}
    if tenant is not ...:
        base["tenant_id"] = tenant
    for name, value in overrides.items():
        if value is ...:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def request_event(
    token: str | None, *, tenant_header: str | None = None, method_arn: str = METHOD_ARN
) -> dict[str, Any]:
    """A REQUEST authorizer event as API Gateway sends it."""
    headers: dict[str, str] = {"Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if tenant_header is not None:
        headers["X-Amz-Tenant-Id"] = tenant_header
    return {
        "type": "REQUEST",
        "methodArn": method_arn,
        "resource": "/orders",
        "path": "/orders",
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": {"stage": "prod", "apiId": "abc123"},
    }
