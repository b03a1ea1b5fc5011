"""``StopExecution`` closes the execution's waiting ``.waitForTaskToken`` tasks and ends it ABORTED.

Measured on moto 5.2.5 (``moto.stepfunctions.parser.backend.execution.Execution.stop``): moto marks
a stopped execution ABORTED but leaves its ``.waitForTaskToken`` tasks waiting (until their
timeout) and still accepting their tokens.

AWS closes them: a later ``SendTaskSuccess`` / ``SendTaskFailure`` / ``SendTaskHeartbeat`` with
such a token fails with ``TaskDoesNotExist``, and the execution's status is ``ABORTED``. This patch
interrupts the waiting callbacks so it does here too, and keeps the status ``ABORTED`` (the
interrupted task would otherwise end the interpreter's run as ``FAILED``). Known difference, kept:
moto's ``StopExecution`` handler drops the request's ``error`` and ``cause``.

Delete this module (and its line in ``patches.PATCHES``) when moto closes them itself.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackConsumerLeft
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    original = Execution.stop
    reflect: Any = BaseExecutionWorkerCommunication._reflect_execution_status

    def reflect_execution_status(self: Any) -> None:
        reflect(self)
        if getattr(self.execution, "_stopped_by_request", False):
            self.execution.exec_status = ExecutionStatus.ABORTED
            self.execution.error = self.execution._stop_error or None
            self.execution.cause = self.execution._stop_cause or None

    def stop(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        self._stopped_by_request = True
        self._stop_error, self._stop_cause = error, cause
        original(self, stop_date, error, cause)
        worker = getattr(self, "exec_worker", None)
        env = getattr(worker, "env", None)
        pool = getattr(getattr(env, "callback_pool_manager", None), "_pool", {})
        for endpoint in list(pool.values()):
            if endpoint.get_outcome() is None:
                endpoint.report(CallbackConsumerLeft())
                endpoint.interrupt_all()

    setattr(Execution, "stop", stop)  # noqa: B010
    setattr(BaseExecutionWorkerCommunication, "_reflect_execution_status", reflect_execution_status)  # noqa: B010
