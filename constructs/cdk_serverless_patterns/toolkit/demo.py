"""``serverless-patterns demo`` (``make demo``): the sample app deployed into the embedded emulator, each
pattern driven through real scenarios.

What runs, and what is real:

- The emulator (:class:`~cdk_serverless_patterns.local.cloud.LocalCloud`) is moto's server on
  ``localhost`` plus the project's bridges. The sample stacks are deployed with the real pinned CDK
  CLI; the state machines run the synthesized ASL in moto's interpreter; the Lambda functions run
  their deployed code in local execution environments (the circuit breaker's extension runs as a real
  process from its layer); EventBridge rules and Scheduler schedules deliver as in AWS.
- The callback sample's first step starts an Amazon Translate job through an ``aws-sdk`` task.
  moto 5.2.5 has no Translate: the demo plays Translate (:class:`TranslateStandIn`, routed with
  :func:`~cdk_serverless_patterns.local.patches.aws_sdk_parameters.route_aws_sdk`): it accepts the
  job, returns a 32-character job id as Translate does, and the demo publishes the job's state-change
  event (source ``aws.translate``, detail-type ``Translate TextTranslationJob State Change``,
  ``detail.jobId``/``detail.jobStatus``) when a scenario says the job finished.
- The circuit breaker's downstream "payments" service is
  :class:`~cdk_serverless_patterns.toolkit.demo_payments.PaymentsService` on ``127.0.0.1``; the sample
  is deployed with the CDK context ``payments_base_url`` pointing at it.
- The tenancy sample runs its functions on the host's CPU: the demo deploys it with the CDK context
  ``tenancy_architecture`` set to the host's architecture (:func:`host_architecture`), because its
  authorizer bundles a compiled dependency (``cryptography``) for the architecture it is deployed
  with, and an aarch64 extension cannot be loaded on an x86_64 host. Tokens come from the sample's
  own token issuer (an IAM-invoked function with the signing key from Secrets Manager); the requests
  go through the emulator's front door (the REST API with its Lambda authorizer, the tenant id mapped
  from the authorizer context into ``X-Amz-Tenant-Id``). The authorizer trusts a registry read for
  30 s in the sample; the demo deploys it with the context ``tenancy_registry_cache_seconds``
  (:data:`DEMO_REGISTRY_CACHE_S`) so that a suspension is seen within seconds, and says so.
- The streaming sample streams one generator's tokens (the offline token source: no model access) through
  its REST API (the demo bearer token from Secrets Manager), its function URL (SigV4-signed with the
  emulator's credentials) and its WebSocket API (a SigV4-presigned handshake); the demo reads each answer
  with a raw HTTP or WebSocket client as it arrives and prints it. The offline source answers at once in
  the sample; the demo deploys it with the context ``streaming_offline_delay_ms``
  (:data:`DEMO_TOKEN_DELAY_MS`) so that the tokens come at a model's pace, and says so.
- Time: ``--fast-schedules`` (default 60) makes the emulator fire ``rate(1 minute)`` every second.
  It compresses schedules only, not the breaker's cool-down, which the health checker measures on
  the wall clock from the item's ``openedAt``: so the demo deploys the sample with the context
  ``payments_cool_down_seconds`` (:data:`DEMO_COOL_DOWN_S`, 60 in the sample) and says so.

Each scenario is one function registered with :func:`scenario` (pattern, name, the stack it needs);
the tenancy and streaming patterns add theirs the same way. A scenario returns its key figure
("resumed 0.4 s after the event") or raises :class:`ScenarioFailed`; what it created (execution
ARNs, job ids, orders) goes into :attr:`DemoRun.records`, from which the tests assert against the
emulator's state. Later scenarios of a pattern whose earlier step failed are not run (and count as
failed). The exit code is 0 only when every scenario that ran is as expected.

``--keep`` leaves the emulator (and the payments service) running afterwards, writes the same state
file as ``local up`` (so ``serverless-patterns local down`` stops it) and prints the environment for
the AWS CLI and boto3.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdk_serverless_patterns.toolkit import local_commands
from cdk_serverless_patterns.toolkit.apps import ToolkitError
from cdk_serverless_patterns.toolkit.demo_payments import PaymentsService

if TYPE_CHECKING:
    from cdk_serverless_patterns.local.cloud import LocalCloud

#: Schedules fire this many times as often as their rate unless --fast-schedules says otherwise.
DEFAULT_FAST_SCHEDULES = 60.0
#: The circuit's cool-down the demo deploys (the sample's is 60 s): see the module docstring.
DEMO_COOL_DOWN_S = 5
CALLBACK_STACK = "ServerlessPatternsCallback"
CIRCUIT_STACK = "ServerlessPatternsCircuitBreaker"
CIRCUIT_ID = "payments"
TENANCY_STACK = "ServerlessPatternsTenancy"
#: The sample's seeded tenants: two active ones, and the one the demo suspends.
TENANT_A, TENANT_B = "acme", "globex"
#: How long the tenancy sample's authorizer trusts a registry read in the demo (30 s in the sample).
DEMO_REGISTRY_CACHE_S = 3
STREAMING_STACK = "ServerlessPatternsStreaming"
#: The offline token source's pause before each token in the demo (context streaming_offline_delay_ms; 0 in the
#: sample): a model's pace, so that the tokens are seen arriving (~70 tokens: under 2 s per transport).
DEMO_TOKEN_DELAY_MS = 25
STREAM_PROMPT = "What does response streaming change for users?"
#: The longest a whole streamed answer may take in the demo (each read is bounded by STEP_TIMEOUT_S).
STREAM_TIMEOUT_S = 120.0
#: The printed answer: one line per this many tokens, cut to this many characters.
STREAM_TOKENS_PER_LINE = 8
STREAM_LINE_CHARS = 80
TRANSLATE_SOURCE = "aws.translate"
TRANSLATE_DETAIL_TYPE = "Translate TextTranslationJob State Change"
#: Bounds of the waits inside scenarios (each a poll with a deadline, never a sleep standing for an outcome).
STEP_TIMEOUT_S = 60.0
POLL_S = 0.05
#: The sample's health-check probe timeout (4 s) and a margin for a cold start of the checker.
PROBE_MARGIN_S = 15.0


class ScenarioFailed(Exception):
    """A scenario's outcome is not what the pattern promises; the message says what was seen."""


@dataclass(frozen=True)
class Scenario:
    """One step of the demo: ``run(demo)`` returns the key figure or raises ScenarioFailed."""

    pattern: str
    name: str
    stack: str
    run: Callable[[DemoRun], str]


@dataclass
class Outcome:
    """What a scenario did: ``status`` is ``ok``, ``failed``, ``not run`` or ``skipped`` (its stack is absent)."""

    pattern: str
    scenario: str
    status: str
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")


#: The scenarios, in the order they run (patterns in the order they were registered).
SCENARIOS: list[Scenario] = []


def scenario(pattern: str, name: str, *, stack: str) -> Callable[[Callable[[DemoRun], str]], Callable[[DemoRun], str]]:
    """Registers a scenario function (the extension point for the patterns' own scenarios)."""

    def register(function: Callable[[DemoRun], str]) -> Callable[[DemoRun], str]:
        SCENARIOS.append(Scenario(pattern, name, stack, function))
        return function

    return register


