"""What every use case needs: storage, the barrier, time, page tokens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from control_plane.clock import Clock
from control_plane.domain.entities import Page
from control_plane.domain.errors import InvalidArgument, NotFound
from control_plane.services.pagination import PageTokens
from control_plane.storage.db import Database
from control_plane.storage.models import Base
from control_plane.storage.repositories import TenantRepository
from control_plane.vault.barrier import Barrier

M = TypeVar("M", bound=Base)
V = TypeVar("V")


@dataclass
class ServiceContext:
    db: Database
    barrier: Barrier
    clock: Clock
    # Called with an org id whenever who-may-authenticate-as-what changes there
    # (agents, service accounts, trust policies, identity providers, org
    # settings), so caches of it on this replica drop the org at once.
    identity_listeners: list[Callable[[str], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page_tokens = PageTokens(self.barrier)

    def identity_changed(self, org_id: str) -> None:
        for listener in self.identity_listeners:
            listener(org_id)


async def require_org(repo: TenantRepository) -> None:
    """A platform admin naming a missing org gets NOT_FOUND, like anyone else."""
    if await repo.org() is None:
        raise NotFound()


async def get_or_404(repo: TenantRepository, model: type[M], id_: str) -> M:
    row = await repo.get(model, id_)
    if row is None:
        raise NotFound()
    return row


async def idempotent_replay(
    repo: TenantRepository, model: type[M], request_id: str | None, fingerprint: str
) -> M | None:
    """AIP-155: the same request_id with the same request returns the first result."""
    if request_id is None:
        return None
    existing = await repo.find(model, request_id=request_id)
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
    repo: TenantRepository,
    model: type[M],
    collection: str,
    page_size: int,
    page_token: str,
    view: Callable[[M], V],
    **equals: Any,
) -> Page[V]:
    """One page of ``model`` rows (optionally filtered by column equality)."""
    cursor = await ctx.page_tokens.decode(repo.org_id, collection, page_token)
    rows = await repo.page(model, cursor, page_size + 1, **equals)
    return await make_page(ctx, repo.org_id, collection, rows, page_size, view)


async def make_page(
    ctx: ServiceContext,
    scope: str,
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
