"""Tool policies: each org's tool policy rules, and the groups its users are in.

Administrators write rules (:class:`~control_plane.domain.tool_policy.ToolRule`)
through AdminService; ExecuteTool reads them, with the caller's groups, inside its
own org transaction (:meth:`ToolPolicies.rules`, :meth:`ToolPolicies.groups_of`) and
evaluates them with :func:`control_plane.domain.tool_policy.evaluate`.

Every part of a rule is checked before anything is stored, and a refusal names the
field (``tool_policy_rule.constraints[1].value``). Agents and approvers are named by
resource name on the wire and stored, like delegation rules, by id: the ``agents``
and ``approvers`` of a ``ToolRule`` this module returns are ids (``{agent}`` of
``orgs/{org}/agents/{agent}``, ``{user}`` of ``orgs/{org}/users/{user}``).
"""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.domain import names
from control_plane.domain import validation as v
from control_plane.domain.entities import Page, ToolPolicyRuleView
from control_plane.domain.errors import FailedPrecondition, Internal, field_error
from control_plane.domain.principals import Principal
from control_plane.domain.tool_policy import ArgumentConstraint, ToolRule, ToolRuleSpec
from control_plane.services.context import ServiceContext
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import models as m
from control_plane.storage.units import OrgTx

COLLECTION = "toolPolicyRules"
#: ExecuteTool loads every rule of the org on each call: a bounded list.
MAX_RULES_PER_ORG = 500
MAX_AGENTS = 64
MAX_APPROVERS = 64
MAX_CONSTRAINTS = 16
MAX_ALLOW = 64
MAX_TEMPLATE = 512
MAX_GLOB = 256
MAX_TOOL = 160

F = "tool_policy_rule."


def rule_view(r: m.ToolPolicyRule) -> ToolPolicyRuleView:
    return ToolPolicyRuleView(
        r.org_id,
        r.id,
        r.tool,
        tuple(r.agent_ids or ()),
        tuple(r.groups or ()),
        tuple((str(c["value"]), tuple(_strings(c["allow"]))) for c in r.constraints),
        r.confirm,
        r.description,
        r.create_time,
        tuple(r.approver_ids or ()),
        tuple(r.approver_groups or ()),
    )


class ToolPolicies(TenantCrud[m.ToolPolicyRule, ToolPolicyRuleView]):
    model = m.ToolPolicyRule
    collection = COLLECTION
    repository = "tool_policy_rules"

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx, rule_view)

    # ------------------------------------------------------------ for ExecuteTool

    async def rules(self, tx: OrgTx) -> tuple[ToolRule, ...]:
        """Every rule of the transaction's org, oldest first (create time, then id).

        A stored rule the domain no longer accepts fails the call (INTERNAL) rather
        than being skipped: dropping a rule would widen what the policy allows.
        """
        return tuple(_domain_rule(row) for row in await tx.tool_policy_rules.in_order())

    async def groups_of(self, tx: OrgTx, user_id: str) -> frozenset[str]:
        """The groups the org put ``user_id`` in (empty for an unknown user)."""
        row = await tx.users.fields(user_id, "groups")
        return frozenset() if row is None else frozenset(_strings(row.groups))

    async def owner_groups(self, tx: OrgTx, owner: tuple[str, str]) -> frozenset[str]:
        """The groups rules see for a token's subject (``TokenCaller.owner``): a user's,
        none for a service account."""
        kind, owner_id = owner
        return await self.groups_of(tx, owner_id) if kind == "users" else frozenset()

    # ------------------------------------------------------------ AdminService

    async def create(
        self, principal: Principal, org_id: str, spec: ToolRuleSpec, request_id: str
    ) -> ToolPolicyRuleView:
        principal.scope_for(org_id)  # permission before anything about the request's ids
        fields = _validate(org_id, spec)
        agent_ids: list[str] = list(fields["agent_ids"] or ())  # type: ignore[call-overload]
        approver_ids: list[str] = list(fields["approver_ids"] or ())  # type: ignore[call-overload]

        async def agents_exist_and_room_left(tx: OrgTx) -> None:
            for agent_id in agent_ids:
                if await tx.agents.get(agent_id) is None:
                    raise field_error(F + "agents", "names an agent that does not exist")
            for user_id in approver_ids:
                if await tx.users.fields(user_id, "id") is None:
                    raise field_error(F + "approvers", "names a user that does not exist")
            if await tx.tool_policy_rules.count() >= MAX_RULES_PER_ORG:
                raise FailedPrecondition(
                    f"the organization has {MAX_RULES_PER_ORG} tool policy rules, the most "
                    "it may have; delete one first",
                    reason="TOOL_POLICY_RULE_LIMIT",
                    metadata={"limit": str(MAX_RULES_PER_ORG)},
                )

        row, _ = await self._create(
            principal, org_id, request_id, fields, precheck=agents_exist_and_room_left
        )
        return rule_view(row)

    async def get(self, principal: Principal, name: str) -> ToolPolicyRuleView:
        n = names.parse_child(name, COLLECTION)
        return await self._get(principal, n.org_id, n.id)

    async def list(
        self, principal: Principal, org_id: str, page_size: int, page_token: str
    ) -> Page[ToolPolicyRuleView]:
        return await self._list(principal, org_id, page_size, page_token)

    async def delete(self, principal: Principal, name: str) -> None:
        n = names.parse_child(name, COLLECTION)
        await self._delete(principal, n.org_id, n.id)


