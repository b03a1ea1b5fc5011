"""CircuitBreaker: template assertions, cdk-nag, prop validation and a normalized snapshot.

One app with two stacks is synthesized once for the module (with the cdk-nag packs):
``Breaker`` uses the defaults plus two circuits and two protected functions; ``Cmk`` a
customer-managed key, no deletion protection and a custom event bus.
"""

from __future__ import annotations

import json
import os
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template
from syrupy.extensions.json import JSONSnapshotExtension

from cdk_serverless_patterns.circuit_breaker import CircuitBreaker
from cdk_serverless_patterns.core import PropError
from cdk_serverless_patterns.testing import normalize_template
from cdk_serverless_patterns.testing.checks import CheckedAssembly, format_table, synth_with_checks
from cdk_serverless_patterns.testing.moto import load_runtime_module

LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:circuit-breaker:7"
EXISTING_TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/shared-circuits"
CONTRACT_ENV = {
    "CIRCUIT_BREAKER_TABLE",
    "CIRCUIT_BREAKER_PORT",
    "CIRCUIT_BREAKER_CACHE_TTL_MS",
    "CIRCUIT_BREAKER_CIRCUITS",
    "CIRCUIT_BREAKER_ON_EXTENSION_ERROR",
    "CIRCUIT_BREAKER_FAILURE_RATE",
    "CIRCUIT_BREAKER_MIN_CALLS",
    "CIRCUIT_BREAKER_WINDOW_MS",
    "CIRCUIT_BREAKER_SLOW_CALL_MS",
}


def user_function(
    stack: cdk.Stack, id: str, runtime: lambda_.Runtime = lambda_.Runtime.PYTHON_3_14
) -> lambda_.Function:
    return lambda_.Function(
        stack,
        id,
        runtime=runtime,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return event\n"),
    )


def existing_layer(stack: cdk.Stack, id: str = "ExtensionLayer") -> lambda_.ILayerVersion:
    return lambda_.LayerVersion.from_layer_version_arn(stack, id, LAYER_ARN)


