"""Acknowledging cdk-nag findings in the construct that causes them, always with a reason.

cdk-nag 3 reports through CDK's policy validation (``Validations.of(app).add_plugins(...)``);
a finding is acknowledged with ``Validations.of(scope).acknowledge(Acknowledgment(id, reason))``,
where the id is ``<Pack>::<RuleId>`` or ``<Pack>::<RuleId>[<finding>]`` for one finding of a rule
that reports several (IAM5 wildcards).
"""

from __future__ import annotations

from collections.abc import Iterable

import aws_cdk as cdk

from constructs import IConstruct

_PACKS = {"AwsSolutions", "Serverless", "HIPAA.Security", "NIST.800.53.R4", "NIST.800.53.R5", "PCI.DSS.321"}
MIN_REASON_LENGTH = 20


def rule_id(rule: str) -> str:
    """Normalizes ``AwsSolutions-IAM5[Action::x]`` to cdk-nag 3's ``AwsSolutions::AwsSolutions-IAM5[Action::x]``."""
    if "::" in rule.split("[", 1)[0]:
        return rule
    pack = rule.split("-", 1)[0]
    if pack not in _PACKS:
        raise ValueError(f"rule {rule!r} does not start with a known cdk-nag pack ({', '.join(sorted(_PACKS))})")
    return f"{pack}::{rule}"


def acknowledge(scope: IConstruct, reason: str, *rules: str) -> None:
    """Acknowledges each of ``rules`` on ``scope`` (and below) with ``reason``.

    The reason must say why the finding is acceptable: an empty or token reason is refused.
    """
    text = reason.strip()
    if len(text) < MIN_REASON_LENGTH:
        raise ValueError(
            f"acknowledging {', '.join(rules) or 'a rule'} needs a real reason (at least {MIN_REASON_LENGTH} "
            f"characters), got {reason!r}"
        )
    if not rules:
        raise ValueError("acknowledge needs at least one rule id")
    validations = cdk.Validations.of(scope)
    for rule in rules:
        validations.acknowledge(cdk.Acknowledgment(id=rule_id(rule), reason=text))


def acknowledge_wildcards(scope: IConstruct, reason: str, findings: Iterable[str]) -> None:
    """Acknowledges individual AwsSolutions-IAM5 wildcard findings (``Action::...``/``Resource::...``)."""
    acknowledge(scope, reason, *(f"AwsSolutions-IAM5[{finding}]" for finding in findings))
