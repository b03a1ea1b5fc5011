"""Sample-only streaming handler: streams a prompt's answer as server-sent events, token by token.

The same generator serves the three transports of the streaming sample stack: the REST API and the
function URL run it under the streaming runtime's exec wrapper (SSE over HTTP), the WebSocket driver
runs it and sends its chunks as JSON frames. The prompt comes from the query string (``?prompt=``) or
a JSON body (``{"prompt": "..."}``; on the WebSocket ``{"action": "stream", "prompt": "..."}``). The
tokens come from ``serverless_streaming.tokens.from_environment()``: the deterministic offline source
unless the stack configures Bedrock. The source is made once per execution environment (on the first
request, so that a configuration error is that request's error rather than a failed init) and reused by
the requests that follow: a Bedrock client's connection pool and credentials outlive one request.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from typing import Any

from serverless_streaming import Event, streaming  # type: ignore[import-not-found, unused-ignore]

#: The longest prompt the sample accepts (characters).
MAX_PROMPT = 2000
DEFAULT_PROMPT = "Tell me about streaming responses from AWS Lambda."

_source: Any = None


def token_source() -> Any:
    """The environment's token source (``serverless_streaming.tokens.from_environment()``), made on first use."""
    global _source
    if _source is None:
        from serverless_streaming.tokens import (  # type: ignore[import-not-found, unused-ignore]
            from_environment,  # the layer's token sources
        )

        _source = from_environment()
    return _source


def prompt_of(event: Any) -> str:
    """The prompt of an API Gateway, function URL or WebSocket event; the default prompt when none is given."""
    if not isinstance(event, dict):
        return DEFAULT_PROMPT
    query = event.get("queryStringParameters") or {}
    asked = query.get("prompt") if isinstance(query, dict) else None
    if isinstance(asked, str) and asked.strip():
        return asked.strip()[:MAX_PROMPT]
    body = event.get("body")
    if isinstance(body, str) and body:
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return DEFAULT_PROMPT
        try:
            parsed = json.loads(body)
        except ValueError:
            return DEFAULT_PROMPT
        prompt = parsed.get("prompt") if isinstance(parsed, dict) else None
        if isinstance(prompt, str) and prompt.strip():
            return prompt.strip()[:MAX_PROMPT]
    return DEFAULT_PROMPT


@streaming(sse=True)  # type: ignore[untyped-decorator, unused-ignore]
def handler(event: Any, context: Any) -> Iterator[str | Event]:
    """Streams the answer to the prompt, one SSE ``data:`` event per token, then a summary event."""
    prompt = prompt_of(event)
    count = 0
    for token in token_source().stream(prompt):
        count += 1
        yield token
    yield Event(data=json.dumps({"tokens": count}), event="summary")
