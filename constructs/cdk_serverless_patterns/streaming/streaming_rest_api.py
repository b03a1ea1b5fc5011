"""``StreamingRestApi``: a REST API whose Lambda proxy integration streams the response (``STREAM`` mode).

Built on the library's regional REST API (:func:`cdk_serverless_patterns.core.apis.regional_rest_api`:
encrypted JSON access logs, stage throttling, X-Ray, a request validator, optional WAF and source
ranges). The route's ``AWS_PROXY`` integration has ``ResponseTransferMode: STREAM``, so CDK points it
at Lambda's ``/response-streaming-invocations`` URI and API Gateway forwards each chunk as it arrives.

What AWS only enforces at deploy or run time is checked at synthesis:

- the integration ``timeout`` is at most 15 minutes (API Gateway's limit for streamed responses; CDK
  does not check it), at least 50 ms, and not shorter than the function's own timeout (else API Gateway
  cuts the stream while the function still runs and bills);
- the endpoint type's idle timeout (5 minutes regional, 30 seconds edge-optimized) is exposed as
  ``idle_timeout``: a handler must send a byte at least that often (the streaming runtime's SSE
  keep-alive comment, every 15 s by default, does). Private endpoints need VPC endpoints this construct
  does not build: refused;
- streamed integrations take no caching, content handling, request or response templates: a stage
  with caching or a streaming method with any of them fails synthesis (a validation, so that it also
  catches what is changed after the construct).

Authorization is on by default: a Lambda authorizer (``authorizer``: a ``TokenAuthorizer`` or
``RequestAuthorizer``), a Cognito user pool (``user_pool``, or a ``CognitoUserPoolsAuthorizer``), or
IAM (``iam_authorization=True``: SigV4). Open access only through ``unsafe_allow_anonymous=True``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from cdk_serverless_patterns.core import PropErrors, acknowledge
from cdk_serverless_patterns.core.apis import check_api_props, regional_rest_api
from cdk_serverless_patterns.core.props import human_duration, milliseconds
from cdk_serverless_patterns.streaming.streaming_function import MAX_TIMEOUT, StreamingFunction
from constructs import Construct, IValidation

__all__ = ["ENDPOINT_IDLE_TIMEOUTS", "StreamingRestApi", "function_of", "is_function"]

#: API Gateway's idle timeout of a streamed response, by endpoint type.
ENDPOINT_IDLE_TIMEOUTS = {"REGIONAL": cdk.Duration.minutes(5), "EDGE": cdk.Duration.seconds(30)}
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "ANY")
_PATH = re.compile(r"/([A-Za-z0-9._~-]+|\{[A-Za-z0-9_]+\+?\})(/([A-Za-z0-9._~-]+|\{[A-Za-z0-9_]+\+?\}))*|/")
_FORBIDDEN_INTEGRATION = {
    "IntegrationResponses": "response transforms",
    "ContentHandling": "content handling",
    "RequestTemplates": "request templates",
    "CacheKeyParameters": "caching",
}


def is_function(value: object) -> bool:
    """Whether ``value`` is a ``StreamingFunction`` or a Lambda function (``lambda_.IFunction`` is not checkable)."""
    return isinstance(value, StreamingFunction) or (
        isinstance(value, Construct) and hasattr(value, "function_arn") and hasattr(value, "grant_invoke")
    )


def function_of(function: StreamingFunction | lambda_.IFunction) -> lambda_.IFunction:
    """The Lambda function of a ``StreamingFunction``, or the function itself."""
    return function.function if isinstance(function, StreamingFunction) else function


def _properties(resource: cdk.CfnResource) -> dict[str, Any]:
    """The resource's CloudFormation properties as synthesized (without raw overrides, which jsii hides)."""
    stack = cdk.Stack.of(resource)
    properties = stack.resolve(resource._render_properties(stack.resolve(resource._cfn_properties)))
    return properties if isinstance(properties, dict) else {}


@jsii.implements(IValidation)
class _StreamsStayStreams:
    """Synth-time check: no caching on the stage, no transforms on the streaming methods."""

    def __init__(self, owner: StreamingRestApi) -> None:
        self._owner = owner

    def validate(self) -> list[str]:
        problems = []
        stage = self._owner.api.deployment_stage.node.default_child
        if isinstance(stage, apigw.CfnStage):
            props = _properties(stage)
            if props.get("CacheClusterEnabled"):
                problems.append(f"{stage.node.path}: a stage of a streaming API cannot have a cache cluster")
            for setting in props.get("MethodSettings") or []:
                if isinstance(setting, dict) and setting.get("CachingEnabled"):
                    problems.append(f"{stage.node.path}: streamed responses cannot be cached (MethodSettings)")
        for method in self._owner.methods:
            cfn = method.node.default_child
            if not isinstance(cfn, apigw.CfnMethod):
                continue
            integration = _properties(cfn).get("Integration") or {}
            if integration.get("ResponseTransferMode") != "STREAM":
                problems.append(f"{method.node.path}: the integration must keep ResponseTransferMode STREAM")
            for key, what in _FORBIDDEN_INTEGRATION.items():
                if integration.get(key):
                    problems.append(f"{method.node.path}: a streamed integration cannot have {what} ({key})")
        return problems


