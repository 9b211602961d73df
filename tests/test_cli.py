"""``control-plane`` commands, run in-process against a clean data dir."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from control_plane import logs
from control_plane.cli import main


@pytest.fixture(autouse=True)
def _quiet_logs():
    yield
    logs.configure(level=logging.WARNING)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_key_prints_key_alone_on_last_line(tmp_path: Path, capsys) -> None:
    code, out, err = _run(capsys, "admin", "create-key", "--data-dir", str(tmp_path))
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert re.fullmatch(r"aa_plat_[0-9a-f]{32}_[A-Za-z0-9_-]{43}", key)
    assert key not in err
    code, out2, _ = _run(capsys, "admin", "create-key", "--data-dir", str(tmp_path))
    assert out2.strip().splitlines()[-1] != key


def test_rotate_kek_rewraps_everything_and_shows_progress(tmp_path: Path, capsys) -> None:
    assert _run(capsys, "admin", "create-key", "--data-dir", str(tmp_path))[0] == 0
    kek = json.loads((tmp_path / "kek.json").read_text())
    assert kek["active"] == "file:1"
    code, out, err = _run(capsys, "keys", "rotate-kek", "--data-dir", str(tmp_path))
    assert code == 0, err
    assert "re-wrapped 1/1 data keys" in err
    assert "active file:2" in out and "1 re-wrapped" in out
    kek = json.loads((tmp_path / "kek.json").read_text())
    assert kek["active"] == "file:2" and set(kek["keys"]) == {"file:1", "file:2"}
    # The server still starts (the signing keys sealed before still open).
    code, out, err = _run(capsys, "keys", "list", "--data-dir", str(tmp_path))
    assert code == 0 and "active" in out


def test_signing_key_rotation_and_taint(tmp_path: Path, capsys) -> None:
    assert _run(capsys, "admin", "create-key", "--data-dir", str(tmp_path))[0] == 0
    code, out, _ = _run(capsys, "keys", "rotate-signing", "--data-dir", str(tmp_path))
    assert code == 0
    new_kid = re.search(r"new signing key (\S+):", out).group(1)  # type: ignore[union-attr]
    # What is true: the CLI writes the database; servers publish at their next reload.
    assert "published now" not in out
    assert "running servers publish it in JWKS at their next key reload" in out
    assert "AGENTAUTH_KEY_RELOAD_SECONDS" in out
    code, out, _ = _run(capsys, "keys", "list", "--data-dir", str(tmp_path))
    header, *lines = out.strip().splitlines()
    assert header.split() == ["KID", "ALG", "STATE", "IN", "JWKS", "PUBLISHED", "FROM", "SIGNS", "FROM"]
    assert len(lines) == 2
    assert any(line.startswith(new_kid) and "pending" in line for line in lines)
    code, out, _ = _run(capsys, "keys", "taint", new_kid, "--data-dir", str(tmp_path))
    assert code == 0
    code, out, _ = _run(capsys, "keys", "list", "--data-dir", str(tmp_path))
    assert any(line.startswith(new_kid) and "tainted" in line for line in out.splitlines())
    code, _, err = _run(capsys, "keys", "taint", "no-such-kid", "--data-dir", str(tmp_path))
    assert code != 0


def test_bad_listen_address_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code, _, err = _run(capsys, "serve", "--data-dir", str(tmp_path), "--grpc-listen", "nope")
    assert code == 2 and "HOST:PORT" in err


def test_sandbox_subcommand_forwards_to_the_emulators(capsys) -> None:  # type: ignore[no-untyped-def]
    from control_plane.cli import main

    with pytest.raises(SystemExit) as done:
        main(["sandbox", "oauth", "--help"])
    assert done.value.code == 0
    assert "connector" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        main(["sandbox", "oauth", "not_a_connector"])
    assert bad.value.code == 2


@pytest.mark.parametrize("command", [("keys", "list"), ("keys", "taint", "kid-1")])
def test_looking_at_keys_creates_nothing(
    command: tuple[str, ...], tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without --data-dir: the per-user default (platformdirs reads XDG_DATA_HOME).
    monkeypatch.delenv("AGENTAUTH_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    code, out, err = _run(capsys, *command)
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith(f"control-plane: nothing to {command[1]}: no database at "), line
    assert "--data-dir" in line
    assert not (tmp_path / "xdg").exists()


def test_looking_at_keys_of_an_empty_postgres_creates_nothing(pg_server, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    if pg_server is None:
        pytest.skip("PostgreSQL unreachable")
    url = pg_server.new_database()
    assert _run(capsys, "migrate", "--database-url", url)[0] == 0
    for _ in range(2):  # a first call that had created keys would make the second list them
        code, out, err = _run(capsys, "keys", "list", "--database-url", url, "--data-dir", str(tmp_path / "d"))
        assert code == 2 and out == ""
        assert "nothing to list: this database holds no keys yet" in err
    assert not (tmp_path / "d").exists()  # no KEK file either
