"""The command table: one row per CLI command, naming the RPC it calls.

Flags are not written here: they are derived from the request message's
fields (see ``_request``), so a field added to a proto shows up as a flag
without touching this file. A row only says what the descriptor cannot:
which field is the positional argument, which fields are secrets (read from
a file or stdin, never from the command line), which are fixed by the verb
(``connector enable`` sets ``enabled``), which output-only fields of a
resource to leave out, which credential the call takes, and how a streaming
RPC is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["COMMANDS", "HINTS", "KEY", "TOKEN", "TOOL_STREAM", "WATCH", "Command"]

# Fields the server sets; offering them as flags would only mislead.
OUTPUT_ONLY = frozenset(
    {
        "state",
        "state_reason",
        "key_hint",
        "secret_hint",
        "client_secret_set",
        "api_key_hint",
        "granted_scopes",
        "provider_metadata",
        "auth_type",
        "tools",
        "oauth_app_source",
    }
)


# What a field takes, where its name does not say (the .proto comments are not
# shipped with the SDK). Keyed by "Message.field".
HINTS: dict[str, str] = {
    "ExchangeTokenRequest.grant_type": "urn:ietf:params:oauth:grant-type:token-exchange "
    "or client_credentials",
    "ExchangeTokenRequest.subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    "ExchangeTokenRequest.actor_token_type": "urn:ietf:params:oauth:token-type:jwt",
    "ExchangeTokenRequest.client_assertion_type": "client_credentials: "
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    "ExchangeTokenRequest.organization": "orgs/{org}",
    "DelegateTokenRequest.user": "the principal, orgs/{org}/users/{user}",
    "DelegateTokenRequest.agent": "the agent that acts, orgs/{org}/agents/{agent}",
    "DelegateTokenRequest.scope": "space-separated, within the agent's policies",
    "RevokeTokensRequest.user": "every token whose principal is orgs/{org}/users/{user}",
    "RevokeTokensRequest.agent": "every token agent orgs/{org}/agents/{agent} acts on",
    "RevokeTokensRequest.txn": "every token of one delegation chain (its txn claim)",
    "RevokeTokensRequest.all_tokens": "every token of the organization",
    "ConnectedAccount.connector": "the connector id, e.g. gmail",
    "ConnectedAccount.owner": "orgs/{org}/users/{user} or orgs/{org}/serviceAccounts/{sa}",
    "UpdateConnectorConfigRequest.enabled_tools": "tool names; none: every tool",
    "TrustPolicy.service_accounts": "orgs/{org}/serviceAccounts/{sa} the agent may act as",
    "DelegationRule.delegator": "orgs/{org}/agents/{agent} that hands on",
    "DelegationRule.delegate": "orgs/{org}/agents/{agent} it may hand on to",
    "ListToolsRequest.connector": "only this connector's tools, e.g. gmail",
    "ExecuteToolRequest.connected_account": "orgs/{org}/connectedAccounts/{id}; "
    "none: the principal's default",
    "ExecuteToolRequest.request_id": "idempotency key: the same key within 24 hours "
    "returns the first call's outcome",
    "ConfirmActionRequest.approver": "the human who decided, orgs/{org}/users/{user}",
    "ConfirmActionRequest.approve": "--approve runs the call, --no-approve denies it",
    "WatchRevocationsRequest.cursor": "resume after this cursor; none: every revocation "
    "of unexpired tokens",
    "WatchConnectedAccountsRequest.cursor": "resume after this cursor; none: from now",
}

# How a command authenticates: ``key`` is the --admin-key-file credential (an
# admin API key, or a service-account token for the calls that take one);
# ``token`` is one of our access tokens (service-account or delegated) from
# --token-file or AGENTAUTH_TOKEN: ToolService runs no tools for an admin key.
KEY = "key"
TOKEN = "token"
# How a server-streaming RPC is read (unary calls: "").
TOOL_STREAM = "tool"  # progress to stderr, then one result or error
WATCH = "watch"  # one line per event until Ctrl-C, --max-events or --timeout


@dataclass(frozen=True)
class Command:
    group: str
    verb: str
    service: str  # attribute of ControlPlaneClient: admin, tokens, connections, tools
    rpc: str
    help: str
    # The request field (dotted for a nested one) taken as the positional argument.
    positional: str = ""
    secrets: tuple[str, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)
    # Flag names that read better than the field's, e.g. txn -> chain.
    rename: dict[str, str] = field(default_factory=dict)
    # Fields hidden from flags besides the global OUTPUT_ONLY ones.
    hide: tuple[str, ...] = ()
    # Fields whose values must be set (argparse refuses the call otherwise).
    required: tuple[str, ...] = ()
    # For Update* RPCs taking a FieldMask: the mask is the set of flags given.
    update_mask: str = ""
    auth: str = KEY
    stream: str = ""


def _crud(
    group: str,
    noun: str,
    rpc_noun: str,
    *,
    create: str = "Create",
    plural: str = "",
    parent_help: str = "orgs/{org}",
    get: bool = True,
    delete: str = "Delete",
) -> list[Command]:
    plural = plural or rpc_noun + "s"
    rows = [
        Command(
            group,
            "create",
            "admin",
            f"{create}{rpc_noun}",
            f"create a {noun} in PARENT ({parent_help})",
            positional="parent",
        ),
        Command(
            group,
            "list",
            "admin",
            f"List{plural}",
            f"list the {noun}s of PARENT ({parent_help})",
            positional="parent",
        ),
    ]
    if get:
        rows.append(
            Command(group, "get", "admin", f"Get{rpc_noun}", f"show one {noun}", positional="name")
        )
    if delete:
        verb = "delete" if delete == "Delete" else delete.lower()
        rows.append(
            Command(
                group, verb, "admin", f"{delete}{rpc_noun}", f"{verb} a {noun}", positional="name"
            )
        )
    return rows


COMMANDS: tuple[Command, ...] = (
    # organizations
    Command("org", "create", "admin", "CreateOrganization", "create an organization"),
    Command("org", "list", "admin", "ListOrganizations", "list organizations"),
    Command("org", "get", "admin", "GetOrganization", "show one organization", positional="name"),
    Command(
        "org",
        "update",
        "admin",
        "UpdateOrganization",
        "change an organization; only the fields given are changed, but rate limits "
        "are replaced as a whole (platform key only): give all four",
        positional="organization.name",
        update_mask="update_mask",
    ),
    Command(
        "org", "delete", "admin", "DeleteOrganization", "delete an organization", positional="name"
    ),
    # users
    *_crud("user", "user", "User"),
    Command(
        "user",
        "suspend",
        "admin",
        "UpdateUserStatus",
        "suspend a user: their tokens stop working",
        positional="name",
        fixed={"state": "USER_STATE_SUSPENDED"},
    ),
    Command(
        "user",
        "activate",
        "admin",
        "UpdateUserStatus",
        "reactivate a suspended user",
        positional="name",
        fixed={"state": "USER_STATE_ACTIVE"},
    ),
    Command(
        "user",
        "set-groups",
        "admin",
        "UpdateUserGroups",
        "replace a user's groups (none given: no groups)",
        positional="name",
    ),
    # agents
    *_crud("agent", "agent", "Agent", create="Register", delete="Disable"),
    # service accounts
    *_crud("service-account", "service account", "ServiceAccount", delete="Disable"),
    # admin API keys
    *_crud("api-key", "API key", "ApiKey", get=False, delete="Revoke"),
    # trust policies
    *_crud(
        "trust-policy",
        "trust policy",
        "TrustPolicy",
        plural="TrustPolicies",
        parent_help="orgs/{org}/agents/{agent}",
    ),
    # delegation rules
    *_crud("delegation-rule", "delegation rule", "DelegationRule", get=False),
    # tool policy rules
    *_crud("tool-policy", "tool policy rule", "ToolPolicyRule"),
    # identity providers
    *_crud("identity-provider", "identity provider", "IdentityProvider"),
    # connectors
    Command(
        "connector",
        "list",
        "connections",
        "ListConnectors",
        "list the connectors of PARENT (orgs/{org}) and whether they are enabled",
        positional="parent",
    ),
    Command(
        "connector",
        "enable",
        "connections",
        "UpdateConnectorConfig",
        "enable a connector (orgs/{org}/connectors/{connector}); --enabled-tools "
        "limits it to those tools (none: all)",
        positional="name",
        fixed={"enabled": True},
    ),
    Command(
        "connector",
        "disable",
        "connections",
        "UpdateConnectorConfig",
        "disable a connector (orgs/{org}/connectors/{connector})",
        positional="name",
        fixed={"enabled": False},
        hide=("enabled_tools",),
    ),
    # OAuth apps
    Command(
        "oauth-app",
        "set",
        "connections",
        "SetOAuthApp",
        "set an OAuth client for a connector: orgs/{org}/oauthApps/{connector}, or "
        "oauthApps/{connector} for the whole deployment (platform key)",
        positional="oauth_app.name",
        secrets=("oauth_app.client_secret",),
        hide=("oauth_app.update_time",),
    ),
    Command(
        "oauth-app",
        "get",
        "connections",
        "GetOAuthApp",
        "show an OAuth app (never its secret)",
        positional="name",
    ),
    Command(
        "oauth-app",
        "delete",
        "connections",
        "DeleteOAuthApp",
        "delete an OAuth app",
        positional="name",
    ),
    # developer secrets
    Command(
        "developer-secret",
        "set",
        "connections",
        "SetDeveloperSecret",
        "set a connector's secret: orgs/{org}/developerSecrets/{connector}, or "
        "developerSecrets/{connector} for the whole deployment (platform key)",
        positional="developer_secret.name",
        secrets=("developer_secret.secret",),
    ),
    Command(
        "developer-secret",
        "get",
        "connections",
        "GetDeveloperSecret",
        "show a developer secret (its hint, never the secret)",
        positional="name",
    ),
    Command(
        "developer-secret",
        "delete",
        "connections",
        "DeleteDeveloperSecret",
        "delete a developer secret",
        positional="name",
    ),
    # connected accounts
    Command(
        "account",
        "create",
        "connections",
        "CreateConnectedAccount",
        "create a connected account in PARENT (orgs/{org}); OAuth ones start PENDING "
        "until the owner follows the authorization link",
        positional="parent",
    ),
    Command(
        "account",
        "list",
        "connections",
        "ListConnectedAccounts",
        "list the connected accounts of PARENT (orgs/{org})",
        positional="parent",
    ),
    Command(
        "account",
        "get",
        "connections",
        "GetConnectedAccount",
        "show one connected account",
        positional="name",
    ),
    Command(
        "account",
        "update",
        "connections",
        "UpdateConnectedAccount",
        "relabel a connected account or make it its owner's default",
        positional="name",
    ),
    Command(
        "account",
        "link",
        "connections",
        "GetAuthorizationLink",
        "the URL the account's owner opens to connect it",
        positional="name",
    ),
    Command(
        "account",
        "refresh",
        "connections",
        "RefreshConnectedAccount",
        "refresh the account's access token now",
        positional="name",
    ),
    Command(
        "account",
        "set-api-key",
        "connections",
        "SetApiKey",
        "store the API key of an API-key connected account",
        positional="name",
        secrets=("api_key",),
    ),
    Command(
        "account",
        "delete",
        "connections",
        "DeleteConnectedAccount",
        "delete a connected account",
        positional="name",
    ),
    # tokens
    Command(
        "token",
        "revoke",
        "tokens",
        "RevokeToken",
        "revoke one access token (RFC 7009)",
        secrets=("token",),
        required=("token",),
    ),
    Command(
        "token",
        "revoke-all",
        "tokens",
        "RevokeTokens",
        "revoke every live token of a user, an agent or a delegation chain in PARENT (orgs/{org})",
        positional="parent",
        rename={"txn": "chain"},
    ),
    Command(
        "token",
        "introspect",
        "tokens",
        "IntrospectToken",
        "whether a token is active, and its claims (RFC 7662)",
        secrets=("token",),
        required=("token",),
    ),
    Command(
        "token",
        "mint",
        "tokens",
        "DelegateToken",
        "mint a delegated token: AGENT acting for USER (the key must be a service-account token)",
        required=("user", "agent"),
    ),
    Command(
        "token",
        "exchange",
        "tokens",
        "ExchangeToken",
        "an RFC 8693 / client-credentials exchange, e.g. a workload token for an access token",
        secrets=("subject_token", "actor_token", "client_assertion"),
        required=("grant_type",),
    ),
    Command("token", "jwks", "tokens", "GetJwks", "the server's public signing keys"),
    # watches
    Command(
        "token",
        "watch-revocations",
        "tokens",
        "WatchRevocations",
        "print the revocations of PARENT (orgs/{org}) as they happen",
        positional="parent",
        stream=WATCH,
    ),
    Command(
        "account",
        "watch",
        "connections",
        "WatchConnectedAccounts",
        "print the connected-account changes of PARENT (orgs/{org}) as they happen",
        positional="parent",
        stream=WATCH,
    ),
    # tools: run with an access token, decided with an admin key or a
    # service-account token holding confirmations:decide
    Command(
        "tool",
        "list",
        "tools",
        "ListTools",
        "the tools the access token may run, with the principal's connection for each",
        auth=TOKEN,
    ),
    Command(
        "tool",
        "execute",
        "tools",
        "ExecuteTool",
        "run one tool call (TOOL: CONNECTOR.TOOL): progress on stderr, then its result",
        positional="tool",
        rename={"arguments": "args"},
        # The shared --timeout is the call's bound: sent here, and the deadline.
        hide=("timeout",),
        auth=TOKEN,
        stream=TOOL_STREAM,
    ),
    Command(
        "tool",
        "confirm",
        "tools",
        "ConfirmAction",
        "record a human's decision on a tool call held for confirmation "
        "(orgs/{org}/toolConfirmations/{id}); the key: an org admin key, or a "
        "service-account token holding confirmations:decide",
        positional="name",
        required=("approver", "approve"),
    ),
    Command(
        "tool",
        "confirmation",
        "tools",
        "GetToolConfirmation",
        "show a tool confirmation as the server holds it (what the approver decides on)",
        positional="name",
    ),
)
