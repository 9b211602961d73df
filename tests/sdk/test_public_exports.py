"""Pins the SDK's public surface: changing it must be a deliberate edit here."""

from __future__ import annotations

import importlib

import agentauth
import pytest

EXPECTED_EXPORTS = [
    "AgentAuthError",
    "AgentTokenSource",
    "AlreadyExistsError",
    "AsyncTokenValidator",
    "ControlPlaneClient",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "IssuedToken",
    "JwksUnavailableError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RevocationList",
    "RevocationWatcher",
    "RevocationsUnavailableError",
    "SyncToolClient",
    "TokenForbiddenError",
    "TokenInvalidError",
    "TokenReason",
    "TokenValidator",
    "ToolAuthRevoked",
    "ToolCallResult",
    "ToolConfirmationDenied",
    "ToolError",
    "ToolInvalidArguments",
    "ToolNotConnected",
    "ToolPolicyDenied",
    "ToolRateLimited",
    "ToolRetry",
    "ToolScopeInsufficient",
    "ToolSpec",
    "ToolStreamIncomplete",
    "ToolTimeout",
    "ToolUpstreamError",
    "ToolUpstreamUnavailable",
    "UnauthenticatedError",
    "UnavailableError",
    "VerifiedToken",
    "__version__",
    "client_interceptors",
    "from_rpc_error",
    "workload_token_file",
]


def test_all_is_pinned() -> None:
    assert sorted(agentauth.__all__) == EXPECTED_EXPORTS
    assert len(set(agentauth.__all__)) == len(agentauth.__all__)


@pytest.mark.parametrize("name", EXPECTED_EXPORTS)
def test_export_is_importable(name: str) -> None:
    module = importlib.import_module("agentauth")
    assert getattr(module, name) is not None


def test_public_names_come_from_private_modules() -> None:
    # The facade re-exports; implementation modules stay private so they can
    # be reorganised without breaking users.
    for name in agentauth.__all__:
        obj = getattr(agentauth, name)
        module = getattr(obj, "__module__", None)
        if module is not None and name != "__version__":
            assert module.startswith("agentauth._"), (name, module)


def test_generated_modules_import_without_rewriting() -> None:
    from agentauth.v1 import admin_pb2, admin_pb2_grpc, token_pb2, token_pb2_grpc

    assert admin_pb2.DESCRIPTOR.package == "agentauth.v1"
    assert token_pb2.DESCRIPTOR.package == "agentauth.v1"
    assert hasattr(admin_pb2_grpc, "AdminServiceStub")
    assert hasattr(token_pb2_grpc, "TokenServiceStub")
