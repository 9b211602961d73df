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


def place_credential(
    auth: AuthSpec,
    credential: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """``(headers, query)`` with the credential placed; ValueError when the connector
    does not say where its key goes."""
    if auth.type == "oauth2":
        location, name, prefix = "header", auth.token_header.name, auth.token_header.prefix
    elif auth.api_key is not None:
        location, name, prefix = auth.api_key.location, auth.api_key.name, auth.api_key.prefix
    else:
        raise ValueError("the connector does not say where its credential goes")
    out_headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
    out_query = dict(query)
    if location == "query":
        out_query.pop(name, None)
        out_query[name] = prefix + credential
    else:
        out_headers[name] = prefix + credential
    return out_headers, out_query
