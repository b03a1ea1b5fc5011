"""``serverless-patterns demo``: the whole demo, run once non-interactively, judged by the emulator's state.

The demo is run in-process through ``demo.run(args, inspect=...)``, exactly as the CLI runs it; while
its emulator is still up, ``inspect`` reads back what each scenario left behind (execution status,
output and history, items of the tables, the result object in S3, the circuit's item, the answers of
the checkout function, what the payments stand-in received). The tests assert those, never the
printed text. Cheap parts (the scenario runner, the payments stand-in, the sample's context) have
their own tests without an emulator.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cdk_serverless_patterns.toolkit import demo
from cdk_serverless_patterns.toolkit.demo_payments import PaymentsService


# -- the whole demo ---------------------------------------------------------------------------------
def _snapshot(run: demo.DemoRun) -> dict[str, Any]:
    """What the scenarios left in the emulator, read back from its APIs (and the stand-ins)."""
    sfn, dynamodb, s3 = run.client("stepfunctions"), run.client("dynamodb"), run.client("s3")
    table = run.output(demo.CALLBACK_STACK, "TokenTableName")
    state: dict[str, Any] = {"outcomes": list(run.outcomes), "records": run.records, "callback": {}}
    for name in ("callback_job_completes", "callback_job_fails", "callback_event_before_wait"):
        record = run.records.get(name)
        if not record:
            continue
        execution = sfn.describe_execution(executionArn=record["execution"])
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=record["execution"])
        history = [event for page in pages for event in page["events"]]
        item = dynamodb.get_item(
            TableName=table, Key={"id": {"S": f"translate#{record['job_id']}"}}, ConsistentRead=True
        )
        entry: dict[str, Any] = {"execution": execution, "history": history, "item": item.get("Item")}
        if "bucket" in record:
            obj = s3.get_object(Bucket=record["bucket"], Key=record["key"])
            entry["object"] = json.loads(obj["Body"].read())
            tags = s3.get_object_tagging(Bucket=record["bucket"], Key=record["key"])["TagSet"]
            entry["tags"] = {tag["Key"]: tag["Value"] for tag in tags}
        state["callback"][name] = entry
    circuit_table = run.output(demo.CIRCUIT_STACK, "CircuitBreakerTableName")
    state["circuit_item"] = dynamodb.get_item(
        TableName=circuit_table, Key={"circuitId": {"S": demo.CIRCUIT_ID}}, ConsistentRead=True
    ).get("Item")
    # One more checkout through moto's Invoke now that the circuit is closed: a live HTTP answer.
    function = run.output(demo.CIRCUIT_STACK, "CheckoutFunctionName")
    response = run.client("lambda").invoke(
        FunctionName=function, Payload=json.dumps({"orderId": "after-demo", "amountCents": 42}).encode()
    )
    state["after_demo"] = {
        "status": response["StatusCode"],
        "error": response.get("FunctionError"),
        "payload": json.loads(response["Payload"].read()),
    }
    state["tenancy"] = _tenancy_state(run)
    state["streaming"] = _streaming_state(run)
    state["payments"] = {
        "charges": run.payments.charges,
        "health_down": run.payments.count("health", "down"),
        "charges_down": run.payments.count("charges", "down"),
    }
    return state


def _tenancy_state(run: demo.DemoRun) -> dict[str, Any]:
    """The tenancy sample after its scenarios: registry items, the orders function's environments, live answers."""
    table = run.output(demo.TENANCY_STACK, "RegistryTableName")
    items = run.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    environments = demo.tenant_environments(run)
    # Live, after the demo: the active tenant is served by its own warm environment, the suspended one denied.
    active = demo.get_orders(run, demo.issue_token(run, demo.TENANT_A))
    suspended = demo.get_orders(run, demo.issue_token(run, demo.TENANT_B, ttl_seconds=120))
    return {
        "registry": {item["tenantId"]["S"]: item["status"]["S"] for item in items},
        "environments": environments,
        "after_demo": {"active": active, "suspended": suspended},
    }


