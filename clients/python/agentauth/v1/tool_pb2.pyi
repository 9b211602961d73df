import datetime

from agentauth.v1 import connection_pb2 as _connection_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolConnectionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_CONNECTION_STATE_UNSPECIFIED: _ClassVar[ToolConnectionState]
    TOOL_CONNECTION_STATE_CONNECTED: _ClassVar[ToolConnectionState]
    TOOL_CONNECTION_STATE_NOT_CONNECTED: _ClassVar[ToolConnectionState]
    TOOL_CONNECTION_STATE_NEEDS_RECONNECT: _ClassVar[ToolConnectionState]
    TOOL_CONNECTION_STATE_NOT_REQUIRED: _ClassVar[ToolConnectionState]

class ToolErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_ERROR_CODE_UNSPECIFIED: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_NOT_CONNECTED: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_AUTH_REVOKED: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_SCOPE_INSUFFICIENT: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_RATE_LIMITED: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_UPSTREAM_UNAVAILABLE: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_UPSTREAM_ERROR: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_INVALID_ARGUMENTS: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_POLICY_DENIED: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_CONFIRMATION_DENIED: _ClassVar[ToolErrorCode]
    TOOL_ERROR_CODE_TIMEOUT: _ClassVar[ToolErrorCode]

class ToolConfirmationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_CONFIRMATION_STATE_UNSPECIFIED: _ClassVar[ToolConfirmationState]
    TOOL_CONFIRMATION_STATE_PENDING: _ClassVar[ToolConfirmationState]
    TOOL_CONFIRMATION_STATE_APPROVED: _ClassVar[ToolConfirmationState]
    TOOL_CONFIRMATION_STATE_DENIED: _ClassVar[ToolConfirmationState]
    TOOL_CONFIRMATION_STATE_EXPIRED: _ClassVar[ToolConfirmationState]
    TOOL_CONFIRMATION_STATE_USED: _ClassVar[ToolConfirmationState]
TOOL_CONNECTION_STATE_UNSPECIFIED: ToolConnectionState
TOOL_CONNECTION_STATE_CONNECTED: ToolConnectionState
TOOL_CONNECTION_STATE_NOT_CONNECTED: ToolConnectionState
TOOL_CONNECTION_STATE_NEEDS_RECONNECT: ToolConnectionState
TOOL_CONNECTION_STATE_NOT_REQUIRED: ToolConnectionState
TOOL_ERROR_CODE_UNSPECIFIED: ToolErrorCode
TOOL_ERROR_CODE_NOT_CONNECTED: ToolErrorCode
TOOL_ERROR_CODE_AUTH_REVOKED: ToolErrorCode
TOOL_ERROR_CODE_SCOPE_INSUFFICIENT: ToolErrorCode
TOOL_ERROR_CODE_RATE_LIMITED: ToolErrorCode
TOOL_ERROR_CODE_UPSTREAM_UNAVAILABLE: ToolErrorCode
TOOL_ERROR_CODE_UPSTREAM_ERROR: ToolErrorCode
TOOL_ERROR_CODE_INVALID_ARGUMENTS: ToolErrorCode
TOOL_ERROR_CODE_POLICY_DENIED: ToolErrorCode
TOOL_ERROR_CODE_CONFIRMATION_DENIED: ToolErrorCode
TOOL_ERROR_CODE_TIMEOUT: ToolErrorCode
TOOL_CONFIRMATION_STATE_UNSPECIFIED: ToolConfirmationState
TOOL_CONFIRMATION_STATE_PENDING: ToolConfirmationState
TOOL_CONFIRMATION_STATE_APPROVED: ToolConfirmationState
TOOL_CONFIRMATION_STATE_DENIED: ToolConfirmationState
TOOL_CONFIRMATION_STATE_EXPIRED: ToolConfirmationState
TOOL_CONFIRMATION_STATE_USED: ToolConfirmationState

class ListToolsRequest(_message.Message):
    __slots__ = ("connector",)
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    connector: str
    def __init__(self, connector: _Optional[str] = ...) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    def __init__(self, tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "description", "input_schema_json", "provider_scopes", "destructive", "output_trust", "connection", "cursor_argument")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_SCOPES_FIELD_NUMBER: _ClassVar[int]
    DESTRUCTIVE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUST_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    CURSOR_ARGUMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    input_schema_json: str
    provider_scopes: _containers.RepeatedScalarFieldContainer[str]
    destructive: bool
    output_trust: _connection_pb2.OutputTrust
    connection: ToolConnection
    cursor_argument: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., input_schema_json: _Optional[str] = ..., provider_scopes: _Optional[_Iterable[str]] = ..., destructive: _Optional[bool] = ..., output_trust: _Optional[_Union[_connection_pb2.OutputTrust, str]] = ..., connection: _Optional[_Union[ToolConnection, _Mapping]] = ..., cursor_argument: _Optional[str] = ...) -> None: ...

