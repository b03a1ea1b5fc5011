"""Sample-only stand-in for an identity provider: mints HS256 tokens for a tenant with the key in Secrets Manager.

Invoked only through IAM (no URL, no API), by the integration test and the demo, so that they can
call the sample API as a tenant would. A real deployment gets its tokens from its identity provider.
Minting needs no library (verification, in the authorizer, uses PyJWT): header and claims are
base64url JSON, the signature an HMAC-SHA256 over them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from typing import Any

import boto3

_SECRETS = boto3.client("secretsmanager")
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``{"tenant": "acme"}`` -> ``{"tenant": "acme", "token": "<jwt>"}`` valid for ``ttlSeconds`` (default 300)."""
    tenant = event.get("tenant") if isinstance(event, dict) else None
    if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
        return {"error": "tenant must be a tenant id"}
    ttl = event.get("ttlSeconds", 300)
    ttl = ttl if isinstance(ttl, int) and 1 <= ttl <= 3600 else 300
    document = json.loads(_SECRETS.get_secret_value(SecretId=os.environ["SIGNING_KEY_SECRET_ARN"])["SecretString"])
    key = document["keys"][0] if "keys" in document else document  # a JWKS, or one JWK
    secret = base64.urlsafe_b64decode(key["k"] + "=" * (-len(key["k"]) % 4))
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": key["kid"]}
    claims = {
        "iss": os.environ["ISSUER"],
        "aud": os.environ["AUDIENCE"],
        "sub": f"sample-user@{tenant}",
        "tenant_id": tenant,
        "iat": now,
        "exp": now + ttl,
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    return {"tenant": tenant, "token": f"{signing_input}.{signature}"}
