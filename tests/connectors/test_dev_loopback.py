"""AGENTAUTH_DEV_LOOPBACK_CONNECTORS: a custom connector naming plain-http loopback URLs
loads with the switch on the embedded database (development), is refused without the
switch (the file and path named) and refused on PostgreSQL (not development)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.app import StartupError, load_connectors
from control_plane.config import Settings
from control_plane.connectors.dev_loopback import is_loopback_http
from control_plane.connectors.loader import CATALOG_DIR
from control_plane.connectors.sandbox_routing import rewrite_for_sandbox

BASE = "http://127.0.0.1:9"


def write_loopback_gmail(directory: Path, base: str = BASE) -> None:
    """The shipped Gmail definition with every https:// URL moved onto ``base``."""
    text = (CATALOG_DIR / "gmail.yaml").read_text().replace("https://", base + "/")
    (directory / "gmail.yaml").write_text(text)


def settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path, connectors_dir=str(tmp_path), **kw)


def test_loopback_urls_load_with_the_switch_in_development(tmp_path: Path) -> None:
    write_loopback_gmail(tmp_path)
    gmail = load_connectors(settings(tmp_path, dev_loopback_connectors=True)).connectors["gmail"]
    assert gmail.auth.authorize_url.startswith(BASE + "/accounts.google.com/")
    assert gmail.auth.token_url.startswith(BASE + "/oauth2.googleapis.com/")
    assert all(t.http.url.startswith(BASE + "/") for t in gmail.tools)
    # Sandbox mode keeps them: they already name the developer's own server.
    assert rewrite_for_sandbox(gmail, "http://127.0.0.1:7").auth.token_url == gmail.auth.token_url


def test_loopback_urls_are_refused_without_the_switch(tmp_path: Path) -> None:
    write_loopback_gmail(tmp_path)
    with pytest.raises(StartupError) as err:
        load_connectors(settings(tmp_path))
    assert "gmail.yaml: auth.token_url:" in str(err.value)
    assert "AGENTAUTH_DEV_LOOPBACK_CONNECTORS=1" in str(err.value)


def test_the_switch_is_refused_outside_development(tmp_path: Path) -> None:
    write_loopback_gmail(tmp_path)
    on_postgres = settings(
        tmp_path,
        dev_loopback_connectors=True,
        database_url="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    )
    with pytest.raises(StartupError, match="development only"):
        load_connectors(on_postgres)


def test_the_switch_reads_its_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTAUTH_DEV_LOOPBACK_CONNECTORS", "1")
    assert Settings(data_dir=tmp_path).dev_loopback_connectors
    monkeypatch.delenv("AGENTAUTH_DEV_LOOPBACK_CONNECTORS")
    assert not Settings(data_dir=tmp_path).dev_loopback_connectors


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost.evil.example/token",
        "http://127.0.0.1@evil.example/token",
        "http://127.0.0.1:80@evil.example/token",
        "http://10.0.0.1:8080/token",
        "http://127.0.0.2/token",
    ],
)
def test_only_loopback_http_is_admitted_even_with_the_switch(tmp_path: Path, url: str) -> None:
    assert not is_loopback_http(url)
    doc = yaml.safe_load((CATALOG_DIR / "gmail.yaml").read_bytes())
    doc["auth"]["token_url"] = url
    (tmp_path / "gmail.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(StartupError, match="gmail.yaml: auth.token_url:"):
        load_connectors(settings(tmp_path, dev_loopback_connectors=True))
