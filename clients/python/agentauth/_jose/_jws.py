"""Strict parsing and verification of a compact JWS (RFC 7515 §5.2, §7.1).

Every check fails with :class:`JoseError` and a :class:`TokenReason`:

1. The size cap, before any decoding: an unauthenticated sender must not
   choose how much we decode and parse [TOKEN_MALFORMED].
2. "Parse the JWS representation to extract the serialized values for the
   components of the JWS" - exactly three non-empty segments, ASCII, the
   compact serialization only (RFC 7515 §7.1; the JSON serializations are
   refused) [TOKEN_MALFORMED].
3. RFC 7515 §2 canonical base64url for every segment, and "Verify that the
   resulting octet sequence is a UTF-8-encoded representation of a completely
   valid JSON object" for the header, without duplicate names
   (:mod:`agentauth._jose._encoding`) [TOKEN_MALFORMED].
4. ``typ`` by the caller's :class:`Typ` policy. RFC 9068 §4: "The resource
   server MUST verify that the "typ" header value is "at+jwt" or
   "application/at+jwt" and reject tokens carrying any other value"; RFC 8725
   §3.11: explicit typing keeps one kind of JWT from being accepted as
   another, so where an access token must not be accepted, ``at+jwt`` is
   refused [TOKEN_TYPE_INVALID].
5. RFC 7515 §4.1.11: "If any of the listed extension Header Parameters are
   not understood and supported by the recipient, then the JWS is invalid."
   We support no extension, so any ``crit`` is refused (``crit: []`` is
   itself invalid), as are ``b64`` (RFC 7797 changes what is signed) and the
   JWE members ``zip``/``enc`` [TOKEN_MALFORMED].
6. RFC 8725 §3.1: "Libraries MUST enable the caller to specify a supported
   set of algorithms and MUST NOT use any other algorithms" - ``alg`` must be
   in the caller's configured set; ``none`` never is, in any spelling
   [TOKEN_ALGORITHM_NOT_ALLOWED].
7. ``kid`` selects the key, and only ``kid``: ``jku``, ``x5u``, ``x5c`` and an
   embedded ``jwk`` are never read (RFC 8725 §3.10: following them "could
   result in server-side request forgery (SSRF) attacks"; CVE-2018-0114)
   [TOKEN_KEY_UNKNOWN when absent and required, TOKEN_MALFORMED when not a
   string - including ``null`` where a token may omit ``kid``: an explicit
   null must not select a one-key set's only key].

:func:`verify_signature` then checks the header's ``alg`` against the one
algorithm of the selected key (RFC 8725 §3.1; PyJWT CVE-2026-48523)
[TOKEN_ALGORITHM_NOT_ALLOWED] and the signature over ``ASCII(header '.'
payload)`` [TOKEN_SIGNATURE_INVALID]. :func:`parse_claims` reads the payload
as the JWT Claims Set only after that, strictly and depth-bounded.

Check order. Every token refused by one order is refused by the other; only
the reason of a token with several faults can differ. By default the three
segments are decoded before the header is read (cheapest first: one scan of
the token for ``=``, ``+`` and ``/``); ``header_first`` reads and checks the
header before decoding payload and signature, in the order of RFC 7515 §5.2
steps 2-7, which the control plane's own-token verifier has always reported.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from agentauth._jose._encoding import (
    MAX_JSON_DEPTH,
    b64url_decode,
    check_depth,
    decode_checked,
    loads_strict,
)
from agentauth._jose._errors import JoseError, TokenReason
from agentauth._jose._jwk import ALGORITHMS, VerificationKey

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "HeaderMemo",
    "ParsedJws",
    "Typ",
    "parse_claims",
    "parse_compact",
    "typ_allowed",
    "verify_signature",
]

#: RFC 9068 §2.1 media types of a JWT access token, compared case-insensitively (RFC 2045).
ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
# Header parameters that change how the token must be processed; we implement
# none of them: crit (RFC 7515 §4.1.11), zip/enc (JWE, RFC 7516), b64 (RFC 7797).
_UNSUPPORTED_HEADERS: Final = ("crit", "zip", "enc", "b64")
_R: Final = TokenReason
#: Bounds of a caller's header memo (see :func:`parse_compact`): entries, and
#: the longest header segment kept (ours are ~100 characters).
_MEMO_ENTRIES: Final = 64
_MEMO_SEGMENT: Final = 512

#: A caller's memo of header segments that passed :func:`parse_compact`'s
#: header checks, with what they yielded: ``(alg, kid, header)``.
HeaderMemo = MutableMapping[str, tuple[str, str, Mapping[str, Any]]]


class Typ(enum.Enum):
    """What the ``typ`` header must (not) say."""

    #: Any ``typ``, or none: the caller tells token kinds apart by other means.
    ANY = "any"
    #: RFC 9068 §4: an access token; ``typ`` must be ``at+jwt`` / ``application/at+jwt``.
    ACCESS_TOKEN = "access-token"
    #: RFC 8725 §3.11 / §3.12: anything but an access token (a workload
    #: identity, a client assertion, an ID token).
    NOT_ACCESS_TOKEN = "not-access-token"


def typ_allowed(typ: object, policy: Typ) -> bool:
    """Whether a header's ``typ`` value passes ``policy``."""
    if policy is Typ.ANY:
        return True
    is_access_token = isinstance(typ, str) and typ.lower() in ACCESS_TOKEN_TYPES
    return is_access_token is (policy is Typ.ACCESS_TOKEN)


