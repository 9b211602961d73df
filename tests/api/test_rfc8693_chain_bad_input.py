"""Bad input to RFC 8693 sub-delegation (a delegated token plus the next agent's
workload token), one test per rule guarded, named after its RFC 8693 section:

- §2.1 (request parameters): only the parameters §2.1 defines are read; ``act``,
  ``may_act``, ``exp``, ``expires_in`` or anything else a caller adds is ignored,
  and ``subject_token_type`` must say what the subject token is (§3 lists types).
- §2.2.2 (error codes): "If the request itself is not valid or if either the
  subject_token or actor_token are invalid for any reason, or are unacceptable
  based on policy, the invalid_request error code MUST be used" — with
  ``invalid_scope`` / ``invalid_target`` for scope and audience. Over gRPC an
  unacceptable token is UNAUTHENTICATED/INVALID_REQUEST, a malformed request
  INVALID_ARGUMENT/INVALID_REQUEST, and every cause of an unacceptable token gets
  one answer (no oracle for policy, revocation or other orgs).
- §4.1 (``act``): the new ``act`` is built by the server from the authenticated
  actor, with the previous one copied from the *verified* subject token; a
  forged, tampered or absurdly nested ``act`` is refused.
- §4.4 (``may_act``): who may delegate to whom is org policy (delegation rules),
  never a claim the caller supplies.
- §5 (security considerations): a token exchange can only narrow — no wider
  scope, no other audience, no later ``exp``, no other org, no revoked or
  expired parent, no chain past the org's depth limit.

Every refusal asserts the SDK's exception class, its ``ErrorInfo`` reason, and
that the ``issued_tokens`` table (read as the owner: RLS hides nothing) is
exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from agentauth import AgentAuthError, InvalidArgumentError, UnauthenticatedError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import duration_pb2, field_mask_pb2
from sqlalchemy import text

from control_plane.clock import FakeClock
from control_plane.storage.db import Database
from control_plane.tokens import lifecycle
from tests.api.chain_helpers import ACCESS_TYPE, API, JWT_TYPE, Chain, claims, open_chain
from tests.api.exchange_helpers import assert_oauth_error, b64, post_form

ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
# RFC 8693 §2.2.2: an invalid or unacceptable subject_token / actor_token.
UNACCEPTABLE = (UnauthenticatedError, "INVALID_REQUEST")
UNACCEPTABLE_DESCRIPTION = "the subject_token or actor_token is not acceptable"
# A malformed request (and a chain past the depth limit, or an unlisted hop).
INVALID_REQUEST = (InvalidArgumentError, "INVALID_REQUEST")
INVALID_SCOPE = (InvalidArgumentError, "INVALID_SCOPE")
INVALID_TARGET = (InvalidArgumentError, "INVALID_TARGET")
# RFC 9068 §2.2 plus ours, and the two claims of a delegated token.
DELEGATED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "org_id", "client_id", "scope", "jti", "iat", "nbf", "exp", "act", "txn"}
)


@pytest.fixture
async def chain(harness: Any) -> AsyncIterator[Chain]:
    async with open_chain(harness) as c:
        yield c


# --------------------------------------------------------------------------
# Scaffolding: stored state, refusals, forged tokens
# --------------------------------------------------------------------------


async def issued_tokens(chain: Chain) -> list[tuple[Any, ...]]:
    """Every issued_tokens row, read as the owner (RLS does not hide rows)."""
    owner = Database(chain.h.database_url, app_role=None)
    try:
        async with owner.engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM issued_tokens"))).scalar_one()
            rows = (await conn.execute(text("SELECT * FROM issued_tokens"))).all()
    finally:
        await owner.dispose()
    assert count == len(rows)
    return sorted(tuple(r) for r in rows)


async def refused(
    chain: Chain, exc: type[AgentAuthError] | tuple[type[AgentAuthError], ...], reason: str,
    request: tpb.ExchangeTokenRequest,
) -> AgentAuthError:  # fmt: skip
    """ExchangeToken fails with ``exc``/``reason`` and issues (or revokes) nothing."""
    before = await issued_tokens(chain)
    with pytest.raises(exc) as err:
        await chain.tokens.ExchangeToken(request)
    assert err.value.reason == reason, err.value
    assert await issued_tokens(chain) == before
    return err.value


async def http_refused(chain: Chain, form: dict[str, str], error: str) -> dict[str, Any]:
    """POST /oauth2/token answers 400 with RFC 6749 §5.2 ``error`` and issues nothing."""
    before = await issued_tokens(chain)
    got = await post_form(chain.token_url, form)
    assert_oauth_error(*got, 400, error)
    assert await issued_tokens(chain) == before
    body: dict[str, Any] = got[2]
    return body


def shape(e: AgentAuthError) -> tuple[Any, ...]:
    return type(e), e.code, e.reason, e.message, e.domain, e.metadata


def deep_act(depth: int, sub: str = "a") -> dict[str, Any]:
    act: dict[str, Any] = {"sub": sub}
    for _ in range(depth - 1):
        act = {"sub": sub, "act": act}
    return act


def our_kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def foreign_signed(payload: dict[str, Any], kid: str) -> str:
    """The payload signed by a fresh ES256 key that is not ours, under our kid."""
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"})


def ours_signed_raw(chain: Chain, payload: bytes) -> str:
    """Raw payload bytes signed by our real active signing key.

    ``SigningKeyManager.sign`` serialises a dict, which cannot nest past Python's
    recursion limit; test-only access to the signer reaches the raw signing input.
    """
    keys = chain.h.runtime.keys
    signer = lifecycle.active_signer(keys._keys, dt.datetime.now(dt.UTC))
    assert signer is not None
    return jwt.api_jws.encode(
        payload, signer.private, algorithm=signer.alg, headers={"kid": signer.kid, "typ": "at+jwt"}
    )


def tampered(token: str, payload: dict[str, Any]) -> str:
    """``token`` with its payload segment replaced and its signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{b64(payload)}.{signature}"


