"""CallbackPattern's template: properties that must hold, cdk-nag, snapshots, prop validation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

WAIT_ARN = "arn:aws:states:::aws-sdk:dynamodb:putItem.waitForTaskToken"


def _build() -> Any:
    import aws_cdk as cdk
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_sns as sns
    from aws_cdk import aws_stepfunctions as sfn

    from cdk_serverless_patterns import CallbackPattern, JobSource
    from cdk_serverless_patterns.testing.checks import synth_with_checks

    app = cdk.App()
    defaults = cdk.Stack(app, "CallbackDefaults")
    translate = JobSource.translate_text_translation_job()
    pattern = CallbackPattern(defaults, "Callback", sources=[translate])
    wait = pattern.wait_for_job("Wait", source=translate, job_id_path="$.JobId", timeout=cdk.Duration.hours(1))
    workflow = sfn.StateMachine(
        defaults, "Workflow", definition_body=sfn.DefinitionBody.from_chainable(wait), tracing_enabled=True
    )
    pattern.grant_wait(workflow)
    _ack_workflow(workflow)

    configured = cdk.Stack(app, "CallbackConfigured")
    key = kms.Key(configured, "Key", enable_key_rotation=True)
    topic = sns.Topic(configured, "Alarms", enforce_ssl=True, master_key=key)
    full = CallbackPattern(
        configured,
        "Callback",
        sources=[JobSource.translate_text_translation_job(), JobSource.dms_replication_task()],
        encryption_key=key,
        completion_ttl=cdk.Duration.hours(6),
        retry_attempts=20,
        max_event_age=cdk.Duration.hours(6),
        alarm_topic=topic,
        durable_functions=True,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    full.add_job_source(JobSource.bedrock_data_automation())
    full.add_job_source(JobSource.macie_classification_job())
    full.enable_callback_urls(namespaces=["partner"])
    configured_wait = full.wait_for_job(
        "Wait for partner",
        source="partner",
        job_id_path="$.job.id",
        timeout=cdk.Duration.days(2),
        heartbeat=cdk.Duration.hours(1),
        result_path="$.result.partner",
        callback_secret_path="$.secret",
    )
    configured_workflow = sfn.StateMachine(
        configured, "Workflow", definition_body=sfn.DefinitionBody.from_chainable(configured_wait), tracing_enabled=True
    )
    full.grant_wait(configured_workflow)
    _ack_workflow(configured_workflow)
    return synth_with_checks(app)


def _ack_workflow(workflow: Any) -> None:
    from cdk_serverless_patterns.core import acknowledge

    acknowledge(workflow, "A test workflow that only carries the wait step; not deployed.", "AwsSolutions-SF1")
    acknowledge(
        workflow,
        "X-Ray trace segments have no resource-level permission (AWS forces '*').",
        "AwsSolutions-IAM5[Resource::*]",
    )


@pytest.fixture(scope="module")
def assembly() -> Any:
    return _build()


@pytest.fixture(scope="module")
def defaults(assembly: Any) -> Any:
    from aws_cdk.assertions import Template

    return Template.from_json(assembly.templates["CallbackDefaults"])


@pytest.fixture(scope="module")
def configured(assembly: Any) -> Any:
    from aws_cdk.assertions import Template

    return Template.from_json(assembly.templates["CallbackConfigured"])


def _render(value: Any) -> Any:
    """A template value with intrinsics replaced by readable placeholders."""
    if isinstance(value, dict):
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            return f"<{'.'.join(value['Fn::GetAtt'])}>"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(_render(part)) for part in parts)
        return {k: _render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v) for v in value]
    return value


def _definitions(template: Any) -> dict[str, dict[str, Any]]:
    machines = template.find_resources("AWS::StepFunctions::StateMachine")
    return {k: json.loads(_render(v["Properties"]["DefinitionString"])) for k, v in machines.items()}


def _states(definition: dict[str, Any]) -> dict[str, Any]:
    """Every state, branches of Parallel states included."""
    found = {}
    for name, state in definition["States"].items():
        found[name] = state
        for branch in state.get("Branches", []):
            found.update(_states(branch))
    return found


def _policy_statements(template: Any, role_fragment: str) -> list[dict[str, Any]]:
    statements = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if role_fragment in roles:
            statements.extend(_render(policy["Properties"]["PolicyDocument"]["Statement"]))
    return statements


def test_nag_packs_pass_with_defaults_and_fully_configured(assembly: Any) -> None:
    from cdk_serverless_patterns.testing.checks import format_table

    assert not assembly.nag_findings, format_table(assembly.nag_findings)


def test_cfn_lint_finds_no_error(assembly: Any) -> None:
    from cdk_serverless_patterns.testing.checks import cfn_lint_findings, format_table

    findings = [f for f in cfn_lint_findings(assembly.templates) if f.severity == "error"]
    assert not findings, format_table(findings)


def test_token_table_key_ttl_encryption_pitr_on_demand(defaults: Any, configured: Any) -> None:
    from aws_cdk.assertions import Match

    common = {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
    }
    defaults.has_resource_properties("AWS::DynamoDB::Table", {**common, "SSESpecification": {"SSEEnabled": True}})
    configured.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            **common,
            "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": Match.any_value()},
        },
    )
    defaults.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})


def test_wait_step_is_the_aws_sdk_put_item_with_callback(defaults: Any) -> None:
    [workflow] = [d for k, d in _definitions(defaults).items() if k.startswith("Workflow")]
    states = _states(workflow)
    store = states["Wait store token"]
    assert store["Resource"] == WAIT_ARN
    assert store["QueryLanguage"] == "JSONata"
    assert store["TimeoutSeconds"] == 3600
    args = store["Arguments"]
    # A new waiter may park over the marker a resumed one left (job ids some sources reuse).
    assert args["ConditionExpression"] == "attribute_not_exists(id) OR #kind = :resumed"
    assert args["ExpressionAttributeValues"] == {":resumed": {"S": "resumed"}}
    item = args["Item"]
    assert item["id"] == {"S": "{% 'translate#' & $string($states.input.JobId) %}"}
    assert item["kind"] == {"S": "token"}
    assert item["backend"] == {"S": "stepfunctions"}
    assert item["taskToken"] == {"S": "{% $states.context.Task.Token %}"}
    assert item["executionArn"] == {"S": "{% $states.context.Execution.Id %}"}
    assert item["createdAt"] == {"S": "{% $states.context.State.EnteredTime %}"}
    assert item["executionStartedAt"] == {"S": "{% $states.context.Execution.StartTime %}"}
    # TTL = entered time + timeout (1 h) + one day of grace, as a Number.
    assert item["ttl"] == {"N": "{% $string($floor($toMillis($states.context.State.EnteredTime) / 1000) + 90000) %}"}
    assert [c["ErrorEquals"] for c in store["Catch"]] == [["DynamoDb.ConditionalCheckFailedException"]]
    assert workflow["States"]["Wait"]["Type"] == "Parallel"
    assert workflow["States"]["Wait"]["OutputPath"] == "$[0]"


def test_configured_wait_has_heartbeat_result_path_and_secret_hash(configured: Any) -> None:
    [workflow] = [d for k, d in _definitions(configured).items() if k.startswith("Workflow")]
    store = _states(workflow)["Wait for partner store token"]
    assert store["HeartbeatSeconds"] == 3600
    assert store["TimeoutSeconds"] == 2 * 86400
    assert store["Arguments"]["Item"]["callbackSecretHash"] == {
        "S": "{% $lowercase($hash($states.input.secret, 'SHA-256')) %}"
    }
    assert store["Output"] == (
        '{% $merge([$states.input, {"result": $merge([$states.input.result, {"partner": $states.result}])}]) %}'
    )


def test_resumer_is_express_with_logging_and_tracing(defaults: Any) -> None:
    from aws_cdk.assertions import Match

    defaults.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "EXPRESS",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": False}),
        },
    )


def test_resumer_resumes_claims_cleans_up_and_survives_gone_waiters(defaults: Any) -> None:
    [resumer] = [d for k, d in _definitions(defaults).items() if k.startswith("CallbackResumer")]
    states = _resumer_states(resumer)
    assert resumer["QueryLanguage"] == "JSONata"
    assert states["Send task success"]["Resource"] == "arn:aws:states:::aws-sdk:sfn:sendTaskSuccess"
    assert states["Send task failure"]["Resource"] == "arn:aws:states:::aws-sdk:sfn:sendTaskFailure"
    for name in ("Send task success", "Send task failure"):
        gone, *catch_alls = states[name]["Catch"]
        assert set(gone["ErrorEquals"]) == {
            "Sfn.TaskTimedOutException",
            "Sfn.InvalidTokenException",
            "Sfn.TaskDoesNotExistException",
        }
        assert gone["Next"] == "Mark resumed"
        assert states[name]["Next"] == "Mark resumed"
        # Anything else fails the waiter and reaches the dead-letter queue (never a silent park).
        assert catch_alls and all(c["Next"] == "Resume failed" for c in catch_alls)
        assert "States.ALL" in [e for c in catch_alls for e in c["ErrorEquals"]]
    assert "attribute_not_exists(#claimed)" in states["Claim token record"]["Arguments"]["ConditionExpression"]
    assert states["Record completion"]["Arguments"]["ConditionExpression"] == "attribute_not_exists(id)"
    assert states["Record completion"]["Catch"][0]["Next"] == "Get record"
    assert "Send durable callback success" not in states
    for name in ("Get record", "Claim token record", "Mark resumed", "Record completion"):
        [retry] = states[name]["Retry"]
        assert "DynamoDb.ProvisionedThroughputExceededException" in retry["ErrorEquals"], name
    normalize = states["Normalize event"]["Output"]
    assert '$s = "translate" ?' in normalize


def test_durable_branch_only_when_enabled(configured: Any, defaults: Any) -> None:
    [resumer] = [d for k, d in _definitions(configured).items() if k.startswith("CallbackResumer")]
    states = _resumer_states(resumer)
    normalize = states["Normalize event"]["Output"]
    for namespace in ("translate", "dms", "bedrock-data-automation", "macie", "callback-url"):
        assert f'$s = "{namespace}" ?' in normalize, f"sources added later must reach the resumer: {namespace}"
    assert (
        states["Send durable callback success"]["Resource"]
        == "arn:aws:states:::aws-sdk:lambda:sendDurableExecutionCallbackSuccess"
    )
    assert (
        states["Send durable callback failure"]["Arguments"]["CallbackId"] == "{% $states.input.record.callbackId.S %}"
    )
    assert states["Send durable callback failure"]["Arguments"]["Error"]["ErrorData"].startswith(
        "{% $string({'error': $states.input.job.error, 'cause': "
    )
    # No durable function is granted here (grant_durable_wait): the resumer gets no Lambda action at all.
    actions = {a for s in _policy_statements(configured, "CallbackResumerRole") for a in _as_list(s["Action"])}
    assert not any(a.startswith("lambda:") for a in actions)
    default_actions = {a for s in _policy_statements(defaults, "CallbackResumerRole") for a in _as_list(s["Action"])}
    assert not any(a.startswith("lambda:") for a in default_actions)


def _resumer_states(resumer: dict[str, Any]) -> dict[str, Any]:
    """The resumer's own states: they run in one Parallel branch, whose Catch reports failures."""
    [branch] = resumer["States"]["Resume"]["Branches"]
    return dict(branch["States"])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_least_privilege(defaults: Any) -> None:
    resumer = _policy_statements(defaults, "CallbackResumerRole")
    dynamo = [s for s in resumer if any(a.startswith("dynamodb:") for a in _as_list(s["Action"]))]
    assert len(dynamo) == 1
    # No DeleteItem: a resumed record becomes a marker (UpdateItem), an early completion a PutItem.
    assert sorted(_as_list(dynamo[0]["Action"])) == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert _as_list(dynamo[0]["Resource"]) == ["<CallbackTable5E1DC5F7.Arn>"] or dynamo[0]["Resource"] == [
        "<CallbackTable5E1DC5F7.Arn>",
        "<AWS::NoValue>",
    ]
    [send] = [s for s in resumer if "states:SendTaskSuccess" in _as_list(s["Action"])]
    assert sorted(_as_list(send["Action"])) == ["states:SendTaskFailure", "states:SendTaskSuccess"]
    assert send["Resource"] == "*"

    workflow = _policy_statements(defaults, "WorkflowRole")
    dynamo = [s for s in workflow if any(a.startswith("dynamodb:") for a in _as_list(s["Action"]))]
    assert [sorted(_as_list(s["Action"])) for s in dynamo] == [["dynamodb:PutItem", "dynamodb:UpdateItem"]]
    assert "<CallbackTable5E1DC5F7.Arn>" in json.dumps(dynamo[0]["Resource"])


