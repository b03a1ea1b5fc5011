"""EventBridge rules with a Lambda target invoke the function asynchronously.

Measured on moto 5.2.5 (``moto.events.models.Rule.send_to_targets``): a ``lambda`` target raises
``NotImplementedError`` (and ``PutEvents`` answers 500). AWS invokes the function asynchronously
with the event, or with the target's ``Input``, ``InputPath`` or input transformer applied to it.

This patch takes the Lambda targets out of moto's loop (the other targets, Step Functions ones
included, go on to the previous ``send_to_targets``, see ``eventbridge_targets``) and hands each
matching event to :func:`cdk_serverless_patterns.local.events.deliver_to_lambda`, which applies
EventBridge's input rules and queues the invocation with Lambda's asynchronous semantics
(retries, destinations, dead-letter queues) when a LocalCloud runs; without one, the function is
invoked once in a thread.

Delete this module (and its line in ``patches.PATCHES``) when moto delivers to ``lambda`` targets.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    from cdk_serverless_patterns.local.events import deliver_to_lambda

    previous = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        lambda_targets = [t for t in self.targets if parse_arn(t["Arn"]).service == "lambda"]
        if not lambda_targets:
            previous(self, original_event, transform_input)
            return
        others = [t for t in self.targets if t not in lambda_targets]
        if others:
            saved = self.targets
            self.targets = others
            try:
                previous(self, original_event, transform_input)
            finally:
                self.targets = saved
        if not self.event_pattern.matches_event(original_event):
            return
        for target in lambda_targets:
            deliver_to_lambda(self, target, dict(original_event))

    setattr(Rule, "send_to_targets", send_to_targets)  # noqa: B010
