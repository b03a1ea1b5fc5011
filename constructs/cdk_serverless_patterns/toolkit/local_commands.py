"""``serverless-patterns local up|down|redeploy|status``: your CDK app in the embedded emulator.

``local up`` starts the emulator (:class:`~cdk_serverless_patterns.local.cloud.LocalCloud`: moto's
server on ``localhost``, the Lambda runner, the HTTP front door and the schedulers), deploys every
stack of the app with the real pinned CDK CLI, prints the endpoint, each stack's outputs, the front
door's URLs and the environment that points the AWS CLI and boto3 at it, then runs in the
foreground until Ctrl-C or SIGTERM, when it stops every process it started.

While it runs, a state file ``.serverless-patterns/local.json`` in the project (the folder of
``cdk.json``, else the current folder) holds its pid, port, endpoint and deployment count:

- ``local down`` signals that pid (SIGTERM), waits for it to finish its clean shutdown and removes
  the file; with no emulator running it says so in one line.
- ``local redeploy`` asks the running emulator (SIGHUP) to deploy the app again. moto cannot update
  a CloudFormation stack: every stack is destroyed and created again, so its data (table items,
  queue messages, executions) is gone afterwards. The command waits for the new deployment and
  exits non-zero if it failed (the emulator keeps running either way).
- ``local status`` prints the state file of the running emulator.

A pid in the state file is only signalled if it is still the process that wrote the file (its
start time in ``/proc`` matches), never a process that reused the pid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdk_serverless_patterns.toolkit.apps import ToolkitError, project_root

if TYPE_CHECKING:
    from cdk_serverless_patterns.local.cloud import LocalCloud

PROG = "serverless-patterns local"
STATE_DIR = ".serverless-patterns"
STATE_FILE = "local.json"
#: How long ``down`` waits for the emulator's clean shutdown, and ``redeploy`` for a deployment.
DOWN_TIMEOUT_S = 60.0
REDEPLOY_TIMEOUT_S = 600.0
POLL_S = 0.2


def add_parser(commands: Any) -> None:
    """Registers ``local`` (with ``up``, ``down``, ``redeploy``, ``status``) on the CLI's subcommands."""
    local = commands.add_parser(
        "local",
        help="run your CDK app in the embedded emulator on localhost (no Docker, no AWS account)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = local.add_subparsers(dest="local_action", metavar="ACTION", parser_class=type(local))
    actions.required = True
    up = actions.add_parser("up", help="deploy the app into a new emulator and keep it running until Ctrl-C")
    up.add_argument("--app", help="the CDK app: a Python file, a cdk.out folder or a command (default: the project's)")
    up.add_argument("--port", type=_port, help="port of the emulator's endpoint on localhost (default: a free one)")
    up.add_argument(
        "--fast-schedules",
        type=_positive_float,
        metavar="F",
        help="fire schedules F times as often as their rate (60: rate(1 minute) fires every second)",
    )
    up.add_argument(
        "--context",
        "-c",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CDK context for the deployment (repeatable)",
    )
    actions.add_parser("down", help="stop the emulator started by `local up` in this project")
    actions.add_parser(
        "redeploy",
        help="deploy the app again into the running emulator (moto cannot update: stacks are destroyed and recreated)",
    )
    actions.add_parser("status", help="show the emulator running in this project, if any")


def run(args: argparse.Namespace) -> int:
    """Executes ``serverless-patterns local ...``; raises ToolkitError with a one-line message."""
    state_file = state_path()
    if args.local_action == "up":
        context = parse_context(args.context)
        return up(
            app=args.app,
            port=args.port,
            fast_schedules=args.fast_schedules,
            context=context,
            state_file=state_file,
        )
    if args.local_action == "down":
        return down(state_file)
    if args.local_action == "redeploy":
        return redeploy(state_file)
    return status(state_file)


# -- argument types ---------------------------------------------------------------------------------
def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def parse_context(pairs: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``; a pair without ``=`` is a ToolkitError."""
    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ToolkitError(f"--context {pair!r}: give KEY=VALUE")
        context[key.strip()] = value
    return context


# -- the state file ---------------------------------------------------------------------------------
def state_path(root: Path | None = None) -> Path:
    """``<project>/.serverless-patterns/local.json``."""
    return (root or project_root()) / STATE_DIR / STATE_FILE


def _process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running any more.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[:1] != ["Z"]


def read_state(state_file: Path) -> dict[str, Any] | None:
    """The state of the emulator running for this project, or None (no file, unreadable, or its process is gone)."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("pid"), int):
        return None
    pid = state["pid"]
    if not _alive(pid):
        return None
    started = state.get("processStart")
    if started is not None and _process_start_time(pid) not in (None, started):
        return None  # the pid now belongs to another process
    return state


class StateFile:
    """The state file of one running ``local up`` (written atomically, removed on close)."""

    def __init__(self, path: Path, **fields: Any) -> None:
        self.path = path
        self._fields: dict[str, Any] = {
            "pid": os.getpid(),
            "processStart": _process_start_time(os.getpid()),
            "deployments": 0,
            "status": "starting",
            **fields,
        }
        self._lock = threading.Lock()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._fields.update(fields)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(self._fields, indent=2, sort_keys=True) + "\n")
            temporary.replace(self.path)

    def remove(self) -> None:
        with self._lock:
            try:
                current = json.loads(self.path.read_text())
            except (OSError, ValueError):
                return
            if isinstance(current, dict) and current.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)


