"""The guarded client for org-configured URLs refuses what an org must not reach.

Each refusal is checked where it happens: the URL rules (create time and fetch
time), the addresses a host name resolves to (an injected lookup stands in for
DNS), redirects, sizes, time, and the per-org budget. Whatever the cause, the
caller sees the same error text; only the log says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import ipaddress
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from control_plane import logs
from control_plane.config import Settings
from control_plane.domain.errors import InvalidArgument
from control_plane.domain.outbound import OutboundPolicy, address_refused, literal_address
from control_plane.net.guarded_http import (
    MAX_BODY_BYTES,
    FetchBudget,
    FetchRefused,
    GuardedHttp,
)

UNIFORM = "the URL could not be fetched"
PRODUCTION = OutboundPolicy()
LOCAL = OutboundPolicy(local=True)

# Every range the guard refuses, with an example address in it.
REFUSED = {
    "loopback": "127.0.0.1",
    "loopback elsewhere in 127/8": "127.53.0.9",
    "10/8": "10.255.255.1",
    "172.16/12": "172.16.0.1",
    "172.16/12 top": "172.31.255.254",
    "192.168/16": "192.168.1.1",
    "cloud metadata": "169.254.169.254",
    "0.0.0.0": "0.0.0.0",
    "0/8": "0.1.2.3",
    "CGNAT": "100.64.0.1",
    "CGNAT top": "100.127.255.254",
    "multicast": "224.0.0.1",
    "reserved 240/4": "240.0.0.1",
    "broadcast": "255.255.255.255",
    "benchmarking": "198.18.0.1",
    "IPv6 loopback": "::1",
    "IPv6 unspecified": "::",
    "fc00::/7": "fc00::1",
    "fd00::/8": "fd12:3456::1",
    "fe80::/10": "fe80::1",
    "site-local fec0::/10": "fec0::1",
    "IPv6 multicast": "ff02::1",
    "IPv4-mapped loopback": "::ffff:127.0.0.1",
    "IPv4-mapped 10/8": "::ffff:10.0.0.1",
    "NAT64 of the metadata address": "64:ff9b::a9fe:a9fe",
    "6to4 of 10/8": "2002:a00:1::1",
}
PUBLIC = ["93.184.215.14", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111"]


def url_for(ip: str, path: str = "/.well-known/openid-configuration") -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"https://{host}{path}"


class Dns:
    """An injected lookup: host name → addresses; records every question."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


def client(
    policy: OutboundPolicy = PRODUCTION,
    *,
    dns: Callable[[str, int], Awaitable[Sequence[str]]] | None = None,
    per_minute: int = 1000,
    clock: Callable[[], float] | None = None,
    **kw: Any,
) -> GuardedHttp:
    budget = FetchBudget(per_minute, clock=clock) if clock else FetchBudget(per_minute)
    if dns is not None:
        kw["lookup"] = dns
    return GuardedHttp(policy, budget, **kw)


async def refused(http: GuardedHttp, url: str, org: str = "org-a") -> FetchRefused:
    with pytest.raises(FetchRefused) as info:
        await http.get(org, url)
    assert str(info.value) == UNIFORM
    assert info.value.__cause__ is None and info.value.__suppress_context__
    return info.value