# -- the command ------------------------------------------------------------------------------------
def add_parser(commands: Any) -> None:
    """Registers ``demo`` on the CLI's subcommands."""
    demo = commands.add_parser(
        "demo",
        help="deploy the sample app into the embedded emulator and run one scenario per pattern",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    demo.add_argument("--app", help="the CDK app (default: the sample app of this project)")
    demo.add_argument("--keep", action="store_true", help="leave the emulator running afterwards, until Ctrl-C")
    demo.add_argument("--port", type=local_commands._port, help="port of the emulator on localhost (default: free)")
    demo.add_argument(
        "--fast-schedules",
        type=local_commands._positive_float,
        default=DEFAULT_FAST_SCHEDULES,
        metavar="F",
        help=f"fire schedules F times as often as their rate (default {DEFAULT_FAST_SCHEDULES:g})",
    )
    demo.add_argument(
        "--pattern",
        action="append",
        dest="patterns",
        metavar="PATTERN",
        help="run only this pattern's scenarios (repeatable; default: all)",
    )


def run(args: argparse.Namespace, *, inspect: Callable[[DemoRun], None] | None = None) -> int:
    """Executes ``serverless-patterns demo``: 0 only if every scenario is as expected.

    ``inspect`` (for tests) is called with the finished run before the emulator closes.
    """
    patterns = set(getattr(args, "patterns", None) or [])
    known = {s.pattern for s in SCENARIOS}
    unknown = sorted(patterns - known)
    if unknown:
        raise ToolkitError(f"--pattern: no scenarios for {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    selected = [s for s in SCENARIOS if not patterns or s.pattern in patterns]
    demo = DemoRun(
        app=getattr(args, "app", None),
        port=getattr(args, "port", None),
        fast_schedules=getattr(args, "fast_schedules", DEFAULT_FAST_SCHEDULES) or DEFAULT_FAST_SCHEDULES,
    )
    # SIGTERM acts like Ctrl-C: the emulator's clean shutdown runs (no execution environment left behind).
    with local_commands._sigterm_interrupts():
        return _run(demo, selected, keep=bool(getattr(args, "keep", False)), inspect=inspect)


def _run(demo: DemoRun, selected: Sequence[Scenario], *, keep: bool, inspect: Callable[[DemoRun], None] | None) -> int:
    outcomes: list[Outcome] = []
    try:
        demo.start()
        outcomes = demo.run_scenarios(selected)
        print_summary(outcomes, demo.log)
        if inspect is not None:
            inspect(demo)
        if keep:
            demo.keep()
    except KeyboardInterrupt:
        demo.log("interrupted: stopping the emulator")
        return 130
    finally:
        demo.close()
    return 0 if outcomes and all(outcome.ok for outcome in outcomes) else 1


def sample_app() -> Path:
    """integ/app.py of this repository: the demo's default app (it is not part of the wheel)."""
    from cdk_serverless_patterns.toolkit.apps import SAMPLE_APP, repository_root

    repository = repository_root()
    if repository is None:
        raise ToolkitError(
            "the demo deploys the sample app (integ/app.py), which ships with the repository, not the wheel: run it "
            "from a checkout of cdk-serverless-patterns, or pass --app to deploy your own app (no scenario runs then)"
        )
    return repository / SAMPLE_APP


def print_summary(outcomes: Sequence[Outcome], log: Callable[[str], None] = print) -> None:
    """The table at the end: pattern, scenario, outcome, key timing."""
    rows = [("PATTERN", "SCENARIO", "OUTCOME", "TIME", "KEY FIGURE")]
    for o in outcomes:
        rows.append((o.pattern, o.scenario, o.status, f"{o.seconds:.1f} s", o.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    log("")
    for row in rows:
        log("  ".join([*(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)), row[4]]).rstrip())
    failed = [o for o in outcomes if not o.ok]
    log("")
    if failed:
        log(f"{len(failed)} of {len(outcomes)} scenario(s) not as expected")
    else:
        log(f"all {len(outcomes)} scenario(s) as expected")


# -- one run of the demo ----------------------------------------------------------------------------
@dataclass
class DemoRun:
    """The emulator, the payments stand-in and the Translate stand-in of one demo run."""

    app: str | None = None
    port: int | None = None
    fast_schedules: float = DEFAULT_FAST_SCHEDULES
    log: Callable[[str], None] = print
    cloud: LocalCloud | None = None
    payments: PaymentsService = field(default_factory=PaymentsService)
    translate: TranslateStandIn | None = None
    stacks: dict[str, Any] = field(default_factory=dict)
    #: What the scenarios created, by scenario name: what the tests assert against the emulator's state.
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    _clients: dict[str, Any] = field(default_factory=dict)

    @property
    def context(self) -> dict[str, str]:
        """The CDK context the sample app is deployed with."""
        return {
            "payments_base_url": self.payments.url,
            "payments_cool_down_seconds": str(DEMO_COOL_DOWN_S),
            "tenancy_architecture": host_architecture(),
            "tenancy_registry_cache_seconds": str(DEMO_REGISTRY_CACHE_S),
            "streaming_offline_delay_ms": str(DEMO_TOKEN_DELAY_MS),
        }

    @property
    def schedule_interval_s(self) -> float:
        """How often the sample's ``rate(1 minute)`` health check fires in the emulator."""
        return 60.0 / self.fast_schedules

    def start(self) -> DemoRun:
        """Starts the payments stand-in and the emulator, and deploys the app (default: the sample app)."""
        app = self.app or str(sample_app())
        self.app = app  # what a redeploy (SIGHUP, with --keep) deploys again
        started = time.monotonic()
        self.payments.start()
        self.log(f"payments stand-in listening on {self.payments.url}")
        self.log("starting the emulator (moto on localhost, Lambda runner, front door, schedulers) ...")
        self.cloud = local_commands.start_cloud(port=self.port, fast_schedules=self.fast_schedules, log=self._quiet)
        self.log(f"emulator at {self.cloud.endpoint}")
        self.translate = TranslateStandIn(self.cloud.session()).install()
        self.log(
            f"deploying the sample app (context payments_base_url={self.payments.url}, "
            f"payments_cool_down_seconds={DEMO_COOL_DOWN_S}: the sample's cool-down is 60 s; tenancy_architecture="
            f"{host_architecture()}, tenancy_registry_cache_seconds={DEMO_REGISTRY_CACHE_S}: the sample's is 30 s; "
            f"streaming_offline_delay_ms={DEMO_TOKEN_DELAY_MS}: the sample's offline tokens come without a pause) ..."
        )
        deployed = local_commands.deploy_app(self.cloud, app, self.context, self._quiet)
        self.stacks = {stack.name: stack for stack in deployed}
        self.log(f"deployed {', '.join(self.stacks)} in {time.monotonic() - started:.1f} s (emulator start included)")
        return self

    def _quiet(self, line: str) -> None:
        """The emulator's own log lines, indented under the demo's progress lines."""
        self.log(f"    {line}")

    def close(self) -> None:
        if self.translate is not None:
            self.translate.uninstall()
        if self.cloud is not None:
            self.cloud.close()
        self.payments.stop()

    def keep(self) -> None:
        """``--keep``: serve until Ctrl-C / ``local down``, with the state file of ``local up``."""
        assert self.cloud is not None
        local_commands.describe_stacks(self.cloud, list(self.stacks.values()), self.log)
        self.log(f"payments stand-in: {self.payments.url} (GET /health, POST /charges)")
        for line in local_commands.usage_lines(self.cloud):
            self.log(line)
        path = local_commands.state_path()
        running = local_commands.read_state(path)
        if running is not None:  # `local down` must keep meaning that emulator: this one stops with Ctrl-C only
            self.log(f"another emulator runs for this project (pid {running['pid']}): stop this one with Ctrl-C")
            path = path.with_name(f"demo-{os.getpid()}.json")
        state = local_commands.StateFile(
            path,
            port=int(self.cloud.endpoint.rsplit(":", 1)[1]),
            endpoint=self.cloud.endpoint,
            frontDoor=self.cloud.front_door_endpoint,
            app=self.app,
            context=self.context,
            deployments=1,
            stacks=list(self.stacks),
        )
        state.update()
        try:
            local_commands.serve(self.cloud, state, app=self.app, context=self.context, log=self.log)
        finally:
            state.remove()

    # -- clients and helpers used by the scenarios ------------------------------------------------
    def client(self, service: str) -> Any:
        """A client of the emulator with bounded waits (one attempt for Lambda: an invoke is not retried)."""
        if service not in self._clients:
            from botocore.config import Config

            assert self.cloud is not None
            attempts = 1 if service == "lambda" else 3
            config = Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"mode": "standard", "total_max_attempts": attempts},
            )
            self._clients[service] = self.cloud.session().client(service, config=config)
        return self._clients[service]

    def stack(self, name: str) -> Any:
        try:
            return self.stacks[name]
        except KeyError:
            raise ScenarioFailed(f"stack {name} is not deployed") from None

    def output(self, stack: str, key: str) -> str:
        outputs: Mapping[str, str] = self.stack(stack).outputs
        value = outputs.get(key)
        if not value:
            raise ScenarioFailed(f"stack {stack} has no output {key} (outputs: {sorted(outputs)})")
        return str(value)

    def record(self, name: str, **values: Any) -> dict[str, Any]:
        """Adds ``values`` to what scenario ``name`` created (for the tests)."""
        entry = self.records.setdefault(name, {})
        entry.update(values)
        return entry

    def run_scenarios(self, scenarios: Sequence[Scenario]) -> list[Outcome]:
        failed_patterns: set[str] = set()
        for number, step in enumerate(scenarios, 1):
            label = f"[{number}/{len(scenarios)}] {step.pattern}: {step.name}"
            if step.stack not in self.stacks:
                outcome = Outcome(step.pattern, step.name, "skipped", f"stack {step.stack} not in the app", 0.0)
            elif step.pattern in failed_patterns:
                outcome = Outcome(step.pattern, step.name, "not run", "an earlier step of this pattern failed", 0.0)
            else:
                self.log(label)
                started = time.monotonic()
                try:
                    detail = step.run(self)
                    status = "ok"
                except ScenarioFailed as error:
                    detail, status = str(error), "failed"
                    failed_patterns.add(step.pattern)
                except Exception as error:  # an unexpected error is this scenario's failure, not the demo's end
                    detail, status = f"{type(error).__name__}: {error}", "failed"
                    failed_patterns.add(step.pattern)
                outcome = Outcome(step.pattern, step.name, status, detail, time.monotonic() - started)
            self.outcomes.append(outcome)
            mark = {"ok": "ok", "skipped": "skipped", "not run": "not run"}.get(outcome.status, "FAILED")
            self.log(f"    -> {mark}: {outcome.detail}")
        return list(self.outcomes)


def wait_until(
    what: str, probe: Callable[[], Any], *, timeout: float = STEP_TIMEOUT_S, interval: float = POLL_S
) -> Any:
    """Polls ``probe`` until it returns something truthy; ScenarioFailed naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ScenarioFailed(f"{what}: not seen within {timeout:.0f} s")
        time.sleep(interval)


# -- Translate, played by the demo ------------------------------------------------------------------
class TranslateStandIn:
    """Answers the sample workflow's ``aws-sdk:translate:startTextTranslationJob`` task (moto 5.2.5 has no
    Translate): accepts the job and returns ``{"JobId", "JobStatus": "SUBMITTED"}`` as Translate does, the
    same job id again for the same ``ClientToken`` (Translate's idempotency).

    :meth:`finish_before_answer` makes the job of one ``ClientToken`` finish at once: its completion
    event is published and recorded by the callback pattern before the task returns, i.e. before the
    workflow reaches its wait step (the early-completion race, made deterministic).
    """

    def __init__(self, session: Any) -> None:
        self._events = session.client("events")
        self._dynamodb = session.client("dynamodb")
        self._lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}  # by ClientToken
        self._instant: dict[str, tuple[str, str]] = {}  # ClientToken -> (status, token table)

    def install(self) -> TranslateStandIn:
        from cdk_serverless_patterns.local.patches.aws_sdk_parameters import route_aws_sdk

        route_aws_sdk("translate", "startTextTranslationJob", self.start_text_translation_job)
        return self

    def uninstall(self) -> None:
        from cdk_serverless_patterns.local.patches.aws_sdk_parameters import route_aws_sdk

        route_aws_sdk("translate", "startTextTranslationJob", None)

    def finish_before_answer(self, client_token: str, status: str, table: str) -> None:
        with self._lock:
            self._instant[client_token] = (status, table)

    def start_text_translation_job(self, **parameters: Any) -> dict[str, Any]:
        token = str(parameters.get("ClientToken") or uuid.uuid4())
        with self._lock:
            job = self.jobs.get(token)
            if job is None:
                job = {"JobId": uuid.uuid4().hex, "parameters": parameters, "submittedAt": time.time()}
                self.jobs[token] = job
            instant = self._instant.pop(token, None)
        if instant is not None:
            status, table = instant
            self.publish(job["JobId"], status)
            deadline = time.monotonic() + STEP_TIMEOUT_S
            key = {"id": {"S": f"translate#{job['JobId']}"}}
            while time.monotonic() < deadline:  # answer once the pattern recorded the completion
                item = self._dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
                if item and item.get("kind", {}).get("S") == "completion":
                    break
                time.sleep(POLL_S)
        return {"JobId": job["JobId"], "JobStatus": "SUBMITTED"}

    def job(self, client_token: str, timeout: float = STEP_TIMEOUT_S) -> dict[str, Any]:
        def started() -> dict[str, Any] | None:
            with self._lock:
                return self.jobs.get(client_token)

        found: dict[str, Any] = wait_until(f"Translate job of execution {client_token}", started, timeout=timeout)
        return found

    def publish(self, job_id: str, status: str) -> None:
        """Publishes the job's state-change event as Translate does."""
        entry = {
            "Source": TRANSLATE_SOURCE,
            "DetailType": TRANSLATE_DETAIL_TYPE,
            "Detail": json.dumps({"jobId": job_id, "jobStatus": status}),
        }
        result = self._events.put_events(Entries=[entry])
        if result.get("FailedEntryCount"):
            raise ScenarioFailed(f"PutEvents refused the Translate event: {result['Entries']}")


# -- callback scenarios -----------------------------------------------------------------------------
def _start_workflow(demo: DemoRun, label: str) -> tuple[str, str]:
    name = f"demo-{label}-{uuid.uuid4().hex[:8]}"
    arn = demo.output(CALLBACK_STACK, "WorkflowArn")
    execution = demo.client("stepfunctions").start_execution(
        stateMachineArn=arn, name=name, input=json.dumps({"sourceLanguage": "en", "targetLanguages": ["fr"]})
    )["executionArn"]
    return name, str(execution)


def _token_item(demo: DemoRun, job_id: str) -> dict[str, Any] | None:
    table = demo.output(CALLBACK_STACK, "TokenTableName")
    item = demo.client("dynamodb").get_item(
        TableName=table, Key={"id": {"S": f"translate#{job_id}"}}, ConsistentRead=True
    )
    found: dict[str, Any] | None = item.get("Item")
    return found


def _finished(demo: DemoRun, execution: str) -> dict[str, Any]:
    sfn = demo.client("stepfunctions")

    def done() -> dict[str, Any] | None:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        return described if described["status"] != "RUNNING" else None

    finished: dict[str, Any] = wait_until(f"end of execution {execution.rsplit(':', 1)[-1]}", done)
    return finished


def _history(demo: DemoRun, execution: str) -> list[dict[str, Any]]:
    pages = demo.client("stepfunctions").get_paginator("get_execution_history").paginate(executionArn=execution)
    return [event for page in pages for event in page["events"]]


def _parked(demo: DemoRun, label: str) -> tuple[str, str, str, float]:
    """Starts the workflow and waits until it is paused with its token stored; (name, execution, job id, s)."""
    assert demo.translate is not None
    started = time.monotonic()
    name, execution = _start_workflow(demo, label)
    job_id = str(demo.translate.job(name)["JobId"])
    item = wait_until(
        f"token of job {job_id} in the callback table",
        lambda: (i := _token_item(demo, job_id)) and i.get("kind", {}).get("S") == "token" and i,
    )
    if item["executionArn"]["S"] != execution:
        raise ScenarioFailed(f"the token item of job {job_id} belongs to {item['executionArn']['S']}")
    status = demo.client("stepfunctions").describe_execution(executionArn=execution)["status"]
    if status != "RUNNING":
        raise ScenarioFailed(f"the workflow is {status}, not paused, with its token stored")
    elapsed = time.monotonic() - started
    demo.log(f"    workflow {name} paused at 'Wait for translation'; token stored as item translate#{job_id}")
    return name, execution, job_id, elapsed


@scenario("callback", "job completes: paused, then resumed by its event", stack=CALLBACK_STACK)
def callback_job_completes(demo: DemoRun) -> str:
    assert demo.translate is not None
    name, execution, job_id, paused_s = _parked(demo, "ok")
    demo.log(f"    publishing the Translate event: job {job_id} COMPLETED")
    published = time.monotonic()
    demo.translate.publish(job_id, "COMPLETED")
    result = _finished(demo, execution)
    resumed_s = time.monotonic() - published
    demo.record("callback_job_completes", execution=execution, job_id=job_id)
    if result["status"] != "SUCCEEDED":
        raise ScenarioFailed(f"the workflow ended {result['status']}: {result.get('error')} {result.get('cause')}")
    bucket = str(demo.translate.jobs[name]["parameters"]["OutputDataConfig"]["S3Uri"]).split("/")[2]
    key = f"output/{job_id}.result.json"
    s3 = demo.client("s3")
    body = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
    demo.record("callback_job_completes", bucket=bucket, key=key)
    if body.get("jobStatus") != "COMPLETED" or tags.get("job-status") != "COMPLETED":
        raise ScenarioFailed(f"result object s3://{bucket}/{key} holds {body} tagged {tags}")
    demo.log(f"    resumed; result written to s3://{bucket}/{key} tagged job-status=COMPLETED")
    return f"paused in {paused_s:.1f} s; resumed {resumed_s:.1f} s after the event"


@scenario("callback", "job fails: the wait step fails with the job's error", stack=CALLBACK_STACK)
def callback_job_fails(demo: DemoRun) -> str:
    assert demo.translate is not None
    _name, execution, job_id, _paused_s = _parked(demo, "failed")
    demo.log(f"    publishing the Translate event: job {job_id} FAILED")
    published = time.monotonic()
    demo.translate.publish(job_id, "FAILED")
    result = _finished(demo, execution)
    failed_s = time.monotonic() - published
    demo.record("callback_job_fails", execution=execution, job_id=job_id)
    if result["status"] != "FAILED" or result.get("error") != "TranslationFailed":
        raise ScenarioFailed(f"the workflow ended {result['status']} ({result.get('error')}), not FAILED")
    caught = [
        json.loads(event["stateEnteredEventDetails"]["input"]).get("error", {}).get("Error")
        for event in _history(demo, execution)
        if event["type"] == "FailStateEntered"
    ]
    if caught != ["translate.FAILED"]:
        raise ScenarioFailed(f"the wait step's error was {caught}, not translate.FAILED")
    demo.log("    the wait step failed with translate.FAILED; the workflow's catch ended it TranslationFailed")
    return f"failed {failed_s:.1f} s after the event (translate.FAILED)"


@scenario("callback", "event before the wait step: recorded, then taken", stack=CALLBACK_STACK)
def callback_event_before_wait(demo: DemoRun) -> str:
    assert demo.translate is not None
    table = demo.output(CALLBACK_STACK, "TokenTableName")
    name = f"demo-early-{uuid.uuid4().hex[:8]}"
    demo.translate.finish_before_answer(name, "COMPLETED", table)
    demo.log("    Translate finishes the job at once: its event arrives before the workflow reaches its wait step")
    started = time.monotonic()
    execution = demo.client("stepfunctions").start_execution(
        stateMachineArn=demo.output(CALLBACK_STACK, "WorkflowArn"),
        name=name,
        input=json.dumps({"sourceLanguage": "en", "targetLanguages": ["fr"]}),
    )["executionArn"]
    result = _finished(demo, execution)
    elapsed = time.monotonic() - started
    job_id = str(demo.translate.jobs[name]["JobId"])
    demo.record("callback_event_before_wait", execution=execution, job_id=job_id)
    if result["status"] != "SUCCEEDED":
        raise ScenarioFailed(f"the workflow ended {result['status']}: {result.get('error')} {result.get('cause')}")
    parked = [
        event
        for event in _history(demo, execution)
        if event["type"] == "TaskSubmitted"
        and event["taskSubmittedEventDetails"]["resource"] == "putItem.waitForTaskToken"
    ]
    item = _token_item(demo, job_id) or {}
    marker = (item.get("kind", {}).get("S"), item.get("result", {}).get("S"))
    if parked or marker != ("resumed", "TAKEN"):
        raise ScenarioFailed(f"expected the recorded completion to be taken without parking; item {marker}")
    demo.log(f"    the wait step took the recorded completion (item translate#{job_id}: resumed/TAKEN), never parked")
    return f"finished in {elapsed:.1f} s without parking"


# -- circuit-breaker scenarios ----------------------------------------------------------------------
def _circuit(demo: DemoRun) -> dict[str, Any] | None:
    from cdk_serverless_patterns.toolkit.circuit import read_item

    table = demo.output(CIRCUIT_STACK, "CircuitBreakerTableName")
    raw = demo.client("dynamodb").get_item(TableName=table, Key={"circuitId": {"S": CIRCUIT_ID}}, ConsistentRead=True)
    return read_item(raw["Item"]) if "Item" in raw else None


def _state(demo: DemoRun) -> str | None:
    item = _circuit(demo)
    return str(item.get("state")) if item else None


def show_circuit_status(demo: DemoRun) -> None:
    """Shows ``serverless-patterns circuit status --table ... --endpoint-url ...`` as the command prints it."""
    from cdk_serverless_patterns.toolkit import circuit

    assert demo.cloud is not None
    table = demo.output(CIRCUIT_STACK, "CircuitBreakerTableName")
    args = argparse.Namespace(
        action="status",
        circuit_id=None,
        table=table,
        stack=None,
        region=demo.cloud.region,
        endpoint_url=demo.cloud.endpoint,
        reason=None,
        create=False,
        json=False,
    )
    out = io.StringIO()
    with redirect_stdout(out):
        circuit.run(args)
    demo.log(f"    $ serverless-patterns circuit status --table {table} --endpoint-url {demo.cloud.endpoint}")
    for line in out.getvalue().rstrip().splitlines():
        demo.log(f"      {line}")


def checkout(demo: DemoRun, order_id: str, amount_cents: int = 1299) -> dict[str, Any]:
    """Invokes the sample's checkout function (through moto's Invoke, run by the Lambda runner)."""
    function = demo.output(CIRCUIT_STACK, "CheckoutFunctionName")
    response = demo.client("lambda").invoke(
        FunctionName=function, Payload=json.dumps({"orderId": order_id, "amountCents": amount_cents}).encode()
    )
    payload = response["Payload"].read()
    if response.get("FunctionError"):
        raise ScenarioFailed(f"checkout failed ({response['FunctionError']}): {payload[:300]!r}")
    answer: dict[str, Any] = json.loads(payload)
    demo.records.setdefault("checkout_calls", {})[order_id] = answer
    return answer


def _health_check_timeout(demo: DemoRun, probes: int) -> float:
    return probes * demo.schedule_interval_s + PROBE_MARGIN_S


@scenario("circuit breaker", "healthy payments: circuit CLOSED, checkout charges", stack=CIRCUIT_STACK)
def circuit_healthy(demo: DemoRun) -> str:
    demo.payments.set_mode("up")
    started = time.monotonic()
    wait_until(
        "the first scheduled health check",
        lambda: _state(demo) == "CLOSED" and demo.payments.count("health") > 0,
        timeout=_health_check_timeout(demo, 2),
    )
    first_check = time.monotonic() - started
    show_circuit_status(demo)
    answer = checkout(demo, "demo-order-1")
    demo.record("circuit_healthy", answer=answer)
    if answer.get("status") != "charged":
        raise ScenarioFailed(f"checkout answered {answer}, not charged")
    demo.log(f"    checkout demo-order-1 -> charged ({answer['payment'].get('chargeId')})")
    checks = demo.payments.count("health")
    return f"CLOSED after {checks} health check(s) ({first_check:.1f} s waited); order charged"


@scenario("circuit breaker", "payments down: the health checker opens the circuit", stack=CIRCUIT_STACK)
def circuit_opens(demo: DemoRun) -> str:
    demo.log("    payments goes down (503 to everything)")
    demo.payments.set_mode("down")
    started = time.monotonic()
    item = wait_until(
        "circuit OPEN after 3 failed health checks",
        lambda: (i := _circuit(demo)) and i.get("state") == "OPEN" and i,
        timeout=_health_check_timeout(demo, 4),
    )
    opened = time.monotonic() - started
    demo.record("circuit_opens", item=item, failed_probes=demo.payments.count("health", "down"))
    show_circuit_status(demo)
    return f"OPEN {opened:.1f} s after payments went down ({item.get('updatedBy')})"


@scenario("circuit breaker", "circuit open: checkout answers from its fallback", stack=CIRCUIT_STACK)
def circuit_fallback(demo: DemoRun) -> str:
    started = time.monotonic()
    calls = 0
    answer: dict[str, Any] = {}

    def queued() -> bool:
        # The extension caches the circuit's state for up to 2 s (the sample's cache_ttl): calls made
        # before it reads OPEN still go to payments and fail.
        nonlocal calls, answer
        calls += 1
        before = demo.payments.count("charges")
        answer = checkout(demo, f"demo-order-open-{calls}")
        return answer.get("status") == "queued" and demo.payments.count("charges") == before

    try:
        wait_until("checkout answering from its fallback", queued, timeout=STEP_TIMEOUT_S / 2, interval=0.5)
    except ScenarioFailed as error:
        raise ScenarioFailed(f"{error}; last answer {answer}, circuit {_state(demo)}") from None
    demo.record("circuit_fallback", answer=answer, order_id=f"demo-order-open-{calls}", calls=calls)
    demo.log(f"    checkout {answer['orderId']} -> {answer['status']} ({answer.get('reason')}); payments not called")
    show_circuit_status(demo)
    return f"fallback in {time.monotonic() - started:.1f} s ({calls} call(s); payments untouched)"


@scenario("circuit breaker", "payments recovers: HALF_OPEN, then CLOSED", stack=CIRCUIT_STACK)
def circuit_recovers(demo: DemoRun) -> str:
    demo.log(f"    payments recovers; cool-down is {DEMO_COOL_DOWN_S} s, then 2 successful trials close the circuit")
    demo.payments.set_mode("up")
    started = time.monotonic()
    seen: list[str] = []
    shown: set[str] = set()

    def closed() -> bool:
        state = _state(demo)
        if state and (not seen or seen[-1] != state):
            seen.append(state)
            demo.log(f"    circuit {state} after {time.monotonic() - started:.1f} s")
        if state == "HALF_OPEN" and state not in shown:
            shown.add(state)
            show_circuit_status(demo)
        return state == "CLOSED"

    wait_until(
        "circuit CLOSED through HALF_OPEN",
        closed,
        timeout=DEMO_COOL_DOWN_S + _health_check_timeout(demo, 4),
        interval=POLL_S,
    )
    demo.record("circuit_recovers", states=seen)
    show_circuit_status(demo)
    if "HALF_OPEN" not in seen:
        raise ScenarioFailed(f"the circuit went {' -> '.join(seen)} without HALF_OPEN")
    return f"{' -> '.join(seen)} in {time.monotonic() - started:.1f} s"


@scenario("circuit breaker", "circuit closed: checkout charges again", stack=CIRCUIT_STACK)
def circuit_charges_again(demo: DemoRun) -> str:
    started = time.monotonic()
    calls = 0
    answer: dict[str, Any] = {}

    def charged() -> bool:
        nonlocal calls, answer
        calls += 1
        answer = checkout(demo, f"demo-order-again-{calls}")
        return answer.get("status") == "charged"

    try:
        wait_until("checkout charging again", charged, timeout=STEP_TIMEOUT_S / 2, interval=0.5)
    except ScenarioFailed as error:
        raise ScenarioFailed(f"{error}; last answer {answer}, circuit {_state(demo)}") from None
    demo.record("circuit_charges_again", answer=answer, order_id=f"demo-order-again-{calls}")
    demo.log(f"    checkout {answer['orderId']} -> charged ({answer['payment'].get('chargeId')})")
    return f"charged in {time.monotonic() - started:.1f} s ({calls} call(s))"


# -- tenancy scenarios ------------------------------------------------------------------------------
def host_architecture() -> str:
    """The Lambda architecture of this machine's CPU (``x86_64`` or ``arm64``): what the emulator can run."""
    return "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x86_64"


def issue_token(demo: DemoRun, tenant: str, ttl_seconds: int = 300) -> str:
    """A token for ``tenant`` from the sample's token issuer (invoked through moto's Invoke, run by the runner)."""
    response = demo.client("lambda").invoke(
        FunctionName=demo.output(TENANCY_STACK, "TokenIssuerFunctionName"),
        Payload=json.dumps({"tenant": tenant, "ttlSeconds": ttl_seconds}).encode(),
    )
    payload = response["Payload"].read()
    if response.get("FunctionError"):
        raise ScenarioFailed(f"the token issuer failed ({response['FunctionError']}): {payload[:300]!r}")
    token = json.loads(payload).get("token")
    if not isinstance(token, str):
        raise ScenarioFailed(f"the token issuer answered {payload[:300]!r}")
    return token


def orders_url(demo: DemoRun) -> str:
    """``GET /orders`` of the sample's REST API on the emulator's front door."""
    endpoints = [e for e in demo.stack(TENANCY_STACK).endpoints if e.kind == "rest"]
    if len(endpoints) != 1:
        raise ScenarioFailed(f"the tenancy stack serves {len(endpoints)} REST APIs, not one")
    return f"{endpoints[0].url}orders"


def get_orders(demo: DemoRun, token: str | None) -> tuple[int, Any]:
    """``GET /orders`` with ``Authorization: Bearer <token>``: (status, JSON body or text)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(orders_url(demo), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=STEP_TIMEOUT_S) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def tenant_environments(demo: DemoRun) -> dict[str | None, dict[str, Any]]:
    """The orders function's live execution environments by tenant: pid of the runtime and invocations."""
    assert demo.cloud is not None
    function = demo.output(TENANCY_STACK, "OrdersFunctionName")
    runner = demo.cloud._runner
    found: dict[str | None, dict[str, Any]] = {}
    for info in runner.environments() if runner is not None else []:
        name, tenant = info.key
        if name == function and info.state != "dead":
            found[tenant] = {"pid": info.runtime_pid, "invocations": info.invocations, "id": info.environment_id}
    return found


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    import base64

    part = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


def forged_tokens(token_for_a: str, tenant_b: str) -> dict[str, str]:
    """Tokens claiming ``tenant_b`` that a caller holding only ``token_for_a`` can make."""
    header, _payload, signature = token_for_a.split(".")
    claims = {**_claims(token_for_a), "tenant_id": tenant_b}
    payload = _b64url(json.dumps(claims).encode())
    none_header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "tenant claim swapped, signature of A kept": f"{header}.{payload}.{signature}",
        "alg none": f"{none_header}.{payload}.",
    }