async def settings(chain: Chain, **fields: Any) -> None:
    """UpdateOrganization on the chain's org; ``access_token_ttl`` in seconds."""
    org = pb.Organization(name=chain.org)
    if "access_token_ttl" in fields:
        org.access_token_ttl.CopyFrom(duration_pb2.Duration(seconds=fields["access_token_ttl"]))
    if "max_delegation_depth" in fields:
        org.max_delegation_depth = fields["max_delegation_depth"]
    await chain.admin.admin.UpdateOrganization(pb.UpdateOrganizationRequest(
        organization=org, update_mask=field_mask_pb2.FieldMask(paths=list(fields))))  # fmt: skip


async def chain_of(chain: Chain, *actors: str) -> list[str]:
    """The delegated token to O, then one hop per actor: every token of the chain."""
    tokens = [(await chain.delegate()).access_token]
    for actor in actors:
        tokens.append((await chain.hop(tokens[-1], actor)).access_token)
    return tokens


# --------------------------------------------------------------------------
# §2.1 / §4.1 / §4.4: act and may_act come from the verified subject token only
# --------------------------------------------------------------------------


async def test_rfc8693_2_1_caller_supplied_act_parameter_is_ignored(chain: Chain) -> None:
    """``act``, ``may_act`` and any other unknown form parameter change nothing: the
    minted ``act`` is the actor, with the subject token's ``act`` nested (§4.1)."""
    t1 = (await chain.delegate()).access_token
    c1 = claims(t1)
    forged_act = {"sub": chain.agents["T"], "act": {"sub": chain.service_account}}
    extra = {
        "act": json.dumps(forged_act),
        "may_act": json.dumps({"sub": chain.agents["U"]}),
        "sub": chain.service_account,
        "org_id": "0" * 32,
        "txn": "attacker-txn",
        "client_id_override": chain.agents["T"],
        "iss": "https://evil.example",
        "cnf": json.dumps({"jkt": "x"}),
        "unknown": "y" * 100,
    }
    status, _, body = await post_form(chain.token_url, {**chain.form(t1, "S"), **extra})
    assert status == 200, body
    c2 = claims(body["access_token"])
    assert set(c2) == DELEGATED_CLAIMS
    assert c2["act"] == {"sub": chain.agents["S"], "act": {"sub": chain.agents["O"]}}
    assert c2["sub"] == chain.user and c2["client_id"] == chain.agents["S"]
    assert c2["org_id"] == c1["org_id"] and c2["txn"] == c1["txn"]
    assert c2["iss"] == c1["iss"] and c2["exp"] <= c1["exp"]


