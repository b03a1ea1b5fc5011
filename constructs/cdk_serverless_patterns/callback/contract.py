"""The names the callback pattern's parts must agree on, without the CDK.

``CallbackPattern`` and its wait step and resumer (the construct and its ASL), ``CallbackUrls`` and
its handler (``lambda_src/callback_url``), the durable backend (``lambda_src/callback_durable``) and
``testing`` all read and write the same token records and events. The runtime code ships alone and
keeps its own copies; ``tests/callback/test_callback_contract.py`` asserts they equal these.
"""

from __future__ import annotations

import re

# --- the token table ---------------------------------------------------------------------------
#: Partition key (String) of the token table: ``"<namespace>#<jobId>"``.
TABLE_KEY = "id"
#: The Number attribute DynamoDB TTL expires records by.
TTL_ATTRIBUTE = "ttl"
#: The attribute telling a record's kind, and its values: a parked waiter's token, or a completion
#: that arrived before its waiter.
KIND_ATTRIBUTE = "kind"
KIND_TOKEN = "token"
KIND_COMPLETION = "completion"
#: The marker the resumer (and the wait step, when it takes an early completion) leaves where a
#: waiter was resumed: late duplicates end as ``DUPLICATE``; a new waiter for the id may park over it.
KIND_RESUMED = "resumed"
#: ``backend`` of a token record: who waits, and so how the resumer resumes it.
BACKEND_STEP_FUNCTIONS = "stepfunctions"
BACKEND_DURABLE = "durable"
#: ``status`` of a completion.
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
#: The record id is ``<namespace><KEY_SEPARATOR><jobId>``.
KEY_SEPARATOR = "#"
#: What a namespace may be (it becomes part of record ids and of callback URL paths).
NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# --- callback URLs -----------------------------------------------------------------------------
#: Source and detail-type of the completion event the callback URL handler puts.
CALLBACK_URL_EVENT_SOURCE = "cdk-serverless-patterns.callback-url"
CALLBACK_URL_DETAIL_TYPE = "Job Callback"
#: The per-job secret's SHA-256 in a token record (``callback_secret_path``).
SECRET_HASH_ATTRIBUTE = "callbackSecretHash"
SECRET_HEADER = "X-Callback-Secret"
SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"
#: Environment variables of the callback URL handler.
ENV_TABLE = "TABLE_NAME"
ENV_EVENT_BUS = "EVENT_BUS_NAME"
ENV_NAMESPACES = "NAMESPACES"
ENV_AUTH_MODE = "AUTH_MODE"
ENV_REPLAY_WINDOW_SECONDS = "REPLAY_WINDOW_SECONDS"
ENV_MAX_BODY_BYTES = "MAX_BODY_BYTES"
ENV_HMAC_SECRET_ARN = "HMAC_SECRET_ARN"
#: Per-namespace HMAC keys: a JSON object ``{"<namespace>": "<secret ARN>"}`` (instead of ``HMAC_SECRET_ARN``).
ENV_HMAC_SECRET_ARNS = "HMAC_SECRET_ARNS"
ENV_ACCEPT_EARLY_CALLBACKS = "ACCEPT_EARLY_CALLBACKS"
AUTH_MODES = ("secret", "hmac")
#: The handler's claim on a token record (a random request id it writes before publishing), and the
#: detail field of its event that names it: the resumer resumes only a record carrying that claim.
CLAIM_ATTRIBUTE = "callbackRequestId"
CLAIM_ID_FIELD = "claimId"
#: How long the handler keeps an early completion it writes itself (seconds), as the resumer does.
ENV_COMPLETION_TTL_SECONDS = "COMPLETION_TTL_SECONDS"
#: The canonical form of the HMAC signature's message (see ``callback/signing.py``).
SIGNATURE_VERSION = "v1"

# --- errors a workflow or function sees ----------------------------------------------------------
#: A second wait step parked for the same job id.
ALREADY_AWAITED = "CallbackPattern.JobAlreadyAwaited"
#: Step Functions' limits on SendTaskFailure's error and cause.
MAX_ERROR_LENGTH = 256
MAX_CAUSE_LENGTH = 32768

# --- Lambda assets --------------------------------------------------------------------------------
CALLBACK_URL_ASSET = "callback_url"
DURABLE_ASSET = "callback_durable"
