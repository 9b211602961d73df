"""What every use case needs: storage, the barrier, time, page tokens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from control_plane.clock import Clock
from control_plane.domain.entities import Page
from control_plane.domain.errors import InvalidArgument, NotFound
from control_plane.services.pagination import PageTokens
from control_plane.storage.db import Database
from control_plane.storage.repositories import TenantRepo
from control_plane.storage.units import OrgTx
from control_plane.vault.barrier import Barrier, Scope

M = TypeVar("M")
V = TypeVar("V")


@dataclass(frozen=True)
class ServiceContext:
    db: Database
    barrier: Barrier
    clock: Clock
    # Called with an org id whenever who-may-authenticate-as-what changes there
    # (agents, service accounts, trust policies, identity providers, org
    # settings), so caches of it on every replica drop the org at once.
    identity_changed: Callable[[str], None]

    @property
    def page_tokens(self) -> PageTokens:
        return PageTokens(self.barrier)


async def require_org(tx: OrgTx) -> None:
    """A platform admin naming a missing org gets NOT_FOUND, like anyone else."""
    if not await tx.org_exists():
        raise NotFound()


async def get_or_404(repo: TenantRepo[Any], id_: str) -> Any:
    row = await repo.get(id_)
    if row is None:
        raise NotFound()
    return row


async def idempotent_replay(
    repo: TenantRepo[Any], request_id: str | None, fingerprint: str
) -> Any | None:
    """AIP-155: the same request_id with the same request returns the first result."""
    if request_id is None:
        return None
    existing = await repo.find(request_id=request_id)
    if existing is None:
        return None
    if getattr(existing, "request_fingerprint", None) != fingerprint:
        raise InvalidArgument(
            "request_id was already used for a different request",
            reason="REQUEST_ID_REUSED",
            metadata={"field": "request_id"},
        )
    return existing


async def list_page(
    ctx: ServiceContext,
    tx: OrgTx,
    repo: TenantRepo[Any],
    collection: str,
    page_size: int,
    page_token: str,
    view: Callable[[Any], V],
    **equals: Any,
) -> Page[V]:
    """One page of ``repo``'s rows (optionally filtered by column equality)."""
    cursor = await ctx.page_tokens.decode(tx.scope, collection, page_token)
    rows = await repo.page(cursor, page_size + 1, **equals)
    return await make_page(ctx, tx.scope, collection, rows, page_size, view)


async def make_page(
    ctx: ServiceContext,
    scope: Scope,
    collection: str,
    rows: list[Any],
    page_size: int,
    view: Callable[[Any], V],
) -> Page[V]:
    more = len(rows) > page_size
    rows = rows[:page_size]
    token = ""
    if more:
        last = rows[-1]
        token = await ctx.page_tokens.encode(scope, collection, (last.create_time, last.id))
    return Page([view(r) for r in rows], token)
