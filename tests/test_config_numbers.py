"""A numeric setting with a bad value names its variable, and never echoes the value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.config import Settings

SOURCE = (Path(__file__).parents[1] / "control_plane" / "config.py").read_text()
NUMERIC = sorted(set(re.findall(r'_(?:int|float)\("([A-Z_]+)"', SOURCE)))
RATE = [
    f"RATE_LIMIT_{kind}_{what}"
    for kind in ("ORG", "PRINCIPAL", "ANONYMOUS")
    for what in ("RPS", "BURST")
]


def test_the_list_is_not_empty() -> None:
    assert "JWKS_CACHE_TTL_SECONDS" in NUMERIC and len(NUMERIC) >= 10


@pytest.mark.parametrize("name", NUMERIC + RATE)
def test_a_bad_number_names_its_variable(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"AGENTAUTH_{name}", "abc-canary")
    with pytest.raises(ValueError) as err:
        Settings()
    assert str(err.value).startswith(f"AGENTAUTH_{name} must be")
    assert "canary" not in str(err.value)


def test_the_cli_says_it_in_one_line(tmp_path: Path) -> None:
    env = {"AGENTAUTH_JWKS_CACHE_TTL_SECONDS": "abc", "AGENTAUTH_DATA_DIR": str(tmp_path / "d")}
    done = subprocess.run(
        [sys.executable, "-m", "control_plane", "serve"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}, **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "control-plane: AGENTAUTH_JWKS_CACHE_TTL_SECONDS must be an integer"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()  # nothing created
