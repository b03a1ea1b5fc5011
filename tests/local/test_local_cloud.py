"""LocalCloud end to end: the tests' own CDK app (apps/e2e_app.py) deployed once per session with the
real pinned CDK CLI into moto's server, then one test per path, asserting table items, HTTP answers,
queue messages and outputs. Deployment costs about 20 s (synthesis included)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdk_serverless_patterns.local.cloud import DeployedStack, LocalCloud, LocalCloudError
from cdk_serverless_patterns.local.lambda_environment import wait_for

APP = Path(__file__).resolve().parent / "apps" / "e2e_app.py"
STACK = "LocalCloudE2E"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="the CDK CLI needs Node.js")


class Deployed:
    """The session's cloud, its stack and every log line."""

    def __init__(self, cloud: LocalCloud, stack: DeployedStack, lines: list[str]) -> None:
        self.cloud = cloud
        self.stack = stack
        self.lines = lines

    def client(self, service: str) -> Any:
        return self.cloud.session().client(service)

    def item(self, pk: str) -> dict[str, Any] | None:
        found = self.client("dynamodb").get_item(TableName=self.stack.outputs["TableName"], Key={"pk": {"S": pk}})
        return found.get("Item")

    def messages(self, output: str) -> list[dict[str, Any]]:
        answer = self.client("sqs").receive_message(
            QueueUrl=self.stack.outputs[output],
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        return list(answer.get("Messages", []))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    lines: list[str] = []
    cloud = LocalCloud(fast_schedules=60, workdir=tmp_path_factory.mktemp("local-cloud"), log=lines.append).start()
    try:
        (stack,) = cloud.deploy(APP)
        yield Deployed(cloud, stack, lines)
    finally:
        cloud.close()


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


# --------------------------------------------------------------------------- deployment
def test_outputs_are_resolved_from_the_template(deployed: Deployed) -> None:
    outputs = deployed.stack.outputs
    tables = deployed.client("dynamodb").list_tables()["TableNames"]
    assert outputs["TableName"] in tables
    # moto renders a Ref to the skipped Stage as "None"; the template's stage name is "test".
    assert outputs["ApiUrl"] == f"https://{outputs['RestApiId']}.execute-api.us-east-1.amazonaws.com/test/"
    assert outputs["EventFunctionArn"].startswith(
        "arn:aws:lambda:us-east-1:123456789012:function:LocalCloudE2E-OnEvent"
    )
    assert deployed.stack.physical("Items5C12978B") == outputs["TableName"]
    assert deployed.cloud.stack(STACK) is deployed.stack


def test_function_layers_are_restored_and_reach_the_code(deployed: Deployed) -> None:
    """moto drops a function's Layers; the emulator sets them, and the code imports from the layer."""
    config = deployed.client("lambda").get_function_configuration(
        FunctionName=deployed.stack.outputs["EventFunctionArn"]
    )
    assert [layer["Arn"] for layer in config["Layers"]] == [deployed.stack.physical("SharedDACC02AA")]
    assert ":layer:LocalCloudE2E-SharedDACC02AA" in config["Layers"][0]["Arn"]


def test_skipped_types_are_logged_once_with_what_the_emulator_does(deployed: Deployed) -> None:
    alarm = [line for line in deployed.lines if "AWS::CloudWatch::Alarm" in line]
    assert len(alarm) == 1 and "ignored by the emulator" in alarm[0]
    schedule = [line for line in deployed.lines if "AWS::Scheduler::Schedule:" in line]
    assert len(schedule) == 1 and "fired by the emulator" in schedule[0]


def test_event_invoke_config_is_created(deployed: Deployed) -> None:
    config = deployed.client("lambda").get_function_event_invoke_config(
        FunctionName=deployed.stack.outputs["EventFunctionArn"]
    )
    assert config["MaximumRetryAttempts"] == 1
    assert config["DestinationConfig"]["OnFailure"]["Destination"].endswith(
        deployed.stack.outputs["FailuresUrl"].rsplit("/", 1)[1]
    )


# --------------------------------------------------------------------------- paths
def test_rest_api_with_token_authorizer(deployed: Deployed) -> None:
    (endpoint,) = [e for e in deployed.stack.endpoints if e.kind == "rest"]
    assert endpoint.url.startswith(deployed.cloud.front_door_endpoint)
    status, body = _get(f"{endpoint.url}items/abc", "allow-t1")
    assert (status, body) == (200, {"id": "abc", "tenant": "t1"})
    item = deployed.item("api#abc")
    assert item is not None and item["tenant"] == {"S": "t1"}
    assert _get(f"{endpoint.url}items/abc", "deny-me")[0] == 403
    assert _get(f"{endpoint.url}items/abc")[0] == 401


def test_eventbridge_rule_invokes_the_function_through_the_input_transformer(deployed: Deployed) -> None:
    deployed.client("events").put_events(
        Entries=[{"Source": "e2e.orders", "DetailType": "Order Placed", "Detail": json.dumps({"id": "o-1"})}]
    )
    item = wait_for(lambda: deployed.item("event#o-1"), timeout=30)
    assert item is not None, "the rule's function never wrote its item"
    rule_name = deployed.stack.physical("OrdersA9B65338")
    assert json.loads(item["payload"]["S"]) == {"kind": "Order Placed", "orderId": "o-1", "rule": rule_name}
    assert item["layer"]["S"].endswith("python/e2e_shared.py")


def test_a_failing_async_invoke_is_retried_then_sent_to_the_on_failure_destination(deployed: Deployed) -> None:
    deployed.client("events").put_events(
        Entries=[{"Source": "e2e.orders", "DetailType": "Order Placed", "Detail": json.dumps({"id": "fail"})}]
    )
    messages = wait_for(lambda: deployed.messages("FailuresUrl"), timeout=30)
    assert messages, "no invocation record reached the on-failure destination"
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2  # MaximumRetryAttempts 1
    assert record["requestPayload"]["orderId"] == "fail"
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorMessage"] == "order fail refused"


def test_sqs_messages_reach_the_function_in_batches_and_reported_failures_stay(deployed: Deployed) -> None:
    sqs = deployed.client("sqs")
    url = deployed.stack.outputs["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(("m-1", "m-2", "poison"))]
    )
    assert wait_for(lambda: deployed.item("message#m-1") and deployed.item("message#m-2"), timeout=30)
    item = deployed.item("message#m-1")
    assert item is not None and item["receive"] == {"S": "1"}  # real attributes, not moto's constants

    def counts() -> tuple[int, int]:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])

    # The reported batch item failure is neither deleted (moto 5.2.5 would) nor visible again at once:
    # it waits out the queue's 30 s visibility timeout, as with Lambda.
    assert wait_for(lambda: counts() == (0, 1), timeout=10), counts()


