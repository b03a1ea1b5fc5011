"""Job sources: which EventBridge events say that a job finished, and how to read them.

A :class:`JobSource` names an integration (its ``namespace``), the event pattern of its
completion events, where the job id and the status are in the event, which statuses mean success
and which mean failure, and optionally where an error code and a cause are. ``CallbackPattern``
turns each source into one EventBridge rule whose target is the resumer. A ``JobSource`` checks
its own fields when it is constructed and raises one ``PropError`` naming every bad field.

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
  ``InvokeDataAutomationAsync`` returns: :data:`BDA_JOB_ID_JSONATA`), the cause
  ``detail.error_message``; the errors ``BedrockDataAutomation.ClientError`` and
  ``BedrockDataAutomation.ServiceError``.
- AWS DMS (classic replication tasks): ``aws.dms`` / ``DMS Replication Task State Change``,
  ``detail.eventType`` ``REPLICATION_TASK_STOPPED`` or ``REPLICATION_TASK_FAILED``; the job id is
  the task ARN in ``resources[0]`` (reused by every run: ``reuses_job_ids``), the cause
  ``detail.detailMessage``, which also carries the stop reason (``Stop Reason
  FULL_LOAD_ONLY_FINISHED``): only the reasons in :data:`DMS_SUCCESS_STOP_REASONS` count as
  success (:func:`dms_status_expression`).
- Amazon Macie: Macie sends only ``Macie Finding`` events to EventBridge; classification-job
  status changes go to CloudWatch Logs (``/aws/macie/classificationjobs``), not to EventBridge.
  :meth:`JobSource.macie_classification_job` listens for the events that
  ``MacieJobStatusForwarder`` (``macie_forwarder.py``, opt-in) puts on the bus from that log group.
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

#: What an error name may be: short, no spaces, catchable by name in ``ErrorEquals``.
ERROR_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
#: The most ``stale_tolerance_seconds`` may be: more would make the stale check meaningless.
MAX_STALE_TOLERANCE_SECONDS = 300
#: Longest ``status_expression`` (it is inlined into the resumer's definition once per source).
MAX_STATUS_EXPRESSION_LENGTH = 4096

# --- Bedrock Data Automation ---------------------------------------------------------------------
BDA_SUCCEEDED = "Bedrock Data Automation Job Succeeded"
BDA_CLIENT_ERROR = "Bedrock Data Automation Job Failed With Client Error"
BDA_SERVICE_ERROR = "Bedrock Data Automation Job Failed With Service Error"
#: The error a waiting workflow sees for each failure detail-type.
BDA_ERROR_NAMES = {
    BDA_CLIENT_ERROR: "BedrockDataAutomation.ClientError",
    BDA_SERVICE_ERROR: "BedrockDataAutomation.ServiceError",
}
#: JSONata that turns the ``InvocationArn`` of ``InvokeDataAutomationAsync``
#: (``arn:aws:bedrock:<region>:<account>:data-automation-invocation/<jobId>``) into the job id of
#: its events (``detail.job_id``), here for the result of a JSONata task.
BDA_JOB_ID_JSONATA = "$split($states.result.InvocationArn, '/')[-1]"
#: The same for a JSONPath workflow, as an intrinsic function (the ARN holds one ``/``).
BDA_JOB_ID_INTRINSIC = "States.ArrayGetItem(States.StringSplit($.InvocationArn, '/'), 1)"

# --- AWS DMS ---------------------------------------------------------------------------------------
DMS_STOPPED = "REPLICATION_TASK_STOPPED"
DMS_FAILED = "REPLICATION_TASK_FAILED"
#: The stop reasons AWS DMS documents for a replication task (``StopReason`` of
#: ``DescribeReplicationTasks``; the same words follow ``Stop Reason`` in the event's
#: ``detailMessage``).
DMS_STOP_REASONS = (
    "NORMAL",
    "RECOVERABLE_ERROR",
    "FATAL_ERROR",
    "FULL_LOAD_ONLY_FINISHED",
    "STOPPED_AFTER_FULL_LOAD",
    "STOPPED_AFTER_CACHED_EVENTS",
    "EXPRESS_LICENSE_LIMITS_REACHED",
    "STOPPED_AFTER_DDL_APPLY",
    "STOPPED_DUE_TO_LOW_MEMORY",
    "STOPPED_DUE_TO_LOW_DISK",
    "STOPPED_AT_SERVER_TIME",
    "STOPPED_AT_COMMIT_TIME",
    "RECONFIGURATION_RESTART",
    "RECYCLE_TASK",
)
#: Stop reasons that mean the task did what it was started for: it finished normally, finished
#: its full load (with or without the cached changes), or reached a stop point the task was
#: configured with (after a DDL, at a server or commit time). Every other reason, and a stop
#: event without a reason, fails the wait.
DMS_SUCCESS_STOP_REASONS = (
    "NORMAL",
    "FULL_LOAD_ONLY_FINISHED",
    "STOPPED_AFTER_FULL_LOAD",
    "STOPPED_AFTER_CACHED_EVENTS",
    "STOPPED_AFTER_DDL_APPLY",
    "STOPPED_AT_SERVER_TIME",
    "STOPPED_AT_COMMIT_TIME",
)
#: The reason of a stop event whose ``detailMessage`` names none that this source knows.
DMS_UNKNOWN_STOP_REASON = "UNKNOWN"
_DMS_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")

# --- Amazon Macie ----------------------------------------------------------------------------------
#: Source and detail-type of the job-status events ``MacieJobStatusForwarder`` puts on the bus.
MACIE_EVENT_SOURCE = "custom.macie.classification-jobs"
MACIE_DETAIL_TYPE = "Macie Classification Job Status"
#: The log group Macie writes job events to (in every account and Region where jobs ran).
MACIE_LOG_GROUP_NAME = "/aws/macie/classificationjobs"
#: The job-status event types Macie documents (``eventType``); account- and bucket-level error
#: events are not job statuses and are not forwarded.
MACIE_JOB_STATUS_EVENT_TYPES = (
    "JOB_CREATED",
    "ONE_TIME_JOB_STARTED",
    "SCHEDULED_RUN_STARTED",
    "BUCKET_MATCHED_THE_CRITERIA",
    "NO_BUCKETS_MATCHED_THE_CRITERIA",
    "SCHEDULED_RUN_COMPLETED",
    "JOB_PAUSED_BY_USER",
    "JOB_RESUMED_BY_USER",
    "JOB_PAUSED_BY_MACIE_SERVICE_QUOTA_MET",
    "JOB_RESUMED_BY_MACIE_SERVICE_QUOTA_LIFTED",
    "JOB_CANCELLED",
    "JOB_COMPLETED",
)


@dataclass(frozen=True)
class JobSource:
    """One integration whose completion events resume waiting workflows.

    Args:
        namespace: Keeps this service's job ids apart from other services' ids in the one token
            table (``"translate"``, ``"dms"``...): 1-64 characters of ``A-Z a-z 0-9 _ . -``.
            Unique per ``CallbackPattern``.
        event_pattern: The EventBridge event pattern of the completion events, in EventBridge's
            JSON form (``{"source": ["aws.translate"], "detail-type": [...], "detail": {...}}``).
            Must filter on ``source``. A filter on the status field is added for you when the
            pattern has none and there is no ``status_expression``.
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
        stale_tolerance_seconds: With ``reuses_job_ids``: how many whole seconds (0 to 300) before
            the second the waiting execution started in an event may be dated and still count as
            its job's. Default: 2.
        status_expression: A JSONata expression over the event ``$e`` (without ``{% %}``, at most
            4,096 characters) that yields the status (a string) when one field is not enough (DMS:
            the event type and the stop reason). Replaces ``status_path`` in the resumer; the
            statuses being computed, the rule adds no status filter: filter the raw status field
            in ``event_pattern`` (``status_path`` names it).
        error_names: Short, catchable error names per failure status
            (``{"<status>": "Service.ErrorName"}``: 1-128 characters of ``A-Z a-z 0-9 _ . -``,
            starting with a letter, not ``States.``; keys must be failure statuses). A status
            without one fails with the value at ``error_path``, else ``"<namespace>.<status>"``.
        claim_bound: Events of this source only resume a waiter whose record carries the claim
            the event names (``detail.claimId`` equal to the record's ``callbackRequestId``), and
            never record an early completion: only the callback-URL source (its pattern's only
            source ``cdk-serverless-patterns.callback-url``), whose handler writes the claim.
            Default: False.
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

    def __post_init__(self) -> None:
        """Checks every field; raises one ``PropError`` naming each bad field (``namespace: ...``)."""
        found = self.problems(prop="")
        if found:
            from cdk_serverless_patterns.core.props import PropError  # the CDK only when there is an error

            raise PropError(type(self).__name__, [f"{name}: {problem}" for name, problem in found])

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
        notifications on).

        The job id of the events (``detail.job_id``) is the last part of the ``InvocationArn``
        the start call returns: derive it before the wait step with :data:`BDA_JOB_ID_JSONATA`
        (JSONata) or :data:`BDA_JOB_ID_INTRINSIC` (JSONPath). A failed job fails the wait with
        ``BedrockDataAutomation.ClientError`` or ``BedrockDataAutomation.ServiceError``, the cause
        being ``detail.error_message``.
        """
        return cls(
            namespace=namespace,
            event_pattern={
                "source": ["aws.bedrock"],
                "detail-type": [BDA_SUCCEEDED, BDA_CLIENT_ERROR, BDA_SERVICE_ERROR],
            },
            job_id_path="$.detail.job_id",
            status_path="$.detail-type",
            success_statuses=(BDA_SUCCEEDED,),
            failure_statuses=(BDA_CLIENT_ERROR, BDA_SERVICE_ERROR),
            cause_path="$.detail.error_message",
            error_names=dict(BDA_ERROR_NAMES),
        )

    @classmethod
    def dms_replication_task(
        cls,
        *,
        namespace: str = "dms",
        success_stop_reasons: Sequence[str] = DMS_SUCCESS_STOP_REASONS,
        stale_tolerance_seconds: int = 2,
    ) -> JobSource:
        """AWS DMS replication tasks (``StartReplicationTask``); the job id is the task ARN.

        A task that stops reports ``REPLICATION_TASK_STOPPED`` with its stop reason in
        ``detail.detailMessage`` (``Stop Reason FULL_LOAD_ONLY_FINISHED``); a failed task reports
        ``REPLICATION_TASK_FAILED``. The status is ``REPLICATION_TASK_STOPPED:<reason>`` or
        ``REPLICATION_TASK_FAILED`` (:func:`dms_status_expression`): a stop succeeds only for a
        reason in ``success_stop_reasons`` (default :data:`DMS_SUCCESS_STOP_REASONS`); any other
        reason, an unknown one or none at all (``REPLICATION_TASK_STOPPED:UNKNOWN``) fails the
        wait with ``DMS.<Reason>`` (``DMS.FatalError``, ``DMS.UnknownStopReason``...), a failed
        task with ``DMS.ReplicationTaskFailed``; the cause is the ``detailMessage``.

        The task ARN is reused by every run of the task (``reuses_job_ids``): an event dated more
        than ``stale_tolerance_seconds`` before the waiting execution started belongs to an earlier
        run and is dropped as ``STALE``. One wait at a time per task (a second waiter fails with
        ``CallbackPattern.JobAlreadyAwaited``). A CDC task stops only at a configured stop point.
        """
        reasons = _strings(success_stop_reasons)
        bad = [r for r in reasons if not isinstance(r, str) or not _DMS_REASON.match(r.upper())]
        if not reasons or bad:
            from cdk_serverless_patterns.core.props import PropError

            raise PropError(
                "JobSource.dms_replication_task",
                [
                    f"success_stop_reasons: {bad or reasons!r}: needs stop reasons such as 'FULL_LOAD_ONLY_FINISHED' "
                    f"(upper-case letters, digits and _; documented: {', '.join(DMS_STOP_REASONS)})"
                ],
            )
        succeed = tuple(dict.fromkeys(r.upper() for r in reasons))
        fail = tuple(r for r in (*DMS_STOP_REASONS, DMS_UNKNOWN_STOP_REASON) if r not in succeed)
        failure_statuses = (DMS_FAILED, *(f"{DMS_STOPPED}:{r}" for r in fail))
        error_names = {DMS_FAILED: "DMS.ReplicationTaskFailed"}
        error_names.update({f"{DMS_STOPPED}:{r}": f"DMS.{_pascal(r)}" for r in fail})
        error_names[f"{DMS_STOPPED}:{DMS_UNKNOWN_STOP_REASON}"] = "DMS.UnknownStopReason"
        return cls(
            namespace=namespace,
            event_pattern={
                "source": ["aws.dms"],
                "detail-type": ["DMS Replication Task State Change"],
                "detail": {"eventType": [DMS_FAILED, DMS_STOPPED]},  # sorted, as the status filter was
            },
            job_id_path="$.resources[0]",
            status_path="$.detail.eventType",
            status_expression=dms_status_expression(known_reasons=(*DMS_STOP_REASONS, *succeed)),
            success_statuses=tuple(f"{DMS_STOPPED}:{r}" for r in succeed),
            failure_statuses=failure_statuses,
            cause_path="$.detail.detailMessage",
            error_names=error_names,
            reuses_job_ids=True,
            stale_tolerance_seconds=stale_tolerance_seconds,
        )

    @classmethod
    def macie_classification_job(
        cls,
        *,
        namespace: str = "macie",
        event_source: str = MACIE_EVENT_SOURCE,
        scheduled_runs: bool = False,
        stale_tolerance_seconds: int = 2,
    ) -> JobSource:
        """Amazon Macie sensitive data discovery (classification) jobs; the job id is its ``jobId``.

        Macie publishes job status changes only to CloudWatch Logs (log group
        ``/aws/macie/classificationjobs``), not to EventBridge, whose only Macie event is
        ``Macie Finding``. Deploy ``MacieJobStatusForwarder`` (opt-in) to put each job-status log
        event on the pattern's bus, unchanged as the event detail, with source ``event_source`` and
        detail-type ``"Macie Classification Job Status"``, dated when Macie logged it.

        A one-time job succeeds with ``JOB_COMPLETED``; ``JOB_CANCELLED`` fails the wait with
        ``Macie.JobCancelled`` (a paused job is not finished: it is resumed or, after 30 days,
        cancelled). A periodic job never completes: with ``scheduled_runs=True`` a wait also ends
        with its next ``SCHEDULED_RUN_COMPLETED``, and since every run has the job's id
        (``reuses_job_ids``), a run completed more than ``stale_tolerance_seconds`` before the
        waiting execution started is dropped as ``STALE``. Without it, periodic jobs end a wait
        only when cancelled.
        """
        success: tuple[str, ...] = (
            ("JOB_COMPLETED", "SCHEDULED_RUN_COMPLETED") if scheduled_runs else ("JOB_COMPLETED",)
        )
        return cls(
            namespace=namespace,
            event_pattern={"source": [event_source], "detail-type": [MACIE_DETAIL_TYPE]},
            job_id_path="$.detail.jobId",
            status_path="$.detail.eventType",
            success_statuses=success,
            failure_statuses=("JOB_CANCELLED",),
            error_names={"JOB_CANCELLED": "Macie.JobCancelled"},
            reuses_job_ids=scheduled_runs,
            stale_tolerance_seconds=stale_tolerance_seconds,
        )

    @classmethod
    def callback_url(cls, *, namespaces: Sequence[str], name: str = "callback-url") -> JobSource:
        """The completion events of ``CallbackUrls`` (the callback contract): one source for all
        callback-URL namespaces; the namespace is read from each event (``detail.namespace``).
        Claim-bound: an event resumes only the waiter whose record carries the handler's claim."""
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
            claim_bound=True,
        )

    # ----------------------------------------------------------------- derived values
    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace this source may resume."""
        return tuple(self.allowed_namespaces) if self.namespace_path else (self.namespace,)

    def problems(self, prop: str = "source") -> list[tuple[str, str]]:
        """Every problem of this source as ``(prop, problem)`` pairs, each prop prefixed with
        ``prop`` (``"source.namespace"``; no prefix when ``prop`` is empty); empty when valid."""
        found: list[tuple[str, str]] = []

        def where(name: str) -> str:
            return f"{prop}.{name}" if prop else name

        def need(ok: bool, name: str, problem: str) -> None:
            if not ok:
                found.append((where(name), problem))

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
        success, failure = _strings(self.success_statuses), _strings(self.failure_statuses)
        need(bool(success), "success_statuses", "needs at least one status (a sequence of strings, not one string)")
        need(bool(failure), "failure_statuses", "needs at least one status (a sequence of strings, not one string)")
        need(
            all(isinstance(s, str) and s for s in [*success, *failure]),
            "success_statuses",
            "statuses must be non-empty strings",
        )
        overlap = sorted({s for s in success if isinstance(s, str)} & {s for s in failure if isinstance(s, str)})
        need(not overlap, "failure_statuses", f"{', '.join(overlap)} cannot mean both success and failure")
        found.extend((where("event_pattern"), problem) for problem in pattern_problems(self.event_pattern))
        if self.namespace_path:
            allowed = _strings(self.allowed_namespaces)
            need(bool(allowed), "allowed_namespaces", "needs at least one namespace with namespace_path")
            bad = [n for n in allowed if not isinstance(n, str) or not NAMESPACE_PATTERN.match(n)]
            need(not bad, "allowed_namespaces", f"{bad} must be 1-64 characters of A-Z a-z 0-9 _ . -")
        else:
            need(not self.allowed_namespaces, "allowed_namespaces", "only applies together with namespace_path")
        found.extend((where(name), problem) for name, problem in self._new_field_problems(set(failure)))
        return found

    def _new_field_problems(self, failure: set[Any]) -> list[tuple[str, str]]:
        """Problems of the stale, status-expression, error-name and claim fields."""
        found: list[tuple[str, str]] = []
        for name in ("reuses_job_ids", "claim_bound"):
            if not isinstance(getattr(self, name), bool):
                found.append((name, f"must be True or False, got {getattr(self, name)!r}"))
        tolerance = self.stale_tolerance_seconds
        whole = isinstance(tolerance, int) and not isinstance(tolerance, bool)
        if not whole or not 0 <= tolerance <= MAX_STALE_TOLERANCE_SECONDS:
            found.append(
                (
                    "stale_tolerance_seconds",
                    f"must be a whole number of seconds from 0 to {MAX_STALE_TOLERANCE_SECONDS}, got {tolerance!r}",
                )
            )
        expression = self.status_expression
        if expression is not None:
            if not isinstance(expression, str) or not expression.strip():
                found.append(("status_expression", f"must be a non-empty JSONata expression over $e: {expression!r}"))
            elif len(expression) > MAX_STATUS_EXPRESSION_LENGTH:
                found.append(
                    ("status_expression", f"is {len(expression)} characters; at most {MAX_STATUS_EXPRESSION_LENGTH}")
                )
            elif "{%" in expression or "%}" in expression:
                found.append(("status_expression", "is the bare JSONata expression, without '{%' and '%}'"))
        names = self.error_names
        if not isinstance(names, Mapping):
            found.append(("error_names", f"must be a mapping of failure status to error name, got {names!r}"))
        else:
            not_failures = sorted(repr(k) for k in names if k not in failure)
            if not_failures:
                found.append(("error_names", f"{', '.join(not_failures)} are not failure statuses of this source"))
            bad = sorted(
                repr(v)
                for v in names.values()
                if not isinstance(v, str) or not ERROR_NAME_PATTERN.match(v) or v.startswith("States.")
            )
            if bad:
                found.append(
                    (
                        "error_names",
                        f"{', '.join(bad)}: an error name is 1-128 characters of A-Z a-z 0-9 _ . -, starts with a "
                        "letter and not with 'States.' (so that a Catch can name it)",
                    )
                )
        if self.claim_bound is True and _pattern_sources(self.event_pattern) != [CALLBACK_URL_EVENT_SOURCE]:
            found.append(
                (
                    "claim_bound",
                    f"only the callback-URL handler writes claims: the event pattern must match only the source "
                    f"{CALLBACK_URL_EVENT_SOURCE!r}",
                )
            )
        return found

    def rule_pattern(self) -> dict[str, Any]:
        """The rule's event pattern: the source's own, plus a filter on the terminal statuses
        when the pattern does not filter the status field itself (so non-terminal events never
        start the resumer). With ``status_expression`` the statuses are computed, not values of
        the status field: the pattern is the source's own, which should filter that field."""
        pattern: dict[str, Any] = json.loads(json.dumps(dict(self.event_pattern)))
        if self.status_expression is not None:
            return pattern  # the statuses are computed: the event pattern filters the raw field itself
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


