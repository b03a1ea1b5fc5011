"""``serverless-patterns circuit status|open|close|disable`` against moto (in-process mock_aws)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cdk_serverless_patterns.testing.moto import create_circuit_table
from cdk_serverless_patterns.toolkit import circuit
from cdk_serverless_patterns.toolkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
TABLE = "circuit-state"


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_circuit_table(client, TABLE)
        put(client, "payments", "OPEN", 4, consecutiveFailures=3, updatedBy="health-checker", reason="3 failures")
        put(client, "inventory", "CLOSED", 9)
        yield client


def put(client: Any, circuit_id: str, state: str, version: int, **extra: Any) -> None:
    item = {"circuitId": {"S": circuit_id}, "state": {"S": state}, "version": {"N": str(version)}}
    item.update({k: ({"N": str(v)} if isinstance(v, int) else {"S": v}) for k, v in extra.items()})
    client.put_item(TableName=TABLE, Item=item)


def get(client: Any, circuit_id: str) -> dict[str, Any]:
    raw = client.get_item(TableName=TABLE, Key={"circuitId": {"S": circuit_id}}, ConsistentRead=True)["Item"]
    return circuit._plain(raw)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["circuit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_lists_every_circuit(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "status", "--table", TABLE)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["CIRCUIT", "STATE", "VERSION", "FAILURES", "UPDATED", "BY", "REASON"]
    assert lines[1].split()[:4] == ["inventory", "CLOSED", "9", "0"]
    assert lines[2].split()[:4] == ["payments", "OPEN", "4", "3"] and lines[2].endswith("3 failures")


def test_status_of_one_circuit_as_json(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "status", "payments", "--table", TABLE, "--json")
    assert code == 0
    [item] = json.loads(out)
    assert item["circuitId"] == "payments" and item["state"] == "OPEN" and item["version"] == 4


@pytest.mark.parametrize(("action", "state"), [("open", "FORCED_OPEN"), ("close", "CLOSED"), ("disable", "DISABLED")])
def test_actions_write_their_state_conditionally(
    dynamodb: Any, capsys: pytest.CaptureFixture[str], action: str, state: str
) -> None:
    code, out, err = cli(capsys, action, "payments", "--table", TABLE, "--reason", "incident 42")
    assert code == 0, err
    assert out.strip() == f"payments: OPEN -> {state} (version 4 -> 5)"
    item = get(dynamodb, "payments")
    assert item["state"] == state and item["version"] == 5
    assert item["updatedBy"] == "operator" and item["reason"] == "incident 42"
    if state == "CLOSED":
        assert item["consecutiveFailures"] == 0 and item["consecutiveSuccesses"] == 0
    else:
        assert item["consecutiveFailures"] == 3, "only close resets the counters"


def test_same_state_writes_nothing(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "close", "inventory", "--table", TABLE)
    assert code == 0 and out.strip() == "inventory: already CLOSED (version 9); nothing written"
    assert get(dynamodb, "inventory")["version"] == 9


def test_a_concurrent_write_is_not_overwritten_blindly(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The health checker writes between the operator's read and write: the operator's conditional write
    fails, it reads the new version and applies its change on top of it."""
    operator = circuit.CircuitOperator(TABLE, dynamodb, boto3.client("events", region_name="us-east-1"))
    original_get = operator.get
    reads: list[int] = []

    def get_then_race(circuit_id: str) -> Any:
        item = original_get(circuit_id)
        reads.append(item["version"])
        if len(reads) == 1:  # another writer moves the circuit right after our read
            put(dynamodb, "payments", "HALF_OPEN", 5, consecutiveFailures=0, updatedBy="health-checker")
        return item

    monkeypatch.setattr(operator, "get", get_then_race)
    outcome = operator.set_state("payments", "FORCED_OPEN", reason="hold it")
    assert reads == [4, 5]
    assert outcome["previousState"] == "HALF_OPEN" and outcome["version"] == 6
    assert get(dynamodb, "payments")["state"] == "FORCED_OPEN"


