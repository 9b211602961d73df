"""RFC 8693 sub-delegation: a delegated token plus the next agent's credential.

§2.1: "actor_token ... represents the identity of the acting party". The new
token keeps ``sub`` and ``org_id``; its outermost ``act`` is the authenticated
actor and the previous ``act`` is nested inside it, copied verbatim from the
verified subject token (§4.1). It can only narrow: scopes ⊆ parent ∩ the actor's
policy, audiences from the actor's allow-list, ``exp`` ≤ the parent's. Which
agent may delegate to which is org policy (§4.4 ``may_act``); anything else, and
chains past the org's depth limit, is ``invalid_request``.
"""

from __future__ import annotations

import datetime as dt

from control_plane.domain import names
from control_plane.domain.delegation import (
    ChainInvalid,
    actor_chain,
    child_expiry,
    nest,
)
from control_plane.domain.errors import (
    AgentAuthError,
    InvalidArgument,
    InvalidRequest,
    InvalidTarget,
    UnacceptableToken,
)
from control_plane.domain.scope import OrgScope
from control_plane.domain.tool_scopes import meet
from control_plane.services.delegation import DelegationRuleService
from control_plane.services.grants.base import (
    ACCESS_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    MAX_PARAM,
    TokenRequest,
    is_sub_delegation,
)
from control_plane.services.grants.issuance import grant_scopes
from control_plane.services.grants.request import ACTS_FOR_USER, GrantRequest
from control_plane.services.grants.workload_exchange import WorkloadTokenExchange
from control_plane.services.identity import IdentityDirectory
from control_plane.services.own_tokens import OwnTokens
from control_plane.services.workload_tokens import Rejected
from control_plane.storage import issued_tokens
from control_plane.tokens.minting import MintedToken, Minter


class SubDelegation:
    def __init__(
        self,
        own_tokens: OwnTokens,
        workloads: WorkloadTokenExchange,
        rules: DelegationRuleService,
        directory: IdentityDirectory,
        minter: Minter,
    ) -> None:
        self.own_tokens = own_tokens
        self.workloads = workloads
        self.rules = rules
        self.directory = directory
        self.minter = minter

    def can_handle(self, request: TokenRequest) -> bool:
        """Only our own access tokens; any other subject with an actor is a user assertion."""
        return is_sub_delegation(request, self.own_tokens.issuer)

    async def handle(self, parsed: GrantRequest) -> MintedToken:
        request = parsed.raw
        if request.subject_token_type != ACCESS_TOKEN_TYPE:
            raise InvalidRequest(
                "subject_token_type must be urn:ietf:params:oauth:token-type:access_token"
            )
        if request.actor_token_type != JWT_TOKEN_TYPE:
            raise InvalidRequest("actor_token_type must be urn:ietf:params:oauth:token-type:jwt")
        if request.requested_token_type not in ("", ACCESS_TOKEN_TYPE):
            raise InvalidRequest("only access tokens can be requested")
        if request.client_assertion or request.client_assertion_type:
            raise InvalidRequest("client_assertion is not used with token exchange")
        if parsed.service_account is not None:
            raise InvalidRequest(ACTS_FOR_USER)
        for token in (request.subject_token, request.actor_token):
            if not token or len(token) > MAX_PARAM:
                raise InvalidRequest("subject_token and actor_token are required")

        try:
            parent = await self.own_tokens.verify_active(request.subject_token)
        except AgentAuthError as exc:
            raise UnacceptableToken(debug=f"subject: {exc.reason}") from None
        if parsed.agent_id is None and not parsed.in_org(parent["org_id"]):
            # ``organization`` names another org than the subject token's: the
            # token is not acceptable for that org (as in the other exchanges).
            raise UnacceptableToken(debug="organization is not the subject token's")
        try:
            chain = actor_chain(parent.get("act"))
        except ChainInvalid as exc:
            raise UnacceptableToken(debug=str(exc)) from None
        if not chain:
            raise InvalidRequest("the subject token is not a delegated token")
        org_id = parent["org_id"]
        scope = OrgScope.to_authenticate(org_id, credential="delegated-token")
        ident = await self.directory.get(scope)
        if ident is None:
            raise UnacceptableToken(debug="org gone")
        if len(chain) + 1 > ident.max_delegation_depth:
            raise InvalidRequest("the delegation chain is at its maximum depth")

        if parsed.agent_id is not None and parsed.org_id != org_id:
            # Answered from the names alone: the same for an org that does not exist.
            raise InvalidRequest("the actor is not in the subject token's organization")
        try:
            policy, actor_claims = await self.workloads.identify(
                ident, request.actor_token, parsed.agent_id
            )
        except Rejected as exc:
            raise UnacceptableToken(debug=f"actor: {exc.why}") from None
        delegate_id = policy.view.agent_id
        try:
            delegator = names.parse_child(chain[0], "agents", "act.sub")
        except InvalidArgument:
            raise UnacceptableToken(debug="current actor is not an agent") from None
        if delegator.org_id != org_id or not await self.rules.allows(
            scope, delegator.id, delegate_id
        ):
            raise InvalidRequest("this agent may not delegate to that agent")

        scopes = grant_scopes(
            meet(str(parent.get("scope", "")).split(), policy.view.scopes),
            request.scope,
        )
        parent_aud = parent["aud"] if isinstance(parent["aud"], list) else [parent["aud"]]
        allowed_aud = set(policy.view.audiences)
        if request.audience:
            if not set(request.audience) <= allowed_aud:
                raise InvalidTarget()
            audiences = list(dict.fromkeys(request.audience))
        else:
            audiences = [a for a in parent_aud if a in allowed_aud]
            if not audiences:
                raise InvalidTarget("no audience of the parent is allowed for this agent")
        now = int(self.minter.clock.now().timestamp())
        exp = child_expiry(
            int(parent["exp"]), int(actor_claims["exp"]), now, int(ident.token_ttl.total_seconds())
        )
        if exp is None:
            raise UnacceptableToken(debug="parent or actor expires now")
        not_after = dt.datetime.fromtimestamp(exp, dt.UTC)
        agent_name = names.child_name(org_id, "agents", delegate_id)
        try:
            return await self.minter.mint(
                scope=scope,
                subject=parent["sub"],
                client_id=agent_name,
                scopes=scopes,
                audiences=audiences,
                ttl=ident.token_ttl,
                not_after=not_after,
                act=nest(agent_name, parent["act"]),
                txn=parent.get("txn") if isinstance(parent.get("txn"), str) else None,
                parent_jti=parent["jti"],
                root_jti=await self._root(scope, parent["jti"]),
            )
        except issued_tokens.ParentRevoked:
            # Revoked while we were minting: the child was never recorded or sent.
            raise UnacceptableToken(debug="subject revoked during the exchange") from None

    async def _root(self, scope: OrgScope, parent_jti: str) -> str:
        """The chain root is recorded on every link; a first hop is its own root."""
        row = await issued_tokens.get(self.own_tokens.db, scope, parent_jti)
        return (row.root_jti if row is not None else None) or parent_jti
