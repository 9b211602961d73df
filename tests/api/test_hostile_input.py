"""Hostile input from callers without credentials (issue 11, items 8, 9, 10, 14).

* Bytes that are not a message of the method's type answer INVALID_ARGUMENT
  ``MALFORMED_REQUEST`` with one ``ErrorInfo``, never UNKNOWN with the decoder's
  text, and are logged at INFO at most once per interval, never as an error.
* Each method accepts kilobytes, not megabytes: larger messages are refused before
  they are parsed, and a call that needs a credential and has none is refused
  without its message being read.
* RFC 7662 §2.2 / RFC 7009 §2.2: a token too long to be ours is inactive, and
  revoking it succeeds.
* Every audited attempt gets exactly one outcome, refusals included.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import connection_pb2 as cpb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust_pb
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from control_plane.api.authz import MAX_REQUEST_BYTES, RULES, max_receive_bytes

EXCHANGE = "/agentauth.v1.TokenService/ExchangeToken"
FORM = "application/x-www-form-urlencoded"

#: (method, request type, needs the platform key) for one method of each service,
#: a server-streaming one included.
METHODS = [
    (EXCHANGE, tpb.ExchangeTokenRequest, False),
    ("/agentauth.v1.TokenService/WatchRevocations", tpb.WatchRevocationsRequest, True),
    ("/agentauth.v1.AdminService/CreateOrganization", pb.CreateOrganizationRequest, True),
    ("/agentauth.v1.AdminService/CreateTrustPolicy", pb.CreateTrustPolicyRequest, True),
    ("/agentauth.v1.ConnectionService/SetOAuthApp", cpb.SetOAuthAppRequest, True),
]


def _bad_utf8(descriptor: Any) -> bytes:
    """A string field of the message (nested if need be) holding bytes that are not UTF-8."""
    fields = descriptor.fields
    string = [f for f in fields if f.type == FieldDescriptor.TYPE_STRING]
    if string:
        field, value = string[0], b"ok\xff\xfe"
    else:
        field = next(f for f in fields if f.type == FieldDescriptor.TYPE_MESSAGE)
        value = _bad_utf8(field.message_type)
    return bytes([field.number << 3 | 2, len(value)]) + value


#: Wire format that does not parse, and a string field that is not UTF-8.
def _malformed(request_type: Any) -> dict[str, bytes]:
    return {
        "truncated-varint": b"\x08\xff\xff",
        "length-past-end": b"\x0a\x7fshort",
        "invalid-wire-type": b"\x0f\x00",
        "invalid-utf8": _bad_utf8(request_type.DESCRIPTOR),
    }


def _metadata(harness: Any, authenticated: bool) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {harness.platform_key}"),) if authenticated else None


async def _raw(
    harness: Any, method: str, payload: bytes, *, key: bool, stream: bool = False
) -> grpc.aio.AioRpcError:
    """Sends ``payload`` as the request bytes, as any client could; returns the refusal."""
    async with grpc.aio.insecure_channel(harness.target) as channel:
        metadata = _metadata(harness, key)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            if stream:
                async for _ in channel.unary_stream(method)(payload, metadata=metadata):
                    pass
            else:
                await channel.unary_unary(method)(payload, metadata=metadata)
        return err.value


def _error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The status's one ``ErrorInfo`` (failing when there is none, or more)."""
    details = dict(err.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    assert status.code == err.code().value[0]
    assert len(status.details) == 1
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "agentauth"
    return info


def _lines(logs: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------
# Item 8: malformed protobuf
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "request_type", "key"), METHODS)
async def test_malformed_message_is_invalid_argument(
    harness: Any, captured_logs: io.StringIO, method: str, request_type: Any, key: bool
) -> None:
    before = await harness.snapshot()
    harness.audit.events.clear()
    stream = "Watch" in method
    for case, payload in _malformed(request_type).items():
        err = await _raw(harness, method, payload, key=key, stream=stream)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, case
        assert _error_info(err).reason == "MALFORMED_REQUEST", case
        # The decoder's own words (which can quote the input) are not sent.
        assert err.details() == "the request message could not be decoded", case
    assert harness.audit.events == []  # refused before the pipeline: no attempt
    assert await harness.snapshot() == before
    levels = {line["level"] for line in _lines(captured_logs)}
    assert "error" not in levels and "critical" not in levels