def _validate(org_id: str, spec: ToolRuleSpec) -> dict[str, object]:
    """The row's fields from a rule as written, or INVALID_ARGUMENT naming the field."""
    tool = spec.tool
    if not tool:
        raise field_error(F + "tool", "is required", "FIELD_REQUIRED")
    if len(tool) > MAX_TOOL:
        raise field_error(F + "tool", f"must be at most {MAX_TOOL} characters", "FIELD_TOO_LONG")
    try:
        ToolRule("", tool)
    except ValueError:
        raise field_error(
            F + "tool", "must be connector.tool, connector.* or * (lower-case names)"
        ) from None

    agent_ids = _ids_in_org(spec.agents, "agents", "agents", org_id, MAX_AGENTS)

    groups = v.groups(list(spec.groups), F + "groups")

    approver_ids = _ids_in_org(spec.approvers, "users", "approvers", org_id, MAX_APPROVERS)
    approver_groups = v.groups(list(spec.approver_groups), F + "approver_groups")
    if (approver_ids or approver_groups) and not spec.confirm:
        field = F + ("approvers" if approver_ids else "approver_groups")
        raise field_error(field, "names who confirms, so the rule must set confirm")

    if len(spec.constraints) > MAX_CONSTRAINTS:
        raise field_error(F + "constraints", f"at most {MAX_CONSTRAINTS} constraints")
    constraints: list[dict[str, object]] = []
    for i, (value, allow) in enumerate(spec.constraints):
        at = f"{F}constraints[{i}]"
        v.text(value, at + ".value", max_len=MAX_TEMPLATE, required=True)
        if not allow:
            raise field_error(at + ".allow", "at least one pattern is required", "FIELD_REQUIRED")
        if len(allow) > MAX_ALLOW:
            raise field_error(at + ".allow", f"at most {MAX_ALLOW} patterns")
        for pattern in allow:
            v.text(pattern, at + ".allow", max_len=MAX_GLOB, required=True)
        try:
            ArgumentConstraint(value, tuple(allow))
        except ValueError as exc:
            raise field_error(at + ".value", str(exc)) from None
        constraints.append({"value": value, "allow": list(allow)})

    return {
        "tool": tool,
        "agent_ids": sorted(set(agent_ids)) or None,
        "groups": groups or None,
        "constraints": constraints,
        "confirm": bool(spec.confirm),
        "approver_ids": sorted(set(approver_ids)) or None,
        "approver_groups": approver_groups or None,
        "description": v.text(
            spec.description, F + "description", max_len=v.MAX_DESCRIPTION, allow_newlines=True
        ),
    }


def _domain_rule(row: m.ToolPolicyRule) -> ToolRule:
    try:
        return ToolRule(
            id=row.id,
            tool=row.tool,
            agents=None if row.agent_ids is None else frozenset(_strings(row.agent_ids)),
            groups=None if row.groups is None else frozenset(_strings(row.groups)),
            constraints=tuple(
                ArgumentConstraint(str(c["value"]), tuple(_strings(c["allow"])))
                for c in row.constraints
            ),
            confirm=bool(row.confirm),
            approvers=frozenset(_strings(row.approver_ids or [])),
            approver_groups=frozenset(_strings(row.approver_groups or [])),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise Internal(debug=f"stored tool policy rule {row.id} is invalid: {exc}") from None


def _strings(values: object) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
        raise TypeError("a stored list of strings is not one")
    return values


def _ids_in_org(
    values: Sequence[str], collection: str, field: str, org_id: str, most: int
) -> list[str]:
    """The ids of ``orgs/{org}/{collection}/{id}`` names, all of the rule's org."""
    if len(values) > most:
        raise field_error(F + field, f"at most {most} {field}")
    ids = []
    for value in values:
        parsed = names.parse_child(value, collection, F + field)
        if parsed.org_id != org_id:
            raise field_error(F + field, f"must be {collection} of the rule's organization")
        ids.append(parsed.id)
    return ids
