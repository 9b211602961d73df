"""A loopback TCP proxy that can pass, stall or cut traffic — a network fault on demand.

Put it between the server and PostgreSQL to get the failures a real network
gives and a stopped database does not:

* ``pass``  — bytes flow both ways.
* ``stall`` — connections are accepted and kept open, but no byte moves in either
  direction (the proxy stops reading, so the kernel buffers fill): a hung
  database, a black-holed route. Nothing is refused, nothing is closed. Switching
  back to ``pass`` lets the held bytes through.
* ``cut``   — every open connection is reset (RST) and new ones are reset as
  soon as they are accepted: the fast failure of a crashed database host.

Pure asyncio; one event loop; modes switch at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pass", "stall", "cut"]
_CHUNK = 64 * 1024


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), not FIN: the peer sees 'connection reset'."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.accepted = 0  # connections accepted since start, refused ones included
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def active(self) -> int:
        """Connections currently open through the proxy."""
        return len(self._links)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def pass_traffic(self) -> None:
        self.mode = "pass"
        self._flowing.set()

    def stall(self) -> None:
        self.mode = "stall"
        self._flowing.clear()

    def cut(self) -> None:
        self.mode = "cut"
        self._flowing.clear()
        for link in list(self._links):
            self._drop(link, reset=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._drop(link, reset=False)
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "cut":
            _reset(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._drop(link, reset=True)
            return
        link.upstream = up_writer
        if link not in self._links:  # cut while connecting
            _reset(up_writer)
            return
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer)),
            asyncio.create_task(self._pump(link, up_reader, writer)),
        ]
        for task in link.tasks:
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self, link: _Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                await self._flowing.wait()  # stalled: stop reading, the kernel holds the bytes
                data = await src.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # a chunk read just before a stall waits too
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        self._drop(link, reset=False)

    def _drop(self, link: _Link, *, reset: bool) -> None:
        if link not in self._links:
            return
        self._links.discard(link)
        current = asyncio.current_task()
        for task in link.tasks:
            if task is not current:
                task.cancel()
        for writer in (link.client, link.upstream):
            if writer is None:
                continue
            if reset:
                _reset(writer)
            else:
                writer.transport.abort()
