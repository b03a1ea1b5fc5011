"""Job sources: which EventBridge events say that a job finished, and how to read them.

A :class:`JobSource` names an integration (its ``namespace``), the event pattern of its
completion events, where the job id and the status are in the event, which statuses mean success
and which mean failure, and optionally where an error code and a cause are. ``CallbackPattern``
turns each source into one EventBridge rule whose target is the resumer.

Paths are simple JSONPath (``$.detail.jobId``, ``$.resources[0]``, ``$.detail-type``): the
construct compiles them into the resumer's JSONata expressions at synth time, so a wrong path
is a synth-time error, not a workflow that waits forever.

The ready-made sources use the events that the services document:

- Amazon Translate: ``aws.translate`` / ``Translate TextTranslationJob State Change``,
  ``detail.jobId``, ``detail.jobStatus`` (``COMPLETED``; ``COMPLETED_WITH_ERROR``, ``FAILED``,
  ``STOPPED``).
- Amazon Bedrock Data Automation: ``aws.bedrock`` / ``Bedrock Data Automation Job Succeeded``,
  ``... Job Failed With Client Error``, ``... Job Failed With Service Error``; the status is the
  detail-type itself, the job id is ``detail.job_id`` (the last part of the invocation ARN that
  ``InvokeDataAutomationAsync`` returns), the cause ``detail.error_message``.
- AWS DMS (classic replication tasks): ``aws.dms`` / ``DMS Replication Task State Change``,
  ``detail.eventType`` (``REPLICATION_TASK_STOPPED``; ``REPLICATION_TASK_FAILED``), the job id is
  the task ARN in ``resources[0]``, the cause ``detail.detailMessage``.
- Amazon Macie: Macie sends only ``Macie Finding`` events to EventBridge; classification-job
  status changes go to CloudWatch Logs (``/aws/macie/classificationjobs``), not to EventBridge.
  :meth:`JobSource.macie_classification_job` therefore listens for the events that a
  subscription filter on that log group forwards (see its docstring), and says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdk_serverless_patterns.callback import contract

#: A namespace becomes part of the record id (``<namespace>#<jobId>``): no ``#``, short, plain.
NAMESPACE_PATTERN = contract.NAMESPACE_PATTERN
_PATH = re.compile(r"^\$((\.[A-Za-z0-9_@-]+)|(\[\d+\]))+$")
_SEGMENT = re.compile(r"(\.[A-Za-z0-9_@-]+)|(\[\d+\])")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATTERN_KEYS = {"source", "detail-type", "detail", "account", "region", "resources", "id", "time", "version"}

#: Source and detail-type of the events the callback-URL handler puts (see callback_urls.py).
CALLBACK_URL_EVENT_SOURCE = contract.CALLBACK_URL_EVENT_SOURCE
CALLBACK_URL_DETAIL_TYPE = contract.CALLBACK_URL_DETAIL_TYPE


@dataclass(frozen=True)
class JobSource:
    """One integration whose completion events resume waiting workflows.

    Args:
        namespace: Keeps this service's job ids apart from other services' ids in the one token
            table (``"translate"``, ``"dms"``...): 1-64 characters of ``A-Z a-z 0-9 _ . -``.
            Unique per ``CallbackPattern``.
        event_pattern: The EventBridge event pattern of the completion events, in EventBridge's
            JSON form (``{"source": ["aws.translate"], "detail-type": [...], "detail": {...}}``).
            A filter on the status field is added for you when the pattern has none.
        job_id_path: Where the job id is in the event, e.g. ``"$.detail.jobId"``. The same value
            the workflow passes to ``wait_for_job`` as its job id.
        status_path: Where the job status is in the event, e.g. ``"$.detail.jobStatus"``.
        success_statuses: Statuses that resume the workflow with success (the output is the
            value at ``output_path``).
        failure_statuses: Statuses that resume the workflow with failure. Other statuses are
            ignored by the resumer (and filtered out by the rule where possible).
        error_path: Where an error code is in the event. Default: none; the error is
            ``"<namespace>.<status>"``.
        cause_path: Where a human-readable cause is in the event. Default: none; the cause is the
            event's detail as JSON.
        output_path: What the workflow receives on success. Default: ``"$.detail"``.
        namespace_path: For a source that serves several namespaces (the callback-URL source):
            where the namespace is in the event. Excludes nothing, but then ``namespace`` only
            names the source and ``allowed_namespaces`` lists the namespaces it may resume.
        allowed_namespaces: With ``namespace_path``: the namespaces this source may resume.
        reuses_job_ids: Whether the source reuses job ids across runs (a DMS task ARN). Only then
            is an event older than the waiting execution dropped as ``STALE`` (compared at
            EventBridge's one-second precision, with ``stale_tolerance_seconds``). Default: False.
        stale_tolerance_seconds: With ``reuses_job_ids``: how many whole seconds before the waiting
            execution's start an event may be dated and still count as its job's. Default: 2.
        status_expression: A JSONata expression over the event ``$e`` that yields the status
            (a string) when one field is not enough (DMS: the event type and the stop reason).
            Replaces ``status_path`` in the resumer; ``status_path`` still filters the rule.
        error_names: Short, catchable error names per failure status
            (``{"<status>": "Service.ErrorName"}``); a status without one fails with
            ``"<namespace>.<status>"`` or the value at ``error_path``.
        claim_bound: Events of this source only resume a waiter whose record carries the claim
            the event names (``detail.claimId`` equal to the record's ``callbackRequestId``), and
            never record an early completion: the callback-URL source, whose handler writes the
            claim. Default: False.
    """

    namespace: str
    event_pattern: Mapping[str, Any]
    job_id_path: str
    status_path: str
    success_statuses: Sequence[str]
    failure_statuses: Sequence[str]
    error_path: str | None = None
    cause_path: str | None = None
    output_path: str = "$.detail"
    namespace_path: str | None = None
    allowed_namespaces: Sequence[str] = field(default_factory=tuple)
    reuses_job_ids: bool = False
    stale_tolerance_seconds: int = 2
    status_expression: str | None = None
    error_names: Mapping[str, str] = field(default_factory=dict)
    claim_bound: bool = False

    # ----------------------------------------------------------------- ready-made sources
    @classmethod
    def translate_text_translation_job(
        cls,
        *,
        namespace: str = "translate",
        success_statuses: Sequence[str] = ("COMPLETED",),
        failure_statuses: Sequence[str] = ("COMPLETED_WITH_ERROR", "FAILED", "STOPPED"),
    ) -> JobSource:
        """Amazon Translate batch jobs (``StartTextTranslationJob``); the job id is its ``JobId``.

        ``COMPLETED_WITH_ERROR`` counts as failure by default (some documents were not
        translated); pass ``success_statuses=("COMPLETED", "COMPLETED_WITH_ERROR")`` to accept it.
        """
        return cls(
            namespace=namespace,
            event_pattern={"source": ["aws.translate"], "detail-type": ["Translate TextTranslationJob State Change"]},
            job_id_path="$.detail.jobId",
            status_path="$.detail.jobStatus",
            success_statuses=tuple(success_statuses),
            failure_statuses=tuple(failure_statuses),
        )

    @classmethod
    def bedrock_data_automation(cls, *, namespace: str = "bedrock-data-automation") -> JobSource:
        """Amazon Bedrock Data Automation (``InvokeDataAutomationAsync`` with EventBridge
        notifications on); the job id is the last part of the returned ``invocationArn``."""
        succeeded = "Bedrock Data Automation Job Succeeded"
        failed = (
            "Bedrock Data Automation Job Failed With Client Error",
            "Bedrock Data Automation Job Failed With Service Error",
        )
        return cls(
            namespace=namespace,
            event_pattern={"source": ["aws.bedrock"], "detail-type": [succeeded, *failed]},
            job_id_path="$.detail.job_id",
            status_path="$.detail-type",
            success_statuses=(succeeded,),
            failure_statuses=failed,
            cause_path="$.detail.error_message",
        )

    @classmethod
    def dms_replication_task(cls, *, namespace: str = "dms") -> JobSource:
        """AWS DMS replication tasks (``StartReplicationTask``); the job id is the task ARN.

        A full-load task stops when it finishes (``REPLICATION_TASK_STOPPED``); a failure is
        ``REPLICATION_TASK_FAILED``. A task stopped by hand also reports ``REPLICATION_TASK_STOPPED``
        (its ``detailMessage`` gives the stop reason, in the output), and a CDC task never stops by
        itself: wait on full-load tasks. The task ARN is reused by every run of the task: one wait at a
        time per task (a second waiter fails with ``CallbackPattern.JobAlreadyAwaited``).
        """
        return cls(
            namespace=namespace,
            event_pattern={"source": ["aws.dms"], "detail-type": ["DMS Replication Task State Change"]},
            job_id_path="$.resources[0]",
            status_path="$.detail.eventType",
            success_statuses=("REPLICATION_TASK_STOPPED",),
            failure_statuses=("REPLICATION_TASK_FAILED",),
            cause_path="$.detail.detailMessage",
        )

    @classmethod
    def macie_classification_job(
        cls, *, namespace: str = "macie", event_source: str = "custom.macie.classification-jobs"
    ) -> JobSource:
        """Amazon Macie sensitive data discovery (classification) jobs.

        Macie publishes job status changes to CloudWatch Logs (log group
        ``/aws/macie/classificationjobs``, fields ``jobId`` and ``eventType`` such as
        ``JOB_COMPLETED`` or ``JOB_CANCELLED``), not to EventBridge, whose only Macie event is
        ``Macie Finding``. This source expects those log events forwarded to the bus unchanged as
        the event detail, with source ``event_source`` and detail-type
        ``"Macie Classification Job Status"`` (for example by a subscription filter and a small
        forwarder, which this library does not create).
        """
        return cls(
            namespace=namespace,
            event_pattern={"source": [event_source], "detail-type": ["Macie Classification Job Status"]},
            job_id_path="$.detail.jobId",
            status_path="$.detail.eventType",
            success_statuses=("JOB_COMPLETED",),
            failure_statuses=("JOB_CANCELLED",),
        )

    @classmethod
    def callback_url(cls, *, namespaces: Sequence[str], name: str = "callback-url") -> JobSource:
        """The completion events of ``CallbackUrls`` (the callback contract): one source for all
        callback-URL namespaces; the namespace is read from each event (``detail.namespace``)."""
        return cls(
            namespace=name,
            event_pattern={"source": [CALLBACK_URL_EVENT_SOURCE], "detail-type": [CALLBACK_URL_DETAIL_TYPE]},
            job_id_path="$.detail.jobId",
            status_path="$.detail.status",
            success_statuses=("SUCCEEDED",),
            failure_statuses=("FAILED",),
            error_path="$.detail.error",
            cause_path="$.detail.cause",
            output_path="$.detail.output",
            namespace_path="$.detail.namespace",
            allowed_namespaces=tuple(namespaces),
        )

    # ----------------------------------------------------------------- derived values
    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace this source may resume."""
        return tuple(self.allowed_namespaces) if self.namespace_path else (self.namespace,)

    def problems(self, prop: str = "source") -> list[tuple[str, str]]:
        """Every problem of this source as ``(prop, problem)`` pairs; empty when valid."""
        found: list[tuple[str, str]] = []

        def need(ok: bool, name: str, problem: str) -> None:
            if not ok:
                found.append((f"{prop}.{name}", problem))

        need(
            isinstance(self.namespace, str) and bool(NAMESPACE_PATTERN.match(self.namespace)),
            "namespace",
            f"{self.namespace!r} must be 1-64 characters of A-Z a-z 0-9 _ . - (it is part of the record id)",
        )
        need(is_path(self.job_id_path), "job_id_path", f"{self.job_id_path!r} is not a path like '$.detail.jobId'")
        need(is_path(self.status_path), "status_path", f"{self.status_path!r} is not a path like '$.detail.status'")
        need(is_path(self.output_path), "output_path", f"{self.output_path!r} is not a path like '$.detail'")
        for name in ("error_path", "cause_path", "namespace_path"):
            value = getattr(self, name)
            need(value is None or is_path(value), name, f"{value!r} is not a path like '$.detail.error'")
        success, failure = list(self.success_statuses), list(self.failure_statuses)
        need(bool(success), "success_statuses", "needs at least one status")
        need(bool(failure), "failure_statuses", "needs at least one status")
        need(
            all(isinstance(s, str) and s for s in [*success, *failure]),
            "success_statuses",
            "statuses must be non-empty strings",
        )
        overlap = sorted(set(success) & set(failure))
        need(not overlap, "failure_statuses", f"{', '.join(overlap)} cannot mean both success and failure")
        found.extend((f"{prop}.event_pattern", problem) for problem in pattern_problems(self.event_pattern))
        if self.namespace_path:
            need(
                bool(self.allowed_namespaces), "allowed_namespaces", "needs at least one namespace with namespace_path"
            )
            bad = [n for n in self.allowed_namespaces if not NAMESPACE_PATTERN.match(str(n))]
            need(not bad, "allowed_namespaces", f"{bad} must be 1-64 characters of A-Z a-z 0-9 _ . -")
        else:
            need(not self.allowed_namespaces, "allowed_namespaces", "only applies together with namespace_path")
        return found

    def rule_pattern(self) -> dict[str, Any]:
        """The rule's event pattern: the source's own, plus a filter on the terminal statuses
        when the pattern does not filter the status field itself (so non-terminal events never
        start the resumer)."""
        pattern: dict[str, Any] = json.loads(json.dumps(dict(self.event_pattern)))
        keys = path_keys(self.status_path)
        if keys and all(isinstance(k, str) for k in keys):
            node = pattern
            for key in keys[:-1]:
                child = node.setdefault(str(key), {})
                if not isinstance(child, dict):
                    return pattern
                node = child
            node.setdefault(str(keys[-1]), sorted({*self.success_statuses, *self.failure_statuses}))
        return pattern


def is_path(path: object) -> bool:
    """Whether ``path`` is a simple JSONPath (``$.a.b``, ``$.a[0]``, ``$.detail-type``)."""
    return isinstance(path, str) and bool(_PATH.match(path))


def path_keys(path: str) -> list[str | int]:
    """The keys of a simple JSONPath: ``$.resources[0]`` -> ``["resources", 0]``."""
    keys: list[str | int] = []
    for name, index in _SEGMENT.findall(path):
        keys.append(name[1:] if name else int(index[1:-1]))
    return keys


def jsonata_path(path: str, root: str) -> str:
    """A simple JSONPath as a JSONata expression on ``root`` (``$e``): ``$e.detail.`detail-type```."""
    parts = [root]
    for key in path_keys(path):
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif _IDENTIFIER.match(key):
            parts.append(f".{key}")
        else:
            parts.append(f".`{key}`")
    return "".join(parts)


def pattern_problems(pattern: object) -> list[str]:
    """What is wrong with an EventBridge event pattern in JSON form, as messages."""
    if not isinstance(pattern, Mapping) or not pattern:
        return ["must be a non-empty mapping in EventBridge's JSON form, e.g. {'source': ['aws.translate']}"]
    problems = []
    unknown = sorted(set(pattern) - _PATTERN_KEYS)
    if unknown:
        problems.append(f"unknown top-level fields {unknown}; allowed: {sorted(_PATTERN_KEYS)}")
    if "source" not in pattern:
        problems.append("must filter on 'source' (a rule without it would see every event on the bus)")

    def walk(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            if not node:
                problems.append(f"{where or 'pattern'} is an empty object")
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else str(key))
        elif isinstance(node, list):
            if not node:
                problems.append(f"{where} is an empty list (it would match nothing)")
        else:
            problems.append(f"{where} must be a list of values or an object, got {node!r}")

    walk(pattern, "")
    return problems