@scenario("tenancy", "two tenants through the authorizer: separate environments", stack=TENANCY_STACK)
def tenancy_separate_environments(demo: DemoRun) -> str:
    answers: dict[str, list[Any]] = {TENANT_A: [], TENANT_B: []}
    started = time.monotonic()
    tokens = {tenant: issue_token(demo, tenant) for tenant in answers}
    for tenant in (TENANT_A, TENANT_B, TENANT_A, TENANT_B):
        status, body = get_orders(demo, tokens[tenant])
        if status != 200:
            raise ScenarioFailed(f"GET /orders as {tenant} answered {status}: {body}")
        answers[tenant].append(body)
    environments = tenant_environments(demo)
    demo.record("tenancy_separate_environments", answers=answers, environments=environments)
    for tenant, bodies in answers.items():
        if [b["tenant"] for b in bodies] != [tenant, tenant] or [b["invocations"] for b in bodies] != [1, 2]:
            raise ScenarioFailed(f"{tenant}'s answers {bodies}: not its own environment counting its own calls")
        if bodies[0]["pid"] != bodies[1]["pid"] or environments.get(tenant, {}).get("pid") != bodies[0]["pid"]:
            raise ScenarioFailed(f"{tenant} was served by {[b['pid'] for b in bodies]}; environments {environments}")
        if bodies[-1]["tmpEntries"] != [f"tenant-{tenant}"]:
            raise ScenarioFailed(f"{tenant}'s environment sees {bodies[-1]['tmpEntries']} in its /tmp")
    pid_a, pid_b = answers[TENANT_A][0]["pid"], answers[TENANT_B][0]["pid"]
    if pid_a == pid_b:
        raise ScenarioFailed(f"{TENANT_A} and {TENANT_B} were served by the same process {pid_a}")
    demo.log(f"    {TENANT_A} -> environment pid {pid_a}; {TENANT_B} -> environment pid {pid_b}; 2 calls each")
    demo.log("    each environment counts only its own tenant's calls and sees only its own /tmp directory")
    return f"pids {pid_a} / {pid_b}, 4 requests in {time.monotonic() - started:.1f} s"


