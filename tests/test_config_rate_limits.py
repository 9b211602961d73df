"""The deployment's rate limits come from AGENTAUTH_RATE_LIMIT_* (defaults otherwise)."""

from __future__ import annotations

import pytest

from control_plane.config import Settings
from control_plane.domain.rate_limit import Limit, RateLimitDefaults


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in ("ORG", "PRINCIPAL", "ANONYMOUS"):
        for what in ("RPS", "BURST"):
            monkeypatch.delenv(f"AGENTAUTH_RATE_LIMIT_{kind}_{what}", raising=False)
    assert Settings().rate_limit_defaults == RateLimitDefaults()


def test_environment_overrides_each_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTAUTH_RATE_LIMIT_ORG_RPS", "50")
    monkeypatch.setenv("AGENTAUTH_RATE_LIMIT_PRINCIPAL_BURST", "7")
    monkeypatch.setenv("AGENTAUTH_RATE_LIMIT_ANONYMOUS_RPS", "0")  # 0 disables it
    d = Settings().rate_limit_defaults
    assert d.org == Limit(50, RateLimitDefaults().org.burst)
    assert d.principal == Limit(RateLimitDefaults().principal.rate_per_second, 7)
    assert d.anonymous.unlimited


@pytest.mark.parametrize(
    ("name", "value"), [("ORG_RPS", "-1"), ("ORG_BURST", "0"), ("PRINCIPAL_RPS", "nan")]
)
def test_invalid_values_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"AGENTAUTH_RATE_LIMIT_{name}", value)
    with pytest.raises(ValueError, match="AGENTAUTH_RATE_LIMIT"):
        Settings()
