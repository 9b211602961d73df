"""The connector-format features beyond plain REST: where the access token goes, GraphQL
bodies, URL hosts from kept token fields, provider revocation calls, paging and output
shaping. Each field: what the loader refuses (file and path), what it builds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from control_plane.connectors.credentials import place_credential
from control_plane.connectors.loader import CATALOG_DIR, load_catalog, parse_definition
from control_plane.connectors.model import Connector

CATALOG = load_catalog()


def _doc(cid: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CATALOG_DIR / f"{cid}.yaml").read_bytes())
    return loaded


def _parse(cid: str, change: Callable[[dict[str, Any]], Any] | None = None) -> tuple[Connector | None, list[str]]:
    doc = _doc(cid)
    if change is not None:
        change(doc)
    found: list[str] = []
    return parse_definition(f"{cid}.yaml", yaml.safe_dump(doc).encode(), found), found


def _refused(cid: str, change: Callable[[dict[str, Any]], Any], where: str, words: str) -> None:
    connector, problems = _parse(cid, change)
    assert connector is None
    assert any(p.startswith(f"{cid}.yaml: {where}") and words in p for p in problems), problems


# --- 1. where the access token goes -----------------------------------------------------


def test_shopify_sends_its_token_in_its_own_header() -> None:
    auth = CATALOG.connectors["shopify"].auth
    headers, query = place_credential(auth, "shpat_x", {"Accept": "application/json"}, {"a": "1"})
    assert headers == {"Accept": "application/json", "X-Shopify-Access-Token": "shpat_x"}
    assert query == {"a": "1"}


def test_oauth_default_is_rfc6750_bearer() -> None:
    auth = CATALOG.connectors["gmail"].auth
    headers, _ = place_credential(auth, "ya29.x", {}, {})
    assert headers == {"Authorization": "Bearer ya29.x"}


def test_a_caller_header_of_the_credentials_name_is_dropped_in_any_case() -> None:
    auth = CATALOG.connectors["shopify"].auth
    headers, _ = place_credential(auth, "ours", {"x-shopify-access-token": "theirs"}, {})
    assert headers == {"X-Shopify-Access-Token": "ours"}
    stripe = CATALOG.connectors["stripe"].auth
    assert stripe.api_key is not None
    headers, query = place_credential(stripe, "rk_1", {stripe.api_key.name.upper(): "x"}, {})
    assert list(headers.values()) == [stripe.api_key.prefix + "rk_1"]


@pytest.mark.parametrize(
    ("cid", "change", "where", "words"),
    [
        ("shopify", lambda d: d["auth"]["token_header"].update(name="Cookie"), "auth.token_header.name", "cannot carry"),
        ("shopify", lambda d: d["auth"]["token_header"].update(name="X Bad"), "auth.token_header.name", "does not match"),
        ("shopify", lambda d: d["auth"]["token_header"].update(prefix="Bearer  x"), "auth.token_header.prefix", "does not match"),
        ("stripe", lambda d: d["auth"].update(token_header={"name": "X-Token"}), "auth.token_header", "oauth2"),
    ],
)  # fmt: skip
def test_bad_token_header_is_refused(cid: str, change: Any, where: str, words: str) -> None:
    _refused(cid, change, where, words)


# --- 3. URL hosts from kept token fields --------------------------------------------------

ATTACKS = [  # kept instance_url values that must never become the API host
    "acme.my.salesforce.com",  # no scheme
    "http://acme.my.salesforce.com",
    "https://user@evil.example",
    "https://acme.my.salesforce.com@evil.example",
    "https://evil.example/acme.my.salesforce.com",
    "https://evil.example#@acme.my.salesforce.com",
    "https://evil.example?x=acme.my.salesforce.com",
    "https://evil.example:8443",
    "https://127.0.0.1",
    "https://[::1]",
    "https://localhost",
    "https://evil..example",
    "https://-evil.example",
    "https://evil.example/../x",
    "https://evil.example%2f@x",
    "",
]


def test_salesforce_urls_take_the_host_of_the_kept_instance_url() -> None:
    from control_plane.connectors.authorize import fill_connection

    tool = CATALOG.connectors["salesforce"].tool("salesforce.query")
    assert tool is not None and "{connection.instance_url|host}" in tool.http.url
    url = fill_connection(tool.http.url, {"instance_url": "https://Acme.my.salesforce.com/"})
    assert url == "https://acme.my.salesforce.com/services/data/v62.0/query"


@pytest.mark.parametrize("value", ATTACKS)
def test_a_kept_host_that_is_not_a_plain_https_origin_is_refused(value: str) -> None:
    from control_plane.connectors.authorize import fill_connection

    template = "https://{connection.instance_url|host}/services/data/v62.0/query"
    with pytest.raises(ValueError) as info:
        fill_connection(template, {"instance_url": value})
    assert value not in str(info.value) or not value


def test_atlassian_cloud_id_stays_one_segment() -> None:
    from control_plane.connectors.authorize import fill_connection

    tool = CATALOG.connectors["jira"].tools[0]
    url = fill_connection(tool.http.url, {"cloud_id": "11111111-2222-3333-4444-555555555555"})
    assert url.startswith("https://api.atlassian.com/ex/jira/11111111-2222-3333-4444-555555555555/")
    sneaky = fill_connection(tool.http.url, {"cloud_id": "../../evil?x=1"})
    assert "/ex/jira/..%2F..%2Fevil%3Fx%3D1/" in sneaky


def _set_url(url: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["tools"][0]["http"].update(url=url)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://{connection.instance_url|hostname}/x", "unknown filter 'hostname'"),
        ("https://api.example/{connection.instance_url|host}/x", "whole host"),
        ("https://{connection.instance_url|host}.evil.example/x", "whole host"),
        ("https://{connection.nope|host}/x", "must name"),
    ],
)
def test_bad_host_placeholders_are_refused(url: str, words: str) -> None:
    _refused("salesforce", _set_url(url), "tools[0].http.url", words)


# --- 2. GraphQL bodies ------------------------------------------------------------------


def test_linear_arguments_are_the_graphql_variables() -> None:
    from control_plane.connectors.requests import build_request

    tool = CATALOG.connectors["linear"].tool("linear.get_issue")
    assert tool is not None and tool.http.graphql is not None
    assert set(tool.input_schema["properties"]) == {"id"}  # no `query` argument any more
    req = build_request(tool, {"id": "ENG-123"}, {})
    assert req.method == "POST" and req.url == "https://api.linear.app/graphql"
    assert req.json == {"query": tool.http.graphql.query, "variables": {"id": "ENG-123"}}
    assert req.json["query"].startswith("query GetIssue($id: String!)")
    listing = CATALOG.connectors["linear"].tool("linear.list_teams")
    assert listing is not None
    assert build_request(listing, {}, {}).json["variables"] == {}


def _linear_tool(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda d: change(d["tools"][2])  # linear.get_issue


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        (lambda t: t["http"].update(method="GET"), "tools[2].http.method", "POST"),
        (lambda t: t["http"].update(body="form"), "tools[2].http.graphql", "no body other than json"),
        (lambda t: t["http"]["graphql"].update(query="subscription S($id: String!) { x }"), "tools[2].http.graphql.query", "one query or mutation"),
        (lambda t: t["input_schema"]["properties"].update(extra={"type": "string"}), "tools[2].input_schema.properties.extra", "not a variable"),
        (lambda t: t["input_schema"].update(required=[]), "tools[2].input_schema.required", "$id is String!"),
        (lambda t: t["http"]["graphql"].pop("query"), "tools[2].http.graphql", "'query' is a required property"),
    ],
)  # fmt: skip
def test_bad_graphql_tools_are_refused(change: Any, where: str, words: str) -> None:
    _refused("linear", _linear_tool(change), where, words)


def test_a_2xx_error_rule_must_match_body_paths() -> None:
    rule = {"when": {"status": [200], "body_contains": "invalid_auth"}, "class": "revoked", "reason": "X_Y"}
    _refused("slack", lambda d: d["errors"].append(rule), f"errors[{len(_doc('slack')['errors'])}].when", "2xx")


def test_graphql_200_with_errors_and_no_data_is_a_failure() -> None:
    import json as _json

    from control_plane.vault.classify import classify_response

    linear = CATALOG.connectors["linear"]

    def verdict(doc: object, *, graphql: bool = True) -> tuple[str, str] | None:
        got = classify_response(linear, 200, {}, _json.dumps(doc).encode(), graphql=graphql)
        return None if got is None else (got.error_class, got.reason)

    limited = {"errors": [{"message": "x", "extensions": {"code": "RATELIMITED"}}]}
    assert verdict(limited) == ("rate_limited", "RATE_LIMITED")
    assert verdict({**limited, "data": None}) == ("rate_limited", "RATE_LIMITED")
    auth = {"errors": [{"extensions": {"code": "AUTHENTICATION_ERROR"}}], "data": None}
    assert verdict(auth) == ("expired_access", "AUTHENTICATION_ERROR")
    assert verdict({"errors": [{"message": "Cannot query field"}]}) == ("caller_error", "GRAPHQL_ERRORS")
    # a partial result is a success that carries its errors; so is any non-GraphQL 200
    assert verdict({"data": {"issue": None}, "errors": [{"message": "not found"}]}) is None
    assert verdict({"data": {"teams": {"nodes": []}}}) is None
    assert verdict(limited, graphql=False) is None
    # non-2xx answers are classified as before
    got = classify_response(linear, 401, {}, _json.dumps(auth).encode())
    assert got is not None and got.error_class == "expired_access"


def test_a_rule_naming_200_classifies_a_success_status_only_by_its_envelope() -> None:
    import json as _json

    from control_plane.vault.classify import classify_response

    def with_rule(d: dict[str, Any]) -> None:
        d["errors"].insert(0, {"when": {"phase": "api", "status": [200], "body": {"ok": False, "error": "token_expired"}}, "class": "expired_access", "reason": "ACCESS_TOKEN_EXPIRED"})

    slack, problems = _parse("slack", with_rule)
    assert slack is not None, problems
    expired = _json.dumps({"ok": False, "error": "token_expired"}).encode()
    got = classify_response(slack, 200, {}, expired)
    assert got is not None and got.reason == "ACCESS_TOKEN_EXPIRED"
    # the same words inside a message someone wrote are not the envelope
    message = {"ok": True, "messages": [{"text": "ok false token_expired", "ok": False, "error": "token_expired"}]}
    assert classify_response(slack, 200, {}, _json.dumps(message).encode()) is None


def test_slack_api_errors_in_a_200_body_are_failures() -> None:
    import json as _json

    from control_plane.vault.classify import classify_response

    slack = CATALOG.connectors["slack"]
    for error, wanted in [("token_expired", "expired_access"), ("missing_scope", "insufficient_scope"), ("token_revoked", "revoked")]:
        got = classify_response(slack, 200, {}, _json.dumps({"ok": False, "error": error}).encode())
        assert got is not None and got.error_class == wanted, error
    assert classify_response(slack, 200, {}, b'{"ok": true, "channels": []}') is None


# --- 4. revocation calls that are not RFC 7009 ------------------------------------------


def test_revocation_styles_from_the_catalog() -> None:
    dropbox = CATALOG.connectors["dropbox"].auth
    assert dropbox.revoke_url == "https://api.dropboxapi.com/2/auth/token/revoke"
    assert (dropbox.revocation.auth, dropbox.revocation.body, dropbox.revocation.token) == ("bearer", "none", "access")
    github = CATALOG.connectors["github"].auth
    assert github.revoke_url == "https://api.github.com/applications/{client_id}/token"
    assert (github.revocation.method, github.revocation.token_field) == ("DELETE", "access_token")
    gmail = CATALOG.connectors["gmail"].auth  # the RFC 7009 shorthand
    assert gmail.revoke_url and not gmail.revocation.explicit
    assert (gmail.revocation.method, gmail.revocation.body, gmail.revocation.token) == ("POST", "form", "refresh_first")


def _revoke(**change: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["auth"]["revoke"].update(change)


@pytest.mark.parametrize(
    ("cid", "change", "where", "words"),
    [
        ("dropbox", _revoke(token="refresh_first"), "auth.revoke.token", "must be access"),
        ("dropbox", _revoke(body="json"), "auth.revoke.body", "none exactly when"),
        ("github", _revoke(body="none"), "auth.revoke.body", "none exactly when"),
        ("github", _revoke(auth="client_secret_post", body="query"), "auth.revoke.body", "never the URL"),
        ("github", _revoke(url="https://api.github.com/applications/{app}/token"), "auth.revoke.url", "{app}"),
        ("github", _revoke(method="PATCH"), "auth.revoke.method", "PATCH"),
        ("dropbox", lambda d: d["auth"].update(revoke_url="https://api.dropboxapi.com/x"), "auth.revoke", "not both"),
        ("stripe", lambda d: d["auth"].update(revoke={"url": "https://api.stripe.com/x"}), "auth.revoke", "oauth2"),
    ],
)  # fmt: skip
def test_bad_revocations_are_refused(cid: str, change: Any, where: str, words: str) -> None:
    _refused(cid, change, where, words)


# --- 5. paging hints ----------------------------------------------------------------------


def _tool(cid: str, name: str) -> Any:
    tool = CATALOG.connectors[cid].tool(name)
    assert tool is not None, name
    return tool


# (connector, tool, answer body, headers, expected cursor): test vectors, one per case
PAGES: list[tuple[str, str, Any, dict[str, str], str]] = [
    ("gmail", "gmail.list_messages", {"messages": [], "nextPageToken": "p2"}, {}, "p2"),
    ("gmail", "gmail.list_messages", {"messages": []}, {}, ""),
    ("slack", "slack.list_conversations", {"ok": True, "response_metadata": {"next_cursor": "dGVhbTpD"}}, {}, "dGVhbTpD"),
    ("slack", "slack.list_conversations", {"ok": True, "response_metadata": {"next_cursor": ""}}, {}, ""),
    ("notion", "notion.search", {"results": [], "has_more": True, "next_cursor": "c-2"}, {}, "c-2"),
    ("notion", "notion.search", {"results": [], "has_more": False, "next_cursor": None}, {}, ""),
    ("dropbox", "dropbox.list_folder_continue", {"entries": [], "cursor": "AAE", "has_more": True}, {}, "AAE"),
    ("dropbox", "dropbox.list_folder_continue", {"entries": [], "cursor": "AAF", "has_more": False}, {}, ""),
    ("hubspot", "hubspot.search_contacts", {"results": [], "paging": {"next": {"after": "20"}}}, {}, "20"),
    ("hubspot", "hubspot.search_contacts", {"results": []}, {}, ""),
    ("linear", "linear.list_issues", {"data": {"issues": {"nodes": [], "pageInfo": {"hasNextPage": True, "endCursor": "e1"}}}}, {}, "e1"),
    ("linear", "linear.list_issues", {"data": {"issues": {"nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": "e2"}}}}, {}, ""),
    ("shopify", "shopify.list_products", {"products": []}, {"link": '<https://acme.myshopify.com/admin/api/2025-07/products.json?limit=50&page_info=prev1>; rel="previous", <https://acme.myshopify.com/admin/api/2025-07/products.json?limit=50&page_info=next2>; rel="next"'}, "next2"),
    ("shopify", "shopify.list_products", {"products": []}, {"Link": '<https://acme.myshopify.com/admin/api/2025-07/products.json?page_info=prev1>; rel="previous"'}, ""),
    ("shopify", "shopify.list_products", {"products": []}, {}, ""),
    ("gmail", "gmail.get_message", {"nextPageToken": "not-a-paging-tool"}, {}, ""),
]  # fmt: skip


@pytest.mark.parametrize(("cid", "name", "body", "headers", "cursor"), PAGES)
def test_next_cursor(cid: str, name: str, body: Any, headers: dict[str, str], cursor: str) -> None:
    from control_plane.connectors.output import next_cursor

    assert next_cursor(_tool(cid, name), body, headers) == cursor


def test_every_declared_cursor_argument_is_a_string_argument_sent_to_the_provider() -> None:
    paging = [t for c in CATALOG for t in c.tools if t.pagination is not None]
    assert len(paging) >= 12
    for t in paging:
        assert t.pagination is not None
        arg = t.pagination.cursor_argument
        assert t.input_schema["properties"][arg].get("type", "string") == "string", t.name
        sent = arg in t.http.query or t.http.body == "json" or t.http.graphql is not None
        assert sent, t.name


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        (lambda t: t.update(pagination={"cursor_argument": "nope", "next_cursor": "x"}), "tools[0].pagination.cursor_argument", "not an argument"),
        (lambda t: t.update(pagination={"cursor_argument": "maxResults", "next_cursor": "x"}), "tools[0].pagination.cursor_argument", "must take a string"),
        (lambda t: t.update(pagination={"cursor_argument": "pageToken"}), "tools[0].pagination", "exactly one"),
        (lambda t: t.update(pagination={"cursor_argument": "pageToken", "next_cursor": "a", "link_param": "b"}), "tools[0].pagination", "exactly one"),
        (lambda t: t.update(pagination={"cursor_argument": "pageToken", "link_param": "b", "has_more": "c"}), "tools[0].pagination.has_more", "next_cursor"),
        (lambda t: t.update(pagination={"cursor_argument": "pageToken", "next_cursor": "a..b"}), "tools[0].pagination.next_cursor", "does not match"),
    ],
)  # fmt: skip
def test_bad_pagination_is_refused(change: Any, where: str, words: str) -> None:
    _refused("gmail", lambda d: change(d["tools"][0]), where, words)


# --- 6. output shaping --------------------------------------------------------------------


def _shaped(fields: tuple[str, ...], doc: Any) -> Any:
    from dataclasses import replace

    from control_plane.connectors.model import Output
    from control_plane.connectors.output import shape

    return shape(replace(_tool("gmail", "gmail.list_messages"), output=Output(fields)), doc)


SHAPES: list[tuple[tuple[str, ...], Any, Any]] = [
    (("a",), {"a": 1, "b": 2}, {"a": 1}),
    (("a.b",), {"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 1}}),
    (("items.id",), {"items": [{"id": 1, "x": 2}, {"id": 3}, {"x": 4}]}, {"items": [{"id": 1}, {"id": 3}, {}]}),
    (("items.id",), {"items": [{"id": 1}, "scalar", [{"id": 2}]]}, {"items": [{"id": 1}, [{"id": 2}]]}),
    (("id", "name"), [{"id": 1, "name": "n", "x": 0}], [{"id": 1, "name": "n"}]),
    (("a.b",), {"a": "not an object"}, {}),
    (("missing",), {"a": 1}, {}),
    (("a", "c.d"), {"a": {"deep": [1, 2]}, "c": [{"d": None, "e": 1}]}, {"a": {"deep": [1, 2]}, "c": [{"d": None}]}),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "doc", "expected"), SHAPES)
def test_shape(fields: tuple[str, ...], doc: Any, expected: Any) -> None:
    assert _shaped(fields, doc) == expected


def test_no_fields_means_the_whole_answer() -> None:
    from control_plane.connectors.output import shape

    doc = {"messages": [{"id": "1"}], "resultSizeEstimate": 1}
    assert shape(_tool("gmail", "gmail.list_messages"), doc) is doc


def test_figma_get_file_keeps_the_page_skeleton_and_a_size_cap() -> None:
    from control_plane.connectors.output import shape

    tool = _tool("figma", "figma.get_file")
    assert tool.output.max_bytes and tool.output.fields
    doc = {
        "name": "Design", "version": "1", "lastModified": "2026-01-01T00:00:00Z", "role": "owner",
        "document": {"id": "0:0", "name": "Document", "type": "DOCUMENT", "children": [
            {"id": "0:1", "name": "Page 1", "type": "CANVAS", "backgroundColor": {"r": 1}, "children": [
                {"id": "1:2", "name": "Frame", "type": "FRAME", "children": [{"id": "1:3", "type": "TEXT", "characters": "x" * 1000}]},
            ]},
        ]},
        "components": {}, "styles": {},
    }  # fmt: skip
    got = shape(tool, doc)
    page = got["document"]["children"][0]
    assert page == {"id": "0:1", "name": "Page 1", "type": "CANVAS", "children": [{"id": "1:2", "name": "Frame", "type": "FRAME"}]}
    assert "role" not in got and got["name"] == "Design"


@pytest.mark.parametrize(
    ("output", "where", "words"),
    [
        ({"fields": ["a", "a.b"]}, "tools[0].output.fields", "inside another"),
        ({"max_bytes": 10}, "tools[0].output.max_bytes", "less than the minimum"),
        ({}, "tools[0].output", "empty"),
        ({"fields": []}, "tools[0].output.fields", "non-empty"),
    ],
)
def test_bad_output_is_refused(output: dict[str, Any], where: str, words: str) -> None:
    _refused("gmail", lambda d: d["tools"][0].update(output=output), where, words)
