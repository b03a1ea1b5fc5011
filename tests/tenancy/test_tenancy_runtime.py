"""The function-side helper (lambda_src/tenancy_runtime, a layer) in-process, with moto for the registry."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tenancy_support import REGISTRY

from cdk_serverless_patterns.testing.moto import load_runtime_module

runtime = load_runtime_module("tenancy_runtime", "tenancy_runtime")


@pytest.fixture(autouse=True)
def fresh_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test is a fresh execution environment with its own /tmp."""
    monkeypatch.setenv("TENANCY_TMP_ROOT", str(tmp_path))
    for name in ("TENANCY_AUTHORIZER_KIND", "TENANCY_REGISTRY_TABLE", "TENANCY_TENANT_CLAIM"):
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    yield tmp_path
    runtime.reset()


def context(tenant: Any) -> Any:
    return SimpleNamespace(tenant_id=tenant, aws_request_id="req-1")


def api_event(authorizer: dict[str, Any] | None) -> dict[str, Any]:
    request_context: dict[str, Any] = {"requestId": "r", "stage": "prod"}
    if authorizer is not None:
        request_context["authorizer"] = authorizer
    return {"resource": "/orders", "httpMethod": "GET", "headers": {}, "body": None, "requestContext": request_context}


seen: list[Any] = []


@runtime.tenant_handler
def echo(event: Any, ctx: Any) -> dict[str, Any]:
    scope = runtime.current()
    seen.append(scope)
    logging.getLogger("app").warning("handling")
    return {"statusCode": 200, "body": scope.tenant_id}


def metric_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]


def test_matching_tenant_runs_the_handler_in_its_scope(
    fresh_environment: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    answer = echo(api_event({"tenantId": "acme", "plan": "gold"}), context("acme"))
    assert answer == {"statusCode": 200, "body": "acme"}
    scope = seen[-1]
    assert scope.tenant_id == "acme"
    assert scope.tmp_dir == fresh_environment / "tenant-acme"
    assert stat.S_IMODE(scope.tmp_dir.stat().st_mode) == 0o700
    assert [getattr(r, "tenantId", None) for r in caplog.records if r.name == "app"] == ["acme"]
    [metric] = metric_lines(capsys)
    assert metric["TenantId"] == "acme" and metric["Requests"] == 1 and metric["Errors"] == 0
    assert metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["TenantId"]]
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CdkServerlessPatterns/Tenancy"


def test_current_outside_a_handler_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="tenant_handler"):
        runtime.current()


@pytest.mark.parametrize(
    "authorizer",
    [{"tenantId": "globex"}, {}, None, {"tenantId": ""}, {"tenantId": ["acme"]}, {"claims": {"tenant_id": "acme"}}],
)
def test_a_tenant_other_than_the_authorizers_is_refused(
    authorizer: dict[str, Any] | None, caplog: pytest.LogCaptureFixture
) -> None:
    calls = len(seen)
    answer = echo(api_event(authorizer), context("acme"))
    assert answer["statusCode"] == 403
    assert json.loads(answer["body"]) == {"message": "Forbidden"}
    assert len(seen) == calls  # the handler never ran
    reasons = [json.loads(r.getMessage())["reason"] for r in caplog.records if r.name == "tenancy_runtime"]
    assert reasons == ["tenant differs from the authorizer's"]


@pytest.mark.parametrize("tenant", [None, "", "a/b", "../x", "a b", "a" * 65, 7])
def test_invocations_without_a_valid_tenant_are_refused(tenant: Any) -> None:
    assert echo(api_event({"tenantId": tenant}), context(tenant))["statusCode"] == 403
    with pytest.raises(runtime.TenantMismatch):
        echo({"Records": []}, context(tenant))  # not an API event: raise, Lambda reports the error


def test_non_api_events_need_only_the_tenant_id() -> None:
    assert echo({"source": "internal"}, context("acme"))["body"] == "acme"


def test_client_header_mode_does_not_compare_claims_but_checks_the_registry(
    monkeypatch: pytest.MonkeyPatch, registry: Any
) -> None:
    monkeypatch.setenv("TENANCY_AUTHORIZER_KIND", "client_header")
    monkeypatch.setenv("TENANCY_REGISTRY_TABLE", REGISTRY)
    assert echo(api_event(None), context("acme"))["body"] == "acme"
    assert echo(api_event(None), context("initech"))["statusCode"] == 403  # suspended: no edge check, so here


