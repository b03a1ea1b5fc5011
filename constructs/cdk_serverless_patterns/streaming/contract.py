"""The names the streaming pattern's parts must agree on, without the CDK.

The constructs (``StreamingFunction``, ``StreamingRestApi``, ``StreamingFunctionUrl``,
``WebSocketStreamingApi``) set environment variables that the streaming runtime
(``lambda_src/streaming_runtime``: the exec wrapper, ``serverless_streaming.runtime`` and the WebSocket
driver ``serverless_streaming.websocket``) reads. The runtime ships alone as a Lambda layer and keeps
its own copy (``serverless_streaming/contract.py``); ``tests/streaming/test_streaming_contract.py``
asserts that the two copies agree.
"""

from __future__ import annotations

# --- the layer ----------------------------------------------------------------------------------------
#: The folder under ``lambda_src/`` deployed as the streaming layer (its contents land in ``/opt``).
RUNTIME_ASSET = "streaming_runtime"
#: The exec wrapper's path inside the layer (layers are unpacked at /opt).
EXEC_WRAPPER_PATH = "/opt/serverless-streaming"
ENV_EXEC_WRAPPER = "AWS_LAMBDA_EXEC_WRAPPER"
#: Set to "1" to make the wrapper run the normal runtime (streaming off) without removing the layer.
ENV_STREAMING_DISABLED = "SERVERLESS_STREAMING_DISABLED"
#: Where Lambda puts the function's handler ("module.function"); the streaming runtime loads it from there.
ENV_HANDLER_VARIABLE = "_HANDLER"

# --- the WebSocket driver ---------------------------------------------------------------------------------
#: The driver's handler: an ordinary buffered Lambda handler from the layer (no exec wrapper).
WEBSOCKET_DRIVER_HANDLER = "serverless_streaming.websocket.handler"
#: The user's handler ("module.function") the driver streams.
ENV_STREAMING_HANDLER = "STREAMING_HANDLER"
#: The connections table (partition key ``connectionId``, String; TTL attribute ``expiresAt``, epoch seconds).
ENV_CONNECTIONS_TABLE = "STREAMING_CONNECTIONS_TABLE"
CONNECTIONS_TABLE_KEY = "connectionId"
CONNECTIONS_TTL_ATTRIBUTE = "expiresAt"
#: How the driver handles a stream request: ``inline`` (stream in the invocation that received it: the
#: construct's stream route invokes the driver asynchronously) or ``async`` (the driver invokes itself).
ENV_WS_DISPATCH = "STREAMING_WS_DISPATCH"
WS_DISPATCH_INLINE = "inline"
#: The ``action`` of a stream request, and the stream route's default key.
STREAM_ACTION = "stream"
#: WebSocket batching: flush a frame at this many bytes, or after this many milliseconds of buffering.
ENV_FRAME_BYTES = "STREAMING_FRAME_BYTES"
ENV_FRAME_MS = "STREAMING_FRAME_MS"
DEFAULT_FRAME_BYTES = 16384
DEFAULT_FRAME_MS = 50

# --- token sources --------------------------------------------------------------------------------------
ENV_TOKEN_SOURCE = "STREAMING_TOKEN_SOURCE"
ENV_MODEL_ID = "STREAMING_MODEL_ID"
TOKEN_SOURCES = ("bedrock", "offline")
#: What ``bedrock-runtime`` ``ConverseStream`` needs (the Converse API's streaming permission).
BEDROCK_STREAM_ACTION = "bedrock:InvokeModelWithResponseStream"

# --- the wire ---------------------------------------------------------------------------------------------
#: The HTTP integration content type (API Gateway REST STREAM and function URLs).
HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
#: Lambda's cap on one streamed response.
MAX_STREAMED_BYTES = 200 * 1024 * 1024

# --- the Lambda Web Adapter (the alternative route: the user brings a web app) ---------------------------------
#: The adapter's wrapper inside its layer, and its invoke-mode switch (a variable the adapter reads, not this
#: library's runtime: hence no ``ENV_`` prefix).
WEB_ADAPTER_EXEC_WRAPPER = "/opt/bootstrap"
WEB_ADAPTER_INVOKE_MODE_VARIABLE = "AWS_LWA_INVOKE_MODE"
WEB_ADAPTER_INVOKE_MODE_STREAM = "response_stream"
