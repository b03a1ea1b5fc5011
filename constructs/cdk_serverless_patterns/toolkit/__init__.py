"""The ``serverless-patterns`` command: synth, check, deploy and demo."""
