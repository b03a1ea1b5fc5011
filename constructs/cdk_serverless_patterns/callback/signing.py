"""Signing callbacks for ``CallbackUrls`` in HMAC mode, without the CDK: what a third party (or a test) runs.

``sign_callback(key, namespace=..., job_id=..., body=...)`` returns the two headers of a signed
``POST /callbacks/{namespace}/{jobId}``. The signature is the HMAC-SHA256, under the namespace's
key, of the canonical message (form ``v1``)::

    "v1" LF <X-Timestamp> LF <namespace> LF <jobId> LF <raw request body>

where LF is one newline byte (0x0A), the first four parts are ASCII and the body is the exact
bytes sent. The handler (``lambda_src/callback_url``) keeps a copy of these two functions;
``tests/callback/test_callback_contract.py`` holds the copies equal.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_VERSION = "v1"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"

__all__ = ["SIGNATURE_VERSION", "sign_callback", "signing_message"]


def signing_message(timestamp: str, namespace: str, job_id: str, body: bytes) -> bytes:
    """The bytes a callback's HMAC-SHA256 signature covers (canonical form ``v1``).

    ``"v1\\n" + timestamp + "\\n" + namespace + "\\n" + job_id + "\\n"`` (ASCII) followed by the raw
    request body, byte for byte. None of the first four parts can contain a newline, so two
    different requests never share a message.
    """
    header = f"{SIGNATURE_VERSION}\n{timestamp}\n{namespace}\n{job_id}\n"
    return header.encode("ascii") + body


def sign_callback(
    key: str | bytes, *, namespace: str, job_id: str, body: str | bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The headers that authenticate a callback to ``POST /callbacks/{namespace}/{job_id}``.

    ``key`` is the HMAC key (a ``str`` is UTF-8 encoded), ``body`` the exact request body (a ``str``
    is UTF-8 encoded), ``timestamp`` Unix seconds (default: now). Returns ``{"X-Timestamp": ...,
    "X-Signature": "sha256=<hex>"}``.
    """
    raw_key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    raw_body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    stamp = str(int(time.time()) if timestamp is None else int(timestamp))
    digest = hmac.new(raw_key, signing_message(stamp, namespace, job_id, raw_body), hashlib.sha256).hexdigest()
    return {"X-Timestamp": stamp, "X-Signature": f"sha256={digest}"}
