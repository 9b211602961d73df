"""The fault proxy itself: pass, stall (bytes held, sockets open), cut (RST), counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.faults.tcp_proxy import TcpProxy

# How long "nothing arrives" is watched for. A negative can only be observed
# over some window; this one is short and asserts absence, never presence.
QUIET = 0.2


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with TcpProxy("127.0.0.1", port) as p:
        yield p
    server.close()
    await server.wait_closed()


async def _open(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _nothing_arrives(reader: asyncio.StreamReader) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(QUIET):
            await reader.read(1)


async def test_pass_forwards_both_ways_and_counts(proxy: TcpProxy) -> None:
    r, w = await _open(proxy)
    w.write(b"ping")
    assert await r.readexactly(4) == b"ping"
    assert (proxy.accepted, proxy.active) == (1, 1)
    w.close()
    await w.wait_closed()


async def test_stall_holds_bytes_keeps_sockets_open_and_releases_on_pass(
    proxy: TcpProxy,
) -> None:
    r, w = await _open(proxy)
    w.write(b"a")
    assert await r.readexactly(1) == b"a"
    proxy.stall()
    w.write(b"held")
    await w.drain()
    await _nothing_arrives(r)
    r2, w2 = await _open(proxy)  # new connections are accepted, and stall too
    w2.write(b"x")
    await _nothing_arrives(r2)
    assert not r.at_eof() and not r2.at_eof()
    assert proxy.active == 2
    proxy.pass_traffic()
    assert await r.readexactly(4) == b"held"
    assert await r2.readexactly(1) == b"x"
    for writer in (w, w2):
        writer.close()
        await writer.wait_closed()


async def test_cut_resets_open_connections_and_new_ones(proxy: TcpProxy) -> None:
    r, w = await _open(proxy)
    w.write(b"a")
    assert await r.readexactly(1) == b"a"
    proxy.cut()
    with pytest.raises(ConnectionResetError):
        await r.read(1)
    assert proxy.active == 0
    r2, w2 = await _open(proxy)  # the handshake completes; the first read sees the RST
    with pytest.raises(ConnectionResetError):
        await r2.read(1)
    assert proxy.accepted == 2 and proxy.active == 0
    proxy.pass_traffic()
    r3, w3 = await _open(proxy)
    w3.write(b"back")
    assert await r3.readexactly(4) == b"back"
    for writer in (w, w2, w3):
        writer.close()
