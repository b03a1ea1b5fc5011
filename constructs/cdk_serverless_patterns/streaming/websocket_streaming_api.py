"""``WebSocketStreamingApi``: the same generator handler, streamed to WebSocket clients in batched frames.

A WebSocket API (``aws_apigatewayv2.WebSocketApi``) with three routes, all served by one *driver*
function: the user's code and handler, on the standard Python runtime (no exec wrapper: it answers
buffered invocations) with the streaming layer, handler ``serverless_streaming.websocket.handler``
and ``STREAMING_HANDLER=<the user's module.function>``:

- ``$connect`` (``AWS_PROXY``, synchronous): authorized. Default: ``AWS_IAM`` (the client signs the
  handshake with SigV4, usually as a presigned URL valid for minutes: no long-lived secret in the
  query string). Or the user's ``WebSocketLambdaAuthorizer`` (its identity source should be a header
  or a short-lived token). Open only through ``unsafe_allow_anonymous=True``. The driver records the
  connection in the connections table (TTL 2 hours, API Gateway's longest connection).
- ``$disconnect`` (``AWS_PROXY``, synchronous): the driver deletes the connection.
- ``stream`` (``{"action": "stream", ...}``): an ``AWS`` (non-proxy) Lambda integration with the
  request header ``X-Amz-Invocation-Type: 'Event'``: API Gateway hands the message to Lambda
  *asynchronously* and returns at once. WebSocket integrations time out after 29 seconds; an
  asynchronous invocation is not bounded by that, so a stream runs for as long as the driver's timeout
  (up to 15 minutes). The request template builds the same event an ``AWS_PROXY`` integration would
  deliver (``requestContext`` with ``routeKey``, ``eventType``, ``connectionId``, ``domainName``,
  ``stage``, ``apiId``, ``requestId``, ``connectedAt``, ``requestTimeEpoch``, ``messageId``, ``identity``
  (``sourceIp``, ``userAgent``), ``authorizer.principalId`` (what a Lambda authorizer returned on
  ``$connect``); ``body``; ``isBase64Encoded``), so the driver streams it in place
  (``STREAMING_WS_DISPATCH=inline``). Asynchronous invocations are never retried (a retry would replay
  the stream from its start to a client that has half of it) and expire after 60 seconds in Lambda's
  queue; a failed one goes to an encrypted SQS failure destination.

The driver may post to this API's stage's connections only (``execute-api:ManageConnections`` on
``<api>/<stage>/*/@connections/*``) and read and write its own table only. The stage is throttled and
writes JSON access logs to a log group encrypted with a rotating customer-managed key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs

from cdk_serverless_patterns.core import (
    PropErrors,
    acknowledge,
    check_table_props,
    dead_letter_queue,
    grant_table_key,
    pattern_table,
)
from cdk_serverless_patterns.core.apis import encrypted_access_logs
from cdk_serverless_patterns.core.props import milliseconds
from cdk_serverless_patterns.streaming import contract
from cdk_serverless_patterns.streaming.streaming_function import MAX_TIMEOUT, StreamingFunction, streaming_layer
from constructs import Construct

__all__ = ["MAX_FRAME_BYTES", "STREAM_REQUEST_TEMPLATE", "WebSocketStreamingApi"]

#: API Gateway's largest WebSocket frame.
MAX_FRAME_BYTES = 32 * 1024
#: How long an accepted stream request may wait in Lambda's asynchronous queue (Lambda's minimum).
MAX_EVENT_AGE = cdk.Duration.seconds(60)
#: The stream route's request template: the event an AWS_PROXY integration would deliver.
#: ``$util.escapeJavaScript`` escapes ``'`` as ``\\'``, which JSON does not know: undone.
STREAM_REQUEST_TEMPLATE = "\n".join(
    [
        "{",
        '  "requestContext": {',
        '    "routeKey": "$context.routeKey",',
        '    "eventType": "$context.eventType",',
        '    "messageDirection": "IN",',
        '    "connectionId": "$context.connectionId",',
        '    "domainName": "$context.domainName",',
        '    "stage": "$context.stage",',
        '    "apiId": "$context.apiId",',
        '    "requestId": "$context.requestId",',
        '    "extendedRequestId": "$context.extendedRequestId",',
        '    "messageId": "$context.messageId",',
        '    "connectedAt": $context.connectedAt,',
        '    "requestTimeEpoch": $context.requestTimeEpoch,',
        '    "identity": {"sourceIp": "$context.identity.sourceIp", "userAgent": "$util.escapeJavaScript('
        '$context.identity.userAgent).replaceAll("\\\\\'", "\'")"},',
        '    "authorizer": {"principalId": "$util.escapeJavaScript($context.authorizer.principalId)'
        '.replaceAll("\\\\\'", "\'")"}',
        "  },",
        '  "body": "$util.escapeJavaScript($input.body).replaceAll("\\\\\'", "\'")",',
        '  "isBase64Encoded": false',
        "}",
    ]
)


def _nag_arn(stack: cdk.Stack, api: apigwv2.WebSocketApi) -> str:
    """``arn:<AWS::Partition>:execute-api:<region>:<account>:<ApiLogicalId>`` as cdk-nag writes it in a finding."""
    region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
    cfn = api.node.default_child
    assert isinstance(cfn, cdk.CfnElement)
    return f"arn:<AWS::Partition>:execute-api:{region}:{account}:<{stack.get_logical_id(cfn)}>"


class WebSocketStreamingApi(Construct):
    """A WebSocket API streaming a ``StreamingFunction``'s handler (see the module documentation).

    Args:
        function: The ``StreamingFunction`` whose code and handler the driver runs (``adapter="python"``).
        authorizer: A ``WebSocketLambdaAuthorizer`` for ``$connect``. Default: IAM (SigV4).
        unsafe_allow_anonymous: No authorization on ``$connect``. Default: False; excludes ``authorizer``.
        api_name: Default: derived from the stack and construct id.
        stage_name: Default: ``prod``.
        throttling_rate_limit: Messages per second on the stage. Default: 50.
        throttling_burst_limit: Default: 100.
        access_log_retention: Default: one month.
        frame_bytes: Flush a frame at this many bytes (``STREAMING_FRAME_BYTES``). Default: 16384;
            at most 32 KB (API Gateway's frame limit).
        frame_interval: Flush after this long of buffering (``STREAMING_FRAME_MS``). Default: 50 ms; at most 5 s.
        driver_timeout: The driver's timeout (a stream's longest life). Default: the function's.
        driver_memory_size: Default: the function's.
        existing_table: A connections table to use (partition key ``connectionId``, String; TTL ``expiresAt``).
        table_props: Overrides of the new table's props (not the key schema or the TTL attribute).
        encryption_key: A customer-managed key for the new table. Default: AWS-managed.
        removal_policy: Of the table, the logs and the key. Default: RETAIN.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        function: StreamingFunction,
        authorizer: apigwv2.IWebSocketRouteAuthorizer | None = None,
        unsafe_allow_anonymous: bool = False,
        api_name: str | None = None,
        stage_name: str = "prod",
        throttling_rate_limit: float = 50,
        throttling_burst_limit: int = 100,
        access_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        frame_bytes: int = contract.DEFAULT_FRAME_BYTES,
        frame_interval: cdk.Duration = cdk.Duration.millis(contract.DEFAULT_FRAME_MS),
        driver_timeout: cdk.Duration | None = None,
        driver_memory_size: int | None = None,
        existing_table: dynamodb.ITable | None = None,
        table_props: Mapping[str, Any] | None = None,
        encryption_key: kms.IKey | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        if errors.require(
            isinstance(function, StreamingFunction),
            "function",
            f"must be a StreamingFunction (the driver runs its code and handler), got {type(function).__name__}",
        ):
            errors.require(
                function.adapter == "python",
                "function",
                "uses the Lambda Web Adapter: the WebSocket driver streams generator handlers (adapter='python')",
            )
        errors.require(
            authorizer is None or isinstance(authorizer, authorizers.WebSocketLambdaAuthorizer),
            "authorizer",
            "must be a WebSocketLambdaAuthorizer (IAM is the default without one)",
        )
        errors.require(
            not (authorizer is not None and unsafe_allow_anonymous),
            "unsafe_allow_anonymous",
            "cannot be combined with authorizer",
        )
        errors.require(
            isinstance(stage_name, str) and bool(re.fullmatch(r"[A-Za-z0-9_-]{1,128}", stage_name)),
            "stage_name",
            f"{stage_name!r} must be 1-128 of A-Z a-z 0-9 _ -",
        )
        errors.require(
            isinstance(throttling_rate_limit, int | float) and 0 < throttling_rate_limit <= 10000,
            "throttling_rate_limit",
            f"must be in (0, 10000], got {throttling_rate_limit}",
        )
        errors.require(
            isinstance(throttling_burst_limit, int) and 1 <= throttling_burst_limit <= 5000,
            "throttling_burst_limit",
            f"must be an integer between 1 and 5000, got {throttling_burst_limit!r}",
        )
        errors.require(
            isinstance(frame_bytes, int) and 256 <= frame_bytes <= MAX_FRAME_BYTES,
            "frame_bytes",
            f"must be an integer from 256 to {MAX_FRAME_BYTES} (API Gateway's frame limit), got {frame_bytes!r}",
        )
        errors.duration_between(frame_interval, "frame_interval", maximum=cdk.Duration.seconds(5), concrete=True)
        errors.duration_between(
            driver_timeout,
            "driver_timeout",
            minimum=cdk.Duration.seconds(1),
            maximum=MAX_TIMEOUT,
            concrete=True,
            whole_seconds=True,
        )
        errors.require(
            driver_memory_size is None or (isinstance(driver_memory_size, int) and 128 <= driver_memory_size <= 10240),
            "driver_memory_size",
            f"must be an integer from 128 to 10240, got {driver_memory_size!r}",
        )
        check_table_props(
            errors,
            partition_key=contract.CONNECTIONS_TABLE_KEY,
            ttl_attribute=contract.CONNECTIONS_TTL_ATTRIBUTE,
            existing_table=existing_table,
            table_props=table_props,
            encryption_key=encryption_key,
        )
        errors.raise_if_any()

        stack = cdk.Stack.of(self)
        self._function = function
        route_key = contract.STREAM_ACTION  # the driver accepts {"action": "stream", ...} only
        self._route_key = route_key
        self._stage_name = stage_name
        self._table = pattern_table(
            self,
            "Connections",
            partition_key=contract.CONNECTIONS_TABLE_KEY,
            ttl_attribute=contract.CONNECTIONS_TTL_ATTRIBUTE,
            encryption_key=encryption_key,
            existing_table=existing_table,
            table_props=table_props,
            removal_policy=removal_policy,
        )
        self._driver = self._build_driver(
            function,
            timeout=driver_timeout or function.timeout,
            memory_size=driver_memory_size or function.memory_size,
            frame_bytes=frame_bytes,
            frame_ms=milliseconds(frame_interval) or 0,
        )

        connect_authorizer: apigwv2.IWebSocketRouteAuthorizer | None = (
            None if unsafe_allow_anonymous else authorizer or authorizers.WebSocketIamAuthorizer()
        )
        self._authorizer = connect_authorizer
        self._api = apigwv2.WebSocketApi(
            self,
            "Api",
            api_name=api_name or f"{stack.stack_name}-{id}"[-128:],
            description="Streams a generator handler to WebSocket clients in batched frames",
            route_selection_expression="$request.body.action",
            connect_route_options=apigwv2.WebSocketRouteOptions(
                integration=integrations.WebSocketLambdaIntegration("Connect", self._driver),
                authorizer=connect_authorizer,
            ),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(
                integration=integrations.WebSocketLambdaIntegration("Disconnect", self._driver),
            ),
        )
        self._stream_route = self._api.add_route(
            route_key,
            integration=integrations.WebSocketAwsIntegration(
                "Stream",
                integration_uri=(
                    f"arn:{cdk.Aws.PARTITION}:apigateway:{cdk.Aws.REGION}:lambda:path/2015-03-31/functions/"
                    f"{self._driver.function_arn}/invocations"
                ),
                integration_method="POST",
                request_parameters={"integration.request.header.X-Amz-Invocation-Type": "'Event'"},
                template_selection_expression="\\$default",
                request_templates={"$default": STREAM_REQUEST_TEMPLATE},
                passthrough_behavior=apigwv2.PassthroughBehavior.NEVER,
            ),
        )
        self._driver.add_permission(
            "StreamRouteInvoke",
            principal=iam.ServicePrincipal("apigateway.amazonaws.com"),
            source_arn=stack.format_arn(
                service="execute-api", resource=self._api.api_id, resource_name=f"{stage_name}/{route_key}"
            ),
        )
        self._stage, self._access_log_group = self._build_stage(
            stage_name=stage_name,
            rate_limit=throttling_rate_limit,
            burst_limit=throttling_burst_limit,
            retention=access_log_retention,
            removal_policy=removal_policy,
        )
        # Only this stage's connections: post (POST), read (GET) and close (DELETE) a connection.
        self._driver.add_to_role_policy(
            iam.PolicyStatement(
                actions=["execute-api:ManageConnections"],
                resources=[
                    stack.format_arn(
                        service="execute-api",
                        resource=self._api.api_id,
                        resource_name=f"{stage_name}/*/@connections/*",
                    )
                ],
            )
        )
        acknowledge(
            self._driver.role or self._driver,
            "execute-api:ManageConnections is scoped to this API's stage's @connections/* (one resource per "
            "connection id, unknown at deploy time) and the three HTTP methods of the management API.",
            f"AwsSolutions-IAM5[Resource::{_nag_arn(stack, self._api)}/{stage_name}/*/@connections/*]",
        )
        acknowledge(
            self._api,
            "WebSocket APIs authorize on $connect only; $disconnect and the stream route run on a connection "
            + (
                "that $connect authorized."
                if connect_authorizer is not None
                else "the user explicitly opened (unsafe_allow_anonymous=True)."
            ),
            "AwsSolutions-APIG4",
        )

    # ----------------------------------------------------------------------------------------------
    def _build_driver(
        self, function: StreamingFunction, *, timeout: cdk.Duration, memory_size: int, frame_bytes: int, frame_ms: int
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self, "DriverLogGroup", retention=function.log_retention, removal_policy=function.log_removal_policy
        )
        role = iam.Role(
            self,
            "DriverRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the WebSocket streaming driver {self.node.path}"[:1000],
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            )
        )
        # Its own table only, and only what the driver does: record, read and forget connections.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[self._table.table_arn],
            )
        )
        grant_table_key(self._table, role)
        function.grant_bedrock(role)
        driver = lambda_.Function(
            self,
            "Driver",
            runtime=function.runtime,
            architecture=function.architecture,
            code=function.code,
            handler=contract.WEBSOCKET_DRIVER_HANDLER,
            description=f"WebSocket streaming driver of the generator handler {function.handler}"[:256],
            environment={
                **function.environment,
                contract.ENV_STREAMING_HANDLER: function.handler,
                contract.ENV_CONNECTIONS_TABLE: self._table.table_name,
                contract.ENV_FRAME_BYTES: str(frame_bytes),
                contract.ENV_FRAME_MS: str(frame_ms),
                # The stream route invokes the driver asynchronously: it streams in that invocation.
                contract.ENV_WS_DISPATCH: contract.WS_DISPATCH_INLINE,
            },
            environment_encryption=function.environment_encryption,
            timeout=timeout,
            memory_size=memory_size,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            layers=[streaming_layer(self)],
        )
        self._failures: sqs.Queue = dead_letter_queue(
            self, "StreamFailures", dead_letter_of="the WebSocket streaming driver's asynchronous invocations"
        )
        driver.configure_async_invoke(
            retry_attempts=0,
            max_event_age=MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(self._failures),
        )
        acknowledge(
            role,
            "X-Ray PutTraceSegments and PutTelemetryRecords have no resource-level permissions (AWS forces '*').",
            "AwsSolutions-IAM5[Resource::*]",
        )
        acknowledge(
            driver,
            "Failed asynchronous stream requests go to the on-failure destination (an encrypted SQS queue), which "
            "receives the request and the error; a dead-letter queue would receive the same requests without the "
            "error. $connect and $disconnect are synchronous: API Gateway receives their errors.",
            "Serverless-LambdaDLQ",
        )
        return driver

    def _build_stage(
        self,
        *,
        stage_name: str,
        rate_limit: float,
        burst_limit: int,
        retention: logs.RetentionDays,
        removal_policy: cdk.RemovalPolicy,
    ) -> tuple[apigwv2.WebSocketStage, logs.LogGroup]:
        log_group, _ = encrypted_access_logs(
            self,
            purpose=f"the WebSocket streaming API {self.node.path}",
            retention=retention,
            removal_policy=removal_policy,
        )
        stage = apigwv2.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self._api,
            stage_name=stage_name,
            auto_deploy=True,
            detailed_metrics_enabled=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
        )
        cfn_stage = stage.node.default_child
        assert isinstance(cfn_stage, apigwv2.CfnStage)
        cfn_stage.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(
            destination_arn=log_group.log_group_arn,
            format=(
                '{"requestId":"$context.requestId","connectionId":"$context.connectionId",'
                '"routeKey":"$context.routeKey","eventType":"$context.eventType","status":"$context.status",'
                '"ip":"$context.identity.sourceIp","requestTime":"$context.requestTime",'
                '"integrationStatus":"$context.integrationStatus","error":"$context.error.message"}'
            ),
        )
        return stage, log_group

    # ----------------------------------------------------------------------------------------------
    def grant_connect(self, grantee: iam.IGrantable) -> None:
        """Lets ``grantee`` open connections with a SigV4-signed handshake (the default IAM authorization)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["execute-api:Invoke"],
                resources=[
                    cdk.Stack.of(self).format_arn(
                        service="execute-api", resource=self._api.api_id, resource_name=f"{self._stage_name}/$connect"
                    )
                ],
            )
        )

    @property
    def api(self) -> apigwv2.WebSocketApi:
        """The WebSocket API."""
        return self._api

    @property
    def stage(self) -> apigwv2.WebSocketStage:
        return self._stage

    @property
    def url(self) -> str:
        """The stage's ``wss://`` URL."""
        return self._stage.url

    @property
    def callback_url(self) -> str:
        """The management endpoint (``https://.../<stage>``) the driver posts to."""
        return self._stage.callback_url

    @property
    def driver(self) -> lambda_.Function:
        """The driver function."""
        return self._driver

    @property
    def table(self) -> dynamodb.ITable:
        """The connections table."""
        return self._table

    @property
    def failures(self) -> sqs.Queue:
        """Where failed asynchronous stream requests go."""
        return self._failures

    @property
    def stream_route(self) -> apigwv2.WebSocketRoute:
        return self._stream_route

    @property
    def route_key(self) -> str:
        return self._route_key

    @property
    def authorizer(self) -> apigwv2.IWebSocketRouteAuthorizer | None:
        """The ``$connect`` authorizer (IAM by default; ``None`` with ``unsafe_allow_anonymous``)."""
        return self._authorizer

    @property
    def access_log_group(self) -> logs.ILogGroup:
        return self._access_log_group

    @property
    def function(self) -> StreamingFunction:
        return self._function
