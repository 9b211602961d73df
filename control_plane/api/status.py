"""Exceptions → ``google.rpc.Status`` with exactly one ``ErrorInfo`` (domain ``agentauth``)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from control_plane.domain.errors import DOMAIN, AgentAuthError, Internal


def to_grpc_status(exc: AgentAuthError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=exc.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    proto = status_pb2.Status(
        code=getattr(code_pb2, exc.code), message=exc.message, details=[detail]
    )
    return rpc_status.to_status(proto)


def internal_status() -> grpc.Status:
    return to_grpc_status(Internal())
