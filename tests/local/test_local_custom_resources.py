"""CDK's own custom resources run while LocalCloud deploys and destroys a stack.

The app (``apps/custom_resources_app.py``) has an S3 bucket with ``auto_delete_objects``, an
``AwsCustomResource`` writing to a DynamoDB table and a ``Provider``-framework resource with a Python
onEvent handler: Node.js functions of the CDK (run by ``node_runtime/bootstrap.mjs``) and the
``cloudformation_custom_resources`` bridge. The handlers need the AWS SDK v3 that Lambda's managed
Node.js runtime bundles: ``CDK_SP_NODE_MODULES`` or ``./node_modules`` must hold ``@aws-sdk/*``
(``client-s3``, ``client-dynamodb``, ``client-lambda``, ``client-sfn``, ``credential-providers``).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdk_serverless_patterns.local import LocalCloud
from cdk_serverless_patterns.local.cloud import LocalCloudError

APP = Path(__file__).resolve().parent / "apps" / "custom_resources_app.py"
TABLE = "cr-test-items"
SDK = ("client-s3", "client-dynamodb", "client-lambda", "client-sfn", "credential-providers")


def _sdk_folders() -> list[str]:
    own = [p for p in os.environ.get("CDK_SP_NODE_MODULES", "").split(":") if p]
    return own or ([str(Path.cwd() / "node_modules")] if (Path.cwd() / "node_modules" / "@aws-sdk").is_dir() else [])


def _has_sdk() -> bool:
    folders = _sdk_folders()
    return all(any((Path(f) / "@aws-sdk" / name).is_dir() for f in folders) for name in SDK)


pytestmark = pytest.mark.slow


@pytest.fixture
def node_sdk() -> None:
    """CDK's handlers need the AWS SDK v3 (package.json pins it, `npm ci` installs it): missing fails, never skips."""
    assert _has_sdk(), "the AWS SDK v3 for Node.js (@aws-sdk/*) is in neither CDK_SP_NODE_MODULES nor ./node_modules"


# A custom resource handler as CDK's and cfn-response write them: https.request({hostname, path}) PUT.
HANDLER = r"""
const https = require("https");
const url = require("url");
const seen = [];
exports.handler = async (event, context) => {
  seen.push(event.RequestType);
  const props = event.ResourceProperties;
  const failed = props.Fail === "true" && event.RequestType === "Create";
  const body = JSON.stringify({
    Status: failed ? "FAILED" : "SUCCESS",
    Reason: failed ? "refused on purpose" : "OK",
    PhysicalResourceId: event.PhysicalResourceId || `thing-${props.Name}`,
    StackId: event.StackId, RequestId: event.RequestId, LogicalResourceId: event.LogicalResourceId,
    Data: { Seen: seen.join(","), Types: [typeof props.Count, typeof props.Flag].join(",") },
  });
  const parsed = url.parse(event.ResponseURL);
  await new Promise((resolve, reject) => {
    const headers = { "content-type": "", "content-length": Buffer.byteLength(body) };
    const options = { hostname: parsed.hostname, path: parsed.path, method: "PUT", headers };
    const req = https.request(options, (res) => { res.resume(); resolve(); });
    req.on("error", reject);
    req.end(body);
  });
  if (event.RequestType === "Delete") {
    await new Promise((resolve) => require("fs").writeFile(props.Marker, event.PhysicalResourceId, resolve));
  }
};
"""


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    lines: list[str] = []
    cloud = LocalCloud(workdir=tmp_path_factory.mktemp("cr-cloud"), log=lines.append).start()
    try:
        yield cloud
    finally:
        cloud.close()


def _item(cloud: LocalCloud, pk: str) -> dict[str, Any] | None:
    found = cloud.session().client("dynamodb").get_item(TableName=TABLE, Key={"pk": {"S": pk}})
    return found.get("Item")


def _template(function_arn: str, marker: Path, fail: bool) -> str:
    properties = {"ServiceToken": function_arn, "Name": "one", "Count": 3, "Flag": True, "Marker": str(marker)}
    if fail:
        properties["Fail"] = True
    return json.dumps(
        {
            "Resources": {
                "Thing": {"Type": "Custom::Thing", "Properties": properties},
                "Generic": {
                    "Type": "AWS::CloudFormation::CustomResource",
                    "DependsOn": "Thing",
                    "Properties": {**properties, "Name": "two", "Fail": False},
                },
                "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Fn::GetAtt": ["Thing", "Seen"]}}},
            },
            "Outputs": {
                "Ref": {"Value": {"Ref": "Thing"}},
                "Types": {"Value": {"Fn::GetAtt": ["Thing", "Types"]}},
                "GenericRef": {"Value": {"Ref": "Generic"}},
            },
        }
    )


