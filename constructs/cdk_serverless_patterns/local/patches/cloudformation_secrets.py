"""CloudFormation creates ``AWS::SecretsManager::Secret``, with ``GenerateSecretString``, as AWS does.

Measured on moto 5.2.5: its CloudFormation has no model for ``AWS::SecretsManager::Secret`` (it logs
"No Moto CloudFormation support" and skips it), so a ``Ref`` to the secret resolves to nothing and
the first IAM policy granting read on it fails the stack ("Policy statement must contain resources");
a function reading the secret would find none. AWS creates the secret: ``Ref`` is its ARN, the
value is ``SecretString`` or, with ``GenerateSecretString``, a random string of
``PasswordLength`` (default 32) characters drawn as ``GetRandomPassword`` draws them
(``ExcludeCharacters``, ``ExcludeNumbers``, ``ExcludePunctuation``, ``ExcludeUppercase``,
``ExcludeLowercase``, ``IncludeSpace``, ``RequireEachIncludedType`` default true), put at
``GenerateStringKey`` of the JSON ``SecretStringTemplate`` when both are given (one without the other
is a validation error, as in AWS). The name is ``Name``, or ``<LogicalId>-<12 random characters>``
as CloudFormation generates it. Deleting the stack deletes the secret without a recovery window
(``DeletionPolicy: Retain`` keeps it, as moto honours that itself).

This patch registers that model with moto's CloudFormation (the secret is created through moto's
Secrets Manager backend, so ``GetSecretValue`` serves it). ``KmsKeyId`` is recorded, not used (moto
does not encrypt); ``ReplicaRegions`` are ignored. Delete this module (and its line in
``patches.PATCHES``) when moto's CloudFormation creates secrets.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any


class SecretGenerationError(ValueError):
    """``GenerateSecretString`` is invalid (as CloudFormation's validation says)."""


def generated_secret_string(backend: Any, generate: dict[str, Any]) -> str:
    """The ``SecretString`` that ``GenerateSecretString`` asks for (random part by ``GetRandomPassword``)."""
    template = generate.get("SecretStringTemplate")
    key = generate.get("GenerateStringKey")
    if (template is None) != (key is None):
        raise SecretGenerationError(
            "GenerateSecretString: SecretStringTemplate and GenerateStringKey must be given together"
        )

    def flag(name: str, default: bool = False) -> bool:
        value = generate.get(name, default)
        return value if isinstance(value, bool) else str(value).lower() == "true"

    answer = backend.get_random_password(
        password_length=int(generate.get("PasswordLength", 32)),
        exclude_characters=str(generate.get("ExcludeCharacters", "")),
        exclude_numbers=flag("ExcludeNumbers"),
        exclude_punctuation=flag("ExcludePunctuation"),
        exclude_uppercase=flag("ExcludeUppercase"),
        exclude_lowercase=flag("ExcludeLowercase"),
        include_space=flag("IncludeSpace"),
        require_each_included_type=flag("RequireEachIncludedType", True),
    )
    password = (json.loads(answer) if isinstance(answer, str) else answer)["RandomPassword"]  # moto answers JSON text
    if template is None:
        return str(password)
    try:
        document = json.loads(template)
    except (TypeError, ValueError) as error:
        raise SecretGenerationError(f"GenerateSecretString: SecretStringTemplate is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise SecretGenerationError("GenerateSecretString: SecretStringTemplate must be a JSON object")
    document[str(key)] = password
    return json.dumps(document)


def install() -> None:
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel
    from moto.secretsmanager.models import secretsmanager_backends

    class CloudFormationSecret(CloudFormationModel):
        """The CloudFormation view of one secret of moto's Secrets Manager backend."""

        def __init__(self, arn: str, name: str) -> None:
            self.arn = arn
            self.name = name

        @property
        def physical_resource_id(self) -> str:
            return self.arn  # Ref of AWS::SecretsManager::Secret is its ARN

        @staticmethod
        def cloudformation_name_type() -> str:
            return "Name"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SecretsManager::Secret"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr == "Id"

        def get_cfn_attribute(self, attribute_name: str) -> str:
            if attribute_name == "Id":
                return self.arn
            from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

            raise UnformattedGetAttTemplateException()

        @classmethod
        def create_from_cloudformation_json(
            cls,
            resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> CloudFormationSecret:
            properties = cloudformation_json.get("Properties") or {}
            backend = secretsmanager_backends[account_id][region_name]
            generate = properties.get("GenerateSecretString")
            if generate is not None and properties.get("SecretString") is not None:
                raise SecretGenerationError("SecretString and GenerateSecretString cannot both be given")
            secret_string = (
                generated_secret_string(backend, generate) if generate is not None else properties.get("SecretString")
            )
            name = properties.get("Name")
            if not name:  # moto passes "<stack>-<logical id>-<suffix>": CloudFormation names it "<logical id>-<suffix>"
                alphabet = string.ascii_letters + string.digits
                suffix = "".join(secrets.choice(alphabet) for _ in range(12))
                name = f"{kwargs.get('LogicalId') or resource_name}-{suffix}"
            created = backend.create_secret(
                name=name,
                secret_string=secret_string,
                secret_binary=None,
                description=properties.get("Description"),
                tags=properties.get("Tags"),
                kms_key_id=properties.get("KmsKeyId"),
                client_request_token=None,
                replica_regions=[],
                force_overwrite=False,
            )
            arn = json.loads(created)["ARN"] if isinstance(created, str) else created["ARN"]
            return cls(arn, name)

        @classmethod
        def delete_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
        ) -> None:
            backend = secretsmanager_backends[account_id][region_name]
            try:
                backend.delete_secret(resource_name, None, True)
            except Exception:  # already gone: deleting a deleted secret is not a stack failure
                return

        def delete(self, account_id: str, region_name: str) -> None:
            type(self).delete_from_cloudformation_json(self.arn, {}, account_id, region_name)

        def is_created(self) -> bool:
            return True

    # moto builds its type -> model map once (lru_cache) from CloudFormationModel's subclasses.
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
    assert parsing.resource_class_from_type("AWS::SecretsManager::Secret") is CloudFormationSecret
