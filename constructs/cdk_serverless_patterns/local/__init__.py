"""The embedded local AWS emulator (moto server) and the small adapters for what moto lacks.

Sits on top of the constructs: nothing in core or a pattern package imports it.

- :mod:`cdk_serverless_patterns.local.moto_bridge`: the one adapter between synthesized templates
  and moto's Step Functions interpreter (JSONata, aws-sdk parameter names, EventBridge to Step
  Functions, and the other gaps it documents), ``deploy_template`` to create a stack's tables,
  queues, state machines and rules in moto, and ``expire_items`` for DynamoDB TTL. Call
  ``moto_bridge.install()`` in the process that runs moto (in-process ``mock_aws`` or a
  ``ThreadedMotoServer``) before starting executions.
"""
