"""The shared shape of org-scoped resources: create (idempotent), get, list, update, delete.

Every operation first narrows the org through the principal (permission before
existence), opens that org's unit of work and the resource's repository in it,
and answers NOT_FOUND for another org's ids exactly as for missing ones.
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
from control_plane.storage.repositories import TenantRepo
from control_plane.storage.units import OrgTx

M = TypeVar("M", bound=Base)
V = TypeVar("V")


class TenantCrud(Generic[M, V]):
    model: type[M]
    collection: str
    #: The OrgTx attribute holding this resource's repository.
    repository: str

    def __init__(self, ctx: ServiceContext, view: Callable[[M], V]) -> None:
        self.ctx = ctx
        self.view = view

    def repo(self, tx: OrgTx) -> TenantRepo[M]:
        repo: TenantRepo[M] = getattr(tx, self.repository)
        return repo

    async def _create(
        self,
        principal: Principal,
        org_id: str,
        request_id: str,
        fields: dict[str, Any],
        *,
        precheck: Callable[[OrgTx], Awaitable[None]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[M, bool]:
        """Insert a row built from ``fields`` (+ ``extra``, not part of the request
        fingerprint, e.g. a generated secret's digest); returns (row, created)."""
        scope = principal.scope_for(org_id)
        rid = v.request_id(request_id)
        fp = v.fingerprint(fields)
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(scope) as tx:
            repo = self.repo(tx)
            await require_org(tx)
            replay = await idempotent_replay(repo, rid, fp)
            if replay is not None:
                return replay, False
            if precheck is not None:
                await precheck(tx)
            values = {"id": new_id(), **(extra or {})}
            row = self.model(
                org_id=scope.org_id,
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
        async with self.ctx.db.org_tx(principal.scope_for(org_id)) as tx:
            row = await get_or_404(self.repo(tx), id_)
        return self.view(row)

    async def _list(
        self, principal: Principal, org_id: str, page_size: int, page_token: str
    ) -> Page[V]:
        size = v.page_size(page_size)
        async with self.ctx.db.org_tx(principal.scope_for(org_id)) as tx:
            await require_org(tx)
            return await list_page(
                self.ctx, tx, self.repo(tx), self.collection, size, page_token, self.view
            )

    async def _update(
        self,
        principal: Principal,
        org_id: str,
        id_: str,
        mutate: Callable[[M, dt.datetime], None],
    ) -> V:
        scope = principal.scope_for(org_id)
        async with self.ctx.db.org_tx(scope) as tx:
            row = await self.repo(tx).get_for_update(id_)
            if row is None:
                raise NotFound()
            mutate(row, self.ctx.clock.now())
            await tx.flush()
        self.ctx.identity_changed(scope.org_id)
        return self.view(row)

    async def _delete(self, principal: Principal, org_id: str, id_: str) -> None:
        scope = principal.scope_for(org_id)
        async with self.ctx.db.org_tx(scope) as tx:
            if await self.repo(tx).delete(id_) == 0:
                raise NotFound()
        self.ctx.identity_changed(scope.org_id)
