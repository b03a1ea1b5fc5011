#!/usr/bin/env python3
"""Integration test of the tenancy pattern, for the CDK integ-runner and a real AWS account.

The test case is the tenancy **sample stack** of ``integ/sample_tenancy.py``, unchanged. The
assertions call the deployed API as tenants would:

1. *no token*: ``GET /orders`` without ``Authorization`` is refused by API Gateway (401);
2. *a forged token*: an unsigned (``alg: none``) token naming ``acme`` is denied by the authorizer (403);
3. *a tenant's token*: the sample token issuer mints an HS256 token for ``acme``; ``GET /orders`` with
   it answers 200 with ``"tenant": "acme"``: the authorizer proved the tenant, the integration set
   ``X-Amz-Tenant-Id`` from its context, Lambda ran a PER_TENANT environment of ``acme``, and the
   function-side helper found Lambda's tenant equal to the authorizer's;
4. *an unknown tenant*: a validly signed token for ``umbrella`` (not in the registry) is denied (403).

Run it against an account with ``npx integ-runner --language python --directory integ`` once a
release of the runner reads this aws-cdk-lib's cloud assembly (schema 55; it stops at 53). The unit
tests synthesize it offline, in the tenancy tests' one app (tests/tenancy/test_tenancy_integ_app.py).
"""

from __future__ import annotations

import base64
import json

import aws_cdk as cdk
from aws_cdk.integ_tests_alpha import ExpectedResult, IApiCall, IntegTest, Match
from sample_tenancy import AUDIENCE, ISSUER, TenancySampleStack

SAMPLE_STACK_ID = "IntegServerlessPatternsTenancy"
INTEG_ID = "TenancyInteg"


def unsigned_token(tenant: str) -> str:
    """An ``alg: none`` token with otherwise valid claims (expiring in 2100): must never pass."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": ISSUER, "aud": AUDIENCE, "tenant_id": tenant, "exp": 4102444800}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _orders(integ: IntegTest, stack: TenancySampleStack, headers: dict[str, str] | None) -> IApiCall:
    url = cdk.Fn.join("", [stack.api.url, "orders"])
    return integ.assertions.http_api_call(url, headers=headers) if headers else integ.assertions.http_api_call(url)


def _token_for(integ: IntegTest, stack: TenancySampleStack, tenant: str) -> IApiCall:
    return integ.assertions.invoke_function(
        function_name=stack.token_issuer.function_name, payload=json.dumps({"tenant": tenant})
    ).expect(
        ExpectedResult.object_like(
            {"StatusCode": 200, "Payload": Match.serialized_json(Match.object_like({"tenant": tenant}))}
        )
    )


def add_assertions(integ: IntegTest, stack: TenancySampleStack) -> IApiCall:
    """The four calls above, in order."""
    no_token = _orders(integ, stack, None).expect(ExpectedResult.object_like({"status": 401}))
    forged = _orders(integ, stack, {"Authorization": f"Bearer {unsigned_token('acme')}"}).expect(
        ExpectedResult.object_like({"status": 403})
    )
    acme_token = _token_for(integ, stack, "acme")
    as_acme = _orders(
        integ, stack, {"Authorization": cdk.Fn.join("", ["Bearer ", acme_token.get_att_string("Payload.token")])}
    ).expect(ExpectedResult.object_like({"status": 200, "body": Match.object_like({"tenant": "acme"})}))
    unknown_token = _token_for(integ, stack, "umbrella")
    as_unknown = _orders(
        integ, stack, {"Authorization": cdk.Fn.join("", ["Bearer ", unknown_token.get_att_string("Payload.token")])}
    ).expect(ExpectedResult.object_like({"status": 403}))
    return no_token.next(forged).next(acme_token).next(as_acme).next(unknown_token).next(as_unknown)


def add_integ_test(app: cdk.App) -> tuple[TenancySampleStack, IntegTest]:
    """The test case (the sample stack) and its assertions, in ``app``."""
    # Environment-agnostic, like the assertion stack IntegTest adds (the assertions refer to the test
    # case's resources, which CDK allows only within one environment); the runner picks account and region.
    stack = TenancySampleStack(app, SAMPLE_STACK_ID)
    integ = IntegTest(app, INTEG_ID, test_cases=[stack])
    add_assertions(integ, stack)
    return stack, integ


def build_app(outdir: str | None = None) -> cdk.App:
    """The integration-test app (sample stack and assertion stack), without synthesizing it."""
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    add_integ_test(app)
    return app


if __name__ == "__main__":
    build_app().synth()
