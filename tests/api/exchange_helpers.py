"""Scaffolding shared by the token-endpoint attack suite and the OAuth interop suite.

A :class:`World` is one org with one agent whose WORKLOAD_TOKEN trust policy
trusts a loopback Kubernetes issuer (namespace ``billing``, service account
``billing-agent``, audience ``agentauth``), plus helpers to send
ExchangeToken over gRPC or POST /oauth2/token over HTTP and to assert that a
refused request left every table exactly as it was.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from control_plane.sandbox import KubernetesIssuer
from control_plane.sandbox.kubernetes_issuer import JWKS_PATH

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
API = "https://api.internal.example"
AUDIENCE = "agentauth"
NAMESPACE = "billing"
SA_NAME = "billing-agent"
SCOPES = ("invoices:read", "invoices:write")
# RFC 9068 §2.2 plus our org_id / scope / nbf: exactly what a minted token carries.
MINTED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "org_id", "client_id", "scope", "jti", "iat", "nbf", "exp"}
)


def b64(data: bytes | str | Mapping[str, Any]) -> str:
    """base64url without padding of bytes, text, or a dict serialised compactly."""
    if isinstance(data, Mapping):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(
    header: bytes | Mapping[str, Any], claims: bytes | Mapping[str, Any], signature: bytes = b""
) -> str:
    """A compact JWS from raw parts, no signing: for alg none and garbage signatures."""
    return f"{b64(header)}.{b64(claims)}.{b64(signature)}"


def sign_raw(k8s: KubernetesIssuer, header: bytes, payload: bytes) -> str:
    """Sign arbitrary header/payload *bytes* with the emulator's current key.

    ``KubernetesIssuer.sign`` serialises a dict, which cannot express duplicate
    members, ``1e309`` or invalid UTF-8; those need the raw signing input.
    """
    key = k8s._keys[-1]  # the emulator's current signing key (test-only access)
    signing_input = f"{b64(header)}.{b64(payload)}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64(key.sign(signing_input))}"


def rsa_private_key_of(k8s: KubernetesIssuer) -> rsa.RSAPrivateKey:
    key = k8s._keys[-1].private_key  # test-only access, to sign with another RSA scheme
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def k8s_policy(k8s: KubernetesIssuer, **overrides: Any) -> dict[str, Any]:
    return {
        "kind": trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
        "issuer": k8s.issuer,
        "discovery_url": k8s.issuer + "/.well-known/openid-configuration",
        "audience": AUDIENCE,
        "claim_equals": {
            "kubernetes.io.namespace": NAMESPACE,
            "kubernetes.io.serviceaccount.name": SA_NAME,
        },
        **overrides,
    }


async def setup_agent(
    client: ControlPlaneClient, org: str, display_name: str = "billing agent", **policy_fields: Any
) -> tuple[pb.Agent, pb.ServiceAccount, trust.TrustPolicy]:
    agent = (
        await client.admin.RegisterAgent(
            pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name=display_name))
        )
    ).agent
    sa = (
        await client.admin.CreateServiceAccount(
            pb.CreateServiceAccountRequest(
                parent=org,
                service_account=pb.ServiceAccount(
                    display_name=display_name, purpose=f"p-{secrets.token_hex(4)}"
                ),
            )
        )
    ).service_account
    fields = {
        "service_accounts": [sa.name],
        "scopes": list(SCOPES),
        "audiences": [API],
        **policy_fields,
    }
    policy = (
        await client.admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(parent=agent.name, trust_policy=trust.TrustPolicy(**fields))
        )
    ).trust_policy
    return agent, sa, policy


def ec_key(kid: str = "agent-key-1") -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    """A fresh P-256 key and its public JWK (kid, alg ES256, use sig)."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk_ = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk_.update(kid=kid, alg="ES256", use="sig")
    return key, jwk_


def rsa_key(kid: str = "agent-rsa-1") -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk_ = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk_.update(kid=kid, alg="RS256", use="sig")
    return key, jwk_


