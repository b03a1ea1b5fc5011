"""Shared code of the e2e app's functions, deployed as a Lambda layer (reached at /opt/python)."""

from __future__ import annotations

import os
from typing import Any

import boto3

_TABLE: Any = None


def table() -> Any:
    """The e2e table (one client per execution environment)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
    return _TABLE


def put(pk: str, **attributes: Any) -> None:
    """Writes one item, tagged with where the layer was found."""
    table().put_item(Item={"pk": pk, "layer": __file__, **attributes})
