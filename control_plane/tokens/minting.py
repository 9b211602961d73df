"""Minting RFC 9068 access tokens, recorded before they are handed out.

RFC 9068 §2.2: "iss", "exp", "aud", "sub", "client_id", "iat", "jti" are
required; we add "nbf", "scope" and "org_id". §2.1: the header "typ" is
"at+jwt". The issued-token row (jti, org, subject, client, scopes, expiry) is
written in the same request, after signing and before returning: if the record
cannot be written the token is never released.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from control_plane.clock import Clock
from control_plane.domain.scope import OrgScope
from control_plane.storage import issued_tokens
from control_plane.storage.db import Database
from control_plane.tokens.keys import SigningKeyManager

MAX_TTL = dt.timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    jti: str
    expires_in: int
    scopes: tuple[str, ...]


class Minter:
    def __init__(self, db: Database, keys: SigningKeyManager, clock: Clock, issuer: str) -> None:
        self.db = db
        self.records = issued_tokens.IssuedTokenWriter(db)
        self.keys = keys
        self.clock = clock
        self.issuer = issuer

    async def mint(
        self,
        *,
        scope: OrgScope,
        subject: str,
        client_id: str,
        scopes: Sequence[str],
        audiences: Sequence[str],
        ttl: dt.timedelta,
        not_after: dt.datetime | None = None,
        act: dict[str, Any] | None = None,
        txn: str | None = None,
        parent_jti: str | None = None,
        root_jti: str | None = None,
    ) -> MintedToken:
        """Sign and record one token, living at most ``ttl``, 15 minutes and ``not_after``."""
        org_id = scope.org_id
        now = self.clock.now().replace(microsecond=0)
        exp = now + min(ttl, MAX_TTL)
        if not_after is not None:
            exp = min(exp, not_after)
        if exp <= now:
            raise ValueError("token would be born expired")
        jti = secrets.token_hex(16)
        scope_list = sorted(set(scopes))
        aud_list = list(dict.fromkeys(audiences))
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": aud_list[0] if len(aud_list) == 1 else aud_list,
            "org_id": org_id,
            "client_id": client_id,
            "scope": " ".join(scope_list),
            "jti": jti,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(exp.timestamp()),
        }
        if act is not None:
            claims["act"] = act
        if txn is not None:
            claims["txn"] = txn
        token = self.keys.sign(claims)
        await self.records.record(
            scope,
            issued_tokens.IssuedTokenRecord(
                org_id=org_id,
                jti=jti,
                subject=subject,
                client_id=client_id,
                scopes=scope_list,
                audiences=aud_list,
                issue_time=now,
                expire_time=exp,
                parent_jti=parent_jti,
                root_jti=root_jti,
                txn=txn,
            ),
        )
        return MintedToken(token, jti, int((exp - now).total_seconds()), tuple(scope_list))
