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
from hypothesis import given, settings
from hypothesis import strategies as st
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


# ----- bad input: one line on stderr, a non-zero exit, never a traceback --------------------------------------
def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def aws_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file with one profile ``dev`` (region eu-west-1) and no region in the environment."""
    config = tmp_path / "config"
    config.write_text("[default]\n\n[profile dev]\nregion = eu-west-1\n")
    (tmp_path / "credentials").write_text("[dev]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return config


def test_an_unknown_profile_is_one_line_naming_the_known_ones(
    dynamodb: Any, aws_files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "prod")
    code, out, err = cli(capsys, "status", "--table", TABLE, "--region", "us-east-1")
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith("serverless-patterns circuit: the AWS profile 'prod' ")
    assert str(aws_files) in line and "profiles found: default, dev" in line


def test_no_region_names_what_is_read(aws_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "status", "--table", TABLE)
    assert code == 2
    line = one_line(err)
    for name in ("--region", "AWS_REGION", "AWS_DEFAULT_REGION", "region in the profile's section", str(aws_files)):
        assert name in line, name
    assert "profile default" in line


@pytest.mark.parametrize(
    "where", [{"AWS_REGION": "us-east-1"}, {"AWS_DEFAULT_REGION": "us-east-1"}, {"AWS_PROFILE": "dev"}]
)
def test_each_named_region_source_is_read(
    aws_files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: dict[str, str]
) -> None:
    """AWS_REGION alone works too, although boto3 itself reads only AWS_DEFAULT_REGION and the profile."""
    for name, value in where.items():
        monkeypatch.setenv(name, value)
    region = "eu-west-1" if "AWS_PROFILE" in where else "us-east-1"
    with mock_aws():
        create_circuit_table(boto3.client("dynamodb", region_name=region), TABLE)
        code, out, err = cli(capsys, "status", "--table", TABLE)
    assert (code, out.strip(), err) == (0, f"no circuits in table {TABLE} yet", "")


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("not a region!", "cannot use region 'not a region!': Provided region_name 'not a region!' doesn't match"),
    ],
)
def test_a_bad_region_is_one_line(dynamodb: Any, capsys: pytest.CaptureFixture[str], region: str, message: str) -> None:
    code, out, err = cli(capsys, "status", "--table", TABLE, "--region", region)
    assert code == 2 and out == ""
    assert message in one_line(err)


@pytest.mark.parametrize("value", ["", " "])
@pytest.mark.parametrize(
    ("option", "hint"),
    [
        ("--table", "name the state table, or leave --table out"),
        ("--stack", "name the stack, or leave --stack out for ServerlessPatternsCircuitBreaker"),
        ("--region", "name the region, or leave --region out"),
    ],
)
def test_an_empty_option_is_one_line_naming_it(
    dynamodb: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    hint: str,
    value: str,
) -> None:
    """An empty --table or --stack is refused, not taken as the default stack (which exists here and
    would answer); an empty --region says so even with AWS_REGION set (not "no region configured")."""
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName=circuit.DEFAULT_STACK,
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"CircuitBreakerTable0": {"Value": TABLE}},
            }
        ),
    )
    assert cli(capsys, "status")[0] == 0  # the default stack does lead to the table
    code, out, err = cli(capsys, "status", option, value)
    assert (code, out) == (2, "")
    assert one_line(err).startswith(f"serverless-patterns circuit: {option} is empty: ")
    assert hint in one_line(err)
    assert "no AWS region is configured" not in err
    code, out, err = cli(capsys, "open", "payments", option, value)  # a write is refused the same way
    assert (code, out) == (2, "") and f"{option} is empty" in one_line(err)
    assert get(dynamodb, "payments")["state"] == "OPEN" and get(dynamodb, "payments")["version"] == 4


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "the scheme must be http or https"),
        ("ftp://localhost:5000", "the scheme must be http or https"),
        ("http://", "there is no host"),
        ("http://localhost:99999", "Port out of range"),
        ("http://localhost:port", "Port could not be cast"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://local host:5000", "white space"),
    ],
)
def test_an_invalid_endpoint_url_is_one_line(capsys: pytest.CaptureFixture[str], url: str, problem: str) -> None:
    code, out, err = cli(capsys, "status", "--table", TABLE, "--endpoint-url", url)
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith(f"serverless-patterns circuit: --endpoint-url {url!r} is not a valid endpoint URL: ")
    assert problem in line


def test_an_endpoint_nobody_listens_on_is_one_line_in_bounded_time(capsys: pytest.CaptureFixture[str]) -> None:
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    code, _, err = cli(capsys, "status", "--table", TABLE, "--endpoint-url", endpoint)
    assert time.monotonic() - started < 10
    assert code == 2
    assert one_line(err).startswith(f"serverless-patterns circuit: cannot read table {TABLE}: Could not connect")
    assert "botocore knows" not in err
    # a typo in the region shows as a connection error on AWS (no such host): the line says so
    code, _, err = cli(capsys, "status", "--table", TABLE, "--endpoint-url", endpoint, "--region", "us-east-9")
    assert code == 2
    assert one_line(err).endswith("(region 'us-east-9' is not one botocore knows: check --region)")


BAD_ITEMS = {
    "n-state": ({"state": {"N": "1"}}, "state: '1' (N) is not one of CLOSED, OPEN"),
    "sideways": ({"state": {"S": "SIDEWAYS"}}, "state: 'SIDEWAYS' (S) is not one of"),
    "text-version": ({"version": {"S": "abc"}}, "version: 'abc' (S) is not an integer from 0 to"),
    "fraction": ({"version": {"N": "1.5"}}, "version: '1.5' (N) is not an integer"),
    "negative": ({"consecutiveFailures": {"N": "-1"}}, "consecutiveFailures: '-1' (N) is not an integer"),
    "far-future": ({"updatedAt": {"N": "100000000000000000000"}}, "updatedAt: '100000000000000000000' (N)"),
    "list-reason": ({"reason": {"L": [{"S": "x"}]}}, "reason: [{'S': 'x'}] (L) is not a string"),
    "map-opened": ({"openedAt": {"M": {}}}, "openedAt: {} (M) is not an integer"),
}


@pytest.fixture
def bad_items(dynamodb: Any) -> Any:
    for circuit_id, (fields, _) in BAD_ITEMS.items():
        item = {"circuitId": {"S": circuit_id}, "state": {"S": "CLOSED"}, "version": {"N": "1"}, **fields}
        dynamodb.put_item(TableName=TABLE, Item=item)
    return dynamodb


def test_bad_items_are_shown_unreadable_and_the_others_as_usual(
    bad_items: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "status", "--table", TABLE)
    assert code == 1
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows["payments"].split()[:4] == ["payments", "OPEN", "4", "3"]
    assert rows["inventory"].split()[:4] == ["inventory", "CLOSED", "9", "0"]
    for circuit_id, (_, reason) in BAD_ITEMS.items():
        assert rows[circuit_id].split()[1] == "UNREADABLE" and reason in rows[circuit_id], circuit_id
    assert one_line(err).startswith(f"serverless-patterns circuit: {len(BAD_ITEMS)} unreadable item(s) in table")

    code, out, _ = cli(capsys, "status", "--table", TABLE, "--json")
    by_id = {item["circuitId"]: item for item in json.loads(out)}
    assert code == 1 and "UNREADABLE" not in by_id["payments"]
    assert by_id["text-version"]["UNREADABLE"].startswith("version: 'abc' (S)")

    code, out, err = cli(capsys, "status", "far-future", "--table", TABLE)
    assert code == 1 and "UNREADABLE" in out and "updatedAt" in one_line(err)


def test_a_bad_item_is_never_overwritten_blindly(bad_items: Any, capsys: pytest.CaptureFixture[str]) -> None:
    before = bad_items.get_item(TableName=TABLE, Key={"circuitId": {"S": "text-version"}})["Item"]
    code, out, err = cli(capsys, "close", "text-version", "--table", TABLE)
    assert code == 2 and out == ""
    line = one_line(err)
    assert "circuit 'text-version' has an unreadable item" in line and "nothing written" in line
    assert bad_items.get_item(TableName=TABLE, Key={"circuitId": {"S": "text-version"}})["Item"] == before


@pytest.mark.parametrize("circuit_id", ["bad id!", "_leading", "x" * 64, "é"])
def test_a_malformed_circuit_id_is_one_line(dynamodb: Any, capsys: pytest.CaptureFixture[str], circuit_id: str) -> None:
    code, _, err = cli(capsys, "open", circuit_id, "--table", TABLE, "--create")
    assert code == 2 and "is not a circuit id" in one_line(err)
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key={"circuitId": {"S": circuit_id}})


_attribute_values = st.one_of(
    st.builds(lambda v: {"S": v}, st.text(max_size=20)),
    st.builds(lambda v: {"N": str(v)}, st.integers(min_value=-(10**40), max_value=10**40)),
    st.builds(lambda v: {"N": repr(v)}, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(lambda v: {"BOOL": v}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda v: {"L": [{"S": x} for x in v]}, st.lists(st.text(max_size=3), max_size=2)),
    st.builds(lambda v: {"M": {"k": {"S": v}}}, st.text(max_size=3)),
    st.builds(lambda v: {"SS": v}, st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=2)),
)
_fields = st.sampled_from(
    ["state", *circuit.COUNTER_FIELDS, *circuit.TIME_FIELDS, *circuit.TEXT_FIELDS, "unknownField"]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_fields, _attribute_values, max_size=6))
def test_any_stored_item_is_shown_readable_or_unreadable_never_a_crash(fields: dict[str, Any]) -> None:
    """Whatever DynamoDB holds in the fields the command reads: a row, never an exception; a row that
    is not UNREADABLE carries only well-typed, in-range values."""
    item = circuit.read_item({"circuitId": {"S": "fuzzed"}, **fields})
    table = circuit.format_items([item], TABLE)
    row = table.splitlines()[1]
    assert row.startswith("fuzzed")
    if circuit.UNREADABLE in item:
        assert row.split()[1] == "UNREADABLE"
        return
    assert item.get("state", "CLOSED") in ("CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED")
    for name in circuit.COUNTER_FIELDS:
        assert name not in item or (type(item[name]) is int and 0 <= item[name] <= circuit.MAX_COUNTER)
    for name in circuit.TIME_FIELDS:
        assert name not in item or (type(item[name]) is int and 0 <= item[name] <= circuit.MAX_TIME_MS)
    for name in circuit.TEXT_FIELDS:
        assert name not in item or isinstance(item[name], str)
