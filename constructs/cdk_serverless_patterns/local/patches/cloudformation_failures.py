"""A resource CloudFormation cannot create fails the stack, with an event naming it.

Measured on moto 5.2.5 (``moto.cloudformation.models.Stack.create_resources``): an exception
while creating one resource escapes ``CreateStack`` as an HTTP 500 with a Python traceback; the
stack stays ``CREATE_IN_PROGRESS`` with no event saying which resource failed, and the CDK CLI
can only say that the deployment failed.

AWS accepts ``CreateStack``, records ``CREATE_FAILED`` for the resource with the reason, rolls
back and ends in ``ROLLBACK_COMPLETE``. This patch does that: the failing resource's logical id,
type and reason become a ``CREATE_FAILED`` stack event, the resources created so far are deleted
(best effort), the stack lists no resources and no outputs any more and ends in
``ROLLBACK_COMPLETE``, so that the CLI and ``DescribeStackEvents`` report what failed.

Delete this module (and its line in ``patches.PATCHES``) when moto records failed resources.
"""

from __future__ import annotations

import contextlib
from typing import Any


class ResourceCreateFailed(Exception):
    """One resource of a stack could not be created."""

    def __init__(self, logical_id: str, resource_type: str, reason: str) -> None:
        super().__init__(f"{logical_id} ({resource_type}): {reason}")
        self.logical_id = logical_id
        self.resource_type = resource_type
        self.reason = reason


def install() -> None:
    from moto.cloudformation import models, parsing

    original_create = parsing.parse_and_create_resource

    def parse_and_create_resource(logical_id: str, resource_json: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return original_create(logical_id, resource_json, *args, **kwargs)
        except ResourceCreateFailed:
            raise  # a resource this one references failed first: that one is the cause
        except Exception as error:
            reason = str(getattr(error, "message", "") or error) or type(error).__name__
            raise ResourceCreateFailed(logical_id, str(resource_json.get("Type", "?")), reason) from error

    parsing.parse_and_create_resource = parse_and_create_resource

    original_resources = models.Stack.create_resources

    def create_resources(self: Any) -> None:
        try:
            original_resources(self)
        except ResourceCreateFailed as failure:
            self.events.append(
                models.Event(
                    stack_id=self.stack_id,
                    stack_name=self.name,
                    logical_resource_id=failure.logical_id,
                    physical_resource_id="",
                    resource_type=failure.resource_type,
                    resource_status="CREATE_FAILED",
                    resource_status_reason=failure.reason,
                    resource_properties=None,
                )
            )
            self._add_stack_event(
                "ROLLBACK_IN_PROGRESS",
                resource_status_reason=f"The following resource(s) failed to create: [{failure.logical_id}]. "
                "Rollback requested by user.",
            )
            with contextlib.suppress(Exception):
                self.resource_map.delete()
            # Rolled back: nothing is left to list (moto would otherwise create the rest lazily when listed).
            self.resource_map._resource_json_map = {}
            self.output_map = parsing.OutputMap(self.resource_map, {"Outputs": {}}, self.stack_id)
            self._add_stack_event("ROLLBACK_COMPLETE")
            self.status = "ROLLBACK_COMPLETE"

    setattr(models.Stack, "create_resources", create_resources)  # noqa: B010
