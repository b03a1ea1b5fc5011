"""The front door's REST APIs (``AWS::ApiGateway::*`` from the template), payload format 1.0.

moto 5.2.5 creates a REST API's resources and methods but no stages, authorizers, integration request
parameters, validators' behaviour or response transfer mode: this mixin reads them from the template
and serves ``http://localhost:P/restapis/{restApiId}/{stage}/_user_request_/{path}``. See ``front_door.py``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdk_serverless_patterns.local.front_door_core import (
    DEFAULT_INTEGRATION_TIMEOUT,
    TENANT_HEADER,
    TENANT_ID,
    Authorizer,
    FrontDoorCore,
    InvokeResult,
    _Answer,
    _arn_pattern,
    _function_arn,
    _gateway_error,
    _Handler,
    _jwt_claims,
    _Request,
    _request_time,
    _target,
)


def _path_of(lid: str, nodes: Mapping[str, _Node], parents: Mapping[str, str | None]) -> str:
    """The full path of a REST API resource (raises on a cycle or a missing parent)."""
    parts: list[str] = []
    seen: set[str] = set()
    current: str | None = lid
    while current is not None:
        if current in seen or current not in nodes:
            raise ValueError("broken resource tree")
        seen.add(current)
        parts.append(nodes[current].part)
        current = parents.get(current)
    return "/" + "/".join(reversed(parts))


@dataclass
class _Method:
    http_method: str
    auth_type: str
    authorizer: Authorizer | None
    integration: dict[str, Any]
    function_arn: str | None
    stream: bool
    arn_error: str | None = None
    required_parameters: list[str] = field(default_factory=list)
    api_key_required: bool = False
    identity_header: str | None = None
    models: dict[str, Any] = field(default_factory=dict)  # content type -> JSON schema (draft 4)


@dataclass
class _Node:
    part: str
    path: str
    children: list[_Node] = field(default_factory=list)
    methods: dict[str, _Method] = field(default_factory=dict)


@dataclass
class _RestApi:
    api_id: str
    logical_id: str
    stack_name: str
    root: _Node
    stages: dict[str, dict[str, str]]
    binary_media_types: list[str]
    gateway_responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_keys: set[str] = field(default_factory=set)


class RestApis(FrontDoorCore):
    """REST API routing, authorization, validation, proxy events and responses, MOCK and STREAM integrations."""

    def _load_rest(self, stack: str, resources: Mapping[str, Any], resolve: Callable[[Any], Any]) -> list[_RestApi]:
        apis: list[_RestApi] = []
        for api_lid, api_res in resources.items():
            if not isinstance(api_res, dict) or api_res.get("Type") != "AWS::ApiGateway::RestApi":
                continue
            props = api_res.get("Properties") or {}
            try:
                api_id = str(resolve({"Ref": api_lid}))
            except Exception:
                api_id = api_lid
            root = _Node("", "/")
            nodes: dict[str, _Node] = {}
            parents: dict[str, str | None] = {}
            stages: dict[str, dict[str, str]] = {}
            authorizers: dict[str, Authorizer] = {}
            validators: dict[str, tuple[bool, bool]] = {}
            models: dict[str, Any] = {}
            gateway_responses: dict[str, dict[str, Any]] = {}
            cognito: dict[str, str] = {}
            for lid, res in resources.items():
                if not isinstance(res, dict) or _target((res.get("Properties") or {}).get("RestApiId")) != api_lid:
                    continue
                rprops = res.get("Properties") or {}
                kind = res.get("Type")
                if kind == "AWS::ApiGateway::Resource":
                    nodes[lid] = _Node(str(rprops.get("PathPart", "")), "")
                    parent = _target(rprops.get("ParentId"))
                    parents[lid] = None if parent == api_lid else parent
                elif kind == "AWS::ApiGateway::Stage" and rprops.get("StageName"):
                    stages[str(rprops["StageName"])] = {
                        str(k): str(v) for k, v in (rprops.get("Variables") or {}).items()
                    }
                elif kind == "AWS::ApiGateway::Deployment" and rprops.get("StageName"):
                    stages.setdefault(str(rprops["StageName"]), {})
                elif kind == "AWS::ApiGateway::Authorizer":
                    authorizer = self._authorizer(f"{stack}/{lid}", rprops, resolve, v2=False)
                    if authorizer:
                        authorizers[lid] = authorizer
                    elif rprops.get("Type") == "COGNITO_USER_POOLS":
                        source = str(rprops.get("IdentitySource") or "method.request.header.Authorization")
                        cognito[lid] = source.rsplit(".", 1)[-1]
                elif kind == "AWS::ApiGateway::RequestValidator":
                    validators[lid] = (
                        bool(rprops.get("ValidateRequestBody")),
                        bool(rprops.get("ValidateRequestParameters")),
                    )
                elif kind == "AWS::ApiGateway::Model":
                    schema = rprops.get("Schema")
                    if isinstance(schema, str):
                        with contextlib.suppress(ValueError):
                            schema = json.loads(schema)
                    models[lid] = schema
                    if rprops.get("Name"):
                        models[str(rprops["Name"])] = schema
                elif kind == "AWS::ApiGateway::GatewayResponse" and rprops.get("ResponseType"):
                    gateway_responses[str(rprops["ResponseType"])] = dict(rprops)

            for lid, node in nodes.items():
                parent = parents[lid]
                if parent is not None and parent not in nodes:
                    continue
                node.path = _path_of(lid, nodes, parents)
                (root if parent is None else nodes[parent]).children.append(node)
            for res in resources.values():
                rprops = (res.get("Properties") or {}) if isinstance(res, dict) else {}
                if res.get("Type") != "AWS::ApiGateway::Method" or _target(rprops.get("RestApiId")) != api_lid:
                    continue
                owner = _target(rprops.get("ResourceId"))
                owner_node = root if owner == api_lid else nodes.get(owner or "")
                if owner_node is None:
                    continue
                integration = rprops.get("Integration") or {}
                function_arn, stream, arn_error = None, False, None
                if integration.get("Type") in ("AWS_PROXY", "AWS") and "Uri" in integration:
                    try:
                        function_arn, stream = _function_arn(str(resolve(integration["Uri"])))
                    except Exception as error:
                        arn_error = str(error)
                stream = stream or integration.get("ResponseTransferMode") == "STREAM"
                auth_type = str(rprops.get("AuthorizationType", "NONE"))
                authorizer = authorizers.get(_target(rprops.get("AuthorizerId")) or "")
                method = str(rprops.get("HttpMethod", "")).upper()
                validate_body, validate_parameters = validators.get(
                    _target(rprops.get("RequestValidatorId")) or "", (False, False)
                )
                required = [
                    str(name)
                    for name, needed in (rprops.get("RequestParameters") or {}).items()
                    if needed is True and validate_parameters
                ]
                method_models: dict[str, Any] = {}
                if validate_body:
                    for content_type, model in (rprops.get("RequestModels") or {}).items():
                        key = _target(model) or (model if isinstance(model, str) else "")
                        if isinstance(models.get(key), dict):
                            method_models[str(content_type).lower()] = models[key]
                identity = cognito.get(_target(rprops.get("AuthorizerId")) or "")
                owner_node.methods[method] = _Method(
                    method,
                    auth_type,
                    authorizer,
                    integration,
                    function_arn,
                    stream,
                    arn_error,
                    required_parameters=required,
                    models=method_models,
                    api_key_required=rprops.get("ApiKeyRequired") is True,
                    identity_header=identity,
                )
            binary = [str(item) for item in props.get("BinaryMediaTypes") or []]
            api_keys = {
                str(res["Properties"]["Value"])
                for res in resources.values()
                if isinstance(res, dict)
                and res.get("Type") == "AWS::ApiGateway::ApiKey"
                and isinstance((res.get("Properties") or {}).get("Value"), str)
            }
            apis.append(_RestApi(api_id, api_lid, stack, root, stages, binary, gateway_responses, api_keys))
        return apis

    # -- REST APIs ----------------------------------------------------------------------------------
    @staticmethod
    def _match(node: _Node, segments: list[str]) -> tuple[_Node, dict[str, str]] | None:
        if not segments:
            return node, {}
        head, rest = segments[0], segments[1:]
        literal = [c for c in node.children if not c.part.startswith("{")]
        params = [c for c in node.children if c.part.startswith("{") and not c.part.endswith("+}")]
        greedy = [c for c in node.children if c.part.endswith("+}")]
        decoded = urllib.parse.unquote(head, errors="replace")
        for child in literal:
            if child.part == decoded:
                found = RestApis._match(child, rest)
                if found:
                    return found
        for child in params:
            found = RestApis._match(child, rest)
            if found:
                return found[0], {child.part[1:-1]: head, **found[1]}
        for child in greedy:
            return child, {child.part[1:-2]: "/".join(segments)}
        return None

    def _rest_request(self, handler: _Handler, request: _Request, started: list[bool]) -> None:
        api_box: list[_RestApi] = []
        try:
            self._rest_route(handler, request, started, api_box)
        except _Answer as answer:
            if api_box:
                self._apply_gateway_response(api_box[0], answer)
            raise

    @staticmethod
    def _apply_gateway_response(api: _RestApi, answer: _Answer) -> None:
        """Applies the API's ``AWS::ApiGateway::GatewayResponse`` for the error (static headers, status, template)."""
        if not api.gateway_responses:
            return
        kinds = [answer.response_type, "DEFAULT_4XX" if answer.status < 500 else "DEFAULT_5XX"]
        config = next((api.gateway_responses[k] for k in kinds if k and k in api.gateway_responses), None)
        if config is None:
            return
        if config.get("StatusCode"):
            with contextlib.suppress(ValueError):
                answer.status = int(config["StatusCode"])
        for target, source in (config.get("ResponseParameters") or {}).items():
            text = str(source)
            if str(target).startswith("gatewayresponse.header.") and len(text) >= 2 and text[0] == text[-1] == "'":
                answer.headers[str(target)[len("gatewayresponse.header.") :]] = text[1:-1]
        template = (config.get("ResponseTemplates") or {}).get("application/json")
        if isinstance(template, str):
            message = answer.message
            text = template.replace("$context.error.messageString", json.dumps(message))
            text = text.replace("$context.error.message", "" if message is None else message)
            answer.body = text.encode()

    def _rest_route(self, handler: _Handler, request: _Request, started: list[bool], api_box: list[_RestApi]) -> None:
        parts = request.raw_path.split("/", 5)  # "", restapis, id, stage, _user_request_, path
        if len(parts) < 5 or parts[4] != "_user_request_":
            raise _Answer(404, {"message": "Not Found"})
        api_id, stage = parts[2], urllib.parse.unquote(parts[3])
        with self._lock:
            api = self._rest.get(api_id)
        if api is None:
            raise _Answer(404, {"message": "Not Found"})
        if stage not in api.stages:
            raise _gateway_error(403, "Forbidden", "ForbiddenException")
        api_box.append(api)
        # REST APIs give the function the path, its parameters and the method ARN as the client encoded
        # them (HTTP APIs decode them; REST APIs and function URLs do not): only routing decodes literals.
        path = "/" + (parts[5] if len(parts) > 5 else "")
        inner = path[1:].removesuffix("/")  # one trailing slash matches the resource without it, as in AWS
        segments = inner.split("/") if inner else []
        found = self._match(api.root, segments) if all(segments) else None
        method = None
        if found:
            node, path_params = found
            method = node.methods.get(request.method) or node.methods.get("ANY")
        if not found or method is None:
            raise _gateway_error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        node, path_params = found
        stage_variables = api.stages[stage]
        now = time.time()
        request_id = str(uuid.uuid4())
        self._forwarded(request)
        headers, multi_headers = request.headers_v1()
        query, multi_query = request.query_v1()
        method_arn = (
            f"arn:aws:execute-api:{self.region}:{self.account}:{api.api_id}/{stage}/{request.method}/{path.lstrip('/')}"
        )
        request_context: dict[str, Any] = {
            "resourceId": hashlib.sha1(node.path.encode()).hexdigest()[:6],
            "resourcePath": node.path,
            "httpMethod": request.method,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "path": f"/{stage}{path}",
            "accountId": self.account,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": request.header("User-Agent"),
                "user": None,
            },
            "domainName": f"localhost:{self.port}",
            "apiId": api.api_id,
        }
        event: dict[str, Any] = {
            "resource": node.path,
            "path": path or "/",
            "httpMethod": request.method,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "pathParameters": path_params or None,
            "stageVariables": stage_variables or None,
            "requestContext": request_context,
        }
        context: dict[str, Any] = {"requestId": request_id, "stage": stage, "apiId": api.api_id}
        if method.auth_type == "CUSTOM" and method.authorizer is None:
            raise _gateway_error(500, None, "AuthorizerConfigurationException")  # an authorizer we cannot run
        if method.auth_type == "CUSTOM" and method.authorizer is not None:
            authorizer = method.authorizer
            values = self._identity_values(authorizer, request, path_params, request_context, stage_variables)
            if authorizer.type == "TOKEN":
                auth_event: dict[str, Any] = {
                    "type": "TOKEN",
                    "authorizationToken": values[0] if values else "",
                    "methodArn": method_arn,
                }
            else:
                auth_event = {"type": "REQUEST", "methodArn": method_arn, **event}
            auth = self._authorize(authorizer, values, auth_event, method_arn)
            authorizer_context = {k: self._stringify(v) for k, v in auth.context.items()}
            request_context["authorizer"] = {
                **authorizer_context,
                "principalId": auth.principal_id,
                "integrationLatency": 0,
            }
            context["authorizer"] = {**auth.context, "principalId": auth.principal_id}
        elif method.auth_type == "AWS_IAM" and not (request.header("Authorization") or "").startswith(
            "AWS4-HMAC-SHA256"
        ):
            raise _gateway_error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        elif method.auth_type == "COGNITO_USER_POOLS":
            claims = _jwt_claims(request.header(method.identity_header or "Authorization") or "")
            if claims is None:
                raise _gateway_error(401, "Unauthorized", "UnauthorizedException")
            request_context["authorizer"] = {"claims": claims}
            context["authorizer"] = {"claims": claims}
        if method.api_key_required:
            key = request.header("x-api-key")
            if not key or (api.api_keys and key not in api.api_keys):
                raise _gateway_error(403, "Forbidden", "ForbiddenException")
            request_context["identity"]["apiKey"] = key
        self._validate(method, request, path_params)
        integration = method.integration
        kind = integration.get("Type")
        if kind == "MOCK":
            self._mock(handler, integration)
            return
        if kind != "AWS_PROXY" or method.function_arn is None:
            raise _gateway_error(500, "Internal server error", "InternalServerErrorException")
        # Mapped ``integration.request.header.*`` values are headers of the Invoke request to Lambda, not of
        # the proxy event: only ``X-Amz-Tenant-Id`` matters here (the tenant of the invoke). A client's own
        # X-Amz-Tenant-Id header stays a header of the event and never becomes the tenant.
        tenant_id = None
        for target, source in (integration.get("RequestParameters") or {}).items():
            if str(target).lower() != f"integration.request.header.{TENANT_HEADER}":
                continue
            value = self._parameter(str(source), request, path_params, context, stage_variables)
            if value is None:
                continue
            if not TENANT_ID.fullmatch(value):  # Lambda's Invoke refuses it (400): API Gateway answers 500
                raise _gateway_error(500, "Internal server error", "InternalServerErrorException")
            tenant_id = value
        event["body"], event["isBase64Encoded"] = self._body_v1(request, api.binary_media_types)
        timeout = float(integration.get("TimeoutInMillis", DEFAULT_INTEGRATION_TIMEOUT * 1000)) / 1000
        if method.stream:
            chunks, failed = self._stream(method.function_arn, event, tenant_id, self._client_alive(handler))
            self._send_stream(handler, chunks, failed, started, 502)
            return
        result = self._invoke(method.function_arn, event, tenant_id, timeout)
        status, response_headers, body = self._proxy_response_v1(result, request, api.binary_media_types)
        response_headers.append(("x-amzn-RequestId", request_id))
        self._send(handler, status, response_headers, body)

    def _validate(self, method: _Method, request: _Request, path_params: Mapping[str, str]) -> None:
        """The method's request validator: required parameters, then the body against its model (JSON schema 4)."""
        missing = [
            name.rsplit(".", 1)[-1]
            for name in method.required_parameters
            if self._parameter(name, request, path_params, {}, {}) is None
        ]
        if missing:
            message = f"Missing required request parameters: [{', '.join(missing)}]"
            raise _gateway_error(400, message, "BadRequestParameters")
        if not method.models:
            return
        content_type = (request.header("Content-Type") or "application/json").split(";")[0].strip().lower()
        schema = method.models.get(content_type, method.models.get("$default"))
        if schema is None:
            return
        try:
            jsonschema: Any = importlib.import_module("jsonschema")
        except ImportError:  # pragma: no cover - jsonschema comes with cfn-lint in the dev dependencies
            return
        try:
            document = json.loads(request.body or b"{}")
            jsonschema.Draft4Validator(schema).validate(document)
        except (ValueError, jsonschema.ValidationError, jsonschema.SchemaError):
            raise _gateway_error(400, "Invalid request body", "BadRequestBody") from None

    @staticmethod
    def _body_v1(request: _Request, binary_types: list[str]) -> tuple[str | None, bool]:
        if not request.body:
            return None, False
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if any(re.fullmatch(_arn_pattern(t.lower()).pattern, content_type) for t in binary_types):
            return base64.b64encode(request.body).decode(), True
        try:
            return request.body.decode("utf-8"), False
        except UnicodeDecodeError:  # AWS would mangle these bytes; base64 keeps them
            return base64.b64encode(request.body).decode(), True

    @staticmethod
    def _proxy_response_v1(
        result: InvokeResult, request: _Request, binary_types: list[str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        bad = _gateway_error(502, "Internal server error", "InternalServerErrorException")
        if getattr(result, "status_code", 200) != 200:  # the Invoke API refused the call (not a function error)
            raise _gateway_error(500, "Internal server error", "InternalServerErrorException")
        if result.function_error:
            raise bad
        try:
            answer = json.loads(result.payload)
        except ValueError:
            raise bad from None
        allowed = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
        if not isinstance(answer, dict) or set(answer) - allowed:
            raise bad
        status = answer.get("statusCode")
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise bad
        headers, multi = answer.get("headers"), answer.get("multiValueHeaders")
        if headers is not None and not (
            isinstance(headers, dict) and all(isinstance(v, str | int | float | bool) for v in headers.values())
        ):
            raise bad
        if multi is not None and not (
            isinstance(multi, dict) and all(isinstance(v, list | str) for v in multi.values())
        ):
            raise bad
        body = answer.get("body")
        if body is not None and not isinstance(body, str):
            raise bad
        data = (body or "").encode("utf-8")
        if answer.get("isBase64Encoded") is True and body:
            accept = (request.header("Accept") or "").split(",")[0].split(";")[0].strip().lower()
            if binary_types and any(re.fullmatch(_arn_pattern(t.lower()).pattern, accept) for t in binary_types):
                try:
                    data = base64.b64decode(body, validate=True)
                except ValueError:
                    raise bad from None
        return status, RestApis._merge_headers(headers, multi), data

    def _mock(self, handler: _Handler, integration: Mapping[str, Any]) -> None:
        responses = integration.get("IntegrationResponses") or [{"StatusCode": "200"}]
        chosen = next((r for r in responses if not r.get("SelectionPattern")), responses[0])
        status = int(chosen.get("StatusCode", 200))
        headers: list[tuple[str, str]] = []
        for target, source in (chosen.get("ResponseParameters") or {}).items():
            text = str(source)
            if str(target).startswith("method.response.header.") and len(text) >= 2 and text[0] == text[-1] == "'":
                headers.append((str(target)[len("method.response.header.") :], text[1:-1]))
        template = (chosen.get("ResponseTemplates") or {}).get("application/json")
        body = str(template).encode() if template else b""
        if body:
            headers.append(("Content-Type", "application/json"))
        self._send(handler, status, headers, body)
