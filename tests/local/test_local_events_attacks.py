"""Attacks on event delivery: Lambda's asynchronous semantics under throttling and errors,
EventBridge input rules on Step Functions targets, tenant ids and payload limits of ``Event``
invokes. In-process moto (the ``aws`` fixture); ``LambdaFunction.invoke`` is replaced by a
recording fake where the test is about what the invoker sends, and by the real runner where it is
about what the function sees."""

from __future__ import annotations

import datetime
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cdk_serverless_patterns.local import Emulator, events
from cdk_serverless_patterns.local.events import AsyncInvoker, next_fire, route_async_invoke
from cdk_serverless_patterns.local.lambda_environment import wait_for

ACCOUNT = "123456789012"


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def _function(aws: Emulator, name: str = "fn", source: str = "def handler(e, c):\n    return e\n") -> str:
    role = aws.session.client("iam").create_role(RoleName=f"r-{name}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    created = aws.session.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler", Code={"ZipFile": _zip(source)}
    )
    return str(created["FunctionArn"])


class FakeInvoke:
    """Stands in for ``LambdaFunction.invoke``: answers from a script, records the request headers."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, function: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
        from moto.core.exceptions import JsonRESTError

        with self.lock:
            self.calls.append({k.lower(): str(v) for k, v in dict(request_headers).items()})
            answer = self.answers[min(len(self.calls) - 1, len(self.answers) - 1)]
        if isinstance(answer, tuple):  # (status, error code): the Invoke API refuses
            failure = JsonRESTError(answer[1], "refused by the test")
            failure.code = answer[0]
            raise failure
        if answer == "error":
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "Boom", "errorMessage": "failed on purpose"})
        return json.dumps(answer)


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeInvoke]:
    from moto.awslambda.models import LambdaFunction

    recorder = FakeInvoke([{"ok": True}])
    monkeypatch.setattr(LambdaFunction, "invoke", lambda self, *args: recorder(self, *args))
    monkeypatch.setattr(events, "SERVICE_RETRY_CAP", 0.05)
    yield recorder


@pytest.fixture()
def invoker(aws: Emulator, fake: FakeInvoke) -> Iterator[AsyncInvoker]:
    invoker = AsyncInvoker(aws.session, retry_delays=(0.05, 0.05), log=lambda line: None)
    undo = route_async_invoke(invoker)
    try:
        yield invoker
    finally:
        undo()
        invoker.close()


def test_a_throttled_async_invoke_is_retried_not_dropped(
    aws: Emulator, fake: FakeInvoke, invoker: AsyncInvoker
) -> None:
    """Defect: a 429 (or 5xx) from the Invoke API escaped the worker and the event was dropped;
    Lambda retries throttles and service errors until the event is too old, without counting them."""
    _function(aws)
    fake.answers = [(429, "TooManyRequestsException"), (500, "ServiceException"), {"ok": True}]
    request_id = invoker.submit("fn", b'{"n": 1}')
    (outcome,) = wait_for(lambda: invoker.outcomes, timeout=10)
    assert outcome.succeeded and outcome.condition == "Success" and outcome.attempts == 1
    assert outcome.request_id == request_id and len(fake.calls) == 3


def test_every_attempt_of_an_event_has_its_request_id(aws: Emulator, fake: FakeInvoke, invoker: AsyncInvoker) -> None:
    """Defect: each retry ran with a new request id (Lambda keeps one per event: idempotency keys rely on it)."""
    _function(aws)
    fake.answers = ["error", "error", "error"]
    lam = aws.session.client("lambda")
    lam.invoke(FunctionName="fn", InvocationType="Event", Payload=b"{}")
    (outcome,) = wait_for(lambda: invoker.outcomes, timeout=10)
    assert outcome.condition == "RetriesExhausted" and outcome.attempts == 3
    ids = {call.get(events.REQUEST_ID_HEADER.lower()) for call in fake.calls}
    assert ids == {outcome.request_id}


def test_refused_async_invokes_answer_at_once(aws: Emulator, fake: FakeInvoke, invoker: AsyncInvoker) -> None:
    """Defects: an ``Event`` invoke lost its tenant id (a per-tenant function could never run
    asynchronously), a missing tenant id was accepted, and payloads over the 1 MB limit were queued."""
    from moto.awslambda.utils import get_backend

    _function(aws)
    get_backend(ACCOUNT, "us-east-1").get_function("fn").tenancy_config = {"TenantIsolationMode": "PER_TENANT"}
    lam = aws.session.client("lambda")
    with pytest.raises(ClientError) as missing:
        lam.invoke(FunctionName="fn", InvocationType="Event", Payload=b"{}")
    assert missing.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as too_big:
        lam.invoke(FunctionName="fn", InvocationType="Event", Payload=b'"' + b"x" * 1_048_576 + b'"', TenantId="t")
    assert too_big.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert lam.invoke(FunctionName="fn", InvocationType="Event", Payload=b"{}", TenantId="blue")["StatusCode"] == 202
    wait_for(lambda: invoker.outcomes, timeout=10)
    assert [call.get("x-amz-tenant-id") for call in fake.calls] == ["blue"]


RECORDER = r"""
import json, os

