"""The shipped connector catalog, and how the loader refuses a bad definition."""

from __future__ import annotations

import base64
import email
from email.policy import default as default_policy
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from control_plane.connectors.authorize import authorization_url, requested_scopes
from control_plane.connectors.loader import (
    CATALOG_DIR,
    ConnectorDefinitionError,
    load_catalog,
    parse_definition,
)
from control_plane.connectors.model import Connector
from control_plane.connectors.strategies import gmail_rfc822

# The list: 19 providers (Google counted three times) and two developer-secret tools.
REQUIRED = {
    "gmail", "google_calendar", "google_drive", "slack", "outlook", "github", "hubspot",
    "salesforce", "notion", "linear", "jira", "zendesk", "dropbox", "zoom", "asana", "figma",
    "intercom", "shopify", "stripe", "web_search", "weather",
}
CATALOG = load_catalog()
CONNECTORS = sorted(CATALOG.connectors)
OAUTH = [c for c in CONNECTORS if CATALOG.connectors[c].auth.type == "oauth2"]
CONNECTION = {"subdomain": "acme", "shop": "acme-store", "cloud_id": "11111111-2222-3333-4444-555555555555"}


def test_every_required_connector_ships() -> None:
    assert REQUIRED <= set(CATALOG.connectors), sorted(REQUIRED - set(CATALOG.connectors))
    assert CATALOG.connectors["stripe"].auth.type == "api_key"  # BYOK restricted keys
    assert CATALOG.connectors["web_search"].auth.type == "developer_secret"
    assert CATALOG.connectors["weather"].auth.type == "developer_secret"


@pytest.mark.parametrize("cid", CONNECTORS)
def test_each_connector_has_three_real_tools(cid: str) -> None:
    c = CATALOG.connectors[cid]
    assert len(c.tools) >= 3
    for tool in c.tools:
        assert tool.http.url.startswith("https://")
        assert tool.output_trust in ("trusted", "untrusted")
        if c.auth.type == "oauth2" and cid not in ("notion", "intercom", "github"):
            # Providers whose grants carry no scopes (permissions set on the app) aside,
            # every tool names the minimum provider scopes it needs.
            assert tool.scopes, tool.name


def _scopes_in(url: str, c: Connector) -> set[str]:
    values = parse_qs(urlsplit(url).query).get(c.auth.scope_param, [])
    assert len(values) <= 1
    return set(values[0].split(c.auth.scope_separator)) if values else set()


@pytest.mark.parametrize("cid", OAUTH)
def test_authorization_link_asks_exactly_for_the_enabled_tools_scopes(cid: str) -> None:
    c = CATALOG.connectors[cid]
    refresh = set(c.auth.refresh_scopes)
    cases = [None] + [[t.name] for t in c.tools] + [[t.name for t in c.tools[:2]]]
    for enabled in cases:
        url = authorization_url(
            c, client_id="client-1", redirect_uri="https://cp.example/oauth/callback",
            state="st", code_challenge="ch", enabled_tools=enabled, connection=CONNECTION,
        )
        tools = c.tools if enabled is None else [c.tool(n) for n in enabled]
        union = {s for t in tools if t is not None for s in t.scopes}
        assert _scopes_in(url, c) == union | refresh, (cid, enabled)
        assert set(requested_scopes(c, enabled)) == union | refresh
        query = parse_qs(urlsplit(url).query)
        assert query["state"] == ["st"] and query["response_type"] == ["code"]
        assert query["redirect_uri"] == ["https://cp.example/oauth/callback"]
        if c.auth.pkce:
            assert query["code_challenge_method"] == ["S256"]
        assert "{" not in url


@pytest.mark.parametrize("cid", OAUTH)
def test_oauth_connectors_classify_a_dead_refresh_token(cid: str) -> None:
    c = CATALOG.connectors[cid]
    if not c.auth.refresh.supported:
        return
    assert any(
        r.phase in (None, "token") and r.error_class in ("refresh_race", "revoked")
        for r in c.errors
    ), cid


def test_unknown_tools_cannot_be_enabled() -> None:
    with pytest.raises(ValueError, match="unknown tools"):
        requested_scopes(CATALOG.connectors["gmail"], ["gmail.delete_everything"])


def test_gmail_send_builds_an_rfc5322_message() -> None:
    body = gmail_rfc822({"to": ["a@example.com"], "subject": "Hi", "body": "Hello\n", "thread_id": "t1"})
    raw = base64.urlsafe_b64decode(body["raw"] + "==")
    msg = email.message_from_bytes(raw, policy=default_policy)
    assert msg["To"] == "a@example.com" and msg["Subject"] == "Hi"
    assert body["threadId"] == "t1"


# --------------------------------------------------------- bad definitions

def _gmail() -> dict:
    return yaml.safe_load((CATALOG_DIR / "gmail.yaml").read_bytes())


