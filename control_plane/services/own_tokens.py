"""Our own access tokens coming back: introspection, revocation, and callers
authenticating with a service-account token.

RFC 7662 §2.2: for a token that is not active "the authorization server ... MUST
return an introspection response with the 'active' field set to 'false'" and
SHOULD NOT say why — expired, revoked, unknown and another org's token all look
the same. RFC 7009 §2.2: the server responds 200 "if the token has been revoked
successfully or if the client submitted an invalid token".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agentauth._jose import JoseError, Typ, check_claims, numeric_date, parse_claims, typ_allowed

from control_plane.clock import Clock
from control_plane.domain.delegation import ChainInvalid, actor_chain
from control_plane.domain.errors import NotFound, Unauthenticated
from control_plane.domain.principals import Principal, Role, TokenCaller
from control_plane.domain.scope import OrgScope
from control_plane.ids import is_id
from control_plane.storage import issued_tokens
from control_plane.storage.db import Database
from control_plane.tokens.jws import TokenInvalid, verify_compact
from control_plane.tokens.keys import SigningKeyManager
from control_plane.tokens.revocation_feed import RevocationFeed

LEEWAY = 30
#: The principals a tool caller's token may name in ``sub``.
_PRINCIPAL = re.compile(r"orgs/([0-9a-f]{32})/(users|serviceAccounts)/([0-9a-f]{32})")


class TokenRejected(Unauthenticated):
    """One of our tokens failed a check; ``reason`` is the SDK's TokenReason vocabulary."""

    def __init__(self, reason: str) -> None:
        super().__init__("the bearer token is not acceptable", reason=reason)


@dataclass(frozen=True, slots=True)
class Introspection:
    active: bool
    claims: dict[str, Any]


class OwnTokens:
    def __init__(
        self,
        db: Database,
        keys: SigningKeyManager,
        clock: Clock,
        issuer: str,
        feed: RevocationFeed,
    ) -> None:
        self.db = db
        self.keys = keys
        self.clock = clock
        self.issuer = issuer
        self.feed = feed  # wakes this replica's watchers after a revocation

    def _verified_claims(self, token: str, *, check_time: bool) -> dict[str, Any]:
        """Claims of a token we signed, else TokenRejected with the SDK's reason.

        Signature, claims set and times go through the JOSE core, with the
        injected clock's ``now``.
        """
        try:
            header, payload = verify_compact(
                token, self.keys.verification_keys(), algorithms=[self.keys.algorithm]
            )
            claims = parse_claims(payload)
        except TokenInvalid as exc:
            raise TokenRejected(exc.reason) from None
        except JoseError as exc:
            raise TokenRejected(exc.reason) from None
        if not typ_allowed(header.get("typ"), Typ.ACCESS_TOKEN):
            raise TokenRejected("TOKEN_TYPE_INVALID")
        if claims.get("iss") != self.issuer:
            raise TokenRejected("TOKEN_ISSUER_MISMATCH")
        org_id, jti = claims.get("org_id"), claims.get("jti")
        if not isinstance(org_id, str) or not is_id(org_id) or not isinstance(jti, str):
            raise TokenRejected("TOKEN_CLAIM_INVALID")
        try:
            numeric_date(claims, "exp")
            if check_time:
                check_claims(claims, now=self.clock.now().timestamp(), leeway=LEEWAY)
        except JoseError as exc:
            raise TokenRejected(exc.reason) from None
        return claims

    async def introspect(self, caller: Principal, token: str) -> Introspection:
        inactive = Introspection(False, {})
        try:
            claims = self._verified_claims(token, check_time=True)
        except TokenRejected:
            return inactive
        try:
            scope = caller.scope_for(claims["org_id"])
        except NotFound:
            return inactive
        if not await issued_tokens.active_chain(self.db, scope, claims["jti"]):
            return inactive
        return Introspection(True, claims)

    async def revoke(self, caller: Principal, token: str) -> None:
        """Revoke a token of the caller's org; anything else is silently ignored."""
        try:
            claims = self._verified_claims(token, check_time=False)
        except TokenRejected:
            return
        try:
            scope = caller.scope_for(claims["org_id"])
        except NotFound:
            return
        if await issued_tokens.revoke_tree(self.db, scope, claims["jti"], self.clock.now()):
            self.feed.wake(scope.org_id)

    async def verify_active(self, token: str) -> dict[str, Any]:
        """Claims of a current, unrevoked token of ours (any audience): a subject token."""
        claims = self._verified_claims(token, check_time=True)
        scope = OrgScope.to_authenticate(claims["org_id"], credential="access-token")
        if not await issued_tokens.active_chain(self.db, scope, claims["jti"]):
            raise TokenRejected("TOKEN_REVOKED")
        return claims

    async def authenticate(self, token: str) -> Principal:
        """A service-account token addressed to agentauth itself (``aud`` = our issuer)."""
        claims = self._verified_claims(token, check_time=True)
        if claims is None:
            raise Unauthenticated()
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        sub = claims.get("sub")
        if (
            self.issuer not in audiences
            or not isinstance(sub, str)
            or "/serviceAccounts/" not in sub
        ):
            raise Unauthenticated()
        scope = OrgScope.to_authenticate(claims["org_id"], credential="access-token")
        row = await issued_tokens.get(self.db, scope, claims["jti"])
        if row is None or row.revoke_time is not None:
            raise Unauthenticated()
        raw = claims.get("scope", "")
        granted = frozenset(raw.split()) if isinstance(raw, str) else frozenset()
        return Principal(Role.SERVICE_ACCOUNT, claims["jti"], claims["org_id"], scopes=granted)

    async def authenticate_tool_caller(self, token: str) -> Principal:
        """A service-account or delegated token addressed to agentauth, whose whole
        chain is live: revoking any ancestor stops its descendants at once."""
        claims = self._verified_claims(token, check_time=True)
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.issuer not in audiences:
            raise TokenRejected("TOKEN_AUDIENCE_MISMATCH")
        org_id, jti = claims["org_id"], claims["jti"]
        sub, client_id, scope = claims.get("sub"), claims.get("client_id"), claims.get("scope", "")
        if not isinstance(sub, str) or not isinstance(client_id, str) or not isinstance(scope, str):
            raise TokenRejected("TOKEN_CLAIM_INVALID")
        owner = _PRINCIPAL.fullmatch(sub)
        try:
            actors = actor_chain(claims.get("act"))
        except ChainInvalid:
            raise TokenRejected("TOKEN_CLAIM_INVALID") from None
        if owner is None or owner.group(1) != org_id:
            raise TokenRejected("TOKEN_CLAIM_INVALID")
        scope_ = OrgScope.to_authenticate(org_id, credential="access-token")
        if not await issued_tokens.active_chain(self.db, scope_, jti):
            raise TokenRejected("TOKEN_REVOKED")
        txn = claims.get("txn")
        caller = TokenCaller(
            subject=sub,
            actor=actors[0] if actors else client_id,
            scopes=frozenset(scope.split()),
            jti=jti,
            txn=txn if isinstance(txn, str) else "",
        )
        return Principal(Role.TOOL_CALLER, jti, org_id, caller)
