"""``CallbackUrls``: an opt-in HTTPS endpoint for third parties that call back over HTTP.

``POST /callbacks/{namespace}/{jobId}`` on a regional REST API. The handler
(``lambda_src/callback_url``) authenticates every call itself, with the per-job secret stored as a
hash in the job's token record or with an HMAC signature over the namespace, job id and body,
rejects replays, claims the token record with a random claim id and resumes the waiting workflow
through the pattern's own path: one completion event, naming the claim, on a dedicated event bus
that only the handler's role may put events on.

``CallbackPattern`` builds it with its table (``enable_callback_urls``) and registers the callback-URL
job source on :attr:`CallbackUrls.event_bus`; it can also be used on its own with any table that
follows the token-record contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager

from cdk_serverless_patterns.callback import contract
from cdk_serverless_patterns.core import PropErrors, acknowledge, pattern_function
from cdk_serverless_patterns.core.apis import check_api_props, regional_rest_api
from constructs import Construct

CallbackAuth = Literal["secret", "hmac"]

#: Source and detail-type of the completion event the handler puts (the callback contract).
EVENT_SOURCE = contract.CALLBACK_URL_EVENT_SOURCE
EVENT_DETAIL_TYPE = contract.CALLBACK_URL_DETAIL_TYPE
#: Namespaces become part of the record id (``<namespace>#<jobId>``) and of the URL path.
NAMESPACE_PATTERN = contract.NAMESPACE_PATTERN
#: The body becomes the ``output`` of one EventBridge event (at most 256 KB with its envelope)
#: and then the task output (at most 256 KiB): 200 KiB leaves room for both envelopes.
MAX_BODY_SIZE_LIMIT = 200 * 1024
DEFAULT_MAX_BODY_SIZE = 128 * 1024
_MAX_NAMESPACES = 50  # each one is a LeadingKeys pattern in the handler's policy
#: The statement id of the callback bus's resource policy (see :attr:`CallbackUrls.event_bus`).
BUS_POLICY_SID = "OnlyTheCallbackHandlerPutsEvents"


class CallbackUrls(Construct):
    """A REST API whose ``POST /callbacks/{namespace}/{jobId}`` resumes a waiting job.

    Args:
        table: The token table (partition key ``id`` = ``<namespace>#<jobId>``). The handler may
            only GetItem and UpdateItem in it (and PutItem with ``accept_early_callbacks``), and
            only on keys of the configured namespaces.
        namespaces: The namespaces that accept callbacks (1 to 50, unique, each 1-64 characters of
            ``A-Z a-z 0-9 _ . -``). A call for any other namespace is rejected with 400.
        auth: ``"secret"`` (default): the caller presents the job's own secret in header
            ``X-Callback-Secret``; the workflow stored its SHA-256 in the token record
            (``callbackSecretHash``). ``"hmac"``: the caller signs
            ``"v1\n<X-Timestamp>\n<namespace>\n<jobId>\n<body>"`` with HMAC-SHA256 under the
            namespace's key and sends ``X-Signature: sha256=<hex>`` (``callback/signing.py``).
        hmac_secret: The Secrets Manager secret holding the HMAC key of every namespace (its
            SecretString). With ``auth="hmac"``, exactly one of ``hmac_secret`` and ``hmac_secrets``
            is required. The handler reads it at run time and caches it per execution
            environment; the key is never put in an environment variable.
        hmac_secrets: Per-namespace keys: namespace -> the secret holding that namespace's key
            (every namespace needs one), so that each third party has its own key.
        accept_early_callbacks: ``auth="hmac"`` only. A signed callback for a job whose waiter has not
            stored its token yet (the early-completion race) is recorded by the handler as the job's
            completion (``attribute_not_exists(id)``), and the wait proceeds with it when it parks.
            Default: False (such a callback is answered 404 and the caller retries).
        completion_ttl: How long an early completion is kept for its waiter (the pattern passes its
            own ``completion_ttl``). Default: 1 hour. Between 1 minute and 30 days.
        replay_window: How far ``X-Timestamp`` may be from the handler's clock (``auth="hmac"``).
            Default: 5 minutes. Between 30 seconds and 1 hour.
        max_body_size: Largest accepted body, in bytes. Default: 128 KiB. At most 200 KiB (the
            body travels in one EventBridge event and then in the task output).
        stage_name: Default: ``"v1"``.
        throttling_rate_limit: Steady requests per second for the stage. Default: 50.
        throttling_burst_limit: Burst for the stage. Default: 100.
        access_log_retention: Default: one year.
        access_log_encryption_key: Customer-managed key for the access-log group. Default: a new
            key with rotation on. Excludes ``existing_access_log_group``.
        existing_access_log_group: Write access logs here instead of a new, encrypted group.
        web_acl_arn: Opt-in: a regional WAFv2 web ACL to associate with the stage. Default: none.
        allowed_source_cidrs: Opt-in: a resource policy that lets only these source ranges call
            the API (for third parties that publish their egress addresses). Default: any source.
        domain_name: Opt-in custom domain (regional, security policy TLS 1.2). Needs ``certificate``.
        certificate: The ACM certificate of ``domain_name`` (in the stack's region).
        disable_execute_api_endpoint: With ``domain_name``: callers must use the custom domain.
            Default: False.
        removal_policy: Of the access-log group and its key. Default: ``RemovalPolicy.RETAIN``.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        table: dynamodb.ITable,
        namespaces: Sequence[str],
        auth: CallbackAuth = "secret",
        hmac_secret: secretsmanager.ISecret | None = None,
        hmac_secrets: Mapping[str, secretsmanager.ISecret] | None = None,
        accept_early_callbacks: bool = False,
        completion_ttl: cdk.Duration = cdk.Duration.hours(1),
        replay_window: cdk.Duration = cdk.Duration.minutes(5),
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        stage_name: str = "v1",
        throttling_rate_limit: float = 50,
        throttling_burst_limit: int = 100,
        access_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        access_log_encryption_key: kms.IKey | None = None,
        existing_access_log_group: logs.ILogGroup | None = None,
        web_acl_arn: str | None = None,
        allowed_source_cidrs: Sequence[str] | None = None,
        domain_name: str | None = None,
        certificate: acm.ICertificate | None = None,
        disable_execute_api_endpoint: bool = False,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id)
        namespaces = list(namespaces)
        # The props the shared REST API takes (core.apis), checked and passed on as one.
        api_props: dict[str, Any] = {
            "stage_name": stage_name,
            "throttling_rate_limit": throttling_rate_limit,
            "throttling_burst_limit": throttling_burst_limit,
            "access_log_encryption_key": access_log_encryption_key,
            "existing_access_log_group": existing_access_log_group,
            "web_acl_arn": web_acl_arn,
            "allowed_source_cidrs": allowed_source_cidrs,
            "domain_name": domain_name,
            "certificate": certificate,
            "disable_execute_api_endpoint": disable_execute_api_endpoint,
        }
        errors = PropErrors(type(self).__name__)
        _check_callback_props(
            errors,
            namespaces=namespaces,
            auth=auth,
            hmac_secret=hmac_secret,
            hmac_secrets=hmac_secrets,
            accept_early_callbacks=accept_early_callbacks,
            completion_ttl=completion_ttl,
            replay_window=replay_window,
            max_body_size=max_body_size,
        )
        check_api_props(errors, **api_props)
        errors.raise_if_any()
        self._namespaces = tuple(namespaces)
        self._auth: CallbackAuth = auth
        self._hmac_secret = hmac_secret
        self._hmac_secrets = dict(hmac_secrets or {})

        # --- the callback bus: only the handler puts events on it (see _restrict_bus) ------------
        self._event_bus = events.EventBus(
            self,
            "Bus",
            description="Completion events of authenticated HTTPS callbacks; only the callback handler may put events",
        )

        # --- the handler -----------------------------------------------------------------------
        environment = {
            contract.ENV_TABLE: table.table_name,
            contract.ENV_EVENT_BUS: self._event_bus.event_bus_name,
            contract.ENV_NAMESPACES: ",".join(namespaces),
            contract.ENV_AUTH_MODE: auth,
            contract.ENV_REPLAY_WINDOW_SECONDS: str(int(replay_window.to_seconds())),
            contract.ENV_MAX_BODY_BYTES: str(max_body_size),
        }
        if hmac_secret is not None:
            environment[contract.ENV_HMAC_SECRET_ARN] = hmac_secret.secret_arn  # where the key is, never the key
        if self._hmac_secrets:
            environment[contract.ENV_HMAC_SECRET_ARNS] = cdk.Stack.of(self).to_json_string(
                {namespace: secret.secret_arn for namespace, secret in sorted(self._hmac_secrets.items())}
            )
        if accept_early_callbacks:
            environment[contract.ENV_ACCEPT_EARLY_CALLBACKS] = "true"
            environment[contract.ENV_COMPLETION_TTL_SECONDS] = str(int(completion_ttl.to_seconds()))
        self._function = pattern_function(
            self,
            "Handler",
            asset=contract.CALLBACK_URL_ASSET,
            handler="callback_url_handler.handler",
            description="Verifies HTTPS job callbacks and puts their completion event on the callback bus",
            environment=environment,
            timeout=cdk.Duration.seconds(20),  # under API Gateway's 29 s integration timeout
            memory_size=256,
        )
        self._grant(table, [hmac_secret, *self._hmac_secrets.values()], accept_early_callbacks)
        self._restrict_bus()
        acknowledge(
            self._function,
            "API Gateway invokes this function synchronously and returns its errors to the caller, who "
            "retries; a dead-letter queue or failure destination only applies to asynchronous invocations.",
            "Serverless-LambdaDLQ",
            "Serverless-LambdaAsyncFailureDestination",
        )

        # --- the API ---------------------------------------------------------------------------
        parts = regional_rest_api(
            self,
            rest_api_name=f"{cdk.Names.unique_id(self)[-200:]}-callbacks",
            description="Job callbacks: POST /callbacks/{namespace}/{jobId}, authenticated per job by the handler",
            purpose="the callback URL API",
            access_log_retention=access_log_retention,
            removal_policy=removal_policy,
            **api_props,
            waf_reason="WAF is opt-in (web_acl_arn): callers are authenticated per job by the handler, the stage is "
            "throttled, and bodies are size-limited and schema-validated before the handler runs.",
        )
        self._api = parts.api
        self._access_log_group = parts.access_log_group
        self._access_log_key = parts.access_log_key
        validator = parts.validator
        model = self._api.add_model(
            "CallbackBody",
            content_type="application/json",
            schema=_body_schema(),
            description="A job callback: its status, output, and error and cause on failure",
        )
        job = self._api.root.add_resource("callbacks").add_resource("{namespace}").add_resource("{jobId}")
        self._method = job.add_method(
            "POST",
            apigw.LambdaIntegration(self._function, proxy=True),
            authorization_type=apigw.AuthorizationType.NONE,
            request_validator=validator,
            request_models={"application/json": model},
            request_parameters={
                "method.request.path.namespace": True,
                "method.request.path.jobId": True,
                # Credentials headers are checked by the handler, which answers 401 without them.
            },
        )
        acknowledge(
            self._api,
            "Third-party services call back without AWS identities or Cognito tokens: each call is "
            "authenticated by the handler with the job's own secret (stored only as a SHA-256 hash) or "
            "an HMAC signature with a replay window, before anything changes.",
            "AwsSolutions-APIG4",
            "AwsSolutions-COG4",
        )

    def _grant(
        self,
        table: dynamodb.ITable,
        hmac_secrets: Sequence[secretsmanager.ISecret | None],
        accept_early_callbacks: bool,
    ) -> None:
        """Least privilege: read and claim token records of our namespaces (and record early
        completions with ``accept_early_callbacks``), put events on the callback bus."""
        actions = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
        if accept_early_callbacks:
            actions.append("dynamodb:PutItem")
        self._function.add_to_role_policy(
            iam.PolicyStatement(
                actions=actions,
                resources=[table.table_arn],
                conditions={
                    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{ns}#*" for ns in self._namespaces]}
                },
            )
        )
        if table.encryption_key is not None:
            # DynamoDB uses the table's customer-managed key on the caller's behalf (no wildcard actions).
            table.encryption_key.grant(self._function, "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
        self._event_bus.grant_put_events_to(self._function)
        keys = [secret for secret in hmac_secrets if secret is not None]
        if keys:
            self._function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue"], resources=[secret.secret_arn for secret in keys]
                )
            )
            for secret in keys:
                if secret.encryption_key is not None:
                    secret.encryption_key.grant_decrypt(self._function)

    def _restrict_bus(self) -> None:
        """The bus's resource policy denies ``events:PutEvents`` to every principal but the handler's
        role, whatever their identity policies allow: a forged ``Job Callback`` event cannot be put
        on it (the resumer also checks the claim the event names, see ``JobSource.claim_bound``)."""
        role = self._function.role
        assert role is not None  # pattern_function always creates the role
        self._event_bus.add_to_resource_policy(
            iam.PolicyStatement(
                sid=BUS_POLICY_SID,
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["events:PutEvents"],
                resources=[self._event_bus.event_bus_arn],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": role.role_arn}},
            )
        )

    @property
    def api(self) -> apigw.RestApi:
        """The REST API."""
        return self._api

    @property
    def method(self) -> apigw.Method:
        """``POST /callbacks/{namespace}/{jobId}``."""
        return self._method

    @property
    def event_bus(self) -> events.EventBus:
        """The callback bus: the handler puts its completion events here, and its resource policy
        denies ``events:PutEvents`` to every other principal. The callback-URL job source's rule
        listens on it."""
        return self._event_bus

    @property
    def function(self) -> lambda_.Function:
        """The handler that verifies callbacks and puts their completion events."""
        return self._function

    @property
    def access_log_group(self) -> logs.ILogGroup:
        """Where the stage writes its JSON access logs."""
        return self._access_log_group

    @property
    def access_log_key(self) -> kms.IKey | None:
        """The key of the access-log group (None with ``existing_access_log_group``)."""
        return self._access_log_key

    @property
    def url(self) -> str:
        """The stage's base URL (a token ending in ``/``)."""
        return self._api.url

    def url_for(self, namespace: str) -> str:
        """The callback URL of ``namespace`` up to the job id: append the job id to call back."""
        if namespace not in self._namespaces:
            raise ValueError(f"namespace {namespace!r} is not one of {', '.join(self._namespaces)}")
        return f"{self._api.url}callbacks/{namespace}/"

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces that accept callbacks."""
        return self._namespaces

    @property
    def auth(self) -> CallbackAuth:
        """``"secret"`` or ``"hmac"``."""
        return self._auth

    @property
    def hmac_secret(self) -> secretsmanager.ISecret | None:
        """The secret holding the HMAC key of every namespace (``auth="hmac"``)."""
        return self._hmac_secret

    @property
    def hmac_secrets(self) -> dict[str, secretsmanager.ISecret]:
        """The per-namespace HMAC keys (``hmac_secrets``), by namespace."""
        return dict(self._hmac_secrets)


def _check_callback_props(
    errors: PropErrors,
    *,
    namespaces: list[str],
    auth: str,
    hmac_secret: secretsmanager.ISecret | None,
    hmac_secrets: Mapping[str, secretsmanager.ISecret] | None,
    accept_early_callbacks: bool,
    completion_ttl: cdk.Duration,
    replay_window: cdk.Duration,
    max_body_size: int,
) -> None:
    if errors.require(bool(namespaces), "namespaces", "must name at least one namespace"):
        errors.require(
            len(namespaces) <= _MAX_NAMESPACES, "namespaces", f"at most {_MAX_NAMESPACES}, got {len(namespaces)}"
        )
        bad = [ns for ns in namespaces if not isinstance(ns, str) or not NAMESPACE_PATTERN.match(ns)]
        errors.require(
            not bad,
            "namespaces",
            f"{', '.join(map(repr, bad))}: each must be 1-64 characters of A-Z a-z 0-9 _ . -",
        )
        duplicates = sorted({ns for ns in namespaces if namespaces.count(ns) > 1})
        errors.require(not duplicates, "namespaces", f"{', '.join(map(repr, duplicates))} listed more than once")
    if errors.one_of(auth, "auth", ("secret", "hmac")):
        if auth == "hmac":
            if hmac_secrets is None:
                errors.require(hmac_secret is not None, "hmac_secret", 'is required with auth="hmac" (or hmac_secrets)')
            elif errors.require(
                hmac_secret is None, "hmac_secrets", "cannot be combined with hmac_secret: one key for all, or one each"
            ):
                listed = set(namespaces) if all(isinstance(ns, str) for ns in namespaces) else set()
                keyless = sorted(listed - set(hmac_secrets))
                errors.require(not keyless, "hmac_secrets", f"no key for namespace(s) {', '.join(map(repr, keyless))}")
                unknown = sorted(str(ns) for ns in set(hmac_secrets) - listed)
                errors.require(not unknown, "hmac_secrets", f"{', '.join(map(repr, unknown))} not among namespaces")
        else:
            errors.require(
                hmac_secret is None, "hmac_secret", 'is only used with auth="hmac" (per-job secrets need no key)'
            )
            errors.require(
                hmac_secrets is None, "hmac_secrets", 'is only used with auth="hmac" (per-job secrets need no key)'
            )
    errors.require(
        not accept_early_callbacks or auth == "hmac",
        "accept_early_callbacks",
        'needs auth="hmac": a per-job secret can only be checked against the token record, which an early '
        "callback does not have yet",
    )
    errors.duration_between(
        completion_ttl, "completion_ttl", minimum=cdk.Duration.minutes(1), maximum=cdk.Duration.days(30)
    )
    errors.duration_between(
        replay_window, "replay_window", minimum=cdk.Duration.seconds(30), maximum=cdk.Duration.hours(1)
    )
    errors.require(
        isinstance(max_body_size, int) and 1 <= max_body_size <= MAX_BODY_SIZE_LIMIT,
        "max_body_size",
        f"must be between 1 and {MAX_BODY_SIZE_LIMIT} bytes (one EventBridge event carries the body), "
        f"got {max_body_size!r}",
    )


def _body_schema() -> apigw.JsonSchema:
    """The body, validated by API Gateway before the handler runs (the handler checks it again)."""
    return apigw.JsonSchema(
        schema=apigw.JsonSchemaVersion.DRAFT4,
        title="JobCallback",
        type=apigw.JsonSchemaType.OBJECT,
        required=["status"],  # the HMAC signature covers the URL's namespace and job id
        additional_properties=False,
        properties={
            "status": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, enum=["SUCCEEDED", "FAILED"]),
            "output": apigw.JsonSchema(),
            "error": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, max_length=256),
            "cause": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, max_length=32768),
            "jobId": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1, max_length=512),
            "namespace": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1, max_length=64),
        },
    )
