"""Custom resources run as CloudFormation runs them: Create and Delete, waiting for the ResponseURL.

Measured on moto 5.2.5 (``moto.cloudformation.custom_model.CustomModel``):

- only ``Custom::*`` types are custom resources; ``AWS::CloudFormation::CustomResource`` (the type of
  CDK's ``CustomResource`` without ``resourceType``) is skipped as an unsupported type;
- Create invokes the ``ServiceToken`` function in a thread and goes on: resources that read the
  custom resource's attributes (``Fn::GetAtt``) or ``Ref`` get ``None`` and the resource's own name;
  the ``ResponseURL`` is ``http://host.docker.internal:5000/...`` (moto's server seen from a Docker
  container), which nothing reaches here; a ``FAILED`` answer is ignored (the stack stays
  ``CREATE_IN_PROGRESS`` and the CDK CLI waits for ever); the answer's ``PhysicalResourceId`` is
  dropped;
- Delete sends nothing to the function (the model has no ``delete``), so e.g. S3
  ``autoDeleteObjects`` never empties its bucket; and moto deletes a stack's resources in set order,
  so the function could be gone before its custom resource;
- property values are passed as they are in the template (CloudFormation passes them as strings).

CloudFormation sends the request, waits for the answer PUT to the ``ResponseURL`` (a presigned S3
URL) and only then creates what depends on the resource; a ``FAILED`` answer fails the resource
(and rolls the stack back, sending Delete to the custom resources already created); Delete goes to
the function before the resources it depends on are deleted. This module does that:

- Create (both types) invokes the function (moto's ``invoke``, which ``LocalCloud`` routes to the
  Lambda runner) with CloudFormation's event; ``ResponseURL`` is moto's own ``cfnresponse`` route on
  the endpoint the request came in on (``http://localhost:<port>/cloudformation_<region>/cfnresponse``,
  plus the request id); the answer is taken there (:func:`deliver`) and the stack goes on only then.
  ``SUCCESS``: ``Ref`` is the answer's ``PhysicalResourceId`` and ``Fn::GetAtt`` reads its ``Data``;
  ``FAILED``: the resource fails with the answer's ``Reason`` (``cloudformation_failures`` records
  ``CREATE_FAILED`` and rolls back). Property values are passed as strings, as CloudFormation does.
- Delete: before moto deletes a stack's other resources, each custom resource (latest created
  first) gets its Delete event (with its ``PhysicalResourceId``) and the stack waits for the answer;
  a ``FAILED`` answer or no answer fails the deletion, as CloudFormation's ``DELETE_FAILED`` does.
- Waiting: CloudFormation waits up to the resource's ``ServiceTimeout`` (default one hour). We wait
  up to ``ServiceTimeout`` or :data:`DEFAULT_TIMEOUT` (``CDK_SP_CUSTOM_RESOURCE_TIMEOUT`` seconds,
  default 120), whichever is smaller; and when the function's invoke ended in an error without an
  answer, only :data:`ERROR_GRACE` more (CloudFormation would wait the full time for an answer that
  cannot come).

Not bridged: Update events (``LocalCloud`` never updates a stack in place), SNS topics as
``ServiceToken`` (the resource fails, naming the token), ``NoEcho``. While a custom resource runs,
the ``CreateStack`` / ``DeleteStack`` call that started it waits (CloudFormation answers at once and
works on in the background); the CDK CLI and :meth:`LocalCloud.destroy` wait for that call.

CDK's own custom resources are Node.js functions: they run on the runner's Node.js runtime
(``node_runtime/bootstrap.mjs``), which also carries their HTTPS answer to this plain-HTTP
``ResponseURL``; they need the AWS SDK v3 on ``NODE_PATH`` (``lambda_runtime.node_path``).

Delete this module (and its line in ``patches.PATCHES``) when moto waits for custom resources and
sends them Delete.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
from typing import Any

LOG = logging.getLogger(__name__)

#: How long a stack waits for a custom resource's answer (``CDK_SP_CUSTOM_RESOURCE_TIMEOUT`` overrides).
DEFAULT_TIMEOUT = 120.0
#: How long an answer may still arrive after the function's invoke ended in an error.
ERROR_GRACE = 2.0
#: The type CloudFormation gives custom resources besides ``Custom::*``.
GENERIC_TYPE = "AWS::CloudFormation::CustomResource"


class CustomResourceFailed(Exception):
    """A custom resource answered ``FAILED``, or did not answer in time."""


class _Waiter:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.response: dict[str, Any] | None = None


_PENDING: dict[str, _Waiter] = {}
_PENDING_LOCK = threading.Lock()


def deliver(body: bytes | str) -> bool:
    """Hands an answer PUT to a ``ResponseURL`` to the stack waiting for it; ``False`` if none is."""
    try:
        response = json.loads(body)
    except (ValueError, TypeError):
        return False
    if not isinstance(response, dict):
        return False
    with _PENDING_LOCK:
        waiter = _PENDING.get(str(response.get("RequestId", "")))
    if waiter is None or waiter.event.is_set():
        return False
    waiter.response = response
    waiter.event.set()
    return True


def _timeout(properties: dict[str, Any]) -> float:
    limit = float(os.environ.get("CDK_SP_CUSTOM_RESOURCE_TIMEOUT") or DEFAULT_TIMEOUT)
    try:
        own = float(properties.get("ServiceTimeout") or 0)
    except (TypeError, ValueError):
        own = 0.0
    return min(limit, own) if own > 0 else limit


def _as_strings(value: Any) -> Any:
    """Property values as CloudFormation passes them to a custom resource: scalars as strings."""
    if isinstance(value, dict):
        return {key: _as_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_strings(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _endpoint() -> str:
    """The endpoint the current request came in on (moto's server), else ``AWS_ENDPOINT_URL``."""
    try:
        from flask import has_request_context, request

        if has_request_context():
            return str(request.host_url).rstrip("/")
    except ImportError:  # pragma: no cover - moto's server always has flask
        pass
    return os.environ.get("AWS_ENDPOINT_URL", "http://localhost:5000").rstrip("/")


def _request(model: Any, account_id: str, region: str, request_type: str) -> dict[str, Any]:
    """Sends ``request_type`` to the custom resource's function; returns the ``SUCCESS`` answer."""
    from moto.awslambda.utils import get_backend
    from moto.moto_api._internal import mock_random

    token = str(model.cr_properties.get("ServiceToken", ""))
    if ":sns:" in token:
        raise CustomResourceFailed(f"ServiceToken {token}: SNS-backed custom resources are not emulated")
    try:
        function = get_backend(account_id, region).get_function(token)
    except Exception as error:
        raise CustomResourceFailed(f"ServiceToken {token}: no such function ({error})") from error
    request_id = str(mock_random.uuid4())
    query = urllib.parse.urlencode({"stack": model.cr_stack_id, "request": request_id})
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": token,
        "ResponseURL": f"{model.cr_endpoint}/cloudformation_{region}/cfnresponse?{query}",
        "StackId": model.cr_stack_id,
        "RequestId": request_id,
        "LogicalResourceId": model.logical_id,
        "ResourceType": model.cr_type,
        "ResourceProperties": _as_strings(model.cr_properties),
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = model.resource_name
    waiter = _Waiter()
    with _PENDING_LOCK:
        _PENDING[request_id] = waiter
    what = f"{model.logical_id} ({model.cr_type}) {request_type}"
    try:
        response_headers: dict[str, str] = {}
        deadline = time.monotonic() + _timeout(model.cr_properties)
        failure: str | None = None
        try:
            answer = function.invoke(json.dumps(event), {}, response_headers)
            if response_headers.get("x-amz-function-error"):
                text = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
                failure = f"the function failed: {text[:1000]}"
        except Exception as error:  # moto's invoke raises its JSON errors (throttling, no runner...)
            failure = f"the function could not be invoked: {error}"
        if failure is not None:
            deadline = min(deadline, time.monotonic() + ERROR_GRACE)
        if not waiter.event.wait(max(0.0, deadline - time.monotonic())):
            raise CustomResourceFailed(
                f"{what}: no answer at the ResponseURL"
                + (f" ({failure})" if failure else f" within {_timeout(model.cr_properties):g} s")
            )
    finally:
        with _PENDING_LOCK:
            _PENDING.pop(request_id, None)
    response = waiter.response or {}
    if response.get("Status") != "SUCCESS":
        raise CustomResourceFailed(f"{what} failed: {response.get('Reason') or response.get('Status')}")
    LOG.info("custom resource %s: SUCCESS", what)
    return response


def install() -> None:
    from moto.cloudformation import custom_model, parsing, responses

    model_class: Any = custom_model.CustomModel

    def create_from_cloudformation_json(
        cls: Any,
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        from moto.cloudformation.models import cloudformation_backends

        properties = dict(cloudformation_json.get("Properties") or {})
        model = model_class(region_name, "", kwargs["LogicalId"], resource_name)
        model.cr_properties = properties
        model.cr_type = kwargs.get("ResourceType") or GENERIC_TYPE
        model.cr_stack_id = kwargs["StackId"]
        model.cr_endpoint = _endpoint()
        model.cr_account = account_id
        response = _request(model, account_id, region_name, "Create")
        model.resource_name = str(response.get("PhysicalResourceId") or resource_name)
        model.set_data(response.get("Data") or {})
        model.cr_created = time.monotonic()
        stack = cloudformation_backends[account_id][region_name].get_stack(kwargs["StackId"])
        stack.add_custom_resource(model)
        return model

    def delete(self: Any, account_id: str, region_name: str) -> None:
        if getattr(self, "cr_deleted", False) or not hasattr(self, "cr_properties"):
            return
        _request(self, account_id, region_name, "Delete")
        self.cr_deleted = True

    model_class.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
    model_class.delete = delete

    original_class_from_type = parsing.resource_class_from_type

    def resource_class_from_type(resource_type: str) -> Any:
        return model_class if resource_type == GENERIC_TYPE else original_class_from_type(resource_type)

    parsing.resource_class_from_type = resource_class_from_type

    original_delete = parsing.ResourceMap.delete

    def delete_resources(self: Any) -> None:
        # Custom resources first (the latest created first), while what they depend on still exists.
        customs = [
            (logical_id, resource)
            for logical_id, resource in list(self._parsed_resources.items())
            if isinstance(resource, model_class) and hasattr(resource, "cr_properties")
        ]
        customs.sort(key=lambda item: getattr(item[1], "cr_created", 0.0), reverse=True)
        for logical_id, resource in customs:
            if self._resource_json_map.get(logical_id, {}).get("DeletionPolicy") == "Retain":
                continue
            resource.delete(self._account_id, self._region_name)
            self._parsed_resources.pop(logical_id, None)
        original_delete(self)

    parsing.ResourceMap.delete = delete_resources  # type: ignore[method-assign]

    original_response = responses.CloudFormationResponse.process_cfn_response

    def process_cfn_response(self: Any) -> Any:
        if deliver(self.body):
            return 200, {"status": 200}, ""
        return original_response(self)

    responses.CloudFormationResponse.process_cfn_response = process_cfn_response  # type: ignore[method-assign]