def test_rules_target_the_resumer_with_dlq_and_retries(defaults: Any, configured: Any) -> None:
    from aws_cdk.assertions import Match

    defaults.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.translate"],
                "detail-type": ["Translate TextTranslationJob State Change"],
                "detail": {"jobStatus": ["COMPLETED", "COMPLETED_WITH_ERROR", "FAILED", "STOPPED"]},
            },
            "Targets": [
                Match.object_like(
                    {
                        "DeadLetterConfig": {"Arn": Match.any_value()},
                        "RetryPolicy": {"MaximumEventAgeInSeconds": 7200, "MaximumRetryAttempts": 8},
                        "InputTransformer": {
                            "InputPathsMap": {"f1": "$"},
                            "InputTemplate": '{"source":"translate","event":<f1>}',
                        },
                    }
                )
            ],
        },
    )
    configured.resource_count_is("AWS::Events::Rule", 5)
    configured.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.dms"],
                "detail-type": ["DMS Replication Task State Change"],
                "detail": {"eventType": ["REPLICATION_TASK_FAILED", "REPLICATION_TASK_STOPPED"]},
            }
        },
    )
    configured.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": Match.object_like({"source": ["aws.bedrock"]}),
            "Targets": [
                Match.object_like({"RetryPolicy": {"MaximumEventAgeInSeconds": 21600, "MaximumRetryAttempts": 20}})
            ],
        },
    )
    configured.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["cdk-serverless-patterns.callback-url"],
                "detail-type": ["Job Callback"],
                "detail": {"status": ["FAILED", "SUCCEEDED"]},
            }
        },
    )


