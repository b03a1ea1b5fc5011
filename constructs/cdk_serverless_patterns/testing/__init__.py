"""Helpers for testing stacks built with these constructs: import them in your own tests.

- ``normalize_template``: a synthesized template with volatile values (asset hashes, CDK version
  metadata) replaced, for snapshot tests that change only when the infrastructure changes.
- ``synth_with_checks`` and ``cfn_lint_findings``: cdk-nag and cfn-lint findings of an app
  (needs the ``check`` extra).
- ``testing.moto``: the patterns' tables in moto and the Lambda modules of ``lambda_src/``, for
  testing runtime code without the CDK.
"""

from cdk_serverless_patterns.testing.snapshot import normalize_template

__all__ = ["normalize_template"]