async def test_rfc8693_4_1_act_and_may_act_in_the_actor_token_are_not_copied(
    chain: Chain,
) -> None:
    """The actor token authenticates the actor and nothing more: an ``act`` (even 500
    deep) or ``may_act`` its issuer put in it never reaches the minted token."""
    t1 = (await chain.delegate()).access_token
    actor = chain.workload(
        "S", extra_claims={"act": deep_act(500), "may_act": {"sub": chain.agents["U"]}}
    )
    c2 = claims((await chain.tokens.ExchangeToken(
        chain.request(t1, "S", actor_token=actor))).access_token)  # fmt: skip
    assert set(c2) == DELEGATED_CLAIMS
    assert c2["act"] == {"sub": chain.agents["S"], "act": {"sub": chain.agents["O"]}}


async def test_rfc8693_4_4_may_act_is_policy_not_a_parameter(chain: Chain) -> None:
    """O → T has no delegation rule: a caller-supplied ``may_act`` naming T does not
    make one, over HTTP or gRPC."""
    t1 = (await chain.delegate()).access_token
    form = {**chain.form(t1, "T"), "may_act": json.dumps({"sub": chain.agents["T"]})}
    await http_refused(chain, form, "invalid_request")
    await refused(chain, *INVALID_REQUEST, chain.request(t1, "T"))


# --------------------------------------------------------------------------
# §4.1 / §2.2.2: a forged or tampered act in the subject token
# --------------------------------------------------------------------------


@pytest.mark.parametrize("iss", ["ours", "another-issuer"])
async def test_rfc8693_4_1_forged_act_from_another_issuer_is_refused(
    chain: Chain, iss: str
) -> None:
    """A copy of a real delegated token, its act claiming S already holds it (so S → T
    would be allowed), signed by a key that is not ours."""
    t1 = (await chain.delegate()).access_token
    c1 = claims(t1)
    forged_act = {"sub": chain.agents["S"], "act": {"sub": chain.agents["O"]}}
    payload = {**c1, "act": forged_act, "jti": secrets.token_hex(16)}
    if iss == "another-issuer":
        payload["iss"] = "https://evil.example"
    forged = foreign_signed(payload, our_kid(t1))
    # An attacker naming the org, so no grant can refuse it merely for lack of one.
    request = chain.request(forged, "T", organization=chain.org)
    err = await refused(chain, *UNACCEPTABLE, request)
    assert err.message == UNACCEPTABLE_DESCRIPTION
    form = chain.form(forged, "T", organization=chain.org)
    body = await http_refused(chain, form, "invalid_request")
    assert body["error_description"] == UNACCEPTABLE_DESCRIPTION


