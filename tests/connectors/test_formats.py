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
