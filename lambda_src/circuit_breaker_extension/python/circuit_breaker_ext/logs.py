"""Structured JSON log lines on stdout (Lambda sends an extension's stdout to the function's logs)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def log(level: str, message: str, **fields: Any) -> None:
    record = {"timestamp": round(time.time(), 3), "level": level, "extension": "circuit-breaker", "message": message}
    record.update(fields)
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()
