"""The tool-scope grammar: which tools a token's ``scope`` claim lets its holder run.

A token names the tools it may run in its space-separated ``scope`` (RFC 6749 §3.3
scope-tokens), one of three forms per tool scope::

    tools:<connector>.<tool>   one tool            tools:github.create_issue
    tools:<connector>.*        every tool of one   tools:gmail.*
    tools:*                    every tool          (a broad grant; policy still applies)

Tool names are the catalog's (``<connector>.<tool>``: lower-case letters, digits and
underscores, one dot). Anything else that starts with ``tools:`` grants nothing —
``tools:github.create_*`` (no partial wildcards), ``tools:Github.list_issues``
(case matters), ``tools:github`` — so a malformed grant can never widen into a
broader one. Scopes without the ``tools:`` prefix are not about tools and are
ignored here. A scope only makes a tool *eligible*: the org's tool policy
(:mod:`.tool_policy`) decides, per call, whether it may run with these arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PREFIX = "tools:"
_PART = r"[a-z][a-z0-9_]{0,63}"
TOOL_NAME = re.compile(rf"^({_PART})\.({_PART})$")
_SCOPE = re.compile(rf"^{PREFIX}(?:\*|({_PART})\.(?:\*|({_PART})))$")


@dataclass(frozen=True, slots=True)
class ToolGrant:
    """What one token's tool scopes allow: all tools, whole connectors, single tools."""

    everything: bool
    connectors: frozenset[str]
    tools: frozenset[str]

    def allows(self, tool_name: str) -> bool:
        """Whether ``tool_name`` (``connector.tool``) is within the grant."""
        match = TOOL_NAME.match(tool_name)
        if match is None:
            return False
        return self.everything or match.group(1) in self.connectors or tool_name in self.tools

    @property
    def empty(self) -> bool:
        return not (self.everything or self.connectors or self.tools)


def parse_tool_scopes(scopes: str | Iterable[str]) -> ToolGrant:
    """The tool grant of a ``scope`` claim (a space-separated string or its tokens)."""
    tokens = scopes.split() if isinstance(scopes, str) else scopes
    everything = False
    connectors: set[str] = set()
    tools: set[str] = set()
    for token in tokens:
        match = _SCOPE.match(token)
        if match is None:
            continue  # not a tool scope, or a malformed one: grants nothing
        connector, tool = match.groups()
        if connector is None:
            everything = True
        elif tool is None:
            connectors.add(connector)
        else:
            tools.add(f"{connector}.{tool}")
    return ToolGrant(everything, frozenset(connectors), frozenset(tools))


def tool_scope(tool_name: str) -> str:
    """The narrowest scope that grants ``tool_name``."""
    if TOOL_NAME.match(tool_name) is None:
        raise ValueError(f"not a tool name: {tool_name!r}")
    return PREFIX + tool_name


def covers(broad: str, narrow: str) -> bool:
    """Whether the scope ``broad`` grants everything ``narrow`` does.

    Equal scopes cover each other; among tool scopes ``tools:*`` covers every tool
    scope and ``tools:gmail.*`` covers ``tools:gmail.<tool>``. A malformed tool scope
    (which grants nothing) is covered only by itself.
    """
    if broad == narrow:
        return True
    b, n = _SCOPE.match(broad), _SCOPE.match(narrow)
    if b is None or n is None:
        return False
    b_connector, b_tool = b.groups()
    n_connector, _ = n.groups()
    if b_connector is None:  # tools:*
        return True
    return b_tool is None and n_connector == b_connector


def meet(a: Iterable[str], b: Iterable[str]) -> frozenset[str]:
    """What both scope sets grant: the common scopes, plus each tool scope of one set
    that the other covers (``tools:gmail.*`` ∧ ``tools:gmail.send`` = ``tools:gmail.send``)."""
    left, right = frozenset(a), frozenset(b)
    both = left & right
    for scope in left ^ right:
        if _SCOPE.match(scope) is None:
            continue
        if any(covers(x, scope) for x in left) and any(covers(y, scope) for y in right):
            both |= {scope}
    return both