def test_dead_letter_queue_is_encrypted_and_ssl_only(defaults: Any) -> None:
    from aws_cdk.assertions import Match

    defaults.has_resource_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True})
    defaults.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_alarms_on_resumer_failures_and_dlq_depth(defaults: Any, configured: Any) -> None:
    from aws_cdk.assertions import Match

    alarms = defaults.find_resources("AWS::CloudWatch::Alarm")
    metrics = sorted(a["Properties"]["MetricName"] for a in alarms.values())
    assert metrics == ["ApproximateNumberOfMessagesVisible", "ExecutionsFailed", "ExecutionsTimedOut"]
    assert all("AlarmActions" not in a["Properties"] for a in alarms.values())
    configured.has_resource_properties("AWS::CloudWatch::Alarm", {"AlarmActions": [Match.any_value()]})
    assert (
        len(configured.find_resources("AWS::CloudWatch::Alarm", {"Properties": {"AlarmActions": Match.any_value()}}))
        == 3
    )


def test_callback_urls_are_wired_to_the_pattern(configured: Any) -> None:
    from aws_cdk.assertions import Match

    configured.resource_count_is("AWS::ApiGateway::RestApi", 1)
    configured.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like(
                    {"TABLE_NAME": {"Ref": Match.string_like_regexp("CallbackTable")}, "NAMESPACES": "partner"}
                )
            }
        },
    )


