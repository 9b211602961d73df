"""ConnectionService: connector config, OAuth apps and developer secrets at two levels,
connected accounts, BYOK keys — write-only secrets, org scoping, precise errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from agentauth import (
    AgentAuthError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from agentauth.v1 import admin_pb2 as apb
from agentauth.v1 import connection_pb2 as pb
from google.protobuf import duration_pb2
from sqlalchemy import text

from control_plane.connectors.loader import load_catalog
from control_plane.storage.db import Database

CANARY_CLIENT_SECRET = "canary-client-secret-5d1f0b7c9e"
CANARY_DEV_SECRET = "canary-dev-secret-8a7e6f5d4c3b"
CANARY_API_KEY = "rk_test_CanaryApiKey0123456789abcdef"

Names = dict[str, str]


async def enable(client: Any, org: str, connector: str, tools: list[str] | None = None) -> Any:
    return (
        await client.connections.UpdateConnectorConfig(
            pb.UpdateConnectorConfigRequest(
                name=f"{org}/connectors/{connector}", enabled=True, enabled_tools=tools or []
            )
        )
    ).connector


async def new_account(client: Any, org: str, owner: str, connector: str, **kw: Any) -> Any:
    return (
        await client.connections.CreateConnectedAccount(
            pb.CreateConnectedAccountRequest(
                parent=org,
                connected_account=pb.ConnectedAccount(connector=connector, owner=owner, **kw),
            )
        )
    ).connected_account


async def vault_names(harness: Any, org: str, client: Any) -> Names:
    names = await harness.populate(org, client)
    await enable(client, org, "gmail")
    await enable(client, org, "stripe")
    account = await new_account(client, org, names["user"], "stripe")
    await client.connections.SetOAuthApp(
        pb.SetOAuthAppRequest(
            oauth_app=pb.OAuthApp(
                name=f"{org}/oauthApps/gmail", client_id="c", client_secret=CANARY_CLIENT_SECRET
            )
        )
    )
    await client.connections.SetDeveloperSecret(
        pb.SetDeveloperSecretRequest(
            developer_secret=pb.DeveloperSecret(
                name=f"{org}/developerSecrets/weather", secret=CANARY_DEV_SECRET
            )
        )
    )
    return {**names, "account": account.name}


# ------------------------------------------------------------------ connectors


async def test_connectors_start_disabled_and_follow_config_and_app_source(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    listed = (await admin.connections.ListConnectors(pb.ListConnectorsRequest(parent=org))).connectors
    by_id = {c.name.rsplit("/", 1)[1]: c for c in listed}
    assert len(by_id) == len(harness.runtime.catalog)
    gmail = by_id["gmail"]
    assert not gmail.enabled and not any(t.enabled for t in gmail.tools)
    assert gmail.oauth_app_source == pb.CREDENTIAL_SOURCE_NONE
    assert gmail.auth_type == pb.CONNECTOR_AUTH_TYPE_OAUTH2
    assert by_id["stripe"].auth_type == pb.CONNECTOR_AUTH_TYPE_API_KEY
    send = next(t for t in gmail.tools if t.name == "gmail.send_message")
    assert send.destructive and send.scopes == ["https://www.googleapis.com/auth/gmail.send"]
    assert '"additionalProperties": false' in send.input_schema_json

    c = await enable(admin, org, "gmail", ["gmail.list_messages"])
    assert c.enabled and [t.name for t in c.tools if t.enabled] == ["gmail.list_messages"]
    await harness.platform.connections.SetOAuthApp(pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
        name="oauthApps/gmail", client_id="deployment-client", client_secret="s3cret-value")))
    c = await enable(admin, org, "gmail")
    assert c.oauth_app_source == pb.CREDENTIAL_SOURCE_DEPLOYMENT
    assert all(t.enabled for t in c.tools)
    await admin.connections.SetOAuthApp(pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
        name=f"{org}/oauthApps/gmail", client_id="org-client", client_secret="other-secret")))
    listed = (await admin.connections.ListConnectors(pb.ListConnectorsRequest(parent=org))).connectors
    assert next(x for x in listed if x.name.endswith("/gmail")).oauth_app_source == (
        pb.CREDENTIAL_SOURCE_ORGANIZATION
    )
    # The org's own app wins; the deployment's is used otherwise.
    apps = harness.servers  # noqa: F841 - keep the harness alive
    from tests.scopes import scope

    apps = harness.servers.vault.oauth_apps

    async def client_for(org_id: str, connector: str) -> tuple[str, str, str]:
        c = await apps.client_for(scope(org_id), connector)
        return c.client_id, c.client_secret.reveal(), c.source

    assert await client_for(org.split("/")[1], "gmail") == (
        "org-client", "other-secret", "ORGANIZATION")
    other, _, _ = await harness.new_org("Other")
    assert await client_for(other.split("/")[1], "gmail") == (
        "deployment-client", "s3cret-value", "DEPLOYMENT")


async def test_deployment_credentials_are_the_platforms(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    with pytest.raises(PermissionDeniedError):
        await admin.connections.SetOAuthApp(pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name="oauthApps/gmail", client_id="c", client_secret="s")))
    with pytest.raises(PermissionDeniedError):
        await admin.connections.GetDeveloperSecret(
            pb.GetDeveloperSecretRequest(name="developerSecrets/weather"))


async def test_secrets_are_write_only_and_never_leave(harness: Any, captured_logs: Any) -> None:
    org, admin, _ = await harness.new_org()
    names = await vault_names(harness, org, admin)
    responses = [
        await admin.connections.GetOAuthApp(pb.GetOAuthAppRequest(name=f"{org}/oauthApps/gmail")),
        await admin.connections.GetDeveloperSecret(
            pb.GetDeveloperSecretRequest(name=f"{org}/developerSecrets/weather")),
        await admin.connections.SetApiKey(
            pb.SetApiKeyRequest(name=names["account"], api_key=CANARY_API_KEY)),
        await admin.connections.GetConnectedAccount(
            pb.GetConnectedAccountRequest(name=names["account"])),
        await admin.connections.ListConnectedAccounts(pb.ListConnectedAccountsRequest(parent=org)),
        await admin.connections.ListConnectors(pb.ListConnectorsRequest(parent=org)),
    ]
    app = responses[0].oauth_app
    assert app.client_id == "c" and app.client_secret_set and not app.client_secret
    assert responses[1].developer_secret.secret_hint == "••••4c3b"
    assert responses[2].connected_account.api_key_hint == "••••cdef"
    # Refused input never echoes a secret either.
    with pytest.raises(InvalidArgumentError) as bad:
        await admin.connections.SetApiKey(pb.SetApiKeyRequest(
            name=names["account"], api_key="sk_live_" + CANARY_API_KEY[8:]))
    wire = "".join(str(r) for r in responses) + str(bad.value)
    logs = captured_logs.getvalue() + "".join(str(e) for e in harness.audit.events)
    assert "SetApiKey" in logs  # the server's log lines are here
    rows = str(await harness.snapshot())
    for canary in (CANARY_CLIENT_SECRET, CANARY_DEV_SECRET, CANARY_API_KEY, CANARY_API_KEY[8:]):
        assert canary not in wire and canary not in logs and canary not in rows


# ------------------------------------------------------------------ accounts


async def test_connected_accounts_lifecycle(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    names = await harness.populate(org, admin)
    with pytest.raises(FailedPreconditionError) as off:
        await new_account(admin, org, names["user"], "gmail")
    assert off.value.reason == "CONNECTOR_DISABLED"
    await enable(admin, org, "gmail")
    first = await new_account(admin, org, names["user"], "gmail", label="work")
    assert first.state == pb.CONNECTED_ACCOUNT_STATE_PENDING
    assert first.state_reason == "AWAITING_AUTHORIZATION" and first.default
    second = await new_account(admin, org, names["user"], "gmail", label="personal")
    assert not second.default
    sa_account = await new_account(admin, org, names["sa"], "gmail")
    assert sa_account.default and sa_account.owner == names["sa"]

    made = (await admin.connections.UpdateConnectedAccount(pb.UpdateConnectedAccountRequest(
        name=second.name, make_default=True, label="home"))).connected_account
    assert made.default and made.label == "home"
    again = (await admin.connections.GetConnectedAccount(
        pb.GetConnectedAccountRequest(name=first.name))).connected_account
    assert not again.default

    listed = await admin.connections.ListConnectedAccounts(
        pb.ListConnectedAccountsRequest(parent=org, owner=names["user"], page_size=1))
    assert len(listed.connected_accounts) == 1 and listed.next_page_token
    rest = await admin.connections.ListConnectedAccounts(pb.ListConnectedAccountsRequest(
        parent=org, owner=names["user"], page_size=5, page_token=listed.next_page_token))
    assert {a.name for a in [*listed.connected_accounts, *rest.connected_accounts]} == {
        first.name, second.name}
    with pytest.raises(InvalidArgumentError):  # a page token is bound to its filter
        await admin.connections.ListConnectedAccounts(pb.ListConnectedAccountsRequest(
            parent=org, owner=names["sa"], page_token=listed.next_page_token))

    await admin.connections.DeleteConnectedAccount(
        pb.DeleteConnectedAccountRequest(name=second.name))
    promoted = (await admin.connections.GetConnectedAccount(
        pb.GetConnectedAccountRequest(name=first.name))).connected_account
    assert promoted.default
    with pytest.raises(NotFoundError):
        await admin.connections.GetConnectedAccount(
            pb.GetConnectedAccountRequest(name=second.name))


async def test_connection_params_are_required_and_checked(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    names = await harness.populate(org, admin)
    await enable(admin, org, "shopify")
    for params, field in [({}, "shop"), ({"shop": "Bad Shop!"}, "shop"),
                          ({"shop": "acme", "extra": "x"}, "extra")]:
        with pytest.raises(InvalidArgumentError) as err:
            await new_account(admin, org, names["user"], "shopify", connection_params=params)
        assert err.value.metadata["field"] == f"connected_account.connection_params.{field}"
    ok = await new_account(admin, org, names["user"], "shopify", connection_params={"shop": "acme"})
    assert dict(ok.connection_params) == {"shop": "acme"}


async def test_byok_keys_are_validated_sealed_and_rotated(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    names = await harness.populate(org, admin)
    await enable(admin, org, "stripe")
    acct = await new_account(admin, org, names["user"], "stripe")
    assert acct.state_reason == "AWAITING_API_KEY"
    before = await harness.snapshot()
    for key, reason in [("", "FIELD_REQUIRED"), ("rk_test_" + "a" * 5000, "FIELD_TOO_LONG"),
                        ("rk_test_abc\x00defghijklmnop", "INVALID_ARGUMENT"),
                        ("rk_test_abc defghijklmnop", "INVALID_ARGUMENT"),
                        ("sk_live_abcdefghijklmnop", "INVALID_ARGUMENT")]:
        with pytest.raises(InvalidArgumentError) as err:
            await admin.connections.SetApiKey(pb.SetApiKeyRequest(name=acct.name, api_key=key))
        assert err.value.reason == reason and err.value.metadata["field"] == "api_key"
    assert await harness.snapshot() == before
    set1 = (await admin.connections.SetApiKey(pb.SetApiKeyRequest(
        name=acct.name, api_key="rk_test_FirstKey0123456789"))).connected_account
    assert set1.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE and set1.api_key_hint == "••••6789"
    set2 = (await admin.connections.SetApiKey(pb.SetApiKeyRequest(
        name=acct.name, api_key="rk_test_SecondKey987654zz"))).connected_account
    assert set2.api_key_hint == "••••54zz"
    assert set2.secret_create_time == set1.secret_create_time
    assert set2.secret_rotate_time.ToDatetime() >= set1.secret_rotate_time.ToDatetime()
    # The stored blob opens only for this org, table, row and field.
    owner = Database(harness.database_url, app_role=None)
    try:
        async with owner.engine.connect() as conn:
            blob = (await conn.execute(text("SELECT secret FROM connected_accounts"))).scalar_one()
    finally:
        await owner.dispose()
    assert b"SecondKey" not in blob
    from tests.scopes import scope

    opened = await harness.runtime.barrier.open(
        scope(org.split("/")[1]), "connected_accounts", acct.name.rsplit("/", 1)[1], "secret", blob)
    assert b"rk_test_SecondKey987654zz" in opened
    # An OAuth account does not take a key.
    await enable(admin, org, "gmail")
    oauth = await new_account(admin, org, names["user"], "gmail")
    with pytest.raises(FailedPreconditionError) as not_byok:
        await admin.connections.SetApiKey(pb.SetApiKeyRequest(name=oauth.name, api_key="rk_test_x" * 3))
    assert not_byok.value.reason == "NOT_BYOK"


async def test_developer_secret_rate_limit_and_levels(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    made = (await admin.connections.SetDeveloperSecret(pb.SetDeveloperSecretRequest(
        developer_secret=pb.DeveloperSecret(
            name=f"{org}/developerSecrets/weather", secret="0123456789abcdef0123",
            per_user_rate_limit=pb.RateLimit(requests=60, period=duration_pb2.Duration(seconds=60)),
        )))).developer_secret
    assert made.per_user_rate_limit.requests == 60 and made.per_user_rate_limit.period.seconds == 60
    assert made.secret_hint == "••••0123"
    for limit, field in [
        (pb.RateLimit(requests=5, period=duration_pb2.Duration(seconds=0)), "period"),
        (pb.RateLimit(requests=5, period=duration_pb2.Duration(seconds=90000)), "period"),
        (pb.RateLimit(requests=-1), "requests"),
    ]:
        with pytest.raises(InvalidArgumentError) as err:
            await admin.connections.SetDeveloperSecret(pb.SetDeveloperSecretRequest(
                developer_secret=pb.DeveloperSecret(
                    name=f"{org}/developerSecrets/weather", secret="0123456789abcdef0123",
                    per_user_rate_limit=limit)))
        assert err.value.metadata["field"].endswith(field)
    with pytest.raises(InvalidArgumentError):  # not a developer-secret connector
        await admin.connections.SetDeveloperSecret(pb.SetDeveloperSecretRequest(
            developer_secret=pb.DeveloperSecret(name=f"{org}/developerSecrets/gmail", secret="abc")))
    await admin.connections.DeleteDeveloperSecret(
        pb.DeleteDeveloperSecretRequest(name=f"{org}/developerSecrets/weather"))
    with pytest.raises(NotFoundError):
        await admin.connections.GetDeveloperSecret(
            pb.GetDeveloperSecretRequest(name=f"{org}/developerSecrets/weather"))


# ------------------------------------------------------------------ cross-org and bad input

ADDRESSED: dict[str, Callable[[Names], Any]] = {
    "ListConnectors": lambda n: pb.ListConnectorsRequest(parent=n["org"]),
    "UpdateConnectorConfig": lambda n: pb.UpdateConnectorConfigRequest(
        name=f"{n['org']}/connectors/gmail", enabled=False),
    "SetOAuthApp": lambda n: pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
        name=f"{n['org']}/oauthApps/gmail", client_id="probe", client_secret="probe-secret")),
    "GetOAuthApp": lambda n: pb.GetOAuthAppRequest(name=f"{n['org']}/oauthApps/gmail"),
    "DeleteOAuthApp": lambda n: pb.DeleteOAuthAppRequest(name=f"{n['org']}/oauthApps/gmail"),
    "SetDeveloperSecret": lambda n: pb.SetDeveloperSecretRequest(developer_secret=pb.DeveloperSecret(
        name=f"{n['org']}/developerSecrets/weather", secret="probe-secret")),
    "GetDeveloperSecret": lambda n: pb.GetDeveloperSecretRequest(
        name=f"{n['org']}/developerSecrets/weather"),
    "DeleteDeveloperSecret": lambda n: pb.DeleteDeveloperSecretRequest(
        name=f"{n['org']}/developerSecrets/weather"),
    "CreateConnectedAccount": lambda n: pb.CreateConnectedAccountRequest(
        parent=n["org"], connected_account=pb.ConnectedAccount(connector="stripe", owner=n["user"])),
    "GetConnectedAccount": lambda n: pb.GetConnectedAccountRequest(name=n["account"]),
    "ListConnectedAccounts": lambda n: pb.ListConnectedAccountsRequest(parent=n["org"]),
    "UpdateConnectedAccount": lambda n: pb.UpdateConnectedAccountRequest(
        name=n["account"], label="probe", make_default=True),
    "DeleteConnectedAccount": lambda n: pb.DeleteConnectedAccountRequest(name=n["account"]),
    "SetApiKey": lambda n: pb.SetApiKeyRequest(name=n["account"], api_key="rk_test_probe0123456789"),
    "GetAuthorizationLink": lambda n: pb.GetAuthorizationLinkRequest(name=n["account"]),
    "RefreshConnectedAccount": lambda n: pb.RefreshConnectedAccountRequest(
        name=n["account"], force=True),
}


def test_every_connection_rpc_is_covered_here() -> None:
    service = pb.DESCRIPTOR.services_by_name["ConnectionService"]
    streaming = {"WatchConnectedAccounts"}  # test_watch_connected_accounts_is_org_scoped
    assert {m.name for m in service.methods} == set(ADDRESSED) | streaming


def _missing(names: Names) -> Names:
    return {k: v.rsplit("/", 1)[0] + "/" + uuid.uuid4().hex for k, v in names.items()}


def _error(exc: AgentAuthError) -> tuple[Any, ...]:
    return (exc.code, exc.reason, exc.domain, exc.message, dict(exc.metadata))


@pytest.mark.parametrize("rpc", sorted(ADDRESSED))
async def test_cross_org_probe_is_indistinguishable_from_missing(harness: Any, rpc: str) -> None:
    _, a, _ = await harness.new_org("A")
    org_b, b, _ = await harness.new_org("B")
    b_names = await vault_names(harness, org_b, b)
    before = await harness.snapshot()
    with pytest.raises(NotFoundError) as cross:
        await getattr(a.connections, rpc)(ADDRESSED[rpc](b_names))
    with pytest.raises(NotFoundError) as missing:
        await getattr(a.connections, rpc)(ADDRESSED[rpc](_missing(b_names)))
    assert _error(cross.value) == _error(missing.value)
    assert org_b.split("/")[1] not in cross.value.message
    assert await harness.snapshot() == before


async def test_malformed_input_is_invalid_argument_and_changes_nothing(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    names = await vault_names(harness, org, admin)
    acct = names["account"]
    bad = [
        ("ListConnectors", pb.ListConnectorsRequest(parent="orgs/x")),
        ("UpdateConnectorConfig", pb.UpdateConnectorConfigRequest(name=f"{org}/connectors/Gmail!")),
        ("UpdateConnectorConfig", pb.UpdateConnectorConfigRequest(
            name=f"{org}/connectors/gmail", enabled=True, enabled_tools=["slack.post"])),
        ("SetOAuthApp", pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name=f"{org}/oauthApps/gmail", client_id="", client_secret="s"))),
        ("SetOAuthApp", pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name=f"{org}/oauthApps/gmail", client_id="c", client_secret="bad secret"))),
        ("SetOAuthApp", pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name=f"{org}/oauthApps/stripe", client_id="c", client_secret="s"))),
        ("SetOAuthApp", pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name=f"{org}/oauthApp/gmail", client_id="c", client_secret="s"))),
        ("GetOAuthApp", pb.GetOAuthAppRequest(name="oauthApps/")),
        ("SetDeveloperSecret", pb.SetDeveloperSecretRequest(developer_secret=pb.DeveloperSecret(
            name=f"{org}/developerSecrets/weather", secret=""))),
        ("CreateConnectedAccount", pb.CreateConnectedAccountRequest(
            parent=org, connected_account=pb.ConnectedAccount(connector="nope", owner=names["user"]))),
        ("CreateConnectedAccount", pb.CreateConnectedAccountRequest(
            parent=org, connected_account=pb.ConnectedAccount(connector="weather", owner=names["user"]))),
        ("CreateConnectedAccount", pb.CreateConnectedAccountRequest(
            parent=org, connected_account=pb.ConnectedAccount(connector="stripe", owner=names["agent"]))),
        ("CreateConnectedAccount", pb.CreateConnectedAccountRequest(
            parent=org, connected_account=pb.ConnectedAccount(
                connector="stripe", owner=names["user"], label="x\n"))),
        ("CreateConnectedAccount", pb.CreateConnectedAccountRequest(
            parent=org, connected_account=pb.ConnectedAccount(
                connector="stripe", owner=names["user"].rsplit("/", 1)[0] + "/" + "0" * 32))),
        ("GetConnectedAccount", pb.GetConnectedAccountRequest(name=acct + "x")),
        ("ListConnectedAccounts", pb.ListConnectedAccountsRequest(parent=org, connector="Bad!")),
        ("ListConnectedAccounts", pb.ListConnectedAccountsRequest(parent=org, page_token="garbage")),
        ("UpdateConnectedAccount", pb.UpdateConnectedAccountRequest(name=acct, label="a" * 101)),
        ("SetApiKey", pb.SetApiKeyRequest(name=acct, api_key="rk_test_\x07bell0123456789")),
    ]
    before = await harness.snapshot()
    for rpc, request in bad:
        with pytest.raises(InvalidArgumentError) as err:
            await getattr(admin.connections, rpc)(request)
        assert err.value.reason in (
            "INVALID_ARGUMENT", "INVALID_RESOURCE_NAME", "FIELD_REQUIRED", "FIELD_TOO_LONG",
            "INVALID_PAGE_TOKEN"), (rpc, err.value.reason)
    assert await harness.snapshot() == before
    # Accounts of an unknown-to-the-org owner kind.
    with pytest.raises(InvalidArgumentError):
        await new_account(admin, org, "orgs/x/users/y", "stripe")
    _ = apb  # admin protos are used through harness.populate


# ------------------------------------------------------------------ the account feed


async def _read(call: Any) -> Any:
    import asyncio

    import grpc

    msg = await asyncio.wait_for(call.read(), 10)
    assert msg is not grpc.aio.EOF
    return msg


async def test_watch_connected_accounts_streams_state_changes(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    names = await harness.populate(org, admin)
    await enable(admin, org, "stripe")
    early = await new_account(admin, org, names["user"], "stripe")  # before the watch: not sent
    call = admin.connections.WatchConnectedAccounts(pb.WatchConnectedAccountsRequest(parent=org))
    try:
        assert (await _read(call)).synced
        acct = await new_account(admin, org, names["user"], "stripe", label="watched")
        created = await _read(call)
        assert created.connected_account == acct.name and created.connector == "stripe"
        assert created.state == pb.CONNECTED_ACCOUNT_STATE_PENDING
        assert created.state_reason == "AWAITING_API_KEY" and created.cursor
        await admin.connections.SetApiKey(
            pb.SetApiKeyRequest(name=acct.name, api_key="rk_test_WatchedKey0123456"))
        active = await _read(call)
        assert active.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
        # A rotation is not a state change: no event. A deletion is.
        await admin.connections.SetApiKey(
            pb.SetApiKeyRequest(name=acct.name, api_key="rk_test_WatchedKey0123457"))
        await admin.connections.DeleteConnectedAccount(
            pb.DeleteConnectedAccountRequest(name=acct.name))
        gone = await _read(call)
        assert gone.deleted and gone.connected_account == acct.name
    finally:
        call.cancel()
    # Resume from the first event's cursor: the rest again, in order.
    resumed = admin.connections.WatchConnectedAccounts(
        pb.WatchConnectedAccountsRequest(parent=org, cursor=created.cursor))
    try:
        again = [await _read(resumed) for _ in range(3)]
        assert [(m.state, m.deleted) for m in again[:2]] == [
            (pb.CONNECTED_ACCOUNT_STATE_ACTIVE, False),
            (pb.CONNECTED_ACCOUNT_STATE_UNSPECIFIED, True),  # deleted: no state any more
        ]
        assert again[2].synced
    finally:
        resumed.cancel()
    assert early.name != acct.name


async def test_watch_connected_accounts_is_org_scoped(harness: Any) -> None:
    import asyncio

    org, admin, _ = await harness.new_org()
    other, other_admin, _ = await harness.new_org("Other")
    call = other_admin.connections.WatchConnectedAccounts(
        pb.WatchConnectedAccountsRequest(parent=org))
    # The SDK types stream failures as it does unary ones, from read() and
    # from async iteration alike.
    with pytest.raises(NotFoundError):
        await asyncio.wait_for(call.read(), 10)
    again = other_admin.connections.WatchConnectedAccounts(
        pb.WatchConnectedAccountsRequest(parent=org))
    with pytest.raises(NotFoundError) as iterated:
        async with asyncio.timeout(10):
            _ = [m async for m in again]
    assert iterated.value.reason == "RESOURCE_NOT_FOUND"
    mine = admin.connections.WatchConnectedAccounts(pb.WatchConnectedAccountsRequest(parent=org))
    cursor = (await _read(mine)).cursor
    mine.cancel()
    foreign = harness.platform.connections.WatchConnectedAccounts(
        pb.WatchConnectedAccountsRequest(parent=other, cursor=cursor))
    with pytest.raises(InvalidArgumentError):
        await asyncio.wait_for(foreign.read(), 10)


def test_the_server_refuses_to_start_with_a_bad_catalog(tmp_path: Path) -> None:
    from control_plane.app import StartupError, load_connectors
    from control_plane.config import Settings

    (tmp_path / "gmail.yaml").write_text(yaml.safe_dump(_bad_gmail()))
    with pytest.raises(StartupError, match=r"gmail.yaml: \(top level\).*colour"):
        load_connectors(Settings(data_dir=tmp_path, connectors_dir=str(tmp_path)))
    assert len(load_connectors(Settings(data_dir=tmp_path))) == len(load_catalog())


def _bad_gmail() -> dict:
    from control_plane.connectors.loader import CATALOG_DIR

    doc = yaml.safe_load((CATALOG_DIR / "gmail.yaml").read_bytes())
    doc["colour"] = 1
    return doc


async def test_deleting_a_user_deletes_its_connected_accounts(harness: Any) -> None:
    org, admin, _ = await harness.new_org()
    names = await harness.populate(org, admin)
    await enable(admin, org, "stripe")
    mine = await new_account(admin, org, names["user"], "stripe")
    await admin.connections.SetApiKey(pb.SetApiKeyRequest(name=mine.name, api_key="rk_test_Owned0123456789"))
    theirs = await new_account(admin, org, names["sa"], "stripe")
    await admin.admin.DeleteUser(apb.DeleteUserRequest(name=names["user"]))
    with pytest.raises(NotFoundError):
        await admin.connections.GetConnectedAccount(pb.GetConnectedAccountRequest(name=mine.name))
    still = await admin.connections.GetConnectedAccount(pb.GetConnectedAccountRequest(name=theirs.name))
    assert still.connected_account.name == theirs.name
    rows = await harness.snapshot()
    assert all(r[1] != mine.name.rsplit("/", 1)[1] for r in rows["connected_accounts"])
