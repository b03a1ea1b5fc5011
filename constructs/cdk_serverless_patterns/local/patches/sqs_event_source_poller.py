"""SQS event source mappings are polled as Lambda polls them, not run inside SendMessage.

Measured on moto 5.2.5 (``moto.sqs.models.Queue.add_message``): every ``SendMessage`` to a queue
with an event source mapping receives messages and invokes the function in the sender's request,
one message per invocation, deletes the message unless the function failed, ignores
``ReportBatchItemFailures`` and makes a failed message visible again at once. AWS polls the queue
apart from the sender, invokes the function with batches, keeps reported failures and lets a failed
batch wait out the visibility timeout.

While a :class:`~cdk_serverless_patterns.local.events.SqsPoller` runs (a LocalCloud is up), this
patch keeps moto's inline path off (the queue's mappings look empty to ``add_message``) and wakes
the poller, which does what Lambda does (see its docstring). Without a poller, moto's behaviour is
unchanged.

Delete this module (and its line in ``patches.PATCHES``) when moto polls SQS mappings as Lambda does.
"""

from __future__ import annotations

from typing import Any


class _PolledMappings(dict[str, Any]):
    """A queue's event source mappings, hidden from moto's inline path while a poller runs."""

    def items(self) -> Any:
        from cdk_serverless_patterns.local.events import current_sqs_poller

        if current_sqs_poller() is not None:
            return []
        return super().items()


def install() -> None:
    from moto.sqs.models import Queue

    from cdk_serverless_patterns.local.events import current_sqs_poller

    original = Queue.add_message

    def add_message(self: Any, message: Any) -> None:
        if not isinstance(self.lambda_event_source_mappings, _PolledMappings):
            self.lambda_event_source_mappings = _PolledMappings(self.lambda_event_source_mappings)
        original(self, message)
        poller = current_sqs_poller()
        if poller is not None and dict.__len__(self.lambda_event_source_mappings):
            poller.wake()

    setattr(Queue, "add_message", add_message)  # noqa: B010