@contextlib.asynccontextmanager
async def server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[int, list[str]]]:
    """A loopback HTTP(S) server; yields its port and the paths it was asked for."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request.path_qs)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield runner.addresses[0][1], seen
    finally:
        await runner.cleanup()


async def ok_json(request: web.Request) -> web.Response:
    return web.json_response({"jwks_uri": "https://idp.example/keys"})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ the ranges


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_every_forbidden_range_is_refused(name: str) -> None:
    ip = ipaddress.ip_address(REFUSED[name])
    assert address_refused(ip)
    assert not PRODUCTION.address_allowed("idp.example", ip)


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass(ip: str) -> None:
    assert not address_refused(ipaddress.ip_address(ip))


def test_legacy_ipv4_spellings_are_the_addresses_resolvers_make_of_them() -> None:
    for spelling in ("127.1", "2130706433", "0x7f.0.0.1", "017700000001", "127.0.0.1."):
        assert literal_address(spelling) == ipaddress.ip_address("127.0.0.1")
    assert literal_address("idp.example") is None
    assert literal_address("cafe") is None


# ------------------------------------------------------------------ fetch-time refusals


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_a_literal_address_in_a_forbidden_range_is_never_contacted(name: str) -> None:
    dns = Dns({})
    http = client(dns=dns, timeout=1.0)
    try:
        await refused(http, url_for(REFUSED[name]))
    finally:
        await http.close()
    assert dns.asked == []


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_a_host_name_that_resolves_into_a_forbidden_range_is_refused(name: str) -> None:
    dns = Dns({"idp.example": [REFUSED[name]]})
    http = client(dns=dns, timeout=1.0)
    try:
        await refused(http, "https://idp.example/.well-known/openid-configuration")
    finally:
        await http.close()
    assert dns.asked == ["idp.example"]


async def test_the_resolved_address_is_checked_and_pinned_not_looked_up_again() -> None:
    # The emulator listens on loopback. A name that resolves there is refused before
    # any connection: the server is never asked (no DNS-rebinding window either, as
    # the connection only ever goes to addresses this lookup returned and checked).
    async with server(ok_json) as (port, seen):
        dns = Dns({"rebind.example": ["127.0.0.1"]})
        http = client(dns=dns)
        try:
            await refused(http, f"https://rebind.example:{port}/x")
            await refused(http, f"http://rebind.example:{port}/x")
        finally:
            await http.close()
    assert seen == []
    assert dns.asked == ["rebind.example"]  # the http one is refused before DNS


async def test_one_internal_address_among_public_ones_refuses_the_answer() -> None:
    dns = Dns({"split.example": ["93.184.215.14", "10.0.0.7"]})
    http = client(dns=dns, timeout=1.0)
    try:
        await refused(http, "https://split.example/x")
    finally:
        await http.close()


async def test_localhost_and_legacy_loopback_spellings_are_refused_without_dns() -> None:
    dns = Dns({"localhost": ["127.0.0.1"], "a.localhost": ["127.0.0.1"]})
    http = client(dns=dns)
    try:
        for url in (
            "https://localhost/x",
            "https://LOCALHOST./x",
            "https://a.localhost/x",
            "https://2130706433/x",
            "https://127.1/x",
            "https://0x7f.0.0.1/x",
        ):
            await refused(http, url)
    finally:
        await http.close()
    assert dns.asked == []


async def test_http_is_refused_outside_local_mode() -> None:
    dns = Dns({"idp.example": ["93.184.215.14"]})
    http = client(dns=dns)
    try:
        await refused(http, "http://idp.example/.well-known/openid-configuration")
        await refused(http, "ftp://idp.example/x")
        await refused(http, "https://user:pw@idp.example/x")
    finally:
        await http.close()
    assert dns.asked == []


async def test_local_mode_allows_loopback_over_http_and_nothing_else_more() -> None:
    async with server(ok_json) as (port, seen):
        http = client(LOCAL, dns=Dns({"idp.example": ["10.1.2.3"]}))
        try:
            body = await http.get("org-a", f"http://127.0.0.1:{port}/d")
            assert json.loads(body) == {"jwks_uri": "https://idp.example/keys"}
            await refused(http, "http://10.1.2.3/d")  # http: loopback only
            await refused(http, "https://10.1.2.3/d")  # private: still refused
            await refused(http, "https://169.254.169.254/latest/meta-data")
            await refused(http, "http://idp.example/d")  # http to a name: refused
            await refused(http, "https://idp.example/d")  # resolves to 10/8
        finally:
            await http.close()
    assert seen == ["/d"]


async def test_a_redirect_is_a_refusal_and_is_not_followed() -> None:
    async def redirect(request: web.Request) -> web.Response:
        if request.path == "/target":
            return web.json_response({"reached": True})
        raise web.HTTPFound("/target")

    async with server(redirect) as (port, seen):
        http = client(LOCAL)
        try:
            await refused(http, f"http://127.0.0.1:{port}/start")
        finally:
            await http.close()
    assert seen == ["/start"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_body_is_refused(chunked: bool) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = MAX_BODY_BYTES + 1
        await resp.prepare(request)
        for _ in range(MAX_BODY_BYTES // 1024):
            await resp.write(b"x" * 1024)
        await resp.write(b"y")
        await resp.write_eof()
        return resp

    async def exact(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * MAX_BODY_BYTES)

    async with server(big) as (port, _), server(exact) as (port_ok, _):
        http = client(LOCAL)
        try:
            await refused(http, f"http://127.0.0.1:{port}/big")
            assert len(await http.get("org-a", f"http://127.0.0.1:{port_ok}/ok")) == MAX_BODY_BYTES
        finally:
            await http.close()


async def test_a_compressed_body_is_refused() -> None:
    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=b"\x1f\x8b...", headers={"Content-Encoding": "gzip"})

    async with server(gzipped) as (port, _):
        http = client(LOCAL)
        try:
            await refused(http, f"http://127.0.0.1:{port}/d")
        finally:
            await http.close()


async def test_a_slow_server_times_out_with_the_same_error() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.json_response({})

    async with server(slow) as (port, _):
        http = client(LOCAL, timeout=0.2)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await refused(http, f"http://127.0.0.1:{port}/slow")
            assert loop.time() - start < 0.9
        finally:
            await http.close()


async def test_closed_port_refused_range_bad_status_and_dns_failure_look_the_same(
    captured: io.StringIO,
) -> None:
    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async with server(not_found) as (port, _):
        local = client(LOCAL, dns=Dns({}))
        strict = client(PRODUCTION, dns=Dns({}))
        try:
            errors = [
                await refused(local, f"http://127.0.0.1:{closed_port()}/x"),  # nothing listens
                await refused(local, f"http://127.0.0.1:{port}/x"),  # listens, answers 404
                await refused(strict, "https://10.255.255.1/x"),  # refused range
                await refused(strict, "http://127.0.0.1:5432/x"),  # http to loopback
                await refused(strict, "https://no-such-host.example/x"),  # no DNS answer
            ]
        finally:
            await local.close()
            await strict.close()
    assert {(type(e), str(e), e.args) for e in errors} == {(FetchRefused, UNIFORM, (UNIFORM,))}
    # The reasons are in the log (info), with the org and host, never the path or query.
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    refusals = [line for line in lines if line["event"] == "outbound fetch refused"]
    assert len(refusals) == 5
    assert {r["org_id"] for r in refusals} == {"org-a"}
    assert {r["host"] for r in refusals} >= {"127.0.0.1", "10.255.255.1"}
    assert "/x" not in captured.getvalue()
    reasons = [r["reason"] for r in refusals]
    assert reasons[1] == "status 404" and "refused" in reasons[2] and reasons[3] == "plain http"


@pytest.fixture
def captured() -> Any:
    stream = io.StringIO()
    logs.configure(level=logging.INFO, stream=stream)
    yield stream
    logs.configure(level=logging.WARNING)


# ------------------------------------------------------------------ the allow-list over TLS


def _tls(tmp_path: Path, names: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str]]:
    """A CA, a server certificate for ``names``; (server ctx, client ctx, SNI seen)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    sni: list[str] = []
    srv = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    srv.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    srv.sni_callback = lambda _sock, name, _ctx: sni.append(name) and None  # type: ignore[func-returns-value]
    cli = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    return srv, cli, sni


