"""EventBridge rules with a Step Functions target start an execution.

Measured on moto 5.2.5 (``moto.events.models.Rule.send_to_targets``): moto's rules deliver to
SQS, CloudWatch Logs, other buses and API destinations only; a ``states`` target raises
``NotImplementedError``.

AWS starts the state machine's execution with the event (or the target's ``Input``,
``InputPath`` or input transformer applied to it), and sends the event to the target's
dead-letter queue when the start fails. This patch does that with moto's own pattern matching and
the emulator's EventBridge input rules (:func:`cdk_serverless_patterns.local.events.target_input`,
the same as for Lambda targets: JSON paths with array indexes and wildcards, the predefined
``aws.events.*`` variables, values inside template strings inserted as text), and gives each
execution an explicit name (``event-<uuid>``; moto needs one). The event's ``time`` reaches the
execution as AWS sends it, an ISO 8601 string to the second (``"2024-01-01T12:00:00Z"``,
fractions dropped), also through an input transformer: moto holds it as a Unix timestamp (a number)
and converts it only on its SQS and logs paths.

Delete this module (and its line in ``patches.PATCHES``) when moto delivers to ``states`` targets.
"""

from __future__ import annotations

import uuid
from typing import Any


def at_path(event: Any, path: str) -> Any:
    """The value at a simple ``$.a.b`` path (a target's ``InputPath``)."""
    node = event
    for key in path.lstrip("$").strip(".").split("."):
        if key:
            node = node[key]
    return node


def event_time(value: Any) -> Any:
    """EventBridge's ``time``: ISO 8601 UTC to the second (``"2024-01-01T12:00:00Z"``), from the Unix
    timestamp (number or numeric text) moto holds; anything else is left as it is."""
    import datetime

    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return value
    moment = datetime.datetime.fromtimestamp(int(seconds // 1), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def install() -> None:
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    from cdk_serverless_patterns.local.events import target_input

    original = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        states_targets = [t for t in self.targets if parse_arn(t["Arn"]).service == "states"]
        others = [t for t in self.targets if t not in states_targets]
        if others:
            saved = self.targets
            self.targets = others
            try:
                original(self, original_event, transform_input)
            finally:
                self.targets = saved
        if not states_targets or not self.event_pattern.matches_event(original_event):
            return
        from moto.stepfunctions.responses import get_backend

        for target in states_targets:
            payload = target_input(target, dict(original_event), rule_arn=self.arn, rule_name=self.name)
            arn = parse_arn(target["Arn"])
            try:
                get_backend(arn.account, arn.region).start_execution(
                    state_machine_arn=target["Arn"],
                    name=f"event-{uuid.uuid4()}",
                    execution_input=payload.decode(),
                )
            except Exception:
                dead_letter = target.get("DeadLetterConfig", {}).get("Arn")
                if not dead_letter:
                    raise
                # moto's SQS path converts the Unix time itself (in place): hand it a copy.
                self._send_to_sqs_queue(parse_arn(dead_letter).resource_id, dict(original_event), None)

    setattr(Rule, "send_to_targets", send_to_targets)  # noqa: B010
