"""TokenService: today the published verification keys; later issues add minting."""

from __future__ import annotations

from typing import Any

import grpc
from agentauth.v1 import token_pb2 as pb
from agentauth.v1 import token_pb2_grpc

from control_plane.tokens.keys import SigningKeyManager

_FIELDS = ("kid", "kty", "crv", "x", "y", "alg", "use")


class TokenServicer(token_pb2_grpc.TokenServiceServicer):
    def __init__(self, keys: SigningKeyManager) -> None:
        self.keys = keys

    async def GetJwks(
        self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetJwksResponse:
        jwks = self.keys.jwks()
        return pb.GetJwksResponse(
            keys=[pb.Jwk(**{f: str(k.get(f, "")) for f in _FIELDS}) for k in jwks["keys"]],
            jwks_json=self.keys.jwks_json(),
        )