@scenario("tenancy", "forged tenant: denied at the edge, the function never runs", stack=TENANCY_STACK)
def tenancy_forged_tenant(demo: DemoRun) -> str:
    before = tenant_environments(demo)
    answers: dict[str, Any] = {}
    for label, token in forged_tokens(issue_token(demo, TENANT_A), TENANT_B).items():
        status, body = get_orders(demo, token)
        answers[label] = {"status": status, "body": body}
        demo.log(f"    token for {TENANT_A} made to claim {TENANT_B} ({label}) -> {status} {body}")
    status, body = get_orders(demo, None)
    answers["no token"] = {"status": status, "body": body}
    demo.log(f"    no token -> {status} {body}")
    after = tenant_environments(demo)
    demo.record("tenancy_forged_tenant", answers=answers, before=before, after=after)
    allowed = {label: a["status"] for label, a in answers.items() if a["status"] not in (401, 403)}
    if allowed:
        raise ScenarioFailed(f"not denied: {allowed}")
    ran = {t: (before.get(t, {}).get("invocations"), e["invocations"]) for t, e in after.items()}
    if any(was != now for was, now in ran.values()):
        raise ScenarioFailed(f"the orders function ran for a forged request: invocations {ran}")
    return ", ".join(f"{label}: {a['status']}" for label, a in answers.items())


