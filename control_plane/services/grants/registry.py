"""The one place grants are composed; tests reuse it."""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.domain.errors import UnsupportedGrantType
from control_plane.services.grants.base import Grant, TokenRequest
from control_plane.services.grants.request import parse_grant_request
from control_plane.tokens.minting import MintedToken


class TokenEndpoint:
    def __init__(self, grants: Sequence[Grant]) -> None:
        self.grants = tuple(grants)

    async def exchange(self, request: TokenRequest) -> MintedToken:
        parsed = parse_grant_request(request)
        for grant in self.grants:
            if grant.can_handle(request):
                return await grant.handle(parsed)
        raise UnsupportedGrantType()
