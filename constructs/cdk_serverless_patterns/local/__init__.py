"""The embedded local AWS emulator: moto, and what it lacks for the synthesized templates, bridged.

Sits on top of the constructs: nothing in core or a pattern package imports it, and nothing here
imports the CDK. Importing this package imports neither moto nor the CDK; the names below load
on first use (PEP 562).

- :func:`emulator` (``in_process.py``): the one entry point for tests and benchmarks. A context
  manager that installs the patches, enters ``moto.mock_aws`` with state machines executing, and
  yields an :class:`Emulator` (``session``: a boto3 session; ``deploy(template, prefix="")``).
- ``server.py``: :class:`MotoServer`, moto's ``ThreadedMotoServer`` on a free loopback port, with
  the endpoint environment a process needs to use it.
- ``lambda_runtime.py`` (with ``runtime_api.py``): :class:`LambdaRunner`, warm Lambda execution
  environments as processes (``awslambdaric`` and the extensions of ``/opt/extensions``, layers
  mounted at ``/opt``) served the Runtime API (buffered and streaming) and the Extensions API;
  :func:`route_moto_invoke` hands moto's Invoke to it. ``lambda_environment.py``: one such
  environment with a fixed AWS endpoint, for the extension tests.
- ``front_door.py`` (``front_door_core/rest/url/ws.py``): REST APIs, function URLs and WebSocket
  APIs served on localhost from the template.
- ``patches/``: one module per moto gap (JSONata, aws-sdk parameter names, EventBridge to Step
  Functions, SendTaskFailure's cause, Parallel ``States.*`` errors, StopExecution of waiting
  tasks, the ASL parser's shared scope), each naming the moto version it was measured on;
  ``patches.install()`` applies them all. :func:`route_aws_sdk` answers an ``aws-sdk`` task moto
  lacks.
- ``deploy.py``: :func:`deploy_template` creates a template's tables, queues, state machines and
  rules in moto (one entry per resource type in ``RESOURCE_TYPES``) and returns a
  :class:`Deployment` of names and ARNs.
- ``ttl.py``: :func:`expire_items` deletes what DynamoDB TTL would.
- ``cloud.py``: :class:`LocalCloud`, CDK apps deployed with the real CDK CLI into moto's server,
  with the Lambda runner, the front door and the event movers (``events.py``: Lambda's
  asynchronous invocations, EventBridge to Lambda, Scheduler; ``stack_resolver.py``: intrinsics
  of a deployed stack).
- ``moto_bridge.py``: the former single module, kept as a re-export for compatibility.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdk_serverless_patterns._lazy import lazy_exports

# Public name -> module that defines it. A new export goes here, in the TYPE_CHECKING block and in __all__.
_EXPORTS = {
    "ACCOUNT": "cdk_serverless_patterns.local.deploy",
    "DeployedStack": "cdk_serverless_patterns.local.cloud",
    "LocalCloud": "cdk_serverless_patterns.local.cloud",
    "LocalCloudError": "cdk_serverless_patterns.local.cloud",
    "Deployment": "cdk_serverless_patterns.local.deploy",
    "deploy_template": "cdk_serverless_patterns.local.deploy",
    "Emulator": "cdk_serverless_patterns.local.in_process",
    "emulator": "cdk_serverless_patterns.local.in_process",
    "MotoServer": "cdk_serverless_patterns.local.server",
    "expire_items": "cdk_serverless_patterns.local.ttl",
    "FunctionSpec": "cdk_serverless_patterns.local.lambda_runtime",
    "InvokeResult": "cdk_serverless_patterns.local.lambda_runtime",
    "LambdaRunner": "cdk_serverless_patterns.local.lambda_runtime",
    "StreamingInvoke": "cdk_serverless_patterns.local.lambda_runtime",
    "route_moto_invoke": "cdk_serverless_patterns.local.lambda_runtime",
    "spec_from_moto": "cdk_serverless_patterns.local.lambda_runtime",
    "FrontDoor": "cdk_serverless_patterns.local.front_door",
    "route_aws_sdk": "cdk_serverless_patterns.local.patches.aws_sdk_parameters",
}

if TYPE_CHECKING:
    from cdk_serverless_patterns.local.cloud import DeployedStack, LocalCloud, LocalCloudError
    from cdk_serverless_patterns.local.deploy import ACCOUNT, Deployment, deploy_template
    from cdk_serverless_patterns.local.front_door import FrontDoor
    from cdk_serverless_patterns.local.in_process import Emulator, emulator
    from cdk_serverless_patterns.local.lambda_runtime import (
        FunctionSpec,
        InvokeResult,
        LambdaRunner,
        StreamingInvoke,
        route_moto_invoke,
        spec_from_moto,
    )
    from cdk_serverless_patterns.local.patches.aws_sdk_parameters import route_aws_sdk
    from cdk_serverless_patterns.local.server import MotoServer
    from cdk_serverless_patterns.local.ttl import expire_items

__all__ = [
    "ACCOUNT",
    "DeployedStack",
    "Deployment",
    "Emulator",
    "FrontDoor",
    "FunctionSpec",
    "InvokeResult",
    "LambdaRunner",
    "LocalCloud",
    "LocalCloudError",
    "MotoServer",
    "StreamingInvoke",
    "deploy_template",
    "emulator",
    "expire_items",
    "route_aws_sdk",
    "route_moto_invoke",
    "spec_from_moto",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
