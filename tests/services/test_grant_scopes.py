"""RFC 6749 §5.2 ``invalid_scope`` names the scopes that were not allowed."""

from __future__ import annotations

import pytest

from control_plane.domain.errors import InvalidScope
from control_plane.services.grants.issuance import grant_scopes


def test_the_description_names_each_refused_scope() -> None:
    with pytest.raises(InvalidScope) as err:
        grant_scopes(frozenset({"read"}), "read write admin")
    assert err.value.message == "scope not allowed: admin write"


def test_a_long_refusal_names_the_first_eight_and_counts_the_rest() -> None:
    asked = " ".join(f"s{i:02}" for i in range(12))
    with pytest.raises(InvalidScope) as err:
        grant_scopes(frozenset({"read"}), asked)
    shown = " ".join(f"s{i:02}" for i in range(8))
    assert err.value.message == f"scope not allowed: {shown} (and 4 more)"


def test_an_allowed_request_is_granted_sorted() -> None:
    assert grant_scopes(frozenset({"b", "a", "c"}), "c a") == ["a", "c"]
