"""Workflow variables and ``$states`` reach JSONata expressions intact.

Measured on moto 5.2.5 (``moto.stepfunctions.parser.asl.jsonata.jsonata.
encode_jsonata_variable_declarations``): moto hands variables (``Assign``) and ``$states`` to a
JSONata expression by prefixing it with declarations, and writes a string value as ``"<value>"``
without escaping it, so a variable holding text with a quote, a backslash or a newline (JSON text,
an error's cause) breaks the parse of every later JSONata expression of the execution
(``States.Runtime``).

It also hands an expression only the parts of ``$states`` (``input``, ``context``, ...) it finds
referenced, and its scan takes a division (``$toMillis(a) / 1000 < $toMillis(b) / 1000``) for a
regular expression literal ``/.../``: references between the two slashes are missed and evaluate
as undefined.

AWS evaluates expressions over any variable value and all of ``$states``. This patch writes every
value as JSON (strings escaped) and hands every expression the whole of ``$states``.

Delete this module (and its line in ``patches.PATCHES``) when moto escapes the strings itself.
"""

from __future__ import annotations

import json
from typing import Any


def encode_declarations(bindings: dict[str, Any]) -> str:
    """``$name:=<value as JSON>;`` for each binding, as moto's encoder writes them, strings escaped."""
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    return "".join(
        f"{name}:={json.dumps(value) if isinstance(value, str) else to_json_str(value, separators=(',', ':'))};"
        for name, value in bindings.items()
    )


def install() -> None:
    from moto.stepfunctions.parser.asl.eval import states, variable_store
    from moto.stepfunctions.parser.asl.jsonata import jsonata

    for module in (jsonata, states, variable_store):
        setattr(module, "encode_jsonata_variable_declarations", encode_declarations)  # noqa: B010
    original = states.States.to_variable_declarations

    def to_variable_declarations(self: Any, variable_references: Any = None) -> str:
        return original(self, None)  # None: all of $states

    setattr(states.States, "to_variable_declarations", to_variable_declarations)  # noqa: B010
