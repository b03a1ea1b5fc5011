"""What ``CircuitBreaker.protect`` checks: the function can run the extension, the settings are in
range, and (at synthesis, when every circuit is known) the circuits it names exist and fit in its
environment."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from cdk_serverless_patterns.circuit_breaker import contract
from cdk_serverless_patterns.core import PropErrors
from constructs import IValidation

#: Python runtimes whose interpreter can run the extension (it runs on the function's own Python).
MIN_PYTHON = (3, 12)
SUPPORTED_RUNTIMES = (lambda_.Runtime.PYTHON_3_12, lambda_.Runtime.PYTHON_3_13, lambda_.Runtime.PYTHON_3_14)
#: Room for CIRCUIT_BREAKER_CIRCUITS in a function's environment (4 KB in all, shared with the user's).
MAX_CIRCUIT_LIST_CHARS = 2048


def check_protect(
    errors: PropErrors,
    *,
    function: lambda_.Function,
    protected: Sequence[lambda_.Function],
    circuits: Sequence[str] | None,
    on_extension_error: str,
    cache_ttl: cdk.Duration,
    failure_rate_threshold: float,
    minimum_calls: int,
    window: cdk.Duration,
    slow_call_duration: cdk.Duration,
) -> tuple[str, ...] | None:
    """Records every problem of ``protect``'s props; returns the circuits to prefetch (``None``: all)."""
    runtime = getattr(function, "runtime", None)
    if not isinstance(function, lambda_.Function) or runtime is None:
        errors.add("function", f"must be a lambda_.Function with a Python runtime, got {type(function).__name__}")
    elif not supported_runtime(runtime):
        supported = ", ".join(r.name for r in SUPPORTED_RUNTIMES)
        errors.add(
            "function",
            f"runtime {runtime.name} cannot run the circuit breaker extension, which runs on the function's own "
            f"Python interpreter: use Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer ({supported})",
        )
    elif any(fn is function for fn in protected):
        errors.add("function", f"{function.node.path} is already protected by this breaker")
    ids: tuple[str, ...] | None = None
    if circuits is not None:
        ids = tuple(circuits)
        malformed = [c for c in ids if not isinstance(c, str) or not contract.CIRCUIT_ID_PATTERN.fullmatch(c)]
        errors.require(bool(ids), "circuits", "must name at least one circuit (or be None for all of them)")
        errors.require(not malformed, "circuits", f"{malformed!r} are not well-formed circuit ids")
        errors.require(len(set(ids)) == len(ids), "circuits", f"{list(ids)!r} names a circuit twice")
    errors.one_of(on_extension_error, "on_extension_error", contract.ON_EXTENSION_ERROR)
    errors.duration_between(cache_ttl, "cache_ttl", maximum=cdk.Duration.minutes(5), concrete=True)
    errors.require(
        isinstance(failure_rate_threshold, int | float) and 0 < failure_rate_threshold <= 100,
        "failure_rate_threshold",
        f"must be a percentage above 0 and at most 100, got {failure_rate_threshold!r}",
    )
    errors.require(
        isinstance(minimum_calls, int) and not isinstance(minimum_calls, bool) and minimum_calls >= 1,
        "minimum_calls",
        f"must be a positive integer, got {minimum_calls!r}",
    )
    errors.duration_between(
        window, "window", minimum=cdk.Duration.seconds(1), maximum=cdk.Duration.hours(1), concrete=True
    )
    errors.duration_between(slow_call_duration, "slow_call_duration", minimum=cdk.Duration.millis(1), concrete=True)
    return ids


def supported_runtime(runtime: lambda_.Runtime) -> bool:
    match = re.fullmatch(r"python(\d+)\.(\d+)", runtime.name)
    return (
        runtime.family == lambda_.RuntimeFamily.PYTHON
        and match is not None
        and (int(match.group(1)), int(match.group(2))) >= MIN_PYTHON
    )


@jsii.implements(cdk.IStableStringProducer)
class CircuitList:
    """Resolves to every circuit id of a breaker at synthesis (circuits added after ``protect`` too)."""

    def __init__(self, circuits: Callable[[], Mapping[str, object]]) -> None:
        self._circuits = circuits

    def produce(self) -> str | None:
        return ",".join(self._circuits())


#: What ``dynamodb:LeadingKeys`` allows when a breaker has no circuit at all: no circuit id can be
#: "-" (ids start with a letter or digit), so the condition then matches nothing.
NO_CIRCUIT = "-"


@jsii.implements(cdk.IStableListProducer)
class CircuitIdList:
    """Resolves to the list of every circuit id of a breaker at synthesis (for IAM conditions)."""

    def __init__(self, circuits: Callable[[], Mapping[str, object]]) -> None:
        self._circuits = circuits

    def produce(self) -> list[str] | None:
        return list(self._circuits()) or [NO_CIRCUIT]


def circuit_write_statement(table_arn: str, circuit_ids: Sequence[str]) -> iam.PolicyStatement:
    """``dynamodb:UpdateItem`` on ``table_arn``, only for items whose key is one of ``circuit_ids``
    (``dynamodb:LeadingKeys``: the partition key, ``circuitId``, is the whole key of the table)."""
    return iam.PolicyStatement(
        actions=["dynamodb:UpdateItem"],
        resources=[table_arn],
        conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": circuit_ids}},
    )


@jsii.implements(IValidation)
class ProtectedCircuitsAreKnown:
    """Synth-time checks: every circuit a protected function names exists in its breaker, and the
    prefetch list fits in the function's environment (Lambda allows 4 KB of variables in all)."""

    def __init__(
        self,
        circuits: Callable[[], Mapping[str, object]],
        protected: Callable[[], Sequence[tuple[lambda_.Function, tuple[str, ...] | None]]],
    ) -> None:
        self._circuits = circuits
        self._protected = protected

    def validate(self) -> list[str]:
        known = set(self._circuits())
        problems = []
        for function, ids in self._protected():
            unknown = sorted(set(ids or ()) - known)
            if unknown:
                problems.append(
                    f"CircuitBreaker.protect: circuits: {function.node.path} names {', '.join(unknown)}, which "
                    f"this breaker does not monitor (add_circuit them, or leave circuits=None); known: "
                    f"{', '.join(sorted(known)) or 'none'}"
                )
            listed = ",".join(ids) if ids is not None else ",".join(self._circuits())
            if len(listed) > MAX_CIRCUIT_LIST_CHARS:
                problems.append(
                    f"CircuitBreaker.protect: circuits: {function.node.path} would prefetch {len(listed)} characters "
                    f"of circuit ids, more than {MAX_CIRCUIT_LIST_CHARS} of the 4 KB Lambda allows for all environment "
                    "variables: pass circuits=[...] with the circuits this function calls"
                )
        return problems