async def test_malformed_messages_are_logged_once_per_interval_and_all_counted(
    harness: Any, captured_logs: io.StringIO
) -> None:
    for _ in range(20):
        await _raw(harness, EXCHANGE, b"\x08\xff\xff", key=False)
    for _ in range(5):
        await _raw(harness, EXCHANGE, b"\x0a" + b"\x80\x80\x04" + b"a" * 65536, key=False)
    refused = [line for line in _lines(captured_logs) if line["event"] == "rpc_refused_unread"]
    assert [(r["reason"], r["level"], r["suppressed"]) for r in refused] == [
        ("MALFORMED_REQUEST", "info", 0),
        ("REQUEST_TOO_LARGE", "info", 0),
    ]
    registry = harness.runtime.metrics.registry

    def calls(code: str) -> float | None:
        return registry.get_sample_value("agentauth_rpc_total", {"method": EXCHANGE, "code": code})

    assert calls("INVALID_ARGUMENT") == 20
    assert calls("RESOURCE_EXHAUSTED") == 5


async def test_a_call_needing_a_credential_without_one_is_refused_unread(harness: Any) -> None:
    """The message is never deserialized: garbage gets the same answer as any request."""
    err = await _raw(harness, "/agentauth.v1.AdminService/CreateOrganization", b"\xff", key=False)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _error_info(err).reason == "CREDENTIALS_MISSING"
    async with grpc.aio.insecure_channel(harness.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as bad_scheme:
            await channel.unary_unary("/agentauth.v1.AdminService/CreateOrganization")(
                b"\xff" * 200_000, metadata=(("authorization", "Basic abc"),)
            )
    assert bad_scheme.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _error_info(bad_scheme.value).reason == "CREDENTIALS_INVALID"
    with pytest.raises(grpc.aio.AioRpcError) as watch:
        await _raw_stream_anonymous(harness)
    assert watch.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _raw_stream_anonymous(harness: Any) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        async for _ in channel.unary_stream("/agentauth.v1.TokenService/WatchRevocations")(b"\xff"):
            pass


# --------------------------------------------------------------------------
# Item 10: per-method limits, bounded memory
# --------------------------------------------------------------------------


def test_the_server_wide_limit_is_the_largest_method_limit() -> None:
    limits = {rule.max_request_bytes for rule in RULES.values()}
    assert max_receive_bytes(RULES) == max(limits) == 2 * 1024 * 1024
    # Token and admin RPCs need kilobytes; only keysets (JWKS) and a tool call's
    # arguments (an email body) get more.
    large = sorted(m for m, r in RULES.items() if r.max_request_bytes > MAX_REQUEST_BYTES)
    assert large == [
        "/agentauth.v1.AdminService/CreateIdentityProvider",
        "/agentauth.v1.AdminService/CreateTrustPolicy",
        "/agentauth.v1.ToolService/ExecuteTool",
    ]


async def test_a_message_too_large_for_its_method_is_refused_before_parsing(
    harness: Any,
) -> None:
    harness.audit.events.clear()
    big = tpb.ExchangeTokenRequest(subject_token="a" * 100 * 1024).SerializeToString()
    err = await _raw(harness, EXCHANGE, big, key=False)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = _error_info(err)
    assert info.reason == "REQUEST_TOO_LARGE"
    assert dict(info.metadata) == {"maxBytes": str(64 * 1024)}
    # Bytes that would not even parse are refused by size first: never parsed.
    err = await _raw(harness, EXCHANGE, b"\xff" * (64 * 1024 + 1), key=False)
    assert _error_info(err).reason == "REQUEST_TOO_LARGE"
    assert harness.audit.events == []  # the grant never ran
    # Past the largest limit of any method, gRPC itself refuses (no ErrorInfo).
    err = await _raw(harness, EXCHANGE, b"\xff" * (2 * 1024 * 1024 + 300 * 1024), key=False)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_keyset_method_still_takes_a_large_policy(harness: Any) -> None:
    """100 KiB is too much for ExchangeToken, not for a trust policy: this one reaches
    the service, whose own field check refuses the oversized JWKS."""
    org, admin, _ = await harness.new_org()
    agent = await admin.admin.RegisterAgent(
        pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name="A"))
    )
    from agentauth import InvalidArgumentError

    with pytest.raises(InvalidArgumentError) as err:
        await admin.admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(
                parent=agent.agent.name,
                trust_policy=trust_pb.TrustPolicy(
                    kind=trust_pb.TRUST_POLICY_KIND_PRIVATE_KEY_JWT,
                    jwks_json=" " * (100 * 1024),
                ),
            )
        )
    assert err.value.reason == "FIELD_TOO_LONG"