def test_a_second_tenant_in_one_environment_never_sees_the_firsts_data(caplog: pytest.LogCaptureFixture) -> None:
    @runtime.tenant_handler
    def remember(event: Any, ctx: Any) -> dict[str, Any]:
        scope = runtime.current()
        before = dict(scope.cache)
        files = sorted(p.name for p in scope.tmp_dir.parent.iterdir() if p.is_dir())
        scope.cache["secret"] = f"secret of {scope.tenant_id}"
        (scope.tmp_dir / "secret.txt").write_text(scope.cache["secret"])
        return {"statusCode": 200, "body": json.dumps({"before": before, "dirs": files})}

    first = json.loads(remember(api_event({"tenantId": "acme"}), context("acme"))["body"])
    again = json.loads(remember(api_event({"tenantId": "acme"}), context("acme"))["body"])
    other = json.loads(remember(api_event({"tenantId": "globex"}), context("globex"))["body"])
    assert first == {"before": {}, "dirs": ["tenant-acme"]}
    assert again == {"before": {"secret": "secret of acme"}, "dirs": ["tenant-acme"]}  # same tenant keeps its data
    assert other == {"before": {}, "dirs": ["tenant-globex"]}  # acme's cache and directory are gone
    errors = [json.loads(r.getMessage()) for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0]["event"] == "execution environment shared by two tenants"
    assert errors[0]["previousTenantId"] == "acme"


def test_handler_errors_are_counted_and_propagate(capsys: pytest.CaptureFixture[str]) -> None:
    @runtime.tenant_handler
    def broken(event: Any, ctx: Any) -> Any:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        broken(api_event({"tenantId": "acme"}), context("acme"))
    [metric] = metric_lines(capsys)
    assert metric["Errors"] == 1


# ----- behind API Gateway's JWT authorizer: claims in the context, the registry checked here ------------------
def jwt_event(claim: Any) -> dict[str, Any]:
    return api_event({"claims": {"tenant_id": claim, "iss": "https://issuer.example.com/"}})


class CountingTable:
    def __init__(self, table: Any) -> None:
        self.table = table
        self.calls = 0

    def get_item(self, **kwargs: Any) -> Any:
        self.calls += 1
        return self.table.get_item(**kwargs)


@pytest.fixture
def jwt_mode(registry: Any, monkeypatch: pytest.MonkeyPatch) -> CountingTable:
    monkeypatch.setenv("TENANCY_AUTHORIZER_KIND", "jwt")
    monkeypatch.setenv("TENANCY_REGISTRY_TABLE", "tenant-registry")
    counting = CountingTable(registry)
    runtime._STATE.table = counting
    return counting


@pytest.mark.parametrize("claim", ["acme", '"acme"'])  # a typed claim, or its JSON text from a mapping
def test_jwt_mode_accepts_an_active_tenant_and_caches_the_registry(jwt_mode: CountingTable, claim: str) -> None:
    for _ in range(3):
        assert echo(jwt_event(claim), context("acme"))["statusCode"] == 200
    assert jwt_mode.calls == 1


@pytest.mark.parametrize(("tenant", "claim"), [("initech", "initech"), ("umbrella", "umbrella"), ("acme", '"acme')])
def test_jwt_mode_refuses_suspended_unknown_and_malformed(jwt_mode: CountingTable, tenant: str, claim: str) -> None:
    assert echo(jwt_event(claim), context(tenant))["statusCode"] == 403


def test_jwt_mode_without_cache_reads_every_time(jwt_mode: CountingTable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANCY_REGISTRY_CACHE_SECONDS", "0")
    for _ in range(3):
        assert echo(jwt_event("acme"), context("acme"))["statusCode"] == 200
    assert jwt_mode.calls == 3


def test_jwt_mode_fails_closed_without_a_registry(jwt_mode: CountingTable) -> None:
    class Broken:
        def get_item(self, **_: Any) -> Any:
            raise ConnectionError("unreachable")

    runtime._STATE.table = Broken()
    assert echo(jwt_event("acme"), context("acme"))["statusCode"] == 403


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant=st.one_of(st.text(max_size=80), st.sampled_from(["..", "../..", "a/../../b", "acme\x00", "~root"])))
def test_hostile_tenant_ids_never_escape_the_tmp_root(fresh_environment: Path, tenant: str) -> None:
    answer = echo(api_event({"tenantId": tenant}), context(tenant))
    ok = runtime.TENANT_ID_PATTERN.fullmatch(tenant) is not None
    assert answer["statusCode"] == (200 if ok else 403)
    for path in fresh_environment.rglob("*"):
        assert path.resolve().is_relative_to(fresh_environment.resolve())


