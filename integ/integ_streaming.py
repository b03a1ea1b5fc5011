#!/usr/bin/env python3
"""Integration test of the streaming pattern, for the CDK integ-runner and a real AWS account.

The test case is the streaming **sample stack** of ``integ/sample_streaming.py``, unchanged. The
assertions call the deployed endpoints as clients would:

1. *no token*: ``GET /stream`` on the REST API without ``Authorization`` is refused by API Gateway (401);
2. *the demo token*: read from Secrets Manager, ``GET /stream?prompt=...`` with it answers 200 with a
   ``text/event-stream`` body that holds ``data:`` events and ends with the runtime's ``event: done``
   (the assertion provider reads the whole streamed body);
3. *an unsigned function URL call* is refused (403): the URL is IAM-authorized.

The WebSocket transport needs a WebSocket client, which the integ-tests library does not have; the
unit tests check its template and the emulator tests drive it end to end.

Run it against an account with ``npx integ-runner --language python --directory integ`` once a
release of the runner reads this aws-cdk-lib's cloud assembly (schema 55; it stops at 53). The unit
tests synthesize it offline (tests/streaming/test_streaming_sample.py).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk.integ_tests_alpha import ExpectedResult, IApiCall, IntegTest, Match
from sample_streaming import StreamingSampleStack

SAMPLE_STACK_ID = "IntegServerlessPatternsStreaming"
INTEG_ID = "StreamingInteg"
PROMPT = "integration"


def add_assertions(integ: IntegTest, stack: StreamingSampleStack) -> IApiCall:
    """The three calls above, in order."""
    stream_url = cdk.Fn.join("", [stack.rest.url, f"stream?prompt={PROMPT}"])
    no_token = integ.assertions.http_api_call(stream_url).expect(ExpectedResult.object_like({"status": 401}))
    secret = integ.assertions.aws_api_call(
        "SecretsManager", "getSecretValue", {"SecretId": stack.demo_token.secret_arn}
    )
    secret.provider.add_to_role_policy(
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": [stack.demo_token.secret_arn]}
    )
    with_token = integ.assertions.http_api_call(
        stream_url,
        headers={"Authorization": cdk.Fn.join("", ["Bearer ", secret.get_att_string("SecretString")])},
    ).expect(ExpectedResult.object_like({"status": 200, "body": Match.string_like_regexp(r"data: [\s\S]*event: done")}))
    unsigned_url = integ.assertions.http_api_call(stack.url.url).expect(ExpectedResult.object_like({"status": 403}))
    return no_token.next(secret).next(with_token).next(unsigned_url)


def add_integ_test(app: cdk.App) -> tuple[StreamingSampleStack, IntegTest]:
    """The test case (the sample stack) and its assertions, in ``app``."""
    # Environment-agnostic, like the assertion stack IntegTest adds (the assertions refer to the test
    # case's resources, which CDK allows only within one environment); the runner picks account and region.
    stack = StreamingSampleStack(app, SAMPLE_STACK_ID)
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
