"""Test material for the SDK's token validator: fixed throwaway keys, a fake clock, a JWKS spy.

The keys are fixed, with their private halves here, so that attack tokens can
be kept as literals in the tests and still carry valid signatures (the attack
must be the only thing wrong with them). They are throwaway keys generated
for these tests and used nowhere else. Time is frozen at ``NOW`` by
:class:`FakeClock`; tokens built here are valid from ``NOW - 10`` to ``NOW + 300``.

Test modules import the helpers from ``tests.sdk.conftest`` (pytest registers
this file under that name, so the import yields the same module).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from agentauth._errors import AgentAuthError
from agentauth._validator import AsyncTokenValidator, TokenValidator
from agentauth._validator_errors import (
    JwksUnavailableError,
    RevocationsUnavailableError,
    TokenForbiddenError,
    TokenInvalidError,
    TokenReason,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

NOW = 1_900_000_000
ISSUER = "https://issuer.example"
AUDIENCE = "https://api.example"
JWKS_URL = "https://issuer.example/.well-known/jwks.json"
ORG = "0123456789abcdef0123456789abcdef"
OTHER_ORG = "fedcba9876543210fedcba9876543210"
SUBJECT = f"orgs/{ORG}/users/u-1"
CLIENT_ID = f"orgs/{ORG}/agents/{'a' * 32}"
SUBAGENT = f"orgs/{ORG}/agents/{'b' * 32}"
SCOPES = "tools.execute mail.read"

#: Marks a claim or header member to leave out.
DROP: Any = object()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True)
class KeyPair:
    """A throwaway signing key, its public JWK (kid = RFC 7638 thumbprint) and algorithm."""

    alg: str
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = field(repr=False)
    jwk: dict[str, str] = field(repr=False)

    @property
    def kid(self) -> str:
        return self.jwk["kid"]

    @classmethod
    def es256(cls, d: str) -> KeyPair:
        private = ec.derive_private_key(int.from_bytes(_b64url_decode(d), "big"), ec.SECP256R1())
        numbers = private.public_key().public_numbers()
        members = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
        return cls("ES256", private, _with_kid(members, alg="ES256"))

    @classmethod
    def ed25519(cls, d: str) -> KeyPair:
        private = ed25519.Ed25519PrivateKey.from_private_bytes(_b64url_decode(d))
        members = {
            "crv": "Ed25519",
            "kty": "OKP",
            "x": b64url(private.public_key().public_bytes_raw()),
        }
        return cls("EdDSA", private, _with_kid(members, alg="EdDSA"))

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature (ES256: R || S, RFC 7518 §3.4)."""
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self.private.sign(signing_input)


def _with_kid(members: dict[str, str], *, alg: str) -> dict[str, str]:
    # RFC 7638 §3.2: the required members, lexicographic order, no whitespace.
    thumbprint = hashlib.sha256(json.dumps(members, sort_keys=True, separators=(",", ":")).encode())
    return {**members, "kid": b64url(thumbprint.digest()), "alg": alg, "use": "sig"}


OUR_ES256 = KeyPair.es256("VEam9m_-UqkXlxrvHXsI1xzjH9s4MUj5exYP4hov8Mc")
NEXT_ES256 = KeyPair.es256("I-p8vErFMK20qdYxfnWbnHadzIWFKYruH4ITvZBZTgU")
ATTACKER_ES256 = KeyPair.es256("cZYnYFSYEjc9ODel_leNFw3qDzbiJXsj8bMS0-okG58")
OUR_ED25519 = KeyPair.ed25519("yjhg7b4SI2MPpBvJZgV4511Ir8EdWmA1IlubwWoWrE8")
ATTACKER_ED25519 = KeyPair.ed25519("TZdsOAySEAXpHMWA2K6zVion41xKY_7KpPmTlYrd26I")


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid claims set at ``NOW`` (delegated: user subject, one agent acting); DROP removes."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "org_id": ORG,
        "client_id": CLIENT_ID,
        "scope": SCOPES,
        "jti": "jti-0001",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 300,
        "act": {"sub": CLIENT_ID},
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not DROP}


def header(key: KeyPair = OUR_ES256, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not DROP}


def sign(head: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, key: KeyPair) -> str:
    """A compact JWS over exactly these header and payload bytes (dicts are JSON-encoded)."""
    head_b64 = b64url(head if isinstance(head, bytes) else compact_json(head))
    payload_b64 = b64url(payload if isinstance(payload, bytes) else compact_json(payload))
    signing_input = f"{head_b64}.{payload_b64}".encode()
    return f"{head_b64}.{payload_b64}.{b64url(key.sign(signing_input))}"