class Built:
    def __init__(self, assembly: CheckedAssembly, logical_ids: dict[str, str]) -> None:
        self.assembly = assembly
        self.ids = logical_ids

    def template(self, stack: str) -> Template:
        return Template.from_json(self.assembly.templates[stack])

    def raw(self, stack: str) -> dict[str, Any]:
        return self.assembly.templates[stack]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("circuit-breaker-cdk-out")))
    env = cdk.Environment(account="123456789012", region="us-east-1")

    stack = cdk.Stack(app, "Breaker", env=env)
    breaker = CircuitBreaker(stack, "Breaker")  # the layer is built from lambda_src/circuit_breaker_extension
    breaker.add_circuit("payments", health_check_url="https://payments.example.com/health")
    orders = user_function(stack, "Orders")
    breaker.protect(orders)  # every circuit, also the ones added below
    refunds = user_function(stack, "Refunds", lambda_.Runtime.PYTHON_3_12)
    breaker.protect(
        refunds,
        circuits=["payments"],
        on_extension_error="fail_closed",
        cache_ttl=cdk.Duration.millis(500),
        failure_rate_threshold=25,
        minimum_calls=4,
        window=cdk.Duration.seconds(30),
        slow_call_duration=cdk.Duration.millis(1500),
    )
    breaker.add_circuit(
        "inventory",
        health_check_url="https://inventory.example.com/ping",
        schedule="rate(5 minutes)",
        timeout=cdk.Duration.millis(2500),
        failure_threshold=5,
        cool_down=cdk.Duration.minutes(2),
        half_open_trials=3,
        expected_status_codes=[200, 204],
    )

    cmk_stack = cdk.Stack(app, "Cmk", env=env)
    key = kms.Key(cmk_stack, "Key", enable_key_rotation=True)
    topic = sns.Topic(cmk_stack, "Alarms", enforce_ssl=True, master_key=key)
    bus = events.EventBus(cmk_stack, "Bus", event_bus_name="circuits")
    cmk_breaker = CircuitBreaker(
        cmk_stack,
        "Breaker",
        existing_layer=existing_layer(cmk_stack),
        encryption_key=key,
        deletion_protection=False,
        event_bus=bus,
        metric_namespace="Shop/Circuits",
        table_props={"table_class": cdk.aws_dynamodb.TableClass.STANDARD_INFREQUENT_ACCESS},
        alarm_topic=topic,
    )
    cmk_breaker.add_circuit("search", health_check_url="http://search.internal/health", allow_http=True)
    cmk_breaker.protect(user_function(cmk_stack, "Search"))

    existing_stack = cdk.Stack(app, "Existing", env=env)
    existing_breaker = CircuitBreaker(
        existing_stack,
        "Breaker",
        existing_layer=existing_layer(existing_stack),
        existing_table=cdk.aws_dynamodb.Table.from_table_arn(existing_stack, "Table", EXISTING_TABLE_ARN),
    )
    existing_breaker.add_circuit("ledger", health_check_url="https://ledger.example.com/health")
    existing_breaker.protect(user_function(existing_stack, "Ledger"))

    def logical(construct: Any) -> str:
        return str(construct.stack.get_logical_id(construct.node.default_child))

    ids = {
        "table": logical(breaker.table),
        "checker": logical(breaker.health_checker),
        "queue": logical(breaker.dead_letter_queue),
        "orders": logical(orders),
        "refunds": logical(refunds),
        "layer": str(stack.get_logical_id(breaker.layer.node.default_child)),
        "cmk_table": logical(cmk_breaker.table),
        "key": logical(key),
        "bus": str(cmk_stack.get_logical_id(bus.node.default_child)),
        "topic": str(cmk_stack.get_logical_id(topic.node.default_child)),
    }
    return Built(synth_with_checks(app), ids)


def resources_of(raw: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in raw["Resources"].items() if v["Type"] == kind}


def policy_statements_of_role(raw: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    statements = []
    for policy in resources_of(raw, "AWS::IAM::Policy").values():
        roles = [r.get("Ref", "") for r in policy["Properties"]["Roles"]]
        if any(r.startswith(role_prefix) for r in roles):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


# ----- the state table ---------------------------------------------------------------------------------
def test_state_table_defaults(built: Built) -> None:
    built.template("Breaker").has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [{"AttributeName": "circuitId", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "circuitId", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
                "SSESpecification": {"SSEEnabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "DeletionProtectionEnabled": True,
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_state_table_with_customer_managed_key(built: Built) -> None:
    table = built.raw("Cmk")["Resources"][built.ids["cmk_table"]]["Properties"]
    assert table["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Fn::GetAtt": [built.ids["key"], "Arn"]},
    }
    assert table["DeletionProtectionEnabled"] is False


# ----- schedules, one per circuit ------------------------------------------------------------------------
def test_one_schedule_per_circuit_with_its_config_as_input(built: Built) -> None:
    schedules = resources_of(built.raw("Breaker"), "AWS::Scheduler::Schedule")
    by_circuit = {
        json.loads(s["Properties"]["Target"]["Input"])["circuitId"]: s["Properties"] for s in schedules.values()
    }
    assert set(by_circuit) == {"payments", "inventory"}
    assert json.loads(by_circuit["payments"]["Target"]["Input"]) == {
        "circuitId": "payments",
        "url": "https://payments.example.com/health",
        "timeoutMs": 4000,
        "failureThreshold": 3,
        "coolDownMs": 60000,
        "halfOpenTrials": 2,
        "allowHttp": False,
    }
    assert by_circuit["payments"]["ScheduleExpression"] == "rate(1 minute)"
    assert json.loads(by_circuit["inventory"]["Target"]["Input"]) == {
        "circuitId": "inventory",
        "url": "https://inventory.example.com/ping",
        "timeoutMs": 2500,
        "failureThreshold": 5,
        "coolDownMs": 120000,
        "halfOpenTrials": 3,
        "allowHttp": False,
        "expectedStatusCodes": [200, 204],
    }
    assert by_circuit["inventory"]["ScheduleExpression"] == "rate(5 minutes)"
    for props in by_circuit.values():
        target = props["Target"]
        assert target["Arn"] == {"Fn::GetAtt": [built.ids["checker"], "Arn"]}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [built.ids["queue"], "Arn"]}}
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 300}
        assert props["State"] == "ENABLED" and props["FlexibleTimeWindow"] == {"Mode": "OFF"}


