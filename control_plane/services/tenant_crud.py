"""The shared shape of org-scoped resources: create (idempotent), get, list, update, delete.

Every operation first narrows the org through the principal (permission before
existence), opens an org-scoped transaction and a TenantRepository for it, and
answers NOT_FOUND for another org's ids exactly as for missing ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from control_plane.domain import validation as v
from control_plane.domain.entities import Page
from control_plane.domain.errors import NotFound
from control_plane.domain.principals import Principal
from control_plane.ids import new_id
from control_plane.services.context import (
    ServiceContext,
    get_or_404,
    idempotent_replay,
    list_page,
    require_org,
)
from control_plane.storage.models import Base
from control_plane.storage.repositories import TenantRepository

M = TypeVar("M", bound=Base)
V = TypeVar("V")


class TenantCrud(Generic[M, V]):
    model: type[M]
    collection: str

    def __init__(self, ctx: ServiceContext, view: Callable[[M], V]) -> None:
        self.ctx = ctx
        self.view = view

    async def _create(
        self,
        principal: Principal,
        org_id: str,
        request_id: str,
        fields: dict[str, Any],
        *,
        precheck: Callable[[TenantRepository], Awaitable[None]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[M, bool]:
        """Insert a row built from ``fields`` (+ ``extra``, not part of the request
        fingerprint, e.g. a generated secret's digest); returns (row, created)."""
        org_id = principal.scope_for(org_id)
        rid = v.request_id(request_id)
        fp = v.fingerprint(fields)
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            await require_org(repo)
            replay = await idempotent_replay(repo, self.model, rid, fp)
            if replay is not None:
                return replay, False
            if precheck is not None:
                await precheck(repo)
            values = {"id": new_id(), **(extra or {})}
            row = self.model(
                org_id=org_id,
                request_id=rid,
                request_fingerprint=fp if rid else None,
                create_time=now,
                **self._timestamps(now),
                **fields,
                **values,
            )
            await repo.add(row)
        return row, True

    def _timestamps(self, now: dt.datetime) -> dict[str, dt.datetime]:
        return {"update_time": now} if "update_time" in self.model.__table__.c else {}

    async def _get(self, principal: Principal, org_id: str, id_: str) -> V:
        org_id = principal.scope_for(org_id)
        async with self.ctx.db.org_tx(org_id) as s:
            row = await get_or_404(TenantRepository(s, org_id), self.model, id_)
        return self.view(row)

    async def _list(
        self, principal: Principal, org_id: str, page_size: int, page_token: str
    ) -> Page[V]:
        size = v.page_size(page_size)
        org_id = principal.scope_for(org_id)
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            await require_org(repo)
            return await list_page(
                self.ctx, repo, self.model, self.collection, size, page_token, self.view
            )

    async def _update(
        self,
        principal: Principal,
        org_id: str,
        id_: str,
        mutate: Callable[[M, dt.datetime], None],
    ) -> V:
        org_id = principal.scope_for(org_id)
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            row = await repo.get_for_update(self.model, id_)
            if row is None:
                raise NotFound()
            mutate(row, self.ctx.clock.now())
            await s.flush()
        self.ctx.identity_changed(org_id)
        return self.view(row)

    async def _delete(self, principal: Principal, org_id: str, id_: str) -> None:
        org_id = principal.scope_for(org_id)
        async with self.ctx.db.org_tx(org_id) as s:
            if await TenantRepository(s, org_id).delete(self.model, id_) == 0:
                raise NotFound()
        self.ctx.identity_changed(org_id)