@pytest.mark.parametrize("edit", ["act-replaced", "act-removed-inner", "act-widened"])
async def test_rfc8693_4_1_tampered_act_in_our_signed_token_is_refused(
    chain: Chain, edit: str
) -> None:
    """A real token of ours, its payload edited and its signature kept."""
    t1, t2 = await chain_of(chain, "S")
    c2 = claims(t2)
    act = {
        "act-replaced": {"sub": chain.agents["T"], "act": c2["act"]},
        "act-removed-inner": {"sub": chain.agents["S"]},
        "act-widened": {**c2["act"], "may_act": {"sub": chain.agents["U"]}},
    }[edit]
    forged = tampered(t2, {**c2, "act": act})
    await refused(chain, *UNACCEPTABLE, chain.request(forged, "T"))
    await http_refused(chain, chain.form(forged, "T"), "invalid_request")
    assert (await chain.hop(t2, "T")).access_token  # control: the genuine token is accepted


# --------------------------------------------------------------------------
# §5 / §2.2.2: scopes and audiences only narrow
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delegated", "requested"),
    [("a", "a b"), ("a", "b"), ("a b c", "c"), ("a b c", "a c"), ("a b c", "a b c")],
    ids=["parent-lacks-b", "parent-lacks-all", "actor-policy-lacks-c", "actor-lacks-one",
         "actor-lacks-one-of-three"],
)  # fmt: skip
async def test_rfc8693_2_2_2_scope_widening_is_invalid_scope(
    chain: Chain, delegated: str, requested: str
) -> None:
    t1 = (await chain.delegate(scope=delegated)).access_token
    await refused(chain, *INVALID_SCOPE, chain.request(t1, "S", scope=requested))
    await http_refused(chain, chain.form(t1, "S", scope=requested), "invalid_scope")


@pytest.mark.parametrize(
    "audience",
    [["https://evil.example"], [API, "https://evil.example"], ["*"], ["issuer"],
     [API + "/"], [API.upper()]],
    ids=["other", "allowed-plus-other", "wildcard", "our-issuer", "trailing-slash",
         "upper-case"],
)  # fmt: skip
async def test_rfc8693_2_2_2_audience_outside_allow_list_is_invalid_target(
    chain: Chain, audience: list[str]
) -> None:
    """S's policy allows only API; the backend's policy allows our issuer, S's does not."""
    t1 = (await chain.delegate()).access_token
    audience = [chain.h.servers.tokens.issuer if a == "issuer" else a for a in audience]
    await refused(chain, *INVALID_TARGET, chain.request(t1, "S", audience=audience))
    pairs = [*chain.form(t1, "S").items(), *(("audience", a) for a in audience)]
    before = await issued_tokens(chain)
    got = await post_form(chain.token_url, pairs)
    assert_oauth_error(*got, 400, "invalid_target")
    assert await issued_tokens(chain) == before


# --------------------------------------------------------------------------
# §5: exp never outlives the parent (or the actor's credential)
# --------------------------------------------------------------------------


async def test_rfc8693_5_child_never_outlives_a_short_lived_parent(chain: Chain) -> None:
    """A parent minted under a 60 s TTL, exchanged after the org allows 15 min and with
    an actor token good for an hour: the child ends when the parent does."""
    await settings(chain, access_token_ttl=60)
    t1 = (await chain.delegate()).access_token
    c1 = claims(t1)
    assert c1["exp"] - c1["iat"] == 60
    await settings(chain, access_token_ttl=900)
    resp = await chain.tokens.ExchangeToken(chain.request(t1, "S", actor_token=chain.workload(
        "S", ttl=3600)))  # fmt: skip
    c2 = claims(resp.access_token)
    assert c2["exp"] == c1["exp"]
    assert resp.expires_in <= c1["exp"] - c2["iat"]
    # The next hop, under the 15 min TTL, is capped by the same root.
    c3 = claims((await chain.hop(resp.access_token, "T")).access_token)
    assert c3["exp"] <= c1["exp"]


async def test_rfc8693_5_child_never_outlives_the_actor_token(chain: Chain) -> None:
    t1 = (await chain.delegate()).access_token
    actor = chain.workload("S", ttl=45)
    c2 = claims((await chain.tokens.ExchangeToken(
        chain.request(t1, "S", actor_token=actor))).access_token)  # fmt: skip
    assert c2["exp"] <= claims(actor)["exp"] < claims(t1)["exp"]


