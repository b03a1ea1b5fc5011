"""The front door's function URLs (``AWS::Lambda::Url``, which moto 5.2.5's CloudFormation skips), payload format 2.0.

Served at ``http://localhost:P/lambda-url/{urlId}/{path}``; see ``front_door.py`` for the rules.
``rawPath`` and ``requestContext.http.path`` are the path as the client encoded it (function URLs do
not decode it; API Gateway HTTP APIs do), query string values are decoded, repeated ones comma-joined.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cdk_serverless_patterns.local.front_door_core import (
    FrontDoorCore,
    InvokeResult,
    _Answer,
    _as_list,
    _Handler,
    _Request,
    _request_time,
)

_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|javascript|xml|yaml|x-www-form-urlencoded|.*\+json|.*\+xml))$", re.IGNORECASE
)


@dataclass
class _FunctionUrl:
    url_id: str
    logical_id: str
    stack_name: str
    function_arn: str
    auth_type: str
    stream: bool
    cors: dict[str, Any] | None


class FunctionUrls(FrontDoorCore):
    """Function URL auth (NONE, AWS_IAM), CORS, the 2.0 event, buffered and streamed responses."""

    def _load_urls(self, stack: str, resources: Mapping[str, Any], resolve: Callable[[Any], Any]) -> list[_FunctionUrl]:
        urls = []
        for lid, res in resources.items():
            if not isinstance(res, dict) or res.get("Type") != "AWS::Lambda::Url":
                continue
            props = res.get("Properties") or {}
            try:
                arn = str(resolve(props.get("TargetFunctionArn")))
            except Exception:
                continue
            if props.get("Qualifier") and arn.count(":") == 6:
                arn = f"{arn}:{props['Qualifier']}"
            urls.append(
                _FunctionUrl(
                    self._url_id(stack, lid),
                    lid,
                    stack,
                    arn,
                    str(props.get("AuthType", "NONE")),
                    props.get("InvokeMode") == "RESPONSE_STREAM",
                    props.get("Cors"),
                )
            )
        return urls

    # -- function URLs ------------------------------------------------------------------------------
    def _url_request(self, handler: _Handler, request: _Request, started: list[bool]) -> None:
        url_id, _, rest = request.raw_path[len("/lambda-url/") :].partition("/")
        with self._lock:
            function_url = self._urls.get(url_id)
        if function_url is None:
            raise _Answer(404, {"Message": None}, {"Content-Type": "application/json", "x-amzn-ErrorType": "NotFound"})
        cors = function_url.cors or {}
        origin = request.header("Origin")
        cors_headers: list[tuple[str, str]] = []
        if cors and origin:
            origins = [str(o) for o in cors.get("AllowOrigins") or []]
            if "*" in origins or origin in origins:
                cors_headers.append(("Access-Control-Allow-Origin", "*" if "*" in origins else origin))
                if cors.get("AllowCredentials"):
                    cors_headers.append(("Access-Control-Allow-Credentials", "true"))
                if cors.get("ExposeHeaders"):
                    cors_headers.append(("Access-Control-Expose-Headers", ",".join(cors["ExposeHeaders"])))
        if cors and request.method == "OPTIONS" and origin and request.header("Access-Control-Request-Method"):
            if cors.get("AllowMethods"):
                cors_headers.append(("Access-Control-Allow-Methods", ",".join(cors["AllowMethods"])))
            if cors.get("AllowHeaders"):
                cors_headers.append(("Access-Control-Allow-Headers", ",".join(cors["AllowHeaders"])))
            if cors.get("MaxAge") is not None:
                cors_headers.append(("Access-Control-Max-Age", str(cors["MaxAge"])))
            self._send(handler, 200, cors_headers, b"")
            return
        self._forwarded(request, lower=True)
        iam = None
        if function_url.auth_type == "AWS_IAM":
            # A SigV4 Authorization header, or a presigned URL (X-Amz-Algorithm and X-Amz-Credential in the query).
            access_key = request.sigv4_access_key()
            if access_key is None:
                raise _Answer(
                    403,
                    {"Message": "Forbidden"},
                    {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException"},
                )
            iam = {
                "accessKey": access_key,
                "accountId": self.account,
                "callerId": access_key,
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": f"arn:aws:iam::{self.account}:user/local",
                "userId": access_key,
            }
        now = time.time()
        request_id = str(uuid.uuid4())
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in request.header_list:
            if name.lower() == "cookie":
                cookies += [c.strip() for c in value.split(";") if c.strip()]
                continue
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        query: dict[str, str] = {}
        for name, value in request.query:
            query[name] = f"{query[name]},{value}" if name in query else value
        content_type = (request.header("Content-Type") or "").split(";")[0].strip()
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/" + rest,
            "rawQueryString": request.raw_query,
            "headers": headers,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        event["requestContext"] = {
            "accountId": self.account if iam else "anonymous",
            "apiId": url_id,
            **({"authorizer": {"iam": iam}} if iam else {}),
            "domainName": f"localhost:{self.port}",
            "domainPrefix": url_id,
            "http": {
                "method": request.method,
                "path": "/" + rest,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": request.header("User-Agent") or "",
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": _request_time(now),
            "timeEpoch": int(now * 1000),
        }
        if request.body:
            if _TEXT_TYPES.match(content_type):
                try:
                    event["body"], event["isBase64Encoded"] = request.body.decode("utf-8"), False
                except UnicodeDecodeError:
                    event["body"], event["isBase64Encoded"] = base64.b64encode(request.body).decode(), True
            else:
                event["body"], event["isBase64Encoded"] = base64.b64encode(request.body).decode(), True
        else:
            event["isBase64Encoded"] = False
        if function_url.stream:
            chunks, failed = self._stream(function_url.function_arn, event, None, self._client_alive(handler))
            self._send_stream(handler, chunks, failed, started, 502, raw_fallback=True)
            return
        result = self._invoke(function_url.function_arn, event, None, 900.0)
        status, response_headers, body = self._url_response(result)
        if function_url.cors:  # the URL's CORS configuration replaces the function's own CORS headers
            response_headers = [(k, v) for k, v in response_headers if not k.lower().startswith("access-control-")]
        self._send(handler, status, response_headers + cors_headers + [("x-amzn-RequestId", request_id)], body)

    @staticmethod
    def _url_response(result: InvokeResult) -> tuple[int, list[tuple[str, str]], bytes]:
        bad = _Answer(
            502, {"Message": None}, {"Content-Type": "application/json", "x-amzn-ErrorType": "InternalServerError"}
        )
        if result.function_error:
            raise bad
        try:
            answer = json.loads(result.payload)
        except ValueError:
            raise bad from None
        if not isinstance(answer, dict) or "statusCode" not in answer:
            return 200, [("Content-Type", "application/json")], result.payload
        status = answer.get("statusCode")
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise bad
        headers = answer.get("headers") or {}
        if not isinstance(headers, dict):
            raise bad
        out = [(str(k), v) for k, v in headers.items()]
        out += [("Set-Cookie", c) for c in _as_list(answer.get("cookies")) if isinstance(c, str)]
        body = answer.get("body")
        if body is None:
            data = b""
        elif isinstance(body, str):
            if answer.get("isBase64Encoded") is True:
                try:
                    data = base64.b64decode(body, validate=True)
                except ValueError:
                    raise bad from None
            else:
                data = body.encode("utf-8")
        else:
            data = json.dumps(body).encode()
        return status, out, data
