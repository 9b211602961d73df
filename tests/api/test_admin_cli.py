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
from tests.api.tool_helpers import key_world

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
CANARY_CLIENT_SECRET = "canary-cli-client-secret-7c1d"
CANARY_DEV_SECRET = "canary-cli-dev-secret-3e9a"


class Cli:
    def __init__(self, harness: Any, key_file: Path) -> None:
        self.target = harness.target
        self.key_file = key_file

    async def run(
        self,
        *argv: str,
        key_file: Path | None = None,
        token_file: Path | None = None,
        err: io.StringIO | None = None,
    ) -> tuple[int, str, str]:
        """``token_file``: a tool command's access token, instead of the admin key.
        ``err``: where stderr goes, for a test that reads it while the command runs."""
        out, err = io.StringIO(), err or io.StringIO()
        credential = (
            ["--token-file", str(token_file)]
            if token_file
            else ["--admin-key-file", str(key_file or self.key_file)]
        )
        args = [*argv, "--target", self.target, *credential]
        code = await asyncio.to_thread(main, args, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    async def json(
        self, *argv: str, key_file: Path | None = None, token_file: Path | None = None
    ) -> Any:
        code, out, err = await self.run(
            *argv, "--output", "json", key_file=key_file, token_file=token_file
        )
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
        await _trust_workload(cli, k8s, backend, "backend", sa, harness.servers.tokens.issuer)
        await _trust_workload(cli, k8s, worker, "worker", sa, "https://api.example")
        exchanged = await _backend_exchange(cli, k8s, tmp_path, org)
    backend_key = tmp_path / "backend.token"
    backend_key.write_text(exchanged)
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


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


async def _service_account_token(cli: Cli, harness: Any, tmp_path: Path, org: str) -> Path:
    """A file holding a service-account token of ``org`` (an agent's workload token,
    exchanged), which any admin of the org can revoke."""
    sa = (await cli.json("service-account", "list", org))["serviceAccounts"][0]["name"]
    agent = (await cli.json("agent", "create", org, "--display-name", "backend"))["agent"]["name"]
    async with KubernetesIssuer() as k8s:
        await _trust_workload(cli, k8s, agent, "backend", sa, harness.servers.tokens.issuer)
        exchanged = await _backend_exchange(cli, k8s, tmp_path, org)
    path = tmp_path / "sa.token"
    path.write_text(exchanged)
    return path


async def _trust_workload(
    cli: Cli, k8s: KubernetesIssuer, agent: str, name: str, sa: str, audience: str
) -> None:
    """Through the CLI: ``agent`` is the pod tokens of service account agents/NAME,
    acting as ``sa`` with scope read for ``audience``."""
    await cli.json(
        "trust-policy", "create", agent, "--kind", "workload-token", "--issuer", k8s.issuer,
        "--discovery-url", k8s.issuer + "/.well-known/openid-configuration",
        "--audience", "agentauth", "--subject", f"system:serviceaccount:agents:{name}",
        "--service-accounts", sa, "--scopes", "read", "--audiences", audience,
    )  # fmt: skip


async def _backend_exchange(cli: Cli, k8s: KubernetesIssuer, tmp_path: Path, org: str) -> str:
    """Through the CLI: the agents/backend pod token exchanged for an access token."""
    workload = tmp_path / "workload.jwt"
    workload.write_text(k8s.issue(namespace="agents", service_account="backend", audiences=["agentauth"]))
    exchanged = await cli.json(
        "token", "exchange", "--grant-type", TOKEN_EXCHANGE, "--subject-token-file", str(workload),
        "--subject-token-type", JWT_TYPE, "--organization", org,
    )  # fmt: skip
    return str(exchanged["accessToken"])


async def _stderr_says(err: io.StringIO, text: str, task: asyncio.Task[Any]) -> str:
    """Waits until a command running in ``task`` has written ``text`` to stderr."""
    async with asyncio.timeout(30):
        while text not in err.getvalue():
            assert not task.done(), (task.result(), err.getvalue())
            await asyncio.sleep(0.05)
    return err.getvalue()


async def test_watch_revocations_prints_a_revocation_as_it_happens(
    harness: Any, cli: Cli, tmp_path: Path
) -> None:
    org = (await cli.json("org", "create", "--display-name", "Watched"))["organization"]["name"]
    token = await _service_account_token(cli, harness, tmp_path, org)
    err = io.StringIO()
    watching = asyncio.ensure_future(
        cli.run("token", "watch-revocations", org, "--max-events", "1", "--timeout", "30", err=err)
    )
    # The stream is open and its (empty) backlog delivered: what comes now is live.
    await _stderr_says(err, "synced", watching)
    code, out, revoke_err = await cli.run("token", "revoke", "--token-file", str(token))
    assert (code, out) == (0, "done\n"), revoke_err
    code, out, err_text = await watching
    assert code == 0, err_text
    header, row = out.splitlines()
    assert header.split() == ["JTIS", "REVOKE_TIME", "EXPIRE_TIME"]
    assert row.split()[0] == _jti(token.read_text())
    # Where to pick up again, for the next watch.
    [resume] = [line for line in err_text.splitlines() if line.startswith("resume: --cursor ")]
    cursor = resume.split()[-1]

    # From the start, as JSON lines: the backlog holds it (and a synced mark).
    code, out, err_text = await cli.run(
        "token", "watch-revocations", org, "--max-events", "1", "--output", "json", "--timeout", "30"
    )
    assert code == 0, err_text
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["jtis"] for e in events if not e.get("synced")] == [[_jti(token.read_text())]]
    # After the cursor there is nothing: --timeout ends the watch, still with 0.
    code, out, err_text = await cli.run("token", "watch-revocations", org, "--cursor", cursor, "--timeout", "1")
    assert (code, out) == (0, ""), err_text
    assert "synced" in err_text


