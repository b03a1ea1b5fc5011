"""LocalCloud: CDK apps deployed with the real CDK CLI into moto's server, and events moved as in AWS.

::

    from cdk_serverless_patterns.local import LocalCloud

    with LocalCloud(fast_schedules=60) as cloud:
        (stack,) = cloud.deploy("app.py")
        table = stack.outputs["TableName"]
        cloud.session().client("events").put_events(...)

What :meth:`LocalCloud.start` runs, all in this process, all stopped by :meth:`LocalCloud.close`:

- moto's server on ``127.0.0.1:<port>`` (named ``localhost`` in :attr:`LocalCloud.endpoint`), with
  the patches of ``patches/`` and state machines executing;
- the Lambda runner (``lambda_runtime.py``): moto's ``Invoke`` runs the deployed code in warm
  execution environments; the asynchronous invoker (``events.py``) on top of it;
- the HTTP front door (``front_door.py``): REST APIs, function URLs and WebSocket APIs of the
  deployed templates;
- the scheduler thread (``events.py``): EventBridge Scheduler schedules fire;
- the SQS poller (``events.py``): SQS event source mappings run in batches as Lambda runs them.

moto keeps one AWS state per process: one LocalCloud runs at a time in a process, and
:meth:`LocalCloud.start` resets moto's state (a new cloud starts empty). Whatever stops a start
half-way (an error, Ctrl-C) closes what it started. :meth:`LocalCloud.close` first stops taking
work, then shuts the Lambda runner down (SHUTDOWN to extensions, 2 s as Lambda), so that invokes in
flight answer at once instead of holding the close. Destroying a stack retires its functions' warm
environments (a function created again starts cold, as in Lambda).

:meth:`LocalCloud.deploy` synthesizes the app once with the pinned CLI, destroys the stacks of the
assembly that already exist (moto 5.2.5's CloudFormation cannot update a stack in place: its
change-set path creates new resources in template order, ignoring ``DependsOn``), then runs
``cdk deploy --method=direct`` (``CreateStack``, which moto creates in dependency order). Then it
fills what moto's CloudFormation leaves out, from the template:

- function layers (moto 5.2.5 drops ``Layers``): set with ``UpdateFunctionConfiguration``;
- ``TenancyConfig`` (moto 5.2.5 drops it): recorded on moto's function object as
  ``tenancy_config``, which the Lambda runner reads;
- ``AWS::Lambda::EventInvokeConfig`` (skipped): created with ``PutFunctionEventInvokeConfig``; a
  function's ``DeadLetterConfig`` (dropped) is handed to the asynchronous invoker;
- ``AWS::Scheduler::Schedule`` and ``ScheduleGroup`` (skipped): created with moto's scheduler API;
- stack Outputs: resolved from the template (:mod:`stack_resolver`), since moto renders an output
  that references a skipped resource as ``None``;
- REST APIs, function URLs and WebSocket APIs: served by the front door from the template.

Every other type moto's CloudFormation skips is named once in the log with what the emulator does
instead (usually: nothing, e.g. CloudWatch alarms and queue policies, which IAM-free moto does not
need).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdk_serverless_patterns.local.stack_resolver import StackResolver

ACCOUNT = "123456789012"
#: Longest a CLI run may take (synth, bootstrap, deploy, destroy).
CLI_TIMEOUT = 900.0
#: What the emulator does for each type moto's CloudFormation (5.2.5) skips, as logged once per type.
BRIDGED_TYPES = {
    "AWS::Scheduler::Schedule": "created with moto's scheduler API and fired by the emulator",
    "AWS::Scheduler::ScheduleGroup": "created with moto's scheduler API",
    "AWS::Lambda::EventInvokeConfig": "created with PutFunctionEventInvokeConfig; the async invoker honours it",
    "AWS::ApiGateway::Stage": "served by the emulator's front door",
    "AWS::ApiGateway::Authorizer": "run by the emulator's front door",
    "AWS::ApiGateway::Account": "not needed locally (API Gateway's CloudWatch role)",
    "AWS::Lambda::Url": "served by the emulator's front door",
    "AWS::ApiGatewayV2::Api": "served by the emulator's front door",
    "AWS::ApiGatewayV2::Route": "served by the emulator's front door",
    "AWS::ApiGatewayV2::Integration": "served by the emulator's front door",
    "AWS::ApiGatewayV2::Stage": "served by the emulator's front door",
    "AWS::ApiGatewayV2::Authorizer": "run by the emulator's front door",
    "AWS::ApiGatewayV2::Deployment": "served by the emulator's front door",
}
#: Resource types moto creates without a model object it keeps (they exist, so nothing to log).
#: The LocalCloud running in this process (moto's backends are global: one at a time).
_RUNNING: list[LocalCloud] = []
_RUNNING_LOCK = threading.Lock()
_MODEL_LESS = {"AWS::Lambda::Permission", "AWS::CDK::Metadata", "AWS::IAM::Policy", "AWS::ApiGateway::Deployment"}


#: Environment variable that marks the CLI processes of one run (see :func:`_kill_marked_sessions`).
_CLI_MARKER = "CDK_SERVERLESS_PATTERNS_CLI_RUN"


def _kill_marked_sessions(marker: str) -> None:
    """Kills the session of every process whose environment carries ``_CLI_MARKER=marker`` (Linux /proc)."""
    needle = f"{_CLI_MARKER}={marker}".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                with contextlib.suppress(OSError):
                    os.killpg(os.getpgid(int(entry.name)), signal.SIGKILL)


def _bridge_step_functions(port: int) -> Callable[[], None]:
    """Two moto 5.2.5 gaps of Step Functions in a server; returns what undoes both.

    - With ``execute_state_machine`` on, moto's Step Functions API reads the interpreter's backends
      (``moto.stepfunctions.parser.models.stepfunctions_parser_backends``) while its CloudFormation creates
      state machines in ``moto.stepfunctions.models.stepfunctions_backends``: every deployed state machine was
      invisible (StartExecution: StateMachineDoesNotExist). CloudFormation now writes where the API reads.
    - The interpreter calls AWS for its tasks at ``localhost:$MOTO_PORT`` (default 5000), not at the server it
      runs in: every DynamoDB, S3 or Lambda task failed to connect. It now calls this cloud's port.
    """
    import moto.stepfunctions.models as stepfunctions_models
    from moto.stepfunctions.parser.asl.utils import boto_client
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backends, server_port = stepfunctions_models.stepfunctions_backends, getattr(boto_client, "moto_server_port")  # noqa: B009
    setattr(stepfunctions_models, "stepfunctions_backends", stepfunctions_parser_backends)  # noqa: B010
    setattr(boto_client, "moto_server_port", lambda: str(port))  # noqa: B010

    def undo() -> None:
        setattr(stepfunctions_models, "stepfunctions_backends", backends)  # noqa: B010
        setattr(boto_client, "moto_server_port", server_port)  # noqa: B010

    return undo


class LocalCloudError(Exception):
    """A problem with the local cloud, in one line (node missing, port taken, a stack failed, the CLI failed)."""


@dataclass
class DeployedStack:
    """One stack deployed into the local cloud."""

    name: str
    template: dict[str, Any]
    outputs: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)  # logical id -> physical id
    endpoints: list[Any] = field(default_factory=list)  # the front door's Endpoints
    resolver: StackResolver | None = None
    assembly: Path | None = None  # the cloud assembly it was deployed from (deploy it again without a synth)

    def resolve(self, value: Any) -> Any:
        """``value`` with its intrinsic functions resolved against this stack."""
        if self.resolver is None:
            raise LocalCloudError(f"stack {self.name} has no resolver")
        return self.resolver.resolve(value)

    def physical(self, logical_id: str) -> str:
        """The physical id (name, URL or ARN as CloudFormation's Ref gives it) of a resource."""
        value = self.resolve({"Ref": logical_id})
        if value is None:
            raise LocalCloudError(f"stack {self.name}: {logical_id} was not created locally")
        return str(value)


class _EndpointSession:
    """Builds a ``boto3.Session`` whose clients and resources default to the emulator's endpoint."""

    @staticmethod
    def create(endpoint: str, region: str) -> Any:
        import boto3

        class Session(boto3.Session):
            def client(self, *args: Any, **kwargs: Any) -> Any:
                kwargs.setdefault("endpoint_url", endpoint)
                return super().client(*args, **kwargs)

            def resource(self, *args: Any, **kwargs: Any) -> Any:
                kwargs.setdefault("endpoint_url", endpoint)
                return super().resource(*args, **kwargs)

        return Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)