async def test_rfc8693_2_1_expires_in_like_parameters_are_ignored(chain: Chain) -> None:
    await settings(chain, access_token_ttl=60)
    t1 = (await chain.delegate()).access_token
    await settings(chain, access_token_ttl=900)
    extra = {"expires_in": "86400", "exp": str(int(time.time()) + 86400), "ttl": "86400",
             "requested_expiry": "86400", "access_token_ttl": "900", "max_age": "86400"}  # fmt: skip
    status, _, body = await post_form(chain.token_url, {**chain.form(t1, "S"), **extra})
    assert status == 200, body
    assert claims(body["access_token"])["exp"] <= claims(t1)["exp"]
    assert 0 < body["expires_in"] <= 60


# --------------------------------------------------------------------------
# §5 / §2.2.2: the actor must be admitted by the subject token's org
# --------------------------------------------------------------------------


async def _org_b_agent(chain: Chain) -> str:
    """Org B, with agent X whose policy (the same issuer) admits workload ``agents:x``."""
    org_b, b_admin, _ = await chain.h.new_org("B")
    sa_b = (await b_admin.admin.ListServiceAccounts(
        pb.ListServiceAccountsRequest(parent=org_b))).service_accounts[0].name  # fmt: skip
    x = (await b_admin.admin.RegisterAgent(pb.RegisterAgentRequest(
        parent=org_b, agent=pb.Agent(display_name="X")))).agent.name  # fmt: skip
    await b_admin.admin.CreateTrustPolicy(pb.CreateTrustPolicyRequest(
        parent=x, trust_policy=trust.TrustPolicy(
            kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN, issuer=chain.k8s.issuer,
            discovery_url=chain.k8s.issuer + "/.well-known/openid-configuration",
            audience="agentauth", subject="system:serviceaccount:agents:x",
            service_accounts=[sa_b], scopes=["a", "b", "c"], audiences=[API])))  # fmt: skip
    # Control: X's workload token really is admitted, in org B.
    assert (await chain.tokens.ExchangeToken(tpb.ExchangeTokenRequest(
        grant_type="urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token=chain.workload("X"), subject_token_type=JWT_TYPE,
        organization=org_b))).access_token  # fmt: skip
    return x


async def test_rfc8693_5_actor_from_another_org_is_refused(chain: Chain) -> None:
    """Org A's delegated token, org B's agent as actor: refused exactly as an actor no
    policy anywhere admits, so the answer does not reveal that org B exists."""
    t1 = (await chain.delegate()).access_token
    x = await _org_b_agent(chain)
    other_org = await refused(chain, *UNACCEPTABLE, chain.request(t1, "X"))
    nobody = await refused(chain, *UNACCEPTABLE, chain.request(t1, "nobody"))
    assert shape(other_org) == shape(nobody)
    b_other = await http_refused(chain, chain.form(t1, "X"), "invalid_request")
    b_nobody = await http_refused(chain, chain.form(t1, "nobody"), "invalid_request")
    assert b_other == b_nobody == {
        "error": "invalid_request", "error_description": UNACCEPTABLE_DESCRIPTION}  # fmt: skip
    # Naming X as client_id is a malformed request (the actor must be in the subject
    # token's org), answered from the name alone: the same for an org that does not exist.
    named = await refused(chain, *INVALID_REQUEST, chain.request(t1, "X", client_id=x))
    ghost = f"orgs/{secrets.token_hex(16)}/agents/{secrets.token_hex(16)}"
    missing = await refused(chain, *INVALID_REQUEST, chain.request(t1, "X", client_id=ghost))
    assert shape(named) == shape(missing)


# --------------------------------------------------------------------------
# §5 / §2.2.2: a revoked or expired parent
# --------------------------------------------------------------------------


