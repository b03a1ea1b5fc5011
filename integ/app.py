#!/usr/bin/env python3
"""The sample app: one stack per pattern, all in one app.

``cdk.json`` runs this file; the tests, ``make demo`` and ``serverless-patterns`` call ``build_app``.
"""

from __future__ import annotations

import os

import aws_cdk as cdk
from sample_callback import CallbackSampleStack
from sample_circuit_breaker import CircuitBreakerSampleStack
from sample_streaming import StreamingSampleStack
from sample_tenancy import TenancySampleStack

#: One sample stack per pattern: each class owns its stack id (``STACK_ID``) and description.
SAMPLE_STACKS = (CircuitBreakerSampleStack, CallbackSampleStack, TenancySampleStack, StreamingSampleStack)


def build_app(outdir: str | None = None) -> cdk.App:
    """Builds the sample app, without synthesizing it."""
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION"),
    )
    for sample_stack in SAMPLE_STACKS:
        sample_stack(app, env=env)
    return app


if __name__ == "__main__":
    build_app().synth()