class ToolConnection(_message.Message):
    __slots__ = ("state", "connected_account", "connect_url")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CONNECT_URL_FIELD_NUMBER: _ClassVar[int]
    state: ToolConnectionState
    connected_account: str
    connect_url: str
    def __init__(self, state: _Optional[_Union[ToolConnectionState, str]] = ..., connected_account: _Optional[str] = ..., connect_url: _Optional[str] = ...) -> None: ...

class ExecuteToolRequest(_message.Message):
    __slots__ = ("tool", "arguments", "connected_account", "request_id", "timeout")
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    tool: str
    arguments: _struct_pb2.Struct
    connected_account: str
    request_id: str
    timeout: _duration_pb2.Duration
    def __init__(self, tool: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., connected_account: _Optional[str] = ..., request_id: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ExecuteToolResponse(_message.Message):
    __slots__ = ("accepted", "credential_refreshed", "retry_scheduled", "output_chunk", "result", "error", "confirmation_required")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_REFRESHED_FIELD_NUMBER: _ClassVar[int]
    RETRY_SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    accepted: ToolCallAccepted
    credential_refreshed: CredentialRefreshed
    retry_scheduled: RetryScheduled
    output_chunk: OutputChunk
    result: ToolResult
    error: ToolError
    confirmation_required: ConfirmationRequired
    def __init__(self, accepted: _Optional[_Union[ToolCallAccepted, _Mapping]] = ..., credential_refreshed: _Optional[_Union[CredentialRefreshed, _Mapping]] = ..., retry_scheduled: _Optional[_Union[RetryScheduled, _Mapping]] = ..., output_chunk: _Optional[_Union[OutputChunk, _Mapping]] = ..., result: _Optional[_Union[ToolResult, _Mapping]] = ..., error: _Optional[_Union[ToolError, _Mapping]] = ..., confirmation_required: _Optional[_Union[ConfirmationRequired, _Mapping]] = ...) -> None: ...

class ConfirmationRequired(_message.Message):
    __slots__ = ("confirmation", "summary", "expire_time")
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    confirmation: str
    summary: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, confirmation: _Optional[str] = ..., summary: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ToolCallAccepted(_message.Message):
    __slots__ = ("action_id", "connected_account", "replayed")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    connected_account: str
    replayed: bool
    def __init__(self, action_id: _Optional[str] = ..., connected_account: _Optional[str] = ..., replayed: _Optional[bool] = ...) -> None: ...

class CredentialRefreshed(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetryScheduled(_message.Message):
    __slots__ = ("delay", "reason", "attempt")
    DELAY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    delay: _duration_pb2.Duration
    reason: str
    attempt: int
    def __init__(self, delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class OutputChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ToolResult(_message.Message):
    __slots__ = ("data", "upstream_status", "output_trust", "chunked", "content_type", "next_cursor")
    DATA_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUST_FIELD_NUMBER: _ClassVar[int]
    CHUNKED_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    data: _struct_pb2.Value
    upstream_status: int
    output_trust: _connection_pb2.OutputTrust
    chunked: bool
    content_type: str
    next_cursor: str
    def __init__(self, data: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., upstream_status: _Optional[int] = ..., output_trust: _Optional[_Union[_connection_pb2.OutputTrust, str]] = ..., chunked: _Optional[bool] = ..., content_type: _Optional[str] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class ToolError(_message.Message):
    __slots__ = ("code", "reason", "message", "retryable", "retry_after", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    code: ToolErrorCode
    reason: str
    message: str
    retryable: bool
    retry_after: _duration_pb2.Duration
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[_Union[ToolErrorCode, str]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ConfirmActionRequest(_message.Message):
    __slots__ = ("name", "approver", "approve", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    approver: str
    approve: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., approver: _Optional[str] = ..., approve: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class GetToolConfirmationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetToolConfirmationResponse(_message.Message):
    __slots__ = ("confirmation",)
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    confirmation: ToolConfirmation
    def __init__(self, confirmation: _Optional[_Union[ToolConfirmation, _Mapping]] = ...) -> None: ...

class ConfirmActionResponse(_message.Message):
    __slots__ = ("confirmation",)
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    confirmation: ToolConfirmation
    def __init__(self, confirmation: _Optional[_Union[ToolConfirmation, _Mapping]] = ...) -> None: ...

class ToolConfirmation(_message.Message):
    __slots__ = ("name", "tool", "summary", "principal", "actor", "state", "approver", "reason", "create_time", "expire_time", "decide_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    tool: str
    summary: str
    principal: str
    actor: str
    state: ToolConfirmationState
    approver: str
    reason: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    decide_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., tool: _Optional[str] = ..., summary: _Optional[str] = ..., principal: _Optional[str] = ..., actor: _Optional[str] = ..., state: _Optional[_Union[ToolConfirmationState, str]] = ..., approver: _Optional[str] = ..., reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