def handler(event, context):
    path = os.environ["SEEN"]
    with open(path, "a") as f:
        f.write(f"{context.aws_request_id} {os.getpid()}\n")
    if len(open(path).read().splitlines()) < 3:
        raise RuntimeError("not yet")
    return {"ok": True}
"""


def test_the_function_sees_one_request_id_across_retries(aws: Emulator, tmp_path: Path) -> None:
    """The same, end to end: the Lambda runner runs every attempt with the event's request id."""
    from cdk_serverless_patterns.local.lambda_runtime import LambdaRunner, route_moto_invoke

    seen = tmp_path / "seen.txt"
    _function(aws, source=RECORDER)
    aws.session.client("lambda").update_function_configuration(
        FunctionName="fn", Environment={"Variables": {"SEEN": str(seen)}}
    )
    runner = LambdaRunner(aws_env={}, workdir=tmp_path / "runner")
    undo_runner = route_moto_invoke(runner, tmp_path / "runner")
    invoker = AsyncInvoker(aws.session, retry_delays=(0.05, 0.05), log=lambda line: None)
    undo_async = route_async_invoke(invoker)
    try:
        aws.session.client("lambda").invoke(FunctionName="fn", InvocationType="Event", Payload=b"{}")
        (outcome,) = wait_for(lambda: invoker.outcomes, timeout=30)
        assert outcome.succeeded and outcome.attempts == 3
        lines = [line.split() for line in seen.read_text().splitlines()]
        assert [request_id for request_id, _ in lines] == [outcome.request_id] * 3
        assert len({pid for _, pid in lines}) == 1  # a retry answers in the warm environment (no crash)
    finally:
        undo_async()
        invoker.close()
        undo_runner()
        runner.shutdown(timeout=1.0)