class StreamingRestApi(Construct):
    """A REST API streaming a function's response (see the module documentation).

    Args:
        function: A ``StreamingFunction``, or a function that already streams.
        authorizer: A ``TokenAuthorizer``, ``RequestAuthorizer`` or ``CognitoUserPoolsAuthorizer``.
        user_pool: A Cognito user pool: the construct creates its authorizer (ID tokens in ``Authorization``).
        iam_authorization: Callers sign with SigV4 (``execute-api:Invoke``). Default: False.
        unsafe_allow_anonymous: Anyone on the internet may call the route (and run up the function's and
            the model's bill). Default: False; excludes the three above. Exactly one of the four.
        path: The streaming resource. Default: ``/stream``.
        methods: Default: ``("GET", "POST")`` (``EventSource`` sends GET).
        timeout: The integration timeout. Default: the function's timeout (a ``StreamingFunction``'s or a
            ``lambda_.Function``'s), else 5 minutes; at most 15 minutes, not shorter than the function's.
        endpoint_type: ``apigw.EndpointType.REGIONAL`` (idle timeout 5 minutes) or ``EDGE`` (30 seconds).
            Default: REGIONAL.
        rest_api_name: Default: derived from the construct path.
        stage_name: Default: ``prod``.
        throttling_rate_limit: Stage-wide requests per second. Default: 50.
        throttling_burst_limit: Stage-wide burst. Default: 100.
        access_log_retention: Default: one month.
        web_acl_arn: A regional WAFv2 web ACL. Default: none.
        allowed_source_cidrs: Only these source ranges may call the API. Default: any.
        removal_policy: Of the access logs and their key. Default: RETAIN.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        function: StreamingFunction | lambda_.IFunction,
        authorizer: apigw.IAuthorizer | None = None,
        user_pool: cognito.IUserPool | None = None,
        iam_authorization: bool = False,
        unsafe_allow_anonymous: bool = False,
        path: str = "/stream",
        methods: Sequence[str] = ("GET", "POST"),
        timeout: cdk.Duration | None = None,
        endpoint_type: apigw.EndpointType = apigw.EndpointType.REGIONAL,
        rest_api_name: str | None = None,
        stage_name: str = "prod",
        throttling_rate_limit: float = 50,
        throttling_burst_limit: int = 100,
        access_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        web_acl_arn: str | None = None,
        allowed_source_cidrs: Sequence[str] | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        check_api_props(
            errors,
            stage_name=stage_name,
            throttling_rate_limit=throttling_rate_limit,
            throttling_burst_limit=throttling_burst_limit,
            access_log_encryption_key=None,
            existing_access_log_group=None,
            web_acl_arn=web_acl_arn,
            allowed_source_cidrs=allowed_source_cidrs,
            domain_name=None,
            certificate=None,
            disable_execute_api_endpoint=False,
        )
        errors.require(
            is_function(function),
            "function",
            f"must be a StreamingFunction or a lambda_.IFunction, got {type(function).__name__}",
        )
        chosen = [
            name
            for name, given in (
                ("authorizer", authorizer is not None),
                ("user_pool", user_pool is not None),
                ("iam_authorization", bool(iam_authorization)),
                ("unsafe_allow_anonymous", bool(unsafe_allow_anonymous)),
            )
            if given
        ]
        errors.require(
            len(chosen) == 1,
            "authorizer",
            "give exactly one of authorizer, user_pool, iam_authorization=True and unsafe_allow_anonymous=True"
            + (f" (got {', '.join(chosen)})" if chosen else ": a streaming route is never open by default"),
        )
        errors.require(
            isinstance(path, str) and bool(_PATH.fullmatch(path)), "path", f"{path!r} is not a resource path"
        )
        method_list = [methods] if isinstance(methods, str) else list(methods)
        errors.require(bool(method_list), "methods", "needs at least one method")
        for method in method_list:
            errors.one_of(method, "methods", _METHODS)
        errors.require(len(set(method_list)) == len(method_list), "methods", "lists a method twice")
        endpoint = getattr(endpoint_type, "value", endpoint_type)
        errors.require(
            endpoint in ENDPOINT_IDLE_TIMEOUTS,
            "endpoint_type",
            f"{endpoint!r}: REGIONAL or EDGE (a PRIVATE endpoint needs VPC endpoints this construct does not build)",
        )
        function_timeout = function.timeout if isinstance(function, StreamingFunction) else None
        if function_timeout is None and isinstance(function, lambda_.Function):
            function_timeout = function.timeout  # None for a function with Lambda's default (3 s)
        integration_timeout = timeout or function_timeout or cdk.Duration.minutes(5)
        if (
            errors.duration_between(
                integration_timeout,
                "timeout",
                minimum=cdk.Duration.millis(50),
                maximum=MAX_TIMEOUT,
                concrete=True,
            )
            and function_timeout is not None
        ):
            limit, own = milliseconds(integration_timeout), milliseconds(function_timeout)
            errors.require(
                limit is None or own is None or limit >= own,
                "timeout",
                f"{human_duration(integration_timeout)} is shorter than the function's timeout "
                f"({human_duration(function_timeout)}): API Gateway would cut the stream while the function still "
                "runs and bills; raise it or lower the function's",
            )
        errors.raise_if_any()

        self._function = function_of(function)
        self._timeout = integration_timeout
        self._idle_timeout = ENDPOINT_IDLE_TIMEOUTS[str(endpoint)]
        parts = regional_rest_api(
            self,
            rest_api_name=rest_api_name or f"{cdk.Stack.of(self).stack_name}-{id}"[-255:],
            description="Streams a Lambda function's response (API Gateway response streaming)",
            purpose="the streaming API",
            stage_name=stage_name,
            throttling_rate_limit=throttling_rate_limit,
            throttling_burst_limit=throttling_burst_limit,
            access_log_retention=access_log_retention,
            web_acl_arn=web_acl_arn,
            allowed_source_cidrs=allowed_source_cidrs,
            removal_policy=removal_policy,
            waf_reason="WAF is opt-in (web_acl_arn): the streaming route needs authorization unless the user "
            "explicitly opts out, and the stage is throttled.",
        )
        self._api = parts.api
        self._access_log_group = parts.access_log_group
        if endpoint == "EDGE":
            cfn_api = self._api.node.default_child
            assert isinstance(cfn_api, apigw.CfnRestApi)
            cfn_api.endpoint_configuration = apigw.CfnRestApi.EndpointConfigurationProperty(types=["EDGE"])

        self._authorizer: apigw.IAuthorizer | None = authorizer
        if user_pool is not None:
            self._authorizer = apigw.CognitoUserPoolsAuthorizer(
                self, "UserPoolAuthorizer", cognito_user_pools=[user_pool]
            )
        if iam_authorization:
            authorization_type = apigw.AuthorizationType.IAM
        elif self._authorizer is not None:
            authorization_type = getattr(self._authorizer, "authorization_type", None) or apigw.AuthorizationType.CUSTOM
        else:
            authorization_type = apigw.AuthorizationType.NONE
        self._authorization_type = authorization_type

        integration = apigw.LambdaIntegration(
            self._function,
            proxy=True,
            response_transfer_mode=apigw.ResponseTransferMode.STREAM,
            timeout=integration_timeout,
            allow_test_invoke=False,
        )
        resource = self._api.root.resource_for_path(path)
        self._methods = [
            resource.add_method(
                method,
                integration,
                authorization_type=authorization_type,
                authorizer=self._authorizer if authorization_type != apigw.AuthorizationType.IAM else None,
            )
            for method in method_list
        ]
        if authorization_type != apigw.AuthorizationType.COGNITO:
            reason = {
                apigw.AuthorizationType.IAM: "The streaming route uses IAM (SigV4) authorization: only principals "
                "granted execute-api:Invoke may call it; cdk-nag only recognises Cognito user pool authorizers.",
                apigw.AuthorizationType.CUSTOM: "The streaming route uses the Lambda authorizer the user passed; "
                "cdk-nag only recognises Cognito user pool authorizers.",
            }.get(
                authorization_type,
                "The user opted out of authorization explicitly (unsafe_allow_anonymous=True): the route is public "
                "by the user's choice, throttled by the stage.",
            )
            acknowledge(self._api, reason, "AwsSolutions-COG4")
        if authorization_type == apigw.AuthorizationType.NONE:
            acknowledge(
                self._api,
                "The user opted out of authorization explicitly (unsafe_allow_anonymous=True): the route is public "
                "by the user's choice, throttled by the stage.",
                "AwsSolutions-APIG4",
            )
        self.node.add_validation(_StreamsStayStreams(self))

    # ----------------------------------------------------------------------------------------------
    def grant_invoke(self, grantee: Any) -> None:
        """Lets ``grantee`` call the streaming route with SigV4 (``iam_authorization``)."""
        from aws_cdk import aws_iam as iam

        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["execute-api:Invoke"],
                resources=[method.method_arn for method in self._methods],
            )
        )

    @property
    def api(self) -> apigw.RestApi:
        """The REST API."""
        return self._api

    @property
    def url(self) -> str:
        """The stage URL (ends with ``/``)."""
        return self._api.url

    @property
    def function(self) -> lambda_.IFunction:
        """The streaming function."""
        return self._function

    @property
    def methods(self) -> list[apigw.Method]:
        """The streaming methods."""
        return list(self._methods)

    @property
    def authorizer(self) -> apigw.IAuthorizer | None:
        """The authorizer (``authorizer``, or the one made for ``user_pool``)."""
        return self._authorizer

    @property
    def authorization_type(self) -> apigw.AuthorizationType:
        return self._authorization_type

    @property
    def timeout(self) -> cdk.Duration:
        """The integration timeout."""
        return self._timeout

    @property
    def idle_timeout(self) -> cdk.Duration:
        """How long API Gateway lets a stream stay silent (by endpoint type)."""
        return self._idle_timeout

    @property
    def access_log_group(self) -> logs.ILogGroup:
        return self._access_log_group
