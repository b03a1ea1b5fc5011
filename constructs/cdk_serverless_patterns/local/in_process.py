"""The emulator in this process: moto's ``mock_aws`` with the patches, for tests and benchmarks.

::

    from cdk_serverless_patterns.local import emulator

    with emulator() as aws:
        deployment = aws.deploy(template)
        sfn = aws.session.client("stepfunctions")
        sfn.start_execution(stateMachineArn=deployment.arn(...), ...)

State machines run for real in moto's Step Functions interpreter; AWS state starts empty and is
gone when the block ends. Every boto3 client in the process reaches moto while the block runs (the
clients of ``session`` are bound to the emulator's region).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cdk_serverless_patterns.local.deploy import Deployment, deploy_template

if TYPE_CHECKING:
    from moto.core.config import DefaultConfig

#: moto's configuration: state machines execute (moto only records them otherwise).
MOTO_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}}


class Emulator:
    """AWS in this process: ``session`` (a boto3 session in ``region``) and :meth:`deploy`."""

    def __init__(self, session: Any, region: str) -> None:
        self.session = session
        self.region = region

    def deploy(self, template: Mapping[str, Any], prefix: str = "") -> Deployment:
        """Creates the template's tables, queues, state machines and rules (see
        :func:`~cdk_serverless_patterns.local.deploy.deploy_template`)."""
        return deploy_template(template, self.session, region=self.region, prefix=prefix)


@contextmanager
def emulator(*, region: str = "us-east-1") -> Iterator[Emulator]:
    """Installs the patches (:mod:`cdk_serverless_patterns.local.patches`) and runs the block in
    ``moto.mock_aws`` with state machines executing."""
    import boto3
    from moto import mock_aws

    from cdk_serverless_patterns.local import patches

    patches.install()
    with mock_aws(config=MOTO_CONFIG):
        yield Emulator(boto3.Session(region_name=region), region)