@pytest.mark.parametrize("allow", ["idp.corp.internal", "127.0.0.0/8", "127.0.0.1"])
async def test_the_allow_list_lets_an_internal_issuer_through_over_verified_tls(
    tmp_path: Path, allow: str
) -> None:
    srv, cli, sni = _tls(tmp_path, ["idp.corp.internal"])
    dns = Dns({"idp.corp.internal": ["127.0.0.1"], "other.corp.internal": ["127.0.0.1"]})
    async with server(ok_json, srv) as (port, seen):
        url = f"https://idp.corp.internal:{port}/.well-known/openid-configuration"
        allowed = client(OutboundPolicy.parse(allow), dns=dns, ssl_context=cli)
        plain = client(PRODUCTION, dns=dns, ssl_context=cli)
        try:
            assert json.loads(await allowed.get("org-a", url))["jwks_uri"]
            await refused(plain, url)  # the same issuer without the allow-list
            # https still applies to allow-listed destinations.
            await refused(allowed, url.replace("https://", "http://"))
            if "/" in allow or allow[0].isdigit():
                # Pinned to the checked address, yet the certificate is verified for
                # the URL's host: another name on that address does not pass.
                await refused(allowed, f"https://other.corp.internal:{port}/x")
        finally:
            await allowed.close()
            await plain.close()
    assert seen == ["/.well-known/openid-configuration"]
    assert "idp.corp.internal" in sni  # SNI carries the host name, not the address


