"""The SDK validator and the control plane's own JWS verifier agree (one suite, two implementations).

The server publishes keys with ``control_plane.tokens.jwk`` and verifies with
``control_plane.tokens.jws.verify_compact``; a token one of them refuses at the
JWS layer must be refused by the other. The server's finer-grained check names
(TOKEN_TOO_LARGE, TOKEN_HEADER_UNSUPPORTED, TOKEN_KEY_MISMATCH) send the shared
reasons TOKEN_MALFORMED / TOKEN_ALGORITHM_NOT_ALLOWED on the wire; the test at
the end pins that every reason the server can send is in the SDK's vocabulary.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentauth._errors import AgentAuthError
from agentauth._validator import TokenValidator
from agentauth._validator_keys import parse_jwks

from control_plane.tokens import jwk as server_jwk
from control_plane.tokens import jws as server_jws
from tests.sdk.conftest import OUR_ED25519, OUR_ES256, KeyPair, token
from tests.sdk.test_validator_rfc8725 import (
    _ecdsa_edge_signatures,
    _malformed_cases,
    _with_signature,
)

SERVER_KEYS = {"keys": [OUR_ES256.jwk, OUR_ED25519.jwk]}


@pytest.mark.parametrize("key", [OUR_ES256, OUR_ED25519], ids=lambda k: k.alg)
def test_server_published_jwk_is_understood_by_the_sdk(key: KeyPair) -> None:
    public = server_jwk.public_jwk_from_key(key.private.public_key())
    kid = server_jwk.thumbprint(public)
    assert kid == key.kid
    published = server_jwk.load_jwks({"keys": [{**public, "kid": kid}]}).to_dict()
    parsed = parse_jwks(json.dumps(published).encode(), frozenset({key.alg}))
    assert parsed[kid].alg == key.alg


def _jws_layer_cases() -> dict[str, str]:
    # Payload-level cases are the claims layer's business on the server side.
    cases = {
        name: value
        for name, value in _malformed_cases().items()
        if isinstance(value, str) and not name.startswith("payload-")
    }
    good = token()
    for name, signature in _ecdsa_edge_signatures().items():
        cases[f"signature-{name}"] = _with_signature(good, signature)
    return cases


def _sdk_accepts(validator: TokenValidator, bearer: str) -> bool:
    try:
        validator.validate(bearer)
    except AgentAuthError:
        return False
    return True


def _server_accepts(bearer: str) -> bool:
    try:
        server_jws.verify_compact(bearer, SERVER_KEYS, algorithms=["ES256", "EdDSA"])
    except server_jws.TokenInvalid:
        return False
    return True


@pytest.mark.parametrize("name", sorted(_jws_layer_cases()))
def test_server_and_sdk_refuse_the_same_malformed_tokens(
    both_algorithms: TokenValidator, name: str
) -> None:
    bearer = _jws_layer_cases()[name]
    assert not _server_accepts(bearer)
    assert not _sdk_accepts(both_algorithms, bearer)


@pytest.mark.parametrize("key", [OUR_ES256, OUR_ED25519], ids=lambda k: k.alg)
def test_server_and_sdk_accept_the_same_valid_tokens(
    both_algorithms: TokenValidator, key: KeyPair
) -> None:
    extra: dict[str, Any] = {"txn": "t-1", "aud": ["https://api.example", "https://b.example"]}
    bearer = token(key, **extra)
    assert _server_accepts(bearer)
    assert _sdk_accepts(both_algorithms, bearer)


def test_every_server_token_reason_is_in_the_sdk_vocabulary() -> None:
    import inspect

    from agentauth import TokenReason
    from control_plane.services import own_tokens
    from control_plane.tokens import jws

    vocabulary = {v for k, v in vars(TokenReason).items() if k.isupper()}
    server = {v for k, v in vars(jws).items() if k.startswith("TOKEN_") and isinstance(v, str)}
    source = inspect.getsource(own_tokens)
    server |= {word.strip('"') for word in source.split() if word.startswith('"TOKEN_')}
    server = {r.rstrip('")') for r in server}
    assert server and server <= vocabulary, server - vocabulary
