"""The HTTP front door: REST APIs, function URLs and WebSocket APIs of a synthesized template, on localhost.

moto 5.2.5's CloudFormation drops what a caller needs to reach a function over HTTP: it creates a
REST API's resources and methods but no stages, authorizers, integration request parameters or
response transfer mode; it skips ``AWS::Lambda::Url`` and all of API Gateway v2. Its own
``execute-api`` dispatch does not run authorizers. So the front door reads those resources from
the template itself and serves them on one port of ``localhost``, invoking functions through an
:class:`Invoker` (the emulator's Lambda runner). It holds no pattern logic: it moves requests and
events the way API Gateway and Lambda's URL service do.

URLs (path based, always host ``localhost``):

- REST: ``http://localhost:P/restapis/{restApiId}/{stage}/_user_request_/{path}``
- function URL: ``http://localhost:P/lambda-url/{urlId}/{path}``
- WebSocket: ``ws://localhost:P/ws/{apiId}/{stage}``; its management API (``@connections``) at
  ``http://localhost:P/ws/{apiId}/{stage}/@connections/{connectionId}`` (any path ending in
  ``/@connections/{id}`` is accepted, so ``https://{domainName}/{stage}`` style clients work over http);
  :meth:`FrontDoor.patch_moto_management_api` routes moto's ``apigatewaymanagementapi`` there too.

REST APIs (payload format 1.0): the resource tree with ``{param}`` and greedy ``{param+}`` parts
(literal parts first, then a parameter, then greedy), ``ANY``; unknown path or method: 403
``{"message":"Missing Authentication Token"}``; unknown stage: 403 ``{"message":"Forbidden"}``.
``AWS_PROXY`` integrations build the documented event and map the proxy response strictly (a
response that is not an object with an integer ``statusCode`` and only the documented keys is
malformed: 502 ``{"message": "Internal server error"}``, as is a function error; a call longer than
the integration's ``TimeoutInMillis`` (default 29 s) is 504). ``MOCK`` integrations answer from their
integration responses (static header values and the ``application/json`` template as is).
``ResponseTransferMode: STREAM`` (or a ``/response-streaming-invocations`` URI) streams: status and
headers from the function's JSON prelude, then the body as HTTP/1.1 chunks as they arrive; an error
after the first byte ends the connection without the last chunk (the client sees a truncated body).
Request validators (required ``method.request.*`` parameters: 400 ``Missing required request
parameters: [..]``; the body against the method's model, JSON schema draft 4 via ``jsonschema``: 400
``Invalid request body``) run after authorization, as in AWS. ``AWS::ApiGateway::GatewayResponse``
(static headers, status code, ``$context.error.message[String]`` in the JSON template) shapes the
front door's own error answers. ``ApiKeyRequired``: 403 ``Forbidden`` without ``x-api-key`` (checked
against the template's ``AWS::ApiGateway::ApiKey`` values when it has any). ``COGNITO_USER_POOLS``:
401 without an unexpired JWT; its claims (not signature-verified) reach ``requestContext.authorizer.claims``.

Lambda authorizers (TOKEN and REQUEST, REST and WebSocket ``$connect``): identity sources checked
before any call (missing or not matching ``IdentityValidationExpression``: 401), the documented event,
the returned policy evaluated against the method ARN (explicit Deny wins, ``*`` and ``?`` wildcards;
deny: 403
``{"message": "User is not authorized to access this resource with an explicit deny"}``, no Allow: 403
``... access this resource``, the texts of AWS's knowledge-center article api-gateway-403-error-lambda-authorizer),
``Unauthorized`` raised by the authorizer: 401, any other error or a malformed answer:
500. Results are cached per authorizer and identity source values for ``AuthorizerResultTtlInSeconds``
(default 300, 0 = off); a cached policy is evaluated against each new method ARN. The context
reaches ``requestContext.authorizer`` (values as strings, as REST APIs deliver them) and
``context.authorizer.*`` request parameter mappings. ``AuthorizerResultTtlInSeconds`` above 3600 (or
not an integer) makes :meth:`FrontDoor.add_stack` raise, as CloudFormation refuses it; removing a
stack drops its cached authorizer answers. Identity sources may be headers, query strings,
``stageVariables.*`` and ``context.*``; the cache key is every one of their values.

Request parameter mappings (``integration.request.header.*``) of a Lambda proxy integration are headers
of the Invoke request API Gateway sends to Lambda, not of the proxy event: the event's headers are the
client's, unchanged. The one that matters here is ``X-Amz-Tenant-Id``: its mapped value becomes the
invoke's tenant id, after Lambda's own check of a ``TenantId`` (1-256 of ``[a-zA-Z0-9._:/=+-@ ]``, from
botocore's lambda model; anything else, CR/LF included, is refused by Lambda and API Gateway answers 500
without invoking). A client's own ``X-Amz-Tenant-Id`` header never becomes the tenant.

Encoding: REST APIs and function URLs give the function the path as the client encoded it (``path``,
``pathParameters``, ``rawPath``, the method ARN; API Gateway HTTP APIs decode them, REST APIs do not,
per live captures published in hotsock/voker#8 and serverless/serverless#5037); literal path parts
route on the decoded text. Query string values are decoded.

Function URLs (payload format 2.0): ``AuthType`` ``AWS_IAM`` needs a SigV4 ``Authorization`` header
(its signature is not verified: moto accepts any credentials) else 403 ``{"Message":"Forbidden"}``;
the response rules of function URLs (JSON without ``statusCode``: 200 ``application/json``);
``InvokeMode: RESPONSE_STREAM`` streams like STREAM above; CORS preflights from the ``Cors`` config.

WebSocket APIs: see ``front_door_ws.py``.

Not served (say so rather than pretend): HTTP APIs (API Gateway v2 ``HTTP``), a REST API defined by
an OpenAPI ``Body``, non-proxy ``AWS``/``HTTP`` integrations and mapping templates (500), resource
policies, throttling and usage plans; SigV4 signatures and Cognito JWT signatures are not verified.

Layout: ``front_door_core.py`` (server, invoking, streaming, authorizers), ``front_door_rest.py``,
``front_door_url.py``, ``front_door_ws.py`` (mixins); this module combines them.

Hostile input: every request gets an HTTP answer (400/404/413/431/500...) and never kills the
server; request bodies are capped at 10 MB (API Gateway's limit: 413 ``Request Too Long``), reads of a
slow client time out (60 s per read; a slow client holds one thread, never the server). Body framing
is strict against request smuggling: ``Transfer-Encoding`` other than exactly ``chunked``, both it and
``Content-Length``, several or non-digit ``Content-Length`` values: 400, then the connection closes.
Response headers from functions are dropped when they carry CR/LF/NUL or are not latin-1. A streamed
response whose client disconnects stops reading the function's stream at once (also while the
function is silent: the socket is polled for EOF), so a client that half-closes mid-stream is gone too.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from cdk_serverless_patterns.local.front_door_core import (
    Authorizer,
    AuthResult,
    Endpoint,
    FrontDoorCore,
    Invoker,
    InvokeResult,
    StreamingInvoke,
    _Answer,
    _Handler,
    evaluate_policy,
)
from cdk_serverless_patterns.local.front_door_rest import RestApis
from cdk_serverless_patterns.local.front_door_url import FunctionUrls
from cdk_serverless_patterns.local.front_door_ws import WebSocketApis


class FrontDoor(RestApis, FunctionUrls, WebSocketApis):
    """Serves the REST APIs, function URLs and WebSocket APIs of deployed stacks on one localhost port."""

    # -- stacks -------------------------------------------------------------------------------------
    def add_stack(self, stack_name: str, template: Mapping[str, Any], resolve: Callable[[Any], Any]) -> list[Endpoint]:
        """Serves the REST APIs, function URLs and WebSocket APIs of a deployed stack's template.

        ``resolve`` resolves CloudFormation intrinsics to the stack's physical values.
        """
        resources: Mapping[str, Any] = template.get("Resources") or {}
        self.remove_stack(stack_name)
        endpoints: list[Endpoint] = []
        rest = self._load_rest(stack_name, resources, resolve)
        urls = self._load_urls(stack_name, resources, resolve)
        sockets = self._load_ws(stack_name, resources, resolve)
        with self._lock:
            for api in rest:
                self._rest[api.api_id] = api
                for stage in api.stages:
                    url = f"{self.endpoint}/restapis/{api.api_id}/{stage}/_user_request_/"
                    endpoints.append(Endpoint("rest", api.logical_id, url, stack_name))
            for function_url in urls:
                self._urls[function_url.url_id] = function_url
                url = f"{self.endpoint}/lambda-url/{function_url.url_id}/"
                endpoints.append(Endpoint("function_url", function_url.logical_id, url, stack_name))
            for ws in sockets:
                self._ws[ws.api_id] = ws
                for stage in ws.stages:
                    url = f"ws://localhost:{self.port}/ws/{ws.api_id}/{stage}"
                    endpoints.append(Endpoint("websocket", ws.logical_id, url, stack_name))
        return endpoints

    def remove_stack(self, stack_name: str) -> None:
        """Stops serving a stack's APIs and URLs; its WebSocket clients are disconnected."""
        with self._lock:
            for table in (self._rest, self._urls, self._ws):
                for key in [key for key, item in table.items() if item.stack_name == stack_name]:
                    del table[key]
            for cached in [cached for cached in self._auth_cache if str(cached[0]).startswith(f"{stack_name}/")]:
                del self._auth_cache[cached]  # a redeployed authorizer answers afresh
            gone = [cid for cid, client in self._clients.items() if client.api_id not in self._ws]
            clients = [self._clients.pop(cid) for cid in gone]
        for client in clients:
            client.connection.close(1001, "Going away")

    def attribute(self, stack_name: str, logical_id: str, name: str) -> str | None:
        """A resource attribute moto cannot answer (``AWS::Lambda::Url`` ``FunctionUrl``/``FunctionArn``, a WebSocket
        API's ``ApiEndpoint`` and its id, ``ApiId``, which ``Ref`` answers), else None."""
        url_id = self._url_id(stack_name, logical_id)
        with self._lock:
            function_url = self._urls.get(url_id)
            ws = next((w for w in self._ws.values() if (w.stack_name, w.logical_id) == (stack_name, logical_id)), None)
        if function_url is not None:
            if name == "FunctionUrl":
                return f"{self.endpoint}/lambda-url/{url_id}/"
            if name == "FunctionArn":
                return function_url.function_arn
        if ws is not None and name == "ApiEndpoint":
            return f"ws://localhost:{self.port}/ws/{ws.api_id}"
        if ws is not None and name == "ApiId":  # what Ref answers for the API
            return ws.api_id
        return None

    # -- serving ------------------------------------------------------------------------------------
    def _serve(self, handler: _Handler) -> None:
        streaming_started = [False]
        try:
            request = self._read_request(handler)
            parts = request.raw_path.split("/")
            if len(parts) >= 3 and parts[1] == "ws" and "@connections" in parts:
                self._management(handler, request)
            elif request.raw_path.startswith("/ws/"):
                self._websocket(handler, request)
            elif re.search(r"/@connections/[^/]+$", request.raw_path):
                self._management(handler, request)
            elif request.raw_path.startswith("/restapis/"):
                self._rest_request(handler, request, streaming_started)
            elif request.raw_path.startswith("/lambda-url/"):
                self._url_request(handler, request, streaming_started)
            else:
                raise _Answer(404, {"message": "Not Found"})
        except _Answer as answer:
            if not streaming_started[0]:
                with contextlib.suppress(OSError):
                    self._send(handler, answer.status, list(answer.headers.items()), answer.body)
            else:
                handler.close_connection = True
        except (ConnectionError, TimeoutError, OSError):
            handler.close_connection = True
        except Exception:  # a bug here must still be an HTTP answer, never a dead connection
            handler.close_connection = True
            if not streaming_started[0]:
                body = json.dumps({"message": "Internal server error"}).encode()
                with contextlib.suppress(OSError):
                    self._send(handler, 500, [("Content-Type", "application/json")], body)


__all__ = [
    "AuthResult",
    "Authorizer",
    "Endpoint",
    "FrontDoor",
    "FrontDoorCore",
    "InvokeResult",
    "Invoker",
    "StreamingInvoke",
    "evaluate_policy",
]
