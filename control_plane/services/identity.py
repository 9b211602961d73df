"""A short-lived, per-org snapshot of who may authenticate as what.

Minting must not read the database before it writes its one row, so trust
policies, active agents and service accounts and the org's token lifetime are
read together in one transaction and cached for a few seconds (with the org's
identity provider, the issuer of its users' assertions). A change made
through this replica invalidates the snapshot at once; other replicas see it
within ``ttl`` (documented bound).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from control_plane.domain.entities import IdentityProviderView, TrustPolicyView
from control_plane.domain.errors import InvalidArgument
from control_plane.domain.scope import OrgScope
from control_plane.domain.trust import glob_to_regex
from control_plane.logs import get_logger
from control_plane.services.external_keys import ExternalKey, parse_public_jwks
from control_plane.services.identity_providers import idp_view
from control_plane.services.trust_policies import policy_view
from control_plane.storage.db import Database
from control_plane.storage.directory import identity_rows

_log = get_logger("agentauth.identity")


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    view: TrustPolicyView
    static_keys: dict[str, ExternalKey]
    subject_regex: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class CompiledIdentityProvider:
    view: IdentityProviderView
    static_keys: dict[str, ExternalKey]


@dataclass(frozen=True, slots=True)
class OrgIdentity:
    org_id: str
    token_ttl: dt.timedelta
    policies: tuple[CompiledPolicy, ...]
    active_agents: frozenset[str]
    active_service_accounts: frozenset[str]
    max_delegation_depth: int = 4
    identity_provider: CompiledIdentityProvider | None = None


@dataclass
class _Slot:
    value: OrgIdentity | None = None
    loaded_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class IdentityDirectory:
    def __init__(
        self, db: Database, *, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._slots: dict[str, _Slot] = {}

    def invalidate(self, org_id: str) -> None:
        self._slots.pop(org_id, None)

    async def get(self, scope: OrgScope) -> OrgIdentity | None:
        """The org's snapshot, or None when the org does not exist."""
        org_id = scope.org_id
        slot = self._slots.setdefault(org_id, _Slot())
        if self.clock() - slot.loaded_at <= self.ttl:
            return slot.value
        async with slot.lock:  # one load in flight per org
            if self.clock() - slot.loaded_at <= self.ttl:
                return slot.value
            slot.value = await self._load(scope)
            slot.loaded_at = self.clock()
            if len(self._slots) > 10_000:  # bound memory: drop the oldest half
                for key in sorted(self._slots, key=lambda k: self._slots[k].loaded_at)[:5_000]:
                    self._slots.pop(key, None)
            return slot.value

    async def _load(self, scope: OrgScope) -> OrgIdentity | None:
        async with self.db.org_tx(scope) as tx:
            rows = await identity_rows(tx)
        if rows is None:
            return None
        compiled = tuple(_compile(policy_view(p)) for p in rows.policies)
        idp = rows.identity_provider
        return OrgIdentity(
            scope.org_id,
            dt.timedelta(seconds=rows.org.access_token_ttl_seconds),
            compiled,
            frozenset(rows.active_agents),
            frozenset(rows.active_service_accounts),
            rows.org.max_delegation_depth,
            _compile_idp(idp_view(idp)) if idp is not None else None,
        )


def _static_keys(jwks_json: str, org_id: str, owner_id: str) -> dict[str, ExternalKey]:
    """The stored key set, parsed as at creation. A set stored under older, laxer
    rules (say, a 1024-bit RSA key) verifies nothing rather than failing the whole
    org's snapshot: its tokens are refused, every other policy keeps working."""
    if not jwks_json:
        return {}
    try:
        return parse_public_jwks(jwks_json)
    except InvalidArgument:
        _log.warning("stored key set refused; it verifies nothing", org_id=org_id, id=owner_id)
        return {}


def _compile(view: TrustPolicyView) -> CompiledPolicy:
    keys = _static_keys(view.jwks_json, view.org_id, view.id)
    regex = glob_to_regex(view.subject_pattern) if view.subject_pattern else None
    return CompiledPolicy(view, keys, regex)


def _compile_idp(view: IdentityProviderView) -> CompiledIdentityProvider:
    keys = _static_keys(view.jwks_json, view.org_id, view.id)
    return CompiledIdentityProvider(view, keys)
