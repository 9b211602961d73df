"""The agent's side of token exchange: its own access token, cached, and sub-delegation.

::

    tokens = AgentTokenSource(client, workload_token_file(
        "/var/run/secrets/tokens/agentauth"), organization=org_name)
    result = await client.execute_tool("gmail.list_messages", token=await tokens.token())
    child = await tokens.sub_delegate(parent, subagent_workload_token, scope="tools:gmail.*")

Both use ``TokenService.ExchangeToken``, the RFC 8693 token exchange:

* without a parent, the workload's JWT is the ``subject_token`` and the agent
  gets a service-account token (the service account is the principal);
* with a parent (``delegated_from``, or :meth:`sub_delegate`), RFC 8693 §2.1:
  "subject_token ... represents the identity of the party on behalf of whom
  the request is being made" — the delegated token the user's request came
  with — and "actor_token ... represents the identity of the acting party",
  the next agent's workload token. The result is delegated: ``sub`` is still
  the user, the outermost ``act`` is the acting agent.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentauth._client import ControlPlaneClient
from agentauth.v1 import token_pb2

__all__ = ["AgentTokenSource", "IssuedToken", "workload_token_file"]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

#: A token, or a function (sync or async) that returns a current one.
TokenGetter = Callable[[], str | Awaitable[str]]


def workload_token_file(path: str | Path) -> Callable[[], str]:
    """Reads the token at ``path`` on every call.

    The kubelet rewrites a projected service-account token before it expires,
    so the file is read fresh for each exchange rather than once.
    """
    location = Path(path)

    def read() -> str:
        return location.read_text(encoding="ascii").strip()

    return read


async def _resolve(getter: TokenGetter | str) -> str:
    if isinstance(getter, str):
        return getter
    value = getter()
    if inspect.isawaitable(value):
        value = await value
    if not isinstance(value, str) or not value:
        raise ValueError("the token getter returned no token")
    return value


@dataclass(frozen=True)
class IssuedToken:
    """An access token from ``ExchangeToken``.

    Attributes:
        access_token: the RFC 9068 JWT (never in ``repr``).
        expires_at: when it expires, on the source's clock (seconds).
        scope: the granted scopes, space-separated.
    """

    access_token: str = field(repr=False)
    expires_at: float
    scope: str
    issued_token_type: str = ACCESS_TOKEN_TYPE


class AgentTokenSource:
    """The agent's access token, exchanged from its workload token and reused until near expiry.

    Args:
        client: a :class:`ControlPlaneClient`; ``ExchangeToken`` is
            authenticated by the credentials it carries, so no API key is needed.
        workload_token: the agent's workload JWT, or a function (sync or async)
            returning a current one, e.g. :func:`workload_token_file`.
        delegated_from: a delegated token (or a getter for it) this agent acts
            under; set, the source sub-delegates it to this agent instead of
            getting a service-account token.
        organization, client_id, service_account, audience, scope: the
            ``ExchangeToken`` request fields (optional where the trust policy
            admits only one choice).
        refresh_margin: get a new token this many seconds before expiry (at
            most half the token's lifetime, so a short-lived token is still reused).
        clock: seconds, injectable for tests; ``time.time`` by default.

    Concurrent callers of :meth:`token` share one exchange (single flight); a
    caller that is cancelled while waiting does not cancel it for the others.
    Use one source from one event loop.
    """

    def __init__(
        self,
        client: ControlPlaneClient,
        workload_token: TokenGetter | str,
        *,
        delegated_from: TokenGetter | str | None = None,
        organization: str = "",
        client_id: str = "",
        service_account: str = "",
        audience: Sequence[str] = (),
        scope: str = "",
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        self._client = client
        self._workload = workload_token
        self._parent = delegated_from
        self._fields = {
            "organization": organization,
            "client_id": client_id,
            "service_account": service_account,
            "scope": scope,
        }
        self._audience = list(audience)
        self._margin = refresh_margin
        self._clock = clock
        self._current: IssuedToken | None = None
        self._refresh_after = 0.0
        self._inflight: asyncio.Task[IssuedToken] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(delegated={self._parent is not None})"

    async def token(self) -> str:
        """A current access token, exchanged only when the cached one is near expiry."""
        return (await self.issued()).access_token

    async def issued(self) -> IssuedToken:
        """As :meth:`token`, with the expiry and granted scopes."""
        current = self._current
        if current is not None and self._clock() < self._refresh_after:
            return current
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._refresh())
        # shield: one caller's cancellation must not fail the others' exchange.
        return await asyncio.shield(self._inflight)

    def invalidate(self) -> None:
        """Forget the cached token, e.g. after the server said it was revoked."""
        self._current = None

    async def _refresh(self) -> IssuedToken:
        try:
            workload = await _resolve(self._workload)
            if self._parent is None:
                request = token_pb2.ExchangeTokenRequest(
                    grant_type=TOKEN_EXCHANGE,
                    subject_token=workload,
                    subject_token_type=JWT_TYPE,
                    audience=self._audience,
                    **self._fields,
                )
            else:
                request = _sub_delegation(
                    await _resolve(self._parent), workload, self._audience, self._fields
                )
            issued = await self._exchange(request)
            lifetime = issued.expires_at - self._clock()
            self._current = issued
            self._refresh_after = issued.expires_at - min(self._margin, lifetime / 2)
            return issued
        finally:
            self._inflight = None

    async def _exchange(self, request: token_pb2.ExchangeTokenRequest) -> IssuedToken:
        started = self._clock()
        response = await self._client.tokens.ExchangeToken(request)
        return IssuedToken(
            access_token=response.access_token,
            expires_at=started + response.expires_in,
            scope=response.scope,
            issued_token_type=response.issued_token_type or ACCESS_TOKEN_TYPE,
        )

    async def sub_delegate(
        self,
        parent_token: str,
        actor_token: TokenGetter | str,
        *,
        scope: str = "",
        audience: Sequence[str] = (),
    ) -> IssuedToken:
        """Hands a narrower delegated token to a subagent, in one exchange (not cached).

        ``parent_token`` is the delegated token this agent holds; ``actor_token``
        the subagent's workload token. The server allows the hop only where a
        delegation rule lets this agent delegate to the subagent, never widens
        the parent's scopes and stops at the organization's maximum depth.
        """
        fields = {"scope": scope}
        return await self._exchange(
            _sub_delegation(parent_token, await _resolve(actor_token), list(audience), fields)
        )


def _sub_delegation(
    parent: str, actor: str, audience: list[str], fields: dict[str, str]
) -> token_pb2.ExchangeTokenRequest:
    return token_pb2.ExchangeTokenRequest(
        grant_type=TOKEN_EXCHANGE,
        subject_token=parent,
        subject_token_type=ACCESS_TOKEN_TYPE,
        actor_token=actor,
        actor_token_type=JWT_TYPE,
        audience=audience,
        **{k: v for k, v in fields.items() if k == "scope" or v},
    )
