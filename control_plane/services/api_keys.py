"""Admin API keys: high-entropy bearer secrets, stored only as a SHA-256 digest.

Format: ``aa_org_{org}_{key}_{secret}`` (org admin) or ``aa_plat_{key}_{secret}``
(platform admin); ``secret`` has 256 random bits. Because the secret is random
and long, a fast hash is safe and keeps slow KDFs (bcrypt/argon2) off the request
path; the digest comparison is constant-time. The key names its org, so the
lookup runs inside that org's row-level-security scope.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from control_plane.domain import names
from control_plane.domain import validation as v
from control_plane.domain.entities import ApiKeyView, Page
from control_plane.domain.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from control_plane.domain.principals import Principal, Role
from control_plane.domain.scope import OrgScope
from control_plane.ids import new_id
from control_plane.services.context import ServiceContext, make_page
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import models as m
from control_plane.vault.barrier import PLATFORM

MAX_KEY_LEN = 160
_ORG_KEY = re.compile(r"aa_org_([0-9a-f]{32})_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")
_PLATFORM_KEY = re.compile(r"aa_plat_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def org_key_view(r: m.OrgApiKey) -> ApiKeyView:
    state = "REVOKED" if r.revoke_time else "ACTIVE"
    return ApiKeyView(
        r.org_id, r.id, r.display_name, r.key_hint, state, r.create_time, r.revoke_time
    )


def platform_key_view(r: m.PlatformApiKey) -> ApiKeyView:
    state = "REVOKED" if r.revoke_time else "ACTIVE"
    return ApiKeyView(None, r.id, r.display_name, r.key_hint, state, r.create_time, r.revoke_time)


def _revoke(row: m.OrgApiKey | m.PlatformApiKey, now: dt.datetime) -> None:
    if row.revoke_time is None:
        row.revoke_time = now


class ApiKeyService(TenantCrud[m.OrgApiKey, ApiKeyView]):
    model = m.OrgApiKey
    collection = "apiKeys"
    repository = "api_keys"

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx, org_key_view)

    # ------------------------------------------------------------- authentication

    async def authenticate(self, presented: str) -> Principal:
        """Resolve a bearer key to its principal, or raise UNAUTHENTICATED (one answer for all)."""
        if not presented or len(presented) > MAX_KEY_LEN:
            raise Unauthenticated()
        digest = _digest(presented)
        cols = ("secret_hash", "revoke_time")
        if (mo := _ORG_KEY.fullmatch(presented)) is not None:
            org_id, key_id = mo.group(1), mo.group(2)
            scope = OrgScope.to_authenticate(org_id, credential="admin-key")
            async with self.ctx.db.org_tx(scope) as tx:
                row = await tx.api_keys.fields(key_id, *cols)
            principal = Principal(Role.ORG_ADMIN, key_id, org_id)
        elif (mp := _PLATFORM_KEY.fullmatch(presented)) is not None:
            key_id = mp.group(1)
            async with self.ctx.db.platform_tx() as ptx:
                row = await ptx.api_keys.fields(key_id, *cols)
            principal = Principal(Role.PLATFORM_ADMIN, key_id)
        else:
            raise Unauthenticated()
        # Compare even when the row is missing so timing does not reveal key ids.
        stored = row.secret_hash if row is not None else b"\0" * 32
        if not hmac.compare_digest(stored, digest) or row is None or row.revoke_time:
            raise Unauthenticated()
        return principal

    # ------------------------------------------------------------- org keys

    async def create(
        self, principal: Principal, parent: str, display_name: str, request_id: str
    ) -> tuple[ApiKeyView, str]:
        """Returns the key's metadata and the key itself, which is shown only this once."""
        display_name = v.display_name(display_name, "api_key.display_name")
        if parent == "":
            if not principal.is_platform_admin:
                raise PermissionDenied()
            return await self.create_platform_key(display_name, request_id)
        org_id = names.parse_org(parent, "parent")
        secret = _new_secret()
        # The key embeds its id, so build the row id first and pass it through.
        key_id = new_id()
        key = f"aa_org_{principal.scope_for(org_id).org_id}_{key_id}_{secret}"
        fields = {
            "display_name": display_name,
        }
        row, created = await self._create(
            principal,
            org_id,
            request_id,
            fields,
            extra={"id": key_id, "secret_hash": _digest(key), "key_hint": key[-4:]},
        )
        if not created:
            raise AlreadyExists(
                "an API key was already issued for this request_id; its secret is shown only once",
                reason="API_KEY_ALREADY_ISSUED",
                metadata={"name": names.child_name(row.org_id, "apiKeys", row.id)},
            )
        return org_key_view(row), key

    async def list(
        self, principal: Principal, parent: str, page_size: int, page_token: str
    ) -> Page[ApiKeyView]:
        if parent == "":
            if not principal.is_platform_admin:
                raise PermissionDenied()
            size = v.page_size(page_size)
            cursor = await self.ctx.page_tokens.decode(PLATFORM, "apiKeys", page_token)
            async with self.ctx.db.platform_tx() as tx:
                rows = await tx.api_keys.page(cursor, size + 1)
            return await make_page(self.ctx, PLATFORM, "apiKeys", rows, size, platform_key_view)
        org_id = names.parse_org(parent, "parent")
        return await self._list(principal, org_id, page_size, page_token)

    async def revoke(self, principal: Principal, name: str) -> ApiKeyView:
        if name.startswith("apiKeys/"):
            key_id = names.parse_platform_key(name)
            if not principal.is_platform_admin:
                raise PermissionDenied()
            async with self.ctx.db.platform_tx() as tx:
                row = await tx.api_keys.get(key_id)
                if row is None:
                    raise NotFound()
                _revoke(row, self.ctx.clock.now())
            return platform_key_view(row)
        parsed = names.parse_child(name, "apiKeys")
        return await self._update(principal, parsed.org_id, parsed.id, _revoke)

    # ------------------------------------------------------------- platform keys

    async def create_platform_key(
        self, display_name: str, request_id: str = ""
    ) -> tuple[ApiKeyView, str]:
        """Used by RPC (platform admins) and by ``control-plane admin create-key``."""
        display_name = v.display_name(display_name, "api_key.display_name")
        rid = v.request_id(request_id)
        async with self.ctx.db.platform_tx() as tx:
            repo = tx.api_keys
            if rid is not None and await repo.find(request_id=rid):
                raise AlreadyExists(
                    "an API key was already issued for this request_id; "
                    "its secret is shown only once",
                    reason="API_KEY_ALREADY_ISSUED",
                )
            key_id = new_id()
            key = f"aa_plat_{key_id}_{_new_secret()}"
            row = m.PlatformApiKey(
                id=key_id,
                display_name=display_name,
                secret_hash=_digest(key),
                key_hint=key[-4:],
                request_id=rid,
                request_fingerprint=None,
                create_time=self.ctx.clock.now(),
                revoke_time=None,
            )
            await repo.add(row)
        return platform_key_view(row), key

    async def any_platform_key(self) -> bool:
        async with self.ctx.db.platform_tx() as tx:
            return await tx.api_keys.exists()
