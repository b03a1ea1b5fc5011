"""Sample stack of the callback pattern: a Translate batch job, paused on, resumed by its event.

The workflow starts an Amazon Translate text translation job, waits for its completion event
through ``CallbackPattern`` (no polling loop), then writes a small result object next to the
translations, tagged with the job's status.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from cdk_serverless_patterns import CallbackPattern, JobSource
from cdk_serverless_patterns.core import acknowledge
from constructs import Construct

STACK_ID = "ServerlessPatternsCallback"
DESCRIPTION = "cdk-serverless-patterns: callback sample"


class CallbackSampleStack(cdk.Stack):
    """Translate -> wait for the job's event -> tag the outputs."""

    def __init__(self, scope: Construct, id: str = STACK_ID, *, env: cdk.Environment | None = None) -> None:
        super().__init__(scope, id, env=env, description=DESCRIPTION)
        translate = JobSource.translate_text_translation_job()
        self.pattern = CallbackPattern(self, "Callback", sources=[translate])

        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        )
        acknowledge(
            access_logs, "This bucket receives the server access logs of the documents bucket.", "AwsSolutions-S1"
        )
        self.bucket = s3.Bucket(
            self,
            "Documents",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="documents/",
        )
        translate_role = iam.Role(
            self,
            "TranslateDataAccess",
            assumed_by=iam.ServicePrincipal("translate.amazonaws.com"),
            description="Lets Amazon Translate read input/ and write output/ of the documents bucket",
        )
        # Least privilege: Translate lists and reads only input/, and writes only output/ (no grant
        # helper: CDK's grant_read covers the whole bucket and its action groups end in wildcards).
        translate_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[self.bucket.arn_for_objects("input/*")])
        )
        translate_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": ["input/", "input/*"]}},
            )
        )
        translate_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[self.bucket.arn_for_objects("output/*")])
        )
        acknowledge(
            translate_role,
            "Translate reads every document under input/ and writes its translations under output/ of the sample "
            "bucket: the wildcards are the object keys of exactly those two prefixes.",
            "AwsSolutions-IAM5[Resource::<Documents7E5B2978.Arn>/input/*]",
            "AwsSolutions-IAM5[Resource::<Documents7E5B2978.Arn>/output/*]",
        )

        start = tasks.CallAwsService(
            self,
            "Start translation job",
            service="translate",
            action="startTextTranslationJob",
            parameters={
                "JobName": sfn.JsonPath.format("sample-{}", sfn.JsonPath.execution_name),
                "DataAccessRoleArn": translate_role.role_arn,
                "SourceLanguageCode": sfn.JsonPath.string_at("$.sourceLanguage"),
                "TargetLanguageCodes": sfn.JsonPath.list_at("$.targetLanguages"),
                "InputDataConfig": {
                    "S3Uri": self.bucket.s3_url_for_object("input/"),
                    "ContentType": "text/plain",
                },
                "OutputDataConfig": {"S3Uri": self.bucket.s3_url_for_object("output/")},
                "ClientToken": sfn.JsonPath.execution_name,
            },
            iam_resources=["*"],
            additional_iam_statements=[
                iam.PolicyStatement(actions=["iam:PassRole"], resources=[translate_role.role_arn])
            ],
            result_selector={"JobId.$": "$.JobId", "JobStatus.$": "$.JobStatus"},
            result_path="$.started",
        )
        wait = self.pattern.wait_for_job(
            "Wait for translation",
            source=translate,
            job_id_path="$.started.JobId",
            timeout=cdk.Duration.hours(6),
            result_path="$.job",
        )
        tag_outputs = tasks.CallAwsService(
            self,
            "Tag outputs",
            service="s3",
            action="putObject",
            parameters={
                "Bucket": self.bucket.bucket_name,
                "Key": sfn.JsonPath.format("output/{}.result.json", sfn.JsonPath.string_at("$.started.JobId")),
                "Body": sfn.JsonPath.object_at("$.job"),
                "Tagging": sfn.JsonPath.format("job-status={}", sfn.JsonPath.string_at("$.job.jobStatus")),
                "ContentType": "application/json",
            },
            iam_resources=[self.bucket.arn_for_objects("output/*")],
            iam_action="s3:PutObject",
            additional_iam_statements=[
                iam.PolicyStatement(
                    actions=["s3:PutObjectTagging"], resources=[self.bucket.arn_for_objects("output/*")]
                )
            ],
        )
        failed = sfn.Fail(self, "Translation failed", error="TranslationFailed", cause="The translation job failed")
        wait.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        self.workflow = sfn.StateMachine(
            self,
            "Workflow",
            definition_body=sfn.DefinitionBody.from_chainable(start.next(wait).next(tag_outputs)),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(self, "WorkflowLogs", retention=logs.RetentionDays.ONE_MONTH),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,
            ),
            timeout=cdk.Duration.hours(7),
        )
        self.pattern.grant_wait(self.workflow)
        acknowledge(
            self.workflow,
            "translate:StartTextTranslationJob has no resource-level permission; X-Ray and log delivery of a state "
            "machine need Resource '*' (AWS forces these).",
            "AwsSolutions-IAM5[Resource::*]",
        )
        acknowledge(
            self.workflow,
            "The workflow writes one result object per job under output/ (the key holds the job id).",
            "AwsSolutions-IAM5[Resource::<Documents7E5B2978.Arn>/output/*]",
        )
        cdk.CfnOutput(self, "WorkflowArn", value=self.workflow.state_machine_arn)
        cdk.CfnOutput(self, "ResumerArn", value=self.pattern.resumer.state_machine_arn)
        cdk.CfnOutput(self, "TokenTableName", value=self.pattern.table.table_name)
