"""Issue 13, start-up: a refusal to start is one clean line that says what to do."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.cli import main

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def _quiet_logs():
    # main() points the logs at this test's captured stderr; point them back after.
    yield
    from control_plane import logs

    logs.configure(level=logging.WARNING)


def _serve(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    return subprocess.run(
        [sys.executable, "-m", "control_plane", "serve", "--data-dir", str(tmp_path / "d"), *argv],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_grpc_port_in_use_is_one_line_and_closes_what_it_opened(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(tmp_path, "--grpc-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"control-plane: cannot listen for gRPC on 127.0.0.1:{port}: Address already in use"
    )


async def test_an_external_database_without_admin_key_says_how_to_create_one(
    tmp_path: Path,
) -> None:
    # An external database (here a migrated SQLite file given by URL, so not the
    # embedded dev database) gets no bootstrap key; the start says what to run.
    from control_plane import logs
    from control_plane.app import migrate, prepare
    from control_plane.config import Settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'external.db'}"
    await migrate(url)
    settings = Settings(data_dir=tmp_path / "d", database_url=url)
    stream, out = io.StringIO(), io.StringIO()
    logs.configure(stream=stream)
    await prepare(settings, out=out)
    assert out.getvalue() == ""  # no key created or printed
    assert "control-plane admin create-key" in stream.getvalue()
    # Once a key exists, nothing more is said.
    argv = ["admin", "create-key", "--data-dir", str(tmp_path / "d"), "--database-url", url]
    assert await asyncio.to_thread(main, argv) == 0
    logs.configure(stream=(later := io.StringIO()))
    await prepare(settings, out=out)
    assert "admin create-key" not in later.getvalue()


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080", ":8080"])
def test_a_wildcard_bind_needs_an_issuer(
    listen: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTAUTH_ISSUER", raising=False)
    code = main(["serve", "--data-dir", str(tmp_path / "d"), "--http-listen", listen])
    _, err = capsys.readouterr()
    assert code == 2
    [line] = err.strip().splitlines()
    assert "set AGENTAUTH_ISSUER" in line and listen in line, line
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_a_wildcard_bind_with_an_issuer_passes_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from control_plane.config import Settings

    monkeypatch.setenv("AGENTAUTH_ISSUER", "https://auth.example.com")
    Settings(http_listen="0.0.0.0:8080").check_issuer()  # no error
    monkeypatch.delenv("AGENTAUTH_ISSUER")
    Settings(http_listen="127.0.0.1:8080").check_issuer()


def test_a_data_dir_that_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    code = main(["keys", "rotate-signing", "--data-dir", str(tmp_path / "a-file" / "d")])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"control-plane: cannot create the data directory {tmp_path / 'a-file' / 'd'}: Not a directory"
    )
