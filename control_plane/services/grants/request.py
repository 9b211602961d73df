"""The one parser of the token endpoint's shared fields, for every grant.

Each grant used to read ``organization``, ``client_id`` and ``service_account``
itself, and the answers had drifted apart (a ``client_id`` of another org was
``UnacceptableToken`` in one grant and ``InvalidRequest`` in the others). Here the
fields a request carries for every grant are checked once, from their text alone,
before any credential is looked at:

- every parameter is at most ``MAX_PARAM`` long, and ``grant_type`` is present;
- ``organization`` is ``orgs/{org}``; ``client_id`` is ``orgs/{org}/agents/{agent}``;
  ``service_account`` is ``orgs/{org}/serviceAccounts/{id}``: otherwise
  ``InvalidRequest`` naming the field (RFC 6749 §5.2 "malformed");
- names that contradict each other (an agent or a service account of another org
  than ``organization``, or than the named agent) are ``InvalidRequest`` on every
  grant: the request is inconsistent whatever org exists, so the answer is the same
  for a real org and for one that does not exist, and reveals nothing.

What a grant then checks against a *credential* (the assertion's ``iss``, the
subject token's org) stays in the grant, because only it knows the credential.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.domain import names
from control_plane.domain.errors import InvalidArgument, InvalidRequest
from control_plane.services.grants.base import MAX_PARAM, TokenRequest

CROSS_ORG_CLIENT = "client_id is not an agent of that organization"
CROSS_ORG_SERVICE_ACCOUNT = "service_account is not in that organization"
ACTS_FOR_USER = "a delegated token acts for the user, not a service account"
NO_ORG = "name the organization (or the agent as client_id)"


@dataclass(frozen=True, slots=True)
class GrantRequest:
    """A :class:`TokenRequest` whose shared fields have been parsed and agree.

    ``org_id`` is the organization the request names (``organization``, or the
    org of the ``client_id`` agent), ``None`` when it names none; a grant never
    trusts it as proof of anything, it only narrows which org's policies apply.
    ``service_account`` is in that org when the request names one; which org a
    service account must be in otherwise is the credential's to say.
    """

    raw: TokenRequest
    org_id: str | None
    agent_id: str | None
    service_account: names.OrgChildName | None

    @property
    def grant_type(self) -> str:
        return self.raw.grant_type

    def in_org(self, org_id: str) -> bool:
        """Whether what the request names is compatible with ``org_id``."""
        return self.org_id is None or self.org_id == org_id


def parse_grant_request(request: TokenRequest) -> GrantRequest:
    if not request.grant_type:
        raise InvalidRequest("grant_type is required")
    fields = (
        request.grant_type,
        request.organization,
        request.client_id,
        request.service_account,
        request.scope,
        request.subject_token_type,
        request.actor_token_type,
        request.requested_token_type,
        request.client_assertion_type,
    )
    if any(len(value) > MAX_PARAM for value in fields):
        raise InvalidRequest("a parameter is too long")

    org_id = None
    if request.organization:
        try:
            org_id = names.parse_org(request.organization, "organization")
        except InvalidArgument:
            raise InvalidRequest(f"organization must be orgs/{{org}} {names.IDS_ARE}") from None
    agent_id = None
    if request.client_id:
        try:
            agent = names.parse_child(request.client_id, "agents", "client_id")
        except InvalidArgument:
            raise InvalidRequest(
                f"client_id must be orgs/{{org}}/agents/{{agent}} {names.IDS_ARE}"
            ) from None
        if org_id is not None and agent.org_id != org_id:
            raise InvalidRequest(CROSS_ORG_CLIENT)
        org_id, agent_id = agent.org_id, agent.id
    sa = None
    if request.service_account:
        try:
            sa = names.parse_child(request.service_account, "serviceAccounts", "service_account")
        except InvalidArgument:
            raise InvalidRequest(
                f"service_account must be orgs/{{org}}/serviceAccounts/{{id}} {names.IDS_ARE}"
            ) from None
        if org_id is not None and sa.org_id != org_id:
            raise InvalidRequest(CROSS_ORG_SERVICE_ACCOUNT)
    return GrantRequest(request, org_id, agent_id, sa)