def test_scheduler_role_may_only_invoke_the_checker_and_reach_the_queue(built: Built) -> None:
    raw = built.raw("Breaker")
    roles = {k: v for k, v in resources_of(raw, "AWS::IAM::Role").items() if k.startswith("BreakerSchedulerRole")}
    [(role_id, role)] = roles.items()
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    statements = policy_statements_of_role(raw, role_id)

    def arn(name: str) -> dict[str, Any]:
        return {"Fn::GetAtt": [built.ids[name], "Arn"]}

    assert statements == [
        {
            "Action": "lambda:InvokeFunction",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [built.ids["checker"], "Arn"]},
        },
        {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": {"Fn::GetAtt": [built.ids["queue"], "Arn"]}},
    ]


def test_every_schedule_input_is_a_config_the_health_checker_accepts(built: Built) -> None:
    """The construct and the runtime agree on the event: parse each synthesized input with the checker itself."""
    checker = load_runtime_module(
        "circuit_breaker_health_checker", "health_checker", name="health_checker__test_circuit_breaker_construct"
    )
    inputs = [
        json.loads(s["Properties"]["Target"]["Input"])
        for stack in ("Breaker", "Cmk")
        for s in resources_of(built.raw(stack), "AWS::Scheduler::Schedule").values()
    ]
    configs = {c.circuit_id: c for c in map(checker.CircuitConfig.from_event, inputs)}
    assert set(configs) == {"payments", "inventory", "search"}
    assert configs["inventory"].expected_status_codes == frozenset({200, 204})
    assert configs["inventory"].cool_down_ms == 120_000 and configs["search"].allow_http is True


def test_metric_helper(scratch: Any) -> None:
    _, breaker = scratch.breaker(metric_namespace="Shop/Circuits")
    breaker.add_circuit("payments", health_check_url="https://p.example.com")
    metric = breaker.metric("payments")
    assert (metric.namespace, metric.metric_name, metric.statistic) == ("Shop/Circuits", "CircuitOpen", "Maximum")
    assert metric.dimensions == {"CircuitId": "payments"}
    with pytest.raises(PropError) as error:
        breaker.metric("ledger", "Latency")
    assert set(problems_of(error)) == {"circuit_id", "metric_name"}


# ----- the health checker ----------------------------------------------------------------------------------
def test_health_checker_function(built: Built) -> None:
    template = built.template("Breaker")
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "health_checker.handler",
            "Runtime": "python3.14",
            "Timeout": 15,
            "TracingConfig": {"Mode": "Active"},
            "Environment": {
                "Variables": {
                    "CIRCUIT_BREAKER_TABLE": {"Ref": built.ids["table"]},
                    "CIRCUIT_BREAKER_EVENT_BUS": "default",
                    "CIRCUIT_BREAKER_METRIC_NAMESPACE": "CdkServerlessPatterns/CircuitBreaker",
                }
            },
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": built.ids["checker"]},
            "MaximumRetryAttempts": 0,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [built.ids["queue"], "Arn"]}}},
        },
    )


