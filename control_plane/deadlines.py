"""The caller's deadline, carried from the transport down to every wait below it.

A gRPC client sends its deadline with the call (``grpc-timeout``); the pipeline
records it here for the request's task, and a component that may wait (for
another replica's refresh, say) asks :func:`budget` how long it may: long enough
to answer with a retry hint *before* the caller gives up, instead of working for
a caller that is gone. Without a deadline (HTTP, jobs) the component's own
ceiling applies.
"""

from __future__ import annotations

import contextvars
import time

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "agentauth_deadline", default=None
)

#: Kept back from the caller's remaining time so that the answer reaches it in time.
MARGIN = 0.5


def set_remaining(seconds: float | None) -> contextvars.Token[float | None]:
    """Record that the caller gives up in ``seconds`` (None: no deadline)."""
    return _deadline.set(None if seconds is None else time.monotonic() + seconds)


def reset(token: contextvars.Token[float | None]) -> None:
    _deadline.reset(token)


def remaining() -> float | None:
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def budget(ceiling: float) -> float:
    """How long a wait may take: ``ceiling``, or less to answer before the deadline."""
    left = remaining()
    if left is None:
        return ceiling
    margin = min(MARGIN, left / 10)
    return max(0.0, min(ceiling, left - margin))
