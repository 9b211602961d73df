"""Issue 13: a database URL we cannot run, or a database we cannot reach, is one
line naming the cause, never a traceback, and never echoes the URL's password."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from control_plane import logs
from control_plane.cli import main
from control_plane.storage.db import unreachable_reason

CANARY = "pw-canary-31337"


@pytest.fixture(autouse=True)
def _quiet_logs():
    yield
    logs.configure(level=logging.WARNING)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and CANARY not in out + err
    return code, err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", [("keys", "list"), ("migrate",), ("serve",)])
@pytest.mark.parametrize(
    "url", ["garbage", f"mysql://root:{CANARY}@127.0.0.1/agentauth", f"{CANARY}://x"]
)
def test_an_unsupported_url_says_which_are(
    url: str, command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "d"
    code, err = _run(capsys, *command, "--data-dir", str(data_dir), "--database-url", url)
    assert code == 2
    [line] = err.strip().splitlines()
    assert "postgresql+psycopg://" in line and "sqlite+aiosqlite:///" in line, line
    if url.startswith("mysql"):
        assert "mysql:// is not supported" in line
    assert not data_dir.exists()


@pytest.mark.parametrize("command", [("keys", "list"), ("migrate",)])
def test_a_closed_port_says_connection_refused(
    command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql+psycopg://postgres:{CANARY}@127.0.0.1:{_closed_port()}/agentauth"
    code, err = _run(capsys, *command, "--data-dir", str(tmp_path), "--database-url", url)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(
        "control-plane: database unreachable: connection refused"
    ), err


def test_plain_postgres_scheme_is_read_as_psycopg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgres://postgres:{CANARY}@127.0.0.1:{_closed_port()}/agentauth"
    code, err = _run(capsys, "keys", "list", "--data-dir", str(tmp_path), "--database-url", url)
    assert code == 2 and "connection refused" in err, err


def test_a_missing_database_says_so(pg_server, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    if pg_server is None:
        pytest.skip("PostgreSQL unreachable")
    url = make_url(pg_server.url).set(password=CANARY, database="agentauth_no_such_database")
    rendered = url.render_as_string(hide_password=False)
    for command in (("keys", "list"), ("migrate",)):
        code, err = _run(
            capsys, *command, "--data-dir", str(tmp_path), "--database-url", rendered
        )
        assert code == 2
        assert "database unreachable: the database does not exist" in err, err


# What libpq and SQLite say (as data: the local server trusts every login, so a
# rejected password cannot be produced here) -> the phrase the operator reads.
VECTORS = {
    "refused": (
        'connection failed: connection to server at "10.0.0.5", port 5433 failed: '
        "Connection refused\n\tIs the server running on that host and accepting "
        "TCP/IP connections?",
        "connection refused",
    ),
    "no database": (
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
        'FATAL:  database "agentauth" does not exist',
        "the database does not exist",
    ),
    "bad password": (
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
        f'FATAL:  password authentication failed for user "{CANARY}"',
        "authentication failed",
    ),
    "no such role": (
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
        f'FATAL:  role "{CANARY}" does not exist',
        "authentication failed",
    ),
    "password missing": (
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
        "fe_sendauth: no password supplied",
        "authentication failed",
    ),
    "unknown host": (
        "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
        "the host name does not resolve",
    ),
    "timeout": ("connection timeout expired", "the connection timed out"),
}


@pytest.mark.parametrize("case", sorted(VECTORS))
def test_the_cause_is_named_and_nothing_of_the_server_text(case: str) -> None:
    text, expected = VECTORS[case]
    reason = unreachable_reason(psycopg.OperationalError(text))
    assert reason is not None and reason.startswith(expected), reason
    assert CANARY not in reason and "10.0.0.5" not in reason


def test_a_bug_is_not_dressed_up_as_unreachable() -> None:
    assert unreachable_reason(KeyError("x")) is None