class ParsedJws(NamedTuple):
    """A compact JWS whose structure and header passed every check; nothing verified yet.

    (A named tuple, not a frozen dataclass: one is built per token parsed.)
    """

    alg: str
    #: ``""`` when the token has none (only when the caller allowed that).
    kid: str
    signing_input: bytes
    payload: bytes
    signature: bytes
    header: Mapping[str, Any]


def _malformed(detail: str) -> JoseError:
    return JoseError(_R.TOKEN_MALFORMED, detail)


def _header_object(raw: bytes) -> dict[str, Any]:
    try:
        value = loads_strict(raw)
    except (ValueError, RecursionError):
        # UnicodeDecodeError, JSONDecodeError and duplicates are ValueErrors;
        # so is an integer beyond Python's digit limit.
        raise _malformed("header is not strict JSON") from None
    if not isinstance(value, dict):
        raise _malformed("header is not a JSON object")
    return value


def _check_header(
    header: Mapping[str, Any], algorithms: frozenset[str], typ: Typ, require_kid: bool
) -> tuple[str, str]:
    if typ is not Typ.ANY and not typ_allowed(header.get("typ"), typ):
        raise JoseError(_R.TOKEN_TYPE_INVALID, "typ refused by policy")
    for name in _UNSUPPORTED_HEADERS:
        if name in header:
            raise _malformed(f"{name} not supported")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _malformed("alg missing or not a string")
    # The second test holds even for a caller that built its set without
    # algorithm_set(): "none", HS* and the rest are not algorithms of ours.
    if alg not in algorithms or alg not in ALGORITHMS:
        raise JoseError(_R.TOKEN_ALGORITHM_NOT_ALLOWED, "alg not allowed")
    kid = header.get("kid")
    if kid is None:
        if require_kid:
            raise JoseError(_R.TOKEN_KEY_UNKNOWN, "kid missing")
        if "kid" in header:  # null is not "no kid": it must not select a lone key
            raise _malformed("kid is null")
        return alg, ""
    if not isinstance(kid, str):
        raise _malformed("kid is not a string")
    return alg, kid