def test_health_checker_iam_is_scoped_to_the_table_the_bus_and_the_queue(built: Built) -> None:
    statements = policy_statements_of_role(built.raw("Breaker"), "BreakerHealthCheckerRole")
    by_action = {json.dumps(s["Action"]): s["Resource"] for s in statements}
    assert by_action['["dynamodb:GetItem", "dynamodb:UpdateItem"]'] == {"Fn::GetAtt": [built.ids["table"], "Arn"]}
    assert by_action['"events:PutEvents"'] == {
        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":events:us-east-1:123456789012:event-bus/default"]]
    }
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert [s["Action"] for s in wildcard] == [["xray:PutTraceSegments", "xray:PutTelemetryRecords"]]
    assert not any("dynamodb:Scan" in json.dumps(s) or "dynamodb:*" in json.dumps(s) for s in statements)


def test_custom_bus_and_key_reach_the_checker(built: Built) -> None:
    raw = built.raw("Cmk")
    statements = policy_statements_of_role(raw, "BreakerHealthCheckerRole")
    assert {"Action": "events:PutEvents", "Effect": "Allow", "Resource": {"Fn::GetAtt": [built.ids["bus"], "Arn"]}} in (
        statements
    )
    kms_statements = [s for s in statements if "kms:Decrypt" in s["Action"]]
    assert kms_statements and all(s["Resource"] == {"Fn::GetAtt": [built.ids["key"], "Arn"]} for s in kms_statements)
    checker = next(
        r
        for r in resources_of(raw, "AWS::Lambda::Function").values()
        if r["Properties"]["Handler"] == "health_checker.handler"
    )
    env = checker["Properties"]["Environment"]["Variables"]
    assert env["CIRCUIT_BREAKER_EVENT_BUS"] == {"Ref": built.ids["bus"]}
    assert env["CIRCUIT_BREAKER_METRIC_NAMESPACE"] == "Shop/Circuits"
    [schedule] = resources_of(raw, "AWS::Scheduler::Schedule").values()
    assert json.loads(schedule["Properties"]["Target"]["Input"])["allowHttp"] is True


# ----- protect(function) -------------------------------------------------------------------------------------
def test_protected_function_gets_layer_env_and_exactly_the_contract_iam(built: Built) -> None:
    raw = built.raw("Breaker")
    orders = raw["Resources"][built.ids["orders"]]["Properties"]
    assert orders["Layers"] == [{"Ref": built.ids["layer"]}]
    env = orders["Environment"]["Variables"]
    assert set(env) == CONTRACT_ENV
    assert env == {
        "CIRCUIT_BREAKER_TABLE": {"Ref": built.ids["table"]},
        "CIRCUIT_BREAKER_PORT": "4243",
        "CIRCUIT_BREAKER_CACHE_TTL_MS": "2000",
        "CIRCUIT_BREAKER_CIRCUITS": "payments,inventory",  # inventory was added after protect()
        "CIRCUIT_BREAKER_ON_EXTENSION_ERROR": "fail_open",
        "CIRCUIT_BREAKER_FAILURE_RATE": "50",
        "CIRCUIT_BREAKER_MIN_CALLS": "10",
        "CIRCUIT_BREAKER_WINDOW_MS": "60000",
        "CIRCUIT_BREAKER_SLOW_CALL_MS": "5000",
    }
    role_id = orders["Role"]["Fn::GetAtt"][0]
    assert policy_statements_of_role(raw, role_id) == [
        {"Action": "dynamodb:GetItem", "Effect": "Allow", "Resource": {"Fn::GetAtt": [built.ids["table"], "Arn"]}},
        {
            "Action": "dynamodb:UpdateItem",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [built.ids["table"], "Arn"]},
            # protected for every circuit: inventory was added after protect() and is writable too
            "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["payments", "inventory"]}},
        },
    ]