@scenario("tenancy", "suspended tenant: denied once the registry says so", stack=TENANCY_STACK)
def tenancy_suspended_tenant(demo: DemoRun) -> str:
    table = demo.output(TENANCY_STACK, "RegistryTableName")
    demo.client("dynamodb").update_item(
        TableName=table,
        Key={"tenantId": {"S": TENANT_B}},
        UpdateExpression="SET #s = :suspended",
        ConditionExpression="attribute_exists(tenantId)",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":suspended": {"S": "SUSPENDED"}},
    )
    suspended = time.monotonic()
    demo.log(
        f"    {TENANT_B} set SUSPENDED in the registry; the authorizer trusts a registry read for "
        f"{DEMO_REGISTRY_CACHE_S} s in the demo (context tenancy_registry_cache_seconds; the sample's is 30 s)"
    )
    attempts: list[int] = []

    def denied() -> bool:
        # A fresh token each time (another expiry): API Gateway's decision cache is per token.
        status, _body = get_orders(demo, issue_token(demo, TENANT_B, ttl_seconds=300 - len(attempts)))
        attempts.append(status)
        return status in (401, 403)

    wait_until(f"{TENANT_B} denied after its suspension", denied, timeout=STEP_TIMEOUT_S, interval=0.5)
    after_s = time.monotonic() - suspended
    status_a, body_a = get_orders(demo, issue_token(demo, TENANT_A))
    demo.record("tenancy_suspended_tenant", attempts=attempts, after_s=after_s, active_tenant=[status_a, body_a])
    if status_a != 200 or body_a.get("tenant") != TENANT_A:
        raise ScenarioFailed(f"{TENANT_A} (still active) answered {status_a}: {body_a}")
    demo.log(f"    {TENANT_B} denied ({attempts[-1]}) {after_s:.1f} s after its suspension; {TENANT_A} still served")
    return f"denied {after_s:.1f} s after the suspension ({len(attempts)} request(s)); {TENANT_A} still 200"