class _RunnerInvoker:
    """The front door's Invoker over the Lambda runner (functions looked up in moto by ARN)."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud

    def invoke(self, function_arn: str, payload: bytes, *, tenant_id: str | None = None) -> Any:
        return self.cloud._runner_call("invoke", function_arn, payload, tenant_id)

    def invoke_stream(self, function_arn: str, payload: bytes, *, tenant_id: str | None = None) -> Any:
        return self.cloud._runner_call("invoke_stream", function_arn, payload, tenant_id)

    def invoke_async(self, function_arn: str, payload: bytes, *, tenant_id: str | None = None) -> str:
        """An ``InvocationType=Event`` invoke: Lambda's queue, with its retries and destinations."""
        return str(self.cloud._invoker.submit(function_arn, payload, tenant_id=tenant_id))


class LocalCloud:
    """moto's server, the Lambda runner, the front door and the event movers, as one context manager."""

    def __init__(
        self,
        *,
        port: int | None = None,
        workdir: Path | None = None,
        fast_schedules: float | None = None,
        region: str = "us-east-1",
        log: Callable[[str], None] = print,
    ) -> None:
        if fast_schedules is not None and fast_schedules <= 0:
            raise LocalCloudError(f"fast_schedules must be positive, not {fast_schedules}")
        self.port = port
        self.region = region
        self.fast_schedules = fast_schedules
        self.log = log
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="local-cloud-"))
        self.endpoint = ""
        self.front_door_endpoint = ""
        self.env: dict[str, str] = {}
        self._server: Any = None
        self._runner: Any = None
        self._front_door: Any = None
        self._invoker: Any = None
        self._scheduler: Any = None
        self._poller: Any = None
        self._undo: list[Callable[[], None]] = []
        self._stacks: dict[str, DeployedStack] = {}
        self._created_schedules: dict[str, list[tuple[str, str]]] = {}
        self._logged_types: set[str] = set()
        self._bootstrapped = False
        self._cli: subprocess.Popen[str] | None = None
        self._closed = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> LocalCloud:
        """Starts everything (see the module docstring); a taken port is a :class:`LocalCloudError`."""
        from cdk_serverless_patterns.local.server import HOST, free_port

        if self._server is not None:
            return self
        port = self.port or free_port()
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError as error:
                raise LocalCloudError(
                    f"port {port} is taken: {error.strerror or error} (choose another with --port)"
                ) from None
        with _RUNNING_LOCK:
            if _RUNNING:
                raise LocalCloudError(
                    "another LocalCloud runs in this process (moto keeps one AWS state per process): close it first"
                )
            _RUNNING.append(self)
        try:  # whatever happens from here on (Ctrl-C included), close() undoes it
            self._start(port)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, port: int) -> None:
        from cdk_serverless_patterns.local import patches
        from cdk_serverless_patterns.local.server import HOST, MotoServer

        # The emulator logs one line per skipped type (with what it does instead) and no request lines.
        warnings.filterwarnings("ignore", message=r"Tried to parse .* not supported by moto", category=UserWarning)
        logging.getLogger("moto").addFilter(_skip_unsupported_type_lines)
        self._undo.append(lambda: logging.getLogger("moto").removeFilter(_skip_unsupported_type_lines))
        if logging.getLogger("werkzeug").level == logging.NOTSET:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        from moto.core.config import default_user_config

        stepfunctions = default_user_config.setdefault("stepfunctions", {})
        had, before = "execute_state_machine" in stepfunctions, stepfunctions.get("execute_state_machine")
        stepfunctions["execute_state_machine"] = True

        def restore_config() -> None:  # as it was before this cloud
            if had:
                stepfunctions["execute_state_machine"] = bool(before)
            else:
                stepfunctions.pop("execute_state_machine", None)

        self._undo.append(restore_config)
        self._undo.append(_bridge_step_functions(port))
        patches.install()
        self._server = MotoServer(port).start()
        urllib.request.urlopen(
            urllib.request.Request(f"http://{HOST}:{port}/moto-api/reset", method="POST"), timeout=30
        ).close()
        self.port = port
        self.endpoint = f"http://localhost:{port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self._start_runner()
        self._start_events()
        self._start_front_door()

    def _start_runner(self) -> None:
        try:
            from cdk_serverless_patterns.local import lambda_runtime
        except ImportError as error:
            self.log(f"local cloud: no Lambda runner ({error}); functions do not run")
            return
        self._runner = lambda_runtime.LambdaRunner(aws_env=dict(self.env), workdir=self.workdir / "lambda")
        self._undo.append(lambda_runtime.route_moto_invoke(self._runner, self.workdir / "lambda"))

    def _start_events(self) -> None:
        from cdk_serverless_patterns.local import events

        self._invoker = events.AsyncInvoker(self.session(), log=self.log)
        events.set_current_invoker(self._invoker)
        self._undo.append(events.route_async_invoke(self._invoker))
        self._poller = events.SqsPoller(self.session(), account=ACCOUNT, region=self.region, log=self.log).start()
        self._scheduler = events.ScheduleRunner(
            self.session(), account=ACCOUNT, region=self.region, fast=self.fast_schedules, log=self.log
        ).start()
        if self.fast_schedules:
            self.log(f"local cloud: schedules run {self.fast_schedules:g}x faster (rate expressions only)")

    def _start_front_door(self) -> None:
        try:
            from cdk_serverless_patterns.local import front_door
        except ImportError as error:
            self.log(f"local cloud: no front door ({error}); APIs are not served")
            return
        self._front_door = front_door.FrontDoor(_RunnerInvoker(self), region=self.region, account=ACCOUNT).start()
        self.front_door_endpoint = str(self._front_door.endpoint)
        # A Lambda posting to its WebSocket clients through moto's apigatewaymanagementapi reaches the front door's.
        self._undo.append(self._front_door.patch_moto_management_api())

    def close(self) -> None:
        """Stops everything this cloud started (idempotent): CLI, scheduler, invoker, front door, runner, moto."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._kill_cli()
        from cdk_serverless_patterns.local import events

        if self._scheduler is not None:
            self._scheduler.close()
        # Stop taking work, then end the invokes in flight (the runner answers them with an error at
        # once), and only then wait for the pollers and workers that were waiting on those invokes.
        if self._poller is not None:
            self._poller.close(timeout=0)
        if self._invoker is not None:
            if events.current_invoker() is self._invoker:
                events.set_current_invoker(None)
            self._invoker.close(timeout=0)
        if self._runner is not None:
            with contextlib.suppress(Exception):
                # Lambda gives external extensions 2 s of SHUTDOWN (500 ms with internal ones only).
                self._runner.shutdown(timeout=2.0)
        if self._poller is not None:
            self._poller.close()
        if self._invoker is not None:
            self._invoker.close()
        if self._front_door is not None:
            with contextlib.suppress(Exception):
                self._front_door.stop()
        for undo in reversed(self._undo):
            with contextlib.suppress(Exception):
                undo()
        self._undo.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None
        with _RUNNING_LOCK:
            if self in _RUNNING:
                _RUNNING.remove(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ clients
    def session(self) -> Any:
        """A ``boto3.Session`` whose clients reach this cloud (region and dummy credentials set)."""
        if not self.endpoint or self._closed:
            raise LocalCloudError("the local cloud is not started")
        return _EndpointSession.create(self.endpoint, self.region)

    # ------------------------------------------------------------------ deploy
    def deploy(
        self, app: str | Path, *, context: Mapping[str, str] | None = None, stacks: Sequence[str] = ()
    ) -> list[DeployedStack]:
        """Deploys ``app`` (a Python app file, a cdk.out folder or an app command) with the pinned CLI."""
        if not self.endpoint:
            raise LocalCloudError("the local cloud is not started")
        cli = self._cli_command()
        app_arg = self._app_argument(app)
        context_args = [arg for key, value in (context or {}).items() for arg in ("--context", f"{key}={value}")]
        if Path(app_arg).is_dir():
            assembly = Path(app_arg)
        else:
            assembly = self.workdir / f"cdk.out-{int(time.time() * 1000)}"
            started = time.monotonic()
            self._run_cli(
                [*cli, "synth", "--app", app_arg, "--output", str(assembly), "--quiet", *context_args], "synth"
            )
            self.log(f"local cloud: synthesized in {time.monotonic() - started:.1f} s")
        templates = self._assembly_templates(assembly, stacks)
        if not self._bootstrapped:
            started = time.monotonic()
            self._run_cli([*cli, "bootstrap", f"aws://{ACCOUNT}/{self.region}"], "bootstrap", cwd=self.workdir)
            self._bootstrapped = True
            self.log(f"local cloud: bootstrapped in {time.monotonic() - started:.1f} s")
        cfn = self.session().client("cloudformation")
        existing = {s["StackName"] for s in cfn.describe_stacks().get("Stacks", [])}
        for name in templates:
            if name in existing:
                self.log(f"local cloud: {name} exists; destroying it first (moto cannot update a stack in place)")
                self.destroy([name])
        started = time.monotonic()
        selection = list(templates) if stacks else ["--all"]
        try:
            self._run_cli(
                [*cli, "deploy", "--app", str(assembly), "--require-approval", "never", "--method=direct", *selection],
                "deploy",
                cwd=self.workdir,
            )
        except LocalCloudError as error:
            raise self._stack_failure(list(templates)) or error from None
        self.log(f"local cloud: deployed {', '.join(templates)} in {time.monotonic() - started:.1f} s")
        deployed = [self._after_deploy(name, template) for name, template in templates.items()]
        for stack in deployed:
            stack.assembly = assembly
        return deployed

    def _cli_command(self) -> list[str]:
        from cdk_serverless_patterns.toolkit.apps import ToolkitError, cdk_cli

        try:
            return list(cdk_cli())
        except ToolkitError as error:
            raise LocalCloudError(str(error)) from None

    @staticmethod
    def _app_argument(app: str | Path) -> str:
        if isinstance(app, str) and not Path(app).exists() and any(ch.isspace() for ch in app.strip()):
            return app  # a command (cdk.json's "app"), run as is from the current folder
        path = Path(app)
        if path.is_dir():
            if not (path / "manifest.json").exists():
                raise LocalCloudError(f"{path} is not a cloud assembly (no manifest.json)")
            return str(path.resolve())
        if path.suffix == ".py":
            if not path.is_file():
                raise LocalCloudError(f"app {path} does not exist")
            return f"{sys.executable} {path.resolve()}"
        return str(app)

    def _assembly_templates(self, assembly: Path, stacks: Sequence[str]) -> dict[str, dict[str, Any]]:
        manifest = json.loads((assembly / "manifest.json").read_text())
        templates: dict[str, dict[str, Any]] = {}
        for artifact_id, artifact in manifest.get("artifacts", {}).items():
            if artifact.get("type") != "aws:cloudformation:stack":
                continue
            name = artifact.get("properties", {}).get("stackName") or artifact_id
            if stacks and name not in stacks and artifact_id not in stacks:
                continue
            template_file = artifact["properties"]["templateFile"]
            templates[name] = json.loads((assembly / template_file).read_text())
        missing = [name for name in stacks if name not in templates]
        if missing:
            raise LocalCloudError(
                f"no stack named {', '.join(missing)} in the app (it has {', '.join(templates) or 'none'})"
            )
        return templates

    def _cli_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env.update(
            {
                "CDK_DEFAULT_ACCOUNT": ACCOUNT,
                "CDK_DEFAULT_REGION": self.region,
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "18,20",
                "JSII_DEPRECATED": "quiet",
                "CDK_DISABLE_CLI_TELEMETRY": "true",
                "NODE_NO_WARNINGS": "1",
                "CI": "true",
                # The CLI's own cache (account of each access key, notices) stays with this cloud: a key cached
                # here as moto's account must never be taken for a real account by a later real deploy.
                "CDK_HOME": str(self.workdir / "cdk-home"),
            }
        )
        return env

    def _run_cli(self, command: list[str], what: str, *, cwd: Path | None = None) -> str:
        """Runs one CLI command in its own process group; Ctrl-C kills the group and closes the cloud."""
        marker = f"{os.getpid()}-{time.monotonic_ns()}"
        try:
            process = subprocess.Popen(
                [*command, "--no-notices"],
                cwd=str(cwd) if cwd else None,
                env={**self._cli_env(), _CLI_MARKER: marker},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except FileNotFoundError as error:
            raise LocalCloudError(f"cannot run the CDK CLI ({error.filename}): is Node.js installed?") from None
        except BaseException:
            # Ctrl-C inside Popen (the child forked, its object never returned): find the CLI by its marker.
            _kill_marked_sessions(marker)
            raise
        self._cli = process
        try:
            stdout, stderr = process.communicate(timeout=CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill_cli()
            raise LocalCloudError(f"cdk {what} did not finish within {CLI_TIMEOUT:.0f} s") from None
        except BaseException:  # KeyboardInterrupt: no CLI, no cloud left behind
            self._kill_cli()
            self.close()
            raise
        finally:
            self._cli = None
        if process.returncode != 0:
            lines = [line.strip() for line in (stderr + stdout).splitlines() if line.strip()]
            errors = [line for line in lines if "rror" in line or line.startswith("❌")]
            detail = (errors or lines or ["no output"])[-1]
            raise LocalCloudError(f"cdk {what} failed (exit {process.returncode}): {detail}")
        return stdout

    def _kill_cli(self) -> None:
        process = self._cli
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def _stack_failure(self, names: Sequence[str]) -> LocalCloudError | None:
        """One line naming the failed resource of the first failed stack, from its events."""
        cfn = self.session().client("cloudformation")
        for name in names:
            try:
                events = cfn.describe_stack_events(StackName=name)["StackEvents"]
            except Exception:
                continue
            for event in reversed(events):
                if not str(event.get("ResourceStatus", "")).endswith("FAILED"):
                    continue
                logical = event.get("LogicalResourceId", "?")
                if logical == name:
                    continue
                reason = str(event.get("ResourceStatusReason", "no reason given")).replace("\n", " ")
                properties = _property_named(reason)
                where = f" property {properties}" if properties else ""
                return LocalCloudError(
                    f"stack {name} failed: resource {logical} ({event.get('ResourceType', '?')}){where}: {reason}"
                )
        return None

    # ------------------------------------------------------------------ after CloudFormation
    def _moto_stack(self, name: str) -> Any:
        from moto.cloudformation.models import cloudformation_backends

        backend = cloudformation_backends[ACCOUNT][self.region]
        for stack in backend.stacks.values():
            if stack.name == name and not str(stack.status).startswith("DELETE"):
                return stack
        return None

    def _after_deploy(self, name: str, template: dict[str, Any]) -> DeployedStack:
        session = self.session()
        cfn = session.client("cloudformation")
        moto_stack = self._moto_stack(name)
        if moto_stack is None:
            raise LocalCloudError(f"stack {name} was not created (the CLI reported success)")
        parsed = getattr(moto_stack.resource_map, "_parsed_resources", {})
        resources = template.get("Resources", {})
        models = {logical: parsed[logical] for logical in resources if parsed.get(logical) is not None}
        physical = {
            summary["LogicalResourceId"]: summary.get("PhysicalResourceId", "")
            for summary in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
            if summary.get("LogicalResourceId")
        }
        exports = {
            export["Name"]: export["Value"] for export in cfn.list_exports().get("Exports", []) if "Name" in export
        }
        bridged: dict[tuple[str, str | None], Any] = {}
        front_door = self._front_door

        def bridge(logical_id: str, attribute: str | None) -> Any:
            if (logical_id, attribute) in bridged:
                return bridged[(logical_id, attribute)]
            kind = resources.get(logical_id, {}).get("Type", "")
            if attribute is None and kind == "AWS::ApiGateway::Stage":
                return resources[logical_id].get("Properties", {}).get("StageName")
            if attribute is None and kind == "AWS::ApiGatewayV2::Api" and front_door is not None:
                with contextlib.suppress(Exception):
                    return front_door.attribute(name, logical_id, "ApiId")
            if attribute is not None and front_door is not None and hasattr(front_door, "attribute"):
                with contextlib.suppress(Exception):
                    return front_door.attribute(name, logical_id, attribute)
            return None

        parameters = {key: value for key, value in getattr(moto_stack, "parameters", {}).items()}
        resolver = StackResolver(
            name,
            template,
            account=ACCOUNT,
            region=self.region,
            stack_id=moto_stack.stack_id,
            models=models,
            physical=physical,
            parameters=parameters,
            exports=exports,
            bridged=bridge,
        )
        self._log_skipped(resources, models)
        self._create_schedules(name, resources, resolver, bridged)
        self._fill_functions(resources, resolver, models)
        self._event_invoke_configs(resources, resolver)
        deployed = DeployedStack(name=name, template=template, resolver=resolver)
        deployed.resources = {logical: str(resolver.ref(logical) or "") for logical in resources}
        deployed.outputs = resolver.outputs()
        if self._front_door is not None:
            try:
                deployed.endpoints = list(self._front_door.add_stack(name, template, resolver.resolve))
            except Exception as error:
                self.log(f"local cloud: the front door could not serve {name}: {error}")
            for endpoint in deployed.endpoints:
                self.log(f"local cloud: {endpoint.kind} {endpoint.logical_id}: {endpoint.url}")
            if deployed.endpoints:  # outputs that name what the front door serves (function URLs, WebSocket APIs)
                deployed.outputs = resolver.outputs()
        self._stacks[name] = deployed
        return deployed

    def _log_skipped(self, resources: Mapping[str, Any], models: Mapping[str, Any]) -> None:
        for logical, resource in resources.items():
            kind = resource.get("Type", "")
            if logical in models or kind in _MODEL_LESS or kind in self._logged_types:
                continue
            self._logged_types.add(kind)
            instead = BRIDGED_TYPES.get(kind, "ignored by the emulator (nothing runs it locally)")
            self.log(f"local cloud: {kind}: moto's CloudFormation does not create it; {instead}")

    def _create_schedules(
        self,
        stack: str,
        resources: Mapping[str, Any],
        resolver: StackResolver,
        bridged: dict[tuple[str, str | None], Any],
    ) -> None:
        scheduler = self.session().client("scheduler")
        for logical, resource in resources.items():
            if resource.get("Type") != "AWS::Scheduler::ScheduleGroup":
                continue
            group_name = resource.get("Properties", {}).get("Name") or f"{stack}-{logical}"[:64]
            arn = scheduler.create_schedule_group(Name=group_name)["ScheduleGroupArn"]
            bridged[(logical, None)] = group_name
            bridged[(logical, "Arn")] = arn
        created: list[tuple[str, str]] = []
        for logical, resource in resources.items():
            if resource.get("Type") != "AWS::Scheduler::Schedule":
                continue
            props = resolver.resolve(resource.get("Properties", {}))
            schedule_name = props.get("Name") or f"{stack}-{logical}"[:64]
            request: dict[str, Any] = {
                "Name": schedule_name,
                "ScheduleExpression": props["ScheduleExpression"],
                "FlexibleTimeWindow": props.get("FlexibleTimeWindow", {"Mode": "OFF"}),
                "Target": props["Target"],
                "State": props.get("State", "ENABLED"),
            }
            for key in ("GroupName", "Description", "ScheduleExpressionTimezone", "StartDate", "EndDate", "KmsKeyArn"):
                if props.get(key):
                    request[key] = props[key]
            arn = scheduler.create_schedule(**request)["ScheduleArn"]
            if props.get("FlexibleTimeWindow", {}).get("Mode", "OFF") != "OFF":
                self.log(f"local cloud: schedule {schedule_name}: FlexibleTimeWindow is ignored (fires at its time)")
            bridged[(logical, None)] = schedule_name
            bridged[(logical, "Arn")] = arn
            created.append((request.get("GroupName", "default"), schedule_name))
        self._created_schedules[stack] = created

    def _fill_functions(self, resources: Mapping[str, Any], resolver: StackResolver, models: Mapping[str, Any]) -> None:
        lambda_client = self.session().client("lambda")
        for logical, resource in resources.items():
            if resource.get("Type") != "AWS::Lambda::Function" or logical not in models:
                continue
            props = resource.get("Properties", {})
            function = models[logical]
            arn = str(getattr(function, "function_arn", ""))
            layers = [layer for layer in resolver.resolve(props.get("Layers", [])) if layer]
            if layers and not getattr(function, "layers", None):
                lambda_client.update_function_configuration(FunctionName=arn, Layers=layers)
            tenancy = props.get("TenancyConfig")
            if tenancy:
                function.tenancy_config = resolver.resolve(tenancy)
            dead_letter = resolver.resolve(props.get("DeadLetterConfig", {})).get("TargetArn")
            if dead_letter and self._invoker is not None:
                self._invoker.dead_letters[arn] = dead_letter

    def _event_invoke_configs(self, resources: Mapping[str, Any], resolver: StackResolver) -> None:
        lambda_client = self.session().client("lambda")
        for resource in resources.values():
            if resource.get("Type") != "AWS::Lambda::EventInvokeConfig":
                continue
            props = resolver.resolve(resource.get("Properties", {}))
            request: dict[str, Any] = {"FunctionName": props["FunctionName"]}
            for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
                if key in props:
                    request[key] = props[key]
            lambda_client.put_function_event_invoke_config(**request)

    # ------------------------------------------------------------------ the rest of the interface
    def destroy(self, stack_names: Sequence[str] = ()) -> None:
        """Deletes the named stacks (all deployed ones by default), with what the emulator created for them."""
        session = self.session()
        cfn = session.client("cloudformation")
        names = list(stack_names) or [
            s["StackName"] for s in cfn.describe_stacks().get("Stacks", []) if s["StackName"] != "CDKToolkit"
        ]
        scheduler = session.client("scheduler")
        for name in names:
            functions = self._function_names(name)
            if self._front_door is not None:
                with contextlib.suppress(Exception):
                    self._front_door.remove_stack(name)
            for group, schedule in self._created_schedules.pop(name, []):
                with contextlib.suppress(Exception):
                    scheduler.delete_schedule(Name=schedule, GroupName=group)
            cfn.delete_stack(StackName=name)
            self._stacks.pop(name, None)
            if self._runner is not None:  # a deleted function's warm environments go with it
                for function in functions:
                    self._runner.discard(function)

    def _function_names(self, stack: str) -> list[str]:
        """The names of the functions of ``stack`` (as moto holds them)."""
        from moto.cloudformation.models import cloudformation_backends

        names = []
        for moto_stack in cloudformation_backends[ACCOUNT][self.region].stacks.values():
            if moto_stack.name != stack:
                continue
            parsed = getattr(moto_stack.resource_map, "_parsed_resources", {})
            for model in parsed.values():
                name = getattr(model, "function_name", None)
                if name and hasattr(model, "function_arn"):
                    names.append(str(name))
        return names

    def stack(self, name: str) -> DeployedStack:
        """A stack deployed by :meth:`deploy`."""
        if name not in self._stacks:
            raise LocalCloudError(f"no stack {name} deployed (deployed: {', '.join(self._stacks) or 'none'})")
        return self._stacks[name]

    def invoke(self, function_name_or_arn: str, payload: Any, *, tenant_id: str | None = None) -> Any:
        """Invokes a deployed function through the Lambda runner and returns its ``InvokeResult``."""
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self._runner_call("invoke", function_name_or_arn, raw, tenant_id)

    def _runner_call(self, method: str, function: str, payload: bytes, tenant_id: str | None) -> Any:
        if self._runner is None:
            raise LocalCloudError("no Lambda runner in this emulator")
        from moto.awslambda.utils import get_backend

        from cdk_serverless_patterns.local import lambda_runtime

        name = function.split(":function:")[-1].split(":")[0] if ":function:" in function else function
        try:
            spec = lambda_runtime.spec_from_moto(
                get_backend(ACCOUNT, self.region).get_function(name), self.workdir / "lambda"
            )
        except lambda_runtime.InvalidZipFile as error:
            if method != "invoke":
                raise
            # The Invoke API's answer (502 InvalidZipFileException), as an error result like the others.
            body = json.dumps({"errorType": "InvalidZipFileException", "errorMessage": str(error)}).encode()
            return lambda_runtime.InvokeResult(body, "Unhandled", "", "", 0.0, None, status_code=502)
        return getattr(self._runner, method)(spec, payload, tenant_id=tenant_id)

    def fire_schedules(self) -> int:
        """Fires every ENABLED schedule once, now, as if it were due (tests); returns how many fired."""
        if self._scheduler is None:
            return 0
        return int(self._scheduler.run_due(force=True))

    def async_idle(self) -> bool:
        """Whether the asynchronous invoker has nothing queued, waiting or running."""
        return self._invoker is None or bool(self._invoker.idle())


def _skip_unsupported_type_lines(record: logging.LogRecord) -> bool:
    """Drops moto's "No Moto CloudFormation support for X" (one per lookup): LocalCloud logs each type once."""
    return not str(record.msg).startswith("No Moto CloudFormation support")


def _property_named(reason: str) -> str:
    """The property a CloudFormation failure reason names, if it names one."""
    import re

    match = re.search(r"\b(?:property|Property|parameter|Parameter)\s+'?\"?([A-Za-z][A-Za-z0-9.]*)", reason)
    return match.group(1) if match else ""