# -- printing ---------------------------------------------------------------------------------------
def usage_lines(cloud: LocalCloud) -> list[str]:
    """How to use the emulator from a shell, the AWS CLI and boto3."""
    env = dict(cloud.env)
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(env.items()))
    return [
        "Use it from another shell (AWS CLI v2, boto3 and the CDK all read these):",
        f"  export {exports}",
        "  aws cloudformation describe-stacks --query 'Stacks[].StackName'",
        "  aws lambda list-functions --query 'Functions[].FunctionName'",
        "  python -c \"import boto3; print(boto3.client('stepfunctions').list_state_machines())\"",
        f"or without exporting: aws --endpoint-url {env.get('AWS_ENDPOINT_URL', cloud.endpoint)} ...",
    ]


def describe_stacks(cloud: LocalCloud, stacks: Sequence[Any], log: Callable[[str], None] = print) -> None:
    """Prints each deployed stack's outputs and front-door URLs."""
    log(f"emulator endpoint: {cloud.endpoint}  (HTTP front door: {cloud.front_door_endpoint})")
    for stack in stacks:
        log(f"stack {stack.name}:")
        outputs: Mapping[str, str] = stack.outputs
        for key in sorted(outputs):
            log(f"  output {key} = {outputs[key]}")
        for endpoint in getattr(stack, "endpoints", ()) or ():
            log(f"  {endpoint.kind} {endpoint.logical_id}: {endpoint.url}")
        if not outputs and not getattr(stack, "endpoints", ()):
            log("  (no outputs)")


