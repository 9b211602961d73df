"""A delegated token validates with a non-Python JWT library (npm ``jose``) through our JWKS.

Runs when ``node`` and ``npm`` are present (CI machines have them); installs jose
into a temporary folder from the npm registry.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node/npm not installed"
)

VERIFY = """
// node -e: argv[0] is node, then the arguments: jose module, token, issuer, audience.
const [, josePath, token, issuer, audience] = process.argv;
const { createRemoteJWKSet, jwtVerify } = await import(josePath);
const jwks = createRemoteJWKSet(new URL(issuer + "/.well-known/jwks.json"));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer, audience, typ: "at+jwt", algorithms: ["ES256"],
  });
  console.log(JSON.stringify({ ok: true, payload, protectedHeader }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, code: e.code }));
}
"""


@pytest.fixture(scope="module")
def jose(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("jose")
    subprocess.run(
        ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(where), "jose@6"],
        check=True, capture_output=True, timeout=180,
    )
    return where / "node_modules" / "jose" / "dist" / "webapi" / "index.js"


async def _node_verify(jose: Path, token: str, issuer: str, audience: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        "node", "--input-type=module", "-e", VERIFY, str(jose), token, issuer, audience,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_delegated_chain_token_verifies_with_npm_jose(harness, jose: Path) -> None:
    from control_plane.sandbox import KubernetesIssuer
    from tests.api.test_delegation import API, Chain

    async with KubernetesIssuer() as k8s:
        chain = await Chain(harness, k8s).setup()
        t1 = (await chain.delegate()).access_token
        t2 = (await chain.hop(t1, "S")).access_token
    issuer = harness.servers.tokens.issuer
    result = await _node_verify(jose, t2, issuer, API)
    assert result["ok"], result
    assert result["protectedHeader"]["typ"] == "at+jwt"
    assert result["payload"]["sub"] == chain.user
    assert result["payload"]["act"] == {"sub": chain.agents["S"], "act": {"sub": chain.agents["O"]}}
    # jose refuses the same token for another audience.
    wrong = await _node_verify(jose, t2, issuer, "https://elsewhere.example")
    assert wrong == {"ok": False, "code": "ERR_JWT_CLAIM_VALIDATION_FAILED"}