# --------------------------------------------------------------------------- Step Functions targets
def test_step_functions_targets_use_eventbridges_input_rules(aws: Emulator, states: Any) -> None:
    """Defect: Step Functions targets had their own InputPath walker (no array index: the rule
    raised and PutEvents failed) and moto's template parser (no ``aws.events.*`` variables)."""
    machine = states.create({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    other = states.create({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    client = aws.session.client("events")
    client.put_rule(Name="jobs", EventPattern=json.dumps({"source": ["com.example.jobs"]}), State="ENABLED")
    transformer = {
        "InputPathsMap": {"kind": "$.detail-type", "first": "$.detail.items[0]"},
        "InputTemplate": '{"rule": "<aws.events.rule-name>", "text": "<kind>: <first>", "first": <first>}',
    }
    client.put_targets(
        Rule="jobs",
        Targets=[
            {"Id": "path", "Arn": machine, "InputPath": "$.detail.items[1]"},
            {"Id": "transformed", "Arn": other, "InputTransformer": transformer},
        ],
    )
    detail = {"items": [{"id": "a"}, {"id": "b"}]}
    answer = client.put_events(
        Entries=[{"Source": "com.example.jobs", "DetailType": "Job Done", "Detail": json.dumps(detail)}]
    )
    assert answer["FailedEntryCount"] == 0

    def first_input(arn: str) -> Any:
        runs = states.sfn.list_executions(stateMachineArn=arn)["executions"]
        return json.loads(states.finish(runs[0]["executionArn"])["input"]) if runs else None

    assert wait_for(lambda: first_input(machine)) == {"id": "b"}
    assert wait_for(lambda: first_input(other)) == {
        "rule": "jobs",
        "text": 'Job Done: {"id": "a"}',
        "first": {"id": "a"},
    }


# --------------------------------------------------------------------------- schedules
UTC = datetime.UTC
NEW_YORK = "America/New_York"


def test_cron_skips_the_local_time_daylight_saving_removes() -> None:
    """Defect: 02:30 on the spring-forward day (which does not exist in New York) fired at 03:30;
    the Scheduler skips it."""
    fired = next_fire("cron(30 2 * * ? *)", datetime.datetime(2026, 3, 8, 6, 0, tzinfo=UTC), timezone=NEW_YORK)
    assert fired == datetime.datetime(2026, 3, 9, 6, 30, tzinfo=UTC)  # 02:30 EDT the next day


def test_cron_fires_a_repeated_local_time_once_and_never_in_the_past() -> None:
    """Defect: in the repeated hour of the fall-back day, next_fire answered a time before ``after``:
    the scheduler fired such a schedule at every tick for an hour."""
    first = next_fire("cron(30 1 * * ? *)", datetime.datetime(2026, 11, 1, 5, 0, tzinfo=UTC), timezone=NEW_YORK)
    assert first == datetime.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, the first one
    again = next_fire("cron(30 1 * * ? *)", first, timezone=NEW_YORK)
    assert again == datetime.datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # not 01:30 EST the same night
    inside = datetime.datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 01:00 EST, the repeated hour
    for expression in ("cron(10 1 * * ? *)", "cron(0/15 * * * ? *)"):
        fired = next_fire(expression, inside, timezone=NEW_YORK)
        assert fired is not None and fired > inside, expression
    assert next_fire("cron(0/15 * * * ? *)", inside, timezone=NEW_YORK) == datetime.datetime(
        2026, 11, 1, 7, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0 9 L * ? *)", datetime.datetime(2026, 2, 1, tzinfo=UTC), datetime.datetime(2026, 2, 28, 9, tzinfo=UTC)),
        (
            "cron(0 9 LW * ? *)",
            datetime.datetime(2026, 5, 1, tzinfo=UTC),
            datetime.datetime(2026, 5, 29, 9, tzinfo=UTC),
        ),
        ("cron(0 9 1W * ? *)", datetime.datetime(2026, 8, 1, tzinfo=UTC), datetime.datetime(2026, 8, 3, 9, tzinfo=UTC)),
        (
            "cron(0 9 15W * ? *)",
            datetime.datetime(2026, 8, 1, tzinfo=UTC),
            datetime.datetime(2026, 8, 14, 9, tzinfo=UTC),
        ),
        (
            "cron(0 9 ? * 3#2 *)",
            datetime.datetime(2026, 12, 1, tzinfo=UTC),
            datetime.datetime(2026, 12, 8, 9, tzinfo=UTC),
        ),
        (
            "cron(0 9 ? * 6L *)",
            datetime.datetime(2026, 12, 1, tzinfo=UTC),
            datetime.datetime(2026, 12, 25, 9, tzinfo=UTC),
        ),
        ("cron(0 0 29 2 ? *)", datetime.datetime(2026, 1, 1, tzinfo=UTC), datetime.datetime(2028, 2, 29, tzinfo=UTC)),
        ("cron(0 0 1 1 ? 2030)", datetime.datetime(2026, 1, 1, tzinfo=UTC), datetime.datetime(2030, 1, 1, tzinfo=UTC)),
    ],
)
def test_cron_wildcards_l_w_and_hash(expression: str, after: datetime.datetime, expected: datetime.datetime) -> None:
    """Defect: ``L``, ``W`` and ``#`` (documented by EventBridge) were refused: such schedules never fired;
    and nothing beyond two years was found."""
    assert next_fire(expression, after) == expected


def test_cron_in_a_half_hour_time_zone() -> None:
    fired = next_fire("cron(15 10 ? * MON-FRI *)", datetime.datetime(2026, 12, 1, tzinfo=UTC), timezone="Asia/Kolkata")
    assert fired == datetime.datetime(2026, 12, 1, 4, 45, tzinfo=UTC)


def test_a_cron_that_never_fires_is_answered_quickly() -> None:
    started = time.monotonic()
    assert next_fire("cron(0 0 1 1 ? 2020)", datetime.datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert time.monotonic() - started < 1.0


def test_async_invocations_run_concurrently(aws: Emulator, fake: FakeInvoke, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: four worker threads ran every asynchronous invocation of the emulator: four slow
    functions held up every other event (EventBridge, schedules, destinations) until they ended."""
    _function(aws)
    barrier = threading.Barrier(12, timeout=5)  # passes only when 12 invocations run at the same time
    answer = fake.__call__

    def meeting(*args: Any) -> Any:
        barrier.wait()
        return answer(*args)

    from moto.awslambda.models import LambdaFunction

    monkeypatch.setattr(LambdaFunction, "invoke", lambda self, *args: meeting(self, *args))
    invoker = AsyncInvoker(aws.session, retry_delays=(30.0,), log=lambda line: None)
    try:
        for index in range(12):
            invoker.submit("fn", json.dumps({"n": index}).encode())
        outcomes = wait_for(lambda: invoker.outcomes if len(invoker.outcomes) == 12 else None, timeout=10)
        assert all(outcome.succeeded for outcome in outcomes)
    finally:
        invoker.close()
