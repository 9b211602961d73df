"""The tool-scope grammar, argument checking against the tool's schema, and the org's
tool policy (argument constraints evaluated by the runtime)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_plane.connectors.loader import load_catalog
from control_plane.domain.tool_arguments import (
    MAX_DEPTH,
    ArgumentChecker,
    InvalidArguments,
    pointer,
)
from control_plane.domain.tool_policy import (
    ArgumentConstraint,
    PolicyDenied,
    ToolPolicy,
    ToolRule,
    evaluate,
    render,
    resolve,
)
from control_plane.domain.tool_scopes import TOOL_NAME, parse_tool_scopes, tool_scope

CATALOG = load_catalog()
ALL_TOOLS = sorted(t.name for c in CATALOG for t in c.tools)


# ------------------------------------------------------------------ tool scopes


def test_every_catalog_tool_has_a_name_the_grammar_can_grant() -> None:
    assert ALL_TOOLS
    for name in ALL_TOOLS:
        assert TOOL_NAME.match(name), name
        assert parse_tool_scopes(tool_scope(name)).allows(name)


@pytest.mark.parametrize(
    ("scope", "tool", "allowed"),
    [
        ("tools:github.create_issue", "github.create_issue", True),
        ("tools:github.create_issue", "github.list_issues", False),
        ("tools:github.*", "github.list_issues", True),
        ("tools:github.*", "gitlab.list_issues", False),
        ("tools:github.*", "githubx.list_issues", False),
        ("tools:*", "slack.post_message", True),
        ("read tools:gmail.*", "gmail.send_message", True),
        # malformed grants grant nothing, never something broader
        ("tools:github.create_*", "github.create_issue", False),
        ("tools:github", "github.list_issues", False),
        ("tools:Github.list_issues", "github.list_issues", False),
        ("tools:github.list_issues ", "github.list_issues", True),
        ("tools:*.*", "github.list_issues", False),
        ("tools:**", "github.list_issues", False),
        ("tools:", "github.list_issues", False),
        ("tool:github.*", "github.list_issues", False),
        ("TOOLS:github.*", "github.list_issues", False),
        ("tools:github.*", "github.list_issues.extra", False),
        ("tools:*", "not a tool", False),
    ],
)
def test_tool_scope_grammar(scope: str, tool: str, allowed: bool) -> None:
    assert parse_tool_scopes(scope).allows(tool) is allowed


@given(st.text(max_size=80))
def test_a_scope_without_the_prefix_grants_no_tool(scope: str) -> None:
    if "tools:" in scope:
        return
    grant = parse_tool_scopes(scope)
    assert grant.empty
    assert not any(grant.allows(t) for t in ALL_TOOLS)


@given(st.lists(st.sampled_from(ALL_TOOLS), max_size=5), st.sampled_from(ALL_TOOLS))
def test_single_tool_scopes_grant_exactly_those_tools(granted: list[str], asked: str) -> None:
    grant = parse_tool_scopes(" ".join(tool_scope(t) for t in granted))
    assert grant.allows(asked) is (asked in granted)


# ------------------------------------------------------------------ arguments


def _checker(tool: str) -> ArgumentChecker:
    connector, _ = tool.split(".", 1)
    found = CATALOG.connectors[connector].tool(tool)
    assert found is not None
    return ArgumentChecker(found.input_schema)


def test_every_catalog_schema_compiles() -> None:
    for connector in CATALOG:
        for tool in connector.tools:
            ArgumentChecker(tool.input_schema)


def test_arguments_that_fit_pass_unchanged() -> None:
    args = {"owner": "acme", "repo": "api", "state": "open"}
    assert _checker("github.list_issues").check(args) is args


@pytest.mark.parametrize(
    ("args", "where", "problem"),
    [
        ({"repo": "api"}, "/owner", "misses a required property"),
        ({"owner": "acme", "repo": "api", "state": "maybe"}, "/state", "not one of"),
        ({"owner": "acme", "repo": "api", "extra": 1}, "", "a property the tool does not take"),
        ({"owner": "ac me", "repo": "api"}, "/owner", "pattern"),
        ({"owner": 7, "repo": "api"}, "/owner", "wrong type"),
    ],
)
def test_the_first_problem_is_named_by_its_json_pointer(
    args: dict[str, Any], where: str, problem: str
) -> None:
    with pytest.raises(InvalidArguments) as err:
        _checker("github.list_issues").check(args)
    assert err.value.reason == "INVALID_ARGUMENTS"
    assert err.value.metadata == {"pointer": where}
    assert problem in err.value.message


def test_a_refusal_never_echoes_the_value() -> None:
    canary = "ghp_CanaryValueThatMustNotEcho0123"
    with pytest.raises(InvalidArguments) as err:
        _checker("github.list_issues").check({"owner": canary, "repo": "api"})
    assert canary not in str(err.value) and canary not in repr(err.value.metadata)


def test_the_same_call_gets_the_same_answer() -> None:
    args = {"owner": "ac me", "repo": "a b", "state": "maybe"}
    answers = set()
    for _ in range(5):
        with pytest.raises(InvalidArguments) as err:
            _checker("github.list_issues").check(dict(reversed(list(args.items()))))
        answers.add(err.value.pointer)
        with pytest.raises(InvalidArguments) as err:
            _checker("github.list_issues").check(args)
        answers.add(err.value.pointer)
    assert answers == {"/owner"}


@pytest.mark.parametrize(
    "args",
    [[], "text", None, 3],
    ids=["list", "string", "null", "number"],
)
def test_arguments_must_be_an_object(args: Any) -> None:
    with pytest.raises(InvalidArguments) as err:
        _checker("github.list_issues").check(args)
    assert err.value.pointer == ""


def test_hostile_shapes_are_refused_before_the_schema() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(InvalidArguments) as err:
        _checker("github.list_issues").check({"owner": "acme", "repo": "api", "labels": deep})
    assert "nested too deeply" in err.value.message
    very_deep: Any = []
    for _ in range(100_000):
        very_deep = [very_deep]
    with pytest.raises(InvalidArguments):
        _checker("github.list_issues").check({"x": very_deep})  # no RecursionError
    with pytest.raises(InvalidArguments) as err:
        _checker("github.list_issues").check({"owner": "a", "repo": "b", "n": float("nan")})
    assert err.value.pointer == "/n"


def test_json_pointer_escaping() -> None:
    assert pointer(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"
    doc = {"a/b": {"c~d": ["x"]}}
    assert resolve(doc, "/a~1b/c~0d/0") == "x"
    assert resolve(doc, "") is doc
    assert render("{/a~1b/c~0d/0}!", doc) == "x!"
    assert render("{/missing}", doc) is None
    assert render("{/a~1b}", doc) is None  # not a scalar
    assert resolve({"l": ["a", "b"]}, "/l/01") != "b"  # RFC 6901: no leading zeros


# ------------------------------------------------------------------ policy

REPOS = ArgumentConstraint("{/owner}/{/repo}", ("acme/api", "acme/web-*"))
POLICY = ToolPolicy(
    enabled=frozenset({"github.create_issue", "github.list_issues", "slack.post_message"}),
    rules=(
        ToolRule("repos", "github.*", constraints=(REPOS,)),
        ToolRule("triage-bot-only", "github.create_issue", agents=frozenset({"triage"})),
        ToolRule("confirm-posts", "slack.post_message", confirm=True),
        ToolRule(
            "interns",
            "slack.post_message",
            groups=frozenset({"interns"}),
            constraints=(ArgumentConstraint("{/channel}", ("C-sandbox",)),),
        ),
    ),
)


def _evaluate(
    tool: str, args: dict[str, Any], agent: str | None = "triage", groups: Any = ()
) -> Any:
    return evaluate(POLICY, tool, agent, groups, args)


def test_seed_case_a_model_asked_to_file_in_the_wrong_repository_is_refused() -> None:
    assert not _evaluate(
        "github.create_issue", {"owner": "acme", "repo": "api", "title": "t"}
    ).confirm
    with pytest.raises(PolicyDenied) as err:
        _evaluate("github.create_issue", {"owner": "evil", "repo": "exfil", "title": "t"})
    assert err.value.reason == "POLICY_DENIED" and err.value.metadata == {"rule": "repos"}
    assert "evil" not in err.value.message and "exfil" not in err.value.message


@pytest.mark.parametrize(
    ("owner", "repo", "allowed"),
    [
        ("acme", "api", True),
        ("acme", "web-shop", True),
        ("acme", "web-", True),
        ("acme", "api2", False),
        ("acme", "apI", False),
        ("acme/api", "x", False),  # a "/" in one argument cannot fake the other
        ("acme", "web-a/../../evil", False),
        ("ACME", "api", False),
        ("acme", "api\n", False),
    ],
)
def test_constraints_match_the_exact_values_sent(owner: str, repo: str, allowed: bool) -> None:
    args = {"owner": owner, "repo": repo}
    if allowed:
        _evaluate("github.list_issues", args)
    else:
        with pytest.raises(PolicyDenied):
            _evaluate("github.list_issues", args)


def test_missing_or_non_scalar_arguments_fail_closed() -> None:
    for args in ({"owner": "acme"}, {"owner": "acme", "repo": ["api"]}, {}):
        with pytest.raises(PolicyDenied):
            _evaluate("github.list_issues", args)


def test_actor_rules_groups_and_confirmation() -> None:
    with pytest.raises(PolicyDenied) as err:
        _evaluate("github.create_issue", {"owner": "acme", "repo": "api"}, agent="summarizer")
    assert err.value.metadata == {"rule": "triage-bot-only"}
    with pytest.raises(PolicyDenied):
        _evaluate("github.create_issue", {"owner": "acme", "repo": "api"}, agent=None)
    decision = _evaluate("slack.post_message", {"channel": "C-general", "text": "hi"})
    assert decision.confirm and decision.rules == ("confirm-posts",)
    with pytest.raises(PolicyDenied):  # the interns' rule applies to interns only
        _evaluate("slack.post_message", {"channel": "C-general"}, groups=["interns"])
    _evaluate("slack.post_message", {"channel": "C-sandbox"}, groups=["interns"])


def test_a_tool_the_org_did_not_enable_is_refused() -> None:
    with pytest.raises(PolicyDenied):
        _evaluate("gmail.send_message", {})


@given(st.text(max_size=40), st.text(max_size=40))
def test_no_argument_value_outside_the_allow_list_passes(owner: str, repo: str) -> None:
    allowed = owner == "acme" and (repo == "api" or (repo.startswith("web-") and "/" not in repo))
    args = {"owner": owner, "repo": repo}
    try:
        _evaluate("github.list_issues", args)
    except PolicyDenied:
        assert not allowed
    else:
        assert allowed


@pytest.mark.parametrize(
    "make",
    [
        lambda: ToolRule("r", "github.create_*"),
        lambda: ToolRule("r", "GitHub.*"),
        lambda: ArgumentConstraint("/owner", ("acme",)),  # no braces: names no argument
        lambda: ArgumentConstraint("{/owner}", ()),
        # a brace that encloses no pointer would be matched literally: a typo, refused
        lambda: ArgumentConstraint("{/owner}/{repo}", ("acme/*",)),
        lambda: ArgumentConstraint("{/owner}}", ("acme",)),
        lambda: ArgumentConstraint("{{/owner}", ("acme",)),
        lambda: ArgumentConstraint("{}", ("*",)),  # the whole arguments object
        lambda: ArgumentConstraint("{/owner}{}", ("*",)),
        lambda: ArgumentConstraint("{/a~2b}", ("x",)),  # RFC 6901: "~" is "~0" or "~1"
        lambda: ArgumentConstraint("{/a~}", ("x",)),
    ],
)
def test_malformed_rules_are_refused_when_built(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("value", ["{/owner}/{/repo}", "{/a~1b/c~0d/0}!", "{/}", "x-{/n}"])
def test_well_formed_templates_are_accepted(value: str) -> None:
    assert ArgumentConstraint(value, ("*",)).value == value


# --- narrowing tool scopes in a delegation ------------------------------------------


@pytest.mark.parametrize(
    ("broad", "narrow", "expected"),
    [
        ("tools:*", "tools:gmail.send_message", True),
        ("tools:*", "tools:gmail.*", True),
        ("tools:gmail.*", "tools:gmail.send_message", True),
        ("tools:gmail.*", "tools:github.create_issue", False),
        ("tools:gmail.send_message", "tools:gmail.*", False),
        ("tools:gmail.send_message", "tools:*", False),
        ("tools:gmail.*", "tools:gmail.create_*", False),  # malformed: grants nothing
        ("tools:gmail.create_*", "tools:gmail.create_*", True),
        ("read", "read", True),
        ("read", "write", False),
        ("tools:*", "read", False),
    ],
)
def test_which_scope_covers_which(broad: str, narrow: str, expected: bool) -> None:
    from control_plane.domain.tool_scopes import covers

    assert covers(broad, narrow) is expected


def test_the_meet_of_two_grants_keeps_only_what_both_allow() -> None:
    from control_plane.domain.tool_scopes import meet

    parent = ["tools:gmail.*", "read", "tools:github.create_issue"]
    actor = ["tools:gmail.list_messages", "tools:*", "write"]
    assert meet(parent, actor) == {
        "tools:gmail.*",  # the actor's tools:* covers it
        "tools:gmail.list_messages",
        "tools:github.create_issue",
    }
    assert meet(["tools:gmail.*"], ["tools:github.*"]) == frozenset()


def test_a_delegation_may_ask_a_narrower_tool_scope_never_a_wider_one() -> None:
    from control_plane.domain.delegation import attenuate

    ceiling = frozenset({"tools:gmail.*", "read"})
    assert attenuate(ceiling, frozenset({"tools:gmail.send_message"})) == {
        "tools:gmail.send_message"
    }
    assert attenuate(ceiling, frozenset({"tools:*"})) is None
    assert attenuate(ceiling, frozenset({"tools:github.create_issue"})) is None
    assert attenuate(ceiling, frozenset({"read", "write"})) is None
