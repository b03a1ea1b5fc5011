"""``serverless-patterns circuit status|open|close|disable``: operate a deployed CircuitBreaker.

The state table is found by ``--table`` or from the CloudFormation outputs of ``--stack`` (an output
whose key contains ``CircuitBreakerTable``). Every write is conditional on the item's ``version``,
exactly like the health checker's and the extension's, so an operator never overwrites a
transition they did not see: on a conflict the item is read again and the change re-applied.

- ``open``: FORCED_OPEN (calls fail fast until an operator closes it; the health checker leaves it)
- ``close``: CLOSED with counters reset (the health checker takes over again)
- ``disable``: DISABLED (the breaker is off: calls always pass; the health checker leaves it)

Every bad input ends with one line on stderr and a non-zero exit: an unknown profile, no or an invalid
region, an invalid endpoint URL, a missing table or stack. An item whose fields are mistyped or out of
range is shown as UNREADABLE with the reason, the others as usual, and ``status`` then exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from cdk_serverless_patterns.circuit_breaker import contract
from cdk_serverless_patterns.toolkit.apps import ToolkitError

DEFAULT_STACK = "ServerlessPatternsCircuitBreaker"
OUTPUT_MARKER = "CircuitBreakerTable"
EVENT_SOURCE = contract.EVENT_SOURCE
EVENT_DETAIL_TYPE = contract.EVENT_DETAIL_TYPE
TARGET_STATES = {"open": contract.FORCED_OPEN, "close": contract.CLOSED, "disable": contract.DISABLED}
MAX_ATTEMPTS = 3
UPDATED_BY = contract.UPDATED_BY_OPERATOR
#: How the command's AWS calls are bounded: a wrong region or endpoint fails in seconds, not minutes.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10
TOTAL_MAX_ATTEMPTS = 3
#: The fields of a circuit item the command reads, and what each must hold.
COUNTER_FIELDS = (
    "version",
    "consecutiveFailures",
    "consecutiveSuccesses",
    "halfOpenTrialsLeft",
    "failureThreshold",
    "coolDownMs",
    "halfOpenTrials",
)
TIME_FIELDS = ("updatedAt", "openedAt")
TEXT_FIELDS = ("updatedBy", "reason")
MAX_COUNTER = 2**63 - 1
#: 9999-12-31T23:59:59.999Z in epoch milliseconds: the last instant a timestamp can be shown.
MAX_TIME_MS = 253_402_300_799_999
UNREADABLE = "UNREADABLE"
NO_REGION = (
    "no AWS region is configured: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION, or set region in "
    "the profile's section of the AWS config file"
)

#: What to do instead of passing an empty value (an empty option is refused, never taken as its default).
EMPTY_OPTION_HINTS = {
    "--table": (
        f"name the state table, or leave --table out to read it from the outputs of --stack (default {DEFAULT_STACK})"
    ),
    "--stack": f"name the stack, or leave --stack out for {DEFAULT_STACK}",
    "--region": "name the region, or leave --region out to use AWS_REGION, AWS_DEFAULT_REGION or the profile's region",
}


def add_parser(commands: Any) -> None:
    """Registers ``circuit`` on the CLI's subcommands."""
    circuit = commands.add_parser(
        "circuit",
        help="show or set the state of a deployed circuit breaker's circuits",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    circuit.add_argument(
        "action",
        choices=["status", "open", "close", "disable"],
        help="status: show (all circuits without an id); open: FORCED_OPEN; close: CLOSED; disable: DISABLED",
    )
    circuit.add_argument("circuit_id", nargs="?", metavar="ID", help="the circuit (required except for status)")
    where = circuit.add_mutually_exclusive_group()
    where.add_argument("--table", help="name of the state table (default: from the stack's outputs)")
    where.add_argument(
        "--stack",
        default=None,
        help=f"stack whose {OUTPUT_MARKER}... output names the table (default: {DEFAULT_STACK})",
    )
    circuit.add_argument("--region", help="AWS region (default: from the environment or profile)")
    circuit.add_argument("--endpoint-url", help="AWS endpoint (for example a local moto server)")
    circuit.add_argument("--reason", help="why (stored on the item and in the event)")
    circuit.add_argument("--create", action="store_true", help="write the circuit even if the table has no item yet")
    circuit.add_argument("--json", action="store_true", help="print the item(s) as JSON")


def run(args: argparse.Namespace) -> int:
    """Executes ``serverless-patterns circuit ...``; raises ToolkitError with a one-line message."""
    if args.action != "status" and not args.circuit_id:
        raise ToolkitError(f"{args.action} needs the circuit id: serverless-patterns circuit {args.action} ID")
    if args.circuit_id is not None and not contract.CIRCUIT_ID_PATTERN.fullmatch(args.circuit_id):
        raise ToolkitError(
            f"{args.circuit_id!r} is not a circuit id (1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit)"
        )
    for option, value in (("--table", args.table), ("--stack", args.stack), ("--region", args.region)):
        if value is not None and not value.strip():  # "" would otherwise mean "the default"
            raise ToolkitError(f"{option} is empty: {EMPTY_OPTION_HINTS[option]}")
    operator = CircuitOperator.connect(
        table=args.table, stack=args.stack, region=args.region, endpoint_url=args.endpoint_url
    )
    if args.action == "status":
        items = [operator.get(args.circuit_id)] if args.circuit_id else operator.all()
        if args.circuit_id and items[0] is None:
            raise ToolkitError(operator.unknown_circuit(args.circuit_id))
        found = [item for item in items if item is not None]
        print(json.dumps(found, indent=2, sort_keys=True) if args.json else format_items(found, operator.table))
        unreadable = [f"{item['circuitId']} ({item[UNREADABLE]})" for item in found if UNREADABLE in item]
        if unreadable:
            print(
                f"serverless-patterns circuit: {len(unreadable)} unreadable item(s) in table {operator.table}: "
                + "; ".join(unreadable),
                file=sys.stderr,
            )
            return 1
        return 0
    target = TARGET_STATES[args.action]
    reason = args.reason or f"set to {target} by an operator (serverless-patterns circuit {args.action})"
    outcome = operator.set_state(args.circuit_id, target, reason=reason, create=args.create)
    print(json.dumps(outcome, indent=2, sort_keys=True) if args.json else outcome["message"])
    return 0


def connect_to_table(
    *,
    table: str | None,
    stack: str,
    find_table: Callable[[Any, str], str],
    region: str | None,
    endpoint_url: str | None,
) -> tuple[str, Callable[[str], Any], str]:
    """An AWS session for an operator command: (the table, a factory of bounded clients, a region hint).

    The table is ``table``, or found in ``stack``'s outputs by ``find_table(cloudformation_client, stack)``.
    Clients time out (connect, read) and retry a bounded number of times, so a wrong region or endpoint fails in
    seconds. Every setup problem (unknown profile, no region or credentials, a bad endpoint or region, a
    missing stack) is one :class:`ToolkitError` line.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

    check_endpoint_url(endpoint_url)
    # boto3 reads AWS_DEFAULT_REGION and the profile's region, not AWS_REGION; the AWS CLI and
    # Lambda use AWS_REGION first, and so do these commands.
    region = region if region is not None else (os.environ.get("AWS_REGION") or None)
    try:
        session = boto3.Session(region_name=region) if region is not None else boto3.Session()
        if not session.region_name:
            raise ToolkitError(f"{NO_REGION} ({_config_file()}, profile {session.profile_name or 'default'})")
        credentials = session.get_credentials()
    except ProfileNotFound as error:
        raise ToolkitError(_unknown_profile(error)) from error
    except BotoCoreError as error:
        raise ToolkitError(f"cannot set up the AWS session: {_aws_message(error)}") from error
    if credentials is None:
        raise ToolkitError("no AWS credentials are configured: set AWS_PROFILE or AWS_ACCESS_KEY_ID/...")
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": TOTAL_MAX_ATTEMPTS},
    )

    def client(service: str) -> Any:
        try:
            return session.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]
        except (BotoCoreError, ValueError) as error:  # an invalid region name: InvalidRegionError
            raise ToolkitError(f"cannot use region {session.region_name!r}: {_aws_message(error)}") from error

    hint = _region_hint(session)
    if not table:
        try:
            table = find_table(client("cloudformation"), stack)
        except (ClientError, BotoCoreError) as error:
            raise ToolkitError(f"cannot read stack {stack}: {_aws_message(error)}{hint}") from error
    return table, client, hint


class CircuitOperator:
    """Reads and conditionally writes circuit items of one state table."""

    def __init__(self, table: str, dynamodb: Any, events: Any, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.dynamodb = dynamodb
        self.events = events
        self.clock = clock
        self.region_hint = ""

    @classmethod
    def connect(
        cls, *, table: str | None, stack: str | None, region: str | None, endpoint_url: str | None
    ) -> CircuitOperator:
        table, client, hint = connect_to_table(
            table=table,
            stack=stack or DEFAULT_STACK,
            find_table=_table_from_stack,
            region=region,
            endpoint_url=endpoint_url,
        )
        operator = cls(table, client("dynamodb"), client("events"))
        operator.region_hint = hint
        return operator

    # -- reading ---------------------------------------------------------------------------------
    def get(self, circuit_id: str) -> dict[str, Any] | None:
        response = self._call(
            self.dynamodb.get_item,
            TableName=self.table,
            Key={contract.TABLE_KEY: {"S": circuit_id}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return read_item(item) if item else None

    def all(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self._call(self.dynamodb.scan, **kwargs)
            items += [read_item(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return sorted(items, key=lambda item: str(item.get("circuitId")))
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def unknown_circuit(self, circuit_id: str) -> str:
        known = ", ".join(str(item["circuitId"]) for item in self.all()) or "none yet"
        return f"no circuit {circuit_id!r} in table {self.table} (known: {known})"

    # -- writing ---------------------------------------------------------------------------------
    def set_state(self, circuit_id: str, state: str, *, reason: str, create: bool = False) -> dict[str, Any]:
        """Moves the circuit to ``state`` with a conditional write on its version."""
        from botocore.exceptions import ClientError

        for _attempt in range(MAX_ATTEMPTS):
            item = self.get(circuit_id)
            if item is None and not create:
                raise ToolkitError(self.unknown_circuit(circuit_id) + "; pass --create to write it anyway")
            if item is not None and UNREADABLE in item:
                raise ToolkitError(
                    f"circuit {circuit_id!r} has an unreadable item in table {self.table} ({item[UNREADABLE]}): "
                    "nothing written; repair or delete the item first"
                )
            previous = str(item.get("state", "CLOSED")) if item else None
            version = int(item.get("version", 0)) if item else 0
            if item is not None and previous == state:
                return {
                    "circuitId": circuit_id,
                    "state": state,
                    "version": version,
                    "changed": False,
                    "message": f"{circuit_id}: already {state} (version {version}); nothing written",
                }
            now = int(self.clock() * 1000)
            values: dict[str, Any] = {
                ":state": {"S": state},
                ":version": {"N": str(version + 1)},
                ":now": {"N": str(now)},
                ":by": {"S": UPDATED_BY},
                ":reason": {"S": reason},
            }
            assignments = ["#state = :state", "#version = :version", "updatedAt = :now", "updatedBy = :by"]
            assignments.append("reason = :reason")
            if state == "CLOSED":
                values[":zero"] = {"N": "0"}
                assignments += ["consecutiveFailures = :zero", "consecutiveSuccesses = :zero"]
                assignments.append("halfOpenTrialsLeft = :zero")
            if state == "FORCED_OPEN":
                assignments.append("openedAt = :now")
            if item is None:
                condition = "attribute_not_exists(circuitId)"
            elif "version" not in item:
                condition = "attribute_exists(circuitId) AND attribute_not_exists(#version)"
            else:
                condition = "#version = :expected"
                values[":expected"] = {"N": str(version)}
            try:
                self.dynamodb.update_item(
                    TableName=self.table,
                    Key={contract.TABLE_KEY: {"S": circuit_id}},
                    UpdateExpression="SET " + ", ".join(assignments),
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#state": "state", "#version": "version"},
                    ExpressionAttributeValues=values,
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    continue  # someone else wrote first: read again, apply on top
                raise ToolkitError(f"cannot update circuit {circuit_id!r}: {_aws_message(error)}") from error
            warning = self._publish(circuit_id, previous, state, reason, version + 1, now)
            message = f"{circuit_id}: {previous or 'new'} -> {state} (version {version} -> {version + 1})"
            return {
                "circuitId": circuit_id,
                "previousState": previous,
                "state": state,
                "version": version + 1,
                "changed": True,
                "message": message + (f"\nwarning: {warning}" if warning else ""),
            }
        raise ToolkitError(
            f"circuit {circuit_id!r} kept changing while being updated ({MAX_ATTEMPTS} conflicting writes); try again"
        )

    def _publish(self, circuit_id: str, previous: str | None, state: str, reason: str, version: int, now: int) -> str:
        """The same event the health checker publishes; a failure here is a warning, the state is written."""
        from botocore.exceptions import BotoCoreError, ClientError

        detail = {
            "circuitId": circuit_id,
            "previousState": previous,
            "state": state,
            "reason": reason,
            "version": version,
            "updatedAt": now,
            "updatedBy": UPDATED_BY,
        }
        try:
            response = self.events.put_events(
                Entries=[{"Source": EVENT_SOURCE, "DetailType": EVENT_DETAIL_TYPE, "Detail": json.dumps(detail)}]
            )
        except (ClientError, BotoCoreError) as error:
            return f"the state is written but the change event was not published: {_aws_message(error)}"
        if response.get("FailedEntryCount"):
            return "the state is written but EventBridge refused the change event"
        return ""

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise ToolkitError(
                    f"table {self.table} does not exist (check --table, --stack and --region){self.region_hint}"
                ) from error
            raise ToolkitError(f"cannot read table {self.table}: {_aws_message(error)}") from error
        except BotoCoreError as error:
            raise ToolkitError(f"cannot read table {self.table}: {_aws_message(error)}{self.region_hint}") from error


def check_endpoint_url(endpoint_url: str | None) -> None:
    """An absolute http(s) URL with a host and a valid port, or a one-line ToolkitError."""
    if endpoint_url is None:
        return
    problem = ""
    try:
        parts = urllib.parse.urlsplit(endpoint_url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError as error:
        problem = str(error)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "the scheme must be http or https"
        elif not parts.hostname:
            problem = "there is no host"
        elif any(c.isspace() for c in endpoint_url):
            problem = "it contains white space"
    if problem:
        raise ToolkitError(f"--endpoint-url {endpoint_url!r} is not a valid endpoint URL: {problem}")


def _config_file() -> str:
    return os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"


def _unknown_profile(error: Exception) -> str:
    profile = getattr(error, "kwargs", {}).get("profile", "?")
    try:
        import botocore.session

        known = ", ".join(sorted(botocore.session.Session(profile=None).available_profiles)) or "none"
    except Exception:  # an unreadable config file: the profile is still unknown
        known = "unknown"
    return (
        f"the AWS profile {profile!r} (AWS_PROFILE or --profile of the AWS config) is not in {_config_file()} "
        f"or the credentials file (profiles found: {known})"
    )


def _region_hint(session: Any) -> str:
    """A note when the region is not one botocore knows (a typo such as us-east-9 fails as a DNS error)."""
    region = session.region_name
    try:
        known = {
            r
            for partition in session.get_available_partitions()
            for r in session.get_available_regions("dynamodb", partition)
        }
    except Exception:
        return ""
    return "" if region in known or not known else f" (region {region!r} is not one botocore knows: check --region)"


def read_item(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The item as plain values; with an ``UNREADABLE`` field naming every bad field when any is
    mistyped or out of range (the command shows it, never crashes on it)."""
    problems: list[str] = []
    for name, typed in raw.items():
        kind = next(iter(typed), "?") if isinstance(typed, Mapping) and typed else "?"
        value = typed.get(kind) if isinstance(typed, Mapping) else typed
        shown = f"{value!r} ({kind})"
        if name == "state":
            if kind != "S" or value not in contract.CIRCUIT_STATES:
                problems.append(f"state: {shown} is not one of {', '.join(contract.CIRCUIT_STATES)}")
        elif name in COUNTER_FIELDS or name in TIME_FIELDS:
            limit = MAX_TIME_MS if name in TIME_FIELDS else MAX_COUNTER
            number = _integer(value) if kind == "N" else None
            if number is None or not 0 <= number <= limit:
                problems.append(f"{name}: {shown} is not an integer from 0 to {limit}")
        elif name in TEXT_FIELDS and kind != "S":
            problems.append(f"{name}: {shown} is not a string")
    plain = _plain(raw)
    if problems:
        plain[UNREADABLE] = "; ".join(problems)
    return plain


def _integer(text: Any) -> int | None:
    try:
        number = Decimal(str(text))
    except InvalidOperation:
        return None
    return int(number) if number.is_finite() and number == number.to_integral_value() else None


def _float_or_text(text: Any) -> float | str:
    try:
        return float(text)
    except (TypeError, ValueError):
        return str(text)


def _table_from_stack(cloudformation: Any, stack: str) -> str:
    stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    outputs = stacks[0].get("Outputs", []) if stacks else []
    matches = [o for o in outputs if OUTPUT_MARKER.lower() in o["OutputKey"].lower()]
    if not matches:
        raise ToolkitError(f"stack {stack} has no output whose key contains {OUTPUT_MARKER}: pass --table NAME")
    if len(matches) > 1:
        keys = ", ".join(sorted(o["OutputKey"] for o in matches))
        raise ToolkitError(f"stack {stack} has several circuit breaker tables ({keys}): pass --table NAME")
    return str(matches[0]["OutputValue"])


def _plain(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for name, typed in item.items():
        if not isinstance(typed, Mapping):
            continue
        if "N" in typed:
            number = _integer(typed["N"])
            plain[name] = number if number is not None else _float_or_text(typed["N"])
        elif "S" in typed:
            plain[name] = typed["S"]
        elif "BOOL" in typed:
            plain[name] = typed["BOOL"]
    return plain


def format_items(items: list[dict[str, Any]], table: str) -> str:
    if not items:
        return f"no circuits in table {table} yet"
    header = ("CIRCUIT", "STATE", "VERSION", "FAILURES", "UPDATED", "BY", "REASON")
    rows = [header]
    for item in items:
        if UNREADABLE in item:
            rows.append((str(item.get("circuitId", "?")), UNREADABLE, "-", "-", "-", "-", str(item[UNREADABLE])))
            continue
        updated = item.get("updatedAt")
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated / 1000)) if isinstance(updated, int) else "-"
        rows.append(
            (
                str(item.get("circuitId", "?")),
                str(item.get("state", "CLOSED")),
                str(item.get("version", 0)),
                str(item.get("consecutiveFailures", 0)),
                when,
                str(item.get("updatedBy", "-")),
                str(item.get("reason", "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in rows
    )


def _aws_message(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return f"{response['Error'].get('Code', 'Error')}: {response['Error'].get('Message', '')}".strip()
    return str(error).splitlines()[0] if str(error) else type(error).__name__
