"""The Brave Search API as the API-key emulator answers it (developer secret).

Sources: the web, news and image search response models; the response headers at
https://api-dashboard.search.brave.com/app/documentation/web-search/response-headers
(``X-RateLimit-Limit: 1, 15000``, ``X-RateLimit-Reset: 1, 1419704``: the per-second
window, then the monthly one; only successful requests count). ``ErrorResponse``
bodies as users report them: 422 (or 401) ``SUBSCRIPTION_TOKEN_INVALID``, 429
``RATE_LIMITED`` with the plan's limits in ``meta``, 422 ``VALIDATION`` for a
missing token or parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from control_plane.connectors.model import Tool
from control_plane.sandbox._key_profile import KeyProfile, Query, alnum
from control_plane.sandbox._resource_api import Reply

_MONTH = 2592000  # Brave's monthly window, in seconds (X-RateLimit-Policy: ...;w=2592000)


class BraveProfile(KeyProfile):
    errors = ("invalid_token", "rate_limit")

    def __init__(self, *, invalid_status: int = 422, rate: int = 1, quota: int = 2000) -> None:
        #: Brave answers a wrong token with 422 (most reports) or 401: the same body.
        self.invalid_status = invalid_status
        self.rate, self.quota = rate, quota
        #: Successful calls this month (only successful requests are counted).
        self.used = 0

    def new_key(self) -> str:
        return "BSA" + alnum(28)

    def _headers(self, remaining_now: int, reset_now: int, now: float) -> dict[str, str]:
        month_left = _MONTH - int(now) % _MONTH
        return {
            "X-RateLimit-Limit": f"{self.rate}, {self.quota}",
            "X-RateLimit-Policy": f"{self.rate};w=1, {self.quota};w={_MONTH}",
            "X-RateLimit-Remaining": f"{remaining_now}, {max(self.quota - self.used, 0)}",
            "X-RateLimit-Reset": f"{reset_now}, {month_left}",
        }

    def _error(
        self, status: int, code: str, detail: str, meta: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        error = {"id": str(uuid.uuid4()), "status": status, "code": code, "detail": detail}
        return {"type": "ErrorResponse", "error": {**error, "meta": dict(meta)}, "time": int(now)}

    def missing_key(self, now: float) -> Reply:
        meta = {
            "errors": [
                {
                    "type": "missing",
                    "loc": ["header", "x-subscription-token"],
                    "msg": "Field required",
                }
            ]
        }
        body = self._error(422, "VALIDATION", "Unable to validate request parameter(s)", meta, now)
        return 422, body, {}

    def invalid_key(self, key: str, now: float) -> Reply:
        status = self.invalid_status
        detail = "The provided subscription token is invalid."
        meta = {"component": "authentication"}
        return status, self._error(status, "SUBSCRIPTION_TOKEN_INVALID", detail, meta, now), {}

    def rate_limited(self, retry_after: int, now: float) -> Reply:
        meta = {
            "plan": "Free",
            "rate_limit": self.rate,
            "rate_current": self.rate,
            "quota_limit": self.quota,
            "quota_current": self.used,
            "org_rate_limit": None,
            "org_rate_current": 0,
            "component": "rate_limiter",
        }
        body = self._error(429, "RATE_LIMITED", "Request rate limit exceeded for plan", meta, now)
        return 429, body, self._headers(0, retry_after, now)

    def error(self, name: str, key: str, retry_after: int, now: float) -> Reply:
        if name == "invalid_token":
            return self.invalid_key(key, now)
        if name == "rate_limit":
            return self.rate_limited(retry_after, now)
        raise ValueError(f"unknown Brave error {name!r}; one of {self.errors}")

    def status_error(self, status: int, retry_after: int, now: float) -> Reply:
        if status == 429:
            return self.rate_limited(retry_after, now)
        if status in (401, 422):
            return self.invalid_key("", now)
        meta = {"component": "api"}
        return status, self._error(status, "INTERNAL_ERROR", "Internal error", meta, now), {}

    def success_headers(self, now: float) -> dict[str, str]:
        return self._headers(max(self.rate - 1, 0), 1, now)

    def answer(self, tool: Tool, path: Query, query: Query, body: Any, now: float) -> Reply:
        q = query.get("q", "")
        if not q:
            meta = {"errors": [{"type": "missing", "loc": ["query", "q"], "msg": "Field required"}]}
            detail = "Unable to validate request parameter(s)"
            return 422, self._error(422, "VALIDATION", detail, meta, now), {}
        self.used += 1
        count = min(int(query.get("count", "3")), 3)
        echo = {"original": q, "show_strict_warning": False, "spellcheck_off": True}
        if tool.name == "web_search.search":
            results = [self._result(q, i, "search_result") for i in range(count)]
            doc: dict[str, Any] = {
                "type": "search",
                "query": {**echo, "more_results_available": True, "country": "us"},
                "mixed": {
                    "type": "mixed",
                    "main": [{"type": "web", "index": i, "all": False} for i in range(count)],
                    "top": [],
                    "side": [],
                },
                "web": {"type": "search", "results": results, "family_friendly": True},
            }
        elif tool.name == "web_search.news":
            results = [
                {**self._result(q, i, "news_result"), "breaking": False} for i in range(count)
            ]
            doc = {"type": "news", "query": echo, "results": results}
        else:
            doc = {
                "type": "images",
                "query": echo,
                "results": [self._image(q, i) for i in range(count)],
            }
        return 200, doc, self.success_headers(now)

    @staticmethod
    def _slug(q: str) -> str:
        return "-".join("".join(c if c.isalnum() else " " for c in q.lower()).split())[:40] or "q"

    def _result(self, q: str, i: int, kind: str) -> dict[str, Any]:
        host = f"site{i + 1}.example.com"
        url = f"https://{host}/{self._slug(q)}"
        return {
            "type": kind,
            "title": f"{q} - result {i + 1}",
            "url": url,
            "description": f"A page about <strong>{q}</strong>.",
            "age": "2 days ago",
            "page_age": "2026-11-30T08:00:00",
            "language": "en",
            "family_friendly": True,
            "meta_url": {
                "scheme": "https",
                "netloc": host,
                "hostname": host,
                "favicon": f"https://imgs.search.brave.com/favicon/{host}",
                "path": f"› {self._slug(q)}",
            },
        }

    def _image(self, q: str, i: int) -> dict[str, Any]:
        host = f"images{i + 1}.example.com"
        return {
            "type": "image_result",
            "title": f"{q} {i + 1}",
            "url": f"https://{host}/{self._slug(q)}.html",
            "source": host,
            "page_fetched": "2026-11-30T08:00:00Z",
            "thumbnail": {"src": f"https://imgs.search.brave.com/thumb/{host}/{i}.jpg"},
            "properties": {
                "url": f"https://{host}/{self._slug(q)}.jpg",
                "placeholder": f"https://imgs.search.brave.com/placeholder/{host}/{i}.jpg",
            },
            "meta_url": {"scheme": "https", "netloc": host, "hostname": host, "path": "›"},
            "confidence": "high",
        }
