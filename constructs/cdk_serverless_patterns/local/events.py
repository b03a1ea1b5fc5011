"""Event delivery moto lacks: Lambda's asynchronous invocation, EventBridge rules to Lambda, Scheduler.

Measured on moto 5.2.5, and what the emulator does instead:

- **Asynchronous Lambda invocations** (``InvocationType=Event``, and every service that invokes a
  function asynchronously): moto runs them inline, once, and drops the result. :class:`AsyncInvoker`
  queues them as Lambda does: the function runs (through whatever ``LambdaFunction.invoke`` is, the
  Lambda runner under :class:`~cdk_serverless_patterns.local.cloud.LocalCloud`); a function error
  is retried ``MaximumRetryAttempts`` times (default 2) while the event is younger than
  ``MaximumEventAgeInSeconds`` (default 6 hours); then the invocation record goes to the
  ``OnFailure`` destination (SQS, SNS, Lambda, EventBridge), else the event goes to the function's
  dead-letter queue with the attributes ``RequestID``, ``ErrorCode`` and ``ErrorMessage``; a success
  goes to ``OnSuccess``. Lambda waits about 1 and 2 minutes between attempts; the emulator waits
  ``retry_delays`` (1 and 2 seconds by default): the order of events is Lambda's, the clock is not.
  A throttled (429) or failed-by-the-service (5xx) invoke is retried, as Lambda does, until the
  event is older than ``MaximumEventAgeInSeconds``, not counted as an attempt (backoff from 1 s,
  capped at :data:`SERVICE_RETRY_CAP`, 5 s, where Lambda caps at 5 minutes). Every attempt runs
  with the event's request id (``context.aws_request_id``, the DLQ's ``RequestID``, the
  destinations' ``requestId``); a tenant id travels with the event. ``Event`` invokes are refused at
  once, as Lambda refuses them, for a tenant id that does not fit the function's tenancy and for a
  payload over 1 MB.
- **EventBridge rules with a Lambda target**: moto raises ``NotImplementedError`` for them
  (``moto.events.models.Rule.send_to_targets``). ``patches/eventbridge_lambda_targets.py`` hands
  each matching event to :func:`deliver_to_lambda`: the target's ``Input``, ``InputPath`` or input
  transformer is applied (:func:`target_input`: EventBridge's rules, not moto's parser: values
  inside a template string inserted as text, outside as JSON; a missing path is ``null`` outside
  quotes and empty inside them; the predefined ``aws.events.*`` variables; a template that is not
  JSON is sent as text) and the function is invoked asynchronously. A
  function that does not exist is not retried (as EventBridge does for a missing resource): the
  event goes to the target's dead-letter queue with ``ERROR_CODE``, ``ERROR_MESSAGE``,
  ``RULE_ARN``, ``TARGET_ARN`` attributes.
- **EventBridge Scheduler**: moto's CloudFormation skips ``AWS::Scheduler::Schedule``, and moto's
  scheduler API stores schedules without ever firing them. :class:`ScheduleRunner` (a thread) fires
  every ENABLED schedule of moto's scheduler backend in this process: ``rate(...)``, ``cron(...)``
  (six fields, ``?``, ranges, lists, steps, ``L``, ``W`` and ``#``; a local time that daylight saving
  skips does not fire, a repeated one fires once, as the Scheduler documents)
  and ``at(...)``, in ``ScheduleExpressionTimezone``, between ``StartDate`` and ``EndDate``. Targets:
  Lambda (asynchronous invoke with ``Input``), Step Functions ``StartExecution``, SQS ``SendMessage``
  and the universal target ``arn:aws:scheduler:::aws-sdk:sqs:sendMessage``; others are logged once
  and skipped. The context attributes ``<aws.scheduler.*>`` are substituted. A failed delivery is
  retried per the target's ``RetryPolicy`` and then sent to its ``DeadLetterConfig`` queue with the
  ``X-Amz-Scheduler-*`` attributes. ``FlexibleTimeWindow`` is ignored (the schedule fires at its
  time). ``fast_schedules=F`` divides every ``rate`` by ``F`` (cron and at keep wall-clock time).

Everything talks to moto through its API (boto3 clients of the emulator's ``session``), except the
scheduler runner, which reads moto's scheduler backend in this process (moto 5.2.5's
``ListSchedules`` leaves out the target and the expression's details).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Where the process-wide asynchronous invoker lives while a LocalCloud runs (see :func:`current_invoker`).
_CURRENT: AsyncInvoker | None = None
_CURRENT_LOCK = threading.Lock()

Log = Callable[[str], None]


# --------------------------------------------------------------------------- input of a target
def _iso_seconds(value: Any) -> Any:
    """EventBridge's ``time``: ISO 8601 to the second, from the Unix timestamp moto holds."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return value
    moment = datetime.datetime.fromtimestamp(int(seconds // 1), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def aws_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as EventBridge sends it: moto's internal fields dropped, ``time`` in ISO 8601."""
    sent = {key: value for key, value in event.items() if key not in ("ingestion-time", "replay-name")}
    if "time" in sent:
        sent["time"] = _iso_seconds(sent["time"])
    return sent


def json_path(document: Any, path: str) -> tuple[bool, Any]:
    """``(found, value)`` of an EventBridge JSON path (``$.detail.items[0].id``, ``$.detail.*``)."""
    from jsonpath_ng import ext

    try:
        matches = ext.parse(path).find(document)  # type: ignore[attr-defined]
    except Exception:
        return False, None
    if not matches:
        return False, None
    if len(matches) == 1 and "*" not in path:
        return True, matches[0].value
    return True, [match.value for match in matches]


def input_transform(
    transformer: Mapping[str, Any], event: Mapping[str, Any], *, rule_arn: str = "", rule_name: str = ""
) -> bytes:
    """The target input an EventBridge input transformer makes of ``event`` (already in AWS's shape).

    Inside a JSON string of the template (``"<state>"``, ``"instance <id> is <state>"``) a value
    is inserted as its text, escaped so that the result stays JSON; outside a string, as a JSON
    value (a string with its quotes: that is what the CDK's ``RuleTargetInput.from_object`` relies
    on, ``{"id":<detail-id>}``). A path that matches nothing gives the empty string inside a string
    and ``null`` outside. The predefined ``aws.events.*`` variables are set. The result is sent as it is: JSON
    when the template makes JSON, text otherwise.
    """
    template = str(transformer.get("InputTemplate", ""))
    whole = {key: value for key, value in event.items() if key != "ingestion-time"}
    values: dict[str, tuple[bool, Any]] = {
        name: json_path(whole, path) for name, path in dict(transformer.get("InputPathsMap", {})).items()
    }
    values.setdefault("aws.events.rule-arn", (True, rule_arn))
    values.setdefault("aws.events.rule-name", (True, rule_name))
    values.setdefault("aws.events.event.ingestion-time", (True, _iso_seconds(event.get("ingestion-time", time.time()))))
    values.setdefault("aws.events.event.json", (True, whole))
    values.setdefault("aws.events.event", (True, {k: v for k, v in whole.items() if k != "detail"}))

    out: list[str] = []
    in_string = False
    index = 0
    while index < len(template):
        char = template[index]
        if char == "\\" and in_string:
            out.append(template[index : index + 2])
            index += 2
            continue
        if char == '"':
            in_string = not in_string
        elif char == "<":
            match = _PLACEHOLDER.match(template, index)
            if match and match.group(1) in values:
                found, value = values[match.group(1)]
                out.append(_inserted(found, value, in_string))
                index = match.end()
                continue
        out.append(char)
        index += 1
    return "".join(out).encode()


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


def _inserted(found: bool, value: Any, in_string: bool) -> str:
    if not found or value is None:
        return "" if in_string else "null"
    if not in_string:
        return json.dumps(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text)[1:-1]


def target_input(
    target: Mapping[str, Any], event: Mapping[str, Any], *, rule_arn: str = "", rule_name: str = ""
) -> bytes:
    """What an EventBridge rule sends ``target``: ``Input``, ``InputPath``, the input transformer or the event."""
    sent = aws_event(event)
    if target.get("Input") is not None:
        return str(target["Input"]).encode()
    if target.get("InputPath"):
        found, value = json_path(sent, str(target["InputPath"]))
        return json.dumps(value if found else None).encode()
    if target.get("InputTransformer"):
        transformed = dict(sent)
        transformed["ingestion-time"] = event.get("ingestion-time", time.time())
        return input_transform(target["InputTransformer"], transformed, rule_arn=rule_arn, rule_name=rule_name)
    return json.dumps(sent).encode()


def _arn_parts(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return "", "", "", arn
    return parts[2], parts[3], parts[4], parts[5]


def _queue_url(session: Any, arn: str) -> str:
    _, _region, account, name = _arn_parts(arn)
    return str(session.client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- Lambda's async queue
@dataclass
class AsyncConfig:
    """How Lambda treats a function's asynchronous invocations."""

    maximum_retry_attempts: int = 2
    maximum_event_age: float = 6 * 3600
    on_success: str | None = None
    on_failure: str | None = None
    dead_letter: str | None = None


#: The header that carries an asynchronous invocation's request id to the Lambda runner (every attempt
#: of one event runs with the same ``context.aws_request_id``, as in Lambda).
REQUEST_ID_HEADER = "X-Cdk-Sp-Request-Id"
#: Longest wait between two attempts of a throttled (429) or failed-by-the-service (5xx) invocation.
#: Lambda backs off from 1 second up to 5 minutes; the emulator caps the wait at 5 seconds.
SERVICE_RETRY_CAP = 5.0
#: The Invoke API's limit of an asynchronous (``Event``) payload: 1 MB since October 2025 (256 KB before).
ASYNC_PAYLOAD_LIMIT = 1_048_576


@dataclass
class _Job:
    function: str
    payload: bytes
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    enqueued: float = field(default_factory=time.monotonic)
    attempts: int = 0
    tenant_id: str | None = None
    service_retries: int = 0  # throttles and service errors: retried until the event is too old
    on_done: Callable[[bool, bytes, str | None], None] | None = None


@dataclass(frozen=True)
class AsyncOutcome:
    """One finished asynchronous invocation (kept for tests and the demo)."""

    function_arn: str
    request_id: str
    attempts: int
    succeeded: bool
    condition: str  # Success | RetriesExhausted | EventAgeExceeded | ResourceNotFound
    response: bytes


class AsyncInvoker:
    """Lambda's asynchronous invocation queue, with retries, destinations and dead-letter queues.

    ``session``: boto3 session bound to the emulator. ``dead_letters``: function ARN -> the SQS or
    SNS ARN of its ``DeadLetterConfig`` (moto 5.2.5 does not keep it; the integrator fills it from
    the template). ``workers`` threads run the invocations: that many asynchronous invocations run
    at once (Lambda runs them up to the function's concurrency; beyond the runner's environments per
    function an invocation is throttled and retried, as Lambda retries a throttled event).
    """

    def __init__(
        self,
        session: Any,
        *,
        retry_delays: tuple[float, ...] = (1.0, 2.0),
        workers: int = 32,
        invoke_timeout: float = 960.0,
        log: Log = print,
    ) -> None:
        from botocore.config import Config

        self.session = session
        self.retry_delays = retry_delays
        self.log = log
        self.dead_letters: dict[str, str] = {}
        self.outcomes: list[AsyncOutcome] = []
        self._lambda = session.client(
            "lambda",
            config=Config(read_timeout=invoke_timeout, connect_timeout=5, retries={"total_max_attempts": 1}),
        )
        self._current = threading.local()  # the job a worker is invoking (its request id goes in a header)
        self._lambda.meta.events.register("before-sign.lambda.Invoke", self._add_request_id)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._delayed: list[tuple[float, _Job]] = []
        self._running = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"lambda-async-{index}", daemon=True) for index in range(workers)
        ]
        self._timer = threading.Thread(target=self._release_delayed, name="lambda-async-timer", daemon=True)
        for thread in (*self._threads, self._timer):
            thread.start()

    # ---------------------------------------------------------------- public
    def submit(self, function: str, payload: bytes, *, tenant_id: str | None = None) -> str:
        """Queues an asynchronous invocation of ``function`` (name or ARN); returns its request id."""
        job = _Job(function, payload, tenant_id=tenant_id)
        self._queue.put(job)
        return job.request_id

    def idle(self) -> bool:
        """Nothing queued, waiting for a retry or running."""
        with self._lock:
            return self._queue.unfinished_tasks == 0 and not self._delayed and self._running == 0

    def close(self, timeout: float = 5.0) -> None:
        """Stops the workers (queued invocations are dropped, as a stopped emulator would)."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in (*self._threads, self._timer):
            thread.join(max(0.0, deadline - time.monotonic()))

    # ---------------------------------------------------------------- internals
    def config(self, function_arn: str) -> AsyncConfig:
        """The function's EventInvokeConfig (moto's API) and dead-letter queue."""
        config = AsyncConfig(dead_letter=self.dead_letters.get(function_arn))
        try:
            found = self._lambda.get_function_event_invoke_config(FunctionName=function_arn)
        except Exception:
            return config
        if "MaximumRetryAttempts" in found:
            config.maximum_retry_attempts = int(found["MaximumRetryAttempts"])
        if "MaximumEventAgeInSeconds" in found:
            config.maximum_event_age = float(found["MaximumEventAgeInSeconds"])
        destinations = found.get("DestinationConfig", {})
        config.on_success = destinations.get("OnSuccess", {}).get("Destination") or None
        config.on_failure = destinations.get("OnFailure", {}).get("Destination") or None
        return config

    def _release_delayed(self) -> None:
        while not self._stopping.wait(0.05):
            now = time.monotonic()
            with self._lock:
                due = [job for at, job in self._delayed if at <= now]
                self._delayed = [(at, job) for at, job in self._delayed if at > now]
            for job in due:
                self._queue.put(job)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._queue.task_done()
                return
            with self._lock:
                self._running += 1
            try:
                self._run(job)
            except Exception as error:  # a broken destination must not kill the worker
                self.log(f"lambda async: {job.function} request {job.request_id}: {error}")
            finally:
                with self._lock:
                    self._running -= 1
                self._queue.task_done()

    def _add_request_id(self, request: Any, **_: Any) -> None:
        job = getattr(self._current, "job", None)
        if job is not None:
            request.headers[REQUEST_ID_HEADER] = job.request_id

    def _later(self, job: _Job, delay: float) -> None:
        with self._lock:
            self._delayed.append((time.monotonic() + delay, job))

    def _run(self, job: _Job) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        job.attempts += 1
        request: dict[str, Any] = {"FunctionName": job.function, "InvocationType": "RequestResponse"}
        if job.tenant_id is not None:
            request["TenantId"] = job.tenant_id
        self._current.job = job
        try:
            response = self._lambda.invoke(Payload=job.payload, **request)
            body = response["Payload"].read()
            error = response.get("FunctionError")
        except self._lambda.exceptions.ResourceNotFoundException as missing:
            self.log(f"lambda async: {job.function}: {missing}")
            self._record(job, job.function, False, "ResourceNotFound", b"")
            return
        except ClientError as failure:
            details = failure.response.get("Error", {})
            status = int(failure.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = str(details.get("Code") or type(failure).__name__)
            body = json.dumps({"errorType": code, "errorMessage": str(details.get("Message") or failure)}).encode()
            if status == 429 or status >= 500:  # throttled or a service error: Lambda retries until max age
                if self._service_retry(job, code):
                    return
                error = code
            else:
                error = code  # refused (4xx): a failed attempt
        except BotoCoreError as failure:  # the emulator's endpoint went away: a service error
            body = json.dumps({"errorType": "ServiceException", "errorMessage": str(failure)}).encode()
            if self._service_retry(job, "ServiceException"):
                return
            error = "ServiceException"
        finally:
            self._current.job = None
        function_arn = self._function_arn(job.function)
        config = self.config(function_arn)
        if error is None:
            self._record(job, function_arn, True, "Success", body)
            if config.on_success:
                self._destination(config.on_success, self._record_json(job, function_arn, "Success", body, None))
            return
        age = time.monotonic() - job.enqueued
        if job.attempts <= config.maximum_retry_attempts:
            delay = self.retry_delays[min(job.attempts - 1, len(self.retry_delays) - 1)] if self.retry_delays else 0.0
            if age + delay < config.maximum_event_age:
                self._later(job, delay)
                return
            condition = "EventAgeExceeded"
        else:
            condition = "RetriesExhausted"
        self._record(job, function_arn, False, condition, body)
        if config.on_failure:
            self._destination(config.on_failure, self._record_json(job, function_arn, condition, body, error))
        elif config.dead_letter:
            self._dead_letter(config.dead_letter, job, body)
        else:
            self.log(
                f"lambda async: {function_arn} request {job.request_id} failed {job.attempts} times and was discarded"
            )

    def _service_retry(self, job: _Job, code: str) -> bool:
        """Queues ``job`` again after a throttle or service error, unless it is too old; True if queued.

        (Lambda does not count these attempts against ``MaximumRetryAttempts``.)
        """
        if self._stopping.is_set():
            return False
        config = self.config(self._function_arn(job.function))
        delay = min(2.0**job.service_retries, SERVICE_RETRY_CAP)
        if time.monotonic() - job.enqueued + delay >= config.maximum_event_age:
            return False
        job.attempts -= 1
        job.service_retries += 1
        if job.service_retries == 1:
            self.log(f"lambda async: {job.function} request {job.request_id}: {code}; retrying")
        self._later(job, delay)
        return True

    def _function_arn(self, function: str) -> str:
        if function.startswith("arn:"):
            return function.split(":$LATEST")[0]
        try:
            return str(self._lambda.get_function_configuration(FunctionName=function)["FunctionArn"])
        except Exception:
            return function

    def _record(self, job: _Job, arn: str, ok: bool, condition: str, body: bytes) -> None:
        with self._lock:
            self.outcomes.append(AsyncOutcome(arn, job.request_id, job.attempts, ok, condition, body))

    def _record_json(self, job: _Job, arn: str, condition: str, body: bytes, error: str | None) -> dict[str, Any]:
        def parsed(raw: bytes) -> Any:
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return raw.decode(errors="replace")

        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if error:
            response_context["functionError"] = error
        return {
            "version": "1.0",
            "timestamp": _now_iso(),
            "requestContext": {
                "requestId": job.request_id,
                "functionArn": f"{arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": job.attempts,
            },
            "requestPayload": parsed(job.payload),
            "responseContext": response_context,
            "responsePayload": parsed(body),
        }

    def _destination(self, arn: str, record: dict[str, Any]) -> None:
        service = _arn_parts(arn)[0]
        text = json.dumps(record)
        if service == "sqs":
            self.session.client("sqs").send_message(QueueUrl=_queue_url(self.session, arn), MessageBody=text)
        elif service == "sns":
            self.session.client("sns").publish(TopicArn=arn, Message=text)
        elif service == "lambda":
            self.submit(arn, text.encode())
        elif service == "events":
            success = record["requestContext"]["condition"] == "Success"
            self.session.client("events").put_events(
                Entries=[
                    {
                        "Source": "lambda",
                        "DetailType": f"Lambda Function Invocation Result - {'Success' if success else 'Failure'}",
                        "Detail": text,
                        "EventBusName": arn,
                        "Resources": [record["requestContext"]["functionArn"]],
                    }
                ]
            )
        else:
            self.log(f"lambda async: destination {arn} is not a supported type")

    def _dead_letter(self, arn: str, job: _Job, body: bytes) -> None:
        try:
            message = json.loads(body).get("errorMessage", "") if body else ""
        except (ValueError, AttributeError):
            message = ""
        attributes = {
            "RequestID": {"DataType": "String", "StringValue": job.request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": str(message)[:1024] or "Unhandled"},
        }
        if _arn_parts(arn)[0] == "sns":
            self.session.client("sns").publish(TopicArn=arn, Message=job.payload.decode(), MessageAttributes=attributes)
        else:
            self.session.client("sqs").send_message(
                QueueUrl=_queue_url(self.session, arn), MessageBody=job.payload.decode(), MessageAttributes=attributes
            )


def current_invoker() -> AsyncInvoker | None:
    """The asynchronous invoker of the LocalCloud running in this process, if any."""
    return _CURRENT


def set_current_invoker(invoker: AsyncInvoker | None) -> None:
    """Makes ``invoker`` the one :func:`deliver_to_lambda` and asynchronous invokes use."""
    global _CURRENT
    with _CURRENT_LOCK:
        _CURRENT = invoker


def route_async_invoke(invoker: AsyncInvoker) -> Callable[[], None]:
    """Sends moto's ``InvocationType=Event`` invokes to ``invoker`` (returns an undo callable).

    Installed over the Lambda runner's own routing, so that ``Event`` invokes from any client get
    Lambda's retries and destinations; ``RequestResponse`` goes on to the runner unchanged.
    """
    from moto.awslambda.models import LambdaFunction

    original = LambdaFunction.invoke

    def invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
        kind = request_headers.get("X-Amz-Invocation-Type") or request_headers.get("x-amz-invocation-type")
        if kind != "Event":
            return original(self, body, request_headers, response_headers)
        raw = body if isinstance(body, bytes) else str(body or "{}").encode()
        tenant_id = request_headers.get("X-Amz-Tenant-Id") or request_headers.get("x-amz-tenant-id")
        per_tenant = (getattr(self, "tenancy_config", None) or {}).get("TenantIsolationMode") == "PER_TENANT"
        if per_tenant != bool(tenant_id):  # refused at once, as Lambda refuses the Invoke call
            from moto.core.exceptions import JsonRESTError

            message = (
                "The invoked function is enabled with tenancy configuration. Add a valid tenant ID in your request"
                if per_tenant
                else "The invoked function is not enabled with tenancy configuration. Remove the tenant ID"
            )
            raise JsonRESTError("InvalidParameterValueException", message + " and try again.")
        if len(raw) > ASYNC_PAYLOAD_LIMIT:
            from moto.core.exceptions import JsonRESTError

            failure = JsonRESTError(
                "RequestEntityTooLargeException",
                f"{len(raw)} byte payload is too large for the Event invocation type"
                f" (limit {ASYNC_PAYLOAD_LIMIT} bytes)",
            )
            failure.code = 413
            raise failure
        request_id = invoker.submit(self.function_arn, raw, tenant_id=tenant_id)
        response_headers["x-amzn-requestid"] = request_id
        return b""

    setattr(LambdaFunction, "invoke", invoke)  # noqa: B010

    def undo() -> None:
        setattr(LambdaFunction, "invoke", original)  # noqa: B010

    return undo


def deliver_to_lambda(rule: Any, target: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    """An EventBridge rule's delivery of ``event`` to a Lambda ``target`` (see the module docstring)."""
    payload = target_input(target, event, rule_arn=getattr(rule, "arn", ""), rule_name=getattr(rule, "name", ""))
    invoker = current_invoker()
    function_arn = str(target["Arn"])
    from moto.awslambda.utils import get_backend

    _, region, account, _ = _arn_parts(function_arn)
    try:
        get_backend(account, region).get_function(function_arn)
    except Exception as error:
        _eventbridge_dead_letter(rule, target, event, "ResourceNotFoundException", str(error))
        return
    if invoker is not None:
        invoker.submit(function_arn, payload)
        return
    # No LocalCloud: invoke moto's function once, asynchronously, as moto itself would.
    function = get_backend(account, region).get_function(function_arn)
    threading.Thread(
        target=function.invoke, args=(payload.decode(), {}, {}), name="eventbridge-lambda", daemon=True
    ).start()


def _eventbridge_dead_letter(
    rule: Any, target: Mapping[str, Any], event: Mapping[str, Any], code: str, message: str
) -> None:
    dead_letter = target.get("DeadLetterConfig", {}).get("Arn")
    if not dead_letter:
        return
    from moto.sqs.models import sqs_backends

    _, region, account, name = _arn_parts(str(dead_letter))
    attributes = {
        "RULE_ARN": {"DataType": "String", "StringValue": str(getattr(rule, "arn", ""))},
        "TARGET_ARN": {"DataType": "String", "StringValue": str(target["Arn"])},
        "ERROR_CODE": {"DataType": "String", "StringValue": code},
        "ERROR_MESSAGE": {"DataType": "String", "StringValue": message[:1024] or code},
        "EXHAUSTED_RETRY_CONDITION": {"DataType": "String", "StringValue": "MaximumRetryAttempts"},
        "RETRY_ATTEMPTS": {"DataType": "String", "StringValue": "0"},
    }
    sqs_backends[account][region].send_message(name, json.dumps(aws_event(event)), message_attributes=attributes)


# --------------------------------------------------------------------------- Scheduler
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


class ScheduleExpressionError(ValueError):
    """A schedule expression the runner cannot fire (named in the message)."""


def _cron_field(text: str, low: int, high: int, names: Mapping[str, int] | None = None) -> set[int]:
    if text in ("*", "?"):
        return set(range(low, high + 1))
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _cron_value(first, names), _cron_value(last, names)
        else:
            start = _cron_value(part, names)
            end = start if "/" not in text else high
        if start < low or end > high:
            raise ScheduleExpressionError(f"cron field {text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _cron_value(text: str, names: Mapping[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ScheduleExpressionError(f"cron value {text!r} is not a number or a name")
    return int(text)


_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: index + 1 for index, name in enumerate(_MONTH_NAMES)}
_DAYS = {name: index + 1 for index, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}


def next_fire(
    expression: str, after: datetime.datetime, *, timezone: str = "UTC", fast: float | None = None
) -> datetime.datetime | None:
    """The first time strictly after ``after`` (aware) that ``expression`` fires, or ``None`` (an
    ``at`` in the past). ``fast`` divides ``rate`` periods."""
    import zoneinfo

    zone = zoneinfo.ZoneInfo(timezone or "UTC")
    rate = _RATE.match(expression.strip())
    if rate:
        seconds = float(int(rate.group(1)) * _UNITS[rate.group(2).rstrip("s")])
        if fast:
            seconds /= fast
        return after + datetime.timedelta(seconds=seconds)
    at = _AT.match(expression.strip())
    if at:
        moment = datetime.datetime.fromisoformat(at.group(1)).replace(tzinfo=zone)
        return moment if moment > after else None
    cron = _CRON.match(expression.strip())
    if not cron:
        raise ScheduleExpressionError(f"schedule expression {expression!r} is not rate(...), cron(...) or at(...)")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ScheduleExpressionError(f"cron expression {expression!r} needs six fields")
    minutes = _cron_field(fields[0], 0, 59)
    hours = _cron_field(fields[1], 0, 23)
    months = _cron_field(fields[3], 1, 12, _MONTHS)
    years = _cron_field(fields[5], 1970, 2199)
    day_ok = _day_matcher(fields[2], fields[4])
    # Walk UTC time (never a local time that does not exist: a spring-forward gap is skipped), and
    # fire on a repeated local time once (its first occurrence), as EventBridge Scheduler does.
    candidate = after.astimezone(datetime.UTC).replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    horizon = after + datetime.timedelta(days=366 * 5)
    while candidate <= horizon:
        local = candidate.astimezone(zone)
        if local.year not in years or local.month not in months or not day_ok(local.date()):
            candidate += datetime.timedelta(minutes=60 - local.minute)  # the next local hour
            continue
        if local.hour not in hours:
            candidate += datetime.timedelta(minutes=60 - local.minute)
            continue
        if local.minute in minutes and not local.fold:
            return candidate
        candidate += datetime.timedelta(minutes=1)
    return None


def _day_matcher(day_field: str, weekday_field: str) -> Callable[[datetime.date], bool]:
    """Whether a local date fits the day-of-month and day-of-week fields (one of them ``?``/``*``).

    Supports, as EventBridge: ``L`` (last day of the month), ``LW`` (its last weekday), ``nW`` (the
    weekday nearest the n-th, within the month), ``xL`` (the last weekday x of the month), ``x#n``
    (the n-th weekday x of the month); weekdays are 1 (SUN) to 7 (SAT).
    """
    import calendar

    def last_day(day: datetime.date) -> int:
        return calendar.monthrange(day.year, day.month)[1]

    def cron_weekday(day: datetime.date) -> int:
        return (day.isoweekday() % 7) + 1

    def nearest_weekday(day: datetime.date, wanted: int) -> int:
        wanted = min(wanted, last_day(day))
        target = day.replace(day=wanted)
        if target.weekday() == 5:  # Saturday: Friday, or Monday when the 1st
            return wanted - 1 if wanted > 1 else wanted + 2
        if target.weekday() == 6:  # Sunday: Monday, or Friday when the last day
            return wanted + 1 if wanted < last_day(day) else wanted - 2
        return wanted

    day_any, weekday_any = day_field in ("*", "?"), weekday_field in ("*", "?")
    upper = day_field.upper()
    if upper == "L":
        by_day: Callable[[datetime.date], bool] = lambda day: day.day == last_day(day)  # noqa: E731
    elif upper == "LW":
        by_day = lambda day: day.day == nearest_weekday(day, last_day(day))  # noqa: E731
    elif re.fullmatch(r"\d+W", upper):
        wanted = int(upper[:-1])
        if not 1 <= wanted <= 31:
            raise ScheduleExpressionError(f"cron field {day_field!r} is out of range 1-31")
        by_day = lambda day: day.day == nearest_weekday(day, wanted)  # noqa: E731
    else:
        days = _cron_field(day_field, 1, 31)
        by_day = lambda day: day.day in days  # noqa: E731
    weekday_upper = weekday_field.upper()
    nth = re.fullmatch(r"(\w+)#([1-5])", weekday_upper)
    last = re.fullmatch(r"(\w*)L", weekday_upper)
    if nth:
        weekday, index = _cron_value(nth.group(1), _DAYS), int(nth.group(2))
        by_weekday: Callable[[datetime.date], bool] = lambda day: (  # noqa: E731
            cron_weekday(day) == weekday and (day.day - 1) // 7 + 1 == index
        )
    elif last:
        weekday = _cron_value(last.group(1), _DAYS) if last.group(1) else 7
        by_weekday = lambda day: cron_weekday(day) == weekday and day.day + 7 > last_day(day)  # noqa: E731
    else:
        weekdays = _cron_field(weekday_field, 1, 7, _DAYS)
        by_weekday = lambda day: cron_weekday(day) in weekdays  # noqa: E731
    if day_any and weekday_any:
        return lambda day: True
    if day_any:
        return by_weekday
    if weekday_any:
        return by_day
    return lambda day: by_day(day) and by_weekday(day)


class ScheduleRunner:
    """Fires the schedules of moto's scheduler backend (see the module docstring)."""

    def __init__(
        self,
        session: Any,
        *,
        account: str,
        region: str,
        fast: float | None = None,
        tick: float = 0.1,
        log: Log = print,
    ) -> None:
        self.session = session
        self.account = account
        self.region = region
        self.fast = fast
        self.tick = tick
        self.log = log
        self.fired: list[tuple[str, str]] = []  # (schedule ARN, scheduled time)
        self._next: dict[str, tuple[Any, datetime.datetime | None]] = {}
        self._logged: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ScheduleRunner:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _schedules(self) -> list[Any]:
        from moto.scheduler.models import scheduler_backends

        backend = scheduler_backends[self.account][self.region]
        return [schedule for group in backend.schedule_groups.values() for schedule in group.schedules.values()]

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.run_due()
            except Exception as error:  # never let one bad schedule stop the others
                self.log(f"scheduler: {error}")

    def _due_time(self, schedule: Any, now: datetime.datetime) -> datetime.datetime | None:
        key = (schedule.schedule_expression, schedule.schedule_expression_timezone, schedule.last_modified_date)
        known = self._next.get(schedule.arn)
        if known is None or known[0] != key:
            try:
                start = _as_datetime(schedule.start_date) or now
                base = max(start, now) if not schedule.schedule_expression.startswith("at(") else now
                first = next_fire(
                    schedule.schedule_expression, base, timezone=schedule.schedule_expression_timezone, fast=self.fast
                )
            except (ScheduleExpressionError, ValueError, KeyError) as error:
                if schedule.arn not in self._logged:
                    self._logged.add(schedule.arn)
                    self.log(f"scheduler: {schedule.name} is never fired: {error}")
                first = None
            self._next[schedule.arn] = (key, first)
        return self._next[schedule.arn][1]

    def run_due(self, *, force: bool = False) -> int:
        """Fires every ENABLED schedule that is due (all of them when ``force``); returns how many fired."""
        fired = 0
        now = datetime.datetime.now(datetime.UTC)
        with self._lock:
            for schedule in self._schedules():
                if schedule.state != "ENABLED":
                    continue
                due = self._due_time(schedule, now)
                end = _as_datetime(schedule.end_date)
                if end is not None and now > end:
                    continue
                if not force and (due is None or due > now):
                    continue
                scheduled = due if (due is not None and due <= now) else now
                try:
                    after = next_fire(
                        schedule.schedule_expression,
                        now,
                        timezone=schedule.schedule_expression_timezone,
                        fast=self.fast,
                    )
                except (ScheduleExpressionError, ValueError):
                    after = None
                self._next[schedule.arn] = (self._next[schedule.arn][0], after)
                self.fired.append((schedule.arn, scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")))
                threading.Thread(
                    target=self._deliver,
                    args=(schedule, dict(schedule.target), scheduled),
                    name="schedule-fire",
                    daemon=True,
                ).start()
                fired += 1
                if schedule.schedule_expression.startswith("at(") and schedule.action_after_completion == "DELETE":
                    from moto.scheduler.models import scheduler_backends

                    scheduler_backends[self.account][self.region].delete_schedule(schedule.group_name, schedule.name)
        return fired

    def _deliver(self, schedule: Any, target: dict[str, Any], scheduled: datetime.datetime) -> None:
        policy = target.get("RetryPolicy", {})
        retries = int(policy.get("MaximumRetryAttempts", 185))
        max_age = float(policy.get("MaximumEventAgeInSeconds", 86400))
        started = time.monotonic()
        attempt = 0
        error_code, error_message = "", ""
        while not self._stop.is_set():
            attempt += 1
            payload = self._input(schedule, target, scheduled, attempt)
            try:
                self._send(target, payload)
                return
            except Exception as error:
                error_code = type(error).__name__
                response = getattr(error, "response", None)
                if isinstance(response, dict):
                    error_code = str(response.get("Error", {}).get("Code", error_code))
                error_message = str(error)
            delay = min(2.0 ** (attempt - 1), 60.0) / (self.fast or 1.0)
            if attempt > retries or time.monotonic() - started + delay > max_age:
                break
            self._stop.wait(delay)
        self.log(f"scheduler: {schedule.name} could not deliver to {target.get('Arn')}: {error_code}: {error_message}")
        dead_letter = target.get("DeadLetterConfig", {}).get("Arn")
        if dead_letter:
            attributes = {
                "X-Amz-Scheduler-Attempt": {"DataType": "String", "StringValue": str(attempt)},
                "X-Amz-Scheduler-Schedule-Arn": {"DataType": "String", "StringValue": schedule.arn},
                "X-Amz-Scheduler-Target-Arn": {"DataType": "String", "StringValue": str(target.get("Arn"))},
                "X-Amz-Scheduler-Error-Code": {"DataType": "String", "StringValue": error_code or "Unknown"},
                "X-Amz-Scheduler-Error-Message": {
                    "DataType": "String",
                    "StringValue": error_message[:1024] or "Unknown",
                },
            }
            body = self._input(schedule, target, scheduled, attempt).decode() or "{}"
            self.session.client("sqs").send_message(
                QueueUrl=_queue_url(self.session, dead_letter), MessageBody=body, MessageAttributes=attributes
            )

    def _input(self, schedule: Any, target: Mapping[str, Any], scheduled: datetime.datetime, attempt: int) -> bytes:
        text = str(target.get("Input") or "{}")
        for name, value in (
            ("schedule-arn", schedule.arn),
            ("scheduled-time", scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")),
            ("execution-id", uuid.uuid4().hex[:16]),
            ("attempt-number", str(attempt)),
        ):
            text = text.replace(f"<aws.scheduler.{name}>", value)
        return text.encode()

    def _send(self, target: Mapping[str, Any], payload: bytes) -> None:
        arn = str(target.get("Arn", ""))
        service = _arn_parts(arn)[0]
        if service == "lambda":
            self.session.client("lambda").invoke(FunctionName=arn, InvocationType="Event", Payload=payload)
        elif service == "states":
            self.session.client("stepfunctions").start_execution(
                stateMachineArn=arn,
                name=f"schedule-{uuid.uuid4()}",
                input=payload.decode(),
            )
        elif service == "sqs":
            self.session.client("sqs").send_message(
                QueueUrl=_queue_url(self.session, arn), MessageBody=payload.decode()
            )
        elif arn == "arn:aws:scheduler:::aws-sdk:sqs:sendMessage":
            request = json.loads(payload)
            self.session.client("sqs").send_message(
                QueueUrl=request["QueueUrl"], MessageBody=str(request["MessageBody"])
            )
        else:
            if arn not in self._logged:
                self._logged.add(arn)
                self.log(f"scheduler: target {arn} is not supported by the emulator; the schedule fires without it")


def _as_datetime(value: Any) -> datetime.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    try:
        return datetime.datetime.fromtimestamp(float(value), tz=datetime.UTC)
    except (TypeError, ValueError):
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# --------------------------------------------------------------------------- SQS event source mappings
_POLLER: SqsPoller | None = None


def current_sqs_poller() -> SqsPoller | None:
    """The SQS poller of the LocalCloud running in this process, if any."""
    return _POLLER


class SqsPoller:
    """Lambda's SQS poller for the event source mappings of moto's Lambda backend.

    moto 5.2.5 runs an SQS mapping inside ``SendMessage`` itself: the sender waits for the function,
    the function gets one message per invocation (not a batch), a failed message is made visible
    again at once (and not retried until the next send), ``ReportBatchItemFailures`` is ignored (a
    reported failure is deleted: lost), and the records carry constant attributes. While a poller
    runs, ``patches/sqs_event_source_poller.py`` keeps moto's inline path off, and this thread does
    what Lambda does: it receives up to ``BatchSize`` messages (10 per receive, as SQS) with the
    queue's visibility timeout, invokes the function once per batch with the records' real
    attributes, deletes the batch on success (all but the reported ``batchItemFailures`` when the
    mapping has ``ReportBatchItemFailures``; an unreadable report fails the whole batch, as Lambda
    does), and leaves a failed batch to become visible again after the visibility timeout (then
    moto's redrive policy moves it to the dead-letter queue after ``maxReceiveCount``). One batch of
    a mapping is in flight at a time (Lambda scales pollers up; this does not).
    """

    def __init__(self, session: Any, *, account: str, region: str, tick: float = 0.05, log: Log = print) -> None:
        from botocore.config import Config

        self.account = account
        self.region = region
        self.tick = tick
        self.log = log
        self._lambda = session.client(
            "lambda", config=Config(read_timeout=960, connect_timeout=5, retries={"total_max_attempts": 1})
        )
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []

    def start(self) -> SqsPoller:
        global _POLLER
        if self._thread is None:
            _POLLER = self
            self._thread = threading.Thread(target=self._loop, name="sqs-poller", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """A message arrived: poll now."""
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        global _POLLER
        if _POLLER is self:
            _POLLER = None
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick)
            self._wake.clear()
            try:
                self.poll()
            except Exception as error:  # one broken mapping must not stop the others
                self.log(f"sqs poller: {error}")

    def poll(self) -> None:
        """Starts a batch for every enabled SQS mapping that has none in flight."""
        from moto.awslambda.utils import get_backend

        mappings = list(get_backend(self.account, self.region)._event_source_mappings.values())
        self._workers = [worker for worker in self._workers if worker.is_alive()]
        for mapping in mappings:
            if not mapping.enabled or _arn_parts(str(mapping.event_source_arn))[0] != "sqs":
                continue
            with self._lock:
                if mapping.uuid in self._busy:
                    continue
            batch = self._receive(mapping)
            if not batch:
                continue
            with self._lock:
                self._busy.add(mapping.uuid)
            worker = threading.Thread(target=self._invoke, args=(mapping, *batch), name="sqs-batch", daemon=True)
            self._workers.append(worker)
            worker.start()

    def _receive(self, mapping: Any) -> tuple[str, list[Any]] | None:
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[self.account][self.region]
        name = _arn_parts(str(mapping.event_source_arn))[3]
        try:
            queue: Any = backend.get_queue(name)
        except Exception:
            return None
        size = int(mapping.batch_size or 10)
        messages: list[Any] = []
        while len(messages) < size:
            received = backend.receive_message(name, min(10, size - len(messages)), 0, int(queue.visibility_timeout))
            if not received:
                break
            messages.extend(received)
        return (name, messages) if messages else None

    def _invoke(self, mapping: Any, queue_name: str, messages: list[Any]) -> None:
        from moto.sqs.models import sqs_backends

        try:
            records = [self._record(mapping, message) for message in messages]
            response = self._lambda.invoke(
                FunctionName=mapping.function_arn, Payload=json.dumps({"Records": records}).encode()
            )
            body = response["Payload"].read()
            if response.get("FunctionError"):
                return  # the batch becomes visible again after the visibility timeout
            failed = self._reported_failures(mapping, body, {m.id for m in messages})
            if failed is None:
                return  # an unreadable report fails the whole batch
            backend = sqs_backends[self.account][self.region]
            for message in messages:
                if message.id not in failed:
                    with contextlib.suppress(Exception):
                        backend.delete_message(queue_name, message.receipt_handle)
        except Exception as error:
            self.log(f"sqs poller: {mapping.function_arn}: {error}")
        finally:
            with self._lock:
                self._busy.discard(mapping.uuid)
            self._wake.set()

    @staticmethod
    def _reported_failures(mapping: Any, body: bytes, ids: set[str]) -> set[str] | None:
        if "ReportBatchItemFailures" not in (mapping.function_response_types or []):
            return set()
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            return None
        if not isinstance(answer, dict) or not answer.get("batchItemFailures"):
            return set()
        failures = answer["batchItemFailures"]
        if not isinstance(failures, list):
            return None
        failed: set[str] = set()
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not isinstance(identifier, str) or identifier not in ids:
                return None
            failed.add(identifier)
        return failed

    def _record(self, mapping: Any, message: Any) -> dict[str, Any]:
        attributes = {
            "ApproximateReceiveCount": str(message.approximate_receive_count),
            "SentTimestamp": str(message.sent_timestamp),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp),
        }
        if getattr(message, "group_id", None):
            attributes["MessageGroupId"] = str(message.group_id)
        if getattr(message, "deduplication_id", None):
            attributes["MessageDeduplicationId"] = str(message.deduplication_id)
        message_attributes: dict[str, Any] = {}
        for key, value in (message.message_attributes or {}).items():
            converted: dict[str, Any] = {
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType"),
            }
            if value.get("StringValue") is not None:
                converted["stringValue"] = value["StringValue"]
            binary = value.get("BinaryValue")
            if binary is not None:
                converted["binaryValue"] = base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary
            message_attributes[key] = converted
        return {
            "messageId": message.id,
            "receiptHandle": message.receipt_handle,
            "body": message.body,
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": message.body_md5,
            "eventSource": "aws:sqs",
            "eventSourceARN": mapping.event_source_arn,
            "awsRegion": self.region,
        }
