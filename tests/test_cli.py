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
    assert _run(capsys, "keys", "list", "--data-dir", str(tmp_path))[0] == 0
    code, out, _ = _run(capsys, "keys", "rotate-signing", "--data-dir", str(tmp_path))
    assert code == 0
    new_kid = re.search(r"new signing key (\S+):", out).group(1)  # type: ignore[union-attr]
    code, out, _ = _run(capsys, "keys", "list", "--data-dir", str(tmp_path))
    lines = out.strip().splitlines()
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
