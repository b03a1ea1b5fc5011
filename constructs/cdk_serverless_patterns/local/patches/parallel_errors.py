"""A Parallel branch's ``States.*`` error reaches the Parallel state's Catch.

Measured on moto 5.2.5 (``moto/stepfunctions/parser/asl/component/state/exec/state_parallel/
branches_decl.py``): moto re-raises a failed branch's error as a ``CustomErrorName``, which may not
start with ``States.``, so a ``States.Timeout`` inside a Parallel state crashes the interpreter
instead of reaching the Parallel state's Catch or Retry.

AWS fails the Parallel state with the branch's error name as it is, ``States.*`` included. This
patch keeps such an error a ``States.*`` error.

Delete this module (and its line in ``patches.PATCHES``) when moto keeps the error name.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl

    def error_name(error_name: str) -> Any:
        if error_name and error_name.startswith("States."):
            return StatesErrorName.from_name(error_name)
        return CustomErrorName(error_name=error_name)

    setattr(branches_decl, "CustomErrorName", error_name)  # noqa: B010
