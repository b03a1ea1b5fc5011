#!/usr/bin/env python3
"""Tenancy: the Lambda authorizer's decision from a warm cache vs verifying and reading the registry,
and the function-side helper's overhead per invocation with and without its registry cache.

Two measurements, each against a baseline measured in the same run:

1. Authorizer decision (``Authorizer.decide`` on a REQUEST event with an RS256 token): from the warm
   per-environment decision cache vs the full path every time (signature and claims verified with
   PyJWT, the tenant read from the registry with ``GetItem`` against moto's server on localhost; the
   key set stays loaded, as it does in a warm environment). Beside them, verification with the
   registry answered from its cache. p50 and p99; the DESIGN target is >= 20x faster at p50.
2. Helper overhead (``@tenant_handler`` around a handler that returns at once, JWT-authorizer mode,
   which checks the registry in the function): with the registry cache warm vs a ``GetItem`` on every
   invocation, against the bare handler. Reported as microseconds added per invocation.

Run: ``.venv/bin/python bench/bench_tenancy.py [--decisions N] [--invocations N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambda_src" / "tenancy_authorizer"))
sys.path.insert(0, str(ROOT / "lambda_src" / "tenancy_runtime" / "python"))

os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

ISSUER = "https://issuer.example.com/"
AUDIENCE = "orders-api"
TABLE = "tenant-registry"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/orders"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(call: Callable[[], Any], count: int, warmup: int = 20) -> list[float]:
    """Microseconds per call, ``count`` samples after ``warmup`` calls."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def row(name: str, samples: list[float]) -> None:
    print(f"  {name:<58} p50 {percentile(samples, 50):9.1f} us   p99 {percentile(samples, 99):9.1f} us")


def start_moto() -> tuple[Any, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def create_registry(endpoint: str) -> Any:
    import boto3

    dynamodb = boto3.resource("dynamodb", endpoint_url=endpoint)
    table = dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "tenantId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "tenantId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table.put_item(Item={"tenantId": "acme", "status": "ACTIVE", "plan": "gold"})
    return table


def bench_authorizer(table: Any, count: int) -> float:
    import jwt
    import tenancy_authorizer as auth
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {"keys": [json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1"}]}
    now = int(time.time())
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "tenant_id": "acme", "iat": now, "exp": now + 3600},
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    event = {"type": "REQUEST", "methodArn": METHOD_ARN, "headers": {"Authorization": f"Bearer {token}"}}

    def settings(cache_seconds: float, registry_seconds: float) -> Any:
        return auth.Settings(
            issuer=ISSUER, audiences=(AUDIENCE,), algorithm="RS256", key_source="jwks_url",
            jwks_url="https://issuer.example.com/jwks", secret_arn=None, registry_table=TABLE,
            tenant_claim="tenant_id", leeway_seconds=30, registry_cache_seconds=registry_seconds,
            decision_cache_seconds=cache_seconds,
        )  # fmt: skip

    def authorizer(cache_seconds: float, registry_seconds: float) -> Any:
        chosen = settings(cache_seconds, registry_seconds)
        return auth.Authorizer(
            chosen,
            keys=auth.KeySet(chosen, fetch_url=lambda _url: jwks),
            registry=auth.Registry(chosen, table=table),
        )

    warm, verified, cold = authorizer(300, 300), authorizer(0, 300), authorizer(0, 0)
    for candidate in (warm, verified, cold):
        assert candidate.decide(event)["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    print(f"\n1. Authorizer decision ({count} decisions each, RS256 2048-bit, registry on moto server over HTTP)")
    cold_samples = timed(lambda: cold.decide(event), count)
    verified_samples = timed(lambda: verified.decide(event), count)
    warm_samples = timed(lambda: warm.decide(event), count)
    row("baseline: verify + registry GetItem every time", cold_samples)
    row("verify, registry from its cache", verified_samples)
    row("warm decision cache", warm_samples)
    ratio = statistics.median(cold_samples) / statistics.median(warm_samples)
    print(f"  => warm cache is {ratio:.0f}x faster at p50 than verify + registry (target >= 20x)")
    return ratio


def bench_helper(endpoint: str, count: int) -> None:
    import boto3
    import tenancy_runtime as rt

    os.environ["TENANCY_AUTHORIZER_KIND"] = "jwt"
    os.environ["TENANCY_REGISTRY_TABLE"] = TABLE
    os.environ["TENANCY_TMP_ROOT"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench-tenancy")

    def bare(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": "ok"}

    wrapped = rt.tenant_handler(bare)
    event = {"requestContext": {"authorizer": {"claims": {"tenant_id": "acme"}}}}
    context = SimpleNamespace(tenant_id="acme", aws_request_id="r")
    table = boto3.resource("dynamodb", endpoint_url=endpoint).Table(TABLE)

    def run_with(cache_seconds: str) -> list[float]:
        rt.reset()
        rt._STATE.table = table
        os.environ["TENANCY_REGISTRY_CACHE_SECONDS"] = cache_seconds
        assert wrapped(event, context)["statusCode"] == 200
        return timed(lambda: wrapped(event, context), count)

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the metric lines
        bare_samples = timed(lambda: bare(event, context), count)
        cached = run_with("30")
        uncached = run_with("0")
    print(
        f"\n2. Function-side helper ({count} invocations each, JWT-authorizer mode: registry checked in the function)"
    )
    row("bare handler", bare_samples)
    row("@tenant_handler, registry cache warm", cached)
    row("@tenant_handler, registry GetItem every invocation", uncached)
    base = statistics.median(bare_samples)
    print(
        f"  => the helper adds {statistics.median(cached) - base:.0f} us per invocation with its cache, "
        f"{statistics.median(uncached) - base:.0f} us without it "
        f"({statistics.median(uncached) / statistics.median(cached):.0f}x)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--invocations", type=int, default=300)
    args = parser.parse_args()
    server, endpoint = start_moto()
    try:
        table = create_registry(endpoint)
        bench_authorizer(table, args.decisions)
        bench_helper(endpoint, args.invocations)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
