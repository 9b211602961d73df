"""The two encodings JOSE is built on, decoded strictly: base64url and JSON.

RFC 7515 §2: base64url "with all trailing '=' characters omitted ... and
without the inclusion of any line breaks, whitespace, or other additional
characters." The unused bits of the last character must be zero, so that one
byte string has exactly one encoding: decoders that accept padding,
whitespace, the standard alphabet or non-zero trailing bits let one token have
several spellings, which is how signature-stripping and cache-key confusion
start (RFC 8725 §2.6, GHSA-hxm8-2xgr-2p9m, Wycheproof JWS ``base64`` cases).

RFC 7515 §4: "JWS parsers MUST either reject JWSs with duplicate Header
Parameter names or use a JSON parser that returns only the lexically last
duplicate member name" - we reject, in headers, payloads and key sets alike
(RFC 8725 §2.6: two values for one name make the meaning depend on the
parser). Also refused: ``NaN``/``Infinity``, numbers that overflow a double
(``1e309``), invalid UTF-8 (RFC 8725 §3.7: "JWTs MUST use UTF-8") and, through
:func:`check_depth`, nesting beyond a fixed limit.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "MAX_JSON_DEPTH",
    "DuplicateMemberError",
    "b64url_decode",
    "b64url_encode",
    "check_depth",
    "loads_strict",
]

MAX_JSON_DEPTH: Final = 64

_B64URL_TO_STD: Final = bytes.maketrans(b"-_", b"+/")
_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The last character of a segment whose length is 2 (mod 4) carries 4 unused
# bits, and of one whose length is 3 (mod 4) 2 unused bits; they must be zero.
# A length of 1 (mod 4) cannot be produced by any byte string.
_LAST_CHAR_OK: Final[Mapping[int, frozenset[str]]] = {
    0: frozenset(_ALPHABET),
    2: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0x0F == 0),
    3: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0x03 == 0),
}
_PADDING: Final[Mapping[int, bytes]] = {0: b"", 2: b"==", 3: b"="}


class DuplicateMemberError(ValueError):
    """A JSON object named the same member twice."""


def b64url_encode(data: bytes) -> str:
    """RFC 7515 §2 base64url, unpadded."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode canonical unpadded base64url (the empty string is ``b""``); ValueError otherwise."""
    if not isinstance(segment, str):
        raise ValueError("not base64url")
    if not segment:
        return b""
    if not segment.isascii() or "=" in segment or "+" in segment or "/" in segment:
        raise ValueError("not base64url")
    return decode_checked(segment)


def decode_checked(segment: str) -> bytes:
    """:func:`b64url_decode` of a non-empty segment the caller has already scanned.

    The caller has ruled out non-ASCII text and '+', '/', '=' (which the
    translation below would let through as standard-alphabet input); a token
    parser does that once for all three segments.
    """
    rem = len(segment) & 3
    allowed_last = _LAST_CHAR_OK.get(rem)
    if not segment or allowed_last is None or segment[-1] not in allowed_last:
        raise ValueError("not canonical base64url")
    try:
        # strict_mode refuses anything outside the standard alphabet (whitespace,
        # '.', control characters) that the translation left in place.
        return binascii.a2b_base64(
            segment.encode("ascii").translate(_B64URL_TO_STD) + _PADDING[rem], strict_mode=True
        )
    except binascii.Error:
        raise ValueError("not base64url") from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateMemberError("duplicate member name")
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _refuse_constant(_name: str) -> Any:
    raise ValueError("non-standard JSON constant")


# One decoder for every call: json.loads() with hooks builds a new one each
# time, which is a measurable part of validating a token. Decoding keeps no
# state in the decoder, so sharing it between threads is safe.
_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_float=_finite_float,
    parse_constant=_refuse_constant,
)


def loads_strict(raw: bytes | str) -> Any:
    """Parse UTF-8 JSON, refusing duplicate names (:class:`DuplicateMemberError`),
    NaN/Infinity and overflowing numbers. Raises ValueError, or RecursionError
    for absurd nesting (callers treat both as "not acceptable JSON")."""
    return _DECODER.decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def check_depth(value: object, limit: int) -> bool:
    """Whether ``value`` nests no deeper than ``limit`` (the top-level object is depth 1)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(node, dict):
            stack.extend(
                (child, depth + 1) for child in node.values() if isinstance(child, dict | list)
            )
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return True