async def test_rfc8693_5_revoked_parent_is_refused(chain: Chain) -> None:
    t1, t2 = await chain_of(chain, "S")
    await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=t2))
    await refused(chain, *UNACCEPTABLE, chain.request(t2, "T"))
    await http_refused(chain, chain.form(t2, "T"), "invalid_request")
    # Revoking the root takes the chain with it.
    await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=t1))
    await refused(chain, *UNACCEPTABLE, chain.request(t1, "S"))


@pytest.mark.parametrize("past_exp", [10, 31, 3600], ids=["within-leeway", "past-leeway", "hour"])
async def test_rfc8693_5_expired_parent_is_refused(chain: Chain, past_exp: int) -> None:
    """The server's injectable clocks moved past the parent's exp (the actor's workload
    token, good for an hour, is checked against the real clock)."""
    t1 = (await chain.delegate()).access_token
    later = FakeClock(dt.datetime.fromtimestamp(claims(t1)["exp"] + past_exp, dt.UTC))
    tokens = chain.h.servers.tokens
    tokens.own_tokens.clock = tokens.minter.clock = later
    await refused(chain, *UNACCEPTABLE, chain.request(t1, "S"))
    await http_refused(chain, chain.form(t1, "S"), "invalid_request")


async def test_rfc8693_2_2_2_every_unacceptable_subject_gets_one_answer(chain: Chain) -> None:
    """Revoked, forged, tampered, expired, unparseable: one answer, no oracle."""
    t1, t2 = await chain_of(chain, "S")
    c2 = claims(t2)
    await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=t2))
    expired = ours_signed_raw(chain, json.dumps({**claims(t1), "exp": 1}).encode())
    subjects = {
        "revoked": t2,
        "foreign-key": foreign_signed({**c2, "jti": secrets.token_hex(16)}, our_kid(t1)),
        "tampered": tampered(t1, {**claims(t1), "scope": "a b c d"}),
        "expired": expired,
        "garbage-signature": t1[: t1.rindex(".") + 1] + b64(b"\x00" * 64),
    }
    shapes = [
        shape(await refused(chain, *UNACCEPTABLE, chain.request(subject, "T")))
        for subject in subjects.values()
    ]
    assert all(s == shapes[0] for s in shapes), dict(zip(subjects, shapes, strict=True))


# --------------------------------------------------------------------------
# §5: chain depth, and act nesting bombs
# --------------------------------------------------------------------------


async def test_rfc8693_5_depth_limit_follows_the_org_setting(chain: Chain) -> None:
    """Default depth 4: O, S, T, U. A rule U → O exists, so only the depth refuses."""
    await chain.add_rule("U", "O")
    t1, t2, t3, t4 = await chain_of(chain, "S", "T", "U")
    assert claims(t4)["act"]["act"]["act"]["act"] == {"sub": chain.agents["O"]}
    await refused(chain, *INVALID_REQUEST, chain.request(t4, "O"))
    await http_refused(chain, chain.form(t4, "O"), "invalid_request")
    await settings(chain, max_delegation_depth=5)
    assert (await chain.hop(t4, "O")).access_token  # the same hop, now within the limit
    await settings(chain, max_delegation_depth=2)
    await refused(chain, *INVALID_REQUEST, chain.request(t2, "T"))
    await refused(chain, *INVALID_REQUEST, chain.request(t3, "U"))
    assert (await chain.hop(t1, "S")).access_token  # depth 2 is still allowed