async def test_account_watch_prints_an_account_created_meanwhile(cli: Cli) -> None:
    org = (await cli.json("org", "create", "--display-name", "Accounts"))["organization"]["name"]
    user = (await cli.json("user", "create", org, "--external-id", "dana"))["user"]["name"]
    await cli.json("connector", "enable", f"{org}/connectors/gmail")
    err = io.StringIO()
    watching = asyncio.ensure_future(
        cli.run("account", "watch", org, "--max-events", "1", "--timeout", "30", err=err)
    )
    # Without a cursor a watch starts now: the account is made once it is live.
    await _stderr_says(err, "synced", watching)
    account = (
        await cli.json("account", "create", org, "--connector", "gmail", "--owner", user)
    )["connectedAccount"]["name"]
    code, out, err_text = await watching
    assert code == 0, err_text
    header, row = out.splitlines()
    assert header.split() == ["CONNECTED_ACCOUNT", "CONNECTOR", "STATE", "STATE_REASON", "DELETED", "EVENT_TIME"]
    assert row.split()[:3] == [account, "gmail", "pending"] and row.split()[4] == "no"


async def test_ctrl_c_ends_a_watch_with_exit_0_and_no_traceback(cli: Cli) -> None:
    import os
    import signal
    import sys

    org = (await cli.json("org", "create", "--display-name", "Interrupted"))["organization"]["name"]
    # The child imports the same agentauth as this test does.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentauth.cli", "account", "watch", org,
        "--target", cli.target, "--admin-key-file", str(cli.key_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            line = await proc.stderr.readline()
        assert line.startswith(b"synced"), line
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and out == b""


async def test_a_watch_piped_into_a_reader_that_stops_ends_quietly(
    harness: Any, cli: Cli, tmp_path: Path
) -> None:
    """``agentauth token watch-revocations ... | head -1``: the next event after the
    reader left ends the watch with status 0, not a BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    org = (await cli.json("org", "create", "--display-name", "Piped"))["organization"]["name"]
    token = await _service_account_token(cli, harness, tmp_path, org)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentauth.cli", "token", "watch-revocations", org, "-o", "json",
         "--target", cli.target, "--admin-key-file", str(cli.key_file)],
        stdout=write_end, stderr=subprocess.PIPE, env=env,
    )
    os.close(write_end)
    try:
        # The first line is the synced mark (JSON lines carry them): the reader
        # takes it and goes away.
        first = await asyncio.wait_for(asyncio.to_thread(os.read, read_end, 4096), 30)
        assert json.loads(first.splitlines()[0])["synced"] is True
        os.close(read_end)
        code, _, err = await cli.run("token", "revoke", "--token-file", str(token))
        assert code == 0, err
        returncode = await asyncio.to_thread(proc.wait, 30)
        stderr = proc.stderr.read() if proc.stderr else b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert returncode == 0, stderr
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr


LIST_CUSTOMERS = "stripe.list_customers"
REFUND = "stripe.create_refund"


async def test_tool_list_and_execute_with_an_access_token(
    harness: Any, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with key_world(harness, "stripe") as w:
        token = tmp_path / "agent.token"
        token.write_text(await w.delegated())
        # Nothing connected yet: the tool's error, one line, exit 1.
        code, out, err = await cli.run("tool", "execute", LIST_CUSTOMERS, token_file=token)
        assert (code, out) == (1, "")
        assert err.count("\n") == 1 and err.startswith("agentauth: tool execute: NOT_CONNECTED: ")
        code, out, err = await cli.run("tool", "execute", LIST_CUSTOMERS, "-o", "json", token_file=token)
        assert code == 1 and json.loads(out)["error"]["code"] == "TOOL_ERROR_CODE_NOT_CONNECTED"
        assert not w.provider.requests

        account = await w.set_api_key(w.provider.new_key())
        listed = await cli.json("tool", "list", "--connector", "stripe", token_file=token)
        tools = {t["name"]: t for t in listed["tools"]}
        assert {LIST_CUSTOMERS, REFUND} <= set(tools)
        assert tools[LIST_CUSTOMERS]["connection"] == {
            "state": "TOOL_CONNECTION_STATE_CONNECTED", "connectedAccount": account
        }
        code, out, err = await cli.run("tool", "list", token_file=token)
        assert code == 0, err
        header, *rows = out.splitlines()
        # The connection's fields are columns of their own, not a JSON blob.
        assert header.split()[0] == "NAME" and "CONNECTION.STATE" in header.split()
        [row] = [r.split() for r in rows if r.split()[0] == LIST_CUSTOMERS]
        assert "connected" in row and account in row

        args = tmp_path / "args.json"
        args.write_text(json.dumps({"limit": 2}))
        code, out, err = await cli.run("tool", "execute", LIST_CUSTOMERS, "--args", f"@{args}", token_file=token)
        assert code == 0, err
        data = json.loads(out)
        assert data["object"] == "list"
        customers = sorted(w.provider.profile.customers, key=lambda c: -c["created"])
        assert [c["id"] for c in data["data"]] == [c["id"] for c in customers[:2]]
        assert w.provider.requests[-1].tool == LIST_CUSTOMERS
        assert w.provider.requests[-1].query.get("limit") == "2"
        progress = err.splitlines()
        assert progress[0].startswith("accepted: action ") and account in progress[0]
        assert progress[-1].startswith("result: upstream status 200")

        # Progress arrives on stderr as it happens: here, a retry after a 503.
        w.provider.faults.next_api_status = 503
        w.provider.faults.retry_after = 0
        code, out, err = await cli.run("tool", "execute", LIST_CUSTOMERS, token_file=token)
        assert code == 0, err
        retry = err.splitlines()[1]
        assert retry.startswith("retry scheduled: attempt 2 in ") and retry.endswith("s (UPSTREAM_UNAVAILABLE)")

        final = await cli.json("tool", "execute", LIST_CUSTOMERS, "--args", '{"limit": 1}', token_file=token)
        assert final["result"]["upstreamStatus"] == 200
        assert len(final["result"]["data"]["data"]) == 1

        # The token from stdin, or from AGENTAUTH_TOKEN.
        monkeypatch.setattr("sys.stdin", io.StringIO(token.read_text() + "\n"))
        out_io, err_io = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(
            main, ["tool", "list", "--token-file", "-", "--target", cli.target, "-o", "json"],
            stdout=out_io, stderr=err_io,
        )
        assert code == 0, err_io.getvalue()
        assert {t["name"] for t in json.loads(out_io.getvalue())["tools"]} >= {LIST_CUSTOMERS}
        monkeypatch.setenv("AGENTAUTH_TOKEN", token.read_text())
        out_io = io.StringIO()
        code = await asyncio.to_thread(main, ["tool", "list", "--target", cli.target], stdout=out_io)
        assert code == 0 and LIST_CUSTOMERS in out_io.getvalue()
        # An admin key runs no tools.
        monkeypatch.delenv("AGENTAUTH_TOKEN")
        code, out, err = await cli.run("tool", "list", token_file=cli.key_file)
        assert (code, out) == (1, "") and err.startswith("agentauth: tool list: ")
        assert harness.platform_key not in err


def test_a_chunked_result_is_put_back_together() -> None:
    """Results over the server's chunk threshold (256 KiB) come as output_chunk pieces;
    the CLI prints the whole data, and --output json a result that holds it."""
    from agentauth.cli._streams import ToolCallFailed, execute_tool
    from agentauth.v1 import tool_pb2 as pb

    text = json.dumps({"rows": ["x" * 10] * 3}).encode()

    class Call:
        def __init__(self, messages: list[pb.ExecuteToolResponse]) -> None:
            self.messages, self.cancelled = messages, False

        async def __aiter__(self) -> Any:
            for m in self.messages:
                yield m

        def cancel(self) -> None:
            self.cancelled = True

    def stream(*pieces: bytes) -> list[pb.ExecuteToolResponse]:
        return [
            pb.ExecuteToolResponse(accepted=pb.ToolCallAccepted(action_id="a1")),
            *[pb.ExecuteToolResponse(output_chunk=pb.OutputChunk(data=p)) for p in pieces],
            pb.ExecuteToolResponse(result=pb.ToolResult(chunked=True, upstream_status=200)),
        ]

    class Tools:
        def __init__(self, call: Call) -> None:
            self.call = call

        def ExecuteTool(self, request: Any, timeout: float) -> Call:  # noqa: N802 - the stub's name
            return self.call

    for output in ("table", "json"):
        out, err = io.StringIO(), io.StringIO()
        tools = Tools(Call(stream(text[:7], text[7:20], text[20:])))
        asyncio.run(execute_tool(tools, pb.ExecuteToolRequest(tool="t.x"), None, output, out, err))
        got = json.loads(out.getvalue())
        assert (got if output == "table" else got["result"]["data"]) == {"rows": ["x" * 10] * 3}
        assert tools.call.cancelled
    with pytest.raises(ToolCallFailed, match="not complete JSON"):
        asyncio.run(execute_tool(Tools(Call(stream(text[:7]))), pb.ExecuteToolRequest(), None, "table",
                                 io.StringIO(), io.StringIO()))
    with pytest.raises(ToolCallFailed, match="without a result or an error"):
        asyncio.run(execute_tool(Tools(Call(stream(text)[:2])), pb.ExecuteToolRequest(), None, "table",
                                 io.StringIO(), io.StringIO()))


async def test_a_held_tool_call_waits_for_tool_confirm(
    harness: Any, cli: Cli, tmp_path: Path
) -> None:
    async with key_world(harness, "stripe") as w:
        await w.set_api_key(w.provider.new_key())
        await cli.json("tool-policy", "create", w.org, "--tool", REFUND, "--confirm")
        agent = tmp_path / "agent.token"
        agent.write_text(await w.delegated())
        # The backend decides, with its service-account token (confirmations:decide).
        backend = tmp_path / "backend.token"
        backend.write_text(await w.sa_token("backend"))

        async def held(intent: str) -> tuple[asyncio.Task[Any], io.StringIO, str]:
            err = io.StringIO()
            task = asyncio.ensure_future(
                cli.run("tool", "execute", REFUND, "--args", json.dumps({"payment_intent": intent}),
                        token_file=agent, err=err)
            )
            text = await _stderr_says(err, "confirmation required: ", task)
            return task, err, text.split("confirmation required: ", 1)[1].split()[0]

        task, _, name = await held("pi_denied")
        shown = await cli.json("tool", "confirmation", name, key_file=backend)
        assert shown["confirmation"]["state"] == "TOOL_CONFIRMATION_STATE_PENDING"
        assert shown["confirmation"]["tool"] == REFUND
        decided = await cli.json("tool", "confirm", name, "--approver", w.user, "--no-approve",
                                 "--reason", "not this one", key_file=backend)
        assert decided["confirmation"]["state"] == "TOOL_CONFIRMATION_STATE_DENIED"
        code, out, err = await task
        assert (code, out) == (1, "")
        assert err.splitlines()[-1].startswith("agentauth: tool execute: CONFIRMATION_DENIED: ")
        assert not w.provider.requests

        task, _, name = await held("pi_approved")
        code, out, err = await cli.run("tool", "confirm", name, "--approver", w.user, "--approve",
                                       key_file=backend)
        assert code == 0, err
        assert dict(line.split(None, 1) for line in out.splitlines())["state"] == "approved"
        code, out, err = await task
        assert code == 0, err
        assert json.loads(out)["object"] == "refund"
        assert [r.tool for r in w.provider.requests] == [REFUND]


async def test_shared_flags_before_the_group(
    harness: Any, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = (await cli.json("org", "create", "--display-name", "Global flags"))["organization"]["name"]
    common = ["--target", cli.target, "--admin-key-file", str(cli.key_file)]

    async def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(main, list(argv), stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    code, out, err = await run(*common, "--output", "json", "--timeout", "5", "org", "get", org)
    assert code == 0, err
    assert json.loads(out)["organization"]["name"] == org
    # After the verb wins over before the group.
    code, out, err = await run(*common, "-o", "json", "org", "get", org, "-o", "table")
    assert code == 0, err
    assert dict(line.split(None, 1) for line in out.splitlines())["name"] == org
    # The environment still supplies what is not given, before or after.
    monkeypatch.setenv("AGENTAUTH_TARGET", cli.target)
    monkeypatch.setenv("AGENTAUTH_ADMIN_KEY", harness.platform_key)
    code, out, err = await run("-o", "json", "org", "get", org)
    assert code == 0, err
    assert json.loads(out)["organization"]["name"] == org
    code, out, err = await run("--target", "127.0.0.1:1", "--timeout", "2", "org", "get", org)
    assert code == 1 and "UNAVAILABLE" in err


def test_top_level_help_shows_the_shared_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTAUTH_TARGET", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 127.0.0.1:50051)", "(default: table)", "(default: 10.0;", "(default: unset)"):
        assert default in text, default
    assert text.count("(default:") == 4  # target, admin key, output, timeout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tool", "execute", "stripe.list_customers", "--args", "[1]"], "not a JSON object"),
        (["tool", "execute", "stripe.list_customers", "--args", "@/nonexistent/a"], "cannot read"),
        (["tool", "list"], "AGENTAUTH_TOKEN"),
        (["tool", "list", "--admin-key-file", "/k"], "unrecognized arguments"),
    ],
)
def test_tool_usage_errors_exit_2(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTAUTH_TOKEN", raising=False)
    if argv[1] == "execute":
        monkeypatch.setenv("AGENTAUTH_TOKEN", "x")
    out, err = io.StringIO(), io.StringIO()
    assert main([*argv, "--target", "127.0.0.1:1"], stdout=out, stderr=err) == 2
    assert out.getvalue() == "" and err.getvalue().count("\n") == 1 and message in err.getvalue()


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
        # A unary call's deadline; a tool call's bound is the server's; a watch has none.
        timeout = {
            "": "(default: 10.0)", "tool": "(default: unset: the server's 60)",
            "watch": "(default: unset: until Ctrl-C)",
        }[cmd.stream]
        for default in ("(default: 127.0.0.1:50051)", "(default: table)", timeout):
            assert default in text, (cmd.group, cmd.verb, default)
        # Every option says its default (most: unset) but the switches and the
        # required ones.
        options = {w.rstrip(",") for w in text.split() if w.startswith("--") and not w.startswith("--no-")}
        options -= {"--help", "--tls", "--all"}
        assert text.count("(default:") == len(options) - len(cmd.required), (cmd.group, cmd.verb)


def test_every_admin_connection_token_and_tool_rpc_has_a_command() -> None:
    """Streams included: the Watch RPCs and ExecuteTool, each read the way its kind is."""
    from agentauth.cli._commands import COMMANDS, TOOL_STREAM, WATCH
    from agentauth.v1 import admin_pb2, connection_pb2, token_pb2, tool_pb2

    modules = {"admin": admin_pb2, "connections": connection_pb2, "tokens": token_pb2, "tools": tool_pb2}
    services = {
        "admin": "AdminService", "connections": "ConnectionService", "tokens": "TokenService",
        "tools": "ToolService",
    }
    covered = {f"agentauth.v1.{services[c.service]}.{c.rpc}" for c in COMMANDS}
    methods = {
        method.full_name: method
        for key, module in modules.items()
        for method in module.DESCRIPTOR.services_by_name[services[key]].methods
    }
    assert set(methods) - covered == set()
    assert covered <= set(methods)
    for c in COMMANDS:
        method = methods[f"agentauth.v1.{services[c.service]}.{c.rpc}"]
        expected = (WATCH if c.rpc.startswith("Watch") else TOOL_STREAM) if method.server_streaming else ""
        assert c.stream == expected, (c.group, c.verb)


def test_every_hint_names_a_real_field() -> None:
    from agentauth.cli._commands import HINTS
    from agentauth.v1 import admin_pb2

    pool = admin_pb2.DESCRIPTOR.pool  # the default pool: every agentauth.v1 module
    for key in HINTS:
        message, field = key.split(".")
        assert field in pool.FindMessageTypeByName(f"agentauth.v1.{message}").fields_by_name, key
