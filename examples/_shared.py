"""What the examples share: where the server is, printing steps, and two stand-ins
for things that are not code in real life (a kubelet writing a workload token, a
person clicking "Allow" in a browser).

Environment (every example):
    AGENTAUTH_GRPC_TARGET  gRPC address of the control plane   (default 127.0.0.1:50051)
    AGENTAUTH_HTTP_URL     its HTTP base URL                    (default http://127.0.0.1:8080)
    AGENTAUTH_ADMIN_KEY    a platform admin key (`./scripts/serve` prints one on first start)
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin

import aiohttp
from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import trust_policy_pb2 as trust

GRPC_TARGET = os.environ.get("AGENTAUTH_GRPC_TARGET", "127.0.0.1:50051")
HTTP_URL = os.environ.get("AGENTAUTH_HTTP_URL", "http://127.0.0.1:8080").rstrip("/")
#: The sandbox cluster issuer (`python -m control_plane.sandbox kubernetes --port 8701`).
K8S_ISSUER_URL = os.environ.get("K8S_ISSUER_URL", "http://127.0.0.1:8701").rstrip("/")


def admin_key() -> str:
    key = os.environ.get("AGENTAUTH_ADMIN_KEY", "")
    if not key:
        sys.exit("set AGENTAUTH_ADMIN_KEY to the admin key `./scripts/serve` printed")
    return key


def step(message: str) -> None:
    print(f"- {message}", flush=True)


def check(condition: bool, message: str) -> None:
    """Stop the example with exit status 1 when something is not as expected."""
    if not condition:
        sys.exit(f"FAILED: {message}")


def unique(prefix: str) -> str:
    """A fresh name, so an example can run many times against one server."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def claims(token: str) -> dict[str, Any]:
    """A JWT's payload, decoded for display only: services verify with TokenValidator."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


async def issuer() -> str:
    """The control plane's issuer URL, from its RFC 8414 metadata."""
    async with aiohttp.ClientSession() as http:
        async with http.get(HTTP_URL + "/.well-known/oauth-authorization-server") as resp:
            resp.raise_for_status()
            return str((await resp.json())["issuer"])


async def kubernetes_workload_token(
    issuer_url: str, namespace: str, service_account: str, audience: str
) -> str:
    """A projected service-account token, minted by the sandbox Kubernetes issuer
    (`python -m control_plane.sandbox kubernetes`). In a cluster the kubelet writes
    this file into the pod instead."""
    body = {"namespace": namespace, "service_account": service_account, "audiences": [audience]}
    async with aiohttp.ClientSession() as http:
        async with http.post(issuer_url + "/issue", json=body) as resp:
            resp.raise_for_status()
            return str((await resp.json())["token"])


async def workload_agents(
    admin: ControlPlaneClient,
    org: str,
    agents: Mapping[str, tuple[Sequence[str], Sequence[str]]],
) -> dict[str, str]:
    """Register each agent ``name -> (scopes, audiences)`` of ``org`` and trust it as
    the pod tokens of service account agents/NAME from the sandbox cluster issuer,
    addressed to "agentauth", acting as the org's service account (workload_identity.py
    walks through a trust policy field by field). Returns name -> the agent's resource
    name."""
    sa = (
        (await admin.admin.ListServiceAccounts(pb.ListServiceAccountsRequest(parent=org)))
        .service_accounts[0]
        .name
    )
    registered: dict[str, str] = {}
    for name, (scopes, audiences) in agents.items():
        registered[name] = (
            await admin.admin.RegisterAgent(
                pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name=name))
            )
        ).agent.name
        await admin.admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(
                parent=registered[name],
                trust_policy=trust.TrustPolicy(
                    kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
                    issuer=K8S_ISSUER_URL,
                    discovery_url=K8S_ISSUER_URL + "/.well-known/openid-configuration",
                    audience="agentauth",
                    subject=f"system:serviceaccount:agents:{name}",
                    service_accounts=[sa],
                    scopes=list(scopes),
                    audiences=list(audiences),
                ),
            )
        )
    return registered


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="?{name}"? value="([^"]+)"', page)
    check(found is not None, f"no {name!r} field on the page")
    assert found is not None
    return html.unescape(found.group(1))


async def click_through_consent(link: str) -> str:
    """Do what a person does in a browser with an authorization link: open it, press
    Continue, press Allow on the (sandbox) provider's consent page. Returns the text
    of agentauth's final page."""
    # A cookie jar that accepts cookies from 127.0.0.1 (the connect pages set two).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(link) as resp:
            check(resp.status == 200, f"the connect page answered {resp.status}")
            page = await resp.text()
        form = {"csrf": _hidden(page, "csrf")}
        async with browser.post(link, data=form, allow_redirects=False) as resp:
            check(resp.status == 303, f"Continue answered {resp.status}")
            authorize_url = resp.headers["Location"]
        async with browser.get(authorize_url) as resp:
            page = await resp.text()
        action = re.search(r'<form method="post" action="([^"]+)"', page)
        check(action is not None, "no consent form at the provider")
        assert action is not None
        consent = {"consent": _hidden(page, "consent"), "decision": "allow"}
        target = urljoin(authorize_url, html.unescape(action.group(1)))
        async with browser.post(target, data=consent, allow_redirects=False) as resp:
            callback = resp.headers["Location"]  # back to agentauth's /oauth/callback
        async with browser.get(callback) as resp:
            return await resp.text()
