"""Developer secrets (Pattern 1): the developer's static key for a connector, with a
per-user rate limit for tool execution. Deployment-wide or per org (which wins)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from control_plane.clock import Clock
from control_plane.connectors.loader import Catalog
from control_plane.domain.errors import NotFound, field_error
from control_plane.domain.principals import Principal
from control_plane.services.credential_names import CredentialLevels, check_secret, mask
from control_plane.vault.credentials import DeveloperSecretRecord, DeveloperSecrets

MAX_RATE_PERIOD = 86400


@dataclass(frozen=True, slots=True)
class DeveloperSecretView:
    name: str
    secret_hint: str
    rate_requests: int
    rate_period_seconds: int
    create_time: dt.datetime
    rotate_time: dt.datetime


class DeveloperSecretService(CredentialLevels):
    collection = "developerSecrets"

    def __init__(self, catalog: Catalog, secrets: DeveloperSecrets, clock: Clock) -> None:
        super().__init__(catalog)
        self.secrets = secrets
        self.clock = clock

    async def set(
        self,
        principal: Principal,
        name: str,
        secret: str,
        rate_requests: int,
        rate_period_seconds: int,
    ) -> DeveloperSecretView:
        n, scope, c = self._resolve(principal, name)
        if c.auth.type != "developer_secret":
            raise field_error(
                "developer_secret.name", f"{c.id} is not a developer-secret connector"
            )
        pattern = c.auth.api_key.pattern if c.auth.api_key else ""
        check_secret(secret, "developer_secret.secret", pattern=pattern)
        if rate_requests < 0 or rate_requests > 1_000_000:
            raise field_error("developer_secret.per_user_rate_limit.requests", "must be 0-1000000")
        if rate_requests and not 1 <= rate_period_seconds <= MAX_RATE_PERIOD:
            raise field_error(
                "developer_secret.per_user_rate_limit.period", "must be 1 second to 1 day"
            )
        record = await self.secrets.put(
            scope, c.id, secret, mask(secret), rate_requests, rate_period_seconds, self.clock.now()
        )
        if record is None:
            raise NotFound()
        return self._view(self._render(n), record)

    async def get(self, principal: Principal, name: str) -> DeveloperSecretView:
        n, scope, c = self._resolve(principal, name)
        record = await self.secrets.get(scope, c.id)
        if record is None:
            raise NotFound()
        return self._view(self._render(n), record)

    async def delete(self, principal: Principal, name: str) -> None:
        _, scope, c = self._resolve(principal, name)
        if not await self.secrets.delete(scope, c.id):
            raise NotFound()

    @staticmethod
    def _view(name: str, r: DeveloperSecretRecord) -> DeveloperSecretView:
        return DeveloperSecretView(
            name,
            r.secret_hint,
            r.rate_requests,
            r.rate_period_seconds,
            r.create_time,
            r.rotate_time,
        )