def test_the_schedule_fires_its_function_with_context_attributes(deployed: Deployed) -> None:
    """rate(1 minute) with fast_schedules=60 fires about every second."""
    item = wait_for(lambda: (i := deployed.item("schedule")) and int(i["runs"]["N"]) >= 2 and i, timeout=30)
    assert item, "the schedule did not fire twice"
    payload = json.loads(item["lastInput"]["S"])
    assert payload["from"] == "schedule"
    assert len(payload["at"]) == 20 and payload["at"].endswith("Z")  # <aws.scheduler.scheduled-time> substituted
    assert deployed.cloud.fire_schedules() == 1


def test_invoke_runs_a_deployed_function(deployed: Deployed) -> None:
    result = deployed.cloud.invoke(deployed.stack.outputs["EventFunctionArn"], {"orderId": "direct"})
    assert result.function_error is None
    assert deployed.item("event#direct") is not None


# --------------------------------------------------------------------------- lifecycle and errors
def test_redeploy_destroys_and_recreates_and_a_broken_stack_names_its_resource(
    deployed: Deployed, tmp_path: Path
) -> None:
    """Runs after the path tests (it replaces the stack): the synthesized assembly deployed again
    (destroyed, then recreated), then with a resource moto refuses."""
    cloud = deployed.cloud
    first = deployed.stack
    assembly = first.assembly
    assert assembly is not None and (assembly / "manifest.json").is_file()
    old_pids = [pid for info in cloud._runner.environments() for pid in info.pids] if cloud._runner else []
    assert old_pids, "the path tests left no warm environment"
    (second,) = cloud.deploy(assembly)
    # The destroyed functions' warm environments went with them (a new function starts cold).
    assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in old_pids), timeout=10)
    assert any("destroying it first (moto cannot update a stack in place)" in line for line in deployed.lines)
    assert second.outputs["TableName"] != first.outputs["TableName"]
    tables = cloud.session().client("dynamodb").list_tables()["TableNames"]
    assert second.outputs["TableName"] in tables and first.outputs["TableName"] not in tables
    schedules = cloud.session().client("scheduler").list_schedules()["Schedules"]
    assert [schedule["Name"] for schedule in schedules] == ["LocalCloudE2E-Every"]

    broken = tmp_path / "broken"
    shutil.copytree(assembly, broken)
    template_file = broken / f"{STACK}.template.json"
    template = json.loads(template_file.read_text())
    template["Resources"]["Broken"] = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {"KeySchema": [{"AttributeName": "missing", "KeyType": "HASH"}], "AttributeDefinitions": []},
    }
    template_file.write_text(json.dumps(template))
    # The CLI publishes a template under its hash and skips a hash already published: give it a new one.
    old_hash = (
        json.loads((broken / "manifest.json").read_text())["artifacts"][STACK]["properties"][
            "stackTemplateAssetObjectUrl"
        ]
        .rsplit("/", 1)[1]
        .split(".")[0]
    )
    for path in broken.glob("*.json"):
        path.write_text(path.read_text().replace(old_hash, "f" * 64))
    with pytest.raises(LocalCloudError, match=r"^stack LocalCloudE2E failed: resource Broken \(AWS::DynamoDB::Table\)"):
        cloud.deploy(broken)
    status = cloud.session().client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"]
    assert status == "ROLLBACK_COMPLETE"


