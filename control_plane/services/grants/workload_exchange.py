"""RFC 8693 token exchange: a workload's JWT in, a service-account token out.

RFC 8693 §2.1: "subject_token REQUIRED. A security token that represents the
identity of the party on behalf of whom the request is being made." Here that
party is the agent's workload; the trust policies of the target org decide which
agent it is and which service account it may act as.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict
from typing import Any

from control_plane.clock import Clock
from control_plane.domain.errors import InvalidRequest, UnacceptableToken
from control_plane.domain.scope import OrgScope
from control_plane.services.external_keys import IssuerKeyCache
from control_plane.services.grants.base import (
    ACCESS_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    MAX_PARAM,
    TOKEN_EXCHANGE,
    TokenRequest,
)
from control_plane.services.grants.issuance import issue_for_agent
from control_plane.services.grants.request import NO_ORG, GrantRequest
from control_plane.services.identity import CompiledPolicy, IdentityDirectory, OrgIdentity
from control_plane.services.workload_tokens import Rejected, Unverified, parse_unverified, verify
from control_plane.tokens.minting import MAX_TTL, MintedToken, Minter

MAX_TTL_SECONDS = int(MAX_TTL.total_seconds())

VERIFIED_CACHE_SIZE = 10_000


class WorkloadTokenExchange:
    def __init__(
        self, directory: IdentityDirectory, keys: IssuerKeyCache, minter: Minter, clock: Clock
    ) -> None:
        self.directory = directory
        self.keys = keys
        self.minter = minter
        self.clock = clock
        # A workload re-presents the same projected token for its lifetime; a
        # verified (policy, token digest) pair is reused until the token's exp.
        # Keyed by policy id, so a deleted policy (gone from the org snapshot)
        # can never be matched through the cache.
        self._verified: OrderedDict[tuple[str, bytes], dict[str, Any]] = OrderedDict()

    async def _verify_cached(
        self, token: str, parsed: Unverified, policy: CompiledPolicy, now: float
    ) -> dict[str, Any]:
        key = (policy.view.id, hashlib.sha256(token.encode()).digest())
        claims = self._verified.get(key)
        if claims is not None and now <= float(claims["exp"]):
            self._verified.move_to_end(key)
            return claims
        claims = await verify(token, parsed, policy, self.keys, now)
        self._verified[key] = claims
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def can_handle(self, request: TokenRequest) -> bool:
        return request.grant_type == TOKEN_EXCHANGE and not request.actor_token

    async def identify(
        self, ident: OrgIdentity, token: str, wanted_agent: str | None
    ) -> tuple[CompiledPolicy, dict[str, Any]]:
        """The one agent of ``ident``'s org whose policy admits ``token``, or refuse.

        Raises Rejected (nothing admits it) or InvalidRequest (several agents do).
        """
        parsed = parse_unverified(token)
        now = self.clock.now().timestamp()
        matches = []
        reasons = []
        for policy in ident.policies:
            view = policy.view
            if view.kind != "WORKLOAD_TOKEN" or view.agent_id not in ident.active_agents:
                continue
            if wanted_agent is not None and view.agent_id != wanted_agent:
                continue
            try:
                claims = await self._verify_cached(token, parsed, policy, now)
            except Rejected as exc:
                reasons.append(exc.why)
                continue
            matches.append((policy, claims))
        if not matches:
            raise Rejected("; ".join(sorted(set(reasons)))[:300] or "no policy")
        if len({p.view.agent_id for p, _ in matches}) > 1:
            raise InvalidRequest("several agents admit this token: pass client_id")
        return matches[0]

    async def handle(self, parsed: GrantRequest) -> MintedToken:
        request = parsed.raw
        if request.subject_token_type != JWT_TOKEN_TYPE:
            raise InvalidRequest("subject_token_type must be urn:ietf:params:oauth:token-type:jwt")
        if request.requested_token_type not in ("", ACCESS_TOKEN_TYPE):
            raise InvalidRequest("only access tokens can be requested")
        if not request.subject_token or len(request.subject_token) > MAX_PARAM:
            raise InvalidRequest("subject_token is required")
        if request.client_assertion or request.client_assertion_type:
            # Never accept a credential we would not check (RFC 6749 §2.3): the
            # workload token is this grant's only authentication.
            raise InvalidRequest("client_assertion is not used with token exchange")
        org_id = parsed.org_id
        if org_id is None:
            raise InvalidRequest(NO_ORG)
        wanted_agent = parsed.agent_id
        scope = OrgScope.to_authenticate(org_id, credential="workload-token")
        ident = await self.directory.get(scope)
        if ident is None:
            raise UnacceptableToken(debug="no such org")
        try:
            policy, claims = await self.identify(ident, request.subject_token, wanted_agent)
        except Rejected as exc:
            raise UnacceptableToken(debug=exc.why) from None
        not_after = not_after_for(claims["exp"], self.clock.now())
        if not_after is None:
            raise UnacceptableToken(debug="subject token expires now")
        return await issue_for_agent(
            self.minter, scope, parsed, ident, policy.view.agent_id, policy, not_after=not_after
        )


def not_after_for(exp: float, now: dt.datetime) -> dt.datetime | None:
    """A minted token never outlives the credential it came from (whole seconds, as
    in the JWT). Within a second of expiry, or past it inside the verification
    leeway, there is nothing to mint; an absurdly far exp is clamped before it
    reaches datetime."""
    now_s = int(now.timestamp())
    exp_s = min(float(exp), now_s + MAX_TTL_SECONDS)
    if exp_s < now_s + 2:
        return None
    return dt.datetime.fromtimestamp(int(exp_s), dt.UTC)
