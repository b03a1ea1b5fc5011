"""``aws-sdk:`` tasks get their parameters under the API's own member names.

Measured on moto 5.2.5 (``StateTaskServiceAwsSdk._eval_service_task``): moto passes an
``arn:aws:states:::aws-sdk:<service>:<action>`` task's parameters to boto3 unchanged, in the
PascalCase Step Functions asks for (``TaskToken``), which breaks every API whose members are
camelCase (``sfn:sendTaskSuccess`` wants ``taskToken``).

AWS maps the PascalCase parameters onto the API's member names. This patch does the same with
botocore's input shapes (moto's own ``_to_boto_request``). It also lets a test answer one
``aws-sdk`` action with its own handler (:func:`route_aws_sdk`), for APIs moto does not have: the
Lambda durable-execution callbacks, answered by the durable SDK's local runner.

Delete the patch (and its line in ``patches.PATCHES``) when moto maps the names itself; keep
:func:`route_aws_sdk` (move it) while APIs are missing from moto.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_ROUTES: dict[tuple[str, str], Callable[..., Any]] = {}
_ROUTES_LOCK = threading.Lock()


def route_aws_sdk(service: str, action: str, handler: Callable[..., Any] | None) -> None:
    """Answers one ``aws-sdk:<service>:<action>`` task with ``handler`` instead of moto (``None``
    removes the route). For APIs moto does not have, answered by another local emulator: the
    Lambda durable-execution callback APIs by the durable SDK's local runner. ``handler`` gets the
    task's arguments as Step Functions evaluated them (PascalCase) and returns the response.
    Routes are process-wide."""
    key = (service, action.lower())
    with _ROUTES_LOCK:
        if handler is None:
            _ROUTES.pop(key, None)
        else:
            _ROUTES[key] = handler


@functools.cache
def _service_model(service: str) -> Any:
    """botocore's model of ``service``, loaded once per process (loading it costs tens of ms, and
    every ``aws-sdk`` task needs it)."""
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def install() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    original = StateTaskServiceAwsSdk._eval_service_task

    def eval_service_task(
        self: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> None:
        service = self._get_boto_service_name()
        action = self.resource.api_action
        with _ROUTES_LOCK:
            route = _ROUTES.get((service, action.lower()))
        if route is not None:
            env.stack.append(route(**normalised_parameters) or {})
            return
        model = _service_model(service)
        operation = next((name for name in model.operation_names if name.lower() == action.lower()), None)
        if operation is not None:
            shape = model.operation_model(operation).input_shape
            if shape is not None:
                self._to_boto_request(normalised_parameters, shape)
        original(self, env, resource_runtime_part, normalised_parameters, state_credentials)

    setattr(StateTaskServiceAwsSdk, "_eval_service_task", eval_service_task)  # noqa: B010
