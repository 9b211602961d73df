"""The seams hold: storage is the only place SQL is built, org scopes come from
authenticated paths, and the declared import contracts fail on a bad change.

The import contracts themselves (``[tool.importlinter]`` in pyproject.toml) run
in ``.ci/run`` with ``lint-imports``; these tests add what a graph of imports
cannot see, and prove the contracts are not vacuous by breaking them on purpose
in a copy of the package.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "control_plane"

# Who may obtain an org scope without an authenticated principal, and why.
TO_AUTHENTICATE = {
    # each reads the org's own records to verify a credential that names the org
    "control_plane/services/api_keys.py",  # an org admin key
    "control_plane/services/own_tokens.py",  # one of our access tokens
    "control_plane/services/connect_flow.py",  # a connect link / an OAuth state
    "control_plane/services/grants/workload_exchange.py",  # a workload token
    "control_plane/services/grants/client_credentials.py",  # an RFC 7523 assertion
    "control_plane/services/grants/sub_delegation.py",  # a delegated token of ours
    "control_plane/services/grants/user_assertion.py",  # an IdP assertion
}
FOR_PLATFORM_JOB = {
    "control_plane/vault/barrier.py",  # KEK rotation re-wraps every org's data keys
    "control_plane/vault/keepalive.py",  # keep-alive refreshes idle accounts of every org
    "control_plane/services/tool_execution.py",  # prunes every org's expired tool actions
}


def _modules(outside: str = "control_plane/storage") -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(outside) or rel.startswith("control_plane/sandbox"):
            continue
        yield rel, ast.parse(path.read_text(), rel)


def storage_violations(module: ast.Module) -> list[str]:
    """Statements or sessions used outside storage: a unit of work's session, or
    anything executing SQL."""
    found = []
    for node in ast.walk(module):
        if isinstance(node, ast.Attribute):
            owner_is_self = isinstance(node.value, ast.Name) and node.value.id == "self"
            if node.attr in ("_session", "sync_session") and not owner_is_self:
                found.append(f"line {node.lineno}: reaches into a unit of work's session")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "scalar", "scalars", "stream")
        ):
            # Called, not merely read: a log handler's ``.stream`` is not SQL.
            found.append(f"line {node.lineno}: executes SQL ({node.func.attr})")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "sqlalchemy",
            "psycopg",
            "aiosqlite",
        ):
            found.append(f"line {node.lineno}: imports {node.module}")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("sqlalchemy", "psycopg", "aiosqlite"):
                    found.append(f"line {node.lineno}: imports {alias.name}")
    return found


def scope_calls(module: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Attribute) and node.attr in ("to_authenticate", "for_platform_job"):
            names.add(node.attr)
        if isinstance(node, ast.Name) and node.id in ("_for_principal", "_GRANT"):
            names.add(node.id)
    return names


def test_no_module_outside_storage_builds_or_runs_sql() -> None:
    problems = {rel: v for rel, mod in _modules() if (v := storage_violations(mod))}
    assert problems == {}


def test_the_storage_check_catches_a_service_that_queries_a_tenant_table() -> None:
    bad = ast.parse(
        "from sqlalchemy import select\n"
        "from control_plane.storage.models import User\n"
        "async def leak(tx, uid):\n"
        "    return (await tx._session.execute(select(User).where(User.id == uid))).scalar()\n"
    )
    found = storage_violations(bad)
    assert any("imports sqlalchemy" in f for f in found)
    assert any("session" in f for f in found)
    assert any("executes SQL" in f for f in found)


def test_org_scopes_without_a_principal_come_only_from_the_named_paths() -> None:
    seen: dict[str, set[str]] = {}
    for rel, mod in _modules(outside="control_plane/domain"):
        calls = scope_calls(mod)
        if calls:
            seen[rel] = calls
    assert {rel for rel, c in seen.items() if "to_authenticate" in c} == TO_AUTHENTICATE
    assert {rel for rel, c in seen.items() if "for_platform_job" in c} == FOR_PLATFORM_JOB
    assert not any(c & {"_for_principal", "_GRANT"} for c in seen.values())


def test_an_org_scope_cannot_be_made_from_a_bare_id() -> None:
    from control_plane.domain.scope import OrgScope
    from control_plane.storage.db import Database

    with pytest.raises(TypeError):
        OrgScope("0" * 32, object(), "forged")  # type: ignore[arg-type]
    db = Database("sqlite+aiosqlite:///:memory:")

    async def open_with_a_string() -> None:
        async with db.org_tx("0" * 32):  # type: ignore[arg-type]
            pass

    import asyncio

    with pytest.raises(TypeError):
        asyncio.run(open_with_a_string())


# ------------------------------------------------------------------ the import contracts


def _lint_copy(tmp_path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on a copy of the package with ``extra`` files added."""
    copy = tmp_path / "repo"
    shutil.copytree(PACKAGE, copy / "control_plane", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "clients" / "python" / "agentauth",
        copy / "agentauth",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    for rel, text in extra.items():
        (copy / rel).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(copy)}
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache"], cwd=copy, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_the_contracts_hold_on_the_tree_and_break_on_a_bad_change(tmp_path: Path) -> None:
    clean = _lint_copy(tmp_path / "clean", {})
    assert clean.returncode == 0, clean.stdout + clean.stderr
    bad = _lint_copy(
        tmp_path / "bad",
        {
            # a service issuing its own statement on a tenant table
            "control_plane/services/_bad_query.py": (
                "from sqlalchemy import select\n"
                "from control_plane.storage.models import User\n"
                "QUERY = select(User)\n"
            ),
            # a use case calling the provider's token endpoint itself
            "control_plane/services/_bad_vault.py": (
                "from control_plane.vault.oauth_client import request_token\n"
            ),
            # storage reaching up into the use cases: a layer violation (and a cycle)
            "control_plane/storage/_bad_layer.py": (
                "from control_plane.services.context import ServiceContext\n"
            ),
            # the transport importing the emulators
            "control_plane/api/_bad_sandbox.py": "import control_plane.sandbox\n",
        },
    )
    assert bad.returncode != 0
    out = bad.stdout
    for contract in (
        "only storage imports the database libraries BROKEN",
        "raw credential plumbing stays inside the vault BROKEN",
        "layers: import direction is downward only BROKEN",
        "the production server does not import the sandbox BROKEN",
    ):
        assert contract in out, out
