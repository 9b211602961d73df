"""A blocking facade over the async client's tool calls, for code without an event loop.

It runs a :class:`ControlPlaneClient` on a private event loop in one daemon
thread rather than using grpc's sync channel: the async client already carries
the interceptors (the key, the deadline, typed errors for unary calls and
streams) and the ExecuteTool stream handling, and a second, synchronous copy of
them would drift. The price is one thread per client; share a client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc

from agentauth._client import ControlPlaneClient
from agentauth._tools import ToolCallResult, ToolEventCallback, ToolSpec

__all__ = ["SyncToolClient"]

_T = TypeVar("_T")


class SyncToolClient:
    """Blocking ``list_tools`` and ``execute_tool``; same arguments as :class:`ControlPlaneClient`.

    Example::

        with SyncToolClient("localhost:50051") as tools:
            result = tools.execute_tool("gmail.list_messages", {"query": "is:unread"},
                                        token=agent_token)

    Safe to call from several threads at once. ``on_event`` callbacks run on the
    client's own thread, in stream order. :meth:`close` (or leaving the
    ``with`` block) cancels pending calls and stops the thread.
    """

    def __init__(
        self,
        target: str,
        api_key: str | None = None,
        *,
        timeout: float | None = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._target = target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="agentauth-sync-tools", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def build() -> ControlPlaneClient:
            # grpc.aio binds a channel to the loop it is created on.
            return ControlPlaneClient(target, api_key, timeout=timeout, credentials=credentials)

        try:
            self._client = self._run(build())
        except BaseException:
            self._stop_thread()
            raise

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self._target!r})"

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise RuntimeError("the SyncToolClient is closed")
        if threading.current_thread() is self._thread:
            # e.g. from an on_event callback: waiting here would wait for itself.
            coro.close()
            raise RuntimeError("a SyncToolClient cannot be called from its own callbacks")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            # e.g. KeyboardInterrupt in the caller: the call must not run on.
            future.cancel()
            raise
        # concurrent.futures re-raises the coroutine's own exception unchanged.

    def list_tools(self, connector: str = "", *, token: str | None = None) -> list[ToolSpec]:
        """See :meth:`ControlPlaneClient.list_tools`."""
        return self._run(self._client.list_tools(connector, token=token))

    def execute_tool(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        connected_account: str = "",
        request_id: str = "",
        timeout: float | None = None,
        token: str | None = None,
        on_event: ToolEventCallback | None = None,
    ) -> ToolCallResult:
        """See :meth:`ControlPlaneClient.execute_tool`; the same result and errors."""
        return self._run(
            self._client.execute_tool(
                tool,
                arguments,
                connected_account=connected_account,
                request_id=request_id,
                timeout=timeout,
                token=token,
                on_event=on_event,
            )
        )

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._run(self._shutdown())
        except concurrent.futures.CancelledError:
            pass
        finally:
            self._closed = True
            self._stop_thread()

    async def _shutdown(self) -> None:
        await self._client.close()
        # Calls still waiting in other threads end with CancelledError rather
        # than hang on a loop that is about to stop.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _stop_thread(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncToolClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
