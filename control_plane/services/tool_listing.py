"""ListTools: the tools a token may run, each with the principal's connection status.

A tool is listed when the org enabled it, the token's ``tools:`` scopes allow it
and no policy rule that applies to the principal's groups excludes the current
actor. Argument constraints are not decided here (they depend on the call's
arguments): a listed tool may still be refused ``POLICY_DENIED`` for some values.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.connectors.loader import Catalog
from control_plane.connectors.model import Connector, Tool
from control_plane.domain.errors import FailedPrecondition, field_error
from control_plane.domain.principals import Principal
from control_plane.domain.tool_scopes import parse_tool_scopes
from control_plane.services.connectors import ConnectorConfigService
from control_plane.services.tool_accounts import USABLE, ConnectLinks, account_name, find_account
from control_plane.services.tool_execution import ToolPolicySource, agent_id
from control_plane.storage.db import Database

CONNECTED = "CONNECTED"
NOT_CONNECTED = "NOT_CONNECTED"
NEEDS_RECONNECT = "NEEDS_RECONNECT"
NOT_REQUIRED = "NOT_REQUIRED"


@dataclass(frozen=True, slots=True)
class ToolListing:
    tool: Tool
    connection: str  # CONNECTED | NOT_CONNECTED | NEEDS_RECONNECT | NOT_REQUIRED
    account: str = ""
    connect_url: str = ""


@dataclass(frozen=True, slots=True)
class _Status:
    state: str
    account_id: str = ""
    granted: frozenset[str] = frozenset()
    needs_new: bool = False  # no account at all: a pending one can be created


class ToolListingService:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        connectors: ConnectorConfigService,
        policies: ToolPolicySource,
        links: ConnectLinks,
    ) -> None:
        self._db = db
        self._catalog = catalog
        self._connectors = connectors
        self._policies = policies
        self._links = links

    async def list(self, principal: Principal, connector_filter: str) -> list[ToolListing]:
        caller = principal.caller
        if caller is None:
            raise FailedPrecondition("only agents' tokens list tools")
        if connector_filter and self._catalog.get(connector_filter) is None:
            raise field_error("connector", "is not a connector of the catalog")
        grant = parse_tool_scopes(caller.scopes)
        if grant.empty:
            return []
        scope = principal.own_scope
        actor = agent_id(caller.actor)
        chosen: list[tuple[Connector, list[Tool], _Status]] = []
        async with self._db.org_tx(scope) as tx:
            rules = await self._policies.rules(tx)
            groups = await self._policies.owner_groups(tx, caller.owner)
            for connector in sorted(self._catalog, key=lambda c: c.id):
                if connector_filter and connector.id != connector_filter:
                    continue
                enabled = set(await self._connectors.enabled_tools(tx, connector) or ())
                tools = [
                    t
                    for t in connector.tools
                    if t.name in enabled
                    and grant.allows(t.name)
                    and all(r.admits_actor(actor) for r in rules if r.applies(t.name, groups))
                ]
                if not tools:
                    continue
                if connector.auth.type == "developer_secret":
                    status = _Status(NOT_REQUIRED)
                else:
                    row = await find_account(tx, caller, connector, "")
                    if row is None:
                        status = _Status(NOT_CONNECTED, needs_new=True)
                    elif row.state in USABLE:
                        status = _Status(CONNECTED, row.id, frozenset(row.granted_scopes))
                    elif row.state == "PENDING":
                        status = _Status(NOT_CONNECTED, row.id)
                    else:
                        status = _Status(NEEDS_RECONNECT, row.id)
                chosen.append((connector, tools, status))
        listings: list[ToolListing] = []
        for connector, tools, status in chosen:
            shown = account_name(scope.org_id, status.account_id) if status.account_id else ""
            url: str | None = None  # one link per connector, made only when needed
            for tool in tools:
                state = status.state
                if state == CONNECTED and not set(tool.scopes) <= status.granted:
                    state = NEEDS_RECONNECT
                if state in (NOT_CONNECTED, NEEDS_RECONNECT) and url is None:
                    url = await self._link(principal, connector, status)
                shown_url = (url or "") if state in (NOT_CONNECTED, NEEDS_RECONNECT) else ""
                listings.append(ToolListing(tool, state, shown, shown_url))
        listings.sort(key=lambda listing: listing.tool.name)
        return listings

    async def _link(self, principal: Principal, connector: Connector, status: _Status) -> str:
        caller = principal.caller
        assert caller is not None
        if status.needs_new:
            return await self._links.for_new_account(principal, caller, connector)
        return await self._links.for_account(
            principal, caller.subject.split("/")[1], status.account_id
        )
