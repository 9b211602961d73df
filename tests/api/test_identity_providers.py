"""AdminService identity providers: CRUD, one per org, idempotency, audit."""

from __future__ import annotations

import json

import pytest
from agentauth import AlreadyExistsError, InvalidArgumentError, NotFoundError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import identity_provider_pb2 as idp_pb

from tests.api.conftest import PUBLIC_JWK

OKTA_ISSUER = "https://acme.okta.example/oauth2/default"
ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def okta(**kw: object) -> idp_pb.IdentityProvider:
    fields: dict[str, object] = {
        "issuer": OKTA_ISSUER,
        "discovery_url": OKTA_ISSUER + "/.well-known/openid-configuration",
        "audience": "0oa1b2c3d4e5f6g7h8i9",
        **kw,
    }
    return idp_pb.IdentityProvider(**fields)  # type: ignore[arg-type]


async def test_create_get_list_delete(harness) -> None:
    org, client, _ = await harness.new_org()
    created = (
        await client.admin.CreateIdentityProvider(
            pb.CreateIdentityProviderRequest(parent=org, identity_provider=okta())
        )
    ).identity_provider
    assert created.name.startswith(org + "/identityProviders/")
    assert created.subject_claim == "sub"  # the default
    assert list(created.algorithms) == ["ES256", "RS256"]
    assert created.issuer == OKTA_ISSUER and created.create_time.seconds > 0

    got = await client.admin.GetIdentityProvider(pb.GetIdentityProviderRequest(name=created.name))
    assert got.identity_provider == created
    listed = await client.admin.ListIdentityProviders(pb.ListIdentityProvidersRequest(parent=org))
    assert list(listed.identity_providers) == [created] and not listed.next_page_token

    await client.admin.DeleteIdentityProvider(pb.DeleteIdentityProviderRequest(name=created.name))
    with pytest.raises(NotFoundError):
        await client.admin.GetIdentityProvider(pb.GetIdentityProviderRequest(name=created.name))
    with pytest.raises(NotFoundError):
        await client.admin.DeleteIdentityProvider(
            pb.DeleteIdentityProviderRequest(name=created.name)
        )
    listed = await client.admin.ListIdentityProviders(pb.ListIdentityProvidersRequest(parent=org))
    assert list(listed.identity_providers) == []


async def test_entra_shape_with_static_jwks(harness) -> None:
    org, client, _ = await harness.new_org()
    issuer = f"https://login.microsoftonline.com/{ENTRA_TENANT}/v2.0"
    created = (
        await client.admin.CreateIdentityProvider(
            pb.CreateIdentityProviderRequest(
                parent=org,
                identity_provider=idp_pb.IdentityProvider(
                    issuer=issuer,
                    jwks_json=json.dumps({"keys": [PUBLIC_JWK]}),
                    audience="6e74172b-be56-4843-9ff4-e66a39bb12e3",
                    subject_claim="oid",
                    claim_equals={"tid": ENTRA_TENANT},
                    algorithms=["RS256"],
                ),
            )
        )
    ).identity_provider
    assert created.subject_claim == "oid" and dict(created.claim_equals) == {"tid": ENTRA_TENANT}
    assert list(created.algorithms) == ["RS256"] and not created.discovery_url


async def test_one_identity_provider_per_org(harness) -> None:
    org, client, _ = await harness.new_org()
    first = (
        await client.admin.CreateIdentityProvider(
            pb.CreateIdentityProviderRequest(parent=org, identity_provider=okta())
        )
    ).identity_provider
    before = await harness.snapshot()
    with pytest.raises(AlreadyExistsError) as err:
        await client.admin.CreateIdentityProvider(
            pb.CreateIdentityProviderRequest(
                parent=org, identity_provider=okta(audience="another-client")
            )
        )
    assert err.value.reason == "RESOURCE_ALREADY_EXISTS"
    assert await harness.snapshot() == before
    # Replacing it is delete, then create.
    await client.admin.DeleteIdentityProvider(pb.DeleteIdentityProviderRequest(name=first.name))
    second = (
        await client.admin.CreateIdentityProvider(
            pb.CreateIdentityProviderRequest(
                parent=org, identity_provider=okta(audience="another-client")
            )
        )
    ).identity_provider
    assert second.name != first.name and second.audience == "another-client"


async def test_create_is_idempotent_by_request_id(harness) -> None:
    org, client, _ = await harness.new_org()
    req = pb.CreateIdentityProviderRequest(parent=org, identity_provider=okta(), request_id="idp-1")
    a = (await client.admin.CreateIdentityProvider(req)).identity_provider
    b = (await client.admin.CreateIdentityProvider(req)).identity_provider
    assert a == b
    with pytest.raises(InvalidArgumentError) as err:
        await client.admin.CreateIdentityProvider(
            pb.CreateIdentityProviderRequest(
                parent=org, identity_provider=okta(audience="other"), request_id="idp-1"
            )
        )
    assert err.value.reason == "REQUEST_ID_REUSED"


async def test_our_own_issuer_is_not_an_identity_provider(harness) -> None:
    org, client, _ = await harness.new_org()
    ours = harness.servers.tokens.issuer
    with pytest.raises(InvalidArgumentError) as err:
        await client.admin.CreateIdentityProvider(
            pb.CreateIdentityProviderRequest(
                parent=org,
                identity_provider=okta(
                    issuer=ours, discovery_url=ours + "/.well-known/openid-configuration"
                ),
            )
        )
    assert err.value.metadata["field"] == "identity_provider.issuer"


async def test_mutations_are_audited(harness) -> None:
    org, client, _ = await harness.new_org()
    harness.audit.events.clear()
    created = (
        await client.admin.CreateIdentityProvider(
            pb.CreateIdentityProviderRequest(parent=org, identity_provider=okta())
        )
    ).identity_provider
    await client.admin.GetIdentityProvider(pb.GetIdentityProviderRequest(name=created.name))
    await client.admin.DeleteIdentityProvider(pb.DeleteIdentityProviderRequest(name=created.name))
    phases = [(e.action.rsplit("/", 1)[1], e.phase, e.outcome) for e in harness.audit.events]
    assert phases == [
        ("CreateIdentityProvider", "attempt", "pending"),
        ("CreateIdentityProvider", "outcome", "OK"),
        ("DeleteIdentityProvider", "attempt", "pending"),
        ("DeleteIdentityProvider", "outcome", "OK"),
    ]
