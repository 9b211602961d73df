"""The ``agentauth`` admin CLI driven through ``main()`` against an in-process server.

Each command runs in a worker thread (``main`` runs its own event loop, as the
console script does) while the server keeps serving on the test's loop.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from agentauth.cli import main

from control_plane.sandbox import KubernetesIssuer

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
CANARY_CLIENT_SECRET = "canary-cli-client-secret-7c1d"
CANARY_DEV_SECRET = "canary-cli-dev-secret-3e9a"


class Cli:
    def __init__(self, harness: Any, key_file: Path) -> None:
        self.target = harness.target
        self.key_file = key_file

    async def run(self, *argv: str, key_file: Path | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        args = [*argv, "--target", self.target, "--admin-key-file", str(key_file or self.key_file)]
        code = await asyncio.to_thread(main, args, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    async def json(self, *argv: str, key_file: Path | None = None) -> Any:
        code, out, err = await self.run(*argv, "--output", "json", key_file=key_file)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(harness: Any, tmp_path: Path) -> Cli:
    key_file = tmp_path / "platform.key"
    key_file.write_text(harness.platform_key + "\n")
    return Cli(harness, key_file)


async def test_org_user_agent_trust_policy_as_json_and_table(cli: Cli, tmp_path: Path) -> None:
    org = (await cli.json("org", "create", "--display-name", "Acme CLI"))["organization"]["name"]
    assert org.startswith("orgs/")
    user = (
        await cli.json("user", "create", org, "--external-id", "alice", "--email", "a@acme.example",
                       "--groups", "eng", "--groups", "ops")
    )["user"]
    assert user["groups"] == ["eng", "ops"]
    agent = (await cli.json("agent", "create", org, "--display-name", "Triage bot"))["agent"]["name"]
    sa = (await cli.json("service-account", "list", org))["serviceAccounts"][0]["name"]
    policy = (
        await cli.json(
            "trust-policy", "create", agent, "--kind", "workload-token",
            "--issuer", "https://k8s.example",
            "--discovery-url", "https://k8s.example/.well-known/openid-configuration",
            "--audience", "agentauth",
            "--subject", "system:serviceaccount:agents:triage", "--service-accounts", sa,
            "--scopes", "read", "--audiences", "https://api.example", "--claim-equals", "ns=agents",
        )
    )["trustPolicy"]
    assert policy["kind"] == "TRUST_POLICY_KIND_WORKLOAD_TOKEN"
    assert policy["claimEquals"] == {"ns": "agents"}
    listed = await cli.json("trust-policy", "list", agent)
    assert [p["name"] for p in listed["trustPolicies"]] == [policy["name"]]

    users = await cli.json("user", "list", org)
    assert [u["externalId"] for u in users["users"]] == ["alice"]
    code, out, err = await cli.run("user", "list", org)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[:3] == ["NAME", "EXTERNAL_ID", "EMAIL"]
    assert row.split()[:4] == [user["name"], "alice", "a@acme.example", "active"]
    assert "eng,ops" in row

    code, out, _ = await cli.run("agent", "get", agent)
    assert code == 0
    assert {"name": agent, "display_name": "Triage bot", "state": "active"}.items() <= {
        line.split(None, 1)[0]: line.split(None, 1)[1] for line in out.splitlines()
    }.items()

    code, out, _ = await cli.run("user", "suspend", user["name"])
    assert code == 0 and "suspended" in out
    code, out, _ = await cli.run("agent", "disable", agent)
    assert code == 0 and "disabled" in out

    for external_id in ("bob", "carol"):
        await cli.json("user", "create", org, "--external-id", external_id)
    first = await cli.json("user", "list", org, "--page-size", "2")
    assert len(first["users"]) == 2 and first["nextPageToken"]
    code, _, err = await cli.run("user", "list", org, "--page-size", "2")
    # The table goes to stdout; where the next page starts, to stderr (tokens are
    # sealed afresh on every call, so only the shape is compared).
    assert code == 0 and err.startswith("more: --page-token ") and err.count("\n") == 1
    second = await cli.json("user", "list", org, "--page-size", "2", "--page-token", first["nextPageToken"])
    assert len(second["users"]) == 1 and "nextPageToken" not in second
    every = await cli.json("user", "list", org, "--page-size", "2", "--all")
    assert [u["externalId"] for u in every["users"]] == [
        u["externalId"] for u in first["users"] + second["users"]
    ]
    assert "nextPageToken" not in every

    updated = await cli.json("org", "update", org, "--display-name", "Acme 2", "--max-delegation-depth", "3")
    assert updated["organization"]["displayName"] == "Acme 2"
    assert updated["organization"]["maxDelegationDepth"] == 3
    limited = await cli.json(
        "org", "update", org, "--requests-per-second", "50", "--burst", "100",
        "--principal-requests-per-second", "5", "--principal-burst", "10",
    )
    assert limited["organization"]["rateLimits"] == {
        "requestsPerSecond": 50.0, "burst": 100, "principalRequestsPerSecond": 5.0, "principalBurst": 10
    }
    assert limited["organization"]["displayName"] == "Acme 2"


async def test_connector_oauth_app_account_and_link(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = (await cli.json("org", "create", "--display-name", "Conn"))["organization"]["name"]
    user = (await cli.json("user", "create", org, "--external-id", "bob"))["user"]["name"]
    connector = (await cli.json("connector", "enable", f"{org}/connectors/gmail"))["connector"]
    assert connector["enabled"] is True
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CANARY_CLIENT_SECRET + "\n")
    code, out, err = await cli.run(
        "oauth-app", "set", f"{org}/oauthApps/gmail", "--client-id", "cli-client",
        "--client-secret-file", str(secret_file),
    )
    assert code == 0, err
    assert any(line.split() == ["client_secret_set", "yes"] for line in out.splitlines())
    assert CANARY_CLIENT_SECRET not in out
    account = (
        await cli.json("account", "create", org, "--connector", "gmail", "--owner", user, "--label", "work")
    )["connectedAccount"]
    assert account["state"] == "CONNECTED_ACCOUNT_STATE_PENDING"
    link = await cli.json("account", "link", account["name"])
    assert link["url"].startswith("http")
    code, out, _ = await cli.run("account", "list", org)
    assert code == 0 and account["name"] in out and "pending" in out
    code, out, _ = await cli.run("account", "delete", account["name"])
    assert (code, out) == (0, "done\n")
    code, _, err = await cli.run("account", "get", account["name"])
    assert code == 1
    assert err.count("\n") == 1 and "NOT_FOUND" in err.upper()
    disabled = (await cli.json("connector", "disable", f"{org}/connectors/gmail"))["connector"]
    assert disabled.get("enabled", False) is False

    monkeypatch.setattr("sys.stdin", io.StringIO(CANARY_DEV_SECRET + "\n"))
    code, out, err = await cli.run(
        "developer-secret", "set", f"{org}/developerSecrets/weather", "--secret-file", "-",
        "--requests", "10", "--period", "60",
    )
    assert code == 0, err
    assert CANARY_DEV_SECRET not in out
    shown = dict(line.split(None, 1) for line in out.splitlines())
    assert shown["per_user_rate_limit.requests"] == "10"
    assert shown["per_user_rate_limit.period"] == "60s"
    assert shown["secret_hint"].endswith(CANARY_DEV_SECRET[-4:])


async def test_mint_then_revoke_all_for_the_user(
    harness: Any, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = (await cli.json("org", "create", "--display-name", "Tokens"))["organization"]["name"]
    user = (await cli.json("user", "create", org, "--external-id", "carol"))["user"]["name"]
    sa = (await cli.json("service-account", "list", org))["serviceAccounts"][0]["name"]
    backend = (await cli.json("agent", "create", org, "--display-name", "backend"))["agent"]["name"]
    worker = (await cli.json("agent", "create", org, "--display-name", "worker"))["agent"]["name"]
    async with KubernetesIssuer() as k8s:
        for agent, name, audiences in (
            (backend, "backend", [harness.servers.tokens.issuer]),
            (worker, "worker", ["https://api.example"]),
        ):
            await cli.json(
                "trust-policy", "create", agent, "--kind", "workload-token", "--issuer", k8s.issuer,
                "--discovery-url", k8s.issuer + "/.well-known/openid-configuration",
                "--audience", "agentauth", "--subject", f"system:serviceaccount:agents:{name}",
                "--service-accounts", sa, "--scopes", "read",
                *[a for aud in audiences for a in ("--audiences", aud)],
            )
        workload = tmp_path / "workload.jwt"
        workload.write_text(k8s.issue(namespace="agents", service_account="backend", audiences=["agentauth"]))
        exchanged = await cli.json(
            "token", "exchange", "--grant-type", TOKEN_EXCHANGE, "--subject-token-file", str(workload),
            "--subject-token-type", JWT_TYPE, "--organization", org,
        )
    backend_key = tmp_path / "backend.token"
    backend_key.write_text(exchanged["accessToken"])
    minted = await cli.json(
        "token", "mint", "--user", user, "--agent", worker, "--scope", "read",
        "--audience", "https://api.example", key_file=backend_key,
    )
    delegated = tmp_path / "delegated.token"
    delegated.write_text(minted["accessToken"])
    assert (await cli.json("token", "introspect", "--token-file", str(delegated)))["active"] is True
    # One token, read from stdin: a secret never needs to be on the command line.
    other = await cli.json(
        "token", "mint", "--user", user, "--agent", worker, "--scope", "read",
        "--audience", "https://api.example", key_file=backend_key,
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(other["accessToken"] + "\n"))
    code, out, err = await cli.run("token", "revoke", "--token-file", "-")
    assert (code, out) == (0, "done\n"), err
    # A whole delegation chain, by its txn claim.
    chained = await cli.json(
        "token", "mint", "--user", user, "--agent", worker, "--scope", "read",
        "--audience", "https://api.example", key_file=backend_key,
    )
    payload = chained["accessToken"].split(".")[1]
    txn = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["txn"]
    by_chain = await cli.json("token", "revoke-all", org, "--chain", txn)
    assert by_chain["revokedCount"] == "1"  # int64 is a string in proto3 JSON
    revoked = await cli.json("token", "revoke-all", org, "--user", user)
    assert int(revoked["revokedCount"]) >= 1
    assert (await cli.json("token", "introspect", "--token-file", str(delegated))).get("active", False) is False


async def test_fields_without_a_flag_come_from_request_json(cli: Cli, tmp_path: Path) -> None:
    org = (await cli.json("org", "create", "--display-name", "Policies"))["organization"]["name"]
    body = tmp_path / "rule.json"
    body.write_text(json.dumps({
        "toolPolicyRule": {
            "tool": "github.create_issue",
            "constraints": [{"value": "{/owner}/{/repo}", "allow": ["acme/api"]}],
        }
    }))
    rule = (
        await cli.json("tool-policy", "create", org, "--request-json", f"@{body}",
                       "--description", "flags win", "--groups", "eng")
    )["toolPolicyRule"]
    assert rule["constraints"] == [{"value": "{/owner}/{/repo}", "allow": ["acme/api"]}]
    assert (rule["description"], rule["groups"]) == ("flags win", ["eng"])


def test_control_characters_in_answers_do_not_reach_the_terminal() -> None:
    """The server refuses them in display names, but not every string it returns
    is typed by us (a provider's state_reason, provider_metadata); ESC [ 2 J in
    one would clear the operator's screen."""
    from agentauth.cli._output import render
    from agentauth.v1 import connection_pb2

    evil = "Evil\x1b[2J\x9b31m"
    response = connection_pb2.GetConnectedAccountResponse(
        connected_account=connection_pb2.ConnectedAccount(name="orgs/o/connectedAccounts/a", state_reason=evil)
    )
    out, err = io.StringIO(), io.StringIO()
    render(response, "table", out, err)
    assert "\x1b" not in out.getvalue() and "\x9b" not in out.getvalue()
    assert "Evil\\x1b[2J\\x9b31m" in out.getvalue()
    out = io.StringIO()
    render(response, "json", out, err)  # not a terminal: the text as is, JSON-escaped
    assert json.loads(out.getvalue())["connectedAccount"]["stateReason"] == evil


async def test_a_refused_call_is_one_line_with_exit_1(cli: Cli, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("aa_wrongkey_0123456789abcdef")
    code, out, err = await cli.run("org", "list", key_file=wrong)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("agentauth: org list: ")
    assert "wrongkey" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["user", "create"], "PARENT"),
        (["trust-policy", "create", "orgs/x", "--kind", "nope"], "invalid choice"),
        (["oauth-app", "set", "orgs/x/oauthApps/gmail", "--client-secret-file", "/nonexistent/s"], "cannot read"),
        (["org", "update", "orgs/x"], "nothing to change"),
    ],
)
async def test_usage_errors_exit_2_before_any_call(cli: Cli, argv: list[str], message: str) -> None:
    code, out, err = await cli.run(*argv)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and message in err


