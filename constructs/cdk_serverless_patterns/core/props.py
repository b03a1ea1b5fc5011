"""Prop validation: collect every problem, then raise one error that names each prop."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import aws_cdk as cdk


class PropError(ValueError):
    """Raised by a construct whose props are invalid; ``problems`` lists each ``prop: problem``."""

    def __init__(self, construct: str, problems: list[str]) -> None:
        self.construct = construct
        self.problems = list(problems)
        lines = "\n  - ".join(self.problems)
        super().__init__(f"{construct} has invalid props:\n  - {lines}")


class PropErrors:
    """Collects prop problems so that the user sees all of them in one error.

    Usage::

        errors = PropErrors("CallbackPattern")
        errors.require(timeout.to_seconds() > 0, "timeout", "must be positive")
        errors.raise_if_any()
    """

    def __init__(self, construct: str) -> None:
        self._construct = construct
        self._problems: list[str] = []

    def add(self, prop: str, problem: str) -> None:
        """Records a problem with ``prop`` unconditionally."""
        self._problems.append(f"{prop}: {problem}")

    def require(self, ok: bool, prop: str, problem: str) -> bool:
        """Records ``problem`` for ``prop`` unless ``ok``; returns ``ok`` so checks can chain."""
        if not ok:
            self.add(prop, problem)
        return ok

    def exclusive(self, **props: Any) -> bool:
        """Records a problem when more than one of ``props`` is set (not None)."""
        given = [name for name, value in props.items() if value is not None]
        if len(given) > 1:
            self.add(given[0], f"cannot be combined with {', '.join(given[1:])}: they are mutually exclusive")
            return False
        return True

    def duration_between(
        self,
        value: cdk.Duration | None,
        prop: str,
        *,
        minimum: cdk.Duration | None = None,
        maximum: cdk.Duration | None = None,
        concrete: bool = False,
        whole_seconds: bool = False,
    ) -> bool:
        """Records a problem when ``value`` lies outside [minimum, maximum] (compared in milliseconds,
        so sub-second durations work).

        Unresolved tokens are accepted (CloudFormation checks them at deploy time) unless
        ``concrete``: then a token, or anything that is not a ``Duration``, is a problem too, for
        props the construct must compute with at synthesis. ``whole_seconds``: a Lambda timeout,
        for example, cannot be 1.5 seconds.
        """
        if value is None:
            return True
        if not isinstance(value, cdk.Duration):
            self.add(prop, f"must be an aws_cdk.Duration, got {value!r}")
            return False
        if concrete and cdk.Token.is_unresolved(value.to_string()):
            self.add(prop, "must be a concrete Duration (not a token): it is checked at synthesis")
            return False
        millis = milliseconds(value)
        if millis is None:  # a token: CloudFormation checks it
            return True
        low = milliseconds(minimum) if minimum else None
        high = milliseconds(maximum) if maximum else None
        if (low is not None and millis < low) or (high is not None and millis > high):
            bounds = (
                f"between {human_duration(minimum)} and {human_duration(maximum)}"
                if minimum and maximum
                else (f"at least {human_duration(minimum)}" if minimum else f"at most {human_duration(maximum)}")
            )
            self.add(prop, f"must be {bounds}, got {human_duration(value)}")
            return False
        if whole_seconds and millis % 1000:
            self.add(prop, f"must be whole seconds, got {human_duration(value)}")
            return False
        return True

    def one_of(self, value: Any, prop: str, accepted: Iterable[Any]) -> bool:
        """Records a problem when ``value`` is not one of ``accepted``; the message lists them."""
        choices = list(accepted)
        return self.require(value in choices, prop, f"{value!r} is not one of {', '.join(map(repr, choices))}")

    @property
    def problems(self) -> list[str]:
        return list(self._problems)

    def __iter__(self) -> Iterator[str]:
        return iter(self._problems)

    def __bool__(self) -> bool:
        return bool(self._problems)

    def raise_if_any(self) -> None:
        if self._problems:
            raise PropError(self._construct, self._problems)


def milliseconds(duration: cdk.Duration) -> int | None:
    """A concrete duration in milliseconds; ``None`` for an unresolved token."""
    try:
        millis = duration.to_milliseconds()  # to_seconds() refuses sub-second durations
    except RuntimeError:  # a token in another unit cannot be converted
        return None
    if millis < 0:  # a number token encodes as a large negative double; real durations are never negative
        return None
    return int(millis)


def human_duration(duration: cdk.Duration | None) -> str:
    """``"12 seconds"``, ``"1 day"``, ``"1 minute"``, ``"150 milliseconds"``: a duration as a prop
    error names it, in its largest whole unit, singular for one."""
    if duration is None:
        return "unbounded"
    millis = milliseconds(duration)
    if millis is None:
        return duration.to_string()
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000), ("second", 1000)):
        if millis >= size and millis % size == 0:
            return _count(millis // size, unit)
    return _count(millis, "millisecond") if millis else "0 seconds"


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"
