"""Lazy package exports (PEP 562): a package's public names load on first use.

The CDK costs seconds to import; the contracts, the toolkit and the testing helpers must not pay
for it. A package lists ``name -> defining module`` and gets its ``__getattr__`` and ``__dir__``::

    _EXPORTS = {"CallbackPattern": "cdk_serverless_patterns.callback.callback_pattern"}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import each of ``exports`` from its module on first use."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups find it without calling __getattr__ again
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
