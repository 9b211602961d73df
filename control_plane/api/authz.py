"""Authorization: a table keyed by full RPC method name or HTTP route. Deny by default.

A method or route missing from these tables is refused for everyone, and tests
fail when any served RPC or registered route lacks an entry, so nothing new can
ship unguarded. Each rule also says how its caller authenticates, whether the
call is audited (and under which action name: an HTTP route is audited under its
gRPC twin's name), whether it is rate-limited, and how large a gRPC request
message it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.domain.principals import Role

#: What a request message may weigh, checked on its bytes before they are parsed.
#: Every field the services accept is capped (tokens and assertions at 16 KiB,
#: names, display names, page tokens far below), so kilobytes are plenty; 64 KiB
#: matches the HTTP surface's body limit.
MAX_REQUEST_BYTES = 64 * 1024
#: Trust policies and identity providers carry a static JWKS (up to 64 KiB) beside
#: up to 64 audiences (512 each), 64 service accounts, 64 scopes and 16 claim
#: conditions: about 140 KiB at the caps, so 256 KiB.
MAX_KEYSET_REQUEST_BYTES = 256 * 1024
#: ExecuteTool carries the model's arguments (an email body may be up to 1 MB of
#: text, and JSON escaping can double it).
MAX_TOOL_CALL_REQUEST_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Rule:
    roles: frozenset[Role]
    public: bool = False
    audited: bool = False  # mutations: the audit hook records them
    #: How the caller authenticates: "bearer" (admin key or service-account token),
    #: "tool_token" (an agent's SA or delegated token), "connect_link" (a hosted
    #: connect link), "oauth_state" (an authorization response).
    auth: str = "bearer"
    #: The audit action name (default: the table key).
    action: str = ""
    #: Health probes and metrics scrapes are not rate-limited.
    rate_limited: bool = True
    #: gRPC: the largest request message accepted, in bytes (see MAX_REQUEST_BYTES).
    max_request_bytes: int = MAX_REQUEST_BYTES


PUBLIC = Rule(frozenset(), public=True)
PROBE = Rule(frozenset(), public=True, rate_limited=False)
ADMINS = frozenset({Role.PLATFORM_ADMIN, Role.ORG_ADMIN})
PLATFORM_ONLY = frozenset({Role.PLATFORM_ADMIN})
TOKEN_CALLERS = frozenset({Role.PLATFORM_ADMIN, Role.ORG_ADMIN, Role.SERVICE_ACCOUNT})


def _read(roles: frozenset[Role] = ADMINS) -> Rule:
    return Rule(roles)


def _write(roles: frozenset[Role] = ADMINS, max_request_bytes: int = MAX_REQUEST_BYTES) -> Rule:
    return Rule(roles, audited=True, max_request_bytes=max_request_bytes)


_ADMIN = "/agentauth.v1.AdminService/"
_CONN = "/agentauth.v1.ConnectionService/"
_TOOL = "/agentauth.v1.ToolService/"
#: Agents holding our SA or delegated tokens (``tool_token``); admin keys run no tools.
TOOL_RUNNERS = frozenset({Role.TOOL_CALLER})

RULES: dict[str, Rule] = {
    # Standard services: liveness and discovery are public by design.
    "/grpc.health.v1.Health/Check": PROBE,
    "/grpc.health.v1.Health/List": PROBE,
    "/grpc.health.v1.Health/Watch": PROBE,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": PUBLIC,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": PUBLIC,
    # Published verification keys are public, like /.well-known/jwks.json.
    "/agentauth.v1.TokenService/GetJwks": PUBLIC,
    # The grant authenticates the caller by the credential it carries
    # (workload token or private_key_jwt assertion), like POST /oauth2/token.
    "/agentauth.v1.TokenService/ExchangeToken": Rule(frozenset(), public=True, audited=True),
    # RFC 7662 §2.1 / RFC 7009 §2.1: the caller must authenticate; it only sees
    # or revokes its own org's tokens.
    "/agentauth.v1.TokenService/IntrospectToken": _read(TOKEN_CALLERS),
    "/agentauth.v1.TokenService/RevokeToken": _write(TOKEN_CALLERS),
    # The developer's backend delegates its users with its own SA token.
    "/agentauth.v1.TokenService/DelegateToken": _write(frozenset({Role.SERVICE_ACCOUNT})),
    "/agentauth.v1.TokenService/RevokeTokens": _write(),
    # Resource servers (SA tokens) and admins follow their own org's revocations.
    "/agentauth.v1.TokenService/WatchRevocations": _read(TOKEN_CALLERS),
    # Organizations: only the platform creates or deletes them.
    _ADMIN + "CreateOrganization": _write(PLATFORM_ONLY),
    _ADMIN + "GetOrganization": _read(),
    _ADMIN + "ListOrganizations": _read(),
    _ADMIN + "DeleteOrganization": _write(PLATFORM_ONLY),
    _ADMIN + "UpdateOrganization": _write(),
    _ADMIN + "CreateUser": _write(),
    _ADMIN + "GetUser": _read(),
    _ADMIN + "ListUsers": _read(),
    _ADMIN + "UpdateUserStatus": _write(),
    _ADMIN + "UpdateUserGroups": _write(),
    _ADMIN + "DeleteUser": _write(),
    _ADMIN + "RegisterAgent": _write(),
    _ADMIN + "GetAgent": _read(),
    _ADMIN + "ListAgents": _read(),
    _ADMIN + "DisableAgent": _write(),
    _ADMIN + "CreateTrustPolicy": _write(max_request_bytes=MAX_KEYSET_REQUEST_BYTES),
    _ADMIN + "GetTrustPolicy": _read(),
    _ADMIN + "ListTrustPolicies": _read(),
    _ADMIN + "DeleteTrustPolicy": _write(),
    _ADMIN + "CreateDelegationRule": _write(),
    _ADMIN + "ListDelegationRules": _read(),
    _ADMIN + "DeleteDelegationRule": _write(),
    _ADMIN + "CreateToolPolicyRule": _write(),
    _ADMIN + "GetToolPolicyRule": _read(),
    _ADMIN + "ListToolPolicyRules": _read(),
    _ADMIN + "DeleteToolPolicyRule": _write(),
    _ADMIN + "CreateIdentityProvider": _write(max_request_bytes=MAX_KEYSET_REQUEST_BYTES),
    _ADMIN + "GetIdentityProvider": _read(),
    _ADMIN + "ListIdentityProviders": _read(),
    _ADMIN + "DeleteIdentityProvider": _write(),
    _ADMIN + "CreateServiceAccount": _write(),
    _ADMIN + "GetServiceAccount": _read(),
    _ADMIN + "ListServiceAccounts": _read(),
    _ADMIN + "DisableServiceAccount": _write(),
    _ADMIN + "CreateApiKey": _write(),
    _ADMIN + "ListApiKeys": _read(),
    _ADMIN + "RevokeApiKey": _write(),
    # ConnectionService: admins configure connectors and credentials (deployment-level
    # names are checked for platform admins in the service); the developer's backend
    # (a service-account token) manages its users' connected accounts.
    _CONN + "ListConnectors": _read(TOKEN_CALLERS),
    _CONN + "UpdateConnectorConfig": _write(),
    _CONN + "SetOAuthApp": _write(),
    _CONN + "GetOAuthApp": _read(),
    _CONN + "DeleteOAuthApp": _write(),
    _CONN + "SetDeveloperSecret": _write(),
    _CONN + "GetDeveloperSecret": _read(),
    _CONN + "DeleteDeveloperSecret": _write(),
    _CONN + "CreateConnectedAccount": _write(TOKEN_CALLERS),
    _CONN + "GetConnectedAccount": _read(TOKEN_CALLERS),
    _CONN + "ListConnectedAccounts": _read(TOKEN_CALLERS),
    _CONN + "UpdateConnectedAccount": _write(TOKEN_CALLERS),
    _CONN + "DeleteConnectedAccount": _write(TOKEN_CALLERS),
    _CONN + "SetApiKey": _write(TOKEN_CALLERS),
    _CONN + "GetAuthorizationLink": _read(TOKEN_CALLERS),
    _CONN + "WatchConnectedAccounts": _read(TOKEN_CALLERS),
    # Refreshing changes the vault (a rotated token is stored): audited.
    _CONN + "RefreshConnectedAccount": _write(TOKEN_CALLERS),
    # ToolService: the token's principal runs tools. ExecuteTool audits each action
    # itself (intent before the provider is called, then its outcome, with the
    # action's id), so the pipeline does not record the RPC a second time.
    _TOOL + "ListTools": Rule(TOOL_RUNNERS, auth="tool_token"),
    _TOOL + "ExecuteTool": Rule(
        TOOL_RUNNERS, auth="tool_token", max_request_bytes=MAX_TOOL_CALL_REQUEST_BYTES
    ),
    # The developer's backend records a human's decision on a held tool call with its
    # service-account token (which must also hold the decide scope: agents can hold
    # SA tokens too), or an admin key. Audited: it lets a destructive call run.
    _TOOL + "ConfirmAction": _write(TOKEN_CALLERS),
    _TOOL + "GetToolConfirmation": _read(TOKEN_CALLERS),
}


_TOKEN = "/agentauth.v1.TokenService/"
LINK = frozenset({Role.CONNECT_LINK})

#: The HTTP surface, keyed "METHOD /route" (aiohttp's canonical route). The OAuth
#: endpoints are audited under their TokenService twins' names.
ROUTES: dict[str, Rule] = {
    "GET /.well-known/jwks.json": PUBLIC,
    "GET /.well-known/oauth-authorization-server": PUBLIC,
    "GET /healthz": PROBE,
    "GET /readyz": PROBE,
    "GET /metrics": PROBE,
    "POST /oauth2/token": Rule(
        frozenset(), public=True, audited=True, action=_TOKEN + "ExchangeToken"
    ),
    "POST /oauth2/introspect": Rule(TOKEN_CALLERS, action=_TOKEN + "IntrospectToken"),
    "POST /oauth2/revoke": Rule(TOKEN_CALLERS, audited=True, action=_TOKEN + "RevokeToken"),
    # Hosted connect pages: the link in the path is the capability that authenticates.
    "GET /connect/{link}": Rule(LINK, auth="connect_link", action="ConnectPages/Open"),
    "POST /connect/{link}": Rule(
        LINK, audited=True, auth="connect_link", action="ConnectPages/Submit"
    ),
    # The provider's redirect back: the authorization response's state authenticates.
    "GET /oauth/callback": Rule(
        LINK, audited=True, auth="oauth_state", action="ConnectPages/Callback"
    ),
}


def rule_for(method: str) -> Rule | None:
    return RULES.get(method)


def max_receive_bytes(rules: dict[str, Rule]) -> int:
    """The server-wide receive limit: the largest message any method accepts.

    gRPC refuses anything larger before the application sees a byte; the
    per-method limits below it are checked on the received bytes, before parsing.
    """
    return max(rule.max_request_bytes for rule in rules.values())
