"""``python -m control_plane.sandbox``: the real entry point as a subprocess on loopback."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from control_plane.sandbox.__main__ import main
from tests.sandbox.helpers import get_json, segment

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Running:
    def __init__(self, proc: asyncio.subprocess.Process, urls: dict[str, str]) -> None:
        self.proc, self.urls = proc, urls
        self.returncode: int | None = None
        self.stderr = ""


@asynccontextmanager
async def _sandbox(*argv: str, expect: int) -> AsyncIterator[Running]:
    """Start the CLI, read its ``name: url`` lines, SIGTERM it on exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "control_plane.sandbox", *argv,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        urls: dict[str, str] = {}
        while len(urls) < expect:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert line, "the sandbox exited before printing its URLs"
            name, _, value = line.decode().strip().partition(": ")
            urls[name] = value
        running = Running(proc, urls)
        yield running
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        running.returncode, running.stderr = proc.returncode, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def _post(http: aiohttp.ClientSession, url: str, body: object) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def test_kubernetes_entry_point(http: aiohttp.ClientSession) -> None:
    port = _free_port()
    async with _sandbox("kubernetes", "--port", str(port), expect=4) as run:
        base = f"http://127.0.0.1:{port}"
        assert run.urls == {
            "issuer": base,
            "discovery": base + "/.well-known/openid-configuration",
            "jwks": base + "/openid/v1/jwks",
            "issue": base + "/issue",
        }
        status, _, doc = await get_json(http, run.urls["discovery"])
        assert status == 200 and doc["issuer"] == base and doc["jwks_uri"] == run.urls["jwks"]
        request = {"namespace": "prod", "service_account": "agent", "audiences": ["agentauth"]}
        status, body = await _post(http, run.urls["issue"], {**request, "ttl": 900, "pod": "p-0"})
        assert status == 200 and set(body) == {"token"}
        _, _, jwks = await get_json(http, doc["jwks_uri"])
        key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(body["token"])["kid"]]
        claims = jwt.decode(
            body["token"], key.key, algorithms=["RS256"], audience="agentauth", issuer=base
        )
        assert claims["sub"] == "system:serviceaccount:prod:agent"
        assert claims["exp"] - claims["iat"] == 900
        assert claims["kubernetes.io"]["pod"]["name"] == "p-0"
        for bad in ({"namespace": "prod"}, {**request, "audience": "x"}, {**request, "ttl": "1"},
                    {**request, "namespace": "Not_Valid"}, ["not", "an", "object"]):  # fmt: skip
            status, body = await _post(http, run.urls["issue"], bad)
            assert status == 400 and body["error"] == "invalid_request", bad
    assert run.returncode == 0, run.stderr
    assert "not an identity provider" in run.stderr


async def test_spiffe_entry_point(http: aiohttp.ClientSession) -> None:
    port = _free_port()
    argv = ("spiffe", "--trust-domain", "prod.example.org", "--port", str(port))
    async with _sandbox(*argv, expect=4) as run:
        base = f"http://127.0.0.1:{port}"
        assert run.urls["trust_domain"] == "prod.example.org"
        assert run.urls["bundle"] == base + "/bundle" and run.urls["keys"] == base + "/keys"
        status, body = await _post(
            http, run.urls["issue"], {"path": "/ns/prod/sa/agent", "audiences": ["agentauth"]}
        )
        assert status == 200
        _, _, bundle = await get_json(http, run.urls["bundle"])
        kid = segment(body["token"], 0)["kid"]
        [entry] = [k for k in bundle["keys"] if k["use"] == "jwt-svid" and k["kid"] == kid]
        claims = jwt.decode(body["token"], jwt.PyJWK(entry).key, ["ES256"], audience="agentauth")
        assert claims["sub"] == "spiffe://prod.example.org/ns/prod/sa/agent"
        status, body = await _post(http, run.urls["issue"], {"path": "/a/../b", "audiences": ["x"]})
        assert status == 400 and "dot segment" in body["error_description"]
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_refuses_non_loopback_bind_address(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["kubernetes", "--host", host, "--port", "0"])
    assert exited.value.code == 2
    assert "refusing to bind" in capsys.readouterr().err