# ----- review fixes: crashes, odd answers, links, client headers, the automatic wrapper -----------------------
@pytest.mark.parametrize("error", [ValueError(""), RuntimeError("line one\nline two"), KeyError("k")])
def test_jwt_mode_turns_a_crash_into_a_500_whatever_its_message(
    jwt_mode: CountingTable, error: Exception, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    @runtime.tenant_handler
    def broken(event: Any, ctx: Any) -> Any:
        raise error

    answer = broken(jwt_event("acme"), context("acme"))
    assert answer["statusCode"] == 500 and json.loads(answer["body"]) == {"message": "Internal server error"}
    assert any("handler failed" in r.getMessage() and r.exc_info for r in caplog.records if r.name == "tenancy_runtime")
    [metric] = metric_lines(capsys)
    assert metric["Errors"] == 1


def test_lambda_mode_lets_a_crash_raise_as_lambda_reports_it() -> None:
    @runtime.tenant_handler
    def broken(event: Any, ctx: Any) -> Any:
        raise ValueError("")

    with pytest.raises(ValueError):
        broken(api_event({"tenantId": "acme"}), context("acme"))


@pytest.mark.parametrize("status", ["abc", "2OO", {"code": 200}, 1e400])
def test_a_status_code_that_is_not_a_number_is_an_error_metric_not_a_crash(
    status: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    @runtime.tenant_handler
    def odd(event: Any, ctx: Any) -> Any:
        return {"statusCode": status, "body": "x"}

    assert odd(api_event({"tenantId": "acme"}), context("acme"))["statusCode"] == status  # passed on unchanged
    [metric] = metric_lines(capsys)
    assert metric["Errors"] == 1


def test_a_symlinked_tenant_directory_is_replaced_never_followed(
    fresh_environment: Path, tmp_path_factory: Any
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "keep.txt").write_text("not the tenant's")
    (fresh_environment / "tenant-acme").symlink_to(outside, target_is_directory=True)
    echo(api_event({"tenantId": "acme"}), context("acme"))
    scope = seen[-1]
    assert not scope.tmp_dir.is_symlink() and scope.tmp_dir.is_dir()
    assert scope.tmp_dir.resolve().parent == fresh_environment.resolve()
    assert (outside / "keep.txt").read_text() == "not the tenant's"  # the link's target was never emptied


def test_a_client_tenant_header_naming_another_tenant_is_refused_on_every_invocation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = len(seen)
    for _ in range(2):  # no caching: each invocation is checked
        event = api_event({"tenantId": "acme"})
        event["headers"] = {"x-amz-tenant-id": "globex"}
        assert echo(event, context("acme"))["statusCode"] == 403
    event = api_event({"tenantId": "acme"})
    event["multiValueHeaders"] = {"X-Amz-Tenant-Id": ["acme", "globex"]}
    assert echo(event, context("acme"))["statusCode"] == 403
    assert len(seen) == calls
    same = api_event({"tenantId": "acme"})
    same["headers"] = {"X-Amz-Tenant-Id": "acme"}
    assert echo(same, context("acme"))["statusCode"] == 200


def test_the_entry_point_wraps_the_users_handler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TenantIsolatedFunction sets the handler to tenancy_runtime.handler: an undecorated handler still gets
    every check; a decorated one is not wrapped twice."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "plain_app.py").write_text(
        "def handler(event, context):\n    return {'statusCode': 200, 'body': context.tenant_id}\n"
    )
    (code / "decorated_app.py").write_text(
        "from tenancy_runtime import tenant_handler\n"
        "@tenant_handler\n"
        "def handler(event, context):\n    return {'statusCode': 200, 'body': context.tenant_id}\n"
    )
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setitem(__import__("sys").modules, "tenancy_runtime", runtime)
    monkeypatch.setenv("TENANCY_HANDLER", "plain_app.handler")
    assert runtime.handler(api_event({"tenantId": "acme"}), context("acme"))["body"] == "acme"
    assert runtime.handler(api_event({"tenantId": "globex"}), context("acme"))["statusCode"] == 403  # checked
    assert len(metric_lines(capsys)) == 1
    runtime.reset()
    monkeypatch.setenv("TENANCY_HANDLER", "decorated_app.handler")
    assert runtime.handler(api_event({"tenantId": "acme"}), context("acme"))["body"] == "acme"
    assert len(metric_lines(capsys)) == 1  # one metric line: wrapped once
    monkeypatch.setenv("TENANCY_HANDLER", "nodots")
    runtime.reset()
    with pytest.raises(RuntimeError, match=r"module\.function"):
        runtime.handler({}, context("acme"))


def test_the_scope_is_per_thread(fresh_environment: Path) -> None:
    import threading

    inside = threading.Event()
    release = threading.Event()
    seen_elsewhere: list[Any] = []

    @runtime.tenant_handler
    def slow(event: Any, ctx: Any) -> Any:
        inside.set()
        release.wait(10)
        return {"statusCode": 200, "body": runtime.current().tenant_id}

    worker = threading.Thread(target=lambda: slow(api_event({"tenantId": "acme"}), context("acme")))
    worker.start()
    assert inside.wait(10)
    try:
        runtime.current()
    except RuntimeError:
        seen_elsewhere.append("no scope")
    release.set()
    worker.join(10)
    assert seen_elsewhere == ["no scope"]


def test_registry_reads_are_strongly_consistent(jwt_mode: CountingTable) -> None:
    """An eventually consistent read just after ``tenant suspend`` could return ACTIVE and be cached."""
    reads: list[dict[str, Any]] = []
    inner = jwt_mode.table

    class Recording:
        def get_item(self, **kwargs: Any) -> Any:
            reads.append(kwargs)
            return inner.get_item(**kwargs)

    runtime._STATE.table = Recording()
    assert echo(jwt_event("acme"), context("acme"))["statusCode"] == 200
    assert reads == [{"Key": {"tenantId": "acme"}, "ConsistentRead": True}]
