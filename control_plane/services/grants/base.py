"""The token request every grant sees, and the Grant protocol.

The request carries only what the caller sent; org scope is derived by each
grant from the credential it verifies, never taken on trust from a field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from control_plane.tokens.minting import MintedToken

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CLIENT_CREDENTIALS = "client_credentials"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_PARAM = 16 * 1024


@dataclass(frozen=True, slots=True)
class TokenRequest:
    grant_type: str
    subject_token: str = ""
    subject_token_type: str = ""
    requested_token_type: str = ""
    client_assertion_type: str = ""
    client_assertion: str = ""
    client_id: str = ""
    organization: str = ""
    service_account: str = ""
    audience: tuple[str, ...] = ()
    scope: str = ""
    actor_token: str = ""
    actor_token_type: str = ""


class Grant(Protocol):
    def can_handle(self, request: TokenRequest) -> bool: ...

    async def handle(self, request: TokenRequest) -> MintedToken: ...