def test_snapshots(assembly: Any, snapshot: Any) -> None:
    from cdk_serverless_patterns.testing import normalize_template

    json_snapshot = snapshot.use_extension(JSONSnapshotExtension)
    for name in ("CallbackDefaults", "CallbackConfigured"):
        assert normalize_template(assembly.templates[name]) == json_snapshot(name=name)


# ----------------------------------------------------------------------------- validation
def test_every_bad_prop_is_reported_in_one_error() -> None:
    import aws_cdk as cdk

    from cdk_serverless_patterns import CallbackPattern, JobSource
    from cdk_serverless_patterns.core import PropError

    # A JobSource checks its own fields when constructed (test_callback_sources.py); the pattern
    # names a source by its index for what only it checks, and for a source forced bad afterwards.
    bad = JobSource.translate_text_translation_job(namespace="other")
    object.__setattr__(bad, "namespace", "bad#ns")
    object.__setattr__(bad, "job_id_path", "detail.jobId")
    with pytest.raises(PropError) as raised:
        CallbackPattern(
            cdk.Stack(cdk.App(), "S"),
            "Callback",
            sources=[  # type: ignore[list-item]
                bad,
                JobSource.translate_text_translation_job(),
                JobSource.translate_text_translation_job(),
                "dms",
            ],
            completion_ttl=cdk.Duration.seconds(5),
            retry_attempts=500,
            max_event_age=cdk.Duration.days(3),
        )
    text = str(raised.value)
    for fragment in (
        "sources[0].namespace: 'bad#ns'",
        "sources[0].job_id_path",
        "sources[2].namespace: 'translate' is already registered",
        "sources[3]: must be a JobSource, got str",
        "completion_ttl",
        "retry_attempts",
        "max_event_age",
    ):
        assert fragment in text, f"{fragment!r} missing from:\n{text}"


