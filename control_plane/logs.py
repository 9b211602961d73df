"""structlog logging (JSON lines, or columns for people on a terminal) with one
redaction choke point.

Every log line — ours and the stdlib loggers of grpc, aiohttp, SQLAlchemy — goes
through ``redact``: values under secret-looking keys are replaced, and secret-
shaped substrings (admin keys, bearer credentials, JWTs, PEM blocks) are masked
wherever they appear, including formatted tracebacks.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|authorization|api_?key|private|kek|dek|credential|cookie|"
    r"plaintext|assertion)",
    re.IGNORECASE,
)
# Keys that match the pattern above but never hold secrets.
_SAFE_KEYS = frozenset(
    {"token_type", "key_hint", "principal_key", "kek_version", "kek_provider", "kek_file"}
)
_SECRET_VALUES = [
    re.compile(r"aa_(?:org|plat)_[A-Za-z0-9_-]+"),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
]


# Cheap substring tests that every secret shape above contains (case-folded),
# so the regexes only run on the rare string that could match.
_MARKERS = ("aa_", "bearer", "basic", "eyj", "private key")


def scrub(text: str) -> str:
    folded = text.lower()
    if not any(marker in folded for marker in _MARKERS):
        return text
    for pattern in _SECRET_VALUES:
        text = pattern.sub(REDACTED, text)
    return text


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return bool(key) and key not in _SAFE_KEYS and bool(_SECRET_KEY.search(key))


def _clean(key: str, value: Any, depth: int = 0) -> Any:
    if _secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if depth < 4 and isinstance(value, Mapping):
        return {str(k): _clean(str(k), v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, list | tuple):
        return [_clean("", v, depth + 1) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(repr(value))


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: the only place log values are cleaned."""
    return {k: (scrub(str(v)) if k == "event" else _clean(k, v)) for k, v in event_dict.items()}


#: ``AGENTAUTH_LOG_FORMAT`` values; empty means by the stream (see :func:`configure`).
FORMATS = ("json", "console")


def configure(level: int = logging.INFO, stream: TextIO | None = None, fmt: str = "") -> None:
    """Log lines to ``stream`` (stderr by default) for structlog and stdlib loggers.

    ``fmt`` ``json``: one JSON object a line, for collectors. ``console``: structlog's
    ConsoleRenderer, aligned columns for people. Empty: console on a terminal (colours
    included), JSON otherwise. Both renderers come after ``redact``; the renderer
    only changes how the cleaned values look.
    """
    stream = stream or sys.stderr
    if fmt not in ("", *FORMATS):
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    tty = _isatty(stream)
    console = fmt == "console" or (not fmt and tty)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=tty, exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    structlog.configure(
        # Drop below-level events before any processing (structlog would
        # otherwise render every debug line and let stdlib discard it).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Safe to cache: level and stream live on the stdlib side, which configure()
        # changes; the processor chain is the same on every call.
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_agentauth", False):
            root.removeHandler(old)
    handler._agentauth = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    global _HANDLER
    # info_line writes JSON itself; for people it goes through the renderer instead.
    _HANDLER = None if console else handler


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


_HANDLER: logging.Handler | None = None


def info_line(logger: logging.Logger, event: str, fields: Mapping[str, Any]) -> None:
    """One INFO line for a hot, fixed-shape event whose values are ours (audit records).

    The same JSON shape, redaction of string values and stream as every other line,
    without structlog's processor chain and the stdlib formatter: on the token-mint
    path those cost more than the mint (bench/grpc_vs_http.py profile). Falls back to
    the ordinary path when logging was not configured here.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _HANDLER
    if handler is None or not isinstance(handler, logging.StreamHandler):
        structlog.stdlib.get_logger(logger.name).info(event, **fields)
        return
    doc = {k: (scrub(v) if isinstance(v, str) else v) for k, v in fields.items()}
    doc["event"] = event
    doc["level"] = "info"
    doc["logger"] = logger.name
    doc["timestamp"] = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    line = json.dumps(doc, default=str) + "\n"
    handler.acquire()
    try:
        handler.stream.write(line)
        handler.flush()
    finally:
        handler.release()


class Throttled:
    """At most one line per kind per ``interval`` seconds; the next one counts the rest.

    For events a caller without credentials can cause at will (undecodable
    messages, oversized requests): each is still counted in the metrics, but the
    log gets one line per kind per interval, carrying ``suppressed``, the number
    of lines dropped since the previous one. Kinds must come from a fixed set
    (reasons), never from request values, so the table stays bounded.
    """

    def __init__(
        self, name: str, interval: float, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = get_logger(name)
        self._interval = interval
        self._now = now
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def info(self, kind: str, event: str, **fields: Any) -> bool:
        """Log ``event`` at INFO unless ``kind`` was logged within the interval."""
        now = self._now()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._dropped[kind] = self._dropped.get(kind, 0) + 1
            return False
        self._last[kind] = now
        self._log.info(event, suppressed=self._dropped.pop(kind, 0), **fields)
        return True


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
