"""Authentication for the request pipeline: who presented which credential.

* ``bearer`` — an admin API key (``aa_…``) or one of our service-account tokens
  whose audience is our issuer;
* ``tool_token`` — one of our access tokens (service-account or delegated, any
  depth) addressed to agentauth, with every link of its chain live: agents
  running tools;
* ``connect_link`` — a hosted connect link (the browser holds a capability for
  one account of one org);
* ``oauth_state`` — the ``state`` of an authorization response coming back to
  the callback.

An unknown kind authenticates nobody (deny by default).
"""

from __future__ import annotations

from control_plane.domain.errors import Unauthenticated
from control_plane.domain.principals import Principal
from control_plane.services.api_keys import ApiKeyService
from control_plane.services.connect_flow import ConnectFlow
from control_plane.services.own_tokens import OwnTokens


class Authentication:
    def __init__(self, api_keys: ApiKeyService, own_tokens: OwnTokens, flow: ConnectFlow) -> None:
        self._api_keys = api_keys
        self._own_tokens = own_tokens
        self._flow = flow

    async def __call__(self, kind: str, credential: str) -> Principal:
        if kind == "bearer":
            if credential.startswith("aa_"):
                return await self._api_keys.authenticate(credential)
            return await self._own_tokens.authenticate(credential)
        if kind == "tool_token":
            return await self._own_tokens.authenticate_tool_caller(credential)
        if kind == "connect_link":
            return await self._flow.authenticate_link(credential)
        if kind == "oauth_state":
            return await self._flow.authenticate_state(credential)
        raise Unauthenticated(reason="CREDENTIALS_INVALID")
