"""Authorization is a table keyed by full method name; deny by default."""

from __future__ import annotations

import grpc
import pytest
from agentauth import PermissionDeniedError
from agentauth.v1 import admin_pb2, connection_pb2, token_pb2, tool_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from control_plane.api import reflection_v1
from control_plane.api.authz import RULES, rule_for
from control_plane.app import SERVICE_NAMES

SERVED = [admin_pb2, token_pb2, connection_pb2, tool_pb2, health_pb2, reflection_pb2, reflection_v1]


def _served_methods() -> set[str]:
    out = set()
    for module in SERVED:
        for service in module.DESCRIPTOR.services_by_name.values():
            out |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    return out


def test_the_table_test_sees_every_service_the_server_registers() -> None:
    seen = {s.full_name for m in SERVED for s in m.DESCRIPTOR.services_by_name.values()}
    assert set(SERVICE_NAMES) <= seen


def test_every_served_rpc_has_an_authorization_entry() -> None:
    missing = _served_methods() - set(RULES)
    assert not missing, f"RPCs without an authorization rule: {sorted(missing)}"


def test_no_stale_entries() -> None:
    assert set(RULES) - _served_methods() == set()


def test_unknown_method_has_no_rule() -> None:
    assert rule_for("/agentauth.v1.AdminService/DropEverything") is None


def test_only_discovery_jwks_and_the_token_grant_are_public() -> None:
    """ExchangeToken is public because the workload credential inside it authenticates."""
    public = {m for m, r in RULES.items() if r.public}
    assert public == {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/List",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/agentauth.v1.TokenService/GetJwks",
        "/agentauth.v1.TokenService/ExchangeToken",
    }


def test_every_mutation_is_audited() -> None:
    for method, rule in RULES.items():
        name = method.rsplit("/", 1)[1]
        mutating = name.startswith(
            (
                "Create",
                "Delete",
                "Update",
                "Register",
                "Disable",
                "Revoke",
                "Exchange",
                "Delegate",
                "Set",
                "Refresh",
                "Confirm",
            )
        )
        assert rule.audited == mutating, method


async def test_method_without_entry_is_denied(harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove one entry at runtime: the chain must refuse the call, not allow it."""
    method = "/agentauth.v1.AdminService/ListOrganizations"
    monkeypatch.delitem(RULES, method)
    with pytest.raises(PermissionDeniedError) as err:
        await harness.platform.admin.ListOrganizations(admin_pb2.ListOrganizationsRequest())
    assert err.value.reason == "METHOD_NOT_AUTHORIZED"


async def test_public_methods_work_without_credentials(harness) -> None:
    from grpc_health.v1 import health_pb2_grpc

    async with grpc.aio.insecure_channel(harness.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        resp = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    client = harness.client(None)
    jwks = await client.tokens.GetJwks(token_pb2.GetJwksRequest())
    assert jwks.keys