def token(
    key: KeyPair = OUR_ES256, *, headers: dict[str, Any] | None = None, **claim_overrides: Any
) -> str:
    """A token signed by PyJWT, as an issuer using the stack's library would."""
    head = header(key, **(headers or {}))
    alg = head.pop("alg", key.alg)
    # PyJWT adds typ "JWT" unless told otherwise; an empty typ makes it drop the member.
    head.setdefault("typ", "")
    return jwt.encode(claims(**claim_overrides), key.private, algorithm=alg, headers=head)


def jwks(*keys: KeyPair, extra: list[dict[str, Any]] | None = None) -> bytes:
    return compact_json({"keys": [key.jwk for key in keys] + list(extra or [])})


class FakeClock:
    """Injected time: starts at ``NOW`` and moves only when told to."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FetchSpy:
    """An injectable JWKS fetcher that records every request, with fault injection."""

    def __init__(self, *keys: KeyPair) -> None:
        self.calls: list[str] = []
        self.body = jwks(*keys)
        self.error: Exception | None = None
        self.delay = 0.0
        self._lock = threading.Lock()

    def publish(self, *keys: KeyPair) -> None:
        self.body = jwks(*keys)

    def __call__(self, url: str) -> bytes:
        with self._lock:
            self.calls.append(url)
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.body


def _expected_class(reason: str) -> type[AgentAuthError]:
    if reason in (TokenReason.TOKEN_SCOPE_INSUFFICIENT, TokenReason.TOKEN_ORG_MISMATCH):
        return TokenForbiddenError
    if reason == TokenReason.JWKS_UNAVAILABLE:
        return JwksUnavailableError
    if reason == TokenReason.REVOCATIONS_UNAVAILABLE:
        return RevocationsUnavailableError
    return TokenInvalidError


def check_refusal(err: BaseException, reason: str, bearer: object) -> AgentAuthError:
    """``err`` is the typed refusal for ``reason`` and does not echo the token."""
    assert isinstance(err, AgentAuthError), repr(err)
    assert err.reason == reason, f"expected {reason}, got {err.reason}"
    expected = _expected_class(reason)
    assert type(err) is expected
    assert err.code is expected.grpc_code
    assert err.domain == "agentauth"
    assert err.message
    if isinstance(bearer, str) and bearer:
        for text in (str(err), repr(err), err.message, *err.metadata.values()):
            assert bearer not in text
            # Nor any of its segments (e.g. the payload).
            assert not any(len(part) > 8 and part in text for part in bearer.split("."))
    return err


def refused(validator: TokenValidator, bearer: Any, reason: str, **kwargs: Any) -> AgentAuthError:
    with pytest.raises(AgentAuthError) as info:
        validator.validate(bearer, **kwargs)
    return check_refusal(info.value, reason, bearer)


async def refused_async(
    validator: AsyncTokenValidator, bearer: Any, reason: str, **kwargs: Any
) -> AgentAuthError:
    with pytest.raises(AgentAuthError) as info:
        await validator.validate(bearer, **kwargs)
    return check_refusal(info.value, reason, bearer)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fetch() -> FetchSpy:
    return FetchSpy(OUR_ES256, OUR_ED25519)


MakeValidator = Callable[..., TokenValidator]
MakeAsyncValidator = Callable[..., AsyncTokenValidator]


@pytest.fixture
def make_validator(clock: FakeClock, fetch: FetchSpy) -> MakeValidator:
    def make(**kwargs: Any) -> TokenValidator:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("fetch", fetch)
        return TokenValidator(
            kwargs.pop("issuer", ISSUER), kwargs.pop("audience", AUDIENCE), **kwargs
        )

    return make


@pytest.fixture
def make_async_validator(clock: FakeClock, fetch: FetchSpy) -> MakeAsyncValidator:
    def make(**kwargs: Any) -> AsyncTokenValidator:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("fetch", fetch)
        return AsyncTokenValidator(
            kwargs.pop("issuer", ISSUER), kwargs.pop("audience", AUDIENCE), **kwargs
        )

    return make


@pytest.fixture
def validator(make_validator: MakeValidator) -> TokenValidator:
    """ES256 only, the default configuration."""
    return make_validator()


@pytest.fixture
def async_validator(make_async_validator: MakeAsyncValidator) -> AsyncTokenValidator:
    return make_async_validator()


@pytest.fixture
def both_algorithms(make_validator: MakeValidator) -> TokenValidator:
    return make_validator(algorithms=("ES256", "EdDSA"))


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 that records every request it gets.

    ``routes`` maps a path to ``(status, headers, body)``; ``delay`` stalls
    every answer (to exercise the fetch timeout).
    """

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.delay = 0.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.hits.append(self.path)
                if server.delay:
                    time.sleep(server.delay)
                status, headers, body = server.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
