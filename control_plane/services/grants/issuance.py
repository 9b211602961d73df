"""What every grant does once the agent is authenticated: narrow, then mint.

RFC 8693 §2.1 / RFC 6749 §3.3: the granted scope is the request intersected with
what the policy allows; asking for more is ``invalid_scope``, never a silent
superset. Audiences come from the policy's allow-list only (``invalid_target``).
"""

from __future__ import annotations

import datetime as dt
import secrets

from control_plane.domain import names
from control_plane.domain.delegation import attenuate, beyond, nest
from control_plane.domain.errors import InvalidRequest, InvalidScope, InvalidTarget
from control_plane.domain.scope import OrgScope
from control_plane.domain.trust import SCOPE_TOKEN
from control_plane.services.grants.request import GrantRequest
from control_plane.services.identity import CompiledPolicy, OrgIdentity
from control_plane.tokens.minting import MintedToken, Minter


def grant_scopes(ceiling: frozenset[str], scope: str) -> list[str]:
    """The space-separated ``scope`` request narrowed to ``ceiling`` (all of it when empty)."""
    requested = None
    if scope.strip():
        asked = scope.split()
        if len(asked) > 64 or not all(SCOPE_TOKEN.fullmatch(s) for s in asked):
            raise InvalidScope("scope must be space-separated RFC 6749 scope-tokens")
        requested = frozenset(asked)
    granted = attenuate(ceiling, requested)
    if granted is None:
        # The caller is authenticated by now and the names are its own request,
        # so naming them tells it only what to drop (RFC 6749 §5.2 error_description:
        # "Human-readable ... to assist the client developer").
        assert requested is not None
        raise InvalidScope(_not_allowed(beyond(ceiling, requested)))
    return sorted(granted)


def _not_allowed(scopes: list[str], shown: int = 8) -> str:
    more = f" (and {len(scopes) - shown} more)" if len(scopes) > shown else ""
    return "scope not allowed: " + " ".join(scopes[:shown]) + more


def choose_service_account(
    request: GrantRequest, policy: CompiledPolicy, ident: OrgIdentity
) -> str:
    allowed = [sa for sa in policy.view.service_account_ids if sa in ident.active_service_accounts]
    wanted = request.service_account
    if wanted is not None:
        if wanted.org_id != ident.org_id or wanted.id not in allowed:
            raise InvalidTarget("the agent may not act as that service account")
        return wanted.id
    if not allowed:
        raise InvalidTarget("no service account this agent may act as is active")
    if len(allowed) != 1:
        raise InvalidRequest("name the service_account to act as")
    return allowed[0]


def choose_audiences(requested: tuple[str, ...], allowed: set[str] | tuple[str, ...]) -> list[str]:
    """Requested audiences from the allow-list, or its only entry when none is named."""
    allowed = set(allowed)
    if requested:
        if len(requested) > 8 or not set(requested) <= allowed:
            raise InvalidTarget()
        return list(dict.fromkeys(requested))
    if len(allowed) != 1:
        raise InvalidRequest("name the audience the token is for")
    return list(allowed)


async def issue_for_agent(
    minter: Minter,
    org: OrgScope,
    request: GrantRequest,
    ident: OrgIdentity,
    agent_id: str,
    policy: CompiledPolicy,
    *,
    not_after: dt.datetime | None = None,
) -> MintedToken:
    scopes = grant_scopes(frozenset(policy.view.scopes), request.raw.scope)
    sa_id = choose_service_account(request, policy, ident)
    audiences = choose_audiences(request.raw.audience, policy.view.audiences)
    return await minter.mint(
        scope=org,
        subject=names.child_name(ident.org_id, "serviceAccounts", sa_id),
        client_id=names.child_name(ident.org_id, "agents", agent_id),
        scopes=scopes,
        audiences=audiences,
        ttl=ident.token_ttl,
        not_after=not_after,
    )


async def issue_delegated(
    minter: Minter,
    org: OrgScope,
    ident: OrgIdentity,
    user_id: str,
    agent_id: str,
    scope: str,
    audience: tuple[str, ...],
    *,
    not_after: dt.datetime | None = None,
) -> MintedToken:
    """The first link of a delegation chain: ``sub`` = the user, ``act`` = the agent.

    RFC 8693 §4.1: the acting party goes in ``act`` and the subject stays the
    principal. Scopes and audiences are bounded by everything the agent's trust
    policies allow; ``txn`` is a new id for the chain of this one user request.
    """
    policies = [p.view for p in ident.policies if p.view.agent_id == agent_id]
    scopes = grant_scopes(frozenset(sc for p in policies for sc in p.scopes), scope)
    audiences = choose_audiences(audience, {au for p in policies for au in p.audiences})
    agent_name = names.child_name(ident.org_id, "agents", agent_id)
    return await minter.mint(
        scope=org,
        subject=names.child_name(ident.org_id, "users", user_id),
        client_id=agent_name,
        scopes=scopes,
        audiences=audiences,
        ttl=ident.token_ttl,
        not_after=not_after,
        act=nest(agent_name, None),
        txn=secrets.token_hex(16),
    )
