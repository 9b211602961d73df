"""Who is calling. Org scope always comes from here, never from a request field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from control_plane.domain.errors import NotFound
from control_plane.domain.scope import OrgScope, _for_principal


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    ORG_ADMIN = "org_admin"
    SERVICE_ACCOUNT = "service_account"  # a caller holding one of our SA tokens
    CONNECT_LINK = "connect_link"  # a browser holding a hosted connect link (one account)
    #: An agent running tools with one of our access tokens addressed to agentauth:
    #: a service-account token or a delegated token at any depth.
    TOOL_CALLER = "tool_caller"


@dataclass(frozen=True, slots=True)
class TokenCaller:
    """What a tool caller's token says, once verified.

    Authorization uses the top-level claims and the outermost ``act`` only
    (``actor``); deeper ``act`` entries are history for the audit trail.
    """

    subject: str  # "orgs/{org}/users/{id}" or "orgs/{org}/serviceAccounts/{id}"
    actor: str  # the agent acting now: outermost act.sub, else the token's client_id
    scopes: frozenset[str]
    jti: str
    txn: str = ""  # the delegation chain's id ("" for service-account tokens)

    @property
    def owner(self) -> tuple[str, str]:
        """("users" | "serviceAccounts", id) of the principal."""
        parts = self.subject.split("/")
        return parts[2], parts[3]


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    key_id: str
    org_id: str | None = None  # set for org-bound principals
    caller: TokenCaller | None = None  # set for TOOL_CALLER
    #: A SERVICE_ACCOUNT token's scopes (capabilities beyond its role, such as
    #: deciding tool confirmations); empty for every other principal.
    scopes: frozenset[str] = frozenset()

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    @property
    def rate_key(self) -> str:
        """A stable identity for per-principal limits (a credential's id, not its secret)."""
        return f"{self.role.value}:{self.key_id}"

    def scope_for(self, requested_org: str) -> OrgScope:
        """The org scope this principal may act in for a request naming ``requested_org``.

        An org-bound principal naming another org gets exactly the answer a
        missing resource gets, so other orgs' ids cannot be probed.
        """
        if not self.is_platform_admin and self.org_id != requested_org:
            raise NotFound()
        try:
            return _for_principal(requested_org)
        except ValueError:
            raise NotFound() from None

    @property
    def own_scope(self) -> OrgScope:
        """The caller's own org (org-bound principals only)."""
        if self.org_id is None:
            raise NotFound()
        return _for_principal(self.org_id)

    def log_fields(self) -> dict[str, str]:
        fields = {"principal_role": self.role.value, "principal_key": self.key_id}
        if self.org_id:
            fields["principal_org"] = self.org_id
        return fields
