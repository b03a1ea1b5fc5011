"""The names the streaming construct sets and the runtime reads (the runtime's own copy).

``constructs/cdk_serverless_patterns/streaming/contract.py`` holds the construct's copy; a test
(tests/streaming/test_streaming_contract.py) asserts that the two agree. Standard library only.
"""

from __future__ import annotations

#: The exec wrapper's path inside the layer (layers are unpacked at /opt).
EXEC_WRAPPER_PATH = "/opt/serverless-streaming"
ENV_EXEC_WRAPPER = "AWS_LAMBDA_EXEC_WRAPPER"
#: Set to "1" to make the wrapper run the normal runtime (streaming off) without removing the layer.
ENV_STREAMING_DISABLED = "SERVERLESS_STREAMING_DISABLED"
#: The user's handler ("module.function") for the WebSocket driver.
ENV_STREAMING_HANDLER = "STREAMING_HANDLER"
ENV_CONNECTIONS_TABLE = "STREAMING_CONNECTIONS_TABLE"
ENV_TOKEN_SOURCE = "STREAMING_TOKEN_SOURCE"
ENV_MODEL_ID = "STREAMING_MODEL_ID"
ENV_FRAME_BYTES = "STREAMING_FRAME_BYTES"
ENV_FRAME_MS = "STREAMING_FRAME_MS"
TOKEN_SOURCES = ("bedrock", "offline")
DEFAULT_FRAME_BYTES = 16384
DEFAULT_FRAME_MS = 50

#: The HTTP integration content type (API Gateway REST STREAM and function URLs).
HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
#: The Runtime API's streaming mode header and its one accepted value.
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"
RESPONSE_MODE_STREAMING = "streaming"
ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
#: Lambda's cap on one streamed response.
MAX_STREAMED_BYTES = 200 * 1024 * 1024
#: The handler the runtime loads ("module.function"), as Lambda sets it.
ENV_HANDLER_VARIABLE = "_HANDLER"
