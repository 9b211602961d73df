"""TokenService: published keys, the token grants, introspection and revocation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from agentauth.v1 import token_pb2 as pb
from agentauth.v1 import token_pb2_grpc

from control_plane.api.convert import ts
from control_plane.api.pipeline import current_principal
from control_plane.domain.errors import field_error
from control_plane.services.feed_watch import WatchItem
from control_plane.services.grants.base import ACCESS_TOKEN_TYPE, TokenRequest
from control_plane.services.grants.registry import TokenEndpoint
from control_plane.services.grants.trusted_backend import TrustedBackendDelegation
from control_plane.services.own_tokens import OwnTokens
from control_plane.services.revocation import BulkRevocation, RevocationWatch
from control_plane.storage.issued_tokens import PublishedRevocation
from control_plane.tokens.keys import SigningKeyManager

_FIELDS = ("kid", "kty", "crv", "x", "y", "alg", "use")


class TokenServicer(token_pb2_grpc.TokenServiceServicer):
    def __init__(
        self,
        keys: SigningKeyManager,
        endpoint: TokenEndpoint,
        own_tokens: OwnTokens,
        delegation: TrustedBackendDelegation,
        bulk: BulkRevocation,
        watch: RevocationWatch,
    ) -> None:
        self.bulk = bulk
        self.watch = watch
        self.delegation = delegation
        self.keys = keys
        self.endpoint = endpoint
        self.own_tokens = own_tokens

    async def GetJwks(
        self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetJwksResponse:
        jwks = self.keys.jwks()
        return pb.GetJwksResponse(
            keys=[pb.Jwk(**{f: str(k.get(f, "")) for f in _FIELDS}) for k in jwks["keys"]],
            jwks_json=self.keys.jwks_json(),
        )

    async def ExchangeToken(
        self, request: pb.ExchangeTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ExchangeTokenResponse:
        minted = await self.endpoint.exchange(
            TokenRequest(
                grant_type=request.grant_type,
                subject_token=request.subject_token,
                subject_token_type=request.subject_token_type,
                requested_token_type=request.requested_token_type,
                client_assertion_type=request.client_assertion_type,
                client_assertion=request.client_assertion,
                client_id=request.client_id,
                organization=request.organization,
                service_account=request.service_account,
                audience=tuple(request.audience),
                scope=request.scope,
                actor_token=request.actor_token,
                actor_token_type=request.actor_token_type,
            )
        )
        return pb.ExchangeTokenResponse(
            access_token=minted.token,
            issued_token_type=ACCESS_TOKEN_TYPE,
            token_type="Bearer",
            expires_in=minted.expires_in,
            scope=" ".join(minted.scopes),
        )

    async def IntrospectToken(
        self, request: pb.IntrospectTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.IntrospectTokenResponse:
        token = _token_field(request.token)
        result = await self.own_tokens.introspect(current_principal(), token)
        if not result.active:
            return pb.IntrospectTokenResponse(active=False)
        c = result.claims
        aud = c["aud"] if isinstance(c["aud"], list) else [c["aud"]]
        return pb.IntrospectTokenResponse(
            active=True,
            scope=c.get("scope", ""),
            client_id=c.get("client_id", ""),
            sub=c["sub"],
            org_id=c["org_id"],
            exp=int(c["exp"]),
            iat=int(c["iat"]),
            nbf=int(c.get("nbf", c["iat"])),
            aud=aud,
            iss=c["iss"],
            jti=c["jti"],
            token_type="Bearer",
        )

    async def DelegateToken(
        self, request: pb.DelegateTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DelegateTokenResponse:
        minted = await self.delegation.delegate(
            current_principal(),
            request.user,
            request.agent,
            request.scope,
            tuple(request.audience),
        )
        return pb.DelegateTokenResponse(
            access_token=minted.token,
            token_type="Bearer",
            expires_in=minted.expires_in,
            scope=" ".join(minted.scopes),
        )

    async def RevokeTokens(
        self, request: pb.RevokeTokensRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RevokeTokensResponse:
        count = await self.bulk.revoke(
            current_principal(),
            request.parent,
            user=request.user,
            agent=request.agent,
            txn=request.txn,
            all_tokens=request.all_tokens,
        )
        return pb.RevokeTokensResponse(revoked_count=count)

    async def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RevokeTokenResponse:
        await self.own_tokens.revoke(current_principal(), _token_field(request.token))
        return pb.RevokeTokenResponse()

    async def WatchRevocations(
        self, request: pb.WatchRevocationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchRevocationsResponse]:
        # Caller, org and cursor are checked here, before the first message.
        stream = await self.watch.open(current_principal(), request.parent, request.cursor)
        return _messages(stream)


async def _messages(
    stream: AsyncIterator[WatchItem[PublishedRevocation]],
) -> AsyncIterator[pb.WatchRevocationsResponse]:
    async for item in stream:
        e = item.event
        yield pb.WatchRevocationsResponse(
            jtis=e.jtis if e else [],
            revoke_time=ts(e.revoke_time) if e else None,
            expire_time=ts(e.expire_time) if e else None,
            cursor=item.cursor,
            synced=item.synced,
        )


def _token_field(token: str) -> str:
    """Required; of any length, like ``token`` at /oauth2/introspect and /oauth2/revoke:
    a token too long to be ours is inactive (RFC 7662 §2.2) and revoking it is a
    no-op (RFC 7009 §2.2). The method's message limit bounds it."""
    if not token:
        raise field_error("token", "is required", "FIELD_REQUIRED")
    return token
