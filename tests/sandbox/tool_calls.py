"""Calling any catalog tool against its connector's sandbox emulator, as ExecuteTool will.

* :func:`minimal_arguments` — the simplest arguments an input schema accepts:
  required properties only, each the smallest value of its type (a string that
  matches its ``pattern`` is derived from the regex itself).
* :func:`connect` — an authorization-code grant with the emulator (consent page,
  PKCE when the connector uses it), the code redeemed by the vault's own token
  client; gives the access token and the connection values the vault would store
  (connection params plus kept token fields).
* :func:`send` — a :class:`ToolRequest` sent with the credential placed as the
  vault places it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from re import _parser as sre  # type: ignore[attr-defined]
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp

from control_plane.connectors.authorize import authorization_url, fill_connection
from control_plane.connectors.credentials import place_credential
from control_plane.connectors.model import Connector
from control_plane.connectors.requests import ToolRequest
from control_plane.sandbox import SandboxProvider
from control_plane.vault.oauth_client import kept_fields, request_token

REDIRECT = "https://cp.example/oauth/callback"
CONNECTION = {
    "subdomain": "acme",
    "shop": "acme-store",
    "cloud_id": "11111111-2222-3333-4444-555555555555",
}
_FORMATS = {
    "email": "a@example.com",
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "uri": "https://example.com/",
}
# one character for each class a pattern can ask for
_CATEGORY = {
    sre.CATEGORY_DIGIT: "0",
    sre.CATEGORY_NOT_DIGIT: "a",
    sre.CATEGORY_SPACE: " ",
    sre.CATEGORY_NOT_SPACE: "a",
    sre.CATEGORY_WORD: "a",
    sre.CATEGORY_NOT_WORD: "-",
}


def _char_in(items: list[tuple[Any, Any]]) -> str:
    if items and items[0][0] == sre.NEGATE:
        banned = _sample(items[1:])
        return next(c for c in "a0-_." if c not in banned)
    for op, arg in items:
        if op == sre.LITERAL:
            return chr(arg)
        if op == sre.RANGE:
            return chr(arg[0])
        if op == sre.CATEGORY:
            return _CATEGORY[arg]
    raise ValueError(f"unsupported character set {items!r}")


def _sample(items: list[tuple[Any, Any]]) -> set[str]:
    """The candidate characters a (negated) set contains."""
    out = set()
    for c in "a0-_. ":
        for op, arg in items:
            if (op == sre.LITERAL and chr(arg) == c) or (
                op == sre.RANGE and arg[0] <= ord(c) <= arg[1]
            ) or (op == sre.CATEGORY and _CATEGORY.get(arg) == c):
                out.add(c)
    return out


def _from(parsed: Any) -> str:
    out = []
    for op, arg in parsed:
        if op == sre.LITERAL:
            out.append(chr(arg))
        elif op == sre.ANY:
            out.append("a")
        elif op == sre.IN:
            out.append(_char_in(list(arg)))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, _, item = arg
            out.append(_from(item) * low)
        elif op == sre.SUBPATTERN:
            out.append(_from(arg[-1]))
        elif op == sre.BRANCH:
            out.append(_from(arg[1][0]))
        elif op == sre.AT:
            continue
        else:
            raise ValueError(f"unsupported regex construct {op}")
    return "".join(out)


def string_for(pattern: str) -> str:
    """The shortest string the regex's first alternatives spell (it matches ``pattern``)."""
    value = _from(sre.parse(pattern))
    assert re.search(pattern, value), (pattern, value)
    return value


def minimal_value(schema: Mapping[str, Any]) -> Any:
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if kind != "object":
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return minimal_value(schema[key][0])
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        return minimal_arguments(schema)
    if kind == "array":
        count = schema.get("minItems", 0)
        item = schema.get("items", {})
        return [minimal_value(item) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        return max(low, 1) if "maximum" not in schema else min(max(low, 1), schema["maximum"])
    if kind == "boolean":
        return False
    if "format" in schema and schema["format"] in _FORMATS:
        return _FORMATS[schema["format"]]
    if "pattern" in schema:
        value = string_for(schema["pattern"])
    else:
        value = "a"
    return value + "a" * max(schema.get("minLength", 0) - len(value), 0)


def minimal_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Required properties (plus the first ``anyOf``/``oneOf`` branch's), then optional
    ones, or invented keys, up to ``minProperties``."""
    props = schema.get("properties", {})
    required = list(schema.get("required", []))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            required += [n for n in schema[key][0].get("required", []) if n not in required]
    out = {name: minimal_value(props.get(name, {})) for name in required}
    optional = [n for n in props if n not in out]
    while len(out) < schema.get("minProperties", 0):
        if optional:
            name = optional.pop(0)
            out[name] = minimal_value(props[name])
            continue
        names = schema.get("propertyNames", {})
        name = string_for(names["pattern"]) if "pattern" in names else "a"
        name += "a" * len(out)
        extra = schema.get("additionalProperties", {})
        out[name] = minimal_value(extra if isinstance(extra, dict) else {})
    return out


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def connect(
    provider: SandboxProvider, http: aiohttp.ClientSession
) -> tuple[str, dict[str, str]]:
    """``(access token, connection values)`` of a fresh grant for every tool's scopes."""
    connector = provider.connector_for_sandbox()
    params = {p.name: CONNECTION.get(p.name, "acme") for p in connector.auth.connection_params}
    verifier, challenge = _pkce() if connector.auth.pkce else (None, None)
    url = authorization_url(
        connector, client_id=provider.client_id, redirect_uri=REDIRECT, state="st",
        code_challenge=challenge, connection=params,
    )  # fmt: skip
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        page = await resp.text()
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    ticket = re.search(r'name="consent" value="([^"]+)"', page)
    assert action and ticket
    async with http.post(
        urljoin(url, action.group(1)),
        data={"consent": ticket.group(1), "decision": "allow"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302, await resp.text()
        code = dict(parse_qsl(urlsplit(resp.headers["Location"]).query))["code"]
    token_params = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if verifier:
        token_params["code_verifier"] = verifier
    tokens = await request_token(
        http, connector, fill_connection(connector.auth.token_url, params),
        provider.client_id, provider.client_secret, token_params,
    )  # fmt: skip
    return tokens.access_token, {**kept_fields(tokens, connector), **params}


async def send(
    http: aiohttp.ClientSession, connector: Connector, request: ToolRequest, credential: str
) -> tuple[int, Any]:
    headers, query = place_credential(
        connector.auth, credential, {"Accept": "application/json", **request.headers},
        request.query,
    )  # fmt: skip
    async with http.request(
        request.method, request.url, params=query or None, headers=headers,
        json=request.json if request.form is None else None, data=request.form,
    ) as resp:  # fmt: skip
        return resp.status, await resp.json(content_type=None)
