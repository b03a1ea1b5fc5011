"""``StreamingFunction``: a Python Lambda function whose generator handler streams its response.

AWS's managed Python runtime cannot stream a response (only Node.js can; AWS has said Python is
planned). This construct offers two routes:

- ``adapter="python"`` (default): the library's streaming layer (``lambda_src/streaming_runtime``,
  standard library only, under 40 KB zipped) and ``AWS_LAMBDA_EXEC_WRAPPER=/opt/serverless-streaming``.
  The wrapper replaces the managed runtime's client with a small pure-Python Runtime API client that
  posts the response in Lambda's streaming mode, chunk by chunk as the generator yields them. The
  handler is an ordinary ``module.function``: a generator of ``str``/``bytes`` chunks or SSE events.
  Cost: nothing beyond the function (the layer is free), no web framework, no extra process.
- ``adapter="web_adapter"``: AWS's Lambda Web Adapter layer (a Rust binary, published by AWS in account
  ``753240598075``; ``AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap``, ``AWS_LWA_INVOKE_MODE=response_stream``)
  in front of a web application the user brings (FastAPI, Flask...); ``handler`` is the app's start
  script (``run.sh``). Cost: the app's web server starts in every execution environment (a slower
  cold start, more memory), and the adapter's layer is not part of this library's tests. It exists
  for teams that already have a web app. Layer ARNs (``web_adapter_layer_arn``): commercial regions
  ``arn:aws:lambda:<region>:753240598075:layer:LambdaAdapterLayer{X86,Arm64}:<version>``; China
  (x86_64 only) ``arn:aws-cn:lambda:cn-north-1:041581134020:layer:LambdaAdapterLayerX86:<version>`` and
  ``arn:aws-cn:lambda:cn-northwest-1:069767869989:layer:LambdaAdapterLayerX86:<version>``. The
  default version, 24, is the one the adapter's README lists for its v0.9.0 release
  (github.com/awslabs/aws-lambda-web-adapter); newer versions are published: pass
  ``web_adapter_layer_version``. No layer is published for GovCloud, the ISO partitions or arm64 in
  China: those are synth-time errors. An environment-agnostic stack gets the commercial ARN with
  ``${AWS::Region}`` (it cannot know its partition at synthesis): give the stack an ``env`` to deploy
  to China.

One streaming layer per stack, shared by every streaming function and WebSocket driver in it: the
layer is pure Python and a POSIX shell script, so one layer serves both architectures.

Existing functions: the transports (``StreamingRestApi``, ``StreamingFunctionUrl``) also accept a plain
``lambda_.IFunction`` that already streams (a Node.js function, or one built by hand with this
layer); ``WebSocketStreamingApi`` needs a ``StreamingFunction`` (it builds its driver from the same
code and handler).

Token sources: ``bedrock_models`` (foundation-model or inference-profile ARNs) grants
``bedrock:InvokeModelWithResponseStream`` (what ``ConverseStream`` needs) on exactly those ARNs, never
``*``, and sets ``STREAMING_TOKEN_SOURCE=bedrock`` and ``STREAMING_MODEL_ID``; ``token_source="offline"``
sets the deterministic offline source of the demo and the tests. A cross-region inference profile also
needs the permission on the foundation models it routes to: list their ARNs too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from cdk_serverless_patterns.core import PropErrors, acknowledge, lambda_code
from cdk_serverless_patterns.core.functions import DEFAULT_ARCHITECTURE, DEFAULT_LOG_RETENTION, DEFAULT_RUNTIME
from cdk_serverless_patterns.streaming import contract
from constructs import Construct

__all__ = [
    "ADAPTERS",
    "MAX_TIMEOUT",
    "RESERVED_ENVIRONMENT",
    "WEB_ADAPTER_DEFAULT_VERSION",
    "StreamingFunction",
    "streaming_layer",
    "web_adapter_layer_arn",
]

ADAPTERS = ("python", "web_adapter")
#: Lambda's maximum timeout, and API Gateway's for a streamed REST response.
MAX_TIMEOUT = cdk.Duration.minutes(15)
#: The Lambda Web Adapter layer version the adapter's README lists for v0.9.0.
WEB_ADAPTER_DEFAULT_VERSION = 24
_WEB_ADAPTER_COMMERCIAL_ACCOUNT = "753240598075"
#: China regions with a published (x86_64 only) adapter layer: region -> publishing account.
_WEB_ADAPTER_CHINA = {"cn-north-1": "041581134020", "cn-northwest-1": "069767869989"}
#: Environment variables the construct sets; a user's ``environment`` may not.
RESERVED_ENVIRONMENT = frozenset(
    {
        contract.ENV_EXEC_WRAPPER,
        contract.ENV_STREAMING_HANDLER,
        contract.ENV_CONNECTIONS_TABLE,
        contract.ENV_TOKEN_SOURCE,
        contract.ENV_MODEL_ID,
        contract.ENV_FRAME_BYTES,
        contract.ENV_FRAME_MS,
        contract.WEB_ADAPTER_INVOKE_MODE_VARIABLE,
        contract.ENV_WS_DISPATCH,
    }
)
_PYTHON_HANDLER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_SCRIPT_HANDLER = re.compile(r"[^\s]{1,128}")
_BEDROCK_ARN = re.compile(
    r"arn:aws[a-z-]*:bedrock:[a-z0-9-]*:(\d{12})?:"
    r"(foundation-model|inference-profile|application-inference-profile|provisioned-model|custom-model)/[^*?\s]+"
)
_ENV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def streaming_layer(scope: Construct) -> lambda_.LayerVersion:
    """The stack's one streaming layer (created on first use, shared afterwards)."""
    stack = cdk.Stack.of(scope)
    layer_id = "CdkServerlessPatternsStreamingRuntime"
    existing = stack.node.try_find_child(layer_id)
    if isinstance(existing, lambda_.LayerVersion):
        return existing
    return lambda_.LayerVersion(
        stack,
        layer_id,
        code=lambda_code(contract.RUNTIME_ASSET),
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_12, lambda_.Runtime.PYTHON_3_13, lambda_.Runtime.PYTHON_3_14],
        compatible_architectures=[lambda_.Architecture.ARM_64, lambda_.Architecture.X86_64],
        description="cdk-serverless-patterns streaming: a Runtime API client that streams generator handlers",
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )


def web_adapter_layer_arn(scope: Construct, architecture: lambda_.Architecture, version: int) -> str | None:
    """The Lambda Web Adapter layer ARN for the stack of ``scope``, or ``None`` where none is published."""
    stack = cdk.Stack.of(scope)
    x86 = architecture.name == lambda_.Architecture.X86_64.name
    name = "LambdaAdapterLayerX86" if x86 else "LambdaAdapterLayerArm64"
    region = stack.region
    if cdk.Token.is_unresolved(region):
        return f"arn:aws:lambda:{region}:{_WEB_ADAPTER_COMMERCIAL_ACCOUNT}:layer:{name}:{version}"
    if region in _WEB_ADAPTER_CHINA:
        return f"arn:aws-cn:lambda:{region}:{_WEB_ADAPTER_CHINA[region]}:layer:{name}:{version}" if x86 else None
    if region.startswith(("cn-", "us-gov-", "us-iso", "eu-isoe-")):
        return None
    return f"arn:aws:lambda:{region}:{_WEB_ADAPTER_COMMERCIAL_ACCOUNT}:layer:{name}:{version}"


def check_bedrock_models(errors: PropErrors, bedrock_models: Sequence[str] | None) -> None:
    """Records every problem of ``bedrock_models``: concrete ARNs of models or inference profiles, no wildcard."""
    if bedrock_models is None:
        return
    if isinstance(bedrock_models, str) or not errors.require(
        bool(list(bedrock_models)), "bedrock_models", "must list at least one model or inference-profile ARN"
    ):
        if isinstance(bedrock_models, str):
            errors.add("bedrock_models", "must be a list of ARNs, not one string")
        return
    for arn in bedrock_models:
        if not isinstance(arn, str):
            errors.add("bedrock_models", f"{arn!r} is not an ARN")
        elif cdk.Token.is_unresolved(arn):
            continue
        else:
            errors.require(
                bool(_BEDROCK_ARN.fullmatch(arn)),
                "bedrock_models",
                f"{arn!r} is not the ARN of a Bedrock foundation model or inference profile (no wildcards: "
                "the grant is scoped to exactly these)",
            )


