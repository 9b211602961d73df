"""Tool policy rules and user groups through AdminService, and what ExecuteTool reads
back (ToolPolicies.rules / groups_of), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from agentauth import (
    AgentAuthError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import tool_policy_pb2 as tp

from control_plane.domain.errors import Internal
from control_plane.domain.tool_policy import (
    ArgumentConstraint,
    PolicyDenied,
    ToolPolicy,
    ToolRule,
    evaluate,
)
from control_plane.services import tool_policies
from control_plane.services.tool_policies import ToolPolicies
from control_plane.storage.models import ToolPolicyRule
from tests.scopes import scope

HEX = "0123456789abcdef" * 2


def _id(name: str) -> str:
    return name.rsplit("/", 1)[1]


async def _agent(client: Any, org: str, display_name: str = "Agent") -> str:
    created = await client.admin.RegisterAgent(
        pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name=display_name))
    )
    return str(created.agent.name)


def _repos(*allow: str) -> tp.ArgumentConstraint:
    return tp.ArgumentConstraint(value="{/owner}/{/repo}", allow=list(allow))


async def _create(client: Any, org: str, request_id: str = "", **rule: Any) -> tp.ToolPolicyRule:
    response = await client.admin.CreateToolPolicyRule(
        pb.CreateToolPolicyRuleRequest(
            parent=org, tool_policy_rule=tp.ToolPolicyRule(**rule), request_id=request_id
        )
    )
    return response.tool_policy_rule


async def _list(client: Any, org: str, **kw: Any) -> Any:
    return await client.admin.ListToolPolicyRules(pb.ListToolPolicyRulesRequest(parent=org, **kw))


# ------------------------------------------------------------------ CRUD


async def test_a_rule_round_trips_and_is_deleted(harness) -> None:
    org, client, _ = await harness.new_org()
    triage, bot = await _agent(client, org, "Triage"), await _agent(client, org, "Bot")
    harness.audit.events.clear()
    created = await _create(
        client,
        org,
        tool="github.create_issue",
        agents=[triage, bot, triage],
        groups=["eng", "contractors", "eng"],
        constraints=[_repos("acme/api", "acme/web-*")],
        confirm=True,
        description="issues only in our repositories\nsee SEC-12",
    )
    assert created.name.startswith(f"{org}/toolPolicyRules/") and len(_id(created.name)) == 32
    assert created.tool == "github.create_issue"
    assert list(created.agents) == sorted([triage, bot])  # as a set: sorted, no repeats
    assert list(created.groups) == ["contractors", "eng"]
    assert [(c.value, list(c.allow)) for c in created.constraints] == [
        ("{/owner}/{/repo}", ["acme/api", "acme/web-*"])
    ]
    assert created.confirm and created.description.endswith("SEC-12")
    assert created.HasField("create_time")

    got = await client.admin.GetToolPolicyRule(pb.GetToolPolicyRuleRequest(name=created.name))
    assert got.tool_policy_rule == created
    listed = await _list(client, org)
    assert list(listed.tool_policy_rules) == [created] and listed.next_page_token == ""

    await client.admin.DeleteToolPolicyRule(pb.DeleteToolPolicyRuleRequest(name=created.name))
    with pytest.raises(NotFoundError):
        await client.admin.GetToolPolicyRule(pb.GetToolPolicyRuleRequest(name=created.name))
    with pytest.raises(NotFoundError):
        await client.admin.DeleteToolPolicyRule(pb.DeleteToolPolicyRuleRequest(name=created.name))
    assert list((await _list(client, org)).tool_policy_rules) == []
    audited = [(e.action.rsplit("/", 1)[1], e.phase, e.outcome) for e in harness.audit.events]
    assert audited == [
        ("CreateToolPolicyRule", "attempt", "pending"),
        ("CreateToolPolicyRule", "outcome", "OK"),
        ("DeleteToolPolicyRule", "attempt", "pending"),
        ("DeleteToolPolicyRule", "outcome", "OK"),
        ("DeleteToolPolicyRule", "attempt", "pending"),
        ("DeleteToolPolicyRule", "outcome", "NOT_FOUND"),
    ]


async def test_a_minimal_rule_applies_to_everyone(harness) -> None:
    org, client, _ = await harness.new_org()
    created = await _create(client, org, tool="*")
    assert (created.tool, list(created.agents), list(created.groups)) == ("*", [], [])
    assert not created.constraints and not created.confirm and created.description == ""


async def test_list_pages_oldest_first(harness) -> None:
    org, client, _ = await harness.new_org()
    made = [await _create(client, org, tool=f"c{i}.*") for i in range(5)]
    seen, token = [], ""
    while True:
        page = await _list(client, org, page_size=2, page_token=token)
        seen += list(page.tool_policy_rules)
        token = page.next_page_token
        if not token:
            break
    assert seen == made


async def test_create_is_idempotent_by_request_id(harness) -> None:
    org, client, _ = await harness.new_org()
    first = await _create(client, org, "rule-1", tool="github.*", constraints=[_repos("acme/*")])
    again = await _create(client, org, "rule-1", tool="github.*", constraints=[_repos("acme/*")])
    assert again == first
    with pytest.raises(InvalidArgumentError) as err:
        await _create(client, org, "rule-1", tool="github.*", constraints=[_repos("evil/*")])
    assert err.value.reason == "REQUEST_ID_REUSED"
    assert list((await _list(client, org)).tool_policy_rules) == [first]


async def test_the_number_of_rules_per_org_is_bounded(harness, monkeypatch) -> None:
    monkeypatch.setattr(tool_policies, "MAX_RULES_PER_ORG", 3)
    org, client, _ = await harness.new_org()
    for i in range(3):
        await _create(client, org, tool=f"c{i}.*")
    before = await harness.snapshot()
    with pytest.raises(FailedPreconditionError) as err:
        await _create(client, org, tool="c9.*")
    assert err.value.reason == "TOOL_POLICY_RULE_LIMIT" and err.value.metadata["limit"] == "3"
    assert await harness.snapshot() == before


# ------------------------------------------------------------------ other orgs


async def test_another_orgs_admin_cannot_see_or_touch_a_rule(harness) -> None:
    org_a, a, _ = await harness.new_org("A")
    org_b, b, _ = await harness.new_org("B")
    agent_a = await _agent(a, org_a)
    rule = await _create(a, org_a, tool="github.*", agents=[agent_a])
    mine = await _create(b, org_b, tool="slack.*")
    before = await harness.snapshot()

    missing = f"{org_a}/toolPolicyRules/{uuid.uuid4().hex}"
    for name in (rule.name, missing):
        with pytest.raises(NotFoundError) as err:
            await b.admin.GetToolPolicyRule(pb.GetToolPolicyRuleRequest(name=name))
        assert err.value.reason == "RESOURCE_NOT_FOUND" and _id(org_a) not in err.value.message
        with pytest.raises(NotFoundError):
            await b.admin.DeleteToolPolicyRule(pb.DeleteToolPolicyRuleRequest(name=name))
    # Its own rule's id under another org's name is not found either.
    with pytest.raises(NotFoundError):
        await b.admin.GetToolPolicyRule(
            pb.GetToolPolicyRuleRequest(name=f"{org_a}/toolPolicyRules/{_id(mine.name)}")
        )
    with pytest.raises(NotFoundError):
        await b.admin.ListToolPolicyRules(pb.ListToolPolicyRulesRequest(parent=org_a))
    with pytest.raises(NotFoundError):
        await _create(b, org_a, tool="*")
    assert list((await _list(b, org_b)).tool_policy_rules) == [mine]

    # B's rule naming A's agent is refused exactly like one naming an unknown agent.
    errors = []
    for agent in (agent_a, f"{org_a}/agents/{uuid.uuid4().hex}"):
        with pytest.raises(InvalidArgumentError) as err:
            await _create(b, org_b, tool="*", agents=[agent])
        errors.append((err.value.reason, err.value.message, dict(err.value.metadata)))
    assert errors[0] == errors[1]
    assert errors[0][2] == {"field": "tool_policy_rule.agents"}
    assert await harness.snapshot() == before

    # A page token of one org does not page another org's rules.
    for i in range(3):
        await _create(a, org_a, tool=f"c{i}.*")
    token = (await _list(a, org_a, page_size=1)).next_page_token
    assert token
    with pytest.raises(InvalidArgumentError):
        await _list(b, org_b, page_size=1, page_token=token)


# ------------------------------------------------------------------ malformed input

LONG = "x" * 300


def _bad_rules(org: str, agent: str) -> list[tuple[dict[str, Any], str, str]]:
    """(rule fields, the field the refusal names, its reason)."""
    c = tp.ArgumentConstraint
    return [
        ({}, "tool_policy_rule.tool", "FIELD_REQUIRED"),
        ({"tool": "github.create_*"}, "tool_policy_rule.tool", "INVALID_ARGUMENT"),
        ({"tool": "GitHub.*"}, "tool_policy_rule.tool", "INVALID_ARGUMENT"),
        ({"tool": "github"}, "tool_policy_rule.tool", "INVALID_ARGUMENT"),
        ({"tool": "*.*"}, "tool_policy_rule.tool", "INVALID_ARGUMENT"),
        ({"tool": " github.*"}, "tool_policy_rule.tool", "INVALID_ARGUMENT"),
        ({"tool": "a" * 161}, "tool_policy_rule.tool", "FIELD_TOO_LONG"),
        ({"tool": "*", "agents": [f"{org}/users/{HEX}"]}, "tool_policy_rule.agents",
         "INVALID_RESOURCE_NAME"),
        ({"tool": "*", "agents": ["triage"]}, "tool_policy_rule.agents", "INVALID_RESOURCE_NAME"),
        ({"tool": "*", "agents": [f"orgs/{'1' * 32}/agents/{HEX}"]}, "tool_policy_rule.agents",
         "INVALID_ARGUMENT"),
        ({"tool": "*", "agents": [agent, f"{org}/agents/{HEX}"]}, "tool_policy_rule.agents",
         "INVALID_ARGUMENT"),  # the second does not exist
        ({"tool": "*", "groups": ["Eng"]}, "tool_policy_rule.groups", "INVALID_ARGUMENT"),
        ({"tool": "*", "groups": [""]}, "tool_policy_rule.groups", "INVALID_ARGUMENT"),
        ({"tool": "*", "groups": ["-eng"]}, "tool_policy_rule.groups", "INVALID_ARGUMENT"),
        ({"tool": "*", "groups": ["e" * 64]}, "tool_policy_rule.groups", "INVALID_ARGUMENT"),
        ({"tool": "*", "constraints": [c(allow=["a"])]}, "tool_policy_rule.constraints[0].value",
         "FIELD_REQUIRED"),
        ({"tool": "*", "constraints": [_repos("a/b"), c(value="{owner}", allow=["a"])]},
         "tool_policy_rule.constraints[1].value", "INVALID_ARGUMENT"),
        ({"tool": "*", "constraints": [c(value="{/owner}/{repo}", allow=["a/b"])]},
         "tool_policy_rule.constraints[0].value", "INVALID_ARGUMENT"),
        ({"tool": "*", "constraints": [c(value="{}", allow=["*"])]},
         "tool_policy_rule.constraints[0].value", "INVALID_ARGUMENT"),
        ({"tool": "*", "constraints": [c(value="{/a~2}", allow=["*"])]},
         "tool_policy_rule.constraints[0].value", "INVALID_ARGUMENT"),
        ({"tool": "*", "constraints": [c(value="{/a}\x00", allow=["*"])]},
         "tool_policy_rule.constraints[0].value", "INVALID_ARGUMENT"),
        ({"tool": "*", "constraints": [c(value="{/owner}")]},
         "tool_policy_rule.constraints[0].allow", "FIELD_REQUIRED"),
        ({"tool": "*", "constraints": [c(value="{/owner}", allow=["acme", ""])]},
         "tool_policy_rule.constraints[0].allow", "FIELD_REQUIRED"),
        ({"tool": "*", "constraints": [c(value="{/owner}", allow=["ac\nme"])]},
         "tool_policy_rule.constraints[0].allow", "INVALID_ARGUMENT"),
        ({"tool": "*", "description": "trailing "}, "tool_policy_rule.description",
         "INVALID_ARGUMENT"),
        ({"tool": "*", "description": "bell\x07"}, "tool_policy_rule.description",
         "INVALID_ARGUMENT"),
    ]


def _oversized(org: str, agent: str) -> list[tuple[dict[str, Any], str, str]]:
    """Each list and string one past its bound."""
    c = tp.ArgumentConstraint
    agents = [f"{org}/agents/{uuid.uuid4().hex}" for _ in range(65)]
    return [
        ({"tool": "*", "agents": agents}, "tool_policy_rule.agents", "INVALID_ARGUMENT"),
        ({"tool": "*", "groups": [f"g{i}" for i in range(65)]}, "tool_policy_rule.groups",
         "INVALID_ARGUMENT"),
        ({"tool": "*", "constraints": [_repos("a/b")] * 17}, "tool_policy_rule.constraints",
         "INVALID_ARGUMENT"),
        ({"tool": "*", "constraints": [c(value="{/a}", allow=[f"p{i}" for i in range(65)])]},
         "tool_policy_rule.constraints[0].allow", "INVALID_ARGUMENT"),
        ({"tool": "*", "constraints": [c(value="{/a}", allow=["p" * 257])]},
         "tool_policy_rule.constraints[0].allow", "FIELD_TOO_LONG"),
        ({"tool": "*", "constraints": [c(value="{/a}" + "x" * 509, allow=["*"])]},
         "tool_policy_rule.constraints[0].value", "FIELD_TOO_LONG"),
        ({"tool": "*", "description": "d" * 2001}, "tool_policy_rule.description",
         "FIELD_TOO_LONG"),
    ]


async def test_a_malformed_rule_names_its_field_and_changes_nothing(harness) -> None:
    org, client, _ = await harness.new_org()
    agent = await _agent(client, org)
    await _create(client, org, tool="github.*", agents=[agent])
    before = await harness.snapshot()
    wrong = []
    for fields, field, reason in _bad_rules(org, agent) + _oversized(org, agent):
        try:
            await _create(client, org, **fields)
        except InvalidArgumentError as exc:
            if (dict(exc.metadata), exc.reason) != ({"field": field}, reason):
                wrong.append((fields, field, reason, dict(exc.metadata), exc.reason))
        else:
            wrong.append((fields, field, reason, "accepted"))
    assert wrong == []
    assert await harness.snapshot() == before


async def test_boundary_sizes_are_accepted(harness) -> None:
    org, client, _ = await harness.new_org()
    c = tp.ArgumentConstraint
    agents = [await _agent(client, org, f"A{i}") for i in range(3)]
    made = await _create(
        client,
        org,
        tool=f"{'c' * 64}.{'t' * 64}",
        agents=agents,
        groups=[f"g{i}" for i in range(64)],
        constraints=[c(value="{/a}" + "x" * 508, allow=["p" * 256] + ["*"] * 63)] * 16,
        description="d" * 2000,
    )
    assert len(made.groups) == 64 and len(made.constraints) == 16


async def test_a_request_over_the_size_limit_is_refused_before_parsing(harness) -> None:
    org, client, _ = await harness.new_org()
    huge = [tp.ArgumentConstraint(value="{/a}", allow=["p" * 250] * 64)] * 8  # ~130 KB
    before = await harness.snapshot()
    with pytest.raises(AgentAuthError) as err:
        await _create(client, org, tool="*", constraints=huge)
    assert err.value.code.name == "RESOURCE_EXHAUSTED" and err.value.reason == "REQUEST_TOO_LARGE"
    assert await harness.snapshot() == before


# ------------------------------------------------------------------ user groups


async def test_user_groups_are_set_at_creation_and_replaced(harness) -> None:
    org, client, _ = await harness.new_org()
    user = (
        await client.admin.CreateUser(
            pb.CreateUserRequest(
                parent=org, user=pb.User(external_id="alice", groups=["eng", "admins", "eng"])
            )
        )
    ).user
    assert list(user.groups) == ["admins", "eng"]
    plain = (
        await client.admin.CreateUser(pb.CreateUserRequest(parent=org, user=pb.User(external_id="b")))
    ).user
    assert list(plain.groups) == []

    updated = (
        await client.admin.UpdateUserGroups(
            pb.UpdateUserGroupsRequest(name=user.name, groups=["oncall", "eng.platform"])
        )
    ).user
    assert list(updated.groups) == ["eng.platform", "oncall"]
    assert updated.update_time.ToDatetime() >= user.update_time.ToDatetime()
    got = (await client.admin.GetUser(pb.GetUserRequest(name=user.name))).user
    assert got == updated
    listed = await client.admin.ListUsers(pb.ListUsersRequest(parent=org))
    assert {u.external_id: list(u.groups) for u in listed.users} == {
        "alice": ["eng.platform", "oncall"],
        "b": [],
    }

    before = await harness.snapshot()
    for groups in ([f"g{i}" for i in range(65)], ["Eng"], ["a b"], ["x" * 64]):
        with pytest.raises(InvalidArgumentError) as err:
            await client.admin.UpdateUserGroups(
                pb.UpdateUserGroupsRequest(name=user.name, groups=groups)
            )
        assert err.value.metadata["field"] == "groups"
    with pytest.raises(InvalidArgumentError) as err:
        await client.admin.CreateUser(
            pb.CreateUserRequest(parent=org, user=pb.User(external_id="c", groups=["-c"]))
        )
    assert err.value.metadata["field"] == "user.groups"
    assert await harness.snapshot() == before

    cleared = (
        await client.admin.UpdateUserGroups(pb.UpdateUserGroupsRequest(name=user.name))
    ).user
    assert list(cleared.groups) == []


async def test_another_orgs_admin_cannot_change_a_users_groups(harness) -> None:
    org_a, a, _ = await harness.new_org("A")
    _, b, _ = await harness.new_org("B")
    user = (
        await a.admin.CreateUser(
            pb.CreateUserRequest(parent=org_a, user=pb.User(external_id="u", groups=["eng"]))
        )
    ).user
    with pytest.raises(NotFoundError):
        await b.admin.UpdateUserGroups(pb.UpdateUserGroupsRequest(name=user.name, groups=["x"]))
    got = (await a.admin.GetUser(pb.GetUserRequest(name=user.name))).user
    assert list(got.groups) == ["eng"]


# ------------------------------------------------------------------ what ExecuteTool reads


async def test_rules_and_groups_read_back_as_the_domain_evaluates_them(harness) -> None:
    org, client, _ = await harness.new_org()
    org_id = _id(org)
    triage = await _agent(client, org, "Triage")
    user = (
        await client.admin.CreateUser(
            pb.CreateUserRequest(parent=org, user=pb.User(external_id="i", groups=["interns"]))
        )
    ).user
    repos = await _create(
        client, org, tool="github.*", constraints=[_repos("acme/api", "acme/web-*")]
    )
    bot_only = await _create(client, org, tool="github.create_issue", agents=[triage])
    interns = await _create(
        client,
        org,
        tool="slack.post_message",
        groups=["interns"],
        constraints=[tp.ArgumentConstraint(value="{/channel}", allow=["C-sandbox"])],
        confirm=True,
    )
    other_org, other, _ = await harness.new_org("Other")
    await _create(other, other_org, tool="*", confirm=True)

    policies = ToolPolicies(harness.runtime.services)
    async with harness.runtime.db.org_tx(scope(org_id)) as tx:
        rules = await policies.rules(tx)
        groups = await policies.groups_of(tx, _id(user.name))
        nobody = await policies.groups_of(tx, uuid.uuid4().hex)
    assert rules == (
        ToolRule(
            _id(repos.name),
            "github.*",
            constraints=(ArgumentConstraint("{/owner}/{/repo}", ("acme/api", "acme/web-*")),),
        ),
        ToolRule(_id(bot_only.name), "github.create_issue", agents=frozenset({_id(triage)})),
        ToolRule(
            _id(interns.name),
            "slack.post_message",
            groups=frozenset({"interns"}),
            constraints=(ArgumentConstraint("{/channel}", ("C-sandbox",)),),
            confirm=True,
        ),
    )
    assert groups == frozenset({"interns"}) and nobody == frozenset()

    # The seed case, end to end from what was stored.
    policy = ToolPolicy(frozenset({"github.create_issue", "slack.post_message"}), rules)
    ok = evaluate(policy, "github.create_issue", _id(triage), groups, {"owner": "acme", "repo": "api"})
    assert ok.rules == (_id(repos.name), _id(bot_only.name)) and not ok.confirm
    with pytest.raises(PolicyDenied) as denied:
        evaluate(policy, "github.create_issue", _id(triage), groups, {"owner": "evil", "repo": "x"})
    assert denied.value.metadata == {"rule": _id(repos.name)}
    with pytest.raises(PolicyDenied):
        evaluate(policy, "slack.post_message", None, groups, {"channel": "C-general"})
    assert evaluate(policy, "slack.post_message", None, groups, {"channel": "C-sandbox"}).confirm

    # A deleted rule is gone from the next read.
    await client.admin.DeleteToolPolicyRule(pb.DeleteToolPolicyRuleRequest(name=bot_only.name))
    async with harness.runtime.db.org_tx(scope(org_id)) as tx:
        assert [r.id for r in await policies.rules(tx)] == [_id(repos.name), _id(interns.name)]


async def test_a_stored_rule_the_domain_refuses_fails_closed(harness) -> None:
    """Skipping a rule would widen the policy: a corrupt one fails the read instead."""
    org, _, _ = await harness.new_org()
    org_id = _id(org)
    now = dt.datetime.now(dt.UTC)
    async with harness.runtime.db.org_tx(scope(org_id)) as tx:
        await tx.tool_policy_rules.add(
            ToolPolicyRule(
                org_id=org_id,
                id=uuid.uuid4().hex,
                tool="github.*",
                agent_ids=None,
                groups=None,
                constraints=[{"value": "{owner}", "allow": ["acme"]}],
                confirm=False,
                description="",
                create_time=now,
            )
        )
    policies = ToolPolicies(harness.runtime.services)
    with pytest.raises(Internal):
        async with harness.runtime.db.org_tx(scope(org_id)) as tx:
            await policies.rules(tx)
