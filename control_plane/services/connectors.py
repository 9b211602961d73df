"""Connectors per org: enabled or not (new orgs start with everything disabled), and
which tools. The catalog itself is data (:mod:`control_plane.connectors`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from control_plane.clock import Clock
from control_plane.connectors.loader import Catalog
from control_plane.connectors.model import Connector
from control_plane.domain import names
from control_plane.domain.errors import NotFound, field_error
from control_plane.domain.principals import Principal
from control_plane.services.context import require_org
from control_plane.services.credential_names import parse_org_connector
from control_plane.storage import models as m
from control_plane.storage.db import Database
from control_plane.storage.units import OrgTx
from control_plane.vault.credentials import OAuthApps


@dataclass(frozen=True, slots=True)
class ToolView:
    name: str
    description: str
    input_schema_json: str
    scopes: tuple[str, ...]
    destructive: bool
    output_trust: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class ConnectorView:
    name: str
    display_name: str
    description: str
    auth_type: str
    enabled: bool
    tools: tuple[ToolView, ...]
    oauth_app_source: str  # NONE | DEPLOYMENT | ORGANIZATION
    connection_params: tuple[str, ...]


class ConnectorConfigService:
    def __init__(self, db: Database, clock: Clock, catalog: Catalog, apps: OAuthApps) -> None:
        self.db = db
        self.clock = clock
        self.catalog = catalog
        self.apps = apps

    def connector(self, connector_id: str) -> Connector:
        c = self.catalog.get(connector_id)
        if c is None:
            raise NotFound()
        return c

    async def list(self, principal: Principal, parent: str) -> list[ConnectorView]:
        scope = principal.scope_for(names.parse_org(parent, "parent"))
        async with self.db.org_tx(scope) as tx:
            await require_org(tx)
            configs = {r.connector_id: r for r in await tx.connectors.all()}
            org_apps, platform_apps = await self.apps.sources(tx)
        return [
            _connector_view(
                scope.org_id, c, configs.get(c.id), c.id in org_apps, c.id in platform_apps
            )
            for c in sorted(self.catalog, key=lambda c: c.id)
        ]

    async def update(
        self, principal: Principal, name: str, enabled: bool, enabled_tools: Iterable[str]
    ) -> ConnectorView:
        org_id, connector_id = parse_org_connector(name)
        scope = principal.scope_for(org_id)
        c = self.connector(connector_id)
        tools = sorted(set(enabled_tools))
        unknown = [t for t in tools if c.tool(t) is None]
        if unknown:
            raise field_error("enabled_tools", f"{unknown[0]!r} is not a tool of {c.id}")
        now = self.clock.now()
        async with self.db.org_tx(scope) as tx:
            await require_org(tx)
            row = await tx.connectors.by_connector(c.id)
            if row is None:
                row = m.OrgConnector(org_id=scope.org_id, connector_id=c.id)
                row.enabled, row.enabled_tools, row.update_time = enabled, tools or None, now
                await tx.connectors.add(row)
            else:
                row.enabled, row.enabled_tools, row.update_time = enabled, tools or None, now
            org_apps, platform_apps = await self.apps.sources(tx)
        return _connector_view(scope.org_id, c, row, c.id in org_apps, c.id in platform_apps)

    async def enabled_tools(self, tx: OrgTx, connector: Connector) -> tuple[str, ...] | None:
        """The org's enabled tools of ``connector``; None when the connector is disabled."""
        return _enabled(connector, await tx.connectors.by_connector(connector.id))


def _enabled(connector: Connector, config: m.OrgConnector | None) -> tuple[str, ...] | None:
    """The tools ``config`` enables (all when it names none); None when disabled."""
    if config is None or not config.enabled:
        return None
    return tuple(config.enabled_tools) if config.enabled_tools else connector.tool_names


def _connector_view(
    org_id: str,
    c: Connector,
    config: m.OrgConnector | None,
    org_app: bool,
    platform_app: bool,
) -> ConnectorView:
    tools = _enabled(c, config)
    enabled = tools is not None
    chosen = set(tools or ())
    source = "NONE"
    if c.auth.type == "oauth2":
        source = "ORGANIZATION" if org_app else "DEPLOYMENT" if platform_app else "NONE"
    return ConnectorView(
        name=f"orgs/{org_id}/connectors/{c.id}",
        display_name=c.display_name,
        description=c.description,
        auth_type=c.auth.type,
        enabled=enabled,
        tools=tuple(
            ToolView(
                name=t.name,
                description=t.description,
                input_schema_json=json.dumps(t.input_schema, sort_keys=True),
                scopes=t.scopes,
                destructive=t.destructive,
                output_trust=t.output_trust,
                enabled=enabled and t.name in chosen,
            )
            for t in c.tools
        ),
        oauth_app_source=source,
        connection_params=tuple(p.name for p in c.auth.connection_params),
    )
