"""A malformed resource name says what an id looks like (issue 13: ``orgs/acme``).

A newcomer's first guess is a slug; ``must look like orgs/{org}`` alone sends them
round in circles, so every such message also says that ids are 32 hex characters.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from control_plane.domain import names
from control_plane.domain.errors import InvalidArgument
from control_plane.services.connected_accounts import _parse_owner
from control_plane.services.credential_names import parse_credential_name, parse_org_connector
from control_plane.services.tool_execution import ToolCall, check_call
from control_plane.services.trust_policies import _parse_policy_name

HEX = "3f" * 16
CASES: dict[str, Callable[[], object]] = {
    "org": lambda: names.parse_org("orgs/acme"),
    "org upper-case": lambda: names.parse_org(f"orgs/{HEX.upper()}"),
    "user": lambda: names.parse_child("orgs/acme/users/u1", "users"),
    "platform key": lambda: names.parse_platform_key("apiKeys/k1"),
    "oauth app": lambda: parse_credential_name("orgs/acme/oauthApps/gmail", "oauthApps"),
    "org connector": lambda: parse_org_connector("orgs/acme/connectors/gmail"),
    "trust policy": lambda: _parse_policy_name(f"orgs/{HEX}/agents/{HEX}/trustPolicies/p1"),
    "account": lambda: check_call(ToolCall("gmail.list", {}, connected_account="acct")),
    "owner": lambda: _parse_owner("users/alice", HEX),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_name_says_ids_are_hex(case: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        CASES[case]()
    assert "32 lower-case hex characters" in str(err.value), str(err.value)


def test_a_well_formed_name_still_parses() -> None:
    assert names.parse_org(f"orgs/{HEX}") == HEX
