"""Kept for compatibility: the names users' tests import from here, re-exported.

The bridge was split (``install`` applies every patch of :mod:`cdk_serverless_patterns.local.patches`,
one module per moto gap; ``route_aws_sdk`` lives in :mod:`~cdk_serverless_patterns.local.patches.aws_sdk_parameters`;
``deploy_template``, ``Deployment`` and ``ACCOUNT`` in :mod:`cdk_serverless_patterns.local.deploy`;
``expire_items`` in :mod:`cdk_serverless_patterns.local.ttl`). New code uses
:func:`cdk_serverless_patterns.local.emulator`, which installs the patches, enters moto and deploys.
"""

from __future__ import annotations

from cdk_serverless_patterns.local.deploy import ACCOUNT, Deployment, deploy_template
from cdk_serverless_patterns.local.patches import install
from cdk_serverless_patterns.local.patches.aws_sdk_parameters import route_aws_sdk
from cdk_serverless_patterns.local.ttl import expire_items

__all__ = ["ACCOUNT", "Deployment", "deploy_template", "expire_items", "install", "route_aws_sdk"]
