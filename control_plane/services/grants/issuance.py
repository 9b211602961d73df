"""What every grant does once the agent is authenticated: narrow, then mint.

RFC 8693 §2.1 / RFC 6749 §3.3: the granted scope is the request intersected with
what the policy allows; asking for more is ``invalid_scope``, never a silent
superset. Audiences come from the policy's allow-list only (``invalid_target``).
"""

from __future__ import annotations

import datetime as dt

from control_plane.domain import names
from control_plane.domain.errors import InvalidArgument, InvalidRequest, InvalidScope, InvalidTarget
from control_plane.domain.trust import SCOPE_TOKEN
from control_plane.services.grants.base import TokenRequest
from control_plane.services.identity import CompiledPolicy, OrgIdentity
from control_plane.tokens.minting import MintedToken, Minter


def requested_scopes(request: TokenRequest) -> list[str] | None:
    """None when the request names no scope (then: everything the policy allows)."""
    if not request.scope.strip():
        return None
    scopes = request.scope.split()
    if len(scopes) > 64 or not all(SCOPE_TOKEN.fullmatch(s) for s in scopes):
        raise InvalidScope("scope must be space-separated RFC 6749 scope-tokens")
    return scopes


def choose_service_account(
    request: TokenRequest, policy: CompiledPolicy, ident: OrgIdentity
) -> str:
    allowed = [sa for sa in policy.view.service_account_ids if sa in ident.active_service_accounts]
    if request.service_account:
        try:
            wanted = names.parse_child(
                request.service_account, "serviceAccounts", "service_account"
            )
        except InvalidArgument:
            raise InvalidRequest(
                "service_account must be orgs/{org}/serviceAccounts/{id}"
            ) from None
        if wanted.org_id != ident.org_id or wanted.id not in allowed:
            raise InvalidTarget("the agent may not act as that service account")
        return wanted.id
    if not allowed:
        raise InvalidTarget("no service account this agent may act as is active")
    if len(allowed) != 1:
        raise InvalidRequest("name the service_account to act as")
    return allowed[0]


def choose_audiences(request: TokenRequest, policy: CompiledPolicy) -> list[str]:
    allowed = set(policy.view.audiences)
    if request.audience:
        if len(request.audience) > 8 or not set(request.audience) <= allowed:
            raise InvalidTarget()
        return list(dict.fromkeys(request.audience))
    if len(allowed) != 1:
        raise InvalidRequest("name the audience the token is for")
    return list(allowed)


async def issue_for_agent(
    minter: Minter,
    request: TokenRequest,
    ident: OrgIdentity,
    agent_id: str,
    policy: CompiledPolicy,
    *,
    not_after: dt.datetime | None = None,
) -> MintedToken:
    asked = requested_scopes(request)
    allowed = set(policy.view.scopes)
    if asked is not None and not set(asked) <= allowed:
        raise InvalidScope()
    scopes = sorted(allowed if asked is None else set(asked))
    sa_id = choose_service_account(request, policy, ident)
    audiences = choose_audiences(request, policy)
    return await minter.mint(
        org_id=ident.org_id,
        subject=names.child_name(ident.org_id, "serviceAccounts", sa_id),
        client_id=names.child_name(ident.org_id, "agents", agent_id),
        scopes=scopes,
        audiences=audiences,
        ttl=ident.token_ttl,
        not_after=not_after,
    )
