"""Each state machine definition is parsed once, not once per execution.

Measured on moto 5.2.5 (``moto.stepfunctions.parser.asl.parse.asl_parser.AmazonStateLanguageParser.
parse``): moto parses the definition with its Python ANTLR grammar at every StartExecution, which
costs about a third of a second for the callback resumer (a JSONata definition of some 50 KB) and
made the interpreter, not the pattern, the limit of every load test (hundreds of executions).

AWS parses a definition when it is created. This patch keeps the ANTLR parse tree of each
definition text (the last 64) and builds fresh evaluation components from it for every execution,
as moto does (the tree is read-only; the components carry execution state).

Delete this module (and its line in ``patches.PATCHES``) when moto caches parsed definitions.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.Lock()


def install() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    original = AmazonStateLanguageParser.parse

    @functools.lru_cache(maxsize=64)
    def tree_of(definition: str) -> Any:
        return original(definition)[1]

    def parse(definition: str) -> tuple[Any, Any]:
        with _LOCK:  # ANTLR's shared caches are not safe for concurrent parses
            tree = tree_of(definition)
        return Preprocessor().visit(tree), tree

    setattr(AmazonStateLanguageParser, "parse", staticmethod(parse))  # noqa: B010
