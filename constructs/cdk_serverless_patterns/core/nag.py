"""Acknowledging cdk-nag findings in the construct that causes them, always with a reason.

cdk-nag 3 reports through CDK's policy validation (``Validations.of(app).add_plugins(...)``);
a finding is acknowledged with ``Validations.of(scope).acknowledge(Acknowledgment(id, reason))``,
where the id is ``<Pack>::<RuleId>`` or ``<Pack>::<RuleId>[<finding>]`` for one finding of a rule
that reports several (IAM5 wildcards).

:func:`acknowledge` also takes cfn-lint rule ids (``W3005``): cfn-lint has no acknowledgments, it
skips a rule on a resource whose ``Metadata`` says ``{"cfn-lint": {"config": {"ignore_checks": [...]}}}``.
An aspect writes that on every CloudFormation resource at or below the scope when the app is
synthesized (so resources added after the call are covered too, as CDK's acknowledgments are), and
the reason goes into the construct's metadata (``cdk-serverless-patterns:cfn-lint-acknowledged``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import aws_cdk as cdk
import jsii

from constructs import IConstruct

_PACKS = {"AwsSolutions", "Serverless", "HIPAA.Security", "NIST.800.53.R4", "NIST.800.53.R5", "PCI.DSS.321"}
MIN_REASON_LENGTH = 20
#: A cfn-lint rule id: E (error), W (warning) or I (informational) and four digits.
CFN_LINT_RULE = re.compile(r"[EWI]\d{4}")
#: Resource metadata key cfn-lint reads its per-resource configuration from.
CFN_LINT_METADATA = "cfn-lint"
#: Construct metadata holding the reasons of acknowledged cfn-lint rules.
CFN_LINT_REASONS = "cdk-serverless-patterns:cfn-lint-acknowledged"


@jsii.implements(cdk.IAspect)
class _IgnoreCfnLintRules:
    """Adds cfn-lint ``ignore_checks`` for ``rules`` to every CloudFormation resource it visits."""

    def __init__(self, rules: list[str]) -> None:
        self.rules = rules

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, cdk.CfnResource):
            return
        metadata = node.get_metadata(CFN_LINT_METADATA) or {}
        config = dict(metadata.get("config") or {})
        ignored = list(config.get("ignore_checks") or [])
        config["ignore_checks"] = [*ignored, *(rule for rule in self.rules if rule not in ignored)]
        node.add_metadata(CFN_LINT_METADATA, {**metadata, "config": config})


def rule_id(rule: str) -> str:
    """Normalizes ``AwsSolutions-IAM5[Action::x]`` to cdk-nag 3's ``AwsSolutions::AwsSolutions-IAM5[Action::x]``."""
    if "::" in rule.split("[", 1)[0]:
        return rule
    pack = rule.split("-", 1)[0]
    if pack not in _PACKS:
        raise ValueError(
            f"rule {rule!r} does not start with a known cdk-nag pack ({', '.join(sorted(_PACKS))}) "
            "and is not a cfn-lint rule id (like W3005)"
        )
    return f"{pack}::{rule}"


def acknowledge(scope: IConstruct, reason: str, *rules: str) -> None:
    """Acknowledges each of ``rules`` on ``scope`` (and below) with ``reason``.

    A rule is a cdk-nag rule id as ``serverless-patterns check`` prints it (``AwsSolutions-SQS4``,
    ``AwsSolutions-IAM5[Resource::*]``, with or without the ``AwsSolutions::`` prefix) or a cfn-lint
    rule id (``W3005``). The reason must say why the finding is acceptable: an empty or token reason
    is refused.
    """
    text = reason.strip()
    if len(text) < MIN_REASON_LENGTH:
        raise ValueError(
            f"acknowledging {', '.join(rules) or 'a rule'} needs a real reason (at least {MIN_REASON_LENGTH} "
            f"characters), got {reason!r}"
        )
    if not rules:
        raise ValueError("acknowledge needs at least one rule id")
    lint_rules = [rule for rule in rules if CFN_LINT_RULE.fullmatch(rule)]
    nag_rules = [rule_id(rule) for rule in rules if not CFN_LINT_RULE.fullmatch(rule)]
    validations = cdk.Validations.of(scope)
    for rule in nag_rules:
        validations.acknowledge(cdk.Acknowledgment(id=rule, reason=text))
    if lint_rules:
        cdk.Aspects.of(scope).add(_IgnoreCfnLintRules(lint_rules))
        scope.node.add_metadata(CFN_LINT_REASONS, {rule: text for rule in lint_rules})


def acknowledge_wildcards(scope: IConstruct, reason: str, findings: Iterable[str]) -> None:
    """Acknowledges individual AwsSolutions-IAM5 wildcard findings (``Action::...``/``Resource::...``)."""
    acknowledge(scope, reason, *(f"AwsSolutions-IAM5[{finding}]" for finding in findings))
