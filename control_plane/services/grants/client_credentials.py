"""client_credentials with RFC 7523 ``private_key_jwt`` client authentication.

RFC 7523 §3: the assertion's "iss" and "sub" are the client_id; "aud" MUST
identify the authorization server (our issuer or token endpoint URL); "exp" is
required; "jti" lets the server "ensure that JWTs are not replayed by
maintaining the set of used jti values for the length of time for which the JWT
would be considered valid". Every failure is ``invalid_client`` (HTTP 401).

The assertion is verified by the JOSE core (:mod:`agentauth._jose`) with the
keys of the agent's PRIVATE_KEY_JWT policies, at the injected clock's time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from agentauth._jose import (
    ALGORITHMS,
    JoseError,
    ParsedJws,
    Typ,
    check_claims,
    parse_claims,
    parse_compact,
    select_key,
    verify_signature,
)

from control_plane.clock import Clock
from control_plane.domain import names
from control_plane.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidClient,
    InvalidRequest,
)
from control_plane.domain.scope import OrgScope
from control_plane.services.grants.base import (
    CLIENT_CREDENTIALS,
    JWT_BEARER_ASSERTION,
    MAX_PARAM,
    TokenRequest,
)
from control_plane.services.grants.issuance import issue_for_agent
from control_plane.services.grants.request import GrantRequest
from control_plane.services.identity import CompiledPolicy, IdentityDirectory
from control_plane.services.workload_tokens import (
    FOREIGN_CLAIMS_DEPTH,
    LEEWAY,
    MAX_TOKEN_BYTES,
    Rejected,
    parse_unverified,
)
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

    async def handle(self, grant: GrantRequest) -> MintedToken:
        request = grant.raw
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
        if not grant.in_org(agent.org_id):
            # The request names one org and authenticates as another's agent.
            raise InvalidClient(debug="organization differs from the assertion")
        if request.scope and not request.scope.strip():
            raise InvalidRequest("scope is empty")

        scope = OrgScope.to_authenticate(agent.org_id, credential="client-assertion")
        ident = await self.directory.get(scope)
        if ident is None or agent.id not in ident.active_agents:
            raise InvalidClient(debug="unknown or disabled agent")
        now = self.clock.now()
        policy, claims = self._verify(assertion, ident.policies, agent.id, now)
        await self._consume_jti(scope, iss, claims, now)
        return await issue_for_agent(self.minter, scope, grant, ident, agent.id, policy)

    def _verify(
        self,
        assertion: str,
        policies: tuple[CompiledPolicy, ...],
        agent_id: str,
        now: dt.datetime,
    ) -> tuple[CompiledPolicy, dict[str, Any]]:
        """The agent's policy whose key signed ``assertion``, and its verified claims."""
        mine = [
            p for p in policies if p.view.kind == "PRIVATE_KEY_JWT" and p.view.agent_id == agent_id
        ]
        algorithms = frozenset(a for p in mine for a in p.view.algorithms) & ALGORITHMS.keys()
        if not algorithms:
            raise InvalidClient(debug="the agent has no key")
        try:
            jws = parse_compact(
                assertion,
                algorithms=algorithms,
                max_bytes=MAX_TOKEN_BYTES,
                typ=Typ.NOT_ACCESS_TOKEN,
                require_kid=False,
                header_first=True,
            )
        except JoseError as exc:
            raise InvalidClient(debug=exc.detail) from None
        policy = next((p for p in mine if _signed_under(jws, p)), None)
        if policy is None:
            raise InvalidClient(debug="no key of the agent verifies the assertion")
        timestamp = now.timestamp()
        try:
            claims = parse_claims(jws.payload, max_depth=FOREIGN_CLAIMS_DEPTH)
            check_claims(
                claims,
                now=timestamp,
                leeway=LEEWAY,
                audience=self.audiences,
                required=("exp", "jti", "iss", "sub", "aud"),
            )
        except JoseError as exc:
            raise InvalidClient(debug=exc.detail) from None
        if float(claims["exp"]) > timestamp + MAX_ASSERTION_LIFETIME + LEEWAY:
            raise InvalidClient(debug="assertion lives too long")
        if not isinstance(claims["sub"], str):
            raise InvalidClient(debug="sub")
        if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 256:
            raise InvalidClient(debug="jti")
        return policy, claims

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


def _signed_under(jws: ParsedJws, policy: CompiledPolicy) -> bool:
    """Whether one of ``policy``'s keys, by ``kid`` (or the only one), verifies ``jws``
    with an algorithm the policy allows."""
    if jws.alg not in policy.view.algorithms:
        return False
    key = select_key(policy.static_keys, jws.kid, allow_single=True)
    if key is None:
        return False
    try:
        verify_signature(jws, key)
    except JoseError:
        return False
    return True
