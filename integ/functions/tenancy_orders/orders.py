"""Sample tenant-isolated handler: answers which tenant, environment and invocation served the request.

It runs behind ``TenantApi`` with the function-side helper (the ``tenancy_runtime`` layer): the helper
has already checked that Lambda's tenant (``context.tenant_id``) is the one the authorizer proved. The
answer shows the isolation: each tenant's environment counts only its own invocations and sees only
its own ``/tmp`` directory.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from tenancy_runtime import current, tenant_handler  # type: ignore[import-not-found, unused-ignore]

logger = logging.getLogger("orders")
logger.setLevel(logging.INFO)
#: Module state lives as long as the execution environment: one tenant's, never shared.
INVOCATIONS = {"count": 0}


@tenant_handler  # type: ignore[untyped-decorator, unused-ignore]
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """GET /orders: the tenant's view of its environment."""
    scope = current()
    INVOCATIONS["count"] += 1
    scope.cache.setdefault("first_request", context.aws_request_id)
    marker = scope.tmp_dir / "seen.txt"
    with marker.open("a") as seen:
        seen.write(context.aws_request_id + "\n")
    logger.info("order listing served")
    body = {
        "tenant": scope.tenant_id,
        "pid": os.getpid(),
        "invocations": INVOCATIONS["count"],
        "firstRequest": scope.cache["first_request"],
        "tmpEntries": sorted(p.name for p in scope.tmp_dir.parent.iterdir() if p.name.startswith("tenant-")),
    }
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