def test_a_protected_function_may_write_only_its_own_circuits(built: Built) -> None:
    """Least privilege: refunds is protected for payments only; it cannot update inventory's item."""
    raw = built.raw("Breaker")
    role_id = raw["Resources"][built.ids["refunds"]]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = policy_statements_of_role(raw, role_id)
    writes = [s for s in statements if "dynamodb:UpdateItem" in json.dumps(s["Action"])]
    assert writes == [
        {
            "Action": "dynamodb:UpdateItem",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [built.ids["table"], "Arn"]},
            "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["payments"]}},
        }
    ]
    assert not any(
        "Condition" not in s and any(a in json.dumps(s["Action"]) for a in ("Update", "Put", "Delete", "Write"))
        for s in statements
    ), "no unconditioned write on the table"


def test_a_breaker_without_circuits_lets_its_functions_write_none(scratch: Any) -> None:
    stack, breaker = scratch.breaker()
    function = user_function(stack, "Fn")
    breaker.protect(function)
    Template.from_stack(stack).has_resource_properties(
        "AWS::IAM::Policy",
        Match.object_like(
            {
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Action": "dynamodb:UpdateItem",
                                    "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["-"]}},
                                }
                            )
                        ]
                    )
                }
            }
        ),
    )


def test_the_state_update_margin_covers_what_the_checker_keeps_for_recording() -> None:
    """The construct lets a probe take the checker's timeout minus STATE_UPDATE_MARGIN; the checker keeps
    RECORD_RESERVE_S + DEADLINE_SAFETY_S of its remaining time: the probe gets its whole timeout unless
    the first read took more than the difference."""
    from cdk_serverless_patterns.circuit_breaker.health_check import STATE_UPDATE_MARGIN

    checker = load_runtime_module("circuit_breaker_health_checker", "health_checker", name="hc_for_margin")
    kept = checker.RECORD_RESERVE_S + checker.DEADLINE_SAFETY_S
    assert kept < STATE_UPDATE_MARGIN.to_seconds()
    assert checker.RECORD_RESERVE_S == 2 * (checker.AWS_CONNECT_TIMEOUT_S + checker.AWS_READ_TIMEOUT_S)


def test_protect_options_reach_the_environment(built: Built) -> None:
    refunds = built.raw("Breaker")["Resources"][built.ids["refunds"]]["Properties"]
    env = refunds["Environment"]["Variables"]
    assert env["CIRCUIT_BREAKER_CIRCUITS"] == "payments"
    assert env["CIRCUIT_BREAKER_ON_EXTENSION_ERROR"] == "fail_closed"
    assert env["CIRCUIT_BREAKER_CACHE_TTL_MS"] == "500"
    assert env["CIRCUIT_BREAKER_FAILURE_RATE"] == "25"
    assert env["CIRCUIT_BREAKER_MIN_CALLS"] == "4"
    assert env["CIRCUIT_BREAKER_WINDOW_MS"] == "30000"
    assert env["CIRCUIT_BREAKER_SLOW_CALL_MS"] == "1500"
    assert refunds["Layers"] == [{"Ref": built.ids["layer"]}]


def test_extension_layer_is_built_from_the_extension_folder(built: Built) -> None:
    layer = built.raw("Breaker")["Resources"][built.ids["layer"]]
    assert layer["Type"] == "AWS::Lambda::LayerVersion"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12", "python3.13", "python3.14"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64", "x86_64"]
    asset_hash = layer["Properties"]["Content"]["S3Key"].removesuffix(".zip")
    asset = built.assembly.outdir / f"asset.{asset_hash}"
    executable = asset / "extensions" / "circuit-breaker"
    assert executable.is_file(), "the extension executable sits at the layer's top"
    assert os.access(executable, os.X_OK), "Lambda starts only executable extensions: the mode must survive staging"
    assert (asset / "python" / "circuit_breaker_client.py").is_file(), "the client is importable from python/"
    assert not list(asset.rglob("__pycache__")), "caches never ship in the layer"


