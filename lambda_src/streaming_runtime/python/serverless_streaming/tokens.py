"""Token sources: where a streaming handler's text comes from (an LLM, or a deterministic offline one).

A :class:`TokenSource` has one method, ``stream(prompt, *, system=None, max_tokens=None) -> Iterator[str]``,
so a handler is a few lines whatever the model::

    from serverless_streaming import streaming
    from serverless_streaming.tokens import from_environment

    source = from_environment()          # once per execution environment

    @streaming(sse=True)
    def handler(event, context):
        yield from source.stream(prompt_of(event))

- :class:`OfflineTokens`: deterministic tokens (words with their trailing space) from a given text, or made
  up from a seed, or from the prompt itself, with an optional delay per token. No network; the demo and the
  tests use it.
- :class:`BedrockConverseStream`: Amazon Bedrock's ``ConverseStream`` through boto3's ``bedrock-runtime``
  client (connect 5 s, read 60 s between events, 3 calls at most for the request itself). It yields the text
  of each ``contentBlockDelta``; ``messageStop``'s ``stopReason`` and ``metadata``'s usage and metrics are
  kept on the source (``stop_reason``, ``usage``, ``metrics``) after the stream ends. The stream's exception
  events (``modelStreamErrorException``, ``throttlingException``, ``validationException``,
  ``internalServerException``, ``serviceUnavailableException``) and a refused request (``ClientError``:
  ``AccessDeniedException``, ``ResourceNotFoundException``, ``ThrottlingException`` ...) are raised as
  :class:`TokenSourceError`, a ``core.StreamError``: its type names Bedrock's error and its message is safe to
  show (Bedrock's own message, at most 500 characters, with ARNs and account ids replaced: an
  ``AccessDeniedException`` names the function's role, session and account), so the HTTP runtime's
  ``event: error`` and the WebSocket driver's error frame tell the client what happened. When the consumer stops
  early (the client is gone), closing the generator closes the HTTP response, so Bedrock stops generating (and
  billing). Prompts are checked before any call; ``max_seconds`` bounds a whole stream (the read timeout bounds
  one read).
- :func:`from_environment`: ``STREAMING_TOKEN_SOURCE`` (``bedrock`` or ``offline``, default ``offline``) and
  ``STREAMING_MODEL_ID`` (the model or inference profile id; required for ``bedrock``);
  ``STREAMING_OFFLINE_DELAY_MS`` sets the offline source's delay per token.

moto 5.2.5 has no ``bedrock-runtime`` (no ``ConverseStream``): the tests run this module's Bedrock source
against a local HTTP endpoint that answers with AWS's wire format (``application/vnd.amazon.eventstream``
messages with their CRCs, checked by decoding them with botocore's own event-stream parser) through a real
boto3 client, not a mocked one.

Standard library; boto3 only when a Bedrock source is created without a client.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from . import core
from .contract import ENV_MODEL_ID, ENV_TOKEN_SOURCE, TOKEN_SOURCES

__all__ = [
    "ENV_OFFLINE_DELAY_MS",
    "BedrockConverseStream",
    "OfflineTokens",
    "TokenSource",
    "TokenSourceError",
    "from_environment",
]

#: The offline source's delay per token, in milliseconds (default 0).
ENV_OFFLINE_DELAY_MS = "STREAMING_OFFLINE_DELAY_MS"
DEFAULT_MAX_TOKENS = 1024
MAX_ERROR_TEXT = 500

_WORDS = (
    "stream",
    "token",
    "lambda",
    "generator",
    "chunk",
    "frame",
    "latency",
    "bytes",
    "server",
    "event",
    "prompt",
    "answer",
    "model",
    "cloud",
    "quick",
    "steady",
)
_TOKEN = re.compile(r"\s*\S+\s*|\s+")
#: What Bedrock's messages may name that a client must not see: ARNs (the function's role and session, the
#: account) and bare account ids (``User: arn:aws:sts::123456789012:assumed-role/...`` in AccessDenied).
_ARN = re.compile(r"arn:aws[a-zA-Z-]*:[^\s\"',;]*")
_ACCOUNT_ID = re.compile(r"(?<!\d)\d{12}(?!\d)")


@runtime_checkable
class TokenSource(Protocol):
    """Anything that streams text for a prompt."""

    def stream(self, prompt: str, *, system: str | None = None, max_tokens: int | None = None) -> Iterator[str]:
        """The answer to ``prompt`` as text tokens, in order (at most ``max_tokens`` where the source counts)."""
        ...


class TokenSourceError(core.StreamError):
    """A token source failed; ``error_type`` names the cause (Bedrock's exception name), ``message`` is safe to show.

    ``retryable`` says whether the same request may succeed later (throttling, a busy or failing model).
    """

    def __init__(self, message: str, error_type: str = "TokenSourceError", *, retryable: bool = False) -> None:
        super().__init__(message, error_type)
        self.retryable = retryable


def _tokens(text: str) -> list[str]:
    """Splits text into word tokens, each keeping the whitespace that follows it ('' joins them back)."""
    return _TOKEN.findall(text)


class OfflineTokens:
    """Deterministic tokens without a network: from ``text``, else made up from ``seed``, else from the prompt.

    Args:
        text: the answer to stream (split into words with their trailing whitespace). Default none.
        seed: with no text, the seed of ``count`` made-up words (the same seed, the same words). Default none.
        count: how many made-up words (seed or prompt mode). Default 64.
        delay_seconds: sleep before each token but the first (a model's pace). Default 0.
    """

    def __init__(
        self, text: str | None = None, *, seed: int | None = None, count: int = 64, delay_seconds: float = 0.0
    ) -> None:
        if delay_seconds < 0:
            raise ValueError(f"delay_seconds must be >= 0, got {delay_seconds!r}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        self.text = text
        self.seed = seed
        self.count = count
        self.delay_seconds = delay_seconds

    def tokens_for(self, prompt: str) -> list[str]:
        """All the tokens :meth:`stream` yields for ``prompt`` (without ``max_tokens``)."""
        if self.text is not None:
            return _tokens(self.text)
        rng = random.Random(self.seed if self.seed is not None else prompt)
        words = [rng.choice(_WORDS) for _ in range(self.count)]
        prefix = [] if self.seed is not None else _tokens(f"You asked: {prompt.strip()[:200]}\n")
        return prefix + [word + " " for word in words[:-1]] + words[-1:]

    def stream(self, prompt: str, *, system: str | None = None, max_tokens: int | None = None) -> Iterator[str]:
        """Yields the tokens for ``prompt`` (``system`` is ignored), at most ``max_tokens`` of them.

        A prompt that is not text (``None`` from a request without one) is a ``ValidationException``
        :class:`TokenSourceError`, as for Bedrock (it was an ``AttributeError``, after seeding from ``None``).
        """
        if not isinstance(prompt, str):
            raise TokenSourceError("the prompt must be text", "ValidationException")
        tokens = self.tokens_for(prompt)
        if max_tokens is not None:
            tokens = tokens[: max(0, max_tokens)]
        for index, token in enumerate(tokens):
            if index and self.delay_seconds:
                time.sleep(self.delay_seconds)
            yield token


#: Bedrock's stream exception events, and whether a retry may succeed.
STREAM_EXCEPTIONS: Mapping[str, bool] = {
    "internalServerException": True,
    "modelStreamErrorException": True,
    "throttlingException": True,
    "serviceUnavailableException": True,
    "validationException": False,
}
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
    }
)


def _error_type(name: str) -> str:
    """``throttlingException`` (event member) -> ``ThrottlingException`` (the error's name)."""
    return name[:1].upper() + name[1:] if name else "TokenSourceError"


def _shown(text: str) -> str:
    """Bedrock's message as a client may see it: ARNs and account ids replaced, at most 500 characters."""
    return _ACCOUNT_ID.sub("<account>", _ARN.sub("<arn>", text))[:MAX_ERROR_TEXT]


def _client_error(error: Any) -> TokenSourceError:
    response = getattr(error, "response", None) or {}
    details = response.get("Error", {}) if isinstance(response, Mapping) else {}
    code = str(details.get("Code") or type(error).__name__)
    message = _shown(str(details.get("Message") or ""))
    return TokenSourceError(
        f"the model stream failed: {message}" if message else "the model stream failed",
        _error_type(code),
        retryable=_error_type(code) in _RETRYABLE_CODES,
    )


class BedrockConverseStream:
    """Amazon Bedrock ``ConverseStream`` as a :class:`TokenSource`.

    Args:
        model_id: the model id, inference profile id or ARN (``modelId``; no whitespace, at most 2048 characters).
        client: a ``bedrock-runtime`` client. Default: one made here (connect 5 s, read 60 s, 3 calls).
        max_tokens: ``inferenceConfig.maxTokens`` when :meth:`stream` is given none. Default 1024.
        temperature: ``inferenceConfig.temperature``. Default none (the model's).
        max_seconds: the longest a whole stream may take: past it, the next event ends the stream with a
            ``ModelTimeoutException`` :class:`TokenSourceError`. The client's read timeout bounds each read, this
            bounds a model that keeps trickling; a stall within one read still lasts up to that read timeout.
            Default none (the function's timeout is the bound).

    A prompt (and a system prompt) must be non-empty text: anything else (``None``, a number, blank text, as a
    client's request may carry) is a ``ValidationException`` :class:`TokenSourceError` with a message safe to
    show, raised before any call to Bedrock.
    """

    def __init__(
        self,
        model_id: str,
        *,
        client: Any = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float | None = None,
        max_seconds: float | None = None,
    ) -> None:
        if (
            not isinstance(model_id, str)
            or not model_id.strip()
            or len(model_id) > 2048
            or any(c.isspace() or not c.isprintable() for c in model_id)
        ):
            raise ValueError(f"model_id must be a model or inference profile id or ARN, got {model_id!r:.100}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive or None, got {max_seconds!r}")
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_seconds = max_seconds
        self._client = client
        #: After a stream: ``messageStop.stopReason`` (``end_turn``, ``max_tokens``, ``guardrail_intervened`` ...).
        self.stop_reason: str | None = None
        #: After a stream: ``metadata.usage`` (inputTokens, outputTokens, totalTokens) and ``metadata.metrics``.
        self.usage: dict[str, Any] | None = None
        self.metrics: dict[str, Any] | None = None

    @property
    def client(self) -> Any:
        """The ``bedrock-runtime`` client (made on first use)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "total_max_attempts": 3})
            self._client = boto3.client("bedrock-runtime", config=config)
        return self._client

    def request(self, prompt: str, *, system: str | None = None, max_tokens: int | None = None) -> dict[str, Any]:
        """The ``ConverseStream`` parameters for a prompt (:class:`TokenSourceError` for an invalid one)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise TokenSourceError("the prompt must be non-empty text", "ValidationException")
        if system is not None and (not isinstance(system, str) or not system.strip()):
            raise TokenSourceError("the system prompt must be non-empty text", "ValidationException")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise TokenSourceError("max_tokens must be a positive integer", "ValidationException")
        inference: dict[str, Any] = {"maxTokens": max_tokens or self.max_tokens}
        if self.temperature is not None:
            inference["temperature"] = self.temperature
        params: dict[str, Any] = {
            "modelId": self.model_id,
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "inferenceConfig": inference,
        }
        if system:
            params["system"] = [{"text": system}]
        return params

    def stream(self, prompt: str, *, system: str | None = None, max_tokens: int | None = None) -> Iterator[str]:
        """Yields the model's text as it arrives; :class:`TokenSourceError` for the stream's failures."""
        from botocore.exceptions import ClientError

        self.stop_reason, self.usage, self.metrics = None, None, None
        params = self.request(prompt, system=system, max_tokens=max_tokens)
        deadline = None if self.max_seconds is None else time.monotonic() + self.max_seconds
        try:
            response = self.client.converse_stream(**params)
        except ClientError as error:
            raise _client_error(error) from error
        events = response["stream"]
        try:
            for event in events:
                if deadline is not None and time.monotonic() > deadline:
                    raise TokenSourceError(
                        f"the model did not finish within {self.max_seconds:g} s",
                        "ModelTimeoutException",
                        retryable=True,
                    )
                delta = event.get("contentBlockDelta")
                if delta is not None:
                    text = delta.get("delta", {}).get("text")
                    if text:
                        yield text
                    continue
                stop = event.get("messageStop")
                if stop is not None:
                    self.stop_reason = stop.get("stopReason")
                    continue
                metadata = event.get("metadata")
                if metadata is not None:
                    self.usage = metadata.get("usage")
                    self.metrics = metadata.get("metrics")
                    continue
                for name, retryable in STREAM_EXCEPTIONS.items():
                    if name in event:  # botocore raises these itself; kept for other clients' shapes
                        detail = _shown(str((event[name] or {}).get("message") or ""))
                        raise TokenSourceError(
                            f"the model stream failed: {detail}", _error_type(name), retryable=retryable
                        )
        except ClientError as error:  # botocore's EventStreamError: an exception event in the stream
            raise _client_error(error) from error
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # the consumer stopped or the stream ended: release the HTTP connection


def from_environment(environ: Mapping[str, str] | None = None) -> TokenSource:
    """The token source the construct configured: ``STREAMING_TOKEN_SOURCE`` and ``STREAMING_MODEL_ID``.

    Raises ``ValueError`` naming the variable and the accepted values when the configuration is wrong.
    """
    env = os.environ if environ is None else environ
    kind = (env.get(ENV_TOKEN_SOURCE) or "offline").strip().lower()
    if kind not in TOKEN_SOURCES:
        raise ValueError(f"{ENV_TOKEN_SOURCE} must be one of {', '.join(TOKEN_SOURCES)}, got {kind!r}")
    if kind == "bedrock":
        model = (env.get(ENV_MODEL_ID) or "").strip()
        if not model:
            raise ValueError(f"{ENV_MODEL_ID} must name the model or inference profile when {ENV_TOKEN_SOURCE}=bedrock")
        return BedrockConverseStream(model)
    raw_delay = (env.get(ENV_OFFLINE_DELAY_MS) or "0").strip()
    try:
        delay = float(raw_delay) / 1000.0
    except ValueError:
        raise ValueError(f"{ENV_OFFLINE_DELAY_MS} must be a number of milliseconds, got {raw_delay!r}") from None
    if not delay >= 0 or delay > 60:
        raise ValueError(f"{ENV_OFFLINE_DELAY_MS} must be between 0 and 60000, got {raw_delay!r}")
    return OfflineTokens(delay_seconds=delay)
