"""DynamoDB writes are atomic: a conditional write checks its condition and writes as one step.

moto 5.2.5 evaluates a write's condition and then stores the item without any lock, so two
concurrent writers (threads of moto's server, or Step Functions executions in moto's interpreter)
can both pass ``attribute_not_exists(id)`` and both "win". In AWS exactly one of them succeeds and
the other gets ``ConditionalCheckFailedException``; the callback pattern's exactly-once resume rests
on that. A CI run on a loaded machine saw two resumers both resume one waiter because of it.

This patch serializes moto's item writes (PutItem, UpdateItem, DeleteItem, BatchWriteItem,
TransactWriteItems) per process with one re-entrant lock: the condition check and the write happen
under it. Reads (GetItem, Query, Scan) take the same lock: moto applies an UpdateItem's actions to
the stored item one by one, in place, so an unlocked read could see ``state`` already set and
``reason`` not yet (a CI run saw exactly that). In AWS a read sees an item before or after a
write, never halfway.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

#: Held for the whole of each item write and item read of moto's DynamoDB backends.
WRITE_LOCK = threading.RLock()

_WRITES = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")
_READS = ("get_item", "query", "scan")


def install() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES + _READS:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "_atomic", False):
            continue

        def atomic(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with WRITE_LOCK:
                return __original(self, *args, **kwargs)

        wrapped = functools.wraps(original)(atomic)
        setattr(wrapped, "_atomic", True)  # noqa: B010
        setattr(DynamoDBBackend, name, wrapped)