def test_an_existing_layer_is_used_as_given(built: Built) -> None:
    raw = built.raw("Cmk")
    assert resources_of(raw, "AWS::Lambda::LayerVersion") == {}
    search = next(r for k, r in resources_of(raw, "AWS::Lambda::Function").items() if k.startswith("Search"))
    assert search["Properties"]["Layers"] == [LAYER_ARN]


def test_an_existing_table_is_used_and_scoped_to(built: Built) -> None:
    raw = built.raw("Existing")
    assert resources_of(raw, "AWS::DynamoDB::Table") == {}
    ledger = next(r for k, r in resources_of(raw, "AWS::Lambda::Function").items() if k.startswith("Ledger"))
    assert ledger["Properties"]["Environment"]["Variables"]["CIRCUIT_BREAKER_TABLE"] == "shared-circuits"
    for role in (ledger["Properties"]["Role"]["Fn::GetAtt"][0], "BreakerHealthCheckerRole"):
        dynamodb_statements = [
            s for s in policy_statements_of_role(raw, role) if "dynamodb:GetItem" in json.dumps(s["Action"])
        ]
        assert [s["Resource"] for s in dynamodb_statements] == [EXISTING_TABLE_ARN], role


def test_table_props_merge_over_the_defaults(built: Built) -> None:
    table = built.raw("Cmk")["Resources"][built.ids["cmk_table"]]["Properties"]
    assert table["TableClass"] == "STANDARD_INFREQUENT_ACCESS"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_protected_function_with_a_cmk_may_use_the_key(built: Built) -> None:
    raw = built.raw("Cmk")
    search = next(r for k, r in resources_of(raw, "AWS::Lambda::Function").items() if k.startswith("Search"))[
        "Properties"
    ]
    statements = policy_statements_of_role(raw, search["Role"]["Fn::GetAtt"][0])
    dynamodb_statements = [s for s in statements if json.dumps(s["Action"]).startswith(('"dynamodb', '["dynamodb'))]
    assert [s["Resource"] for s in dynamodb_statements] == [{"Fn::GetAtt": [built.ids["cmk_table"], "Arn"]}] * 2
    kms_statements = [s for s in statements if "kms:Decrypt" in s["Action"]]
    assert [s["Resource"] for s in kms_statements] == [{"Fn::GetAtt": [built.ids["key"], "Arn"]}]


# ----- cdk-nag and snapshot -------------------------------------------------------------------------------
def test_breaker_resources_are_cdk_nag_clean(built: Built) -> None:
    """The user functions here are bare test fixtures; everything the breaker creates must be clean."""
    ours = [f for f in built.assembly.nag_findings if "/Breaker/" in f.path]
    assert not ours, "unacknowledged cdk-nag findings:\n" + format_table(ours)


def test_acknowledgments_name_a_reason(built: Built) -> None:
    reasons = {}
    for metadata_file in built.assembly.outdir.glob("*.metadata.json"):
        for path, entries in json.loads(metadata_file.read_text()).items():
            for entry in entries:
                if entry.get("type") == "aws:cdk:acknowledged-rules" and "/Breaker/" in path:
                    reasons.update({f"{path} {rule}": reason for rule, reason in entry["data"].items()})
    rules = {key.split(" ", 1)[1] for key in reasons}
    assert "AwsSolutions::AwsSolutions-SQS3" in rules and "Serverless::Serverless-LambdaDLQ" in rules
    assert all(len(reason) >= 40 for reason in reasons.values()), reasons


def test_snapshot(built: Built, snapshot: Any) -> None:
    assert normalize_template(built.raw("Breaker")) == snapshot.use_extension(JSONSnapshotExtension)


# ----- validation ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scratch() -> Any:
    class Scratch:
        def __init__(self) -> None:
            self.count = 0

        def breaker(self, **props: Any) -> tuple[cdk.Stack, CircuitBreaker]:
            self.count += 1
            stack = cdk.Stack(cdk.App(), f"Scratch{self.count}")
            props.setdefault("existing_layer", existing_layer(stack))
            return stack, CircuitBreaker(stack, "Breaker", **props)

    return Scratch()