def test_a_taken_port_is_one_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(LocalCloudError, match=rf"^port {port} is taken: "):
            LocalCloud(port=port, log=lambda line: None).start()


def test_one_cloud_per_process(deployed: Deployed) -> None:
    with pytest.raises(LocalCloudError, match="another LocalCloud runs in this process"):
        LocalCloud(log=lambda line: None).start()


def test_close_leaves_no_process(deployed: Deployed, tmp_path: Path) -> None:
    """Runs last in this module: the warm environments the tests started are all gone after close()."""
    runner = deployed.cloud._runner
    if runner is None:
        pytest.skip("no Lambda runner")
    if not runner.environments():  # the redeploy tests retired the stack's environments: start one
        from cdk_serverless_patterns.local.lambda_runtime import FunctionSpec

        code = tmp_path / "code"
        code.mkdir()
        (code / "app.py").write_text("def handler(event, context):\n    return event\n")
        spec = FunctionSpec(
            "warm", "arn:aws:lambda:us-east-1:123456789012:function:warm", "app.handler", "python3.12", code
        )
        assert runner.invoke(spec, b"{}").function_error is None
    pids = [pid for info in runner.environments() for pid in info.pids]
    assert pids, "the tests above left no warm environment to check"
    deployed.cloud.close()
    deployed.cloud.close()  # idempotent

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    assert wait_for(lambda: not any(alive(pid) for pid in pids), timeout=10), [p for p in pids if alive(p)]


def test_ctrl_c_mid_deploy_kills_the_cli_and_closes_the_cloud(tmp_path: Path) -> None:
    """Runs after the module's cloud is closed (one LocalCloud per process). A real SIGINT to this
    process while the CLI synthesizes: the CLI is killed (not left to finish) and the cloud closed."""
    import signal
    import threading

    cloud = LocalCloud(workdir=tmp_path, log=lambda line: None).start()
    seen: list[Any] = []

    def interrupt() -> None:
        process = wait_for(lambda: cloud._cli, timeout=30)
        if process is not None:
            seen.append(process)
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        cloud.deploy(APP)
    assert seen, "the CLI never started"
    assert seen[0].returncode is not None and seen[0].returncode < 0  # ended by a signal: killed, not finished
    with pytest.raises(ProcessLookupError):
        os.killpg(seen[0].pid, 0)  # the CLI's whole process group is gone
    with pytest.raises(LocalCloudError, match="not started"):
        cloud.session()
