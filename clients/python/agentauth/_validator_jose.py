"""Strict parsing of a compact JWS, done once, before any key is looked up.

Every check here fails with :class:`~agentauth.TokenInvalidError` and runs in
the order of RFC 7515 §5.2 ("Message Signature or MAC Validation"), cheapest
first, so that junk costs little:

1. The size cap, before any decoding: an unauthenticated sender must not
   choose how much we decode and parse.
2. "Parse the JWS representation to extract the serialized values for the
   components of the JWS" - exactly three non-empty segments, the compact
   serialization only (RFC 7515 §7.1).
3. RFC 7515 §2: base64url "with all trailing '=' characters omitted ... and
   without the inclusion of any line breaks, whitespace, or other additional
   characters"; the unused bits of the last character must be zero, so that
   one token has exactly one encoding (RFC 8725 §2.6, GHSA-hxm8-2xgr-2p9m).
4. "Verify that the resulting octet sequence is a UTF-8-encoded representation
   of a completely valid JSON object conforming to RFC 7159"; RFC 7515 §4:
   "JWS parsers MUST either reject JWSs with duplicate Header Parameter names
   or use a JSON parser that returns only the lexically last duplicate member
   name" - we reject, in the header and the payload alike (RFC 8725 §2.6),
   together with ``NaN``/``Infinity`` and numbers that overflow a double
   (``1e309``), and nesting deeper than a fixed limit.
5. RFC 9068 §4: "The resource server MUST verify that the "typ" header value
   is "at+jwt" or "application/at+jwt" and reject tokens carrying any other
   value."
6. RFC 7515 §4.1.11: "If any of the listed extension Header Parameters are not
   understood and supported by the recipient, then the JWS is invalid." We
   support none, so any ``crit`` is refused (``crit: []`` is itself invalid).
7. RFC 8725 §3.1: "Libraries MUST enable the caller to specify a supported set
   of algorithms and MUST NOT use any other algorithms" - ``alg`` must be in
   the configured set; ``none`` in any spelling never is.
8. ``kid`` must be present: keys are selected by ``kid`` only. ``jku``,
   ``x5u``, ``x5c`` and ``jwk`` are never read (RFC 8725 §3.10, CVE-2018-0114).

Nothing is verified here; the payload is decoded from base64 but parsed as
JSON only after the signature check (:func:`parse_payload`).
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agentauth._validator_errors import TokenReason, token_error

__all__ = [
    "MAX_JSON_DEPTH",
    "ParsedToken",
    "b64url_decode",
    "loads_strict",
    "parse_compact",
    "parse_payload",
]

_B64URL_TO_STD: Final = bytes.maketrans(b"-_", b"+/")
_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The last character of a segment whose length is 2 (mod 4) carries 4 unused
# bits, and of one whose length is 3 (mod 4) 2 unused bits; they must be zero.
_LAST_CHAR_OK: Final[Mapping[int, frozenset[str]]] = {
    0: frozenset(_ALPHABET),
    2: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0x0F == 0),
    3: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0x03 == 0),
}
_PADDING: Final[Mapping[int, bytes]] = {0: b"", 2: b"==", 3: b"="}
_ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
# Header parameters that change how the token must be processed; we implement
# none of them: crit (RFC 7515 §4.1.11), zip/enc (JWE, RFC 7516), b64 (RFC 7797).
_UNSUPPORTED_HEADERS: Final = ("crit", "zip", "enc", "b64")
MAX_JSON_DEPTH: Final = 64


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """The decoded parts of a compact JWS whose header passed every check."""

    alg: str
    kid: str
    signing_input: bytes
    payload: bytes
    signature: bytes


def _malformed() -> Exception:
    return token_error(TokenReason.TOKEN_MALFORMED)


def b64url_decode(segment: str) -> bytes:
    """Decode one canonical, unpadded base64url segment; ValueError on anything else."""
    if not segment.isascii() or "=" in segment or "+" in segment or "/" in segment:
        raise ValueError("not base64url")
    return _b64url_decode_checked(segment)


def _b64url_decode_checked(segment: str) -> bytes:
    # The caller has ruled out non-ASCII text and '+', '/', '=' (which the
    # translation below would let through as valid standard-alphabet input).
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
        raise ValueError("duplicate member name")
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


def loads_strict(raw: bytes) -> Any:
    """Parse UTF-8 JSON, refusing duplicate names, NaN/Infinity and overflowing
    numbers. Raises ValueError (RecursionError for absurd nesting)."""
    return _DECODER.decode(raw.decode("utf-8"))


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = loads_strict(raw)
    except (ValueError, RecursionError):
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; so is an
        # integer beyond Python's digit limit.
        raise _malformed() from None
    if not isinstance(value, dict):
        raise _malformed()
    return value


def _check_depth(value: object, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit`` (the top-level object is depth 1)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise _malformed()
        if isinstance(node, dict):
            stack.extend(
                (child, depth + 1) for child in node.values() if isinstance(child, dict | list)
            )
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))


def _check_header(header: Mapping[str, Any], allowed: frozenset[str]) -> tuple[str, str]:
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_TYPES:
        raise token_error(TokenReason.TOKEN_TYPE_INVALID)
    for name in _UNSUPPORTED_HEADERS:
        if name in header:
            raise _malformed()
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _malformed()
    if alg not in allowed:
        raise token_error(TokenReason.TOKEN_ALGORITHM_NOT_ALLOWED)
    kid = header.get("kid")
    if kid is None:
        raise token_error(TokenReason.TOKEN_KEY_UNKNOWN)
    if not isinstance(kid, str):
        raise _malformed()
    return alg, kid


def parse_compact(token: object, *, max_bytes: int, algorithms: frozenset[str]) -> ParsedToken:
    """Split, decode and check the header of a compact JWS; nothing is verified yet."""
    if not isinstance(token, str) or len(token) > max_bytes or not token.isascii():
        raise _malformed()
    # One scan each for the characters the translation to the standard
    # alphabet would otherwise let through as valid.
    if "=" in token or "+" in token or "/" in token:
        raise _malformed()
    parts = token.split(".")
    if len(parts) != 3:
        raise _malformed()
    header_b64, payload_b64, signature_b64 = parts
    try:
        header_raw = _b64url_decode_checked(header_b64)
        payload = _b64url_decode_checked(payload_b64)
        signature = _b64url_decode_checked(signature_b64)
    except ValueError:
        raise _malformed() from None
    alg, kid = _check_header(_json_object(header_raw), algorithms)
    signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
    return ParsedToken(alg, kid, signing_input, payload, signature)


def parse_payload(payload: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The claims set: a strict JSON object nested no deeper than ``max_depth``."""
    claims = _json_object(payload)
    # A container count within the limit bounds the depth too, and is one C
    # scan; only payloads with many objects or arrays need the walk.
    if payload.count(b"{") + payload.count(b"[") > max_depth:
        _check_depth(claims, max_depth)
    return claims