def problems_of(error: pytest.ExceptionInfo[PropError]) -> dict[str, str]:
    return {p.split(":", 1)[0]: p.split(":", 1)[1] for p in error.value.problems}


def test_add_circuit_reports_every_bad_prop_at_once(scratch: Any) -> None:
    _, breaker = scratch.breaker()
    with pytest.raises(PropError) as error:
        breaker.add_circuit(
            "bad id!",
            health_check_url="http://payments.example.com/health",
            schedule="rate(1 minutes)",
            timeout=cdk.Duration.seconds(13),
            failure_threshold=0,
            cool_down=cdk.Duration.millis(10),
            half_open_trials=-1,
            expected_status_codes=[200, 99],
        )
    problems = problems_of(error)
    assert set(problems) == {
        "circuit_id",
        "health_check_url",
        "schedule",
        "timeout",
        "failure_threshold",
        "cool_down",
        "half_open_trials",
        "expected_status_codes",
    }
    assert "plain http" in problems["health_check_url"] and "allow_http=True" in problems["health_check_url"]
    assert "rate(1 minute)" in problems["schedule"]
    assert "12 seconds" in problems["timeout"] and "checker_timeout" in problems["timeout"]
    assert str(error.value).startswith("CircuitBreaker.add_circuit has invalid props:")


def test_add_circuit_refuses_duplicates_and_timeouts_beyond_the_interval(scratch: Any) -> None:
    _, breaker = scratch.breaker(checker_timeout=cdk.Duration.minutes(5))
    breaker.add_circuit("payments", health_check_url="https://p.example.com")
    with pytest.raises(PropError) as error:
        breaker.add_circuit("payments", health_check_url="https://p.example.com", timeout=cdk.Duration.seconds(90))
    problems = problems_of(error)
    assert "already a circuit" in problems["circuit_id"]
    assert "shorter than the schedule interval (1 minute)" in problems["timeout"]


@pytest.mark.parametrize(
    ("schedule", "accepted"),
    [
        ("rate(1 minute)", True),
        ("rate(10 minutes)", True),
        ("rate(2 hours)", True),
        ("cron(0/5 * * * ? *)", True),
        (cdk.Duration.minutes(3), True),
        ("at(2030-01-01T00:00:00)", False),
        ("rate(2 minute)", False),
        ("every minute", False),
        (cdk.Duration.seconds(90), False),
    ],
)
def test_schedule_forms(scratch: Any, schedule: Any, accepted: bool) -> None:
    _, breaker = scratch.breaker()
    if accepted:
        circuit = breaker.add_circuit("svc", health_check_url="https://svc.example.com", schedule=schedule)
        assert circuit.schedule.schedule_expression == circuit.schedule_expression
    else:
        with pytest.raises(PropError, match="schedule"):
            breaker.add_circuit("svc", health_check_url="https://svc.example.com", schedule=schedule)


def test_constructor_props_are_validated_together(scratch: Any) -> None:
    stack = cdk.Stack(cdk.App(), "Ctor")
    key = kms.Key(stack, "Key")
    table = cdk.aws_dynamodb.Table.from_table_name(stack, "Existing", "circuits")
    with pytest.raises(PropError) as error:
        CircuitBreaker(
            stack,
            "Breaker",
            existing_layer=existing_layer(stack),
            existing_table=table,
            encryption_key=key,
            checker_timeout=cdk.Duration.seconds(2),
            schedule_retry_attempts=500,
            schedule_max_event_age=cdk.Duration.seconds(10),
            metric_namespace="AWS/Lambda",
        )
    problems = error.value.problems
    assert any(p.startswith("existing_table: cannot be combined with encryption_key") for p in problems)
    for prop in ("checker_timeout", "schedule_retry_attempts", "schedule_max_event_age", "metric_namespace"):
        assert any(p.startswith(f"{prop}:") for p in problems), (prop, problems)
    with pytest.raises(PropError, match="table_props: cannot set partition_key"):
        CircuitBreaker(
            stack, "Other", existing_layer=existing_layer(stack, "Layer2"), table_props={"partition_key": None}
        )


