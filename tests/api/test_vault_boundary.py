"""No decrypted credential crosses the vault boundary.

A profiler hook watches every frame of ``control_plane.api`` and
``control_plane.services`` (each call's arguments and, on return, every local
and the return value) while the real server connects an account through the
sandbox provider, refreshes it, calls the provider's API through the vault,
lists and deletes it. The provider's access and refresh tokens, the OAuth
client secret (after it was configured) and a BYOK key (after it was stored)
must never appear in any of those frames, nor in logs, audit events or
responses. The vault's own frames are the only ones allowed to hold them.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from agentauth.v1 import connection_pb2 as pb

from control_plane.vault.upstream import UpstreamRequest
from tests.api.connect_helpers import (
    CANARY_CLIENT_SECRET,
    browser,
    connect_world,
    consent,
    finish,
    start,
)
from tests.scopes import scope

WATCHED = ("control_plane.api", "control_plane.services")


class Watch:
    """Every string (and bytes) reachable from watched frames, collected for later checks."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.frames = 0

    def _collect(self, value: Any, depth: int = 0) -> None:
        if depth > 4:
            return
        if isinstance(value, str):
            if len(value) >= 12:
                self.seen.add(value)
        elif isinstance(value, bytes | bytearray):
            if len(value) >= 12:
                self.seen.add(bytes(value).decode("latin-1"))
        elif isinstance(value, dict):
            for k, v in list(value.items())[:200]:
                self._collect(k, depth + 1)
                self._collect(v, depth + 1)
        elif isinstance(value, list | tuple | set | frozenset):
            for v in list(value)[:200]:
                self._collect(v, depth + 1)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                self._collect(getattr(value, f.name, None), depth + 1)
        elif hasattr(value, "__dict__") and type(value).__module__.startswith("control_plane"):
            for v in list(vars(value).values())[:100]:
                self._collect(v, depth + 1)

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event not in ("call", "return"):
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(WATCHED):
            return
        self.frames += 1
        for value in list(frame.f_locals.values()):
            self._collect(value)
        if event == "return":
            self._collect(arg)

    def holds(self, secret: str) -> list[str]:
        return [s[:60] for s in self.seen if secret in s]


@contextmanager
def watching() -> Iterator[Watch]:
    watch = Watch()
    sys.setprofile(watch.hook)
    threading.setprofile(watch.hook)
    try:
        yield watch
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


async def test_no_decrypted_credential_reaches_the_transport_or_the_use_cases(
    harness: Any, captured_logs: Any
) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account(label="mail")
        with watching() as watch:
            async with browser() as b:
                done = await consent(b, await start(b, await w.link(acct)))
                status, _ = await finish(b, done)
            assert status == 200
            refreshed = await w.admin.connections.RefreshConnectedAccount(
                pb.RefreshConnectedAccountRequest(name=acct.name, force=True)
            )
            assert refreshed.connected_account.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
            # The vault's outward operation, as ExecuteTool will call it.
            tool = harness.runtime.catalog.connectors["gmail"].tool("gmail.list_messages")
            answer = await harness.servers.vault.upstream.perform(
                scope(w.org.split("/")[1]),
                acct.name.rsplit("/", 1)[1],
                UpstreamRequest("GET", tool.http.url, {"q": "is:unread"}),
            )
            assert answer.status == 200
            listed = await w.admin.connections.ListConnectedAccounts(
                pb.ListConnectedAccountsRequest(parent=w.org)
            )
            await w.admin.connections.DeleteConnectedAccount(
                pb.DeleteConnectedAccountRequest(name=acct.name)
            )
        tokens = [t.value for t in w.provider.issued if t.kind in ("access", "refresh")]
        assert len(tokens) >= 3  # connect (access + refresh) and a forced refresh
        # Deleting revoked the grant at the provider: the vault used the token, nobody else.
        assert any(t.revoked for t in w.provider.issued if t.kind == "refresh")
        assert watch.frames > 100  # the hook really saw the servicer and service frames
        for secret in (*tokens, CANARY_CLIENT_SECRET):
            assert watch.holds(secret) == [], secret[:8]
            assert secret not in captured_logs.getvalue()
            assert secret not in repr(harness.audit.events)
            assert secret not in str(listed)
            assert secret.encode() not in answer.body


async def test_a_byok_key_is_never_seen_again_above_the_vault(
    harness: Any, captured_logs: Any
) -> None:
    from tests.api.test_connections import enable, new_account

    org, admin, _ = await harness.new_org()
    names = await harness.populate(org, admin)
    await enable(admin, org, "stripe")
    acct = await new_account(admin, org, names["user"], "stripe")
    key = "rk_test_CanaryByokKey0123456789zz"
    await admin.connections.SetApiKey(pb.SetApiKeyRequest(name=acct.name, api_key=key))
    with watching() as watch:
        got = await admin.connections.GetConnectedAccount(
            pb.GetConnectedAccountRequest(name=acct.name)
        )
        await admin.connections.ListConnectedAccounts(pb.ListConnectedAccountsRequest(parent=org))
        await admin.connections.DeleteConnectedAccount(
            pb.DeleteConnectedAccountRequest(name=acct.name)
        )
    assert watch.frames > 20
    assert watch.holds(key) == []
    assert got.connected_account.api_key_hint.endswith("89zz") and key not in str(got)


def test_the_watch_would_see_a_secret_in_a_service_frame() -> None:
    """The check above is not vacuous: a secret passed to a service function is seen."""
    from control_plane.services.credential_names import check_secret

    canary = "canary-access-token-5f0c2e9a"
    with watching() as watch:
        check_secret(canary, "field")
    assert watch.holds(canary) != []
