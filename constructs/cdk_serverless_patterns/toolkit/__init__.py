"""The ``serverless-patterns`` command: synth, check, deploy, local, demo and circuit."""