# -- up ---------------------------------------------------------------------------------------------
class _Signals:
    """SIGINT/SIGTERM -> stop, SIGHUP -> redeploy, while ``up`` serves; restores the handlers afterwards."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.redeploy = threading.Event()
        self._previous: dict[int, Any] = {}

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stop.set()

    def _on_redeploy(self, signum: int, frame: Any) -> None:
        self.redeploy.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        wanted: list[tuple[int, Callable[[int, Any], None]]] = [
            (signal.SIGINT, self._on_stop),
            (signal.SIGTERM, self._on_stop),
        ]
        if hasattr(signal, "SIGHUP"):
            wanted.append((signal.SIGHUP, self._on_redeploy))
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach the main thread only: the caller stops us through the events
            return
        for signum, handler in wanted:
            self._previous[signum] = signal.signal(signum, handler)
        try:
            yield self
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            self._previous.clear()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """During start-up and deployment, SIGTERM acts like Ctrl-C (KeyboardInterrupt), so LocalCloud's
    own clean-up (killing the CDK CLI's process group, closing everything) runs for both."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def quiet_emulator_logs() -> None:
    """Keeps moto's and werkzeug's own log lines (each request, each skipped resource type, each failed
    state in moto's interpreter) off the terminal: LocalCloud logs what matters in one line each, and
    a state machine's errors are in its execution history. Warnings moto raises are silenced likewise."""
    import logging
    import warnings

    for name in ("moto", "werkzeug"):
        logger = logging.getLogger(name)
        if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.propagate = False
    warnings.filterwarnings("ignore", module=r"moto(\..*)?$")


def start_cloud(*, port: int | None, fast_schedules: float | None, log: Callable[[str], None] = print) -> LocalCloud:
    """A started LocalCloud; its errors (port taken, Node missing...) become one-line ToolkitErrors."""
    from cdk_serverless_patterns.local.cloud import LocalCloud, LocalCloudError

    quiet_emulator_logs()
    cloud = LocalCloud(port=port, fast_schedules=fast_schedules, log=log)
    try:
        return cloud.start()
    except LocalCloudError as error:
        cloud.close()
        raise ToolkitError(str(error)) from error
    except BaseException:
        cloud.close()
        raise


def deploy_app(
    cloud: LocalCloud, app: str | None, context: Mapping[str, str], log: Callable[[str], None] = print
) -> list[Any]:
    """Deploys ``app`` (the project's app when None) and returns the deployed stacks."""
    from cdk_serverless_patterns.local.cloud import LocalCloudError

    target = resolve_app(app)
    log(f"deploying {target} with the CDK CLI ...")
    started = time.monotonic()
    try:
        stacks = list(cloud.deploy(target, context=context))
    except LocalCloudError as error:
        raise ToolkitError(str(error)) from error
    names = ", ".join(stack.name for stack in stacks) or "no stacks"
    log(f"deployed {names} in {time.monotonic() - started:.1f} s")
    return stacks


def resolve_app(app: str | None) -> str:
    """What LocalCloud.deploy gets: the app as ``toolkit.apps.resolve_app`` finds it (``--app``, else cdk.json's
    ``"app"``, else ``./app.py``, else the sample app inside this repository): a command or a cdk.out folder."""
    from cdk_serverless_patterns.toolkit.apps import resolve_app as find_app

    spec = find_app(app)
    if spec.file is not None and spec.command == shlex.join([sys.executable, str(spec.file)]):
        return str(spec.file)  # LocalCloud runs a .py file with this interpreter itself
    return spec.command


def up(
    *,
    app: str | None,
    port: int | None,
    fast_schedules: float | None,
    context: Mapping[str, str],
    state_file: Path,
    log: Callable[[str], None] = print,
) -> int:
    """``local up``: start, deploy, print, serve until stopped; 0 after a clean stop."""
    running = read_state(state_file)
    if running is not None:
        raise ToolkitError(
            f"an emulator is already running for this project (pid {running['pid']}, {running.get('endpoint')}): "
            f"run `serverless-patterns local down` first"
        )
    with _sigterm_interrupts():
        try:
            cloud = start_cloud(port=port, fast_schedules=fast_schedules, log=log)
        except KeyboardInterrupt:
            log("interrupted: nothing left running")
            return 130
    state = StateFile(
        state_file,
        port=int(cloud.endpoint.rsplit(":", 1)[1]),
        endpoint=cloud.endpoint,
        frontDoor=cloud.front_door_endpoint,
        app=app,
        context=dict(context),
    )
    try:
        with _sigterm_interrupts():  # until serve() installs its own handlers
            state.update()
            stacks = deploy_app(cloud, app, context, log)
            state.update(deployments=1, stacks=[stack.name for stack in stacks])
            describe_stacks(cloud, stacks, log)
            for line in usage_lines(cloud):
                log(line)
            return serve(cloud, state, app=app, context=context, log=log)
    except KeyboardInterrupt:
        log("interrupted: stopping the emulator")
        return 130
    finally:
        cloud.close()
        state.remove()


def serve(
    cloud: LocalCloud,
    state: StateFile,
    *,
    app: str | None,
    context: Mapping[str, str],
    log: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> int:
    """Runs until SIGINT/SIGTERM (or ``stop``); SIGHUP redeploys (destroy, then create: moto cannot update)."""
    signals = _Signals()
    if stop is not None:
        signals.stop = stop
    with signals.installed():
        state.update(status="ready")  # only now may `local redeploy` send SIGHUP
        log(f"running (pid {os.getpid()}); Ctrl-C or `serverless-patterns local down` stops it")
        while not signals.stop.is_set():
            if signals.redeploy.wait(0.25):
                signals.redeploy.clear()
                _redeploy(cloud, state, app=app, context=context, log=log)
    log("stopping the emulator ...")
    return 0


def _redeploy(
    cloud: LocalCloud, state: StateFile, *, app: str | None, context: Mapping[str, str], log: Callable[[str], None]
) -> None:
    log("redeploy: moto cannot update a stack, so every stack is destroyed and created again (its data is lost)")
    state.update(status="redeploying")
    try:
        cloud.destroy()
        stacks = deploy_app(cloud, app, context, log)
    except ToolkitError as error:
        log(f"redeploy failed: {error}")
        state.update(status="failed", error=str(error), deployments=_count(state) + 1)
        return
    state.update(status="ready", error=None, deployments=_count(state) + 1, stacks=[s.name for s in stacks])
    describe_stacks(cloud, stacks, log)


def _count(state: StateFile) -> int:
    return int(state._fields.get("deployments", 0))


# -- down, redeploy, status -------------------------------------------------------------------------
def down(state_file: Path, *, timeout: float = DOWN_TIMEOUT_S) -> int:
    """Stops the running emulator (SIGTERM, then waits for it to exit)."""
    running = read_state(state_file)
    if running is None:
        stale = state_file.exists()
        state_file.unlink(missing_ok=True)
        suffix = f" (removed the stale {state_file})" if stale else ""
        print(f"no local emulator is running for this project{suffix}")
        return 0
    pid = running["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            state_file.unlink(missing_ok=True)
            print(f"stopped the local emulator (pid {pid}, {running.get('endpoint')})")
            return 0
        time.sleep(POLL_S)
    raise ToolkitError(f"the local emulator (pid {pid}) did not stop within {timeout:.0f} s of SIGTERM")


def redeploy(state_file: Path, *, timeout: float = REDEPLOY_TIMEOUT_S) -> int:
    """Asks the running emulator to destroy and recreate its stacks, and waits for the outcome."""
    running = read_state(state_file)
    if running is None:
        raise ToolkitError(
            "no local emulator is running for this project: start one with `serverless-patterns local up`"
        )
    if not hasattr(signal, "SIGHUP"):
        raise ToolkitError("redeploy needs SIGHUP, which this platform lacks: run `local down` and `local up`")
    if running.get("status") not in ("ready", "failed"):
        raise ToolkitError(f"the local emulator is {running.get('status')}: wait until it is ready, then redeploy")
    before = int(running.get("deployments", 0))
    os.kill(running["pid"], signal.SIGHUP)
    print("redeploying: moto cannot update a stack, so every stack is destroyed and created again")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(state_file)
        if state is None:
            raise ToolkitError("the local emulator stopped during the redeploy")
        if int(state.get("deployments", 0)) > before and state.get("status") in ("ready", "failed"):
            if state["status"] == "failed":
                raise ToolkitError(f"redeploy failed: {state.get('error')}")
            print(f"redeployed {', '.join(state.get('stacks') or []) or 'no stacks'} into {state.get('endpoint')}")
            return 0
        time.sleep(POLL_S)
    raise ToolkitError(f"the redeploy did not finish within {timeout:.0f} s")


def status(state_file: Path) -> int:
    """Prints the running emulator's state; 1 when none runs."""
    running = read_state(state_file)
    if running is None:
        print("no local emulator is running for this project")
        return 1
    print(json.dumps(running, indent=2, sort_keys=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cdk_serverless_patterns.toolkit.local_commands up|down|redeploy|status``."""
    from cdk_serverless_patterns.toolkit.apps import quiet_environment

    quiet_environment()
    parser = argparse.ArgumentParser(prog="serverless-patterns")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["local", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except ToolkitError as error:
        print(f"{PROG} {args.local_action}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
