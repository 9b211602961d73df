"""An org's tool policy, evaluated by the runtime on every call — never by a prompt.

A token's tool scopes (:mod:`.tool_scopes`) make a tool eligible; the org's policy
then decides whether *this* actor may run it *with these arguments*. The model
writes the arguments, so no argument can widen privilege: a rule's argument
constraints are checked against the very values that will be sent.

A policy is a list of rules, each for one tool pattern (``github.create_issue``,
``github.*``, ``*``) and, optionally, only for some actors (agent ids) or some
principals' groups. For a call, every rule that applies must be satisfied
(rules only ever narrow); a tool is runnable only if the org enabled it. A rule:

- ``agents``: when set, only these agents may run the tool as the current actor
  (the outermost ``act`` of a delegated token, the ``client_id`` of an SA token);
- ``constraints``: each names a *value* built from the arguments with a template of
  RFC 6901 pointers in braces — ``"{/owner}/{/repo}"`` — and the patterns it must
  match (``acme/*``, ``acme/api``; ``*`` matches any run of characters except
  ``/``, ``**`` any run including ``/``). A pointer to an argument that is absent
  or not a string, number or boolean fails the constraint (closed by default);
- ``confirm``: the call needs a human's confirmation first (destructive tools), by
  one of the rule's ``approvers`` (user ids) or a member of its ``approver_groups``;
  a rule naming neither lets the principal (the user the agent acts for) confirm
  (:mod:`.tool_confirmation`).

The seed case: an org allows ``github.create_issue`` only in ``acme/api``; a model
told by a poisoned issue to file into ``evil/exfil`` is refused ``POLICY_DENIED``
naming the constraint, not the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from control_plane.domain.errors import PermissionDenied
from control_plane.domain.tool_scopes import TOOL_NAME
from control_plane.domain.trust import glob_to_regex

_TEMPLATE_PART = re.compile(r"\{(/[^{}]*|)\}")
_POINTER = re.compile(r"(?:/(?:[^/~]|~[01])*)+")  # RFC 6901 §3, at least one token
MAX_PATTERNS = 256
MAX_VALUE = 2048


class PolicyDenied(PermissionDenied):
    """``POLICY_DENIED``: the org's tool policy refuses this call (which rule, never why
    in terms of the argument's value)."""

    default_reason = "POLICY_DENIED"
    default_message = "the organization's tool policy does not allow this call"

    def __init__(self, why: str, rule: str = "") -> None:
        super().__init__(why, metadata={"rule": rule} if rule else {})


@dataclass(frozen=True, slots=True)
class ArgumentConstraint:
    value: str  # a template of JSON pointers: "{/owner}/{/repo}"
    allow: tuple[str, ...]

    def __post_init__(self) -> None:
        if not _TEMPLATE_PART.search(self.value):
            raise ValueError("a constraint's value must name at least one argument")
        # A brace that opens no pointer would be matched literally ("{owner}"), and an
        # empty one names the whole arguments object: both are typos, never policy.
        literal = _TEMPLATE_PART.sub("", self.value)
        if "{" in literal or "}" in literal:
            raise ValueError("every brace in a constraint's value must enclose a JSON pointer")
        for part in _TEMPLATE_PART.finditer(self.value):
            if not _POINTER.fullmatch(part.group(1)):
                raise ValueError(
                    "a JSON pointer in a constraint's value must name an argument "
                    "('/' tokens; '~' only as ~0 or ~1)"
                )
        if not self.allow or len(self.allow) > MAX_PATTERNS:
            raise ValueError(f"a constraint allows 1 to {MAX_PATTERNS} patterns")

    def admits(self, arguments: Mapping[str, Any]) -> bool:
        rendered = render(self.value, arguments)
        if rendered is None or len(rendered) > MAX_VALUE:
            return False
        return any(_pattern(p).fullmatch(rendered) is not None for p in self.allow)


