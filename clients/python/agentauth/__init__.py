"""Python SDK for agentauth, the auth control plane for AI agents.

The generated protobuf and gRPC modules live in :mod:`agentauth.v1`
(``agentauth.v1.admin_pb2``, ``agentauth.v1.admin_pb2_grpc``, ...).
"""

from agentauth._agent_tokens import AgentTokenSource, IssuedToken, workload_token_file
from agentauth._client import ControlPlaneClient, client_interceptors
from agentauth._errors import (
    AgentAuthError,
    AlreadyExistsError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    from_rpc_error,
)
from agentauth._revocation_list import RevocationList
from agentauth._revocations import RevocationWatcher
from agentauth._sync_tools import SyncToolClient
from agentauth._tool_errors import (
    ToolAuthRevoked,
    ToolConfirmationDenied,
    ToolError,
    ToolInvalidArguments,
    ToolNotConnected,
    ToolPolicyDenied,
    ToolRateLimited,
    ToolScopeInsufficient,
    ToolStreamIncomplete,
    ToolTimeout,
    ToolUpstreamError,
    ToolUpstreamUnavailable,
)
from agentauth._tools import ToolCallResult, ToolRetry, ToolSpec
from agentauth._validator import AsyncTokenValidator, TokenValidator
from agentauth._validator_claims import VerifiedToken
from agentauth._validator_errors import (
    JwksUnavailableError,
    RevocationsUnavailableError,
    TokenForbiddenError,
    TokenInvalidError,
    TokenReason,
)
from agentauth._version import __version__

__all__ = [
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
