"""agentauth's one JOSE verification core: compact JWS, public JWKs, registered claims.

Every JWT agentauth accepts goes through this package - in the SDK,
:class:`agentauth.TokenValidator`; in the control plane, its own access
tokens (``control_plane.tokens.jws``), workload tokens from Kubernetes,
SPIFFE and OIDC issuers, RFC 7523 client assertions and identity-provider
user assertions. The next JOSE advisory is fixed here, once.

Why it lives in the SDK package, and why under a private name:

* The SDK must stay installable alone (``pip install ./clients/python``,
  checked by ``.ci/run``) and the control plane already depends on the SDK
  (the shared :class:`TokenReason` vocabulary), so the only place both can
  import one implementation from is here. These modules import nothing but
  the standard library and ``cryptography`` (``tests/sdk/test_jose_core.py``
  pins it): no grpc, no PyJWT, no server code.
* It is a leading-underscore package because it is not part of the SDK's
  public facade (``agentauth.__all__``, pinned by a test): application code
  validates tokens with ``TokenValidator``. Its surface is nevertheless
  stable and documented, because the control plane - shipped from the same
  repository, at the same version - builds on it. That surface is exactly
  ``__all__`` below; the underscore submodules are implementation.
* There is no clock inside: :func:`check_claims` takes ``now``. The server
  passes ``Clock.now()``, the SDK its ``clock()``; wall-clock time never
  enters a verification.

Surface (RFC 7515/7517/7518/7519/8037/8725; each function quotes its RFC):

========================  =========================================================
:func:`parse_compact`     strict compact-JWS parsing: size cap, canonical base64url,
                          strict JSON, ``typ`` policy (:class:`Typ`), ``crit``/``zip``/
                          ``enc``/``b64`` refused, ``alg`` from configuration, ``kid``
                          (optionally remembering checked headers: :data:`HeaderMemo`)
:func:`parse_jwk`         a public JWK (RSA >= 2048 bits, EC P-256/384/521, Ed25519)
                          as a :class:`VerificationKey` bound to exactly one algorithm
:func:`select_key`        the key by ``kid`` only (a one-key set without ``kid``
                          where the caller allows it)
:func:`verify_signature`  header ``alg`` == the key's algorithm, then the signature
:func:`parse_claims`      the payload as a strict, depth-bounded JSON object
:func:`check_claims`      ``exp``/``nbf``/``iat`` against ``now`` with a bounded
                          leeway, NumericDate types, exact ``iss``, ``aud``, required
:func:`algorithm_set`     validates configured algorithm lists
:func:`b64url_decode` ... the strict encodings, for callers that read JOSE members
========================  =========================================================

Failures raise :class:`JoseError` (``reason`` is a :class:`TokenReason`) for
tokens and :class:`JwkError` for keys; each caller maps them to its own
errors without changing the reason.
"""

from agentauth._jose._claims import (
    MAX_LEEWAY,
    MAX_NUMERIC_DATE,
    CheckedClaims,
    check_claims,
    numeric_date,
)
from agentauth._jose._encoding import (
    MAX_JSON_DEPTH,
    DuplicateMemberError,
    b64url_decode,
    b64url_encode,
    loads_strict,
)
from agentauth._jose._errors import JoseError, JwkError, TokenReason
from agentauth._jose._jwk import (
    ALGORITHMS,
    MAX_KID_LENGTH,
    PRIVATE_MEMBERS,
    PublicKeyType,
    VerificationKey,
    algorithm_set,
    parse_jwk,
    select_key,
)
from agentauth._jose._jws import (
    ACCESS_TOKEN_TYPES,
    HeaderMemo,
    ParsedJws,
    Typ,
    parse_claims,
    parse_compact,
    typ_allowed,
    verify_signature,
)

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "ALGORITHMS",
    "MAX_JSON_DEPTH",
    "MAX_KID_LENGTH",
    "MAX_LEEWAY",
    "MAX_NUMERIC_DATE",
    "PRIVATE_MEMBERS",
    "CheckedClaims",
    "DuplicateMemberError",
    "HeaderMemo",
    "JoseError",
    "JwkError",
    "ParsedJws",
    "PublicKeyType",
    "TokenReason",
    "Typ",
    "VerificationKey",
    "algorithm_set",
    "b64url_decode",
    "b64url_encode",
    "check_claims",
    "loads_strict",
    "numeric_date",
    "parse_claims",
    "parse_compact",
    "parse_jwk",
    "select_key",
    "typ_allowed",
    "verify_signature",
]
