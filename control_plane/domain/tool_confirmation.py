"""Human confirmation of a tool call: who may give it, and what the human is shown.

A call that an org's policy rule marks ``confirm`` waits for a human. Each such
rule says who may decide (:class:`RuleApprovers`): the users it names, the members
of the groups it names, or — when it names neither — the principal, the user the
agent acts for. Rules only ever narrow, so when several rules require confirmation
the approver must satisfy every one of them.

The approver is shown a :func:`summary` the runtime writes from the tool's name and
the arguments' names with short scalar values — the very arguments that will be
sent, never anything from a credential (those are not arguments) and never text the
model chose to present as a description of its own call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from control_plane.domain.tool_policy import ToolRule

PENDING = "PENDING"
APPROVED = "APPROVED"
DENIED = "DENIED"
EXPIRED = "EXPIRED"
USED = "USED"
STATES = (PENDING, APPROVED, DENIED, EXPIRED, USED)

MAX_SUMMARY = 512
#: A string argument longer than this is shown by its length only.
MAX_SHOWN_VALUE = 64
#: A list of scalars shows at most this many items.
MAX_SHOWN_ITEMS = 3


@dataclass(frozen=True, slots=True)
class RuleApprovers:
    """Who may confirm for one rule, as the rule said when the call was made."""

    rule: str
    users: frozenset[str] = frozenset()  # user ids
    groups: frozenset[str] = frozenset()

    @classmethod
    def of(cls, rule: ToolRule) -> RuleApprovers:
        return cls(rule.id, rule.approvers, rule.approver_groups)

    @property
    def principal_decides(self) -> bool:
        return not self.users and not self.groups

    def admits(self, user_id: str, groups: frozenset[str], principal_user: str | None) -> bool:
        if self.principal_decides:
            return principal_user is not None and user_id == principal_user
        return user_id in self.users or bool(self.groups & groups)

    def to_record(self) -> dict[str, object]:
        return {"rule": self.rule, "users": sorted(self.users), "groups": sorted(self.groups)}

    @classmethod
    def from_record(cls, doc: Mapping[str, Any]) -> RuleApprovers:
        users, groups = doc["users"], doc["groups"]
        if not isinstance(users, list) or not isinstance(groups, list):
            raise TypeError("a stored approver entry is not lists")
        return cls(str(doc["rule"]), frozenset(map(str, users)), frozenset(map(str, groups)))


def may_approve(
    rules: Sequence[RuleApprovers],
    user_id: str,
    groups: Iterable[str],
    principal_user: str | None,
) -> bool:
    """Whether the user ``user_id`` (in ``groups``) may decide for a call held by
    ``rules``; ``principal_user`` is the call's principal when it is a user."""
    member_of = frozenset(groups)
    return bool(rules) and all(r.admits(user_id, member_of, principal_user) for r in rules)


def anyone_may_approve(rules: Sequence[RuleApprovers], principal_user: str | None) -> bool:
    """False when no one could ever decide: a rule leaves it to the principal, and the
    principal is not a user (a service account's own call)."""
    return bool(rules) and not any(r.principal_decides and principal_user is None for r in rules)


def summary(tool: str, arguments: Mapping[str, Any]) -> str:
    """``gmail.send_message to=bob@example.com subject=Hi body=(420 chars)``: the tool
    and each top-level argument (sorted by name) with a short rendering of its value,
    on one line, at most :data:`MAX_SUMMARY` characters."""
    parts = [tool]
    for name in sorted(arguments):
        parts.append(f"{_one_line(name, MAX_SHOWN_VALUE)}={_shown(arguments[name])}")
    text = " ".join(parts)
    if len(text) > MAX_SUMMARY:
        text = text[: MAX_SUMMARY - 1] + "…"
    return text


def _shown(value: Any) -> str:
    if isinstance(value, list):
        if all(_is_scalar(v) for v in value) and len(value) <= MAX_SHOWN_ITEMS:
            items = [_scalar(v) for v in value]
            if sum(len(i) for i in items) <= MAX_SHOWN_VALUE:
                return ",".join(items)
        return f"({len(value)} items)"
    if isinstance(value, dict):
        return f"({len(value)} fields)"
    return _scalar(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        if len(value) > MAX_SHOWN_VALUE or _one_line(value, len(value)) != value:
            return f"({len(value)} chars)"
        return value if value and " " not in value else repr(value)
    return "(value)"


def _one_line(text: str, limit: int) -> str:
    """``text`` without control characters, cut at ``limit``."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return cleaned[:limit]