@scenario("tenancy", "call without a tenant id: fails as Lambda fails", stack=TENANCY_STACK)
def tenancy_no_tenant(demo: DemoRun) -> str:
    from botocore.exceptions import ClientError

    function = demo.output(TENANCY_STACK, "OrdersFunctionName")
    before = tenant_environments(demo)
    try:
        demo.client("lambda").invoke(FunctionName=function, Payload=b"{}")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        message = error.response.get("Error", {}).get("Message", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    else:
        raise ScenarioFailed("Invoke without a TenantId was accepted") from None
    after = tenant_environments(demo)
    demo.record("tenancy_no_tenant", code=code, message=message, status=status, before=before, after=after)
    if (status, code) != (400, "InvalidParameterValueException") or "tenant ID" not in message:
        raise ScenarioFailed(f"Invoke without a TenantId answered {status} {code}: {message}")
    if before != after:
        raise ScenarioFailed(f"an environment ran or started for the refused invoke: {before} -> {after}")
    demo.log(f"    Invoke {function} without TenantId -> {status} {code}: {message}")
    return f"{status} {code}"


# -- streaming scenarios ----------------------------------------------------------------------------
@dataclass
class Streamed:
    """One prompt's answer as a client saw it (any transport): what arrived, and when.

    ``ttfb_s`` is the time from the request (the WebSocket: from sending the message) to the first token;
    ``total_s`` to the end of the stream. ``tokens`` are the ``data:`` events (SSE) or the text of the chunk
    frames re-split into the offline source's tokens (WebSocket frames batch several tokens), ``summary``
    the handler's ``summary`` event, ``done`` whether the stream's end marker arrived.
    """

    transport: str
    status: int
    content_type: str | None = None
    tokens: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    done: bool = False
    error: dict[str, Any] | None = None
    ttfb_s: float | None = None
    total_s: float = 0.0
    arrivals: int = 0  # separate reads (HTTP) or frames (WebSocket) that carried the answer

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def as_record(self) -> dict[str, Any]:
        """The figures the demo records for the tests (and prints)."""
        return {
            "status": self.status,
            "contentType": self.content_type,
            "tokens": len(self.tokens),
            "text": self.text,
            "summary": self.summary,
            "done": self.done,
            "error": self.error,
            "ttfbMs": None if self.ttfb_s is None else round(self.ttfb_s * 1000, 1),
            "totalMs": round(self.total_s * 1000, 1),
            "arrivals": self.arrivals,
        }


class TokenPrinter:
    """Prints an answer as it arrives: one short line per few tokens, with the time since the request."""

    def __init__(self, log: Callable[[str], None], *, per_line: int = STREAM_TOKENS_PER_LINE) -> None:
        self._log = log
        self._per_line = per_line
        self._pending: list[str] = []

    def add(self, token: str, at_s: float) -> None:
        self._pending.append(token)
        if len(self._pending) >= self._per_line:
            self.flush(at_s)

    def flush(self, at_s: float) -> None:
        if self._pending:
            text = " ".join("".join(self._pending).split())
            self._log(f"      {at_s * 1000:7.0f} ms | {text[:STREAM_LINE_CHARS]}")
            self._pending = []


def streaming_endpoint(demo: DemoRun, kind: str) -> str:
    """The streaming sample's endpoint of ``kind`` (``rest``, ``function_url``, ``websocket``) on the front door."""
    urls = [e.url for e in demo.stack(STREAMING_STACK).endpoints if e.kind == kind]
    if len(urls) != 1:
        raise ScenarioFailed(f"the streaming stack serves {len(urls)} endpoints of kind {kind}, not one")
    return str(urls[0])


def demo_bearer_token(demo: DemoRun) -> str:
    """The REST API's bearer token: the demo secret Secrets Manager generated at deploy time."""
    secret = demo.output(STREAMING_STACK, "DemoTokenSecretArn")
    return str(demo.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"])


def _credentials(demo: DemoRun) -> Any:
    assert demo.cloud is not None
    return demo.cloud.session().get_credentials()


def sigv4_headers(demo: DemoRun, url: str, service: str = "lambda") -> dict[str, str]:
    """SigV4 headers (``Authorization``, ``X-Amz-Date``) for ``GET url``, signed with the emulator's credentials."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    assert demo.cloud is not None
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(_credentials(demo), service, demo.cloud.region).add_auth(request)
    return {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "x-amz-date")}


def presigned_websocket_url(demo: DemoRun, url: str, expires_s: int = 300) -> str:
    """``url`` (``ws://``) with a SigV4 query signature (service ``execute-api``), as a browser client presigns."""
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest

    assert demo.cloud is not None
    scheme, rest = url.split("://", 1)
    request = AWSRequest(method="GET", url=f"{'https' if scheme == 'wss' else 'http'}://{rest}")
    SigV4QueryAuth(_credentials(demo), "execute-api", demo.cloud.region, expires=expires_s).add_auth(request)
    return f"{scheme}://{str(request.url).split('://', 1)[1]}"


def stream_sse(
    url: str, headers: Mapping[str, str], *, transport: str, on_token: Callable[[str, float], None] | None = None
) -> Streamed:
    """``GET url``, reading the chunked text/event-stream answer chunk by chunk as it arrives (``http.client``).

    Every read is bounded by :data:`STEP_TIMEOUT_S`; the whole stream by :data:`STREAM_TIMEOUT_S`.
    """
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "localhost", parts.port, timeout=STEP_TIMEOUT_S)
    started = time.monotonic()
    try:
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        connection.request("GET", target, headers=dict(headers))
        response = connection.getresponse()
        result = Streamed(transport, response.status, response.getheader("content-type"))
        pending, name, data = b"", "message", list[str]()
        while True:
            if time.monotonic() - started > STREAM_TIMEOUT_S:
                raise ScenarioFailed(f"{transport}: the stream did not end within {STREAM_TIMEOUT_S:.0f} s")
            chunk = response.read1(65536)
            if not chunk:
                break
            result.arrivals += 1
            now = time.monotonic() - started
            if response.status != 200:
                pending += chunk
                continue
            pending += chunk
            while b"\n" in pending:  # text/event-stream: fields until a blank line
                raw, pending = pending.split(b"\n", 1)
                line = raw.decode("utf-8", errors="replace").rstrip("\r")
                if line.startswith(":"):
                    continue
                if line:
                    key, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if key == "data":
                        data.append(value)
                    elif key == "event":
                        name = value
                    continue
                text = "\n".join(data)
                if name == "message" and data:
                    if result.ttfb_s is None:
                        result.ttfb_s = now
                    result.tokens.append(text)
                    if on_token is not None:
                        on_token(text, now)
                elif name == "summary":
                    result.summary = _json_object(text)
                elif name == "done":
                    result.done = True
                elif name == "error":
                    result.error = _json_object(text) or {"message": text}
                name, data = "message", []
        result.total_s = time.monotonic() - started
        if response.status != 200:
            result.error = _json_object(pending.decode("utf-8", errors="replace")) or {
                "body": pending[:300].decode(errors="replace")
            }
        return result
    finally:
        connection.close()


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def stream_websocket(
    url: str, prompt: str, *, on_token: Callable[[str, float], None] | None = None
) -> tuple[Streamed, list[dict[str, Any]]]:
    """Connects (``url`` already presigned), sends ``{"action": "stream", "prompt": ...}``, reads frames to the end.

    Returns the answer and the frames as they arrived. Every receive is bounded by :data:`STEP_TIMEOUT_S`; the
    whole stream by :data:`STREAM_TIMEOUT_S`.
    """
    import re

    from websockets.sync.client import connect

    token = re.compile(r"\s*\S+\s*|\s+")  # how the offline source splits text (chunk frames batch tokens)
    frames: list[dict[str, Any]] = []
    result = Streamed("websocket", 101)
    with connect(url, open_timeout=STEP_TIMEOUT_S, close_timeout=5) as ws:
        started = time.monotonic()
        ws.send(json.dumps({"action": "stream", "prompt": prompt}))
        while not frames or frames[-1].get("type") not in ("done", "error"):
            left = STREAM_TIMEOUT_S - (time.monotonic() - started)
            if left <= 0:
                raise ScenarioFailed(f"websocket: the stream did not end within {STREAM_TIMEOUT_S:.0f} s")
            frame = json.loads(ws.recv(timeout=min(STEP_TIMEOUT_S, left)))
            now = time.monotonic() - started
            frames.append(frame)
            result.arrivals += 1
            if frame.get("type") == "chunk" and frame.get("event") == "summary":
                result.summary = _json_object(str(frame.get("data", "")))
            elif frame.get("type") == "chunk" and "event" not in frame:
                if result.ttfb_s is None:
                    result.ttfb_s = now
                for piece in token.findall(str(frame.get("data", ""))):
                    result.tokens.append(piece)
                    if on_token is not None:
                        on_token(piece, now)
            elif frame.get("type") == "done":
                result.done = True
            elif frame.get("type") == "error":
                result.error = {k: v for k, v in frame.items() if k != "type"}
        result.total_s = time.monotonic() - started
    return result, frames


def _check_stream(demo: DemoRun, answer: Streamed) -> str:
    """Judges one streamed answer against what arrived; the scenario's key figure."""
    if answer.error is not None or answer.status not in (200, 101):
        raise ScenarioFailed(f"{answer.transport} answered {answer.status}: {answer.error}")
    if answer.status == 200 and answer.content_type != "text/event-stream":
        raise ScenarioFailed(f"{answer.transport}: content type {answer.content_type!r}, not text/event-stream")
    if not answer.done:
        raise ScenarioFailed(f"{answer.transport}: the stream ended without its end marker (truncated)")
    if answer.summary != {"tokens": len(answer.tokens)}:
        raise ScenarioFailed(
            f"{answer.transport}: {len(answer.tokens)} tokens arrived, the summary says {answer.summary}"
        )
    if not answer.text.startswith(f"You asked: {STREAM_PROMPT}"):
        raise ScenarioFailed(f"{answer.transport}: the answer is not about the prompt: {answer.text[:80]!r}")
    assert answer.ttfb_s is not None
    # The handler pauses before each token but the first: it runs at least this long after its first token.
    # Had the answer been buffered, the first token would arrive with the last.
    paced = (len(answer.tokens) - 1) * DEMO_TOKEN_DELAY_MS / 1000
    if answer.total_s - answer.ttfb_s < paced / 2:
        raise ScenarioFailed(
            f"{answer.transport}: the first token came {answer.ttfb_s * 1000:.0f} ms in and the end "
            f"{answer.total_s * 1000:.0f} ms in: buffered, not streamed"
        )
    demo.log(
        f"    first token after {answer.ttfb_s * 1000:.0f} ms, complete after {answer.total_s * 1000:.0f} ms: "
        f"{len(answer.tokens)} tokens in {answer.arrivals} pieces, `done` seen, the summary agrees"
    )
    return f"first byte {answer.ttfb_s * 1000:.0f} ms, {len(answer.tokens)} tokens in {answer.total_s:.1f} s, done"


def _streamed_via(demo: DemoRun, transport: str) -> str:
    """Streams :data:`STREAM_PROMPT` through one transport, printing it as it arrives; records and judges it."""
    printer = TokenPrinter(demo.log)
    frames: list[dict[str, Any]] = []
    cold = streaming_invocations(demo) == 0 if transport != "websocket" else None
    query = urllib.parse.urlencode({"prompt": STREAM_PROMPT})
    if transport == "rest":
        url = f"{streaming_endpoint(demo, 'rest')}stream?{query}"
        demo.log(f"    GET /stream?{query} with the demo bearer token (Authorization: Bearer <secret>)")
        answer = stream_sse(
            url, {"Authorization": f"Bearer {demo_bearer_token(demo)}"}, transport="rest", on_token=printer.add
        )
    elif transport == "function_url":
        url = f"{streaming_endpoint(demo, 'function_url')}?{query}"
        demo.log(f"    GET ?{query}, SigV4-signed (service lambda; the emulator checks the signature's presence)")
        answer = stream_sse(url, sigv4_headers(demo, url), transport="function_url", on_token=printer.add)
    else:
        url = presigned_websocket_url(demo, streaming_endpoint(demo, "websocket"))
        message = json.dumps({"action": "stream", "prompt": STREAM_PROMPT})
        demo.log(f"    presigned handshake (SigV4 query, service execute-api), then {message}")
        answer, frames = stream_websocket(url, STREAM_PROMPT, on_token=printer.add)
    printer.flush(answer.total_s)
    demo.record(f"streaming_{transport}", **answer.as_record(), frames=len(frames), cold=cold)
    if cold:
        demo.log("    (the function's first invocation: the time to first byte includes its cold start)")
    return _check_stream(demo, answer)


@scenario("streaming", "REST API: one prompt streamed as server-sent events", stack=STREAMING_STACK)
def streaming_rest(demo: DemoRun) -> str:
    return _streamed_via(demo, "rest")


@scenario("streaming", "function URL: the same prompt, SigV4-signed", stack=STREAMING_STACK)
def streaming_function_url(demo: DemoRun) -> str:
    return _streamed_via(demo, "function_url")


@scenario("streaming", "WebSocket: the same prompt as JSON frames", stack=STREAMING_STACK)
def streaming_websocket(demo: DemoRun) -> str:
    detail = _streamed_via(demo, "websocket")
    texts = {t: demo.records.get(f"streaming_{t}", {}).get("text") for t in ("rest", "function_url", "websocket")}
    if len(set(texts.values())) != 1:
        raise ScenarioFailed(f"the three transports delivered different answers: {texts}")
    demo.log("    the three transports delivered the same answer to the same prompt")
    return detail


def streaming_invocations(demo: DemoRun) -> int:
    """How many invocations the streaming function's execution environments ran (the Lambda runner's state)."""
    assert demo.cloud is not None
    function = demo.output(STREAMING_STACK, "StreamingFunctionName")
    runner = demo.cloud._runner
    return sum(
        info.invocations for info in (runner.environments() if runner is not None else []) if info.key[0] == function
    )


@scenario("streaming", "unauthenticated callers are refused on every transport", stack=STREAMING_STACK)
def streaming_unauthenticated(demo: DemoRun) -> str:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    query = urllib.parse.urlencode({"prompt": STREAM_PROMPT})
    before = streaming_invocations(demo)
    rest = stream_sse(f"{streaming_endpoint(demo, 'rest')}stream?{query}", {}, transport="rest")
    demo.log(f"    REST API without a bearer token -> {rest.status} {rest.error}")
    url = stream_sse(f"{streaming_endpoint(demo, 'function_url')}?{query}", {}, transport="function_url")
    demo.log(f"    function URL without a SigV4 signature -> {url.status} {url.error}")
    websocket: int | str
    try:
        with connect(streaming_endpoint(demo, "websocket"), open_timeout=STEP_TIMEOUT_S, close_timeout=5):
            websocket = "connected"
    except InvalidStatus as refused:
        websocket = refused.response.status_code
    demo.log(f"    WebSocket handshake without a presigned query -> {websocket}")
    after = streaming_invocations(demo)
    answers = {"rest": rest.status, "function_url": url.status, "websocket": websocket}
    demo.record("streaming_unauthenticated", answers=answers, before=before, after=after)
    if answers != {"rest": 401, "function_url": 403, "websocket": 403}:
        raise ScenarioFailed(f"expected 401 / 403 / 403, got {answers}")
    if rest.tokens or url.tokens:
        raise ScenarioFailed("a refused caller received tokens")
    if after != before:
        raise ScenarioFailed(f"the streaming function ran for a refused caller ({before} -> {after} invocations)")
    return "REST 401, function URL 403, WebSocket 403; the function never ran"
