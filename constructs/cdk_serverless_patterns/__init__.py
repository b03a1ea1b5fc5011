"""cdk-serverless-patterns: AWS CDK L3 constructs for four serverless patterns.

The public API is what this module exports; everything else is internal.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
