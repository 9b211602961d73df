"""RFC 8693 token exchange with a user assertion: the first link of a delegation chain.

§2.1: the ``subject_token`` "represents the identity of the party on behalf of
whom the request is being made" - here the user, asserted by the org's identity
provider (an OIDC ID token, or an access token issued for the configured
audience) - and the ``actor_token`` "represents the identity of the acting
party": the agent, by a workload token its trust policies admit or by one of our
own access tokens issued to it. The result is what ``DelegateToken`` mints:
``sub`` = the user, ``act`` = the agent (§4.1), a new ``txn``.

§2.2.2: "If ... either the subject_token or actor_token are invalid for any
reason, or are unacceptable based on policy, the invalid_request error code MUST
be used." Every such cause - bad signature, another issuer or audience, no
identity provider, an unknown or suspended user, an actor from elsewhere - is
the one :class:`UnacceptableToken` answer, so the endpoint is no oracle for
which users or providers exist. Caller-supplied ``act``/``may_act`` are never read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict
from typing import Any

from control_plane.clock import Clock
from control_plane.domain import names
from control_plane.domain.delegation import child_expiry
from control_plane.domain.errors import (
    AgentAuthError,
    InvalidArgument,
    InvalidRequest,
    UnacceptableToken,
)
from control_plane.domain.scope import OrgScope
from control_plane.domain.trust import claims_equal
from control_plane.domain.validation import MAX_EXTERNAL_ID
from control_plane.services.external_keys import IssuerKeyCache
from control_plane.services.grants.base import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    MAX_PARAM,
    TOKEN_EXCHANGE,
    TokenRequest,
    claims_our_issuer,
    is_sub_delegation,
)
from control_plane.services.grants.issuance import issue_delegated
from control_plane.services.grants.request import ACTS_FOR_USER, NO_ORG, GrantRequest
from control_plane.services.grants.workload_exchange import WorkloadTokenExchange
from control_plane.services.identity import (
    CompiledIdentityProvider,
    IdentityDirectory,
    OrgIdentity,
)
from control_plane.services.own_tokens import OwnTokens
from control_plane.services.workload_tokens import (
    Expected,
    Rejected,
    Unverified,
    parse_unverified,
    verify_external,
)
from control_plane.storage.db import Database
from control_plane.tokens.minting import MintedToken, Minter

# subject_token_type -> whether an ``at+jwt`` header is acceptable (RFC 9068 §2.1
# types access tokens so that nothing else mistakes them for an ID token).
SUBJECT_TYPES = {ID_TOKEN_TYPE: False, JWT_TOKEN_TYPE: False, ACCESS_TOKEN_TYPE: True}
VERIFIED_CACHE_SIZE = 10_000


class UserAssertion:
    def __init__(
        self,
        db: Database,
        own_tokens: OwnTokens,
        workloads: WorkloadTokenExchange,
        directory: IdentityDirectory,
        keys: IssuerKeyCache,
        minter: Minter,
        clock: Clock,
    ) -> None:
        self.db = db
        self.own_tokens = own_tokens
        self.workloads = workloads
        self.directory = directory
        self.keys = keys
        self.minter = minter
        self.clock = clock
        # Keyed by identity-provider id: a deleted provider can never match through it.
        self._verified: OrderedDict[tuple[str, bytes], dict[str, Any]] = OrderedDict()

    def can_handle(self, request: TokenRequest) -> bool:
        return (
            request.grant_type == TOKEN_EXCHANGE
            and bool(request.actor_token)
            and not is_sub_delegation(request, self.own_tokens.issuer)
        )

    async def handle(self, parsed: GrantRequest) -> MintedToken:
        request = parsed.raw
        _check_shape(parsed)
        org_id, wanted_agent = parsed.org_id, parsed.agent_id
        if org_id is None:
            raise InvalidRequest(NO_ORG)
        scope = OrgScope.to_authenticate(org_id, credential="user-assertion")
        ident = await self.directory.get(scope)
        if ident is None or ident.identity_provider is None:
            raise UnacceptableToken(debug="no identity provider for that org")
        idp = ident.identity_provider
        subject = await self._subject(request, idp)
        user_id = await self._active_user(scope, subject[idp.view.subject_claim])
        agent_id, actor_exp = await self._actor(ident, request.actor_token, wanted_agent)
        now = int(self.clock.now().timestamp())
        exp = child_expiry(
            int(subject["exp"]), int(actor_exp), now, int(ident.token_ttl.total_seconds())
        )
        if exp is None:
            raise UnacceptableToken(debug="subject or actor token expires now")
        return await issue_delegated(
            self.minter,
            scope,
            ident,
            user_id,
            agent_id,
            request.scope,
            request.audience,
            not_after=dt.datetime.fromtimestamp(exp, dt.UTC),
        )

    # ------------------------------------------------------------------ subject

    async def _subject(
        self, request: TokenRequest, idp: CompiledIdentityProvider
    ) -> dict[str, Any]:
        token = request.subject_token
        access_token_ok = SUBJECT_TYPES[request.subject_token_type]
        try:
            parsed = parse_unverified(token, access_token_ok=access_token_ok)
        except Rejected as exc:
            raise UnacceptableToken(debug=f"subject: {exc.why}") from None
        if parsed.claims.get("iss") == self.own_tokens.issuer:
            # One of ours, typed as an ID token / JWT: sub-delegation is the only
            # way our tokens are exchanged (RFC 8693 §3, the type must not lie).
            raise UnacceptableToken(debug="subject: our own token with a foreign type")
        key = (idp.view.id, hashlib.sha256(token.encode()).digest())
        now = self.clock.now().timestamp()
        claims = self._verified.get(key)
        if claims is not None and now <= float(claims["exp"]):
            self._verified.move_to_end(key)
            return claims
        try:
            claims = await _verify_subject(token, parsed, idp, self.keys, now, access_token_ok)
        except Rejected as exc:
            raise UnacceptableToken(debug=f"subject: {exc.why}") from None
        self._verified[key] = claims
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    async def _active_user(self, scope: OrgScope, external_id: Any) -> str:
        """The org's ACTIVE user whose external_id is the asserted subject."""
        if not isinstance(external_id, str) or not 0 < len(external_id) <= MAX_EXTERNAL_ID:
            raise UnacceptableToken(debug="subject claim is not a usable id")
        async with self.db.org_tx(scope) as tx:
            found = await tx.users.id_and_state_by_external_id(external_id)
        if found is None or found[1] != "ACTIVE":
            raise UnacceptableToken(debug="no active user with that subject")
        return found[0]

    # ------------------------------------------------------------------ actor

    async def _actor(
        self, ident: OrgIdentity, token: str, wanted_agent: str | None
    ) -> tuple[str, float]:
        """(agent id, actor token exp) of the authenticated actor, or refuse."""
        if claims_our_issuer(token, self.own_tokens.issuer):
            return await self._own_actor(ident, token, wanted_agent)
        try:
            policy, claims = await self.workloads.identify(ident, token, wanted_agent)
        except Rejected as exc:
            raise UnacceptableToken(debug=f"actor: {exc.why}") from None
        return policy.view.agent_id, float(claims["exp"])

    async def _own_actor(
        self, ident: OrgIdentity, token: str, wanted_agent: str | None
    ) -> tuple[str, float]:
        """One of our access tokens issued to an agent for agentauth itself.

        Only a service-account token (client_credentials or workload exchange):
        a delegated token already has a user and an ``act``, and re-rooting it
        under another user would launder the chain.
        """
        try:
            claims = await self.own_tokens.verify_active(token)
        except AgentAuthError as exc:
            raise UnacceptableToken(debug=f"actor: {exc.reason}") from None
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if claims["org_id"] != ident.org_id or "act" in claims:
            raise UnacceptableToken(debug="actor: another org's or a delegated token")
        if self.own_tokens.issuer not in audiences:
            raise UnacceptableToken(debug="actor: not issued for agentauth")
        try:
            agent = names.parse_child(str(claims.get("client_id", "")), "agents")
            sa = names.parse_child(str(claims.get("sub", "")), "serviceAccounts")
        except InvalidArgument:
            raise UnacceptableToken(debug="actor: not an agent's service-account token") from None
        if (
            agent.org_id != ident.org_id
            or sa.org_id != ident.org_id
            or agent.id not in ident.active_agents
            or sa.id not in ident.active_service_accounts
            or (wanted_agent is not None and agent.id != wanted_agent)
        ):
            raise UnacceptableToken(debug="actor: agent or service account not active here")
        return agent.id, float(claims["exp"])


