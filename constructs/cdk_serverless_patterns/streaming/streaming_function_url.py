"""``StreamingFunctionUrl``: a Lambda function URL in ``RESPONSE_STREAM`` invoke mode, IAM-authorized by default.

The cheapest streaming transport: no API Gateway, no idle timeout of its own (the function's timeout
bounds the stream, up to 15 minutes), 200 MB per response. Callers sign their requests with SigV4
(``AWS_IAM``); ``grant_invoke_url`` gives a principal both permissions a function URL call needs. Open
access only through ``unsafe_allow_anonymous=True``.

Refused at synthesis, where AWS would refuse or misbehave later: a tenant-isolated function (a
function URL cannot pass a tenant id; Lambda rejects the invocation), and a function in a VPC (Lambda
does not stream responses of functions in a VPC through function URLs). An imported function
(``Function.from_function_arn``) cannot be inspected: the user answers for it.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from cdk_serverless_patterns.core import PropErrors
from cdk_serverless_patterns.streaming.streaming_function import StreamingFunction
from cdk_serverless_patterns.streaming.streaming_rest_api import function_of, is_function
from constructs import Construct

__all__ = ["StreamingFunctionUrl"]


def _cfn_function(function: lambda_.IFunction) -> lambda_.CfnFunction | None:
    child = function.node.default_child if isinstance(function, lambda_.Function) else None
    return child if isinstance(child, lambda_.CfnFunction) else None


class StreamingFunctionUrl(Construct):
    """A function URL that streams (see the module documentation).

    Args:
        function: A ``StreamingFunction``, or a function that already streams.
        unsafe_allow_anonymous: Auth type ``NONE``: anyone who knows the URL may call it. Default: False
            (``AWS_IAM``).
        cors: CORS settings for browsers. Default: none (same-origin only).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        function: StreamingFunction | lambda_.IFunction,
        unsafe_allow_anonymous: bool = False,
        cors: lambda_.FunctionUrlCorsOptions | None = None,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        if errors.require(
            is_function(function),
            "function",
            f"must be a StreamingFunction or a lambda_.IFunction, got {type(function).__name__}",
        ):
            target = function_of(function)
            cfn = _cfn_function(target)
            if cfn is not None:
                stack = cdk.Stack.of(cfn)
                errors.require(
                    stack.resolve(cfn.tenancy_config) is None,
                    "function",
                    "is tenant-isolated (TenancyConfig): a function URL cannot pass a tenant id, so Lambda would "
                    "reject every call; stream through a REST API that sets X-Amz-Tenant-Id instead",
                )
                errors.require(
                    stack.resolve(cfn.vpc_config) is None,
                    "function",
                    "is in a VPC: Lambda does not stream function URL responses of functions in a VPC; use "
                    "StreamingRestApi, or a function outside the VPC",
                )
        errors.require(isinstance(unsafe_allow_anonymous, bool), "unsafe_allow_anonymous", "must be True or False")
        errors.require(
            cors is None or isinstance(cors, lambda_.FunctionUrlCorsOptions),
            "cors",
            "must be a lambda_.FunctionUrlCorsOptions",
        )
        errors.raise_if_any()

        self._function = function_of(function)
        self._auth_type = (
            lambda_.FunctionUrlAuthType.NONE if unsafe_allow_anonymous else lambda_.FunctionUrlAuthType.AWS_IAM
        )
        self._function_url = lambda_.FunctionUrl(
            self,
            "Url",
            function=self._function,
            auth_type=self._auth_type,
            invoke_mode=lambda_.InvokeMode.RESPONSE_STREAM,
            cors=cors,
        )

    def grant_invoke_url(self, grantee: iam.IGrantable) -> iam.Grant:
        """Lets ``grantee`` call the URL with SigV4 (``lambda:InvokeFunctionUrl`` on this function)."""
        return self._function.grant_invoke_url(grantee)

    @property
    def function_url(self) -> lambda_.FunctionUrl:
        """The function URL resource."""
        return self._function_url

    @property
    def url(self) -> str:
        """The URL (``https://<id>.lambda-url.<region>.on.aws/``)."""
        return self._function_url.url

    @property
    def function(self) -> lambda_.IFunction:
        return self._function

    @property
    def auth_type(self) -> lambda_.FunctionUrlAuthType:
        """``AWS_IAM`` unless the user opted out."""
        return self._auth_type
