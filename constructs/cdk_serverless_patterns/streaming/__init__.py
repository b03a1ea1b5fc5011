"""The streaming pattern: one Python generator handler, streamed through REST APIs, function URLs and WebSockets.

``contract`` (the names the constructs and the streaming runtime share) imports without the CDK; the
construct classes load on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdk_serverless_patterns._lazy import lazy_exports
from cdk_serverless_patterns.streaming import contract

_EXPORTS = {
    "StreamingFunction": "cdk_serverless_patterns.streaming.streaming_function",
    "StreamingRestApi": "cdk_serverless_patterns.streaming.streaming_rest_api",
    "StreamingFunctionUrl": "cdk_serverless_patterns.streaming.streaming_function_url",
    "WebSocketStreamingApi": "cdk_serverless_patterns.streaming.websocket_streaming_api",
}

if TYPE_CHECKING:
    from cdk_serverless_patterns.streaming.streaming_function import StreamingFunction
    from cdk_serverless_patterns.streaming.streaming_function_url import StreamingFunctionUrl
    from cdk_serverless_patterns.streaming.streaming_rest_api import StreamingRestApi
    from cdk_serverless_patterns.streaming.websocket_streaming_api import WebSocketStreamingApi

__all__ = [
    "StreamingFunction",
    "StreamingFunctionUrl",
    "StreamingRestApi",
    "WebSocketStreamingApi",
    "contract",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
