"""State and task payload sizes in UTF-8 bytes of the JSON text, as AWS counts them.

Measured on moto 5.2.5 (``moto/stepfunctions/parser/quotas.py``): ``is_within_size_quota`` encodes
``json.dumps(value)`` with its default ``ensure_ascii``, so every non-ASCII character counts as its
``\\uXXXX`` escape (6 bytes, 12 outside the Basic Multilingual Plane) instead of its 2 to 4 UTF-8
bytes: a 240 KiB output of accented text fails with ``States.DataLimitExceeded`` in moto and not
in AWS. The patch counts the UTF-8 bytes of the JSON text with the characters kept.

Delete this module (and its line in ``patches.PATCHES``) when moto counts UTF-8 bytes itself.
"""

from __future__ import annotations

import json
from typing import Any

#: moto's check, replaced in :mod:`moto.stepfunctions.parser.quotas` and where it was imported.
_CHECK = "is_within_size_quota"
#: The modules that imported moto's check by name (each gets the corrected one).
_USERS = (
    "moto.stepfunctions.parser.asl.component.state.state",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service",
)


def install() -> None:
    import importlib

    from moto.stepfunctions.parser import quotas
    from moto.stepfunctions.parser.asl.utils import encoding

    def is_within_size_quota(value: Any) -> bool:
        text = value if isinstance(value, str) else json.dumps(value, cls=encoding._DateTimeEncoder, ensure_ascii=False)
        return len(text.encode("utf-8")) < quotas.MAX_STATE_SIZE_UTF8_BYTES

    setattr(quotas, _CHECK, is_within_size_quota)
    for name in _USERS:
        module = importlib.import_module(name)
        if hasattr(module, _CHECK):
            setattr(module, _CHECK, is_within_size_quota)