def _problems(doc: object, filename: str = "gmail.yaml") -> list[str]:
    raw = doc if isinstance(doc, bytes) else yaml.safe_dump(doc).encode()
    found: list[str] = []
    assert parse_definition(filename, raw, found) is None
    assert found
    return found


def _mutated(change) -> dict:  # type: ignore[no-untyped-def]
    doc = _gmail()
    change(doc)
    return doc


BAD = {
    "unknown top-level field": (lambda d: d.update(colour="blue"), "(top level)", "colour"),
    "unknown auth field": (lambda d: d["auth"].update(secret="x"), "auth", "secret"),
    "unknown tool field": (lambda d: d["tools"][0].update(admin=True), "tools[0]", "admin"),
    "unknown http field": (lambda d: d["tools"][0]["http"].update(proxy="x"), "tools[0].http", "proxy"),
    "bad auth type": (lambda d: d["auth"].update(type="magic"), "auth.type", "magic"),
    "http URL": (lambda d: d["auth"].update(token_url="http://oauth2.googleapis.com/token"), "auth.token_url", "does not match"),
    "id differs from file": (lambda d: d.update(id="gmail2"), "id", "file name"),
    "tool outside its connector": (lambda d: d["tools"][0].update(name="slack.list_messages"), "tools[0].name", "gmail."),
    "duplicate tool": (lambda d: d["tools"][1].update(name="gmail.list_messages"), "tools[1].name", "twice"),
    "placeholder not an argument": (lambda d: d["tools"][0]["http"].update(url="https://gmail.googleapis.com/{nope}"), "tools[0].http.url", "{nope}"),
    "placeholder not required": (lambda d: d["tools"][1]["input_schema"].update(required=[]), "tools[1].http.url", "{id}"),
    "unknown connection field": (lambda d: d["tools"][0]["http"].update(url="https://{connection.host}/x"), "tools[0].http.url", "connection.host"),
    "open argument schema": (lambda d: d["tools"][0]["input_schema"].update(additionalProperties=True), "tools[0].input_schema", "additionalProperties"),
    "invalid argument schema": (lambda d: d["tools"][0]["input_schema"]["properties"].update(q={"type": "strng"}), "tools[0].input_schema", "JSON Schema"),
    "query not an argument": (lambda d: d["tools"][0]["http"].update(query=["zz"]), "tools[0].http.query", "zz"),
    "unknown strategy": (lambda d: d["tools"][2]["http"].update(strategy="magic_strategy"), "tools[2].http.strategy", "magic_strategy"),
    "status-only error rule": (lambda d: d["errors"].append({"when": {"status": [401]}, "class": "revoked", "reason": "X_Y"}), "errors[7].when", "status alone"),
    "bad header regex": (lambda d: d["errors"].append({"when": {"header": {"X-A": "("}}, "class": "transient", "reason": "X_Y"}), "errors[7].when.header.X-A", "regex"),
    "unknown error class": (lambda d: d["errors"][0].update({"class": "whatever"}), "errors[0].class", "whatever"),
    "oauth field on an api-key connector": (
        lambda d: d["auth"].update(type="api_key", api_key={"in": "header", "name": "X-Key"}), "auth.authorize_url", "oauth2"),
    "scopes on an api-key connector": (
        lambda d: (d["auth"].clear(), d["auth"].update(type="api_key", api_key={"in": "header", "name": "X-Key"})), "tools[0].scopes", "oauth2"),
    "missing tools": (lambda d: d.pop("tools"), "(top level)", "tools"),
    "sends_iss without issuer": (lambda d: d["auth"].pop("issuer"), "auth.issuer", "sends_iss"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_definition_is_refused_with_file_and_path(case: str) -> None:
    change, where, words = BAD[case]
    problems = _problems(_mutated(change))
    assert any(p.startswith(f"gmail.yaml: {where}") and words in p for p in problems), problems


def test_yaml_errors_and_oversized_files_are_refused() -> None:
    first = _problems(b"id: gmail\nauth: [unclosed\n")[0]
    assert first.startswith("gmail.yaml: line ") and "not valid YAML" in first
    assert "larger than" in _problems(b"#" * (600 * 1024))[0]
    assert "(top level)" in _problems(b"- just\n- a list\n")[0]


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "gmail.yaml").write_text(yaml.safe_dump(_mutated(lambda d: d.update(colour=1))))
    (tmp_path / "other.yaml").write_text("id: other\n")
    with pytest.raises(ConnectorDefinitionError) as info:
        load_catalog(tmp_path)
    text = str(info.value)
    assert "gmail.yaml: (top level)" in text and "other.yaml:" in text
    assert len(info.value.problems) >= 3
    with pytest.raises(ConnectorDefinitionError, match="no connector definitions"):
        load_catalog(tmp_path / "empty")

