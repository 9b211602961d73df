"""gRPC server reflection answers clients of ``grpc.reflection.v1`` as well as ``v1alpha``.

A client that speaks only v1 (buf curl asks v1 first) must see the same services, and
every method it can discover must have an authorization rule.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

from control_plane.api import reflection_v1
from control_plane.api.authz import RULES

V1 = reflection_v1.METHOD
V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
SERVICES = {
    "agentauth.v1.AdminService",
    "agentauth.v1.TokenService",
    "agentauth.v1.ConnectionService",
    "agentauth.v1.ToolService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
}


async def _ask(target: str, method: str, request: Any, response_type: Any) -> list[Any]:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_stream(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return [r async for r in call(iter([request]))]


async def _services(target: str) -> set[str]:
    request = reflection_v1.ServerReflectionRequest(list_services="")
    [answer] = await _ask(target, V1, request, reflection_v1.ServerReflectionResponse)
    return {s.name for s in answer.list_services_response.service}


async def test_a_v1_client_lists_the_same_services_as_v1alpha(harness: Any) -> None:
    request = v1alpha.ServerReflectionRequest(list_services="")
    [old] = await _ask(harness.target, V1ALPHA, request, v1alpha.ServerReflectionResponse)
    assert {s.name for s in old.list_services_response.service} == SERVICES
    assert await _services(harness.target) == SERVICES


async def test_every_method_a_v1_client_discovers_has_an_authorization_rule(
    harness: Any,
) -> None:
    """Discovered from the running server, so a service registered without rules fails."""
    discovered = set()
    for service in await _services(harness.target):
        request = reflection_v1.ServerReflectionRequest(file_containing_symbol=service)
        [answer] = await _ask(harness.target, V1, request, reflection_v1.ServerReflectionResponse)
        assert answer.WhichOneof("message_response") == "file_descriptor_response", service
        for raw in answer.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            for svc in proto.service:
                name = f"{proto.package}.{svc.name}"
                if name == service:
                    discovered |= {f"/{name}/{m.name}" for m in svc.method}
    assert V1 in discovered
    assert discovered - set(RULES) == set()


def _shape(file: Any) -> dict[str, list[tuple[str, int, int]]]:
    messages = file.message_types_by_name.values()
    return {m.name: [(f.name, f.number, f.type) for f in m.fields] for m in messages}


def test_the_v1_schema_is_v1alpha_renamed() -> None:
    """Same messages, same field numbers: one servicer can answer both."""
    v1 = descriptor_pb2.FileDescriptorProto()
    reflection_v1.DESCRIPTOR.CopyToProto(v1)
    assert v1.package == "grpc.reflection.v1"
    assert _shape(reflection_v1.DESCRIPTOR) == _shape(v1alpha.DESCRIPTOR)
    for message in reflection_v1.DESCRIPTOR.message_types_by_name.values():
        for field in message.fields:
            if field.message_type is not None:
                assert field.message_type.full_name.startswith("grpc.reflection.v1.")


def _buf() -> str | None:
    repo_tool = Path(__file__).resolve().parents[2] / ".tools/node_modules/.bin/buf"
    if repo_tool.exists():
        return str(repo_tool)  # .ci/run installs it there
    return os.environ.get("AGENTAUTH_TEST_BUF") or shutil.which("buf")


@pytest.mark.skipif(_buf() is None, reason="buf is not installed (.ci/run installs it)")
async def test_buf_curl_lists_services_over_reflection_v1(harness: Any) -> None:
    """A stock client held to v1: ``--reflect-protocol grpc-v1`` never falls back."""
    proc = await asyncio.create_subprocess_exec(
        str(_buf()),
        "curl",
        "--protocol",
        "grpc",
        "--reflect-protocol",
        "grpc-v1",
        "--list-services",
        f"http://{harness.target}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert set(out.decode().split()) == SERVICES
