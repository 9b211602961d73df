"""Revocations seen offline: a watcher of ``TokenService.WatchRevocations`` and the list it fills.

::

    revocations = RevocationList()
    validator = AsyncTokenValidator(issuer, audience, revocations=revocations)
    async with RevocationWatcher(client, org.name, revocations):
        ...  # validator.validate() now rejects revoked tokens with TOKEN_REVOKED

The control plane lists, in every revocation event, each token the revocation
made invalid — the revoked token and every token exchanged from it — so a
validator needs only a set lookup per token, never a network call. Tokens
exchanged from a revoked one later are refused by the control plane itself.

While the watcher is not connected the list cannot know about new revocations:
a validator given ``max_staleness`` refuses every token (``TOKEN_REVOKED``
is not claimed; ``REVOCATIONS_UNAVAILABLE`` is) once the list has not been
confirmed current for that long. The server confirms currency with ``synced``
messages (end of the backlog, then a heartbeat every 30 seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from types import TracebackType

import grpc
import grpc.aio

from agentauth._client import ControlPlaneClient
from agentauth._errors import AgentAuthError, from_rpc_error
from agentauth._revocation_list import RevocationList
from agentauth.v1 import token_pb2

__all__ = ["RevocationWatcher"]

_FATAL = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
    }
)


class RevocationWatcher:
    """Follows one organization's revocations into a :class:`RevocationList`.

    Reconnects with the last cursor after any failure (exponential backoff with
    jitter, at most ``max_backoff`` seconds), so no revocation is missed. A
    caller without the right to watch (UNAUTHENTICATED, PERMISSION_DENIED,
    NOT_FOUND) stops the watcher: :meth:`wait_synced` raises it and ``error``
    holds it, as the typed :class:`agentauth.AgentAuthError` subclass
    (``NotFoundError``, ...) with its status in ``error.code``.

    Args:
        client: a :class:`ControlPlaneClient` authenticated as the org's service
            account (or an admin key).
        organization: ``"orgs/{org}"``.
        revocations: the list to fill (a new one when omitted).
    """

    def __init__(
        self,
        client: ControlPlaneClient,
        organization: str,
        revocations: RevocationList | None = None,
        *,
        max_backoff: float = 10.0,
        silence_timeout: float = 75.0,
    ) -> None:
        self.client = client
        self.organization = organization
        self.revocations = revocations if revocations is not None else RevocationList()
        self.max_backoff = max_backoff
        self.silence_timeout = silence_timeout
        self.cursor = ""
        self.error: AgentAuthError | None = None
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    async def __aenter__(self) -> RevocationWatcher:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_synced(self) -> None:
        """Wait until the backlog is in the list (bound it with ``asyncio.timeout``).

        Raises the server's refusal if the watch cannot run.
        """
        waiter = asyncio.ensure_future(self._synced.wait())
        try:
            await asyncio.wait(
                {waiter, *([self._task] if self._task else [])},
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
        if self.error is not None:
            raise self.error
        if not self._synced.is_set():
            raise RuntimeError("the revocation watcher is not running")

    async def run(self) -> None:
        """Watch until cancelled (or refused by the server)."""
        backoff = 0.1
        while True:
            try:
                call = self.client.tokens.WatchRevocations(
                    token_pb2.WatchRevocationsRequest(parent=self.organization, cursor=self.cursor),
                    timeout=None,
                )
                try:
                    while True:
                        # The server sends a heartbeat every 30 s: silence for
                        # longer means a dead connection; reconnect.
                        # asyncio.timeout, not wait_for (which can swallow stop()'s
                        # cancellation when a message arrives at the same moment).
                        async with asyncio.timeout(self.silence_timeout):
                            msg = await call.read()
                        if msg is grpc.aio.EOF:
                            break
                        self._apply(msg)
                        backoff = 0.1
                except TimeoutError:
                    pass
                finally:
                    call.cancel()
            except (AgentAuthError, grpc.aio.AioRpcError) as raised:
                # Typed by the client's interceptors; raw only from a channel
                # built without them (ControlPlaneClient(channel=...)).
                exc = raised if isinstance(raised, AgentAuthError) else from_rpc_error(raised)
                self.revocations.mark_unsynced()
                if exc.code in _FATAL:
                    self.error = exc
                    self._synced.set()  # release waiters; they see .error
                    return
                if exc.code is grpc.StatusCode.INVALID_ARGUMENT and self.cursor:
                    self.cursor = ""  # e.g. the org's data key was rotated: replay the backlog
            self.revocations.mark_unsynced()
            await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter
            backoff = min(backoff * 2, self.max_backoff)

    def _apply(self, msg: token_pb2.WatchRevocationsResponse) -> None:
        if msg.jtis:
            expire = msg.expire_time.seconds + msg.expire_time.nanos / 1e9
            self.revocations.add(msg.jtis, expire)
        if msg.cursor:
            self.cursor = msg.cursor
        if msg.synced:
            self.revocations.mark_synced()
            self._synced.set()
