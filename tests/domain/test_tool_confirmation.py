"""Who may confirm a held tool call, and the one-line summary the human is shown."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.domain.tool_confirmation import (
    MAX_SUMMARY,
    RuleApprovers,
    anyone_may_approve,
    may_approve,
    summary,
)
from control_plane.domain.tool_policy import ToolRule

SUMMARIES: list[tuple[dict[str, Any], str]] = [
    ({}, "t.x"),
    ({"to": ["bob@example.com"], "subject": "Hi"}, "t.x subject=Hi to=bob@example.com"),
    ({"to": ["a@x", "b@x"]}, "t.x to=a@x,b@x"),
    ({"to": ["a", "b", "c", "d"]}, "t.x to=(4 items)"),
    ({"subject": "two words"}, "t.x subject='two words'"),
    ({"subject": ""}, "t.x subject=''"),
    ({"body": "line one\nline two"}, "t.x body=(17 chars)"),
    ({"body": "x" * 65}, "t.x body=(65 chars)"),
    ({"n": 3, "ok": True, "f": 1.5, "none": None}, "t.x f=1.5 n=3 none=null ok=true"),
    ({"labels": {"a": 1, "b": 2}}, "t.x labels=(2 fields)"),
    ({"mixed": [1, {"a": 1}]}, "t.x mixed=(2 items)"),
    ({"we\nird": 1}, "t.x we ird=1"),
]


@pytest.mark.parametrize(("arguments", "expected"), SUMMARIES)
def test_summary(arguments: dict[str, Any], expected: str) -> None:
    assert summary("t.x", arguments) == expected


def test_a_summary_is_bounded() -> None:
    many = {f"arg{i:03}": "v" * 60 for i in range(50)}
    text = summary("t.x", many)
    assert len(text) == MAX_SUMMARY and text.endswith("…") and "\n" not in text


ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32
NAMED = RuleApprovers("r1", frozenset({BOB}))
GROUP = RuleApprovers("r2", groups=frozenset({"security"}))
PRINCIPAL = RuleApprovers("r3")

# (rules, approver, approver's groups, principal user, allowed)
DECIDERS: list[tuple[list[RuleApprovers], str, set[str], str | None, bool]] = [
    ([PRINCIPAL], ALICE, set(), ALICE, True),
    ([PRINCIPAL], BOB, set(), ALICE, False),
    ([PRINCIPAL], ALICE, set(), None, False),  # a service account's own call
    ([NAMED], BOB, set(), ALICE, True),
    ([NAMED], ALICE, set(), ALICE, False),  # named approvers replace the principal
    ([GROUP], CAROL, {"security"}, ALICE, True),
    ([GROUP], CAROL, {"eng"}, ALICE, False),
    ([NAMED, GROUP], BOB, set(), ALICE, False),  # every rule must admit the approver
    ([NAMED, GROUP], BOB, {"security"}, ALICE, True),
    ([NAMED, PRINCIPAL], BOB, set(), BOB, True),
    ([], ALICE, set(), ALICE, False),
]


@pytest.mark.parametrize(("rules", "user", "groups", "principal", "allowed"), DECIDERS)
def test_may_approve(
    rules: list[RuleApprovers], user: str, groups: set[str], principal: str | None, allowed: bool
) -> None:
    assert may_approve(rules, user, groups, principal) is allowed


def test_nobody_can_approve_a_service_accounts_call_the_principal_must_confirm() -> None:
    assert not anyone_may_approve([PRINCIPAL], None)
    assert not anyone_may_approve([NAMED, PRINCIPAL], None)
    assert anyone_may_approve([NAMED, GROUP], None)
    assert anyone_may_approve([PRINCIPAL], ALICE)


def test_approvers_round_trip_through_their_record() -> None:
    rule = ToolRule(
        "r9",
        "gmail.*",
        confirm=True,
        approvers=frozenset({BOB, ALICE}),
        approver_groups=frozenset({"sec"}),
    )
    kept = RuleApprovers.of(rule)
    assert kept.to_record() == {"rule": "r9", "users": [ALICE, BOB], "groups": ["sec"]}
    assert RuleApprovers.from_record(kept.to_record()) == kept
    with pytest.raises(TypeError):
        RuleApprovers.from_record({"rule": "r9", "users": "bob", "groups": []})