async def post_form(
    url: str, data: Any, headers: Mapping[str, str] | None = None
) -> tuple[int, Mapping[str, str], Any]:
    """POST and return (status, headers, parsed JSON body or raw text)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=data, headers=dict(headers or {})) as r:
            text = await r.text()
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = text
            return r.status, r.headers.copy(), body


def assert_oauth_error(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    want_status: int,
    error: str,
    challenge: str = "Bearer",
) -> None:
    """RFC 6749 §5.2: JSON ``error`` (+ ``error_description``), never cached; a 401
    challenges in the scheme the client used (``challenge``)."""
    assert status == want_status, body
    assert isinstance(body, dict) and body["error"] == error, body
    assert isinstance(body.get("error_description", ""), str)
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"].startswith("application/json")
    if want_status == 401:
        assert headers["WWW-Authenticate"].split(" ", 1)[0] == challenge


@dataclass
class World:
    harness: Any
    org: str
    admin: ControlPlaneClient
    admin_key: str
    k8s: KubernetesIssuer
    agent: pb.Agent
    sa: pb.ServiceAccount
    policy: trust.TrustPolicy
    _anon: ControlPlaneClient | None = field(default=None, repr=False)

    @property
    def tokens(self) -> Any:
        if self._anon is None:
            self._anon = self.harness.client(None)
        return self._anon.tokens

    @property
    def issuer(self) -> str:
        """agentauth's own issuer URL."""
        return str(self.harness.servers.tokens.issuer)

    @property
    def token_url(self) -> str:
        return self.harness.http + "/oauth2/token"

    @property
    def jwks_fetches(self) -> int:
        return self.k8s.requests[JWKS_PATH]

    def workload(self, **kw: Any) -> str:
        """A projected token the policy admits, with ``kw`` overriding issue() arguments."""
        args: dict[str, Any] = {
            "namespace": NAMESPACE,
            "service_account": SA_NAME,
            "audiences": [AUDIENCE],
            "ttl": 600,
        }
        args.update(kw)
        return self.k8s.issue(**args)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """The claims of a token the policy admits; an override of None removes one."""
        now = int(time.time())
        base: dict[str, Any] = {
            "aud": [AUDIENCE],
            "exp": now + 600,
            "iat": now,
            "nbf": now,
            "iss": self.k8s.issuer,
            "jti": secrets.token_hex(8),
            "kubernetes.io": {
                "namespace": NAMESPACE,
                "serviceaccount": {"name": SA_NAME, "uid": "8c1d5e2a"},
            },
            "sub": f"system:serviceaccount:{NAMESPACE}:{SA_NAME}",
        }
        for name, value in overrides.items():
            if value is None:
                base.pop(name, None)
            else:
                base[name] = value
        return base

    def header(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"alg": "RS256", "kid": self.k8s.key_id, "typ": "JWT"}
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def request(self, **fields: Any) -> tpb.ExchangeTokenRequest:
        base: dict[str, Any] = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token_type": JWT_TYPE,
            "organization": self.org,
        }
        base.update(fields)
        return tpb.ExchangeTokenRequest(**base)

    async def exchange(self, **fields: Any) -> tpb.ExchangeTokenResponse:
        return await self.tokens.ExchangeToken(self.request(**fields))

    async def refused(self, exc_type: type[Exception], reason: str, **fields: Any) -> Any:
        """ExchangeToken fails with ``exc_type``/``reason`` and writes nothing."""
        before = await self.harness.snapshot()
        with pytest.raises(exc_type) as err:
            await self.exchange(**fields)
        assert err.value.reason == reason, err.value  # type: ignore[attr-defined]
        assert await self.harness.snapshot() == before
        return err.value

    def form(self, **fields: str) -> dict[str, str]:
        base = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token_type": JWT_TYPE,
            "organization": self.org,
        }
        base.update(fields)
        return base

    async def http_refused(self, status: int, error: str, data: Any, **kw: Any) -> Any:
        """POST /oauth2/token fails with the RFC 6749 §5.2 body and writes nothing."""
        before = await self.harness.snapshot()
        got = await post_form(self.token_url, data, **kw)
        assert_oauth_error(*got, status, error)
        assert await self.harness.snapshot() == before
        return got[2]


async def open_world(harness: Any, k8s: KubernetesIssuer, **policy: Any) -> World:
    org, admin, admin_key = await harness.new_org()
    agent, sa, pol = await setup_agent(admin, org, **k8s_policy(k8s, **policy))
    return World(harness, org, admin, admin_key, k8s, agent, sa, pol)


async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client (requests, Authlib) off the loop the server runs on."""
    return await asyncio.to_thread(fn, *args, **kwargs)