def test_endless_conflicts_end_with_one_clear_line(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    operator = circuit.CircuitOperator(TABLE, dynamodb, boto3.client("events", region_name="us-east-1"))
    original_get = operator.get
    bump = iter(range(100, 200))

    def always_racing(circuit_id: str) -> Any:
        item = original_get(circuit_id)
        put(dynamodb, "payments", "OPEN", next(bump))
        return item

    monkeypatch.setattr(operator, "get", always_racing)
    with pytest.raises(circuit.ToolkitError, match=r"kept changing while being updated \(3 conflicting writes\)"):
        operator.set_state("payments", "CLOSED", reason="x")


def test_unknown_circuit_names_the_known_ones(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "open", "ledger", "--table", TABLE)
    assert code == 2 and out == ""
    assert err.strip() == (
        f"serverless-patterns circuit: no circuit 'ledger' in table {TABLE} (known: inventory, payments); "
        "pass --create to write it anyway"
    )
    code, out, _ = cli(capsys, "open", "ledger", "--table", TABLE, "--create")
    assert code == 0 and out.strip() == "ledger: new -> FORCED_OPEN (version 0 -> 1)"
    assert get(dynamodb, "ledger")["state"] == "FORCED_OPEN"


def test_table_from_the_stack_output(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"CircuitBreakerTableName": {"Value": TABLE}, "Other": {"Value": "x"}},
    }
    cloudformation.create_stack(StackName=circuit.DEFAULT_STACK, TemplateBody=json.dumps(template))
    code, _, err = cli(capsys, "disable", "payments")
    assert code == 0, err
    assert get(dynamodb, "payments")["state"] == "DISABLED"
    cloudformation.create_stack(StackName="NoBreaker", TemplateBody=json.dumps({"Resources": template["Resources"]}))
    code, _, err = cli(capsys, "status", "--stack", "NoBreaker")
    assert code == 2
    assert err.strip() == (
        "serverless-patterns circuit: stack NoBreaker has no output whose key contains CircuitBreakerTable: "
        "pass --table NAME"
    )
    code, _, err = cli(capsys, "status", "--stack", "Missing")
    assert code == 2 and err.startswith("serverless-patterns circuit: cannot read stack Missing: ValidationError")
    assert len(err.strip().splitlines()) == 1


def test_missing_table_and_missing_id_are_one_clear_line(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "status", "--table", "nope")
    assert code == 2
    assert err.strip() == (
        "serverless-patterns circuit: table nope does not exist (check --table, --stack and --region)"
    )
    code, _, err = cli(capsys, "close", "--table", TABLE)
    assert code == 2 and err.strip() == (
        "serverless-patterns circuit: close needs the circuit id: serverless-patterns circuit close ID"
    )


def test_operator_changes_are_published(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="changes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="changes", EventPattern=json.dumps({"source": [circuit.EVENT_SOURCE]}))
    events.put_targets(Rule="changes", Targets=[{"Id": "q", "Arn": arn}])
    assert cli(capsys, "open", "inventory", "--table", TABLE)[0] == 0
    [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(message["Body"])
    assert event["detail-type"] == "Circuit State Changed"
    assert event["detail"]["state"] == "FORCED_OPEN" and event["detail"]["previousState"] == "CLOSED"
    assert event["detail"]["updatedBy"] == "operator" and event["detail"]["version"] == 10


def test_circuit_help_and_bad_action() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cdk_serverless_patterns", "circuit", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "status,open,close,disable" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "cdk_serverless_patterns", "circuit", "reset", "payments"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "invalid choice: 'reset'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_console_script_against_a_moto_server() -> None:
    """The installed command, end to end over HTTP: --endpoint-url and --region reach a moto server."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("dynamodb", region_name="eu-west-1", endpoint_url=endpoint)
        create_circuit_table(client, TABLE)
        put(client, "payments", "CLOSED", 1)
        script = Path(sys.executable).parent / "serverless-patterns"
        common = ["--table", TABLE, "--region", "eu-west-1", "--endpoint-url", endpoint]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        opened = subprocess.run(
            [str(script), "circuit", "open", "payments", *common, "--reason", "maintenance"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert opened.returncode == 0, opened.stderr
        assert opened.stdout.strip() == "payments: CLOSED -> FORCED_OPEN (version 1 -> 2)"
        status = subprocess.run(
            [str(script), "circuit", "status", "payments", *common, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        [item] = json.loads(status.stdout)
        assert (item["state"], item["version"], item["reason"]) == ("FORCED_OPEN", 2, "maintenance")
    finally:
        server.stop()
