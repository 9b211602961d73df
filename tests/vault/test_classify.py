"""The runtime classifier applied to each provider's documented failure bodies
(shared/reference/provider_quirks.md §2): decided by body and headers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from control_plane.connectors.loader import load_catalog
from control_plane.vault.classify import classify

CATALOG = load_catalog()


def _aad(code: int, error: str = "invalid_grant") -> dict[str, Any]:
    return {"error": error, "error_description": f"AADSTS{code}: ...", "error_codes": [code],
            "timestamp": "2026-11-28 10:00:00Z", "trace_id": "t", "correlation_id": "c"}


CASES: list[tuple[str, str, int, dict[str, str], Any, str]] = [
    # connector, phase, status, headers, body, expected class
    ("outlook", "token", 400, {}, _aad(700082), "revoked"),
    ("outlook", "token", 400, {}, _aad(50173), "revoked"),
    ("outlook", "token", 400, {}, _aad(53003), "revoked"),
    ("outlook", "token", 400, {}, _aad(53003, "interaction_required"), "revoked"),
    ("outlook", "token", 400, {}, _aad(50076, "interaction_required"), "revoked"),
    ("outlook", "token", 401, {}, _aad(7000215, "invalid_client"), "operator_error"),
    ("outlook", "token", 401, {}, _aad(7000222, "invalid_client"), "operator_error"),
    ("outlook", "token", 400, {}, _aad(700016, "unauthorized_client"), "operator_error"),
    ("outlook", "token", 429, {}, _aad(90055, "temporarily_unavailable"), "rate_limited"),
    ("outlook", "token", 400, {}, _aad(50033, "temporarily_unavailable"), "transient"),
    ("outlook", "token", 400, {}, _aad(90006, "temporarily_unavailable"), "transient"),
    ("outlook", "api", 401, {}, {"error": {"code": "InvalidAuthenticationToken",
                                            "message": "Access token has expired"}},
     "expired_access"),
    ("outlook", "api", 429, {"Retry-After": "7"}, {"error": {"code": "TooManyRequests"}},
     "rate_limited"),
    ("slack", "token", 200, {}, {"ok": False, "error": "invalid_refresh_token"}, "refresh_race"),
    ("slack", "token", 200, {}, {"ok": False, "error": "token_revoked"}, "revoked"),
    ("slack", "token", 200, {}, {"ok": False, "error": "bad_client_secret"}, "operator_error"),
    ("slack", "api", 200, {}, {"ok": False, "error": "token_expired"}, "expired_access"),
    ("slack", "api", 429, {"Retry-After": "30"}, {"ok": False, "error": "ratelimited"},
     "rate_limited"),
    ("gmail", "token", 400, {}, {"error": "invalid_grant",
                                  "error_description": "Token has been expired or revoked."},
     "refresh_race"),
    ("hubspot", "api", 401, {}, {"status": "error", "category": "EXPIRED_AUTHENTICATION"},
     "expired_access"),
    ("hubspot", "api", 429, {}, {"status": "error", "errorType": "RATE_LIMIT",
                                  "policyName": "SECONDLY"}, "rate_limited"),
    ("hubspot", "token", 400, {}, {"error": "invalid_grant", "status": "BAD_REFRESH_TOKEN"},
     "refresh_race"),
    ("salesforce", "api", 401, {}, [{"message": "Session expired or invalid",
                                      "errorCode": "INVALID_SESSION_ID"}], "expired_access"),
    ("salesforce", "api", 403, {}, [{"message": "TotalRequests Limit exceeded.",
                                      "errorCode": "REQUEST_LIMIT_EXCEEDED"}], "rate_limited"),
    ("github", "token", 200, {}, {"error": "bad_refresh_token"}, "refresh_race"),
    ("github", "api", 403, {"x-ratelimit-remaining": "0",
                            "x-ratelimit-reset": str(int(time.time()) + 60)},
     {"message": "API rate limit exceeded"}, "rate_limited"),
    ("jira", "token", 403, {}, {"error": "invalid_grant",
                                 "error_description": "Unknown or invalid refresh token."},
     "refresh_race"),
    ("jira", "token", 403, {}, {"error": "unauthorized_client",
                                 "error_description": "refresh_token is invalid"}, "refresh_race"),
    ("zoom", "token", 400, {}, {"reason": "Invalid Token!", "error": "invalid_request"},
     "refresh_race"),
    ("dropbox", "api", 401, {}, {"error_summary": "expired_access_token/..",
                                  "error": {".tag": "expired_access_token"}}, "expired_access"),
]


@pytest.mark.parametrize(
    ("connector", "phase", "status", "headers", "body", "expected"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{i}" for i, c in enumerate(CASES)],
)
def test_documented_failures_are_classified(
    connector: str, phase: str, status: int, headers: dict[str, str], body: Any, expected: str
) -> None:
    failure = classify(
        CATALOG.connectors[connector], phase, status, headers, json.dumps(body).encode()
    )
    assert failure.error_class == expected, failure


def test_retry_after_comes_from_the_rules_source_and_is_bounded() -> None:
    gh = CATALOG.connectors["github"]
    reset = str(int(time.time()) + 42)
    f = classify(gh, "api", 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
                 b'{"message": "API rate limit exceeded"}')
    assert f.retry_after is not None and 35 <= f.retry_after <= 43
    slack = CATALOG.connectors["slack"]
    f = classify(slack, "api", 429, {"Retry-After": "999999"}, b'{"ok": false, "error": "ratelimited"}')
    assert f.retry_after == 3600.0
    f = classify(slack, "api", 429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"{}")
    assert f.retry_after == 0.0  # a date in the past: retry now


def test_unknown_failures_fall_back_to_generic_rules_not_revocation() -> None:
    c = CATALOG.connectors["notion"]
    assert classify(c, "token", 503, {}, b"<html>").error_class == "transient"
    assert classify(c, "token", 400, {}, b'{"error": "invalid_client"}').error_class == (
        "operator_error")
    assert classify(c, "api", 500, {}, b"garbage").error_class == "transient"