def test_the_allow_list_setting_is_parsed_and_checked() -> None:
    policy = OutboundPolicy.parse(" 10.20.0.0/16, idp.corp.internal. ,fd00:1::/64,192.168.1.5 ")
    assert [str(n) for n in policy.allow_networks] == ["10.20.0.0/16", "fd00:1::/64", "192.168.1.5/32"]
    assert policy.allow_hosts == {"idp.corp.internal"}
    assert policy.address_allowed("x.example", ipaddress.ip_address("10.20.3.4"))
    assert policy.address_allowed("x.example", ipaddress.ip_address("::ffff:10.20.3.4"))
    assert not policy.address_allowed("x.example", ipaddress.ip_address("10.21.0.1"))
    assert not policy.address_allowed("x.example", ipaddress.ip_address("127.0.0.1"))
    assert policy.check_url("https://10.20.0.9/d", "f") == "https://10.20.0.9/d"
    for bad in ("http://x", "10.0.0.0/33", "bad host", "a..b", "https://idp", "bücher.example"):
        with pytest.raises(ValueError):
            OutboundPolicy.parse(bad)
    assert OutboundPolicy.parse("") == PRODUCTION


def test_settings_make_local_mode_explicit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OUTBOUND_ALLOW", "OUTBOUND_LOOPBACK", "SANDBOX_URL", "DATABASE_URL"):
        monkeypatch.delenv(f"AGENTAUTH_{name}", raising=False)
    pg = "postgresql+psycopg://db.example/agentauth"
    assert Settings(data_dir=tmp_path, database_url=pg).outbound_policy == PRODUCTION
    assert Settings(data_dir=tmp_path).outbound_policy.local  # dev mode: embedded SQLite
    assert Settings(
        data_dir=tmp_path, database_url=pg, sandbox_url="http://127.0.0.1:9000"
    ).outbound_policy.local
    monkeypatch.setenv("AGENTAUTH_OUTBOUND_LOOPBACK", "1")
    assert Settings(data_dir=tmp_path, database_url=pg).outbound_policy.local
    monkeypatch.delenv("AGENTAUTH_OUTBOUND_LOOPBACK")
    monkeypatch.setenv("AGENTAUTH_OUTBOUND_ALLOW", "10.0.0.0/8,idp.corp")
    policy = Settings(data_dir=tmp_path, database_url=pg).outbound_policy
    assert not policy.local and policy.allow_hosts == {"idp.corp"}
    monkeypatch.setenv("AGENTAUTH_OUTBOUND_ALLOW", "10.0.0.0/99")
    with pytest.raises(ValueError, match="AGENTAUTH_OUTBOUND_ALLOW"):
        Settings(data_dir=tmp_path, database_url=pg)
    monkeypatch.delenv("AGENTAUTH_OUTBOUND_ALLOW")
    monkeypatch.setenv("AGENTAUTH_OUTBOUND_FETCHES_PER_MINUTE", "0")
    with pytest.raises(ValueError, match="FETCHES_PER_MINUTE"):
        Settings(data_dir=tmp_path, database_url=pg)


