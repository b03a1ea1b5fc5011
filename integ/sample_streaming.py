"""Sample stack: one generator handler streamed through a REST API, a function URL and a WebSocket API.

- ``StreamingFunction`` running ``integ/functions/streaming_tokens/app.py`` (SSE, tokens from the
  offline source: no model access needed; set the context ``streaming_bedrock_model`` to a Bedrock
  foundation-model ARN to stream from Bedrock instead). The offline source answers at once; the context
  ``streaming_offline_delay_ms`` (0 to 60000, default 0) makes it pause that long before each token but the
  first (``STREAMING_OFFLINE_DELAY_MS``), as a model's pace: the demo and the emulator tests set it so that
  streaming is visible;
- ``StreamingRestApi`` on ``/stream`` with a sample TOKEN authorizer (``integ/functions/streaming_authorizer``):
  the bearer token is a demo secret that Secrets Manager generates;
- ``StreamingFunctionUrl`` (IAM: callers sign with SigV4);
- ``WebSocketStreamingApi`` (IAM on ``$connect``: a SigV4-presigned handshake), clients send
  ``{"action": "stream", "prompt": "..."}``.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_secretsmanager as secretsmanager

from cdk_serverless_patterns.core import acknowledge, pattern_function
from cdk_serverless_patterns.streaming import (
    StreamingFunction,
    StreamingFunctionUrl,
    StreamingRestApi,
    WebSocketStreamingApi,
)
from constructs import Construct

STACK_ID = "ServerlessPatternsStreaming"
DESCRIPTION = "cdk-serverless-patterns: one Python generator streamed through REST, a function URL and WebSockets"
FUNCTIONS = Path(__file__).resolve().parent / "functions"
#: CDK context key: a Bedrock foundation-model ARN to stream from (default: the offline token source).
BEDROCK_MODEL_CONTEXT = "streaming_bedrock_model"
#: CDK context key: the offline token source's pause before each token, in milliseconds (default 0).
OFFLINE_DELAY_CONTEXT = "streaming_offline_delay_ms"
#: The variable the layer's offline token source reads (``serverless_streaming.tokens.ENV_OFFLINE_DELAY_MS``).
OFFLINE_DELAY_VARIABLE = "STREAMING_OFFLINE_DELAY_MS"
MAX_OFFLINE_DELAY_MS = 60000


def offline_delay_ms(value: object) -> int:
    """The context value of ``streaming_offline_delay_ms`` as whole milliseconds (0 when unset).

    Raises ``ValueError`` naming the key for anything but a whole number from 0 to 60000.
    """
    if value is None or value == "":
        return 0
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or int(text) > MAX_OFFLINE_DELAY_MS:
        raise ValueError(
            f"context {OFFLINE_DELAY_CONTEXT} must be a whole number of milliseconds from 0 to "
            f"{MAX_OFFLINE_DELAY_MS}, got {value!r:.40}"
        )
    return int(text)


class StreamingSampleStack(cdk.Stack):
    """The three transports over one handler, with their endpoints as outputs."""

    def __init__(self, scope: Construct, id: str = STACK_ID, *, env: cdk.Environment | None = None) -> None:
        super().__init__(scope, id, env=env, description=DESCRIPTION)
        model = self.node.try_get_context(BEDROCK_MODEL_CONTEXT)
        delay_ms = offline_delay_ms(self.node.try_get_context(OFFLINE_DELAY_CONTEXT))
        self.tokens = StreamingFunction(
            self,
            "Tokens",
            code_path=FUNCTIONS / "streaming_tokens",
            handler="app.handler",
            description="Sample streaming handler: a prompt's answer as server-sent events",
            timeout=cdk.Duration.minutes(5),
            bedrock_models=[str(model)] if model else None,
            token_source=None if model else "offline",
            environment={OFFLINE_DELAY_VARIABLE: str(delay_ms)} if delay_ms and not model else None,
        )
        self.demo_token = secretsmanager.Secret(
            self,
            "DemoToken",
            description="Bearer token of the streaming sample's REST API (sample only)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, include_space=False, password_length=48
            ),
        )
        acknowledge(
            self.demo_token,
            "The sample's demo token is rotated by replacing the secret; the sample authorizer reads it once per "
            "execution environment and has no second token to overlap a rotation.",
            "AwsSolutions-SMG4",
        )
        self.authorizer_function = pattern_function(
            self,
            "TokenAuthorizer",
            code_path=FUNCTIONS / "streaming_authorizer",
            handler="authorizer.handler",
            description="Sample-only TOKEN authorizer: a bearer token equal to the demo secret",
            environment={"DEMO_TOKEN_SECRET_ARN": self.demo_token.secret_arn},
        )
        self.demo_token.grant_read(self.authorizer_function)
        acknowledge(
            self.authorizer_function,
            "API Gateway invokes the authorizer synchronously and denies the request when it fails; dead-letter "
            "queues and failure destinations only apply to asynchronous invocations.",
            "Serverless-LambdaDLQ",
            "Serverless-LambdaAsyncFailureDestination",
        )
        self.rest = StreamingRestApi(
            self,
            "Rest",
            function=self.tokens,
            authorizer=apigw.TokenAuthorizer(
                self,
                "RestAuthorizer",
                handler=self.authorizer_function,
                results_cache_ttl=cdk.Duration.minutes(5),
            ),
        )
        self.url = StreamingFunctionUrl(self, "Url", function=self.tokens)
        self.websocket = WebSocketStreamingApi(self, "WebSocket", function=self.tokens)

        cdk.CfnOutput(
            self, "RestStreamUrl", value=f"{self.rest.url}stream", description="GET ?prompt=... with the bearer token"
        )
        cdk.CfnOutput(self, "DemoTokenSecretArn", value=self.demo_token.secret_arn)
        cdk.CfnOutput(self, "FunctionUrl", value=self.url.url, description="SigV4-signed (service lambda)")
        cdk.CfnOutput(self, "WebSocketUrl", value=self.websocket.url, description="SigV4-presigned handshake")
        cdk.CfnOutput(self, "StreamingFunctionName", value=self.tokens.function.function_name)
        cdk.CfnOutput(self, "WebSocketDriverName", value=self.websocket.driver.function_name)
        cdk.CfnOutput(self, "ConnectionsTableName", value=self.websocket.table.table_name)
