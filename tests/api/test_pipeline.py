"""One request pipeline for both transports.

The OAuth endpoints and the connect pages go through the same authenticate →
authorize → rate-limit → audit chain as every RPC: an unauthenticated, a
rate-limited and a cross-org call gets the same error (reason, and the
transport's status for it) and the same audit records over HTTP as over gRPC.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from agentauth import ResourceExhaustedError, UnauthenticatedError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import connection_pb2 as cpb
from agentauth.v1 import token_pb2 as tpb
from google.protobuf import field_mask_pb2

from control_plane.api.authz import ROUTES
from tests.api.connect_helpers import connect_world


def _records(harness: Any) -> list[tuple[str, str, str, str, str, str]]:
    """The audit records so far, without their time and transport."""
    return [
        (e.action, e.phase, e.principal_role, e.principal_key, e.outcome, e.reason)
        for e in harness.audit.events
    ]


async def _limit(harness: Any, org: str, **limits: Any) -> None:
    await harness.platform.admin.UpdateOrganization(
        pb.UpdateOrganizationRequest(
            organization=pb.Organization(name=org, rate_limits=pb.RateLimits(**limits)),
            update_mask=field_mask_pb2.FieldMask(paths=["rate_limits"]),
        )
    )


async def _post(harness: Any, path: str, key: str | None, **form: str) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(harness.http + path, data=form, headers=headers) as r:
            return r.status, r.headers, await r.json()


async def test_every_http_route_has_a_rule(harness: Any) -> None:
    app = harness.servers.http_runner.app
    registered = {
        f"{r.method} {r.resource.canonical}"
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert registered == set(ROUTES)


async def test_unauthenticated_calls_are_refused_alike_and_not_audited(harness: Any) -> None:
    harness.audit.events.clear()
    anonymous = harness.client(None)
    for call in (anonymous.tokens.IntrospectToken, anonymous.tokens.RevokeToken):
        with pytest.raises(UnauthenticatedError) as grpc_err:
            await call(tpb.IntrospectTokenRequest(token="x"))  # type: ignore[arg-type]
        assert grpc_err.value.reason == "CREDENTIALS_MISSING"
    for path in ("/oauth2/introspect", "/oauth2/revoke"):
        status, headers, body = await _post(harness, path, None, token="x")
        assert status == 401 and body["error"] == "invalid_client"
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert harness.audit.events == []  # refused before the audit stage, on both


async def test_audited_calls_write_the_same_records_over_http_and_grpc(harness: Any) -> None:
    org, admin, key = await harness.new_org()
    harness.audit.events.clear()
    await admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token="not-a-token"))
    over_grpc = _records(harness)
    harness.audit.events.clear()
    status, _, _ = await _post_revoke_token(harness, key, "not-a-token")
    assert status == 200
    over_http = _records(harness)
    assert over_grpc == over_http
    assert [e.transport for e in harness.audit.events] == ["http", "http"]
    assert over_http[0][:2] == ("/agentauth.v1.TokenService/RevokeToken", "attempt")
    assert over_http[1][4] == "OK"


async def test_a_rate_limited_principal_is_refused_alike_and_other_orgs_are_not(
    harness: Any,
) -> None:
    org, admin, key = await harness.new_org()
    other_org, other, other_key = await harness.new_org("Other")
    # 2 calls, then a refill of one token every 500 s: the third call is refused.
    await _limit(harness, org, principal_requests_per_second=0.002, principal_burst=2)
    request = tpb.IntrospectTokenRequest(token="x")
    await admin.tokens.IntrospectToken(request)
    await admin.tokens.IntrospectToken(request)
    harness.audit.events.clear()
    with pytest.raises(ResourceExhaustedError) as grpc_err:
        await admin.tokens.IntrospectToken(request)
    assert grpc_err.value.reason == "RATE_LIMITED"
    retry = int(grpc_err.value.metadata["retryAfterSeconds"])
    assert 400 <= retry <= 500
    status, headers, body = await _post(harness, "/oauth2/introspect", key, token="x")
    assert status == 429 and body["error"] == "temporarily_unavailable"
    assert 400 <= int(headers["Retry-After"]) <= 500
    # Audited calls are refused before the audit stage too: nothing was recorded.
    with pytest.raises(ResourceExhaustedError):
        await admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token="x"))
    assert harness.audit.events == []
    # Another org (and its principals) is unaffected.
    for _ in range(5):
        await other.tokens.IntrospectToken(request)
    status, _, body = await _post(harness, "/oauth2/introspect", other_key, token="x")
    assert status == 200 and body == {"active": False}


async def test_only_platform_admins_set_limits_and_reads_show_them(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    from agentauth import PermissionDeniedError

    with pytest.raises(PermissionDeniedError):
        await admin.admin.UpdateOrganization(
            pb.UpdateOrganizationRequest(
                organization=pb.Organization(name=org, rate_limits=pb.RateLimits(burst=10**6)),
                update_mask=field_mask_pb2.FieldMask(paths=["rate_limits"]),
            )
        )
    await _limit(harness, org, requests_per_second=50, burst=100)
    got = (await admin.admin.GetOrganization(pb.GetOrganizationRequest(name=org))).organization
    assert (got.rate_limits.requests_per_second, got.rate_limits.burst) == (50, 100)
    assert got.rate_limits.principal_burst == 0  # the deployment's default


async def test_cross_org_introspection_and_revocation_are_alike(harness: Any) -> None:
    from control_plane.sandbox import KubernetesIssuer
    from tests.api.exchange_helpers import open_world

    async with KubernetesIssuer() as k8s:
        w = await open_world(harness, k8s)  # org B, with a live token of its own
        token = (await w.exchange(subject_token=w.workload())).access_token
        org, admin, key = await harness.new_org("A")
        harness.audit.events.clear()
        got = await admin.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=token))
        assert got.active is False  # B's token looks inactive to A, like a missing one
        status, _, body = await _post(harness, "/oauth2/introspect", key, token=token)
        assert status == 200 and body == {"active": False}
        await admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=token))  # 200, no-op
        over_grpc = _records(harness)
        harness.audit.events.clear()
        status, _, _ = await _post_revoke_token(harness, key, token)
        assert status == 200 and _records(harness) == over_grpc
        # ...and nothing was revoked in B.
        still = await w.admin.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=token))
        assert still.active is True


async def _post_revoke_token(harness: Any, key: str, token: str) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            harness.http + "/oauth2/revoke",
            data={"token": token},
            headers={"Authorization": f"Bearer {key}"},
        ) as r:
            return r.status, r.headers, await r.read()


async def test_connect_pages_are_authenticated_rate_limited_and_audited(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account()
        link = await w.link(acct)
        org_id = w.org.split("/")[1]
        other, _, _ = await harness.new_org("Other")
        token = link.rsplit("/", 1)[1]
        harness.audit.events.clear()
        async with aiohttp.ClientSession() as http:
            for bad in (
                "garbage",
                other.split("/")[1] + "." + token.split(".", 1)[1],  # another org's id
                org_id + "." + "A" * 43,  # right org, unknown secret
            ):
                async with http.get(f"{harness.http}/connect/{bad}") as r:
                    assert r.status == 404 and 'data-code="LINK_INVALID"' in await r.text()
            assert harness.audit.events == []  # unauthenticated: refused before the audit
            await _limit(harness, w.org, principal_requests_per_second=0.002, principal_burst=2)
            harness.audit.events.clear()
            for _ in range(2):
                async with http.get(link) as r:
                    assert r.status == 200
            async with http.get(link) as r:
                assert r.status == 429 and 'data-code="RATE_LIMITED"' in await r.text()
                assert 400 <= int(r.headers["Retry-After"]) <= 500
            # A submission of the form is audited like an RPC, under its own action.
            async with http.post(link, data={"csrf": "x"}) as r:
                assert r.status == 429
        assert harness.audit.events == []  # the rate-limited submit was refused before it
        await _limit(harness, w.org, principal_requests_per_second=0, principal_burst=0)
        got = (await w.admin.connections.GetConnectedAccount(
            cpb.GetConnectedAccountRequest(name=acct.name))).connected_account
        assert got.state == cpb.CONNECTED_ACCOUNT_STATE_PENDING
