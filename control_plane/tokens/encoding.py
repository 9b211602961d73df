"""The two encodings JOSE is built on, decoded strictly: base64url and JSON.

base64url is the JOSE core's (:mod:`agentauth._jose`): RFC 7515 §2 "with all
trailing '=' characters omitted ... and without the inclusion of any line
breaks, whitespace, or other additional characters", and with zero unused
bits, so every byte string has exactly one encoding (RFC 8725 §2.6,
GHSA-hxm8-2xgr-2p9m). Tokens are parsed by the core itself; these names are
for code that reads single JOSE members (key coordinates, thumbprints).

RFC 8259 §4: "The names within an object SHOULD be unique." When they are not,
parsers disagree about which value wins (``{"sub":"a","sub":"admin"}``), so
:func:`parse_json` refuses duplicates, the non-standard constants
``NaN``/``Infinity``, invalid UTF-8 (RFC 8725 §3.7) and pathological nesting.
"""

from __future__ import annotations

from agentauth._jose import b64url_decode, b64url_encode

from control_plane.strict_json import DuplicateKeyError, parse_json, parse_json_object

__all__ = ["DuplicateKeyError", "b64url_decode", "b64url_encode", "parse_json", "parse_json_object"]