def test_create_waits_for_the_response_url_and_delete_is_sent(cloud: LocalCloud, tmp_path: Path) -> None:
    """Without the CDK or the SDK: a Node.js handler answers at the ResponseURL as CDK's handlers do."""
    session = cloud.session()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.js", HANDLER)
    trust = {
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    }
    role = session.client("iam").create_role(RoleName="cr-handler", AssumeRolePolicyDocument=json.dumps(trust))
    arn = session.client("lambda").create_function(
        FunctionName="cr-handler",
        Runtime="nodejs20.x",
        Role=role["Role"]["Arn"],
        Handler="index.handler",
        Code={"ZipFile": buffer.getvalue()},
        Timeout=10,
    )["FunctionArn"]
    cfn = session.client("cloudformation")
    marker = tmp_path / "deleted"
    cfn.create_stack(StackName="CrPlain", TemplateBody=_template(arn, marker, fail=False))
    stack = cfn.describe_stacks(StackName="CrPlain")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["Ref"] == "thing-one"  # the answer's PhysicalResourceId
    assert outputs["Types"] == "string,string"  # property values arrive as strings, as CloudFormation sends them
    assert outputs["GenericRef"] == "thing-two"  # AWS::CloudFormation::CustomResource is a custom resource too
    # The queue was created after the answer: its name is the answer's Data (the warm handler saw one Create).
    assert session.client("sqs").get_queue_url(QueueName="Create")["QueueUrl"]
    resources = {r["LogicalResourceId"]: r for r in cfn.describe_stack_resources(StackName="CrPlain")["StackResources"]}
    assert resources["Thing"]["PhysicalResourceId"] == "thing-one"

    cfn.delete_stack(StackName="CrPlain")
    assert marker.read_text() == "thing-one"  # Delete carried the physical id; Generic's marker came first
    assert "CrPlain" not in {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}

    cfn.create_stack(StackName="CrFails", TemplateBody=_template(arn, tmp_path / "never", fail=True))
    failed = cfn.describe_stacks(StackName="CrFails")["Stacks"][0]
    assert failed["StackStatus"] == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName="CrFails")["StackEvents"]
    reasons = [e.get("ResourceStatusReason", "") for e in events if e.get("ResourceStatus") == "CREATE_FAILED"]
    assert len(reasons) == 1 and "refused on purpose" in reasons[0]


@pytest.mark.usefixtures("node_sdk")
def test_custom_resources_run_on_deploy_and_on_destroy(cloud: LocalCloud) -> None:
    stacks = {stack.name: stack for stack in cloud.deploy(APP)}
    resources = stacks["CrResources"]
    # AwsCustomResource (Node.js, the SDK's DynamoDB client) put its item.
    assert _item(cloud, "aws-custom-resource") == {
        "pk": {"S": "aws-custom-resource"},
        "from": {"S": "AwsCustomResource"},
    }
    # The Provider framework (Node.js) ran the Python onEvent: its Data and PhysicalResourceId reach the stack.
    assert _item(cloud, "provider-create") == {"pk": {"S": "provider-create"}, "size": {"S": "21"}}
    assert resources.outputs["Answer"] == "42"
    assert resources.outputs["DoublerId"] == "provider-21"
    cfn = cloud.session().client("cloudformation")
    assert cfn.describe_stacks(StackName="CrResources")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"

    s3 = cloud.session().client("s3")
    bucket = resources.outputs["BucketName"]
    for key in ("a.txt", "b/c.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    cloud.destroy(["CrResources"])
    # Delete went to every custom resource before what it depends on was deleted.
    assert _item(cloud, "aws-custom-resource") is None  # AwsCustomResource's onDelete deleteItem
    assert _item(cloud, "provider-delete") == {"pk": {"S": "provider-delete"}, "size": {"S": "21"}}
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}  # emptied by autoDeleteObjects, deleted
    assert "CrResources" not in {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}


@pytest.mark.usefixtures("node_sdk")
def test_a_failed_custom_resource_fails_and_rolls_back_the_stack(cloud: LocalCloud) -> None:
    dynamodb = cloud.session().client("dynamodb")
    dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": "provider-create"}})
    with pytest.raises(LocalCloudError) as failure:
        cloud.deploy(APP, context={"cr_fail": "yes"}, stacks=["CrResources"])
    assert "the provider refused on purpose" in str(failure.value)
    assert _item(cloud, "provider-create") is not None  # the Python onEvent ran (and then raised)
    cfn = cloud.session().client("cloudformation")
    assert cfn.describe_stacks(StackName="CrResources")["Stacks"][0]["StackStatus"] == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName="CrResources")["StackEvents"]
    failed = [e for e in events if e.get("ResourceStatus") == "CREATE_FAILED"]
    assert [e["LogicalResourceId"] for e in failed] == ["Doubler"]
    assert "the provider refused on purpose" in failed[0]["ResourceStatusReason"]
