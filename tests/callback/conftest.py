"""Shared fixtures of the callback tests: the test app is synthesized once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

#: Namespaces and job sources of the flow stack.
PARTNER_PATTERN = {"source": ["com.example.partner"], "detail-type": ["Partner Job Finished"]}
COMPUTED_PATTERN = {"source": ["com.example.computed"], "detail-type": ["Computed Job Finished"]}
WORKFLOWS = ("TranslateFlow", "PartnerFlow", "ShortFlow", "UrlFlow", "BdaFlow", "DmsFlow", "BigFlow", "ComputedFlow")


def build_flow_app() -> tuple[Any, dict[str, Any]]:
    """A stack with a CallbackPattern (Translate and a partner source) and three small workflows
    that start a job (a Pass state standing in for the service call), wait, and tag outputs."""
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk import aws_stepfunctions_tasks as tasks

    from cdk_serverless_patterns import CallbackPattern, JobSource

    app = cdk.App()
    stack = cdk.Stack(app, "CallbackFlows")
    translate = JobSource.translate_text_translation_job()
    partner = JobSource(
        namespace="partner",
        event_pattern=PARTNER_PATTERN,
        job_id_path="$.detail.id",
        status_path="$.detail.state",
        success_statuses=["DONE"],
        failure_statuses=["ERROR"],
        error_path="$.detail.code",
        cause_path="$.detail.message",
    )
    pattern = CallbackPattern(stack, "Callback", sources=[translate], durable_functions=True)
    pattern.add_job_source(partner)
    bedrock = JobSource.bedrock_data_automation()
    dms = JobSource.dms_replication_task()
    pattern.add_job_source(bedrock)
    pattern.add_job_source(dms)

    # Computed statuses (status_expression over the event $e) and short error names per status.
    computed = JobSource(
        namespace="computed",
        event_pattern=COMPUTED_PATTERN,
        job_id_path="$.detail.id",
        status_path="$.detail.ok",
        status_expression="$e.detail.ok = true ? 'OK' : 'BAD:' & $e.detail.why",
        success_statuses=["OK"],
        failure_statuses=["BAD:disk", "BAD:net"],
        error_names={"BAD:disk": "Computed.DiskFull"},
        error_path="$.detail.code",
    )
    pattern.add_job_source(computed)

    pattern.enable_callback_urls(namespaces=["vendor"])
    gate = sqs.Queue(stack, "Gate")

    def workflow(
        name: str, source: JobSource | str, timeout: cdk.Duration, secret_path: str | None = None, tag: bool = True
    ) -> sfn.StateMachine:
        start = sfn.Pass(
            stack,
            f"{name} start job",
            parameters={"JobId.$": "$.jobId", "secret.$": "$.secret"} if secret_path else {"JobId.$": "$.jobId"},
            result_path="$.started",
        )
        # Stands in for the time between the service accepting the job and the wait step: with
        # "hold" in the input, the workflow stops here until the test releases it (through a task
        # token sent to the gate queue), so a test can deliver the completion event in between
        # (the early-completion race) without depending on timing.
        held = tasks.SqsSendMessage(
            stack,
            f"{name} job running",
            queue=gate,
            message_body=sfn.TaskInput.from_object({"token": sfn.JsonPath.task_token, "jobId.$": "$.jobId"}),
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            result_path=sfn.JsonPath.DISCARD,
        )
        gap = (
            sfn.Choice(stack, f"{name} hold?")
            .when(sfn.Condition.is_present("$.hold"), held)
            .afterwards(include_otherwise=True)
        )
        wait = pattern.wait_for_job(
            f"{name} wait",
            source=source,
            job_id_path="$.started.JobId",
            timeout=timeout,
            result_path="$.job",
            callback_secret_path=secret_path,
        )
        wait.add_catch(sfn.Pass(stack, f"{name} job failed"), errors=["States.ALL"], result_path="$.error")
        chain = start.next(gap).next(wait)
        if tag:
            chain = chain.next(
                sfn.Pass(stack, f"{name} tag outputs", parameters={"tagged.$": "$.job"}, result_path="$.tags")
            )
        machine = sfn.StateMachine(stack, name, definition_body=sfn.DefinitionBody.from_chainable(chain))
        pattern.grant_wait(machine)
        return machine

    workflow("TranslateFlow", translate, cdk.Duration.minutes(5))
    workflow("PartnerFlow", partner, cdk.Duration.minutes(5))
    workflow("ShortFlow", translate, cdk.Duration.seconds(2))
    workflow("UrlFlow", "vendor", cdk.Duration.minutes(5), secret_path="$.started.secret")
    workflow("BdaFlow", bedrock, cdk.Duration.minutes(5))
    workflow("DmsFlow", dms, cdk.Duration.minutes(5))
    # Large outputs: no state after the wait copies the output (its state keeps under 256 KiB).
    workflow("BigFlow", partner, cdk.Duration.minutes(5), tag=False)
    workflow("ComputedFlow", computed, cdk.Duration.minutes(5))
    template = app.synth().get_stack_by_name("CallbackFlows").template
    return app, template


@pytest.fixture(scope="session")
def flow_template() -> dict[str, Any]:
    _, template = build_flow_app()
    return template


@pytest.fixture()
def moto_flows(flow_template: dict[str, Any]) -> Iterator[Any]:
    """The flow stack deployed into a fresh emulator (moto with the local patches), per test."""
    from cdk_serverless_patterns.local import emulator

    with emulator() as aws:
        yield Flows(aws.session, aws.deploy(flow_template), flow_template)


class Flows:
    """Handles to the deployed flow stack, with helpers that wait for moto's worker threads."""

    def __init__(self, session: Any, deployment: Any, template: dict[str, Any]) -> None:
        self.sfn = session.client("stepfunctions")
        self.events = session.client("events")
        self.dynamodb = session.client("dynamodb")
        self.sqs = session.client("sqs")
        self.template = template
        self.deployment = deployment
        machine = "AWS::StepFunctions::StateMachine"
        self.resumer = deployment.arn(deployment.find(template, machine, "CallbackResumer"))
        self.table = deployment.ref(deployment.find(template, "AWS::DynamoDB::Table"))
        self.dead_letter_queue = deployment.ref(deployment.find(template, "AWS::SQS::Queue", "CallbackDeadLetterQueue"))
        self.callback_bus = deployment.ref(deployment.find(template, "AWS::Events::EventBus"))
        self.workflows = {name: deployment.arn(deployment.find(template, machine, name)) for name in WORKFLOWS}
        self._count = 0

    def start(self, workflow: str, job_id: str, hold: bool = False, **extra: str) -> str:
        import json

        self._count += 1
        return str(
            self.sfn.start_execution(
                stateMachineArn=self.workflows[workflow],
                name=f"run-{self._count}",
                input=json.dumps({"jobId": job_id, **({"hold": True} if hold else {}), **extra}),
            )["executionArn"]
        )

    def release(self, job_id: str, timeout: float = 30) -> None:
        """Lets a workflow started with ``hold=True`` go on to its wait step."""
        import json
        import time

        queue = self.deployment.ref(self.deployment.find(self.template, "AWS::SQS::Queue", "Gate"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", []):
                body = json.loads(message["Body"])
                if body["jobId"] == job_id:
                    self.sfn.send_task_success(taskToken=body["token"], output="{}")
                    return
            time.sleep(0.02)
        raise AssertionError(f"workflow for {job_id} never reached its gate")

    def items(self) -> dict[str, dict[str, Any]]:
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=self.table)
        return {item["id"]["S"]: item for page in pages for item in page["Items"]}

    def tokens(self) -> dict[str, dict[str, Any]]:
        """The parked waiters' token records (not completions, not "resumed" markers)."""
        return {key: item for key, item in self.items().items() if item["kind"]["S"] == "token"}

    def wait_for_item(self, record_id: str, kind: str = "token", timeout: float = 30) -> dict[str, Any]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self.items().get(record_id)
            if item and item["kind"]["S"] == kind:
                return item
            time.sleep(0.02)
        runs = {
            name: [(e["name"], e["status"]) for e in self.sfn.list_executions(stateMachineArn=arn)["executions"]]
            for name, arn in self.workflows.items()
        }
        raise AssertionError(f"no {kind} record {record_id} after {timeout} s; table: {self.items()}; runs: {runs}")

    def finish(self, execution_arn: str, timeout: float = 30) -> dict[str, Any]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return dict(described)
            time.sleep(0.02)
        raise AssertionError(f"{execution_arn} still running after {timeout} s")

    def put(self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> None:
        import json

        entry: dict[str, Any] = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}
        if resources:
            entry["Resources"] = resources
        result = self.events.put_events(Entries=[entry])
        assert result["FailedEntryCount"] == 0, result

    def translate_event(self, job_id: str, status: str) -> None:
        self.put("aws.translate", "Translate TextTranslationJob State Change", {"jobId": job_id, "jobStatus": status})

    def resumer_runs(self, expected: int, timeout: float = 30) -> list[dict[str, Any]]:
        """The resumer's executions once ``expected`` of them finished, oldest first."""
        import json
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.resumer)
            runs = [run for page in pages for run in page["executions"]]
            finished = [r for r in runs if r["status"] != "RUNNING"]
            if len(runs) >= expected and len(finished) == len(runs):
                described = [self.sfn.describe_execution(executionArn=r["executionArn"]) for r in runs]
                for run in described:
                    run["result"] = json.loads(run["output"]) if run.get("output") else None
                return sorted(described, key=lambda r: r["startDate"])
            time.sleep(0.02)
        raise AssertionError(f"the resumer did not finish {expected} runs in {timeout} s")

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        pages = self.sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        return [event for page in pages for event in page["events"]]


@pytest.fixture(scope="session")
def callback_integ_assembly(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """integ/integ_callback.py synthesized once, as the CDK CLI (and the integ-runner) would, with cdk-nag.

    A ``cdk_serverless_patterns.testing.checks.CheckedAssembly``.
    """
    import integ_callback  # integ/ is on sys.path (tests/conftest.py)

    from cdk_serverless_patterns.testing.integ import synth_integ_app

    return synth_integ_app(integ_callback.build_app, tmp_path_factory.mktemp("integ_callback"))