async def _verify_subject(
    token: str,
    parsed: Unverified,
    idp: CompiledIdentityProvider,
    keys: IssuerKeyCache,
    now: float,
    access_token_ok: bool,
) -> dict[str, Any]:
    """OIDC Core §3.1.3.7 for ID tokens, and the same rules for access tokens, at ``now``.

    "The Issuer Identifier ... MUST exactly match the value of the iss (issuer)
    Claim"; "The ID Token MUST be rejected if the ID Token does not list the
    Client as a valid audience, or if it contains additional audiences not
    trusted by the Client" - so ``aud`` is exactly the configured audience.
    Algorithms come from the configuration (RFC 8725 §3.1).
    """
    p = idp.view
    expected = Expected(
        p.org_id,
        p.issuer,
        p.audience,
        p.algorithms,
        p.discovery_url,
        idp.static_keys,
        required=("exp", "iss", "aud"),
        access_token_ok=access_token_ok,
    )
    claims = await verify_external(token, parsed, expected, keys, now)
    if claims["aud"] not in (p.audience, [p.audience]):
        raise Rejected("aud carries other audiences")
    if not claims_equal(claims, p.claim_equals):
        raise Rejected("claims do not match the identity provider")
    subject = claims.get(p.subject_claim)
    if not isinstance(subject, str) or not subject:
        raise Rejected(f"no {p.subject_claim} claim")
    return claims


def _check_shape(parsed: GrantRequest) -> None:
    request = parsed.raw
    if request.subject_token_type not in SUBJECT_TYPES:
        # RFC 8693 §2.2.2: a refresh token (or SAML, or nothing) is not acceptable.
        raise UnacceptableToken(debug=f"subject_token_type {request.subject_token_type[:80]!r}")
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
