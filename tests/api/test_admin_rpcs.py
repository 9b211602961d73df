"""AdminService end to end through the real interceptor chain, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from agentauth import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from agentauth.v1 import admin_pb2 as pb


async def test_org_lifecycle_with_default_service_account(harness) -> None:
    admin = harness.platform.admin
    org = (
        await admin.CreateOrganization(
            pb.CreateOrganizationRequest(organization=pb.Organization(display_name="Acme"))
        )
    ).organization
    assert org.name.startswith("orgs/") and len(org.name) == 5 + 32
    assert org.state == pb.ORGANIZATION_STATE_ACTIVE
    got = (await admin.GetOrganization(pb.GetOrganizationRequest(name=org.name))).organization
    assert got == org
    sas = await admin.ListServiceAccounts(pb.ListServiceAccountsRequest(parent=org.name))
    assert [s.purpose for s in sas.service_accounts] == ["default"]
    await admin.DeleteOrganization(pb.DeleteOrganizationRequest(name=org.name))
    with pytest.raises(NotFoundError) as err:
        await admin.GetOrganization(pb.GetOrganizationRequest(name=org.name))
    assert err.value.reason == "RESOURCE_NOT_FOUND"


async def test_create_is_idempotent_by_request_id(harness) -> None:
    org, client, _ = await harness.new_org()
    req = pb.CreateUserRequest(
        parent=org, user=pb.User(external_id="alice", email="a@example.com"), request_id="r-1"
    )
    first = (await client.admin.CreateUser(req)).user
    again = (await client.admin.CreateUser(req)).user
    assert first == again
    conflicting = pb.CreateUserRequest(
        parent=org, user=pb.User(external_id="bob"), request_id="r-1"
    )
    with pytest.raises(InvalidArgumentError) as err:
        await client.admin.CreateUser(conflicting)
    assert err.value.reason == "REQUEST_ID_REUSED"
    listed = await client.admin.ListUsers(pb.ListUsersRequest(parent=org))
    assert [u.external_id for u in listed.users] == ["alice"]

    # Organizations too, at the platform level.
    oreq = pb.CreateOrganizationRequest(
        organization=pb.Organization(display_name="Idem"), request_id="org-1"
    )
    a = (await harness.platform.admin.CreateOrganization(oreq)).organization
    b = (await harness.platform.admin.CreateOrganization(oreq)).organization
    assert a.name == b.name


async def test_duplicate_external_id_and_purpose(harness) -> None:
    org, client, _ = await harness.new_org()
    await client.admin.CreateUser(pb.CreateUserRequest(parent=org, user=pb.User(external_id="x")))
    with pytest.raises(AlreadyExistsError):
        await client.admin.CreateUser(
            pb.CreateUserRequest(parent=org, user=pb.User(external_id="x"))
        )
    with pytest.raises(AlreadyExistsError):
        await client.admin.CreateServiceAccount(
            pb.CreateServiceAccountRequest(
                parent=org, service_account=pb.ServiceAccount(display_name="d", purpose="default")
            )
        )


async def test_same_external_id_in_two_orgs_is_two_users(harness) -> None:
    org_a, a, _ = await harness.new_org("A")
    org_b, b, _ = await harness.new_org("B")
    ua = (
        await a.admin.CreateUser(
            pb.CreateUserRequest(parent=org_a, user=pb.User(external_id="same"))
        )
    ).user
    ub = (
        await b.admin.CreateUser(
            pb.CreateUserRequest(parent=org_b, user=pb.User(external_id="same"))
        )
    ).user
    assert ua.name != ub.name


async def test_user_status_agents_and_service_accounts(harness) -> None:
    org, client, _ = await harness.new_org()
    names = await harness.populate(org, client)
    user = (
        await client.admin.UpdateUserStatus(
            pb.UpdateUserStatusRequest(name=names["user"], state=pb.USER_STATE_SUSPENDED)
        )
    ).user
    assert user.state == pb.USER_STATE_SUSPENDED
    agent = (await client.admin.DisableAgent(pb.DisableAgentRequest(name=names["agent"]))).agent
    assert agent.state == pb.AGENT_STATE_DISABLED
    sa = (
        await client.admin.DisableServiceAccount(pb.DisableServiceAccountRequest(name=names["sa"]))
    ).service_account
    assert sa.state == pb.SERVICE_ACCOUNT_STATE_DISABLED
    await client.admin.DeleteUser(pb.DeleteUserRequest(name=names["user"]))
    with pytest.raises(NotFoundError):
        await client.admin.GetUser(pb.GetUserRequest(name=names["user"]))


async def test_pagination_walks_every_item_once(harness) -> None:
    org, client, _ = await harness.new_org()
    for i in range(7):
        await client.admin.CreateUser(
            pb.CreateUserRequest(parent=org, user=pb.User(external_id=f"user-{i}"))
        )
    seen, token, pages = [], "", 0
    while True:
        page = await client.admin.ListUsers(
            pb.ListUsersRequest(parent=org, page_size=3, page_token=token)
        )
        seen += [u.external_id for u in page.users]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == [f"user-{i}" for i in range(7)] and pages == 3


async def test_page_token_is_bound_to_org_and_collection(harness) -> None:
    org_a, a, _ = await harness.new_org("A")
    org_b, _, _ = await harness.new_org("B")
    for i in range(3):
        await a.admin.CreateUser(
            pb.CreateUserRequest(parent=org_a, user=pb.User(external_id=f"u{i}"))
        )
    token = (
        await a.admin.ListUsers(pb.ListUsersRequest(parent=org_a, page_size=1))
    ).next_page_token
    assert token
    platform = harness.platform.admin
    with pytest.raises(InvalidArgumentError) as err:
        await platform.ListUsers(pb.ListUsersRequest(parent=org_b, page_token=token))
    assert err.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(InvalidArgumentError):
        await a.admin.ListAgents(pb.ListAgentsRequest(parent=org_a, page_token=token))
    edited = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidArgumentError):
        await a.admin.ListUsers(pb.ListUsersRequest(parent=org_a, page_token=edited))


async def test_api_keys_shown_once_listed_masked_and_revocable(harness) -> None:
    org, client, _ = await harness.new_org()
    created = await client.admin.CreateApiKey(
        pb.CreateApiKeyRequest(parent=org, api_key=pb.ApiKey(display_name="ci"))
    )
    secret = created.secret
    assert secret.startswith("aa_org_") and created.api_key.key_hint == secret[-4:]
    listed = await client.admin.ListApiKeys(pb.ListApiKeysRequest(parent=org))
    assert secret not in str(listed)
    assert created.api_key.name in [k.name for k in listed.api_keys]
    second = harness.client(secret)
    await second.admin.GetOrganization(pb.GetOrganizationRequest(name=org))
    await client.admin.RevokeApiKey(pb.RevokeApiKeyRequest(name=created.api_key.name))
    with pytest.raises(UnauthenticatedError):
        await second.admin.GetOrganization(pb.GetOrganizationRequest(name=org))


async def test_platform_keys_managed_by_platform_admins_only(harness) -> None:
    _, org_client, _ = await harness.new_org()
    made = await harness.platform.admin.CreateApiKey(
        pb.CreateApiKeyRequest(parent="", api_key=pb.ApiKey(display_name="ops"))
    )
    assert made.api_key.name.startswith("apiKeys/") and made.secret.startswith("aa_plat_")
    with pytest.raises(PermissionDeniedError):
        await org_client.admin.ListApiKeys(pb.ListApiKeysRequest(parent=""))
    with pytest.raises(PermissionDeniedError):
        await org_client.admin.RevokeApiKey(pb.RevokeApiKeyRequest(name=made.api_key.name))
    revoked = await harness.platform.admin.RevokeApiKey(
        pb.RevokeApiKeyRequest(name=made.api_key.name)
    )
    assert revoked.api_key.state == pb.API_KEY_STATE_REVOKED


async def test_org_admin_limits(harness) -> None:
    org, client, _ = await harness.new_org()
    with pytest.raises(PermissionDeniedError):
        await client.admin.CreateOrganization(
            pb.CreateOrganizationRequest(organization=pb.Organization(display_name="x"))
        )
    with pytest.raises(PermissionDeniedError):
        await client.admin.DeleteOrganization(pb.DeleteOrganizationRequest(name=org))
    listed = await client.admin.ListOrganizations(pb.ListOrganizationsRequest())
    assert [o.name for o in listed.organizations] == [org]


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        (("authorization", "Bearer "),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer aa_plat_" + "0" * 32 + "_" + "x" * 43),),
        (("authorization", "Bearer aa_org_" + "0" * 32 + "_" + "1" * 32 + "_" + "x" * 43),),
        (("authorization", "Bearer " + "a" * 5000),),
        (("authorization", "Bearer ' OR 1=1--"),),
    ],
)
async def test_unauthenticated_calls_are_refused(harness, metadata) -> None:
    client = harness.client(None)
    with pytest.raises(UnauthenticatedError) as err:
        await client.admin.ListOrganizations(pb.ListOrganizationsRequest(), metadata=metadata)
    assert err.value.domain == "agentauth"


async def test_audit_hook_records_mutations_and_fails_closed(harness) -> None:
    org, client, _ = await harness.new_org()
    harness.audit.events.clear()
    await client.admin.CreateUser(pb.CreateUserRequest(parent=org, user=pb.User(external_id="a")))
    phases = [(e.action.rsplit("/", 1)[1], e.phase, e.outcome) for e in harness.audit.events]
    assert phases == [("CreateUser", "attempt", "pending"), ("CreateUser", "outcome", "OK")]
    await client.admin.GetOrganization(pb.GetOrganizationRequest(name=org))
    assert len(harness.audit.events) == 2  # reads are not audited

    before = await harness.snapshot()
    harness.audit.set_next_error(OSError("disk full"))
    from agentauth import UnavailableError

    with pytest.raises(UnavailableError) as err:
        await client.admin.CreateUser(
            pb.CreateUserRequest(parent=org, user=pb.User(external_id="b"))
        )
    assert err.value.reason == "AUDIT_UNAVAILABLE"
    assert await harness.snapshot() == before


async def test_delete_organization_shreds_keys_and_rows(harness) -> None:
    org, client, _ = await harness.new_org()
    await harness.populate(org, client)
    org_id = org.split("/")[1]
    barrier = harness.runtime.barrier
    from tests.scopes import scope

    org_scope = scope(org_id)
    async with harness.runtime.db.org_tx(org_scope) as s:
        blob = await barrier.seal(org_scope, "users", "r", "f", b"tenant secret", tx=s)
    await harness.platform.admin.DeleteOrganization(pb.DeleteOrganizationRequest(name=org))
    snapshot = await harness.snapshot()
    leftovers = {t: rows for t, rows in snapshot.items() if any(org_id in map(str, r) for r in rows)}
    assert leftovers == {}
    from control_plane.domain.errors import BarrierError

    with pytest.raises(BarrierError):
        await barrier.open(org_scope, "users", "r", "f", blob)
