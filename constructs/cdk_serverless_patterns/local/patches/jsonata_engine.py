"""JSONata states evaluate (``QueryLanguage: JSONata``), ``$hash`` included.

Measured on moto 5.2.5 (``moto/stepfunctions/parser/asl/jsonata``): moto parses JSONata states
but evaluates them through a JVM bridge it does not ship (``_eval_jsonata`` calls ``None``), and
declares Step Functions' ``$hash`` as a stub that returns an error string.

AWS evaluates the expressions with JSONata 2.0 and Step Functions' own functions (``$hash``,
``$uuid``, ``$partition``, ...). This patch evaluates them with ``jsonata-python`` (a port of the
same jsonata-java engine moto means to run) and provides ``$hash``.

jsonata-python's ``$string`` escapes every non-ASCII character as ``\\uXXXX`` (``json.dumps``'
default); JSONata in AWS (JavaScript's ``JSON.stringify``) keeps the characters, so a length or a
byte count taken over ``$string(...)`` differs. The patch makes it keep them too.

Delete this module (and its line in ``patches.PATCHES``) when moto evaluates JSONata itself.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def hash_value(value: Any, algorithm: str) -> str:
    """Step Functions' ``$hash(value, algorithm)``: the hex digest of the text (or compact JSON)."""
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"$hash: unsupported algorithm {algorithm!r}")
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return hashlib.new(_ALGORITHMS[algorithm], text.encode()).hexdigest()


def install() -> None:
    import jsonata  # type: ignore[import-untyped]
    from moto.stepfunctions.parser.asl.component.intrinsic import jsonata as intrinsic_jsonata
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata

    def evaluate(expression: str) -> Any:
        compiled = jsonata.Jsonata(expression)
        compiled.register_lambda("hash", hash_value)
        return compiled.evaluate(None)

    _keep_non_ascii()
    # moto declares `$hash` as a stub returning an error string; drop it so the real one is used.
    intrinsic_jsonata._DECLARATION_BY_VARIABLE_REFERENCE.pop("$hash", None)
    moto_jsonata._eval_jsonata = evaluate


def _keep_non_ascii() -> None:
    """``$string`` of an object or array keeps non-ASCII characters, as ``JSON.stringify`` does."""
    from jsonata.functions import Functions as functions  # type: ignore[import-untyped]

    if getattr(functions._string, "_keeps_non_ascii", False):
        return
    original = functions._string

    def _string(arg: Any, prettify: bool) -> str:
        from jsonata import jsonata as engine
        from jsonata import parser

        if isinstance(arg, (engine.Jsonata.JFunction, parser.Parser.Symbol)):
            return str(original(arg, prettify))
        if prettify:
            return json.dumps(arg, cls=functions.Encoder, indent="  ", ensure_ascii=False)
        return json.dumps(arg, cls=functions.Encoder, separators=(",", ":"), ensure_ascii=False)

    _string._keeps_non_ascii = True  # type: ignore[attr-defined]
    functions._string = staticmethod(_string)
