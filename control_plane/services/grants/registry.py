"""The one place grants are composed; tests reuse it."""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.domain.errors import InvalidRequest, UnsupportedGrantType
from control_plane.services.grants.base import MAX_PARAM, Grant, TokenRequest
from control_plane.tokens.minting import MintedToken


class TokenEndpoint:
    def __init__(self, grants: Sequence[Grant]) -> None:
        self.grants = tuple(grants)

    async def exchange(self, request: TokenRequest) -> MintedToken:
        if not request.grant_type:
            raise InvalidRequest("grant_type is required")
        for value in (
            request.organization,
            request.client_id,
            request.service_account,
            request.scope,
        ):
            if len(value) > MAX_PARAM:
                raise InvalidRequest("a parameter is too long")
        for grant in self.grants:
            if grant.can_handle(request):
                return await grant.handle(request)
        raise UnsupportedGrantType()