@dataclass(frozen=True, slots=True)
class ToolRule:
    id: str
    tool: str  # "connector.tool", "connector.*" or "*"
    agents: frozenset[str] | None = None  # None: any actor
    groups: frozenset[str] | None = None  # None: any principal; else its groups must meet
    constraints: tuple[ArgumentConstraint, ...] = ()
    confirm: bool = False
    approvers: frozenset[str] = frozenset()  # user ids who may confirm
    approver_groups: frozenset[str] = frozenset()  # groups whose members may confirm

    def __post_init__(self) -> None:
        if not _tool_pattern_ok(self.tool):
            raise ValueError(f"not a tool pattern: {self.tool!r}")

    def covers(self, tool_name: str) -> bool:
        if self.tool == "*":
            return True
        if self.tool.endswith(".*"):
            return tool_name.split(".", 1)[0] == self.tool[:-2]
        return tool_name == self.tool

    def admits_actor(self, actor_agent: str | None) -> bool:
        """Whether this rule lets ``actor_agent`` run its tools (any agent when unset)."""
        return self.agents is None or actor_agent in self.agents

    def applies(self, tool_name: str, groups: frozenset[str]) -> bool:
        return self.covers(tool_name) and (self.groups is None or bool(self.groups & groups))


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    enabled: frozenset[str]  # tool names the org has enabled
    rules: tuple[ToolRule, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolRuleSpec:
    """A rule as an administrator writes it (agents by resource name), before checks."""

    tool: str
    agents: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    constraints: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (value template, allow)
    confirm: bool = False
    description: str = ""
    approvers: tuple[str, ...] = ()  # "orgs/{org}/users/{user}"
    approver_groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    confirm: bool  # a human must confirm before the call runs
    rules: tuple[str, ...] = field(default=())  # the rules that applied (for the audit)
    #: The rules that require confirmation (each says who may give it).
    confirming: tuple[ToolRule, ...] = field(default=())


def evaluate(
    policy: ToolPolicy,
    tool_name: str,
    actor_agent: str | None,
    groups: Iterable[str],
    arguments: Mapping[str, Any],
) -> Decision:
    """Allow the call (saying whether it needs confirmation) or raise
    :class:`PolicyDenied`. ``arguments`` must already fit the tool's schema."""
    if tool_name not in policy.enabled:
        raise PolicyDenied("the tool is not enabled for this organization")
    member_of = frozenset(groups)
    applied = [r for r in policy.rules if r.applies(tool_name, member_of)]
    for rule in applied:
        if not rule.admits_actor(actor_agent):
            raise PolicyDenied("this agent may not run the tool", rule.id)
        for constraint in rule.constraints:
            if not constraint.admits(arguments):
                raise PolicyDenied(
                    f"an argument is outside what the policy allows ({constraint.value})",
                    rule.id,
                )
    confirming = tuple(r for r in applied if r.confirm)
    return Decision(bool(confirming), tuple(r.id for r in applied), confirming)


def render(template: str, arguments: Mapping[str, Any]) -> str | None:
    """The template with each ``{/pointer}`` replaced by that argument's scalar value;
    None when one is missing or not a scalar."""
    out: list[str] = []
    last = 0
    for match in _TEMPLATE_PART.finditer(template):
        out.append(template[last : match.start()])
        value = resolve(arguments, match.group(1))
        if isinstance(value, bool):
            out.append("true" if value else "false")
        elif isinstance(value, str | int | float):
            out.append(str(value))
        else:
            return None
        last = match.end()
    out.append(template[last:])
    return "".join(out)


_MISSING = object()


def resolve(document: Any, json_pointer: str) -> Any:
    """RFC 6901 evaluation; ``_MISSING`` (a private sentinel) when nothing is there."""
    if json_pointer == "":
        return document
    node = document
    for token in json_pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            if token != "0" and token.startswith("0"):
                return _MISSING  # RFC 6901 §4: no leading zeros
            node = node[int(token)]
        else:
            return _MISSING
    return node


@lru_cache(maxsize=4096)
def _pattern(glob: str) -> re.Pattern[str]:
    """The trust policies' glob grammar (``*`` within a ``/`` segment, ``**`` across)."""
    return glob_to_regex(glob)


def _tool_pattern_ok(pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return TOOL_NAME.match(pattern[:-2] + ".x") is not None
    return TOOL_NAME.match(pattern) is not None
