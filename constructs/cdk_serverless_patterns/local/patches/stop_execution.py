"""``StopExecution`` closes the execution's waiting ``.waitForTaskToken`` tasks.

Measured on moto 5.2.5 (``moto.stepfunctions.parser.backend.execution.Execution.stop``): moto marks
a stopped execution ABORTED but leaves its ``.waitForTaskToken`` tasks waiting (until their
timeout) and still accepting their tokens.

AWS closes them: a later ``SendTaskSuccess`` / ``SendTaskFailure`` / ``SendTaskHeartbeat`` with
such a token fails with ``TaskDoesNotExist``. This patch interrupts the waiting callbacks so it
does here too.

Delete this module (and its line in ``patches.PATCHES``) when moto closes them itself.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackConsumerLeft
    from moto.stepfunctions.parser.backend.execution import Execution

    original = Execution.stop

    def stop(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        original(self, stop_date, error, cause)
        worker = getattr(self, "exec_worker", None)
        env = getattr(worker, "env", None)
        pool = getattr(getattr(env, "callback_pool_manager", None), "_pool", {})
        for endpoint in list(pool.values()):
            if endpoint.get_outcome() is None:
                endpoint.report(CallbackConsumerLeft())
                endpoint.interrupt_all()

    setattr(Execution, "stop", stop)  # noqa: B010
