"""OAuth client credentials for a connector: the deployment's, or an org's own (which wins)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from control_plane.clock import Clock
from control_plane.connectors.loader import Catalog
from control_plane.domain.errors import NotFound, field_error
from control_plane.domain.principals import Principal
from control_plane.services.credential_names import (
    MAX_CLIENT_ID,
    PRINTABLE,
    CredentialLevels,
    check_secret,
)
from control_plane.vault.credentials import OAuthApps


@dataclass(frozen=True, slots=True)
class OAuthAppView:
    name: str
    client_id: str
    update_time: dt.datetime


class OAuthAppService(CredentialLevels):
    collection = "oauthApps"

    def __init__(self, catalog: Catalog, apps: OAuthApps, clock: Clock) -> None:
        super().__init__(catalog)
        self.apps = apps
        self.clock = clock

    async def set(
        self, principal: Principal, name: str, client_id: str, client_secret: str
    ) -> OAuthAppView:
        n, scope, c = self._resolve(principal, name)
        if c.auth.type != "oauth2":
            raise field_error("oauth_app.name", f"{c.id} is not an OAuth connector")
        if not client_id or len(client_id) > MAX_CLIENT_ID or not PRINTABLE.fullmatch(client_id):
            raise field_error("oauth_app.client_id", "must be 1-512 printable characters")
        check_secret(client_secret, "oauth_app.client_secret")
        record = await self.apps.put(scope, c.id, client_id, client_secret, self.clock.now())
        if record is None:
            raise NotFound()
        return OAuthAppView(self._render(n), record.client_id, record.update_time)

    async def get(self, principal: Principal, name: str) -> OAuthAppView:
        n, scope, c = self._resolve(principal, name)
        record = await self.apps.get(scope, c.id)
        if record is None:
            raise NotFound()
        return OAuthAppView(self._render(n), record.client_id, record.update_time)

    async def delete(self, principal: Principal, name: str) -> None:
        _, scope, c = self._resolve(principal, name)
        if not await self.apps.delete(scope, c.id):
            raise NotFound()
