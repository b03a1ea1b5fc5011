"""serverless_streaming: response streaming for Python Lambda functions (a layer; standard library only).

Write a generator handler, decorate it with :func:`streaming` if it needs options (SSE, keep-alives,
a content type), and deploy it with the layer and ``AWS_LAMBDA_EXEC_WRAPPER=/opt/serverless-streaming``;
the wrapper runs :mod:`serverless_streaming.runtime`, which speaks the Lambda Runtime API's streaming mode.
The same handler also runs behind the WebSocket driver (:mod:`serverless_streaming.websocket`).

Importing this package imports :mod:`serverless_streaming.core` only (fast start).
"""

from __future__ import annotations

from .core import Event, Response, iterate, load_handler, sse_frame, streaming

__all__ = ["Event", "Response", "iterate", "load_handler", "sse_frame", "streaming"]
