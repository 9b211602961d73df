import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolPolicyRule(_message.Message):
    __slots__ = ("name", "tool", "agents", "groups", "constraints", "confirm", "description", "create_time", "approvers", "approver_groups")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    APPROVER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tool: str
    agents: _containers.RepeatedScalarFieldContainer[str]
    groups: _containers.RepeatedScalarFieldContainer[str]
    constraints: _containers.RepeatedCompositeFieldContainer[ArgumentConstraint]
    confirm: bool
    description: str
    create_time: _timestamp_pb2.Timestamp
    approvers: _containers.RepeatedScalarFieldContainer[str]
    approver_groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., tool: _Optional[str] = ..., agents: _Optional[_Iterable[str]] = ..., groups: _Optional[_Iterable[str]] = ..., constraints: _Optional[_Iterable[_Union[ArgumentConstraint, _Mapping]]] = ..., confirm: _Optional[bool] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., approvers: _Optional[_Iterable[str]] = ..., approver_groups: _Optional[_Iterable[str]] = ...) -> None: ...

class ArgumentConstraint(_message.Message):
    __slots__ = ("value", "allow")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    value: str
    allow: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, value: _Optional[str] = ..., allow: _Optional[_Iterable[str]] = ...) -> None: ...
