"""Shared pieces of the front door tests: an in-process invoker, an intrinsic resolver, small templates.

No CDK synth: the templates are hand-written in the shapes CDK synthesizes (Ref/GetAtt/Fn::Join).
The invoker runs Python handlers in this process and records every call, so tests can say how many
times an authorizer ran and with which tenant a function was invoked.
"""

from __future__ import annotations

import http.client
import json
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


#: A SigV4 Authorization header: the front door checks that management API calls are signed, not the signature.
SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/execute-api/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=0000"
}


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


@dataclass(frozen=True)
class Result:
    payload: bytes
    function_error: str | None
    log_tail: str = ""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    duration_ms: float = 0.0
    init_ms: float | None = None


class Stream:
    """A streamed invocation over a generator handler (chunks as the generator yields them)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.error_type: str | None = None
        self.error_body: Any = None
        self.request_id = str(uuid.uuid4())

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks
        except Exception as error:
            self.error_type = f"Function.{type(error).__name__}"
            self.error_body = {"errorMessage": str(error), "errorType": type(error).__name__}


@dataclass
class Call:
    function_arn: str
    event: Any
    tenant_id: str | None
    streamed: bool


class PyInvoker:
    """Runs ``handlers[function_name](event)`` in process, as the Lambda runner would run the deployed code."""

    def __init__(self, handlers: dict[str, Callable[[Any], Any]]) -> None:
        self.handlers = handlers
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def _handler(self, arn: str) -> Callable[[Any], Any]:
        return self.handlers[arn.split(":")[6]]

    def invoke(self, function_arn: str, payload: bytes, *, tenant_id: str | None = None) -> Result:
        event = json.loads(payload)
        with self._lock:
            self.calls.append(Call(function_arn, event, tenant_id, False))
        try:
            answer = self._handler(function_arn)(event)
        except Exception as error:
            body = {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": traceback.format_exc()}
            return Result(json.dumps(body).encode(), "Unhandled")
        return Result(answer if isinstance(answer, bytes) else json.dumps(answer).encode(), None)

    def invoke_stream(self, function_arn: str, payload: bytes, *, tenant_id: str | None = None) -> Stream:
        event = json.loads(payload)
        with self._lock:
            self.calls.append(Call(function_arn, event, tenant_id, True))
        return Stream(iter(self._handler(function_arn)(event)))

    def events(self, name: str) -> list[Any]:
        with self._lock:
            return [call.event for call in self.calls if call.function_arn.split(":")[6] == name]

    def tenants(self, name: str) -> list[str | None]:
        with self._lock:
            return [call.tenant_id for call in self.calls if call.function_arn.split(":")[6] == name]


def resolver(physical: dict[str, str]) -> Callable[[Any], Any]:
    """Resolves Ref/GetAtt/Fn::Join/Fn::Sub/pseudo parameters the way the integrator's resolve does."""

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}.get(arg) or physical[
                    arg
                ]
            if key == "Fn::GetAtt":
                return physical[arg[0] if isinstance(arg, list) else arg.split(".")[0]]
            if key == "Fn::Join":
                return arg[0].join(str(resolve(item)) for item in arg[1])
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return value

    return resolve


def lambda_uri(function_logical_id: str, streaming: bool = False) -> dict[str, Any]:
    suffix = "/response-streaming-invocations" if streaming else "/invocations"
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":apigateway:",
                {"Ref": "AWS::Region"},
                ":lambda:path/2015-03-31/functions/",
                {"Fn::GetAtt": [function_logical_id, "Arn"]},
                suffix,
            ],
        ]
    }


class RestTemplate:
    """A REST API template in CDK's shapes: ``Api`` with resources, methods, authorizers and a ``prod`` stage."""

    def __init__(self, binary_media_types: list[str] | None = None, stage_variables: dict[str, str] | None = None):
        self.resources: dict[str, Any] = {
            "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "api"}},
            "ApiDeployment": {"Type": "AWS::ApiGateway::Deployment", "Properties": {"RestApiId": {"Ref": "Api"}}},
            "ApiStage": {
                "Type": "AWS::ApiGateway::Stage",
                "Properties": {
                    "RestApiId": {"Ref": "Api"},
                    "DeploymentId": {"Ref": "ApiDeployment"},
                    "StageName": "prod",
                    **({"Variables": stage_variables} if stage_variables else {}),
                },
            },
        }
        if binary_media_types:
            self.resources["Api"]["Properties"]["BinaryMediaTypes"] = binary_media_types
        self.physical: dict[str, str] = {"Api": "api0001"}

    def function(self, name: str) -> str:
        logical = f"Fn{name.replace('-', '')}"
        self.resources[logical] = {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": name}}
        self.physical[logical] = function_arn(name)
        return logical

    def resource(self, logical_id: str, path_part: str, parent: str | None = None) -> str:
        parent_ref = {"Ref": parent} if parent else {"Fn::GetAtt": ["Api", "RootResourceId"]}
        self.resources[logical_id] = {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {"ParentId": parent_ref, "PathPart": path_part, "RestApiId": {"Ref": "Api"}},
        }
        return logical_id

    def method(
        self,
        resource: str | None,
        http_method: str,
        function: str | None = None,
        *,
        authorizer: str | None = None,
        request_parameters: dict[str, str] | None = None,
        stream: bool = False,
        integration: dict[str, Any] | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        if integration is None:
            assert function is not None
            integration = {
                "Type": "AWS_PROXY",
                "IntegrationHttpMethod": "POST",
                "Uri": lambda_uri(self.function(function)),
            }
            if stream:
                integration["ResponseTransferMode"] = "STREAM"
            if request_parameters:
                integration["RequestParameters"] = request_parameters
            if timeout_ms:
                integration["TimeoutInMillis"] = timeout_ms
        props: dict[str, Any] = {
            "HttpMethod": http_method,
            "ResourceId": {"Ref": resource} if resource else {"Fn::GetAtt": ["Api", "RootResourceId"]},
            "RestApiId": {"Ref": "Api"},
            "AuthorizationType": "CUSTOM" if authorizer else "NONE",
            "Integration": integration,
        }
        if authorizer:
            props["AuthorizerId"] = {"Ref": authorizer}
        self.resources[f"M{len(self.resources)}"] = {"Type": "AWS::ApiGateway::Method", "Properties": props}

    def authorizer(self, logical_id: str, function: str, kind: str = "TOKEN", **props: Any) -> str:
        self.resources[logical_id] = {
            "Type": "AWS::ApiGateway::Authorizer",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "Type": kind,
                "Name": logical_id,
                "AuthorizerUri": lambda_uri(self.function(function)),
                **props,
            },
        }
        return logical_id

    def template(self) -> dict[str, Any]:
        return {"Resources": self.resources}

    def resolve(self) -> Callable[[Any], Any]:
        return resolver(self.physical)


def policy(
    effect: str, resource: str, principal: str = "user-1", context: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context is not None:
        answer["context"] = context
    return answer


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> Reply:
    """One HTTP request (http.client: no retries, no redirects), the whole answer read."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def signed_request(url: str, method: str = "GET", body: bytes | None = None, timeout: float = 10) -> Reply:
    """A management API call with a SigV4 Authorization header (as boto3 sends it)."""
    return request(url, method=method, body=body, headers=SIGNED, timeout=timeout)
