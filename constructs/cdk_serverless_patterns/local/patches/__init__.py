"""What moto lacks for the synthesized templates to run, bridged: one module per gap.

Each module patches one place of moto, names the moto version it was measured on and says what
AWS does instead. When moto fixes a gap, its module is deleted together with its line in
:data:`PATCHES`; nothing else refers to it (except :func:`aws_sdk_parameters.route_aws_sdk`, which
stays useful for APIs moto does not have).

The bridges are used by the tests and the demo alike, never by changing what a construct
synthesizes. :func:`install` applies them all, once per process; importing this package imports
no moto (each module imports it in its own ``install``).
"""

from __future__ import annotations

import importlib
import threading

#: The moto release every module here was measured on.
MEASURED_ON = "5.2.5"

#: The patch modules, in the order they are installed (each has an ``install()``).
PATCHES = (
    "jsonata_engine",
    "jsonata_variables",
    "aws_sdk_parameters",
    "eventbridge_targets",
    "eventbridge_lambda_targets",
    "send_task_failure",
    "parallel_errors",
    "stop_execution",
    "parser_scope",
    "parse_cache",
    "task_token_race",
    "state_size_utf8",
    "dynamodb_atomic_writes",
    "cloudformation_secrets",
    "cloudformation_failures",
    "cloudformation_outputs",
    "cloudformation_custom_resources",
    "sqs_event_source_poller",
)

_LOCK = threading.Lock()
_INSTALLED = False


def install() -> None:
    """Applies every patch to moto in this process (idempotent and thread-safe)."""
    global _INSTALLED
    if _INSTALLED:
        return
    with _LOCK:
        if _INSTALLED:
            return
        for name in PATCHES:
            importlib.import_module(f"{__name__}.{name}").install()
        _INSTALLED = True


def installed() -> bool:
    """Whether :func:`install` ran in this process."""
    return _INSTALLED
