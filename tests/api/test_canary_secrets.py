"""CWE-532 / OWASP Logging: canary secrets never reach logs, errors or responses."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from agentauth import AgentAuthError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2

from control_plane import logs
from control_plane.vault.barrier import PLATFORM


@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    logs.configure(level=logging.DEBUG, stream=stream)
    yield stream
    logs.configure(level=logging.WARNING)


async def test_canaries_absent_everywhere(harness, captured_logs, monkeypatch) -> None:
    canary_plain = f"CANARY-{uuid.uuid4()}"
    kek_text = (harness.data_dir / "kek.json").read_text()
    kek_keys = list(json.loads(kek_text)["keys"].values())
    org, client, org_key = await harness.new_org()
    secrets = [harness.platform_key, org_key, canary_plain, *kek_keys]

    # A sealed plaintext goes through the barrier and back.
    blob = await harness.runtime.barrier.seal(
        PLATFORM, "canary", "row", "field", canary_plain.encode()
    )
    assert canary_plain.encode() not in blob
    assert (
        await harness.runtime.barrier.open(PLATFORM, "canary", "row", "field", blob)
        == canary_plain.encode()
    )

    responses: list[str] = []
    errors: list[str] = []

    async def attempt(coro) -> None:  # type: ignore[no-untyped-def]
        try:
            responses.append(str(await coro))
        except AgentAuthError as exc:
            errors.append(f"{exc!s} {exc!r} {exc.metadata}")

    # Success paths.
    await attempt(client.admin.ListApiKeys(pb.ListApiKeysRequest(parent=org)))
    await attempt(
        client.admin.CreateUser(pb.CreateUserRequest(parent=org, user=pb.User(external_id="c")))
    )
    await attempt(harness.platform.tokens.GetJwks(token_pb2.GetJwksRequest()))
    # Error paths: secrets as bad credentials and as field values.
    wrong = org_key[:-4] + ("AAAA" if not org_key.endswith("AAAA") else "BBBB")
    await attempt(harness.client(wrong).admin.ListOrganizations(pb.ListOrganizationsRequest()))
    await attempt(
        harness.client(canary_plain).admin.ListOrganizations(pb.ListOrganizationsRequest())
    )
    await attempt(
        client.admin.CreateUser(
            pb.CreateUserRequest(parent=org, user=pb.User(external_id=org_key + " x"))
        )
    )
    await attempt(client.admin.GetUser(pb.GetUserRequest(name=org_key)))
    await attempt(
        client.admin.CreateApiKey(
            pb.CreateApiKeyRequest(parent=org_key, api_key=pb.ApiKey(display_name="k"))
        )
    )

    # An unexpected exception carrying a secret in its message: INTERNAL, and the
    # logged traceback is scrubbed.
    from control_plane.services.users import UserService

    async def boom(*_a, **_k):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"leaked {org_key} and Bearer {harness.platform_key}")

    monkeypatch.setattr(UserService, "get", boom)
    names = await harness.populate(org, client)
    await attempt(client.admin.GetUser(pb.GetUserRequest(name=names["user"])))
    assert any("INTERNAL" in e for e in errors)

    text = captured_logs.getvalue()
    assert "rpc" in text and "RuntimeError" in text  # the logs really were captured
    for secret in secrets:
        assert secret not in text, "secret in logs"
        for blob_text in responses + errors:
            assert secret not in blob_text, "secret in an RPC response or error"


def test_redactor_masks_secret_shapes_and_keys() -> None:
    event = logs.redact(
        None,
        "info",
        {
            "event": "x aa_org_" + "a" * 32 + "_" + "b" * 32 + "_" + "c" * 43,
            "client_secret": "hunter2",
            "nested": {"refresh_token": "r", "ok": "Bearer abc.def"},
            "kek_version": "file:1",
            "jwt": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        },
    )
    flat = json.dumps(event)
    for leaked in ("hunter2", '"r"', "abc.def", "cccc", "eyJhbGci"):
        assert leaked not in flat
    assert event["kek_version"] == "file:1"
