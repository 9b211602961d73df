"""The trusted-backend delegation: the developer's backend hands a user to an agent.

A delegated token's ``sub`` is the user (the principal) and its ``act`` the agent
acting now (RFC 8693 §4.1). The developer's backend, authenticated with its own
service-account token, may delegate an active user of *its* org to one of its
org's agents; scopes and audiences come from that agent's trust policies.
"""

from __future__ import annotations

from control_plane.domain import names
from control_plane.domain.errors import InvalidTarget, NotFound, PermissionDenied
from control_plane.domain.principals import Principal, Role
from control_plane.services.context import ServiceContext
from control_plane.services.grants.issuance import issue_delegated
from control_plane.services.identity import IdentityDirectory
from control_plane.tokens.minting import MintedToken, Minter


class TrustedBackendDelegation:
    def __init__(self, ctx: ServiceContext, directory: IdentityDirectory, minter: Minter) -> None:
        self.ctx = ctx
        self.directory = directory
        self.minter = minter

    async def delegate(
        self, caller: Principal, user: str, agent: str, scope_text: str, audience: tuple[str, ...]
    ) -> MintedToken:
        if caller.role is not Role.SERVICE_ACCOUNT or caller.org_id is None:
            raise PermissionDenied()
        u = names.parse_child(user, "users", "user")
        a = names.parse_child(agent, "agents", "agent")
        org_id = caller.org_id
        if u.org_id != org_id or a.org_id != org_id:
            raise NotFound()  # another org's ids look like missing ones
        scope = caller.own_scope
        async with self.ctx.db.org_tx(scope) as tx:
            row = await tx.users.get(u.id)
        if row is None:
            raise NotFound()
        if row.state != "ACTIVE":
            raise InvalidTarget("the user is not active")
        ident = await self.directory.get(scope)
        if ident is None or a.id not in ident.active_agents:
            raise NotFound()
        return await issue_delegated(self.minter, scope, ident, u.id, a.id, scope_text, audience)
