"""Which connected account a tool call uses, and how its user (re)connects it.

The account is looked up inside the token's org and must belong to the token's
principal (``sub``): a user's own account, or a service account's. A name given
in the request that is another org's, another principal's or another
connector's is answered exactly like a missing one (``NOT_CONNECTED``), so
nothing about other accounts can be learnt from the answer.

When the principal has no usable account, the answer carries a hosted connect
link when one can be made: for a PENDING or REVOKED account, a link for it; for
no account at all, a new PENDING account first (only for connectors that need no
connection parameters: a shop or an instance URL must come from the developer).
"""

from __future__ import annotations

import hashlib
import re

from control_plane.connectors.model import Connector
from control_plane.domain.errors import AgentAuthError
from control_plane.domain.principals import Principal, TokenCaller
from control_plane.services.connect_flow import ConnectFlow
from control_plane.services.connected_accounts import ConnectedAccountService
from control_plane.storage import models as m
from control_plane.storage.units import OrgTx

_ACCOUNT_NAME = re.compile(r"orgs/([0-9a-f]{32})/connectedAccounts/([0-9a-f]{32})")
USABLE = ("ACTIVE", "EXPIRED")


def account_name(org_id: str, account_id: str) -> str:
    return f"orgs/{org_id}/connectedAccounts/{account_id}"


def parse_account_name(value: str) -> tuple[str, str] | None:
    match = _ACCOUNT_NAME.fullmatch(value)
    return None if match is None else (match.group(1), match.group(2))


async def find_account(
    tx: OrgTx, caller: TokenCaller, connector: Connector, requested: str
) -> m.ConnectedAccount | None:
    """The account a call uses; None when there is none the principal may use."""
    kind, owner_id = caller.owner
    if requested:
        parsed = parse_account_name(requested)
        if parsed is None or parsed[0] != tx.org_id:
            return None
        row = await tx.accounts.get(parsed[1])
        if (
            row is None
            or (row.owner_kind, row.owner_id) != (kind, owner_id)
            or row.connector_id != connector.id
        ):
            return None
        return row
    rows = await tx.accounts.all(owner_kind=kind, owner_id=owner_id, connector_id=connector.id)
    if not rows:
        return None
    # A usable account (the default one first); else the default, else the newest
    # (to reconnect it).
    rows.sort(key=lambda r: (r.state not in USABLE, not r.is_default, -r.create_time.timestamp()))
    return rows[0]


class ConnectLinks:
    """Hosted links that (re)connect a principal's account, made on demand."""

    def __init__(self, flow: ConnectFlow, accounts: ConnectedAccountService) -> None:
        self._flow = flow
        self._accounts = accounts

    async def for_account(self, principal: Principal, org_id: str, account_id: str) -> str:
        """A link for this account, or "" when none can be made (say, no OAuth app)."""
        try:
            url, _ = await self._flow.create_link(principal, account_name(org_id, account_id))
        except AgentAuthError:
            return ""
        return url

    async def for_new_account(
        self, principal: Principal, caller: TokenCaller, connector: Connector
    ) -> str:
        """Create the principal's PENDING account (once) and return its link."""
        if connector.auth.connection_params or connector.auth.type not in ("oauth2", "api_key"):
            return ""
        org_id = caller.subject.split("/")[1]
        # One pending account per principal and connector, however many calls ask.
        key = hashlib.sha256(f"tool-connect\0{connector.id}\0{caller.subject}".encode())
        try:
            view = await self._accounts.create(
                principal,
                f"orgs/{org_id}",
                connector.id,
                caller.subject,
                connector.display_name,
                {},
                "tc-" + key.hexdigest()[:40],
            )
        except AgentAuthError:
            return ""
        parsed = parse_account_name(view.name)
        if parsed is None:
            return ""
        return await self.for_account(principal, org_id, parsed[1])