def dms_status_expression(*, known_reasons: Sequence[str] = DMS_STOP_REASONS) -> str:
    """JSONata over the DMS event ``$e``: ``REPLICATION_TASK_FAILED``, or
    ``REPLICATION_TASK_STOPPED:<reason>`` with the reason that follows ``Stop Reason`` in
    ``detail.detailMessage`` when it is one of ``known_reasons``, else
    ``REPLICATION_TASK_STOPPED:UNKNOWN``; other event types yield the event type."""
    reasons = sorted({str(r).upper() for r in known_reasons if _DMS_REASON.match(str(r).upper())})
    return (
        "($type := $string($e.detail.eventType); "
        "$reason := $uppercase($match($string($e.detail.detailMessage), "
        "/Stop Reason:? *([A-Za-z0-9_]+)/i)[0].groups[0]); "
        f"$type = '{DMS_STOPPED}' ? '{DMS_STOPPED}:' & ($reason in {json.dumps(reasons)} ? $reason : "
        f"'{DMS_UNKNOWN_STOP_REASON}') : $type)"
    )


def _pascal(reason: str) -> str:
    """``FULL_LOAD_ONLY_FINISHED`` -> ``FullLoadOnlyFinished``."""
    return "".join(part.capitalize() for part in reason.split("_") if part)


def _strings(value: object) -> list[Any]:
    """The items of a sequence of statuses or namespaces; a lone string is not such a sequence."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        return []
    return list(value)


def _pattern_sources(pattern: object) -> list[Any] | None:
    sources = pattern.get("source") if isinstance(pattern, Mapping) else None
    return list(sources) if isinstance(sources, list | tuple) else None


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
