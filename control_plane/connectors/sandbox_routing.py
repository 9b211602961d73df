"""Where a connector's real URLs live on a sandbox: ``https://host/path`` → ``{base}/host/path``.

Used by :class:`~control_plane.sandbox.oauth_provider.SandboxProvider` and by the
server's sandbox mode (``AGENTAUTH_SANDBOX_URL``), which points every connector
at one loopback emulator so a connector can be tried with no provider account.
Plain-http loopback URLs are fine at run time: the loader's https rule applies
to definition files. A loopback URL that a definition names itself (the
development switch, :mod:`.dev_loopback`) already points at the developer's own
server and is kept as it is.
"""

from __future__ import annotations

from dataclasses import replace

from control_plane.connectors.dev_loopback import is_loopback_http
from control_plane.connectors.model import Connector


def sandbox_url(base_url: str, real_url: str) -> str:
    """Placeholders are kept; a URL that starts with one (a kept ``instance_url``) or
    a loopback http URL is returned unchanged."""
    if is_loopback_http(real_url):
        return real_url
    if real_url.startswith("https://"):
        return f"{base_url}/{real_url.removeprefix('https://')}"
    if real_url.startswith("{"):
        return real_url
    raise ValueError(f"not an https URL: {real_url!r}")


def rewrite_for_sandbox(c: Connector, base_url: str) -> Connector:
    """A copy of ``c`` whose endpoints, tool URLs and issuer point at ``base_url``."""
    a = c.auth
    auth = replace(
        a,
        authorize_url=sandbox_url(base_url, a.authorize_url) if a.authorize_url else "",
        token_url=sandbox_url(base_url, a.token_url) if a.token_url else "",
        revoke_url=sandbox_url(base_url, a.revoke_url) if a.revoke_url else "",
        issuer=sandbox_url(base_url, a.issuer) if a.issuer else (base_url if a.sends_iss else ""),
    )
    tools = tuple(
        replace(t, http=replace(t.http, url=sandbox_url(base_url, t.http.url))) for t in c.tools
    )
    api_base = sandbox_url(base_url, c.api_base_url) if c.api_base_url else ""
    return replace(c, auth=auth, tools=tools, api_base_url=api_base)
