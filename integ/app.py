#!/usr/bin/env python3
"""The sample app: one stack per pattern, all in one app.

``cdk.json`` runs this file; the tests, ``make demo`` and ``serverless-patterns`` call ``build_app``.
"""

from __future__ import annotations

import os

import aws_cdk as cdk
from sample_callback import CallbackSampleStack
from sample_circuit_breaker import add_circuit_breaker_stack

STACK_PREFIX = "ServerlessPatterns"


def build_app(outdir: str | None = None) -> cdk.App:
    """Builds the sample app, without synthesizing it."""
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION"),
    )
    add_circuit_breaker_stack(app, env)
    CallbackSampleStack(app, f"{STACK_PREFIX}Callback", env=env, description="cdk-serverless-patterns: callback sample")
    return app


if __name__ == "__main__":
    build_app().synth()
