"""``python -m cdk_serverless_patterns`` is the ``serverless-patterns`` command."""

from cdk_serverless_patterns.toolkit.cli import main

raise SystemExit(main())