# ------------------------------------------------------------------ the per-org budget


async def test_one_org_spending_its_budget_does_not_touch_another_org() -> None:
    now = [0.0]
    async with server(ok_json) as (port, seen):
        http = client(LOCAL, per_minute=3, clock=lambda: now[0])
        url = f"http://127.0.0.1:{port}/d"
        try:
            for _ in range(3):
                await http.get("org-a", url)
            await refused(http, url, org="org-a")
            for _ in range(3):
                await http.get("org-b", url)  # a full budget of its own
            await refused(http, url, org="org-b")
            now[0] += 20.0  # a third of a minute: one more fetch each
            await http.get("org-a", url)
            await refused(http, url, org="org-a")
        finally:
            await http.close()
    assert len(seen) == 7  # refusals cost the target nothing


def test_the_budget_refills_to_its_size_and_forgets_idle_orgs() -> None:
    now = [0.0]
    budget = FetchBudget(2, clock=lambda: now[0], max_orgs=2)
    assert budget.take("a") and budget.take("a") and not budget.take("a")
    now[0] += 3600
    assert budget.take("a") and budget.take("a") and not budget.take("a")
    assert budget.take("b") and budget.take("c")  # "a" is the longest idle: forgotten
    with pytest.raises(ValueError):
        FetchBudget(0)


# ------------------------------------------------------------------ create-time checks


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:5432/x", "https"),
        ("https://127.0.0.1:5432/x", "internal"),
        ("https://10.255.255.1/.well-known/openid-configuration", "internal"),
        ("https://169.254.169.254/latest/meta-data", "internal"),
        ("https://[::1]/x", "internal"),
        ("https://[fd00::1]/x", "internal"),
        ("https://[fe80::1]/x", "internal"),
        ("https://[::ffff:127.0.0.1]/x", "internal"),
        ("https://0.0.0.0/x", "internal"),
        ("https://100.64.0.1/x", "internal"),
        ("https://224.0.0.1/x", "internal"),
        ("https://localhost/x", "internal"),
        ("https://2130706433/x", "internal"),
        ("http://idp.example/x", "https"),
        ("ftp://idp.example/x", "https"),
        ("https://user:pw@idp.example/x", "credentials"),
        ("https://idp.example:0/x", "absolute"),
        ("https://idp.example:99999/x", "absolute"),
        ("https:///x", "absolute"),
        ("https://idp.example/" + "a" * 2048, "too long"),
    ],
)
def test_create_time_refusals_are_field_errors(url: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        PRODUCTION.check_url(url, "trust_policy.discovery_url")
    assert info.value.metadata == {"field": "trust_policy.discovery_url"}
    assert info.value.message.startswith("trust_policy.discovery_url: ")
    assert words in info.value.message


def test_create_time_accepts_public_https_and_in_local_mode_loopback() -> None:
    assert PRODUCTION.check_url("https://idp.example/d", "f")
    assert PRODUCTION.check_url("https://93.184.215.14/d", "f")
    for url in ("http://127.0.0.1:8080/d", "http://localhost:8080/d", "https://[::1]/d"):
        assert LOCAL.check_url(url, "f") == url
        with pytest.raises(InvalidArgument):
            PRODUCTION.check_url(url, "f")
    with pytest.raises(InvalidArgument):
        LOCAL.check_url("http://10.0.0.1/d", "f")
