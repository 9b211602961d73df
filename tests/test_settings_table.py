"""The README's settings table and the settings the code reads agree, both ways."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from control_plane import config

ROOT = Path(__file__).resolve().parents[1]
# Direct reads outside Settings (the KEK itself, the worker count).
_DIRECT_READ = re.compile(r"""environ(?:\.get\(|\[)\s*["']AGENTAUTH_([A-Z0-9_]+)["']""")
_TABLE_NAME = re.compile(r"AGENTAUTH_([A-Z0-9_{},]+)")


def _expand(pattern: str) -> set[str]:
    """``RATE_LIMIT_{ORG,PRINCIPAL}_{RPS,BURST}`` -> the four names."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [p.split(",") if i % 2 else [p] for i, p in enumerate(parts)]
    return {"".join(c) for c in itertools.product(*choices)}


def _code_settings(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    read: set[str] = set()
    real = config._env

    def recording(name: str, default: str) -> str:
        read.add(name)
        return real(name, default)

    monkeypatch.setattr(config, "_env", recording)
    config.Settings()  # every field's default_factory asks _env for its variable
    for path in (ROOT / "control_plane").rglob("*.py"):
        read |= set(_DIRECT_READ.findall(path.read_text()))
    return read


def _readme_settings() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Running it", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            for pattern in _TABLE_NAME.findall(first_cell):
                names |= _expand(pattern.rstrip(","))
    return names


def test_the_table_expands_brace_patterns() -> None:
    assert _expand("RATE_LIMIT_{ORG,PRINCIPAL}_{RPS,BURST}") == {
        "RATE_LIMIT_ORG_RPS",
        "RATE_LIMIT_ORG_BURST",
        "RATE_LIMIT_PRINCIPAL_RPS",
        "RATE_LIMIT_PRINCIPAL_BURST",
    }


def test_every_setting_the_code_reads_is_in_the_readme_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = _code_settings(monkeypatch) - _readme_settings()
    assert not missing, f"settings missing from README.md's table: {sorted(missing)}"


def test_every_setting_in_the_readme_table_is_read_by_the_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stale = _readme_settings() - _code_settings(monkeypatch)
    assert not stale, f"README.md's table names settings nothing reads: {sorted(stale)}"
