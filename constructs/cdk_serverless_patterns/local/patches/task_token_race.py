"""``SendTaskSuccess`` / ``SendTaskFailure`` / ``SendTaskHeartbeat`` while other executions start.

Measured on moto 5.2.5 (``moto.stepfunctions.parser.models.StepFunctionsParserBackend.
_get_executions``): to find a task token, moto asks every execution's interpreter environment,
and an execution that is still starting (its worker has no environment yet) raises
``AttributeError``; the caller's ``SendTaskSuccess`` fails (an ``aws-sdk:sfn`` task sees
``States.Runtime``). Under load, with executions starting all the time, resumes failed at random.

AWS finds a token whatever else is starting. This patch leaves executions without an environment
out of that search (they cannot hold a task token yet).

Delete this module (and its line in ``patches.PATCHES``) when moto skips them itself.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend._get_executions

    def get_executions(self: Any, execution_status: Any = None) -> list[Any]:
        return [
            execution
            for execution in original(self, execution_status)
            if getattr(getattr(execution, "exec_worker", None), "env", None) is not None
        ]

    setattr(StepFunctionsParserBackend, "_get_executions", get_executions)  # noqa: B010