def _streaming_state(run: demo.DemoRun) -> dict[str, Any]:
    """The streaming sample after its scenarios: the function's invocations, connections left, the driver's state."""
    from cdk_serverless_patterns.local.lambda_environment import wait_for

    table = run.output(demo.STREAMING_STACK, "ConnectionsTableName")
    driver = run.output(demo.STREAMING_STACK, "WebSocketDriverName")
    assert run.cloud is not None and run.cloud._runner is not None
    runner = run.cloud._runner

    def connections() -> list[Any]:
        return list(run.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"])

    def driver_busy() -> list[str]:
        return [i.state for i in runner.environments() if i.key[0] == driver and i.state in ("init", "busy")]

    # $disconnect runs after the client closed: poll (to a deadline) for the table to empty, the driver to rest
    wait_for(lambda: not connections() and not driver_busy(), timeout=30)
    return {"invocations": demo.streaming_invocations(run), "connections": connections(), "driver_busy": driver_busy()}


@pytest.fixture(scope="module")
def demo_run() -> Iterator[tuple[int, dict[str, Any]]]:
    captured: dict[str, Any] = {}
    args = argparse.Namespace(app=None, keep=False, port=None, fast_schedules=60.0, patterns=None)
    code = demo.run(args, inspect=lambda run: captured.update(_snapshot(run)))
    yield code, captured


@pytest.mark.slow
def test_the_demo_exits_0_with_every_scenario_as_expected(demo_run: tuple[int, dict[str, Any]]) -> None:
    code, state = demo_run
    outcomes = state["outcomes"]
    assert [(o.pattern, o.status) for o in outcomes if o.status != "ok"] == []
    assert {o.pattern for o in outcomes} == {"callback", "circuit breaker", "tenancy", "streaming"}
    assert len(outcomes) == len(demo.SCENARIOS)
    assert code == 0


@pytest.mark.slow
def test_callback_job_completes_resumes_the_workflow_with_the_result(demo_run: tuple[int, dict[str, Any]]) -> None:
    _, state = demo_run
    entry = state["callback"]["callback_job_completes"]
    job_id = state["records"]["callback_job_completes"]["job_id"]
    assert entry["execution"]["status"] == "SUCCEEDED"
    # It parked: the wait step's token task was submitted and later succeeded (resumed by the event).
    types = [(e["type"], e.get("taskSucceededEventDetails", {}).get("resource")) for e in entry["history"]]
    assert ("TaskSucceeded", "putItem.waitForTaskToken") in types
    assert entry["object"] == {"jobId": job_id, "jobStatus": "COMPLETED"}
    assert entry["tags"] == {"job-status": "COMPLETED"}
    assert (entry["item"]["kind"]["S"], entry["item"]["result"]["S"]) == ("resumed", "RESUMED")


@pytest.mark.slow
def test_callback_failed_job_fails_the_workflow_with_the_jobs_error(demo_run: tuple[int, dict[str, Any]]) -> None:
    _, state = demo_run
    entry = state["callback"]["callback_job_fails"]
    assert entry["execution"]["status"] == "FAILED"
    assert entry["execution"]["error"] == "TranslationFailed"
    caught = [
        json.loads(e["stateEnteredEventDetails"]["input"])["error"]
        for e in entry["history"]
        if e["type"] == "FailStateEntered"
    ]
    assert [error["Error"] for error in caught] == ["translate.FAILED"]
    assert json.loads(caught[0]["Cause"])["jobStatus"] == "FAILED"
    assert entry["item"]["kind"]["S"] == "resumed"


@pytest.mark.slow
def test_callback_early_event_is_recorded_then_taken_without_parking(demo_run: tuple[int, dict[str, Any]]) -> None:
    _, state = demo_run
    entry = state["callback"]["callback_event_before_wait"]
    assert entry["execution"]["status"] == "SUCCEEDED"
    parked = [
        e
        for e in entry["history"]
        if e["type"] in ("TaskSubmitted", "TaskSucceeded")
        and "putItem.waitForTaskToken"
        in (
            e.get("taskSubmittedEventDetails", {}).get("resource"),
            e.get("taskSucceededEventDetails", {}).get("resource"),
        )
    ]
    assert parked == []
    assert (entry["item"]["kind"]["S"], entry["item"]["result"]["S"]) == ("resumed", "TAKEN")
    assert "output" not in entry["item"]


@pytest.mark.slow
def test_circuit_breaker_opens_falls_back_and_closes_through_half_open(demo_run: tuple[int, dict[str, Any]]) -> None:
    _, state = demo_run
    records = state["records"]
    assert records["circuit_healthy"]["answer"]["status"] == "charged"
    opened = records["circuit_opens"]["item"]
    assert opened["state"] == "OPEN" and opened["updatedBy"] == "health-checker"
    assert records["circuit_opens"]["failed_probes"] >= 3
    fallback = records["circuit_fallback"]
    assert fallback["answer"]["status"] == "queued"
    # The queued order never reached payments; the charged ones did.
    charged_orders = {charge["orderId"] for charge in state["payments"]["charges"].values()}
    assert fallback["order_id"] not in charged_orders
    assert records["circuit_recovers"]["states"][-2:] == ["HALF_OPEN", "CLOSED"]
    assert records["circuit_charges_again"]["answer"]["status"] == "charged"
    assert {"demo-order-1", records["circuit_charges_again"]["order_id"], "after-demo"} <= charged_orders
    item = state["circuit_item"]
    assert item["state"]["S"] == "CLOSED" and item["updatedBy"]["S"] == "health-checker"
    assert state["after_demo"]["status"] == 200 and state["after_demo"]["error"] is None
    assert state["after_demo"]["payload"]["status"] == "charged"


@pytest.mark.slow
def test_tenancy_tenants_run_apart_and_forged_suspended_and_tenantless_calls_fail(
    demo_run: tuple[int, dict[str, Any]],
) -> None:
    _, state = demo_run
    records, tenancy = state["records"], state["tenancy"]
    # Two tenants through the authorizer: two environments (processes), each counting only its own calls.
    answers = records["tenancy_separate_environments"]["answers"]
    pids = {tenant: {body["pid"] for body in bodies} for tenant, bodies in answers.items()}
    assert len(pids["acme"]) == 1 and len(pids["globex"]) == 1 and pids["acme"] != pids["globex"]
    assert [b["invocations"] for b in answers["acme"]] == [1, 2] == [b["invocations"] for b in answers["globex"]]
    assert {t: bodies[-1]["tmpEntries"] for t, bodies in answers.items()} == {
        "acme": ["tenant-acme"],
        "globex": ["tenant-globex"],
    }
    envs = tenancy["environments"]
    assert set(envs) == {"acme", "globex"}  # never an environment without a tenant
    assert {envs["acme"]["pid"]} == pids["acme"] and {envs["globex"]["pid"]} == pids["globex"]
    # Forged tenant: denied at the edge, and the function never ran for it.
    forged = records["tenancy_forged_tenant"]
    assert {label: a["status"] for label, a in forged["answers"].items()} == {
        "tenant claim swapped, signature of A kept": 403,
        "alg none": 403,
        "no token": 401,
    }
    assert {t: e["invocations"] for t, e in forged["after"].items()} == {
        t: e["invocations"] for t, e in forged["before"].items()
    }
    # Suspended tenant: allowed until the registry read expires, then denied; the registry says SUSPENDED.
    suspended = records["tenancy_suspended_tenant"]
    assert suspended["attempts"][-1] == 403 and set(suspended["attempts"][:-1]) <= {200}
    assert suspended["after_s"] < demo.DEMO_REGISTRY_CACHE_S + 10
    assert tenancy["registry"] == {"acme": "ACTIVE", "globex": "SUSPENDED"}
    assert tenancy["after_demo"]["suspended"][0] == 403
    status, body = tenancy["after_demo"]["active"]
    assert status == 200 and body["tenant"] == "acme" and body["pid"] == envs["acme"]["pid"]
    # A call without a tenant id: Lambda's 400, and nothing ran.
    no_tenant = records["tenancy_no_tenant"]
    assert (no_tenant["status"], no_tenant["code"]) == (400, "InvalidParameterValueException")
    assert no_tenant["before"] == no_tenant["after"]


@pytest.mark.slow
def test_streaming_one_prompt_through_each_transport_and_refused_without_credentials(
    demo_run: tuple[int, dict[str, Any]],
) -> None:
    _, state = demo_run
    records, streaming = state["records"], state["streaming"]
    answers = {t: records[f"streaming_{t}"] for t in ("rest", "function_url", "websocket")}
    for transport, answer in answers.items():
        # complete (the end marker arrived), and as many tokens arrived as the handler says it sent
        assert answer["done"] is True and answer["error"] is None, transport
        assert answer["summary"] == {"tokens": answer["tokens"]} and answer["tokens"] > 10, transport
        assert answer["text"].startswith(f"You asked: {demo.STREAM_PROMPT}"), transport
        # streamed, not buffered: the first token long before the end (the handler paces its tokens)
        paced_ms = (answer["tokens"] - 1) * demo.DEMO_TOKEN_DELAY_MS
        assert answer["totalMs"] - answer["ttfbMs"] >= paced_ms / 2, transport
        assert answer["arrivals"] > 5, transport
    assert answers["rest"]["status"] == answers["function_url"]["status"] == 200
    assert answers["rest"]["contentType"] == answers["function_url"]["contentType"] == "text/event-stream"
    assert answers["websocket"]["frames"] == answers["websocket"]["arrivals"]
    assert len({answer["text"] for answer in answers.values()}) == 1  # one handler, the same answer everywhere
    refused = records["streaming_unauthenticated"]
    assert refused["answers"] == {"rest": 401, "function_url": 403, "websocket": 403}
    assert refused["before"] == refused["after"] == 2  # the refused calls never ran the function
    # Afterwards: the function ran for the two HTTP streams only (the driver runs the WebSocket's), every
    # connection's row was deleted on disconnect and no driver is still streaming.
    assert streaming == {"invocations": 2, "connections": [], "driver_busy": []}


# -- the scenario runner, without an emulator --------------------------------------------------------
def _fake_run(stacks: set[str]) -> demo.DemoRun:
    run = demo.DemoRun(log=lambda line: None)
    run.stacks = {name: object() for name in stacks}
    return run


def test_a_failed_step_stops_its_pattern_only_and_the_exit_is_not_ok() -> None:
    calls: list[str] = []

    def ok(run: demo.DemoRun) -> str:
        calls.append("ok")
        return "fine"

    def fails(run: demo.DemoRun) -> str:
        calls.append("fails")
        raise demo.ScenarioFailed("not as expected")

    def crashes(run: demo.DemoRun) -> str:
        calls.append("crashes")
        raise RuntimeError("boom")

    scenarios = [
        demo.Scenario("a", "first", "StackA", fails),
        demo.Scenario("a", "second", "StackA", ok),
        demo.Scenario("b", "first", "StackB", ok),
        demo.Scenario("c", "first", "StackC", crashes),
        demo.Scenario("d", "absent", "Missing", ok),
    ]
    outcomes = _fake_run({"StackA", "StackB", "StackC"}).run_scenarios(scenarios)
    assert [(o.pattern, o.scenario, o.status) for o in outcomes] == [
        ("a", "first", "failed"),
        ("a", "second", "not run"),
        ("b", "first", "ok"),
        ("c", "first", "failed"),
        ("d", "absent", "skipped"),
    ]
    assert calls == ["fails", "ok", "crashes"]
    assert outcomes[3].detail == "RuntimeError: boom"
    assert [o.ok for o in outcomes] == [False, False, True, False, True]


def test_scenarios_register_in_order_one_function_each() -> None:
    patterns = [s.pattern for s in demo.SCENARIOS]
    assert patterns == ["callback"] * 3 + ["circuit breaker"] * 5 + ["tenancy"] * 4 + ["streaming"] * 4
    assert {s.stack for s in demo.SCENARIOS if s.pattern == "tenancy"} == {demo.TENANCY_STACK}
    assert {s.stack for s in demo.SCENARIOS if s.pattern == "streaming"} == {demo.STREAMING_STACK}
    assert len({s.run for s in demo.SCENARIOS}) == len(demo.SCENARIOS)
    before = len(demo.SCENARIOS)

    @demo.scenario("tenancy", "added by a later issue", stack="ServerlessPatternsTenancy")
    def tenancy(run: demo.DemoRun) -> str:
        return "ok"

    try:
        assert demo.SCENARIOS[-1] == demo.Scenario(
            "tenancy", "added by a later issue", "ServerlessPatternsTenancy", tenancy
        )
    finally:
        del demo.SCENARIOS[before:]


def test_an_unknown_pattern_is_one_clear_error() -> None:
    from cdk_serverless_patterns.toolkit.apps import ToolkitError

    args = argparse.Namespace(app=None, keep=False, port=None, fast_schedules=60.0, patterns=["nope"])
    with pytest.raises(ToolkitError, match="no scenarios for nope"):
        demo.run(args)


def test_wait_until_polls_to_a_deadline() -> None:
    values = iter([None, 0, {"found": 1}])
    assert demo.wait_until("x", lambda: next(values), timeout=5, interval=0.001) == {"found": 1}
    with pytest.raises(demo.ScenarioFailed, match="never: not seen within 0 s"):
        demo.wait_until("never", lambda: None, timeout=0.05, interval=0.01)


# -- the payments stand-in ---------------------------------------------------------------------------
def _request(service: PaymentsService, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


@pytest.fixture()
def payments() -> Iterator[PaymentsService]:
    with PaymentsService(slow_seconds=0.3) as service:
        yield service


def test_payments_up_charges_once_per_idempotency_key(payments: PaymentsService) -> None:
    assert _request(payments, "GET", "/health") == (200, {"status": "ok"})
    order = {"orderId": "o-1", "amountCents": 1299}
    status, first = _request(payments, "POST", "/charges", order, **{"Idempotency-Key": "o-1"})
    assert status == 201 and first["orderId"] == "o-1" and first["chargeId"].startswith("ch_")
    assert _request(payments, "POST", "/charges", order, **{"Idempotency-Key": "o-1"}) == (201, first)
    other = {"orderId": "o-2", "amountCents": 5}
    assert _request(payments, "POST", "/charges", other, **{"Idempotency-Key": "o-1"})[0] == 409
    assert list(payments.charges) == ["o-1"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        {"orderId": "", "amountCents": 1},
        {"orderId": "x", "amountCents": 0},
        {"orderId": "x"},
        {"orderId": "x", "amountCents": True},
        {"orderId": 5, "amountCents": 5},
    ],
)
def test_payments_refuses_a_body_that_is_not_an_order(payments: PaymentsService, body: Any) -> None:
    assert _request(payments, "POST", "/charges", body)[0] == 400
    assert payments.charges == {}


def test_payments_down_and_slow(payments: PaymentsService) -> None:
    payments.set_mode("down")
    assert _request(payments, "GET", "/health")[0] == 503
    assert _request(payments, "POST", "/charges", {"orderId": "o", "amountCents": 1})[0] == 503
    assert payments.charges == {} and payments.count("health", "down") == 1 and payments.count("charges") == 1
    payments.set_mode("slow")
    started = time.monotonic()
    assert _request(payments, "GET", "/health")[0] == 200
    assert time.monotonic() - started >= 0.3
    payments.set_mode("up")
    with pytest.raises(ValueError, match="mode must be one of"):
        payments.set_mode("sideways")


def test_payments_answers_every_bad_request(payments: PaymentsService) -> None:
    assert _request(payments, "GET", "/nope")[0] == 404
    assert _request(payments, "DELETE", "/charges")[0] == 405
    assert _request(payments, "POST", "/charges", b"x" * 70_000)[0] == 413
    assert _request(payments, "GET", "/health")[0] == 200  # still serving


def test_payments_stop_wakes_a_slow_answer_and_frees_the_port() -> None:
    service = PaymentsService(slow_seconds=30).start()
    port = service.port
    service.set_mode("slow")
    import threading

    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(_request(service, "GET", "/health")), daemon=True)
    thread.start()
    demo.wait_until("the slow request", lambda: service.count("health") == 1, timeout=5, interval=0.01)
    started = time.monotonic()
    service.stop()
    thread.join(timeout=10)
    assert time.monotonic() - started < 10 and not thread.is_alive()
    import socket

    with socket.socket() as sock:  # nothing listens on the port any more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