def test_wait_for_job_validation() -> None:
    import aws_cdk as cdk

    from cdk_serverless_patterns import CallbackPattern, JobSource
    from cdk_serverless_patterns.core import PropError

    pattern = CallbackPattern(
        cdk.Stack(cdk.App(), "S"), "Callback", sources=[JobSource.translate_text_translation_job()]
    )
    with pytest.raises(PropError) as raised:
        pattern.wait_for_job(
            "Wait",
            source="unknown",
            job_id_path="",
            timeout=cdk.Duration.days(400),
            heartbeat=cdk.Duration.days(500),
            result_path="$.a-b",
            callback_secret_path="$.secret",
        )
    text = str(raised.value)
    for prop in ("source:", "job_id_path:", "timeout:", "heartbeat:", "result_path:", "callback_secret_path:"):
        assert prop in text, f"{prop} missing from:\n{text}"
    with pytest.raises(PropError, match="heartbeat: must be shorter than timeout"):
        pattern.wait_for_job(
            "Wait",
            source="translate",
            job_id_path="$.JobId",
            timeout=cdk.Duration.minutes(5),
            heartbeat=cdk.Duration.minutes(5),
        )
    with pytest.raises(PropError, match="already registered"):
        pattern.add_job_source(JobSource.translate_text_translation_job())
    with pytest.raises(PropError, match="timeout: is required"):
        pattern.wait_for_job("Wait", source="translate", job_id_path="$.JobId", timeout=None)  # type: ignore[arg-type]


def test_status_filter_is_not_added_twice() -> None:
    from cdk_serverless_patterns import JobSource

    source = JobSource(
        namespace="x",
        event_pattern={"source": ["a"], "detail": {"state": ["DONE", "ERROR"]}},
        job_id_path="$.detail.id",
        status_path="$.detail.state",
        success_statuses=["DONE"],
        failure_statuses=["ERROR"],
    )
    assert source.rule_pattern() == {"source": ["a"], "detail": {"state": ["DONE", "ERROR"]}}
    assert JobSource.bedrock_data_automation().rule_pattern()["detail-type"] == [
        "Bedrock Data Automation Job Succeeded",
        "Bedrock Data Automation Job Failed With Client Error",
        "Bedrock Data Automation Job Failed With Service Error",
    ]