@pytest.mark.parametrize("signer", ["foreign-key", "our-key"])
async def test_rfc8693_4_1_act_nested_500_deep_is_refused_quickly(
    chain: Chain, signer: str
) -> None:
    """RFC 8693 §4.1 sets no depth; we bound it (and the org's limit is far lower).
    Even a token validly signed by our own key, with an active jti, is refused as an
    unacceptable token — never RecursionError, INTERNAL or a 500."""
    t1 = (await chain.delegate()).access_token
    payload = {**claims(t1), "act": deep_act(500)}
    if signer == "our-key":
        token = chain.h.runtime.keys.sign(payload)  # same jti: the record says active
    else:
        token = foreign_signed(payload, our_kid(t1))
    start = time.monotonic()
    await refused(chain, *UNACCEPTABLE, chain.request(token, "S"))
    body = await http_refused(chain, chain.form(token, "S"), "invalid_request")
    assert body["error_description"] == UNACCEPTABLE_DESCRIPTION
    assert time.monotonic() - start < 5


async def test_rfc8693_4_1_act_nested_past_the_json_recursion_limit_is_refused(
    chain: Chain,
) -> None:
    """1,200 levels of ``{"act":`` fit in 16 KiB and pass Python's default recursion
    limit: the parser's RecursionError must become a refusal, over gRPC and HTTP. The
    token may be refused before any grant verifies it, so either class will do."""
    t1 = (await chain.delegate()).access_token
    head = json.dumps({k: v for k, v in claims(t1).items() if k != "act"})[:-1]
    payload = (head + ',"act":' + '{"act":' * 1200 + "{}" + "}" * 1200 + "}").encode()
    token = ours_signed_raw(chain, payload)
    assert len(token) < 16 * 1024
    start = time.monotonic()
    await refused(
        chain, (UnauthenticatedError, InvalidArgumentError), "INVALID_REQUEST",
        chain.request(token, "S"),
    )  # fmt: skip
    await http_refused(chain, chain.form(token, "S"), "invalid_request")
    # A caller-supplied act as deep (well under the 64 KiB body limit) is only ignored.
    deep_param = {"act": '{"act":' * 1200 + "{}" + "}" * 1200}
    t2 = await post_form(chain.token_url, {**chain.form(t1, "S"), **deep_param})
    assert t2[0] == 200, t2[2]  # a deep caller-supplied act is just an ignored parameter
    assert time.monotonic() - start < 10


# --------------------------------------------------------------------------
# §3 / §2.2.2: subject_token_type must say what the subject token is
# --------------------------------------------------------------------------
#
# A lying type lands in whichever grant handles that type (sub-delegation, or the
# user-assertion grant for ID tokens and JWTs), which refuses it: the oauth error is
# invalid_request either way, over gRPC UNAUTHENTICATED or INVALID_ARGUMENT.

EITHER = (UnauthenticatedError, InvalidArgumentError)


async def _type_lie_refused(chain: Chain, subject: str, subject_type: str) -> None:
    await refused(
        chain, EITHER, "INVALID_REQUEST",
        chain.request(subject, "S", subject_token_type=subject_type),
    )  # fmt: skip
    await http_refused(
        chain, chain.form(subject, "S", subject_token_type=subject_type), "invalid_request"
    )


@pytest.mark.parametrize("subject_type", [JWT_TYPE, ID_TOKEN_TYPE], ids=["jwt", "id_token"])
async def test_rfc8693_3_delegated_access_token_typed_as_jwt_or_id_token(
    chain: Chain, subject_type: str
) -> None:
    t1 = (await chain.delegate()).access_token
    await _type_lie_refused(chain, t1, subject_type)


async def test_rfc8693_3_workload_jwt_typed_as_access_token(chain: Chain) -> None:
    await _type_lie_refused(chain, chain.workload("O"), ACCESS_TYPE)


@pytest.mark.parametrize(
    "subject", ["delegated", "opaque"], ids=["delegated-access-token", "opaque-rt"]
)
async def test_rfc8693_3_refresh_token_subject_is_invalid_request(
    chain: Chain, subject: str
) -> None:
    """We issue no refresh tokens: a subject typed as one is invalid_request."""
    token = (await chain.delegate()).access_token if subject == "delegated" else "rt_" + "A" * 43
    await _type_lie_refused(chain, token, REFRESH_TOKEN_TYPE)