def parse_compact(
    token: object,
    *,
    algorithms: frozenset[str],
    max_bytes: int,
    typ: Typ = Typ.ANY,
    require_kid: bool = True,
    header_first: bool = False,
    header_memo: HeaderMemo | None = None,
) -> ParsedJws:
    """Split, decode and check a compact JWS (steps 1-7 above); nothing is verified yet.

    ``algorithms`` is the caller's configured set (see
    :func:`~agentauth._jose.algorithm_set`); ``max_bytes`` the size cap.
    Without ``require_kid`` a token may omit ``kid`` (see
    :func:`~agentauth._jose.select_key`). ``header_first`` selects the
    check order described in the module docstring.

    ``header_memo``, a dict owned by one caller that always passes the same
    ``algorithms``, ``typ`` and ``require_kid``, remembers header segments
    that passed steps 3-7 (an issuer puts the same header on every token):
    the verdict on a segment is a function of its text and that
    configuration only, so a remembered one is not decoded and parsed again.
    It holds at most 64 segments of at most 512 characters, read-only.
    """
    if not isinstance(token, str):
        raise _malformed("token is not text")
    if len(token) > max_bytes:
        raise _malformed("token exceeds the size limit")
    if not token.isascii():
        raise _malformed("token is not ASCII")
    header: Mapping[str, Any]
    if header_first:
        parts = token.split(".")
        if len(parts) != 3:
            raise _malformed("not three segments (compact JWS only)")
        header_b64, payload_b64, signature_b64 = parts
        if not header_b64:
            raise _malformed("empty header")
        try:
            header = _header_object(b64url_decode(header_b64))
        except ValueError:
            raise _malformed("header is not canonical base64url") from None
        alg, kid = _check_header(header, algorithms, typ, require_kid)
        if not payload_b64 or not signature_b64:
            raise _malformed("empty payload or signature")
        try:
            payload = b64url_decode(payload_b64)
            signature = b64url_decode(signature_b64)
        except ValueError:
            raise _malformed("payload or signature is not canonical base64url") from None
    else:
        # One scan each for the characters the translation to the standard
        # alphabet would otherwise let through as valid.
        if "=" in token or "+" in token or "/" in token:
            raise _malformed("not base64url")
        parts = token.split(".")
        if len(parts) != 3:
            raise _malformed("not three segments (compact JWS only)")
        header_b64, payload_b64, signature_b64 = parts
        known = header_memo.get(header_b64) if header_memo is not None else None
        try:
            header_raw = decode_checked(header_b64) if known is None else b""
            payload = decode_checked(payload_b64)
            signature = decode_checked(signature_b64)
        except ValueError:
            raise _malformed("a segment is empty or not canonical base64url") from None
        if known is not None:
            alg, kid, header = known
        else:
            parsed_header = _header_object(header_raw)
            alg, kid = _check_header(parsed_header, algorithms, typ, require_kid)
            header = parsed_header
            if header_memo is not None and len(header_b64) <= _MEMO_SEGMENT:
                if len(header_memo) >= _MEMO_ENTRIES:
                    header_memo.clear()  # a flood of distinct headers costs no memory
                header = MappingProxyType(parsed_header)
                header_memo[header_b64] = (alg, kid, header)
    signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
    return ParsedJws(alg, kid, signing_input, payload, signature, header)


def verify_signature(parsed: ParsedJws, key: VerificationKey) -> None:
    """Check ``parsed`` against the key its ``kid`` selected; JoseError if it fails.

    RFC 8725 §3.1: the header's ``alg`` must be the key's one algorithm
    (CVE-2026-48523: checking the allow-list but verifying with another alg).
    """
    if parsed.alg != key.alg:
        raise JoseError(_R.TOKEN_ALGORITHM_NOT_ALLOWED, "alg is not the key's algorithm")
    if not key.verify(parsed.signing_input, parsed.signature):
        raise JoseError(_R.TOKEN_SIGNATURE_INVALID, "signature check failed")


def parse_claims(payload: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """RFC 7519 §7.2 step 10: the JWT Claims Set, "a completely valid JSON object".

    Strict JSON (no duplicate names, NaN or overflowing numbers), nested no
    deeper than ``max_depth``. Call it after :func:`verify_signature`.
    """
    try:
        claims = loads_strict(payload)
    except (ValueError, RecursionError):
        raise _malformed("payload is not strict JSON") from None
    if not isinstance(claims, dict):
        raise _malformed("payload is not a JSON object")
    # A container count within the limit bounds the depth too, and is one C
    # scan; only payloads with many objects or arrays need the walk.
    if payload.count(b"{") + payload.count(b"[") > max_depth and not check_depth(claims, max_depth):
        raise _malformed("payload nests too deeply")
    return claims
