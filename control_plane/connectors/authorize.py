"""The authorization request of an OAuth 2.0 connector (RFC 6749 §4.1.1, RFC 7636).

The scopes requested are exactly the union of the enabled tools' minimum scopes,
plus the connector's ``refresh_scopes`` (``offline_access``-style scopes that only
make the provider issue a refresh token) — never more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from control_plane.connectors.model import Connector

_PLACEHOLDER = re.compile(r"\{connection\.([a-z][a-z0-9_]*)(?:\|([a-z]+))?\}")
#: ``{connection.<field>|<filter>}``: a filter turns a kept value into a URL part.
FILTERS = ("host",)
# A DNS name of at least two labels whose last label has a letter: never an IP literal.
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"(?=[a-z0-9-]*[a-z])[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


def requested_scopes(connector: Connector, enabled_tools: Iterable[str] | None = None) -> list[str]:
    """Sorted scopes for an authorization link with ``enabled_tools`` (default: all)."""
    wanted = set(connector.tool_names if enabled_tools is None else enabled_tools)
    unknown = wanted - set(connector.tool_names)
    if unknown:
        raise ValueError(f"unknown tools for {connector.id}: {sorted(unknown)}")
    scopes = {s for t in connector.tools if t.name in wanted for s in t.scopes}
    return sorted(scopes | set(connector.auth.refresh_scopes))


def origin_host(value: str) -> str:
    """The host of ``value``, a bare https origin such as Salesforce's ``instance_url``.

    Anything else is refused (ValueError, without the value): another scheme,
    userinfo (``https://us@evil``), a path, query or fragment (``https://a.b/x``,
    ``https://a.b#@evil``), a port, an IP literal or a name that is not DNS. The
    value comes from a provider's token response; it decides where the access
    token is sent next, so nothing but a plain host may pass.
    """
    parts = urlsplit(value.strip())
    if (
        parts.scheme != "https"
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or ":" in parts.netloc
        or not _DNS_NAME.fullmatch(parts.netloc.lower())
    ):
        raise ValueError("a kept URL is not a plain https origin")
    return parts.netloc.lower()


def fill_connection(template: str, connection: Mapping[str, str]) -> str:
    """Replace ``{connection.<name>}`` and ``{connection.<name>|host}``.

    A plain value is percent-encoded as one URL segment (connection params were
    validated against their pattern, kept fields were not); ``|host`` takes the
    host of a kept https origin (:func:`origin_host`), for a template that reads
    ``https://{connection.instance_url|host}/...``.
    """

    def sub(m: re.Match[str]) -> str:
        name, filter_ = m.group(1), m.group(2)
        value = connection.get(name)
        if value is None:
            raise ValueError(f"missing connection parameter {name!r}")
        if filter_ is None:
            return quote(value, safe="")
        if filter_ == "host":
            return origin_host(value)
        raise ValueError(f"unknown filter {filter_!r}")

    return _PLACEHOLDER.sub(sub, template)


def authorization_url(
    connector: Connector,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_challenge: str | None,
    enabled_tools: Iterable[str] | None = None,
    connection: Mapping[str, str] | None = None,
) -> str:
    auth = connector.auth
    if auth.type != "oauth2":
        raise ValueError(f"{connector.id} is not an OAuth 2.0 connector")
    base = fill_connection(auth.authorize_url, connection or {})
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
    }
    scopes = requested_scopes(connector, enabled_tools)
    if scopes:
        params[auth.scope_param] = auth.scope_separator.join(scopes)
    if auth.pkce:
        if not code_challenge:
            raise ValueError("this connector uses PKCE: a code_challenge is required")
        params["code_challenge"] = code_challenge
        params["code_challenge_method"] = "S256"
    for key, value in auth.authorize_params.items():
        params.setdefault(key, value)
    parts = urlsplit(base)
    query = parts.query + ("&" if parts.query else "") + urlencode(params, quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
