"""client_credentials with RFC 7523 ``private_key_jwt`` client authentication.

RFC 7523 §3: the assertion's "iss" and "sub" are the client_id; "aud" MUST
identify the authorization server (our issuer or token endpoint URL); "exp" is
required; "jti" lets the server "ensure that JWTs are not replayed by
maintaining the set of used jti values for the length of time for which the JWT
would be considered valid". Every failure is ``invalid_client`` (HTTP 401).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from typing import Any

import jwt

from control_plane.clock import Clock
from control_plane.domain import names
from control_plane.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidClient,
    InvalidRequest,
)
from control_plane.domain.scope import OrgScope
from control_plane.services.external_keys import single_key
from control_plane.services.grants.base import (
    CLIENT_CREDENTIALS,
    JWT_BEARER_ASSERTION,
    MAX_PARAM,
    TokenRequest,
)
from control_plane.services.grants.issuance import issue_for_agent
from control_plane.services.identity import CompiledPolicy, IdentityDirectory
from control_plane.services.workload_tokens import LEEWAY, Rejected, parse_unverified
from control_plane.storage.db import Database
from control_plane.tokens.minting import MintedToken, Minter

MAX_ASSERTION_LIFETIME = 300  # seconds; "short exp"


class ClientCredentialsPrivateKeyJwt:
    def __init__(
        self,
        db: Database,
        directory: IdentityDirectory,
        minter: Minter,
        clock: Clock,
        audiences: frozenset[str],
    ) -> None:
        self.db = db
        self.directory = directory
        self.minter = minter
        self.clock = clock
        self.audiences = audiences  # our issuer and token endpoint URL

    def can_handle(self, request: TokenRequest) -> bool:
        return request.grant_type == CLIENT_CREDENTIALS

    async def handle(self, request: TokenRequest) -> MintedToken:
        if request.client_assertion_type != JWT_BEARER_ASSERTION:
            raise InvalidClient(debug="client_assertion_type")
        assertion = request.client_assertion
        if not assertion or len(assertion) > MAX_PARAM:
            raise InvalidClient(debug="client_assertion missing or oversize")
        try:
            parsed = parse_unverified(assertion)
        except Rejected as exc:
            raise InvalidClient(debug=exc.why) from None
        iss, sub = parsed.claims.get("iss"), parsed.claims.get("sub")
        if not isinstance(iss, str) or iss != sub:
            raise InvalidClient(debug="iss != sub")
        if request.client_id and request.client_id != iss:
            raise InvalidClient(debug="client_id differs from the assertion")
        try:
            agent = names.parse_child(iss, "agents", "client_id")
        except InvalidArgument:
            raise InvalidClient(debug="client_id is not an agent name") from None
        if request.scope and not request.scope.strip():
            raise InvalidRequest("scope is empty")

        scope = OrgScope.to_authenticate(agent.org_id, credential="client-assertion")
        ident = await self.directory.get(scope)
        if ident is None or agent.id not in ident.active_agents:
            raise InvalidClient(debug="unknown or disabled agent")
        now = self.clock.now()
        policy, claims = self._verify(assertion, parsed.header, ident.policies, agent.id, now)
        await self._consume_jti(scope, iss, claims, now)
        return await issue_for_agent(self.minter, scope, request, ident, agent.id, policy)

    def _verify(
        self,
        assertion: str,
        header: dict[str, Any],
        policies: tuple[CompiledPolicy, ...],
        agent_id: str,
        now: dt.datetime,
    ) -> tuple[CompiledPolicy, dict[str, Any]]:
        alg, kid = header.get("alg"), header.get("kid", "")
        for policy in policies:
            view = policy.view
            if view.kind != "PRIVATE_KEY_JWT" or view.agent_id != agent_id:
                continue
            if alg not in view.algorithms or not isinstance(kid, str):
                continue
            key = policy.static_keys.get(kid) if kid else single_key(policy.static_keys)
            if key is None or (key.alg and key.alg != alg):
                continue
            try:
                claims: dict[str, Any] = jwt.decode(
                    assertion,
                    key.key,
                    algorithms=[alg],
                    audience=list(self.audiences),
                    leeway=LEEWAY,
                    options={"require": ["exp", "jti", "iss", "sub", "aud"]},
                )
            except jwt.PyJWTError:
                continue
            exp = claims["exp"]
            if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
                raise InvalidClient(debug="exp type")
            if exp > now.timestamp() + MAX_ASSERTION_LIFETIME + LEEWAY:
                raise InvalidClient(debug="assertion lives too long")
            iat = claims.get("iat")
            if isinstance(iat, int | float) and iat > now.timestamp() + LEEWAY:
                raise InvalidClient(debug="iat in the future")
            if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 256:
                raise InvalidClient(debug="jti")
            return policy, claims
        raise InvalidClient(debug="no key of the agent verifies the assertion")

    async def _consume_jti(
        self, scope: OrgScope, client_id: str, claims: dict[str, Any], now: dt.datetime
    ) -> None:
        """Single use: remember the jti until the assertion expires; a second use fails."""
        digest = hashlib.sha256(f"{client_id}\0{claims['jti']}".encode()).hexdigest()
        expire = dt.datetime.fromtimestamp(float(claims["exp"]) + LEEWAY, dt.UTC)
        try:
            async with self.db.org_tx(scope) as tx:
                await tx.used_assertions.consume(digest, expire, now)
        except AlreadyExists:
            raise InvalidClient(debug="assertion replay") from None