def test_no_key_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTAUTH_ADMIN_KEY", raising=False)
    err = io.StringIO()
    assert main(["org", "list"], stderr=err) == 2
    assert "AGENTAUTH_ADMIN_KEY" in err.getvalue()


def test_every_command_has_help_with_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentauth.cli._commands import COMMANDS

    monkeypatch.delenv("AGENTAUTH_TARGET", raising=False)
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([cmd.group, cmd.verb, "--help"])
        assert exit_.value.code == 0
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for default in ("(default: 127.0.0.1:50051)", "(default: table)", "(default: 10.0)"):
            assert default in text, (cmd.group, cmd.verb, default)
        # Every option says its default (most: unset) but the switches and the
        # required ones.
        options = {w for w in text.split() if w.startswith("--") and not w.startswith("--no-")}
        options -= {"--help", "--tls", "--all"}
        assert text.count("(default:") == len(options) - len(cmd.required), (cmd.group, cmd.verb)


# Streams have no command: a CLI call is one request and one answer.
NOT_COMMANDS = {
    "agentauth.v1.ConnectionService.WatchConnectedAccounts",
    "agentauth.v1.TokenService.WatchRevocations",
}


def test_every_admin_connection_and_token_rpc_has_a_command() -> None:
    from agentauth.cli._commands import COMMANDS
    from agentauth.v1 import admin_pb2, connection_pb2, token_pb2

    modules = {"admin": admin_pb2, "connections": connection_pb2, "tokens": token_pb2}
    services = {"admin": "AdminService", "connections": "ConnectionService", "tokens": "TokenService"}
    covered = {f"agentauth.v1.{services[c.service]}.{c.rpc}" for c in COMMANDS}
    every = {
        method.full_name
        for key, module in modules.items()
        for method in module.DESCRIPTOR.services_by_name[services[key]].methods
    }
    assert every - covered - NOT_COMMANDS == set()
    assert covered <= every


def test_every_hint_names_a_real_field() -> None:
    from agentauth.cli._commands import HINTS
    from agentauth.v1 import admin_pb2

    pool = admin_pb2.DESCRIPTOR.pool  # the default pool: every agentauth.v1 module
    for key in HINTS:
        message, field = key.split(".")
        assert field in pool.FindMessageTypeByName(f"agentauth.v1.{message}").fields_by_name, key
