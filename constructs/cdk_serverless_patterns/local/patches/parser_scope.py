"""Each ASL parse has its own query-language scope, so concurrent executions parse.

Measured on moto 5.2.5 (``moto.stepfunctions.parser.asl.parse.preprocessor.Preprocessor``): the
preprocessor keeps its query-language scope stack (``_query_language_per_scope``) in a class
attribute shared by every parse, so two executions that start at once (one parsing a JSONata
state while the other parses a JSONPath one) can fail to parse and hang as RUNNING.

AWS runs any number of executions at once. This patch gives each parse its own stack.

Delete this module (and its line in ``patches.PATCHES``) when moto keeps the stack per instance.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    original = Preprocessor.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._query_language_per_scope = []

    setattr(Preprocessor, "__init__", init)  # noqa: B010
