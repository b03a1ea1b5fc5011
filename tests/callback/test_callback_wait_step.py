"""wait_for_job's validation and the state it returns (synth only: no AWS)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def cdk_app() -> Any:
    import aws_cdk as cdk

    from cdk_serverless_patterns import CallbackPattern, JobSource

    def build(*workflows: str) -> tuple[Any, Any, Any]:
        app = cdk.App()
        stack = cdk.Stack(app, "WaitSteps")
        pattern = CallbackPattern(stack, "Callback", sources=[JobSource.translate_text_translation_job()])
        return app, stack, pattern

    return build


@pytest.mark.parametrize(
    ("prop", "value", "message"),
    [
        ("timeout", "millis:500", "timeout: must be between 1 second and 365 days, got 500 milliseconds"),
        ("timeout", "millis:1500", "timeout: must be whole seconds, got 1500 milliseconds"),
        ("heartbeat", "millis:999", "heartbeat: must be at least 1 second, got 999 milliseconds"),
        ("heartbeat", "millis:2500", "heartbeat: must be whole seconds, got 2500 milliseconds"),
        ("heartbeat", "minutes:1", "heartbeat: must be shorter than timeout (1 minute), got 1 minute"),
    ],
)
def test_sub_second_and_bad_durations_get_a_prop_error(cdk_app: Any, prop: str, value: str, message: str) -> None:
    import aws_cdk as cdk

    from cdk_serverless_patterns.core import PropError

    unit, amount = value.split(":")
    duration = getattr(cdk.Duration, unit)(int(amount))
    _, _, pattern = cdk_app()
    kwargs: dict[str, Any] = {"timeout": cdk.Duration.minutes(1)}
    kwargs[prop] = duration
    with pytest.raises(PropError) as caught:
        pattern.wait_for_job("Wait", source="translate", job_id_path="$.JobId", **kwargs)
    assert message in caught.value.problems, caught.value.problems


def test_two_workflows_may_use_the_same_wait_id_in_the_default_scope(cdk_app: Any) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_stepfunctions as sfn

    app, stack, pattern = cdk_app()
    for name in ("First", "Second"):
        wait = pattern.wait_for_job("Wait", source="translate", job_id_path="$.JobId", timeout=cdk.Duration.minutes(5))
        sfn.StateMachine(stack, name, definition_body=sfn.DefinitionBody.from_chainable(wait))
    template = app.synth().get_stack_by_name("WaitSteps").template
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    bodies = [str(m["Properties"]["DefinitionString"]) for m in machines]
    assert sum("Wait store token" in body for body in bodies) == 2


def test_the_same_wait_id_twice_in_an_explicit_scope_says_what_to_do(cdk_app: Any) -> None:
    import aws_cdk as cdk

    from cdk_serverless_patterns.core import PropError

    _, stack, pattern = cdk_app()
    pattern.wait_for_job(
        "Wait", source="translate", job_id_path="$.JobId", timeout=cdk.Duration.minutes(5), scope=stack
    )
    with pytest.raises(PropError) as caught:
        pattern.wait_for_job(
            "Wait", source="translate", job_id_path="$.JobId", timeout=cdk.Duration.minutes(5), scope=stack
        )
    assert any(
        p.startswith("id: 'Wait' is already a wait step") and "pick another id" in p for p in caught.value.problems
    )


@pytest.mark.parametrize("errors", [None, ["States.Timeout"], ["translate.FAILED"], ["States.ALL"]])
def test_add_retry_on_the_wait_step_is_refused(cdk_app: Any, errors: list[str] | None) -> None:
    import aws_cdk as cdk

    from cdk_serverless_patterns.core import PropError

    _, _, pattern = cdk_app()
    wait = pattern.wait_for_job("Wait", source="translate", job_id_path="$.JobId", timeout=cdk.Duration.minutes(5))
    with pytest.raises(PropError) as caught:
        wait.add_retry(errors=errors, max_attempts=2)
    [problem] = caught.value.problems
    assert "JobAlreadyAwaited" in problem and "retry the state that starts the job together with the wait" in problem
    # Catch still works as on any task.
    wait.add_catch(cdk.aws_stepfunctions.Pass(wait, "Caught"), errors=["States.ALL"])