@pytest.mark.parametrize(
    "runtime", [lambda_.Runtime.NODEJS_22_X, lambda_.Runtime.PYTHON_3_11, lambda_.Runtime.PYTHON_3_10]
)
def test_protect_refuses_runtimes_that_cannot_run_the_extension(scratch: Any, runtime: lambda_.Runtime) -> None:
    stack, breaker = scratch.breaker()
    function = user_function(stack, "Fn", runtime)
    with pytest.raises(PropError) as error:
        breaker.protect(function)
    [problem] = error.value.problems
    assert problem.startswith(f"function: runtime {runtime.name} cannot run the circuit breaker extension")
    assert "Python 3.12 or newer" in problem


def test_protect_reports_every_bad_option(scratch: Any) -> None:
    stack, breaker = scratch.breaker()
    function = user_function(stack, "Fn")
    with pytest.raises(PropError) as error:
        breaker.protect(
            function,
            circuits=["ok", "not ok"],
            on_extension_error="retry",
            cache_ttl=cdk.Duration.minutes(10),
            failure_rate_threshold=0,
            minimum_calls=0,
            window=cdk.Duration.hours(2),
        )
    assert set(problems_of(error)) == {
        "circuits",
        "on_extension_error",
        "cache_ttl",
        "failure_rate_threshold",
        "minimum_calls",
        "window",
    }
    breaker.protect(function)
    with pytest.raises(PropError, match="already protected"):
        breaker.protect(function)


def test_unknown_protected_circuits_fail_synthesis(scratch: Any) -> None:
    stack, breaker = scratch.breaker()
    breaker.add_circuit("payments", health_check_url="https://p.example.com")
    breaker.protect(user_function(stack, "Fn"), circuits=["payments", "ledger"])
    with pytest.raises(RuntimeError, match="names ledger, which this breaker does not monitor"):
        stack.node.root.synth()  # type: ignore[union-attr]


def test_dead_letter_queue_is_alarmed(built: Built) -> None:
    alarm = {
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Namespace": "AWS/SQS",
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
    }
    [(_, default)] = resources_of(built.raw("Breaker"), "AWS::CloudWatch::Alarm").items()
    assert {k: default["Properties"][k] for k in alarm} == alarm
    assert default["Properties"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [built.ids["queue"], "QueueName"]}}
    ]
    assert "AlarmActions" not in default["Properties"]
    [(_, with_topic)] = resources_of(built.raw("Cmk"), "AWS::CloudWatch::Alarm").items()
    assert with_topic["Properties"]["AlarmActions"] == [{"Ref": built.ids["topic"]}]


def test_a_prefetch_list_beyond_the_environment_limit_fails_synthesis(scratch: Any) -> None:
    stack, breaker = scratch.breaker()
    for index in range(40):
        breaker.add_circuit(f"downstream-service-number-{index:02d}-" + "x" * 30, health_check_url="https://x.example")
    breaker.protect(user_function(stack, "Fn"))
    with pytest.raises(RuntimeError, match=r"more than 2048 of the 4 KB Lambda allows"):
        stack.node.root.synth()  # type: ignore[union-attr]


def test_template_has_exactly_what_the_breaker_declares(built: Built) -> None:
    template = built.template("Breaker")
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.resource_count_is("AWS::Scheduler::Schedule", 2)
    template.resource_count_is("AWS::SQS::Queue", 1)
    template.has_resource_properties(
        "AWS::SQS::Queue", {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 1209600}
    )
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {"PolicyDocument": {"Statement": Match.array_with([Match.object_like({"Effect": "Deny"})])}},
    )
