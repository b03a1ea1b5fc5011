"""Shared setup of the tenancy tests: keys and tokens made in the test, a moto registry, one synthesized app.

The construct tests share ONE app, synthesized once per session with the cdk-nag packs
(:func:`tenancy_app`, built by ``tenancy_app.py`` beside this file); the runtime tests load the
authorizer and the function-side helper from ``lambda_src/`` as Lambda would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from moto import mock_aws
from tenancy_support import HMAC_SECRET, REGISTRY, Keys


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa_other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
        hmac=HMAC_SECRET,
    )


@pytest.fixture
def registry() -> Iterator[Any]:
    """moto with the registry table: ``acme`` and ``globex`` active, ``initech`` suspended."""
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        table = dynamodb.create_table(
            TableName=REGISTRY,
            KeySchema=[{"AttributeName": "tenantId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "tenantId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        table.put_item(Item={"tenantId": "acme", "status": "ACTIVE", "plan": "gold", "usageKey": "acme-usage-key-0001"})
        table.put_item(Item={"tenantId": "globex", "status": "ACTIVE", "plan": "basic"})
        table.put_item(Item={"tenantId": "initech", "status": "SUSPENDED", "plan": "basic"})
        yield table


@pytest.fixture(scope="session")
def tenancy_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The construct tests' app, synthesized once per session with cdk-nag (see tenancy_app.py)."""
    from tenancy_app import build

    return build(tmp_path_factory.mktemp("tenancy-cdk-out"))
