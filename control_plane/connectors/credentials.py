"""Where a connected account's credential goes on a provider request.

Pure: the vault's upstream client and the sandbox tests call it with the secret
they hold. An ``oauth2`` access token goes in the connector's ``token_header``
(RFC 6750 §2.1 ``Authorization: Bearer`` unless the connector names another
header, like Shopify's ``X-Shopify-Access-Token``); an ``api_key`` goes where
``auth.api_key`` says, header or query. A caller-supplied header or query
parameter of the same name (in any letter case) is dropped first, so the
request carries exactly one credential, and it is ours.
"""

from __future__ import annotations

from collections.abc import Mapping

from control_plane.connectors.model import AuthSpec


def credential_slot(auth: AuthSpec) -> tuple[str, str, str] | None:
    """``(location, name, prefix)`` of the connector's credential ("header" or "query"),
    or None when it says nothing."""
    if auth.type == "oauth2":
        return "header", auth.token_header.name, auth.token_header.prefix
    if auth.api_key is not None:
        return auth.api_key.location, auth.api_key.name, auth.api_key.prefix
    return None


def place_credential(
    auth: AuthSpec,
    credential: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """``(headers, query)`` with the credential placed; ValueError when the connector
    does not say where its key goes."""
    slot = credential_slot(auth)
    if slot is None:
        raise ValueError("the connector does not say where its credential goes")
    location, name, prefix = slot
    out_headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
    out_query = dict(query)
    if location == "query":
        out_query.pop(name, None)
        out_query[name] = prefix + credential
    else:
        out_headers[name] = prefix + credential
    return out_headers, out_query
