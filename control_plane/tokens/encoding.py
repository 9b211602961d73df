"""The two encodings JOSE is built on, decoded strictly: base64url and JSON.

RFC 7515 §2: "Base64url Encoding ... with all trailing '=' characters omitted
... and without the inclusion of any line breaks, whitespace, or other
additional characters." Decoders that accept padding, whitespace, the standard
alphabet or non-zero trailing bits let one token have several encodings, which
is how signature-stripping and cache-key confusion start (RFC 8725 §2.6,
GHSA-hxm8-2xgr-2p9m, Wycheproof JWS ``base64`` cases). We accept exactly the
canonical form: decode, re-encode, compare.

RFC 8259 §4: "The names within an object SHOULD be unique." When they are not,
parsers disagree about which value wins (``{"sub":"a","sub":"admin"}``), so a
verifier and a downstream reader could see different claims. We refuse
duplicates, the non-standard constants ``NaN``/``Infinity``, invalid UTF-8
(RFC 8725 §3.7) and pathological nesting.
"""

from __future__ import annotations

import base64
import binascii
import re

from control_plane.strict_json import DuplicateKeyError, parse_json, parse_json_object

__all__ = ["DuplicateKeyError", "b64url_decode", "b64url_encode", "parse_json", "parse_json_object"]

_B64URL_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode canonical unpadded base64url; raise ValueError on anything else."""
    if not isinstance(segment, str) or not _B64URL_ALPHABET.fullmatch(segment):
        raise ValueError("not base64url")
    if len(segment) % 4 == 1:
        raise ValueError("impossible base64url length")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if b64url_encode(raw) != segment:
        # Non-zero unused bits in the last character: a second encoding of `raw`.
        raise ValueError("non-canonical base64url")
    return raw
