"""``serverless-patterns tenant add|suspend|resume|list``: onboard and offboard tenants in a TenantRegistry.

The registry table is found by ``--table`` or from the CloudFormation outputs of ``--stack`` (an
output whose key contains ``RegistryTable``; default stack ``ServerlessPatternsTenancy``, the
tenancy sample). Every write is conditional, so two operators (or an operator and a script) never
overwrite each other's change unseen:

- ``add ID [--plan P] [--usage-key K | --api-key]``: a put on ``attribute_not_exists(tenantId)``; an
  existing tenant is never overwritten (exit 1, nothing written). The tenant starts ``ACTIVE``. For
  ``TenantApi(plans=...)`` every tenant needs an API key in its plan's usage plan, named by the
  registry's ``usageKey`` (the Lambda authorizer returns it as ``usageIdentifierKey``): ``--api-key``
  creates the key (a random 40-character value), adds it to the usage plan of ``--plan`` (the stack's
  ``AWS::ApiGateway::UsagePlan`` whose logical id holds ``Plan<P>``, or ``--usage-plan-id``) and stores
  its value; if the tenant exists already, the new key is deleted again. ``--usage-key`` stores the
  value of a key made elsewhere.
- ``suspend ID``: ``ACTIVE`` -> ``SUSPENDED`` on ``attribute_exists(tenantId) AND status = ACTIVE``.
  The authorizer (and the function-side helper) refuse the tenant within the authorizer's result
  TTL plus twice the registry cache TTL (see docs/tenancy.md).
- ``resume ID``: ``SUSPENDED`` -> ``ACTIVE``, conditional the same way.
- ``list [--json]``: every tenant (a consistent scan), as a table or JSON; neither shows an API key's
  value (``usageKey``), only whether the tenant has one (``hasUsageKey`` in JSON): the output ends up in
  terminals and CI logs, and the value is what a caller presents to spend the tenant's quota.

An unknown tenant, or a tenant already in the wanted state, is reported in one line: the former
exits 1, the latter 0 (nothing to do, nothing written). A tenant id must match the tenancy
contract's pattern (1-64 of ``A-Z a-z 0-9 _ -``, starting with a letter or digit), checked before any
AWS call. Everything else wrong (an unknown profile, no or an invalid region, an invalid endpoint
URL, a missing table or stack) ends with one line on stderr and exit 2, as for ``circuit``; every AWS
call is bounded (connect 5 s, read 10 s, 3 attempts in all).

The AWS session set-up is ``circuit``'s own (:func:`cdk_serverless_patterns.toolkit.circuit.connect_to_table`),
shared by both operator commands.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from cdk_serverless_patterns.tenancy import contract
from cdk_serverless_patterns.toolkit.apps import ToolkitError
from cdk_serverless_patterns.toolkit.circuit import _aws_message, connect_to_table

DEFAULT_STACK = "ServerlessPatternsTenancy"
OUTPUT_MARKER = "RegistryTable"
UPDATED_BY = "operator"
#: Plan names as TenantApi's ``plans`` take them.
PLAN_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")
#: API key values API Gateway accepts (20-128 characters); the registry's ``usageKey``.
USAGE_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{20,128}")
MAX_REASON_CHARS = 512
TRANSITIONS = {"suspend": (contract.ACTIVE, contract.SUSPENDED), "resume": (contract.SUSPENDED, contract.ACTIVE)}
EMPTY_OPTION_HINTS = {
    "--table": f"name the registry table, or leave --table out to read it from the outputs of --stack "
    f"(default {DEFAULT_STACK})",
    "--stack": f"name the stack, or leave --stack out for {DEFAULT_STACK}",
    "--region": "name the region, or leave --region out to use AWS_REGION, AWS_DEFAULT_REGION or the profile's region",
}


class Conflict(Exception):
    """A conditional write lost: the tenant exists already, is unknown, or is in another state. Exit 1."""


def add_parser(commands: Any) -> None:
    """Registers ``tenant`` on the CLI's subcommands."""
    tenant = commands.add_parser(
        "tenant",
        help="add, suspend, resume or list the tenants of a deployed tenant registry",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    tenant.add_argument(
        "action",
        choices=["add", "suspend", "resume", "list"],
        help="add: a new ACTIVE tenant; suspend: ACTIVE -> SUSPENDED; resume: SUSPENDED -> ACTIVE; list: all",
    )
    tenant.add_argument("tenant_id", nargs="?", metavar="ID", help="the tenant (required except for list)")
    where = tenant.add_mutually_exclusive_group()
    where.add_argument("--table", help="name of the registry table (default: from the stack's outputs)")
    where.add_argument(
        "--stack",
        default=None,
        help=f"stack whose {OUTPUT_MARKER}... output names the table (default: {DEFAULT_STACK})",
    )
    tenant.add_argument("--region", help="AWS region (default: from the environment or profile)")
    tenant.add_argument("--endpoint-url", help="AWS endpoint (for example a local moto server)")
    tenant.add_argument("--plan", help="add: the tenant's plan (a TenantApi plan name)")
    keys = tenant.add_mutually_exclusive_group()
    keys.add_argument("--usage-key", help="add: the value of the tenant's API key in its plan's usage plan")
    keys.add_argument(
        "--api-key",
        action="store_true",
        help="add: create the tenant's API key and add it to the usage plan of --plan (TenantApi plans)",
    )
    tenant.add_argument("--usage-plan-id", help="add --api-key: the usage plan (default: from the stack's resources)")
    tenant.add_argument("--reason", help="suspend/resume: why (stored on the item)")
    tenant.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Executes ``serverless-patterns tenant ...``; raises ToolkitError with a one-line message (exit 2),
    answers 1 when a conditional write found the tenant in another state than the action needs."""
    if args.action != "list" and not args.tenant_id:
        raise ToolkitError(f"{args.action} needs the tenant id: serverless-patterns tenant {args.action} ID")
    if args.action == "list" and args.tenant_id:
        raise ToolkitError("list takes no tenant id")
    if args.tenant_id is not None and not contract.TENANT_ID_PATTERN.fullmatch(args.tenant_id):
        raise ToolkitError(
            f"{args.tenant_id[:80]!r} is not a tenant id (1-64 letters, digits, '_' or '-', starting with a letter "
            "or digit)"
        )
    if args.plan is not None and (args.action != "add" or not PLAN_PATTERN.fullmatch(args.plan)):
        raise ToolkitError(
            "--plan applies to add only" if args.action != "add" else f"{args.plan[:80]!r} is not a plan name"
        )
    if args.usage_key is not None and (args.action != "add" or not USAGE_KEY_PATTERN.fullmatch(args.usage_key)):
        raise ToolkitError(
            "--usage-key applies to add only"
            if args.action != "add"
            else "--usage-key must be an API key value: 20-128 of A-Z a-z 0-9 _ -"
        )
    if (args.api_key or args.usage_plan_id is not None) and (args.action != "add" or not args.plan):
        raise ToolkitError("--api-key and --usage-plan-id apply to add with --plan only")
    if args.usage_plan_id is not None and not args.api_key:
        raise ToolkitError("--usage-plan-id needs --api-key")
    if args.reason is not None and (args.action not in TRANSITIONS or len(args.reason) > MAX_REASON_CHARS):
        raise ToolkitError(f"--reason applies to suspend and resume only, in at most {MAX_REASON_CHARS} characters")
    for option, value in (("--table", args.table), ("--stack", args.stack), ("--region", args.region)):
        if value is not None and not value.strip():
            raise ToolkitError(f"{option} is empty: {EMPTY_OPTION_HINTS[option]}")
    operator = TenantOperator.connect(
        table=args.table, stack=args.stack, region=args.region, endpoint_url=args.endpoint_url
    )
    try:
        if args.action == "list":
            items = operator.all()
            print(
                json.dumps([redacted(i) for i in items], indent=2, sort_keys=True)
                if args.json
                else format_items(items, operator.table)
            )
            return 0
        if args.action == "add" and args.api_key:
            outcome = operator.add_with_api_key(
                args.tenant_id, plan=args.plan, usage_plan_id=args.usage_plan_id, stack=args.stack or DEFAULT_STACK
            )
        elif args.action == "add":
            outcome = operator.add(args.tenant_id, plan=args.plan or "", usage_key=args.usage_key)
        else:
            before, after = TRANSITIONS[args.action]
            reason = args.reason or f"{after} by an operator (serverless-patterns tenant {args.action})"
            outcome = operator.transition(args.tenant_id, before, after, reason=reason)
    except Conflict as conflict:
        print(f"serverless-patterns tenant: {conflict}", file=sys.stderr)
        return 1
    print(json.dumps(outcome, indent=2, sort_keys=True) if args.json else outcome["message"])
    return 0


class TenantOperator:
    """Reads and conditionally writes the items of one tenant registry table."""

    def __init__(
        self,
        table: str,
        dynamodb: Any,
        clock: Callable[[], float] = time.time,
        *,
        apigateway: Any = None,
        cloudformation: Any = None,
    ) -> None:
        self.table = table
        self.dynamodb = dynamodb
        self.clock = clock
        self.apigateway = apigateway
        self.cloudformation = cloudformation
        self.region_hint = ""

    @classmethod
    def connect(
        cls, *, table: str | None, stack: str | None, region: str | None, endpoint_url: str | None
    ) -> TenantOperator:
        """A bounded DynamoDB client for the table named by ``table`` or by ``stack``'s outputs."""
        table, client, hint = connect_to_table(
            table=table,
            stack=stack or DEFAULT_STACK,
            find_table=table_from_stack,
            region=region,
            endpoint_url=endpoint_url,
        )
        operator = cls(
            table, client("dynamodb"), apigateway=client("apigateway"), cloudformation=client("cloudformation")
        )
        operator.region_hint = hint
        return operator

    # -- reading ---------------------------------------------------------------------------------
    def get(self, tenant_id: str) -> dict[str, Any] | None:
        response = self._call(
            self.dynamodb.get_item,
            TableName=self.table,
            Key={contract.TABLE_KEY: {"S": tenant_id}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return plain(item) if item else None

    def all(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self._call(self.dynamodb.scan, **kwargs)
            items += [plain(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return sorted(items, key=lambda item: str(item.get(contract.TABLE_KEY)))
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- writing ---------------------------------------------------------------------------------
    def add(self, tenant_id: str, *, plan: str = "", usage_key: str | None = None) -> dict[str, Any]:
        """Writes a new ACTIVE tenant; :class:`Conflict` if the id exists (nothing is overwritten)."""
        now = int(self.clock() * 1000)
        item: dict[str, Any] = {
            contract.TABLE_KEY: {"S": tenant_id},
            contract.STATUS_ATTRIBUTE: {"S": contract.ACTIVE},
            contract.PLAN_ATTRIBUTE: {"S": plan},
            "createdAt": {"N": str(now)},
            "updatedAt": {"N": str(now)},
            "updatedBy": {"S": UPDATED_BY},
        }
        if usage_key:
            item[contract.USAGE_KEY_ATTRIBUTE] = {"S": usage_key}
        if not self._conditional(
            self.dynamodb.put_item,
            TableName=self.table,
            Item=item,
            ConditionExpression="attribute_not_exists(#key)",
            ExpressionAttributeNames={"#key": contract.TABLE_KEY},
        ):
            existing = self.get(tenant_id) or {}
            status = existing.get(contract.STATUS_ATTRIBUTE, "?")
            raise Conflict(
                f"tenant {tenant_id!r} already exists in table {self.table} (status {status}, plan "
                f"{existing.get(contract.PLAN_ATTRIBUTE) or '-'}): nothing written"
            )
        return {
            "tenantId": tenant_id,
            "status": contract.ACTIVE,
            "plan": plan,
            "changed": True,
            "message": f"{tenant_id}: added, {contract.ACTIVE}" + (f", plan {plan}" if plan else ""),
        }

    def add_with_api_key(
        self, tenant_id: str, *, plan: str, usage_plan_id: str | None = None, stack: str = DEFAULT_STACK
    ) -> dict[str, Any]:
        """Creates the tenant's API key, adds it to ``plan``'s usage plan, then adds the tenant with the key's
        value; a tenant that exists already gets nothing (the new key is deleted again)."""
        import secrets

        from botocore.exceptions import BotoCoreError, ClientError

        if self.get(tenant_id) is not None:  # the common case, before anything is created
            return self.add(tenant_id, plan=plan)  # raises Conflict
        plan_id = usage_plan_id or self.usage_plan_of(plan, stack)
        value = secrets.token_urlsafe(30)[:40]
        try:
            key = self.apigateway.create_api_key(
                name=f"tenant-{tenant_id}-{int(self.clock())}",
                description=f"API key of tenant {tenant_id} (plan {plan}), made by serverless-patterns tenant add",
                enabled=True,
                value=value,
            )
        except (ClientError, BotoCoreError) as error:
            raise ToolkitError(f"cannot create the API key of tenant {tenant_id!r}: {_aws_message(error)}") from error
        try:
            self.apigateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
            outcome = self.add(tenant_id, plan=plan, usage_key=value)
        except BaseException as error:
            self._delete_key(key["id"])
            if isinstance(error, (ClientError, BotoCoreError)):
                raise ToolkitError(
                    f"cannot add the API key to usage plan {plan_id}: {_aws_message(error)}; nothing written"
                ) from error
            raise
        outcome.update(apiKeyId=key["id"], usagePlanId=plan_id)
        outcome["message"] += f", API key {key['id']} in usage plan {plan_id}"
        return outcome

    def usage_plan_of(self, plan: str, stack: str) -> str:
        """The id of the stack's usage plan of ``plan`` (TenantApi's construct id ``Plan<plan>``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        found: list[str] = []
        try:
            for page in self.cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
                for resource in page.get("StackResourceSummaries", []):
                    if resource.get("ResourceType") == "AWS::ApiGateway::UsagePlan" and re.search(
                        rf"Plan{re.escape(plan)}[0-9A-F]{{8}}$", resource.get("LogicalResourceId", "")
                    ):
                        found.append(str(resource["PhysicalResourceId"]))
        except (ClientError, BotoCoreError) as error:
            raise ToolkitError(f"cannot read the resources of stack {stack}: {_aws_message(error)}") from error
        if len(found) != 1:
            raise ToolkitError(
                f"stack {stack} has {len(found)} usage plans of plan {plan!r}: pass --usage-plan-id ID"
                if found
                else f"stack {stack} has no usage plan of plan {plan!r} (TenantApi plans=...): pass --usage-plan-id ID"
            )
        return found[0]

    def _delete_key(self, key_id: str) -> None:
        try:
            self.apigateway.delete_api_key(apiKey=key_id)
        except Exception as error:  # reported, never hidden: an orphan key is the operator's to delete
            print(f"serverless-patterns tenant: warning: API key {key_id} was not deleted: {error}", file=sys.stderr)

    def transition(self, tenant_id: str, before: str, after: str, *, reason: str) -> dict[str, Any]:
        """``before`` -> ``after`` on a write conditional on the tenant existing in ``before``."""
        now = int(self.clock() * 1000)
        if self._conditional(
            self.dynamodb.update_item,
            TableName=self.table,
            Key={contract.TABLE_KEY: {"S": tenant_id}},
            UpdateExpression="SET #status = :after, updatedAt = :now, updatedBy = :by, reason = :reason",
            ConditionExpression="attribute_exists(#key) AND #status = :before",
            ExpressionAttributeNames={"#status": contract.STATUS_ATTRIBUTE, "#key": contract.TABLE_KEY},
            ExpressionAttributeValues={
                ":after": {"S": after},
                ":before": {"S": before},
                ":now": {"N": str(now)},
                ":by": {"S": UPDATED_BY},
                ":reason": {"S": reason},
            },
        ):
            return {
                "tenantId": tenant_id,
                "previousStatus": before,
                "status": after,
                "changed": True,
                "message": f"{tenant_id}: {before} -> {after}",
            }
        current = self.get(tenant_id)
        if current is None:
            known = ", ".join(str(i.get(contract.TABLE_KEY)) for i in self.all()[:20]) or "none yet"
            raise Conflict(f"no tenant {tenant_id!r} in table {self.table} (known: {known}): nothing written")
        status = current.get(contract.STATUS_ATTRIBUTE)
        if status == after:
            return {
                "tenantId": tenant_id,
                "previousStatus": after,
                "status": after,
                "changed": False,
                "message": f"{tenant_id}: already {after}; nothing written",
            }
        raise Conflict(f"tenant {tenant_id!r} is {status!r}, not {before}: nothing written")

    def _conditional(self, method: Callable[..., Any], **kwargs: Any) -> bool:
        """Whether the conditional write happened (False when its condition failed)."""
        try:
            self._call(method, **kwargs)
        except _ConditionFailed:
            return False
        return True

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed from error
            if code == "ResourceNotFoundException":
                raise ToolkitError(
                    f"table {self.table} does not exist (check --table, --stack and --region){self.region_hint}"
                ) from error
            raise ToolkitError(f"cannot use table {self.table}: {_aws_message(error)}") from error
        except BotoCoreError as error:
            raise ToolkitError(f"cannot use table {self.table}: {_aws_message(error)}{self.region_hint}") from error


class _ConditionFailed(Exception):
    """A conditional write's condition did not hold."""


def table_from_stack(cloudformation: Any, stack: str) -> str:
    """The registry table named by the stack's one output whose key contains ``RegistryTable``."""
    stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    outputs = stacks[0].get("Outputs", []) if stacks else []
    matches = [o for o in outputs if OUTPUT_MARKER.lower() in o["OutputKey"].lower()]
    if not matches:
        raise ToolkitError(f"stack {stack} has no output whose key contains {OUTPUT_MARKER}: pass --table NAME")
    if len(matches) > 1:
        keys = ", ".join(sorted(o["OutputKey"] for o in matches))
        raise ToolkitError(f"stack {stack} has several tenant registry tables ({keys}): pass --table NAME")
    return str(matches[0]["OutputValue"])


def plain(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A registry item as plain values (numbers as int where whole); other types are shown as text."""
    result: dict[str, Any] = {}
    for name, typed in item.items():
        if not isinstance(typed, Mapping) or not typed:
            continue
        kind, value = next(iter(typed.items()))
        if kind == "N":
            try:
                number = float(value)
                result[name] = int(number) if number.is_integer() and abs(number) < 2**63 else number
            except (TypeError, ValueError, OverflowError):
                result[name] = str(value)
        elif kind == "S":
            result[name] = value
        elif kind == "BOOL":
            result[name] = bool(value)
        else:
            result[name] = f"<{kind}>"
    return result


def redacted(item: Mapping[str, Any]) -> dict[str, Any]:
    """A registry item for output: the usage key's value replaced by whether there is one."""
    shown = {name: value for name, value in item.items() if name != contract.USAGE_KEY_ATTRIBUTE}
    shown["hasUsageKey"] = bool(item.get(contract.USAGE_KEY_ATTRIBUTE))
    return shown


def format_items(items: list[dict[str, Any]], table: str) -> str:
    """The tenants as an aligned table (the usage key is never printed, only whether there is one)."""
    if not items:
        return f"no tenants in table {table} yet"
    header = ("TENANT", "STATUS", "PLAN", "USAGE KEY", "UPDATED", "BY", "REASON")
    rows = [header]
    for item in items:
        updated = item.get("updatedAt")
        when = (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated / 1000))
            if isinstance(updated, int) and 0 <= updated < 253_402_300_800_000
            else "-"
        )
        rows.append(
            (
                _cell(item.get(contract.TABLE_KEY, "?")),
                _cell(item.get(contract.STATUS_ATTRIBUTE, "?")),
                _cell(item.get(contract.PLAN_ATTRIBUTE) or "-"),
                "yes" if item.get(contract.USAGE_KEY_ATTRIBUTE) else "-",
                when,
                _cell(item.get("updatedBy", "-")),
                _cell(item.get("reason", "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in rows
    )


def _cell(value: Any) -> str:
    """A value as one line of a table: anything not printable escaped (C0 and C1 controls, such as ESC and
    CSI, which a terminal would obey, and bidirectional overrides, which reorder what it shows), bounded."""
    text = str(value)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= 120 else text[:117] + "..."
