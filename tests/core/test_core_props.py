from __future__ import annotations

import aws_cdk as cdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdk_serverless_patterns.core import PropError, PropErrors


def test_no_problem_raises_nothing() -> None:
    errors = PropErrors("Thing")
    assert errors.require(True, "a", "never shown")
    errors.raise_if_any()
    assert not errors


def test_every_problem_is_reported_in_one_error_naming_each_prop() -> None:
    errors = PropErrors("Thing")
    errors.require(False, "timeout", "must be positive")
    errors.one_of("XL", "size", ["S", "M"])
    errors.exclusive(existing_table="t", table_props={"x": 1})
    with pytest.raises(PropError) as caught:
        errors.raise_if_any()
    message = str(caught.value)
    assert message.startswith("Thing has invalid props:")
    assert "timeout: must be positive" in message
    assert "size: 'XL' is not one of 'S', 'M'" in message
    assert "existing_table: cannot be combined with table_props" in message
    assert caught.value.problems == errors.problems
    assert len(caught.value.problems) == 3


def test_exclusive_accepts_one_or_none() -> None:
    errors = PropErrors("Thing")
    assert errors.exclusive(existing_table=None, table_props={"x": 1})
    assert errors.exclusive(existing_table=None, table_props=None)
    assert not errors


def test_duration_bounds_name_the_prop_and_the_bounds() -> None:
    errors = PropErrors("Thing")
    assert errors.duration_between(cdk.Duration.minutes(5), "timeout", minimum=cdk.Duration.seconds(1))
    assert not errors.duration_between(
        cdk.Duration.days(400), "timeout", minimum=cdk.Duration.seconds(1), maximum=cdk.Duration.days(365)
    )
    assert not errors.duration_between(cdk.Duration.seconds(0), "heartbeat", minimum=cdk.Duration.seconds(1))
    assert errors.problems == [
        "timeout: must be between 1 second and 365 days, got 400 days",
        "heartbeat: must be at least 1 second, got 0 seconds",
    ]


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (cdk.Duration.minutes(1), "1 minute"),
        (cdk.Duration.minutes(2), "2 minutes"),
        (cdk.Duration.seconds(60), "1 minute"),
        (cdk.Duration.days(1), "1 day"),
        (cdk.Duration.hours(1), "1 hour"),
        (cdk.Duration.hours(25), "25 hours"),
        (cdk.Duration.seconds(1), "1 second"),
        (cdk.Duration.millis(1), "1 millisecond"),
        (cdk.Duration.millis(1500), "1500 milliseconds"),
        (cdk.Duration.seconds(0), "0 seconds"),
        (None, "unbounded"),
    ],
)
def test_human_duration_is_singular_for_one(duration: cdk.Duration | None, text: str) -> None:
    from cdk_serverless_patterns.core import human_duration

    assert human_duration(duration) == text


def test_sub_second_durations_are_compared_in_milliseconds() -> None:
    errors = PropErrors("Thing")
    assert errors.duration_between(cdk.Duration.millis(1500), "cache_ttl", minimum=cdk.Duration.millis(100))
    assert not errors.duration_between(cdk.Duration.millis(50), "cache_ttl", minimum=cdk.Duration.millis(100))
    assert errors.problems == ["cache_ttl: must be at least 100 milliseconds, got 50 milliseconds"]


def test_unresolved_durations_are_left_to_cloudformation() -> None:
    stack = cdk.Stack()
    param = cdk.CfnParameter(stack, "Seconds", type="Number")
    errors = PropErrors("Thing")
    assert cdk.Token.is_unresolved(cdk.Duration.millis(param.value_as_number).to_milliseconds())
    assert errors.duration_between(cdk.Duration.millis(param.value_as_number), "ttl", minimum=cdk.Duration.seconds(1))
    assert errors.duration_between(cdk.Duration.millis(param.value_as_number), "ttl", maximum=cdk.Duration.seconds(1))
    assert errors.duration_between(
        cdk.Duration.seconds(param.value_as_number), "timeout", maximum=cdk.Duration.hours(1)
    )


@given(st.lists(st.tuples(st.booleans(), st.from_regex(r"[a-z_]{1,12}", fullmatch=True)), max_size=20))
def test_exactly_the_failed_checks_are_reported(checks: list[tuple[bool, str]]) -> None:
    errors = PropErrors("Thing")
    for ok, prop in checks:
        errors.require(ok, prop, "bad")
    expected = [f"{prop}: bad" for ok, prop in checks if not ok]
    assert errors.problems == expected
    if expected:
        with pytest.raises(PropError) as caught:
            errors.raise_if_any()
        assert all(line in str(caught.value) for line in expected)
    else:
        errors.raise_if_any()