class StreamingFunction(Construct):
    """A Python function whose generator handler streams (see the module documentation).

    Args:
        handler: ``module.function`` of the generator handler (``adapter="python"``), or the web app's
            start script (``adapter="web_adapter"``).
        code: The function's code. Give exactly one of ``code`` and ``code_path``.
        code_path: A folder of Lambda code (bundled like the library's own assets).
        runtime: A Python runtime. Default: Python 3.14.
        architecture: Default: ARM64.
        memory_size: MB, 128-10240. Default: 512.
        timeout: Up to 15 minutes (whole seconds). Default: 5 minutes: the idle timeout of a regional
            REST API, and long enough for a long LLM answer.
        environment: The user's variables (the construct's own names, ``STREAMING_*`` and the exec
            wrapper, are refused). Default: none.
        environment_encryption: A customer-managed key for the environment. Default: AWS-managed.
        adapter: ``"python"`` (the streaming layer) or ``"web_adapter"`` (AWS's Lambda Web Adapter in
            front of a web app). Default: ``"python"``.
        web_adapter_layer_version: The Web Adapter layer version. Default: 24.
        bedrock_models: Foundation-model or inference-profile ARNs the handler may stream from with
            ``ConverseStream``. Default: none (no Bedrock permission).
        token_source: ``"bedrock"`` or ``"offline"`` (``STREAMING_TOKEN_SOURCE``). Default: ``"bedrock"`` with
            ``bedrock_models``, else unset.
        model_id: ``STREAMING_MODEL_ID``. Default: the first of ``bedrock_models``.
        description: Default: derived from the construct path.
        log_retention: Default: one month.
        log_removal_policy: Default: RETAIN.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        handler: str,
        code: lambda_.Code | None = None,
        code_path: Path | None = None,
        runtime: lambda_.Runtime = DEFAULT_RUNTIME,
        architecture: lambda_.Architecture = DEFAULT_ARCHITECTURE,
        memory_size: int = 512,
        timeout: cdk.Duration = cdk.Duration.minutes(5),
        environment: Mapping[str, str] | None = None,
        environment_encryption: kms.IKey | None = None,
        adapter: str = "python",
        web_adapter_layer_version: int = WEB_ADAPTER_DEFAULT_VERSION,
        bedrock_models: Sequence[str] | None = None,
        token_source: str | None = None,
        model_id: str | None = None,
        description: str | None = None,
        log_retention: logs.RetentionDays = DEFAULT_LOG_RETENTION,
        log_removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        errors.require((code is None) != (code_path is None), "code", "give exactly one of code and code_path")
        if code_path is not None:
            errors.require(Path(code_path).is_dir(), "code_path", f"{code_path} is not a folder")
        errors.one_of(adapter, "adapter", ADAPTERS)
        if adapter == "web_adapter":
            errors.require(
                isinstance(handler, str) and bool(_SCRIPT_HANDLER.fullmatch(handler)),
                "handler",
                f"{handler!r} must be the web app's start script (1-128 characters, no spaces)",
            )
        else:
            errors.require(
                isinstance(handler, str) and len(handler) <= 128 and bool(_PYTHON_HANDLER.fullmatch(handler)),
                "handler",
                f"{handler!r} must be module.function (Python identifiers, dots allowed in the module)",
            )
        errors.require(
            isinstance(runtime, lambda_.Runtime) and runtime.family == lambda_.RuntimeFamily.PYTHON,
            "runtime",
            f"{getattr(runtime, 'name', runtime)!r} is not a Python runtime: the streaming runtime and the "
            "WebSocket driver are Python",
        )
        errors.require(
            isinstance(memory_size, int) and 128 <= memory_size <= 10240,
            "memory_size",
            f"must be an integer from 128 to 10240, got {memory_size!r}",
        )
        errors.duration_between(
            timeout, "timeout", minimum=cdk.Duration.seconds(1), maximum=MAX_TIMEOUT, concrete=True, whole_seconds=True
        )
        for name in environment or {}:
            errors.require(
                isinstance(name, str) and bool(_ENV_NAME.fullmatch(name)),
                "environment",
                f"{name!r} is not an environment variable name",
            )
            errors.require(
                name not in RESERVED_ENVIRONMENT and not str(name).startswith("AWS_LWA_"),
                "environment",
                f"{name}: set by the construct",
            )
        errors.require(
            isinstance(web_adapter_layer_version, int) and web_adapter_layer_version >= 1,
            "web_adapter_layer_version",
            f"must be a positive layer version, got {web_adapter_layer_version!r}",
        )
        check_bedrock_models(errors, bedrock_models)
        if token_source is not None:
            errors.one_of(token_source, "token_source", contract.TOKEN_SOURCES)
        source = token_source or ("bedrock" if bedrock_models else None)
        errors.require(
            source != "bedrock" or bool(bedrock_models),
            "token_source",
            "bedrock needs bedrock_models: the function may only call the models it is granted",
        )
        errors.require(
            model_id is None or source == "bedrock",
            "model_id",
            "is the Bedrock model of token_source bedrock; give bedrock_models",
        )
        adapter_layer_arn: str | None = None
        if adapter == "web_adapter" and isinstance(architecture, lambda_.Architecture):
            adapter_layer_arn = web_adapter_layer_arn(self, architecture, web_adapter_layer_version)
            errors.require(
                adapter_layer_arn is not None,
                "adapter",
                f"no Lambda Web Adapter layer is published for {architecture.name} in {cdk.Stack.of(self).region} "
                "(commercial regions; China: x86_64 only; none in GovCloud or the ISO partitions)",
            )
        errors.raise_if_any()

        self._handler = handler
        self._code = (
            code if code is not None else lambda_code(Path(str(code_path)), architecture=architecture, runtime=runtime)
        )
        self._runtime = runtime
        self._architecture = architecture
        self._memory_size = memory_size
        self._timeout = timeout
        self._adapter = adapter
        self._bedrock_models = list(bedrock_models or [])
        self._environment_encryption = environment_encryption
        self._log_retention = log_retention
        self._log_removal_policy = log_removal_policy
        token_environment: dict[str, str] = {}
        if source is not None:
            token_environment[contract.ENV_TOKEN_SOURCE] = source
        if source == "bedrock":
            token_environment[contract.ENV_MODEL_ID] = model_id or self._bedrock_models[0]
        #: The user's variables and the token source's: what the WebSocket driver gets too.
        self._environment = {**dict(environment or {}), **token_environment}

        self._log_group = logs.LogGroup(self, "LogGroup", retention=log_retention, removal_policy=log_removal_policy)
        self._role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the streaming function {self.node.path}"[:1000],
        )
        self._role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self._log_group.log_group_arn]
            )
        )
        self.grant_bedrock(self._role)
        wrapper_environment: dict[str, str]
        layers: list[lambda_.ILayerVersion]
        self._layer: lambda_.LayerVersion | None = None
        self._web_adapter_layer: lambda_.ILayerVersion | None = None
        if adapter == "web_adapter":
            assert adapter_layer_arn is not None
            self._web_adapter_layer = lambda_.LayerVersion.from_layer_version_arn(
                self, "WebAdapterLayer", adapter_layer_arn
            )
            layers = [self._web_adapter_layer]
            wrapper_environment = {
                contract.ENV_EXEC_WRAPPER: contract.WEB_ADAPTER_EXEC_WRAPPER,
                contract.WEB_ADAPTER_INVOKE_MODE_VARIABLE: contract.WEB_ADAPTER_INVOKE_MODE_STREAM,
            }
        else:
            self._layer = streaming_layer(self)
            layers = [self._layer]
            wrapper_environment = {contract.ENV_EXEC_WRAPPER: contract.EXEC_WRAPPER_PATH}
        self._function = lambda_.Function(
            self,
            "Function",
            runtime=runtime,
            architecture=architecture,
            code=self._code,
            handler=handler,
            description=description or f"Streams the generator handler {handler}"[:256],
            environment={**self._environment, **wrapper_environment},
            environment_encryption=environment_encryption,
            timeout=timeout,
            memory_size=memory_size,
            role=self._role,
            log_group=self._log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            layers=layers,
        )
        acknowledge(
            self._role,
            "X-Ray PutTraceSegments and PutTelemetryRecords have no resource-level permissions (AWS forces '*').",
            "AwsSolutions-IAM5[Resource::*]",
        )
        acknowledge(
            self._function,
            "A streaming function answers synchronous streamed invocations (API Gateway STREAM, function URLs, "
            "InvokeWithResponseStream) whose caller receives every error in the stream; an asynchronous "
            "invocation cannot stream, so dead-letter queues and failure destinations never apply.",
            "Serverless-LambdaDLQ",
            "Serverless-LambdaAsyncFailureDestination",
        )

    def grant_bedrock(self, grantee: iam.IGrantable) -> None:
        """Grants ``bedrock:InvokeModelWithResponseStream`` on exactly ``bedrock_models`` (nothing without them)."""
        if self._bedrock_models:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(actions=[contract.BEDROCK_STREAM_ACTION], resources=list(self._bedrock_models))
            )

    # ----------------------------------------------------------------------------------------------
    @property
    def function(self) -> lambda_.Function:
        """The streaming function."""
        return self._function

    @property
    def role(self) -> iam.Role:
        """Its execution role."""
        return self._role

    @property
    def log_group(self) -> logs.ILogGroup:
        """Its log group (JSON logs)."""
        return self._log_group

    @property
    def layer(self) -> lambda_.LayerVersion | None:
        """The stack's streaming layer (``adapter="python"``)."""
        return self._layer

    @property
    def web_adapter_layer(self) -> lambda_.ILayerVersion | None:
        """The Lambda Web Adapter layer (``adapter="web_adapter"``)."""
        return self._web_adapter_layer

    @property
    def code(self) -> lambda_.Code:
        """The function's code (the WebSocket driver runs the same code)."""
        return self._code

    @property
    def handler(self) -> str:
        """The user's handler."""
        return self._handler

    @property
    def runtime(self) -> lambda_.Runtime:
        return self._runtime

    @property
    def architecture(self) -> lambda_.Architecture:
        return self._architecture

    @property
    def memory_size(self) -> int:
        return self._memory_size

    @property
    def timeout(self) -> cdk.Duration:
        return self._timeout

    @property
    def adapter(self) -> str:
        """``"python"`` or ``"web_adapter"``."""
        return self._adapter

    @property
    def environment(self) -> Mapping[str, str]:
        """The user's variables and the token source's (without the exec wrapper)."""
        return dict(self._environment)

    @property
    def environment_encryption(self) -> kms.IKey | None:
        return self._environment_encryption

    @property
    def log_retention(self) -> logs.RetentionDays:
        return self._log_retention

    @property
    def log_removal_policy(self) -> cdk.RemovalPolicy:
        return self._log_removal_policy

    @property
    def bedrock_models(self) -> list[str]:
        """The model and inference-profile ARNs the function may stream from."""
        return list(self._bedrock_models)
