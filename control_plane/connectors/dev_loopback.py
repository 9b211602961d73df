"""Plain-http loopback URLs in connector definitions, a development switch.

Definitions name ``https://`` URLs only. With ``AGENTAUTH_DEV_LOOPBACK_CONNECTORS=1``
on the embedded SQLite database (development; ``control_plane.app.load_connectors``
refuses the switch anywhere else) a custom connector may also name
``http://127.0.0.1:PORT/...``, ``http://localhost:PORT/...`` or ``http://[::1]:PORT/...``,
so it can be tried against an authorization server running on the developer's machine.
"""

from __future__ import annotations

import re

SWITCH = "AGENTAUTH_DEV_LOOPBACK_CONNECTORS"

# The host must end at a port, a path or the end: "http://localhost.evil.example" and
# "http://127.0.0.1@evil.example" are not loopback.
_PREFIX = r"http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?(/|$)"
LOOPBACK_HTTP = re.compile(_PREFIX)


def is_loopback_http(url: str) -> bool:
    return LOOPBACK_HTTP.match(url) is not None


def widen_schema_pattern(pattern: str) -> str:
    """``^https://REST$`` → also ``http://<loopback>[:port]/REST``."""
    if not pattern.startswith("^https://"):
        raise ValueError(f"not an https pattern: {pattern!r}")
    rest = pattern.removeprefix("^https://")
    return rf"^(https://|{_PREFIX}){rest}"