def test_invalid_trust_domain_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["spiffe", "--trust-domain", "Example.ORG", "--port", "0"])
    assert exited.value.code == 2
    assert "trust domain" in capsys.readouterr().err


async def test_port_in_use_exits_non_zero() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "control_plane.sandbox", "spiffe", "--port", str(port),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 1 and out == b""
    assert b"cannot listen" in err


async def test_key_entry_point(http: aiohttp.ClientSession) -> None:
    port = _free_port()
    argv = ("key", "stripe", "--port", str(port), "--key", "rk_test_CliChosenKey0123456789")
    async with _sandbox(*argv, expect=5) as run:
        base = f"http://127.0.0.1:{port}"
        assert run.urls == {
            "connector": "stripe",
            "base_url": base,
            "api_base": base + "/api.stripe.com/v1",
            "key_in": "header Authorization (Bearer)",
            "key": "rk_test_CliChosenKey0123456789",
        }
        url = run.urls["api_base"] + "/customers"
        async with http.get(url, headers={"Authorization": "Bearer " + run.urls["key"]}) as resp:
            assert resp.status == 200 and (await resp.json())["object"] == "list"
        async with http.get(url, headers={"Authorization": "Bearer rk_test_other"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
    assert run.returncode == 0, run.stderr
    assert "rk_test_CliChosenKey0123456789" not in run.stderr


def test_key_needs_a_key_connector(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["key", "gmail", "--port", "0"])
    assert exited.value.code == 2
    assert "one of: ['stripe', 'weather', 'web_search']" in capsys.readouterr().err


async def _answers_on(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientConnectionError:
        return False


async def test_expose_as_listens_on_every_interface_and_advertises_the_hosts_url(
    http: aiohttp.ClientSession,
) -> None:
    # A container publishing port P on the host's loopback as Q: the emulator listens
    # on all of the container's interfaces (127.0.0.2 stands for one that is not
    # 127.0.0.1 here) and every URL it prints, serves or signs names the host's side.
    port, advertised = _free_port(), f"http://127.0.0.1:{_free_port()}"
    argv = ("kubernetes", "--port", str(port), "--expose-as", advertised + "/")
    async with _sandbox(*argv, expect=4) as run:
        assert run.urls["issuer"] == advertised
        other = f"http://127.0.0.2:{port}"
        status, _, doc = await get_json(http, other + "/.well-known/openid-configuration")
        assert status == 200 and doc["issuer"] == advertised
        assert doc["jwks_uri"] == advertised + "/openid/v1/jwks"
        body = {"namespace": "default", "service_account": "agent", "audiences": ["x"]}
        status, minted = await _post(http, other + "/issue", body)
        assert status == 200
        assert jwt.decode(minted["token"], options={"verify_signature": False})["iss"] == advertised
    assert run.returncode == 0, run.stderr
    assert f"as {advertised}" in run.stderr and "loopback only" in run.stderr


async def test_without_expose_as_only_loopback_answers(http: aiohttp.ClientSession) -> None:
    port = _free_port()
    async with _sandbox("kubernetes", "--port", str(port), expect=4) as run:
        assert await _answers_on(http, run.urls["discovery"])
        assert not await _answers_on(
            http, f"http://127.0.0.2:{port}/.well-known/openid-configuration"
        )
    assert "every interface" not in run.stderr


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8705",  # the emulators speak http
        "http://10.0.0.5:8705",  # advertised to the host's loopback only
        "http://sandbox:8705",  # a name could resolve to anything
        "http://127.0.0.1",  # the published port must be explicit
        "http://127.0.0.1:8705/x",  # a base URL, no path
        "http://user@127.0.0.1:8705",
    ],
)
def test_expose_as_takes_a_loopback_base_url_only(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["oauth", "gmail", "--port", "0", "--expose-as", url])
    assert exited.value.code == 2
    assert "--expose-as" in capsys.readouterr().err
