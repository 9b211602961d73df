"""The token request every grant sees, and the Grant protocol.

The request carries only what the caller sent; org scope is derived by each
grant from the credential it verifies, never taken on trust from a field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from control_plane.services.workload_tokens import Rejected, parse_unverified
from control_plane.tokens.minting import MintedToken

if TYPE_CHECKING:
    from control_plane.services.grants.request import GrantRequest

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CLIENT_CREDENTIALS = "client_credentials"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
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

    async def handle(self, request: GrantRequest) -> MintedToken:
        """Only ever called with the output of :func:`parse_grant_request`."""
        ...


def claims_our_issuer(token: str, issuer: str) -> bool:
    """Whether ``token``'s *unverified* ``iss`` is ``issuer``: for routing only.

    Which grant verifies a token is decided before any signature check; the
    grant chosen then verifies everything. Unparseable input is not ours.
    """
    try:
        iss = parse_unverified(token, access_token_ok=True).claims.get("iss")
    except Rejected:
        return False
    return iss == issuer


def is_sub_delegation(request: TokenRequest, issuer: str) -> bool:
    """RFC 8693 with an actor, where the subject is one of our access tokens.

    Every other token exchange with an actor_token is a user assertion
    (user_assertion.py): the two grants split the requests between them, so a
    subject_token_type that lies about one of our tokens lands in a grant that
    refuses it instead of falling through to ``unsupported_grant_type``.
    """
    return (
        request.grant_type == TOKEN_EXCHANGE
        and bool(request.actor_token)
        and request.subject_token_type == ACCESS_TOKEN_TYPE
        and claims_our_issuer(request.subject_token, issuer)
    )
