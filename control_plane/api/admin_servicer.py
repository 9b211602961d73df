"""AdminService: wire ↔ use cases. Parses names, calls services, converts results."""

from __future__ import annotations

from typing import Any

import grpc
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import admin_pb2_grpc

from control_plane.api import convert
from control_plane.api.pipeline import current_principal
from control_plane.domain import names
from control_plane.domain.entities import RateLimitSettings
from control_plane.domain.errors import field_error
from control_plane.services.agents import AgentService
from control_plane.services.api_keys import ApiKeyService
from control_plane.services.delegation import DelegationRuleService
from control_plane.services.identity_providers import IdentityProviderService
from control_plane.services.organizations import OrganizationService, OrganizationSettings
from control_plane.services.service_accounts import ServiceAccountService
from control_plane.services.tool_policies import ToolPolicies
from control_plane.services.trust_policies import TrustPolicyService
from control_plane.services.users import UserService

Ctx = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        *,
        orgs: OrganizationService,
        org_settings: OrganizationSettings,
        users: UserService,
        agents: AgentService,
        service_accounts: ServiceAccountService,
        api_keys: ApiKeyService,
        trust: TrustPolicyService,
        rules: DelegationRuleService,
        idps: IdentityProviderService,
        tool_policies: ToolPolicies,
    ) -> None:
        """Every service is built by the composition root (app.py) and passed in."""
        self.orgs = orgs
        self.org_settings = org_settings
        self.users = users
        self.agents = agents
        self.sas = service_accounts
        self.keys = api_keys
        self.trust = trust
        self.rules = rules
        self.idps = idps
        self.tool_policies = tool_policies

    # ----------------------------------------------------------- organizations

    async def CreateOrganization(
        self, request: pb.CreateOrganizationRequest, context: Ctx
    ) -> pb.CreateOrganizationResponse:
        org = await self.orgs.create(
            current_principal(), request.organization.display_name, request.request_id
        )
        return pb.CreateOrganizationResponse(organization=convert.organization(org))

    async def GetOrganization(
        self, request: pb.GetOrganizationRequest, context: Ctx
    ) -> pb.GetOrganizationResponse:
        org = await self.orgs.get(current_principal(), names.parse_org(request.name))
        return pb.GetOrganizationResponse(organization=convert.organization(org))

    async def ListOrganizations(
        self, request: pb.ListOrganizationsRequest, context: Ctx
    ) -> pb.ListOrganizationsResponse:
        page = await self.orgs.list(current_principal(), request.page_size, request.page_token)
        return pb.ListOrganizationsResponse(
            organizations=[convert.organization(o) for o in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteOrganization(
        self, request: pb.DeleteOrganizationRequest, context: Ctx
    ) -> pb.DeleteOrganizationResponse:
        await self.orgs.delete(current_principal(), names.parse_org(request.name))
        return pb.DeleteOrganizationResponse()

    async def UpdateOrganization(
        self, request: pb.UpdateOrganizationRequest, context: Ctx
    ) -> pb.UpdateOrganizationResponse:
        o = request.organization
        ttl = (
            o.access_token_ttl.ToTimedelta().total_seconds()
            if o.HasField("access_token_ttl")
            else None
        )
        r = o.rate_limits
        org = await self.org_settings.update(
            current_principal(),
            names.parse_org(o.name, "organization.name"),
            list(request.update_mask.paths),
            o.display_name,
            ttl,
            o.max_delegation_depth,
            RateLimitSettings(
                r.requests_per_second,
                r.burst,
                r.principal_requests_per_second,
                r.principal_burst,
            ),
        )
        return pb.UpdateOrganizationResponse(organization=convert.organization(org))

    # ----------------------------------------------------------- users

    async def CreateUser(
        self, request: pb.CreateUserRequest, context: Ctx
    ) -> pb.CreateUserResponse:
        u = request.user
        user = await self.users.create(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            u.external_id,
            u.display_name,
            u.email,
            request.request_id,
            list(u.groups),
        )
        return pb.CreateUserResponse(user=convert.user(user))

    async def GetUser(self, request: pb.GetUserRequest, context: Ctx) -> pb.GetUserResponse:
        n = names.parse_child(request.name, "users")
        return pb.GetUserResponse(
            user=convert.user(await self.users.get(current_principal(), n.org_id, n.id))
        )

    async def ListUsers(self, request: pb.ListUsersRequest, context: Ctx) -> pb.ListUsersResponse:
        page = await self.users.list(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            request.page_size,
            request.page_token,
        )
        return pb.ListUsersResponse(
            users=[convert.user(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def UpdateUserStatus(
        self, request: pb.UpdateUserStatusRequest, context: Ctx
    ) -> pb.UpdateUserStatusResponse:
        n = names.parse_child(request.name, "users")
        state = convert.USER_STATE_FROM_PB.get(request.state)
        if state is None:
            raise field_error("state", "must be USER_STATE_ACTIVE or USER_STATE_SUSPENDED")
        user = await self.users.update_status(current_principal(), n.org_id, n.id, state)
        return pb.UpdateUserStatusResponse(user=convert.user(user))

    async def UpdateUserGroups(
        self, request: pb.UpdateUserGroupsRequest, context: Ctx
    ) -> pb.UpdateUserGroupsResponse:
        n = names.parse_child(request.name, "users")
        user = await self.users.update_groups(
            current_principal(), n.org_id, n.id, list(request.groups)
        )
        return pb.UpdateUserGroupsResponse(user=convert.user(user))

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: Ctx
    ) -> pb.DeleteUserResponse:
        n = names.parse_child(request.name, "users")
        await self.users.delete(current_principal(), n.org_id, n.id)
        return pb.DeleteUserResponse()

    # ----------------------------------------------------------- agents

    async def RegisterAgent(
        self, request: pb.RegisterAgentRequest, context: Ctx
    ) -> pb.RegisterAgentResponse:
        agent = await self.agents.register(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            request.agent.display_name,
            request.agent.description,
            request.request_id,
        )
        return pb.RegisterAgentResponse(agent=convert.agent(agent))

    async def GetAgent(self, request: pb.GetAgentRequest, context: Ctx) -> pb.GetAgentResponse:
        n = names.parse_child(request.name, "agents")
        return pb.GetAgentResponse(
            agent=convert.agent(await self.agents.get(current_principal(), n.org_id, n.id))
        )

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: Ctx
    ) -> pb.ListAgentsResponse:
        page = await self.agents.list(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            request.page_size,
            request.page_token,
        )
        return pb.ListAgentsResponse(
            agents=[convert.agent(a) for a in page.items], next_page_token=page.next_page_token
        )

    async def DisableAgent(
        self, request: pb.DisableAgentRequest, context: Ctx
    ) -> pb.DisableAgentResponse:
        n = names.parse_child(request.name, "agents")
        agent = await self.agents.disable(current_principal(), n.org_id, n.id)
        return pb.DisableAgentResponse(agent=convert.agent(agent))

    # ----------------------------------------------------------- trust policies

    async def CreateTrustPolicy(
        self, request: pb.CreateTrustPolicyRequest, context: Ctx
    ) -> pb.CreateTrustPolicyResponse:
        policy = await self.trust.create(
            current_principal(),
            names.parse_child(request.parent, "agents", "parent"),
            convert.trust_policy_spec(request.trust_policy),
            request.request_id,
        )
        return pb.CreateTrustPolicyResponse(trust_policy=convert.trust_policy(policy))

    async def GetTrustPolicy(
        self, request: pb.GetTrustPolicyRequest, context: Ctx
    ) -> pb.GetTrustPolicyResponse:
        policy = await self.trust.get(current_principal(), request.name)
        return pb.GetTrustPolicyResponse(trust_policy=convert.trust_policy(policy))

    async def ListTrustPolicies(
        self, request: pb.ListTrustPoliciesRequest, context: Ctx
    ) -> pb.ListTrustPoliciesResponse:
        page = await self.trust.list(
            current_principal(),
            names.parse_child(request.parent, "agents", "parent"),
            request.page_size,
            request.page_token,
        )
        return pb.ListTrustPoliciesResponse(
            trust_policies=[convert.trust_policy(p) for p in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteTrustPolicy(
        self, request: pb.DeleteTrustPolicyRequest, context: Ctx
    ) -> pb.DeleteTrustPolicyResponse:
        await self.trust.delete(current_principal(), request.name)
        return pb.DeleteTrustPolicyResponse()

    # ----------------------------------------------------------- delegation rules

    async def CreateDelegationRule(
        self, request: pb.CreateDelegationRuleRequest, context: Ctx
    ) -> pb.CreateDelegationRuleResponse:
        r = request.delegation_rule
        rule = await self.rules.create(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            r.delegator,
            r.delegate,
            request.request_id,
        )
        return pb.CreateDelegationRuleResponse(delegation_rule=convert.delegation_rule(rule))

    async def ListDelegationRules(
        self, request: pb.ListDelegationRulesRequest, context: Ctx
    ) -> pb.ListDelegationRulesResponse:
        page = await self.rules.list(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            request.page_size,
            request.page_token,
        )
        return pb.ListDelegationRulesResponse(
            delegation_rules=[convert.delegation_rule(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteDelegationRule(
        self, request: pb.DeleteDelegationRuleRequest, context: Ctx
    ) -> pb.DeleteDelegationRuleResponse:
        await self.rules.delete(current_principal(), request.name)
        return pb.DeleteDelegationRuleResponse()

    # ----------------------------------------------------------- tool policy rules

    async def CreateToolPolicyRule(
        self, request: pb.CreateToolPolicyRuleRequest, context: Ctx
    ) -> pb.CreateToolPolicyRuleResponse:
        rule = await self.tool_policies.create(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            convert.tool_rule_spec(request.tool_policy_rule),
            request.request_id,
        )
        return pb.CreateToolPolicyRuleResponse(tool_policy_rule=convert.tool_policy_rule(rule))

    async def GetToolPolicyRule(
        self, request: pb.GetToolPolicyRuleRequest, context: Ctx
    ) -> pb.GetToolPolicyRuleResponse:
        rule = await self.tool_policies.get(current_principal(), request.name)
        return pb.GetToolPolicyRuleResponse(tool_policy_rule=convert.tool_policy_rule(rule))

    async def ListToolPolicyRules(
        self, request: pb.ListToolPolicyRulesRequest, context: Ctx
    ) -> pb.ListToolPolicyRulesResponse:
        page = await self.tool_policies.list(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            request.page_size,
            request.page_token,
        )
        return pb.ListToolPolicyRulesResponse(
            tool_policy_rules=[convert.tool_policy_rule(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteToolPolicyRule(
        self, request: pb.DeleteToolPolicyRuleRequest, context: Ctx
    ) -> pb.DeleteToolPolicyRuleResponse:
        await self.tool_policies.delete(current_principal(), request.name)
        return pb.DeleteToolPolicyRuleResponse()

    # ----------------------------------------------------------- identity providers

    async def CreateIdentityProvider(
        self, request: pb.CreateIdentityProviderRequest, context: Ctx
    ) -> pb.CreateIdentityProviderResponse:
        idp = await self.idps.create(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            convert.identity_provider_spec(request.identity_provider),
            request.request_id,
        )
        return pb.CreateIdentityProviderResponse(identity_provider=convert.identity_provider(idp))

    async def GetIdentityProvider(
        self, request: pb.GetIdentityProviderRequest, context: Ctx
    ) -> pb.GetIdentityProviderResponse:
        idp = await self.idps.get(current_principal(), request.name)
        return pb.GetIdentityProviderResponse(identity_provider=convert.identity_provider(idp))

    async def ListIdentityProviders(
        self, request: pb.ListIdentityProvidersRequest, context: Ctx
    ) -> pb.ListIdentityProvidersResponse:
        page = await self.idps.list(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            request.page_size,
            request.page_token,
        )
        return pb.ListIdentityProvidersResponse(
            identity_providers=[convert.identity_provider(p) for p in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteIdentityProvider(
        self, request: pb.DeleteIdentityProviderRequest, context: Ctx
    ) -> pb.DeleteIdentityProviderResponse:
        await self.idps.delete(current_principal(), request.name)
        return pb.DeleteIdentityProviderResponse()

    # ----------------------------------------------------------- service accounts

    async def CreateServiceAccount(
        self, request: pb.CreateServiceAccountRequest, context: Ctx
    ) -> pb.CreateServiceAccountResponse:
        sa = await self.sas.create(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            request.service_account.display_name,
            request.service_account.purpose,
            request.request_id,
        )
        return pb.CreateServiceAccountResponse(service_account=convert.service_account(sa))

    async def GetServiceAccount(
        self, request: pb.GetServiceAccountRequest, context: Ctx
    ) -> pb.GetServiceAccountResponse:
        n = names.parse_child(request.name, "serviceAccounts")
        sa = await self.sas.get(current_principal(), n.org_id, n.id)
        return pb.GetServiceAccountResponse(service_account=convert.service_account(sa))

    async def ListServiceAccounts(
        self, request: pb.ListServiceAccountsRequest, context: Ctx
    ) -> pb.ListServiceAccountsResponse:
        page = await self.sas.list(
            current_principal(),
            names.parse_org(request.parent, "parent"),
            request.page_size,
            request.page_token,
        )
        return pb.ListServiceAccountsResponse(
            service_accounts=[convert.service_account(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def DisableServiceAccount(
        self, request: pb.DisableServiceAccountRequest, context: Ctx
    ) -> pb.DisableServiceAccountResponse:
        n = names.parse_child(request.name, "serviceAccounts")
        sa = await self.sas.disable(current_principal(), n.org_id, n.id)
        return pb.DisableServiceAccountResponse(service_account=convert.service_account(sa))

    # ----------------------------------------------------------- API keys

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Ctx
    ) -> pb.CreateApiKeyResponse:
        key, secret = await self.keys.create(
            current_principal(), request.parent, request.api_key.display_name, request.request_id
        )
        return pb.CreateApiKeyResponse(api_key=convert.api_key(key), secret=secret)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: Ctx
    ) -> pb.ListApiKeysResponse:
        page = await self.keys.list(
            current_principal(), request.parent, request.page_size, request.page_token
        )
        return pb.ListApiKeysResponse(
            api_keys=[convert.api_key(k) for k in page.items], next_page_token=page.next_page_token
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Ctx
    ) -> pb.RevokeApiKeyResponse:
        key = await self.keys.revoke(current_principal(), request.name)
        return pb.RevokeApiKeyResponse(api_key=convert.api_key(key))
