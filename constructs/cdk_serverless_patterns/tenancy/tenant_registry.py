"""``TenantRegistry``: the table of tenants (id, status ACTIVE or SUSPENDED, plan) the authorizer checks.

One item per tenant, keyed by ``tenantId`` (String); ``status`` is ``ACTIVE`` or ``SUSPENDED``,
``plan`` names the tenant's plan, and ``usageKey`` (optional) holds the API key value of the tenant's
usage plan. Onboarding and offboarding write items with conditional writes (see docs/tenancy.md);
readers get ``dynamodb:GetItem`` on this table only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from cdk_serverless_patterns.core import PropErrors
from cdk_serverless_patterns.core.tables import check_table_props, pattern_table
from cdk_serverless_patterns.tenancy import contract
from constructs import Construct


class TenantRegistry(Construct):
    """The tenant registry table.

    Args:
        encryption_key: Customer-managed KMS key for the table. Default: AWS-managed key (encryption
            at rest is always on).
        existing_table: Use this table (partition key ``tenantId``, String) instead of creating one;
            excludes ``encryption_key`` and ``table_props``.
        table_props: Extra ``dynamodb.Table`` properties merged over the defaults (not the key
            schema). Default: none.
        deletion_protection: DynamoDB deletion protection. Default: True.
        removal_policy: What happens to the table when it leaves the stack. Default: RETAIN.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        encryption_key: kms.IKey | None = None,
        existing_table: dynamodb.ITable | None = None,
        table_props: Mapping[str, Any] | None = None,
        deletion_protection: bool = True,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id)
        errors = PropErrors(type(self).__name__)
        check_table_props(
            errors,
            partition_key=contract.TABLE_KEY,
            existing_table=existing_table,
            table_props=table_props,
            encryption_key=encryption_key,
        )
        errors.raise_if_any()
        self._table = pattern_table(
            self,
            "Table",
            partition_key=contract.TABLE_KEY,
            encryption_key=encryption_key,
            existing_table=existing_table,
            table_props=table_props,
            removal_policy=removal_policy,
            deletion_protection=deletion_protection,
        )

    def grant_read_tenants(self, grantee: iam.IGrantable) -> None:
        """``dynamodb:GetItem`` on exactly this table, and ``kms:Decrypt`` on its customer-managed key, if any
        (a reader never needs to encrypt or make data keys)."""
        iam.Grant.add_to_principal(grantee=grantee, actions=["dynamodb:GetItem"], resource_arns=[self._table.table_arn])
        if self._table.encryption_key is not None:
            self._table.encryption_key.grant(grantee, "kms:Decrypt")

    @property
    def table(self) -> dynamodb.ITable:
        """The registry table, keyed by ``tenantId``."""
        return self._table
