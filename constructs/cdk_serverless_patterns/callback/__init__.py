"""The callback pattern: pause a workflow on an asynchronous job, resume it on the job's event.

``contract`` (the names the construct, its runtime code and the testing helpers share) imports
without the CDK; the construct classes load on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdk_serverless_patterns._lazy import lazy_exports
from cdk_serverless_patterns.callback import contract

_EXPORTS = {
    "CallbackPattern": "cdk_serverless_patterns.callback.callback_pattern",
    "CallbackUrls": "cdk_serverless_patterns.callback.callback_urls",
    "JobSource": "cdk_serverless_patterns.callback.sources",
    "MacieJobStatusForwarder": "cdk_serverless_patterns.callback.macie_forwarder",
}

if TYPE_CHECKING:
    from cdk_serverless_patterns.callback.callback_pattern import CallbackPattern
    from cdk_serverless_patterns.callback.callback_urls import CallbackUrls
    from cdk_serverless_patterns.callback.macie_forwarder import MacieJobStatusForwarder
    from cdk_serverless_patterns.callback.sources import JobSource

__all__ = ["CallbackPattern", "CallbackUrls", "JobSource", "MacieJobStatusForwarder", "contract"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
