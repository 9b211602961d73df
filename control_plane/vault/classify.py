"""Classifying a provider's failure with the connector's rules (then generic RFC 6749 ones).

A connector's ``errors`` are ordered; the first rule whose every condition holds
wins: its phase (token endpoint or API), its statuses, dotted body paths (arrays
along the path are searched element by element; a list of wanted values means
any of them), a substring of the raw body, and header regexes ("" = present).
Only when no rule matches do generic rules apply: RFC 6749 §5.2 error codes at
the token endpoint, then the status family. ``retry_after`` comes from the rule's
source (``Retry-After`` seconds or HTTP date, an epoch reset header, or the body)
and is bounded.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control_plane.connectors.model import Connector, ErrorRule
from control_plane.connectors.output import header

MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class Failure:
    error_class: str
    reason: str
    retry_after: float | None = None


def _values(doc: Any, parts: list[str]) -> list[Any]:
    if isinstance(doc, list):
        return [v for item in doc for v in _values(item, parts)]
    if not parts:
        return [doc]
    if isinstance(doc, dict) and parts[0] in doc:
        return _values(doc[parts[0]], parts[1:])
    return []


def _matches(
    rule: ErrorRule, phase: str, status: int, doc: Any, text: str, headers: Mapping[str, str]
) -> bool:
    if rule.phase not in (None, phase) or (rule.status and status not in rule.status):
        return False
    if rule.body_contains and rule.body_contains not in text:
        return False
    for path, want in rule.body.items():
        wanted = want if isinstance(want, list) else [want]
        if not any(v in wanted for v in _values(doc, path.split("."))):
            return False
    for name, pattern in rule.header.items():
        value = header(headers, name)
        if value is None or not re.search(pattern, value):
            return False
    return True


def _seconds(value: str | None, *, epoch: bool = False) -> float | None:
    if value is None:
        return None
    first = value.split(",")[0].strip()  # Brave: "1, 1419704" (the first window)
    try:
        number = float(first)
    except ValueError:
        try:  # an HTTP-date (RFC 9110 §10.2.3), which has a comma of its own
            moment = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError):
            return None
        number, epoch = moment.timestamp(), True
    if not math.isfinite(number):
        return None
    if epoch:
        number -= time.time()
    return min(max(number, 0.0), MAX_RETRY_AFTER)


def _retry_after(rule: ErrorRule | None, doc: Any, headers: Mapping[str, str]) -> float | None:
    if rule is None or rule.retry_after is None:
        return _seconds(header(headers, "Retry-After"))
    if rule.retry_after == "body_retry_after":
        for v in _values(doc, ["retry_after"]) + _values(doc, ["error", "retry_after"]):
            if isinstance(v, int | float) and not isinstance(v, bool):
                return _seconds(str(v))
        return None
    epoch = rule.retry_after == "reset_epoch_header"
    return _seconds(header(headers, rule.retry_after_header), epoch=epoch)


def parse_body(raw: bytes) -> tuple[Any, str]:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text), text
    except (ValueError, RecursionError):
        return None, text


def classify(
    connector: Connector, phase: str, status: int, headers: Mapping[str, str], raw: bytes
) -> Failure:
    doc, text = parse_body(raw)
    for rule in connector.errors:
        if _matches(rule, phase, status, doc, text, headers):
            return Failure(rule.error_class, rule.reason, _retry_after(rule, doc, headers))
    return _generic(phase, status, doc, headers)


def classify_response(
    connector: Connector,
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    graphql: bool = False,
) -> Failure | None:
    """The failure an API answer stands for, or None for a success.

    A non-2xx answer is classified as :func:`classify` does. A 2xx answer is a
    success unless

    * a connector rule that names that 2xx status in ``when.status`` matches
      (Slack's ``{"ok": false}``; the loader makes such rules match body paths,
      so text inside an ordinary result can never turn it into a failure), or
    * the tool is GraphQL and the body has a non-empty ``errors`` and no
      ``data`` (absent or null): the GraphQL spec's request or field error that
      left nothing to return (Linear, Shopify ``THROTTLED``). Then the
      connector's rules that name no status classify it (``errors.extensions.code``),
      else it is the caller's error ``GRAPHQL_ERRORS``. A partial result (``data``
      and ``errors``) is a success that carries its errors.
    """
    if not 200 <= status < 300:
        return classify(connector, "api", status, headers, raw)
    doc, text = parse_body(raw)
    for rule in connector.errors:
        if any(s == status for s in rule.status) and _matches(
            rule, "api", status, doc, text, headers
        ):
            return Failure(rule.error_class, rule.reason, _retry_after(rule, doc, headers))
    if graphql and isinstance(doc, dict) and doc.get("errors") and doc.get("data") is None:
        for rule in connector.errors:
            if not rule.status and _matches(rule, "api", status, doc, text, headers):
                return Failure(rule.error_class, rule.reason, _retry_after(rule, doc, headers))
        return Failure("caller_error", "GRAPHQL_ERRORS")
    return None


def _generic(phase: str, status: int, doc: Any, headers: Mapping[str, str]) -> Failure:
    code = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(code, dict):
        code = code.get("code")
    retry = _seconds(header(headers, "Retry-After"))
    if phase == "token":
        if code == "invalid_grant":
            return Failure("refresh_race", "INVALID_GRANT")
        if code in ("invalid_client", "unauthorized_client"):
            return Failure("operator_error", "CLIENT_CREDENTIALS_INVALID")
        if code == "temporarily_unavailable":
            return Failure("transient", "PROVIDER_UNAVAILABLE", retry)
    if status == 429:
        return Failure("rate_limited", "RATE_LIMITED", retry)
    if status >= 500:
        return Failure("transient", "PROVIDER_UNAVAILABLE", retry)
    if phase == "api" and status == 401:
        return Failure("expired_access", "ACCESS_TOKEN_REJECTED")
    if phase == "api" and status == 403:
        return Failure("insufficient_scope", "FORBIDDEN")
    return Failure("caller_error", f"HTTP_{status}")