#: The attacking client, in its own process so that only the server's memory is measured
#: here: rounds of 40 concurrent 4 MiB anonymous calls, half to ExchangeToken (public),
#: half to an admin method (needs a credential). Prints the status codes it got.
_BURST_CLIENT = """
import asyncio, sys
import grpc
from agentauth.v1 import token_pb2

async def main(target, rounds):
    token = token_pb2.ExchangeTokenRequest(subject_token="a" * (4 << 20)).SerializeToString()
    admin = b"\\x0a" * (4 << 20)
    options = [("grpc.max_send_message_length", 8 << 20)]
    codes = set()
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        async def one(method, data):
            try:
                await channel.unary_unary(method)(data)
                codes.add("OK")
            except grpc.aio.AioRpcError as exc:
                codes.add(exc.code().name)
        for _ in range(rounds):
            await asyncio.gather(
                *[one("/agentauth.v1.TokenService/ExchangeToken", token) for _ in range(20)],
                *[one("/agentauth.v1.AdminService/CreateOrganization", admin) for _ in range(20)],
            )
    print(" ".join(sorted(codes)))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _attack(harness: Any, rounds: int) -> set[str]:
    import os
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _BURST_CLIENT,
        harness.target,
        str(rounds),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return set(out.decode().split())


def _rss_bytes() -> int:
    import os

    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def test_bursts_of_large_anonymous_calls_leave_the_server_healthy_and_small(
    harness: Any,
) -> None:
    """Item 10: rounds of 4 MiB bursts used to raise the resident size by hundreds of
    MB, for good. Now gRPC refuses them by size (reading little of each: no BDP
    window growth) or they are refused unread for want of a credential."""
    start = _rss_bytes()
    codes = await _attack(harness, 4)
    grown = _rss_bytes() - start
    assert codes == {"RESOURCE_EXHAUSTED", "UNAUTHENTICATED"}  # never parsed
    assert grown < 32 << 20, f"resident size grew by {grown >> 20} MiB"
    async with grpc.aio.insecure_channel(harness.target) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    jwks = await harness.client(None).tokens.GetJwks(tpb.GetJwksRequest())
    assert jwks.keys


# --------------------------------------------------------------------------
# Item 9: RFC 7662 §2.2 / RFC 7009 §2.2 for a token too long to be ours
# --------------------------------------------------------------------------

TWENTY_KB_TOKEN = "eyJhbGciOiJFUzI1NiJ9." + "A" * (20 * 1024) + ".sig"


async def _post(
    harness: Any, path: str, key: str | None, body: Any, content_type: str = FORM
) -> tuple[int, Any, bytes]:
    headers = {"Content-Type": content_type}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with aiohttp.ClientSession() as http:
        async with http.post(harness.http + path, data=body, headers=headers) as r:
            return r.status, r.headers, await r.read()


def _records(harness: Any) -> list[tuple[str, str, str]]:
    return [(e.phase, e.outcome, e.reason) for e in harness.audit.events]


async def test_rfc7662_2_2_oversized_token_is_inactive(harness: Any) -> None:
    from urllib.parse import urlencode

    _, admin, key = await harness.new_org()
    body = urlencode({"token": TWENTY_KB_TOKEN})
    status, headers, raw = await _post(harness, "/oauth2/introspect", key, body)
    assert (status, json.loads(raw)) == (200, {"active": False})
    assert headers["Cache-Control"] == "no-store"
    answer = await admin.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=TWENTY_KB_TOKEN))
    assert answer == tpb.IntrospectTokenResponse(active=False)


async def test_rfc7009_2_2_oversized_token_revocation_is_200_and_audited_once(
    harness: Any,
) -> None:
    from urllib.parse import urlencode

    _, admin, key = await harness.new_org()
    harness.audit.events.clear()
    status, _, raw = await _post(
        harness, "/oauth2/revoke", key, urlencode({"token": TWENTY_KB_TOKEN})
    )
    assert (status, raw) == (200, b"")
    assert _records(harness) == [("attempt", "pending", ""), ("outcome", "OK", "")]
    harness.audit.events.clear()
    await admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=TWENTY_KB_TOKEN))
    assert _records(harness) == [("attempt", "pending", ""), ("outcome", "OK", "")]


# --------------------------------------------------------------------------
# Item 14: every attempt gets exactly one outcome, refusals included
# --------------------------------------------------------------------------


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 16 * 1024):
        yield data[i : i + 16 * 1024]


def _oversized_form() -> bytes:
    return b"grant_type=x&subject_token=" + b"a" * (100 * 1024)


@pytest.mark.parametrize(
    ("case", "body", "content_type", "status", "outcome"),
    [
        ("oversized", _oversized_form(), FORM, 413, ("RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE")),
        ("oversized-chunked", None, FORM, 413, ("RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE")),
        ("not-utf8", b"grant_type=\xff\xfe", FORM, 400, ("INVALID_ARGUMENT", "INVALID_REQUEST")),
        ("not-a-form", b"{}", "application/json", 400, ("INVALID_ARGUMENT", "INVALID_REQUEST")),
    ],
)
async def test_refused_token_requests_get_exactly_one_outcome(
    harness: Any,
    case: str,
    body: bytes | None,
    content_type: str,
    status: int,
    outcome: tuple[str, str],
) -> None:
    harness.audit.events.clear()
    sent: Any = _chunks(_oversized_form()) if body is None else body
    got, headers, raw = await _post(harness, "/oauth2/token", None, sent, content_type)
    assert got == status
    assert json.loads(raw)["error"] == "invalid_request"
    assert headers["Cache-Control"] == "no-store"
    if status == 413:  # RFC 6749 §5.2 error_description: say what the limit is
        assert "65536 bytes" in json.loads(raw)["error_description"]
    assert _records(harness) == [("attempt", "pending", ""), ("outcome", *outcome)]


async def test_refusals_before_the_audit_stage_write_no_attempt(harness: Any) -> None:
    """Unauthenticated and rate-limited calls stop before the audit stage: no attempt,
    so no outcome is owed."""
    from tests.api.test_pipeline import _limit

    org, _, key = await harness.new_org()
    harness.audit.events.clear()
    status, _, _ = await _post(harness, "/oauth2/revoke", None, "token=x")
    assert status == 401
    assert harness.audit.events == []
    await _limit(harness, org, principal_requests_per_second=0.002, principal_burst=1)
    harness.audit.events.clear()
    assert (await _post(harness, "/oauth2/revoke", key, "token=x"))[0] == 200
    assert (await _post(harness, "/oauth2/revoke", key, "token=x"))[0] == 429
    assert _records(harness) == [("attempt", "pending", ""), ("outcome", "OK", "")]


def test_throttled_log_counts_what_it_drops(captured_logs: io.StringIO) -> None:
    from control_plane.logs import Throttled

    now = [100.0]
    log = Throttled("agentauth.test", 10.0, now=lambda: now[0])
    written = [log.info("A", "refused") for _ in range(3)]
    written.append(log.info("B", "refused"))  # kinds are throttled apart
    now[0] += 9.9
    written.append(log.info("A", "refused"))
    now[0] += 0.1
    written.append(log.info("A", "refused"))
    assert written == [True, False, False, True, False, True]
    lines = [line for line in _lines(captured_logs) if line["logger"] == "agentauth.test"]
    assert [(line["level"], line["suppressed"]) for line in lines] == [
        ("info", 0),
        ("info", 0),
        ("info", 3),
    ]
