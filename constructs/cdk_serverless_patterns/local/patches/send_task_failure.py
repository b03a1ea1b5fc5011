"""``SendTaskFailure`` keeps its ``cause``.

Measured on moto 5.2.5 (``moto.stepfunctions.responses.StepFunctionResponse.send_task_failure``):
moto's API handler passes the ``error`` on but drops the ``cause`` parameter, so the failed task
(and a Catch's ``ResultPath``) sees no cause.

AWS hands both ``error`` and ``cause`` to the waiting task. This patch passes the cause on.

Delete this module (and its line in ``patches.PATCHES``) when moto passes ``cause``.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> ActionResult:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    setattr(StepFunctionResponse, "send_task_failure", send_task_failure)  # noqa: B010
