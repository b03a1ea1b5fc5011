"""The callback pattern: pause a workflow on an asynchronous job, resume it on the job's event."""

from cdk_serverless_patterns.callback.pattern import CallbackPattern
from cdk_serverless_patterns.callback.sources import JobSource

__all__ = ["CallbackPattern", "JobSource"]