# -- the sample's context ----------------------------------------------------------------------------
def _circuit_stack(context: dict[str, str]) -> dict[str, Any]:
    import aws_cdk as cdk
    from sample_circuit_breaker import (  # type: ignore[import-not-found, unused-ignore]  # integ/ is on sys.path
        CircuitBreakerSampleStack,
    )

    app = cdk.App(context=context)
    stack = CircuitBreakerSampleStack(app)
    return dict(cdk.assertions.Template.from_stack(stack).to_json())


def _schedule_input(template: dict[str, Any]) -> dict[str, Any]:
    [schedule] = [r for r in template["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"]
    return json.loads(schedule["Properties"]["Target"]["Input"])  # type: ignore[no-any-return]


def _checkout_env(template: dict[str, Any]) -> dict[str, Any]:
    [checkout] = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == "checkout.handler"
    ]
    return checkout["Properties"]["Environment"]["Variables"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_the_sample_takes_a_local_payments_url_and_cool_down_from_context() -> None:
    template = _circuit_stack({"payments_base_url": "http://localhost:8123/", "payments_cool_down_seconds": "5"})
    probe = _schedule_input(template)
    assert (probe["url"], probe["allowHttp"], probe["coolDownMs"]) == ("http://localhost:8123/health", True, 5000)
    assert _checkout_env(template)["PAYMENTS_URL"] == "http://localhost:8123/charges"
    default = _schedule_input(_circuit_stack({}))
    assert (default["url"], default["allowHttp"], default["coolDownMs"]) == (
        "https://payments.example.com/health",
        False,
        60000,
    )


@pytest.mark.slow
def test_the_sample_refuses_plain_http_to_any_other_host() -> None:
    with pytest.raises(Exception, match="plain http"):
        _circuit_stack({"payments_base_url": "http://payments.internal.example"})


# -- the tenancy helpers, without an emulator --------------------------------------------------------
def _b64json(part: str) -> Any:
    import base64

    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_forged_tokens_claim_the_other_tenant_without_its_signature() -> None:
    import base64
    import hashlib
    import hmac

    key = b"k" * 48
    header = base64.urlsafe_b64encode(b'{"alg": "HS256", "typ": "JWT"}').rstrip(b"=").decode()
    claims = base64.urlsafe_b64encode(b'{"tenant_id": "acme", "exp": 1}').rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(hmac.new(key, f"{header}.{claims}".encode(), hashlib.sha256).digest())
    token = f"{header}.{claims}.{signature.rstrip(b'=').decode()}"
    forged = demo.forged_tokens(token, "globex")
    swapped = forged["tenant claim swapped, signature of A kept"].split(".")
    assert swapped[0] == header and swapped[2] == token.split(".")[2]
    assert _b64json(swapped[1]) == {"tenant_id": "globex", "exp": 1}
    none = forged["alg none"].split(".")
    assert _b64json(none[0])["alg"] == "none" and none[2] == ""
    assert _b64json(none[1])["tenant_id"] == "globex"


def test_the_demo_deploys_the_tenancy_sample_for_this_hosts_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    with PaymentsService() as payments:
        run = demo.DemoRun(log=lambda line: None, payments=payments)
        for machine, expected in (("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "arm64"), ("arm64", "arm64")):
            monkeypatch.setattr("platform.machine", lambda machine=machine: machine)
            assert demo.host_architecture() == expected
            assert run.context["tenancy_architecture"] == expected
        assert run.context["tenancy_registry_cache_seconds"] == str(demo.DEMO_REGISTRY_CACHE_S)


def _tenancy_template(context: dict[str, str]) -> dict[str, Any]:
    import aws_cdk as cdk
    from sample_tenancy import TenancySampleStack  # type: ignore[import-not-found, unused-ignore]  # integ/

    stack = TenancySampleStack(cdk.App(context=context))
    return dict(cdk.assertions.Template.from_stack(stack).to_json())


@pytest.mark.slow
def test_the_tenancy_sample_takes_its_architecture_and_registry_cache_from_context() -> None:
    def functions(template: dict[str, Any]) -> dict[str, Any]:
        return {
            r["Properties"]["Handler"]: r["Properties"]
            for r in template["Resources"].values()
            if r["Type"] == "AWS::Lambda::Function"
        }

    local = functions(_tenancy_template({"tenancy_architecture": "x86_64", "tenancy_registry_cache_seconds": "3"}))
    assert {h: p["Architectures"] for h, p in local.items()} == {h: ["x86_64"] for h in local}
    authorizer = local["tenancy_authorizer.handler"]["Environment"]["Variables"]
    assert authorizer["TENANCY_REGISTRY_CACHE_SECONDS"] == "3"
    default = functions(_tenancy_template({}))
    assert {h: p["Architectures"] for h, p in default.items()} == {h: ["arm64"] for h in default}
    assert default["tenancy_authorizer.handler"]["Environment"]["Variables"]["TENANCY_REGISTRY_CACHE_SECONDS"] == "30"
    with pytest.raises(Exception, match="tenancy_architecture"):
        _tenancy_template({"tenancy_architecture": "sparc"})
    with pytest.raises(Exception, match="tenancy_registry_cache_seconds"):
        _tenancy_template({"tenancy_registry_cache_seconds": "0"})


# -- the streaming helpers, without an emulator ------------------------------------------------------
class _SseHandler(http.server.BaseHTTPRequestHandler):
    """Answers GET with a chunked text/event-stream body: the pieces of ``pieces`` as separate chunks."""

    protocol_version = "HTTP/1.1"
    pieces: list[bytes] = []
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("content-type", "text/event-stream" if self.status == 200 else "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for piece in self.pieces:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serve_sse(pieces: list[bytes], status: int = 200) -> Iterator[str]:
    handler = type("Handler", (_SseHandler,), {"pieces": pieces, "status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stream?prompt=x"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_stream_sse_parses_events_split_across_chunks_comments_and_multi_line_data() -> None:
    pieces = [
        b": keep-alive\n\n",
        b"data: You \n\ndata: ask",  # an event split across two chunks
        b"ed: \n\n",
        b"data: two\ndata: lines\n\n",  # multi-line data joins with a newline
        b'event: summary\ndata: {"tokens": 3}\n\n',
        b"event: done\ndata: \n\n",
    ]
    seen: list[str] = []
    with _serve_sse(pieces) as url:
        answer = demo.stream_sse(url, {}, transport="test", on_token=lambda token, at: seen.append(token))
    assert (answer.status, answer.content_type) == (200, "text/event-stream")
    assert answer.tokens == seen == ["You ", "asked: ", "two\nlines"]
    assert (answer.summary, answer.done, answer.error) == ({"tokens": 3}, True, None)
    assert answer.ttfb_s is not None and 0 <= answer.ttfb_s <= answer.total_s


def test_stream_sse_reports_an_in_band_error_and_a_refusal() -> None:
    pieces = [b"data: a\n\n", b'event: error\ndata: {"errorType": "Boom", "message": "m"}\n\n']
    with _serve_sse(pieces) as url:
        failed = demo.stream_sse(url, {}, transport="test")
    assert (failed.tokens, failed.done, failed.error) == (["a"], False, {"errorType": "Boom", "message": "m"})
    with _serve_sse([b'{"message": "Unauthorized"}'], status=401) as url:
        refused = demo.stream_sse(url, {}, transport="test")
    assert (refused.status, refused.tokens, refused.error) == (401, [], {"message": "Unauthorized"})


def _answer(**changes: Any) -> demo.Streamed:
    tokens = [f"You asked: {demo.STREAM_PROMPT}\n", *(["word "] * 20)]
    fields: dict[str, Any] = {
        "transport": "rest",
        "status": 200,
        "content_type": "text/event-stream",
        "tokens": tokens,
        "summary": {"tokens": len(tokens)},
        "done": True,
        "ttfb_s": 0.01,
        "total_s": 0.01 + len(tokens) * demo.DEMO_TOKEN_DELAY_MS / 1000,
    }
    fields.update(changes)
    return demo.Streamed(**fields)


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"done": False}, "truncated"),
        ({"summary": {"tokens": 3}}, "the summary says"),
        ({"total_s": 0.02}, "buffered"),
        ({"status": 502, "error": {"message": "x"}}, "answered 502"),
        ({"content_type": "application/octet-stream"}, "content type"),
        ({"tokens": ["Something else"], "summary": {"tokens": 1}}, "not about the prompt"),
    ],
)
def test_a_streamed_answer_is_judged_by_what_arrived(changes: dict[str, Any], complaint: str) -> None:
    run = demo.DemoRun(log=lambda line: None)
    assert "done" in demo._check_stream(run, _answer())
    with pytest.raises(demo.ScenarioFailed, match=complaint):
        demo._check_stream(run, _answer(**changes))


def test_the_token_printer_prints_a_short_line_per_few_tokens() -> None:
    lines: list[str] = []
    printer = demo.TokenPrinter(lines.append, per_line=3)
    for index, token in enumerate(["a ", "b\n", "c ", "d ", "e"]):
        printer.add(token, index / 10)
    printer.flush(1.0)
    assert [line.split("|")[1].strip() for line in lines] == ["a b c", "d e"]
    assert len(lines) == 2 and all(len(line) < 120 for line in lines)


def test_the_demo_deploys_the_streaming_sample_with_a_visible_token_pace() -> None:
    with PaymentsService() as payments:
        run = demo.DemoRun(log=lambda line: None, payments=payments)
        assert run.context["streaming_offline_delay_ms"] == str(demo.DEMO_TOKEN_DELAY_MS)
    assert 0 < demo.DEMO_TOKEN_DELAY_MS <= 50  # visible, and the demo stays fast (~70 tokens per transport)


@pytest.mark.slow
def test_the_streaming_sample_takes_its_offline_delay_from_context() -> None:
    import aws_cdk as cdk
    from sample_streaming import StreamingSampleStack  # type: ignore[import-not-found, unused-ignore]  # integ/

    def variables(context: dict[str, str]) -> dict[str, dict[str, str]]:
        template = cdk.assertions.Template.from_stack(StreamingSampleStack(cdk.App(context=context))).to_json()
        functions = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
        found = {f["Handler"]: f.get("Environment", {}).get("Variables", {}) for f in functions}
        return {handler: v for handler, v in found.items() if "STREAMING_TOKEN_SOURCE" in v}

    paced = variables({"streaming_offline_delay_ms": "25"})
    # the streaming function and the WebSocket driver (same code, same variables)
    assert {v["STREAMING_OFFLINE_DELAY_MS"] for v in paced.values()} == {"25"} and len(paced) == 2
    assert all("STREAMING_OFFLINE_DELAY_MS" not in v for v in variables({}).values())
    for bad in ("-1", "1.5", "60001", "x", "²"):
        with pytest.raises(Exception, match="streaming_offline_delay_ms"):
            variables({"streaming_offline_delay_ms": bad})
