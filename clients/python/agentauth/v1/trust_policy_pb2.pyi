import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrustPolicyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRUST_POLICY_KIND_UNSPECIFIED: _ClassVar[TrustPolicyKind]
    TRUST_POLICY_KIND_WORKLOAD_TOKEN: _ClassVar[TrustPolicyKind]
    TRUST_POLICY_KIND_PRIVATE_KEY_JWT: _ClassVar[TrustPolicyKind]
TRUST_POLICY_KIND_UNSPECIFIED: TrustPolicyKind
TRUST_POLICY_KIND_WORKLOAD_TOKEN: TrustPolicyKind
TRUST_POLICY_KIND_PRIVATE_KEY_JWT: TrustPolicyKind

class TrustPolicy(_message.Message):
    __slots__ = ("name", "kind", "issuer", "discovery_url", "jwks_json", "audience", "subject", "subject_pattern", "claim_equals", "algorithms", "service_accounts", "scopes", "audiences", "create_time")
    class ClaimEqualsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    DISCOVERY_URL_FIELD_NUMBER: _ClassVar[int]
    JWKS_JSON_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_PATTERN_FIELD_NUMBER: _ClassVar[int]
    CLAIM_EQUALS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: TrustPolicyKind
    issuer: str
    discovery_url: str
    jwks_json: str
    audience: str
    subject: str
    subject_pattern: str
    claim_equals: _containers.ScalarMap[str, str]
    algorithms: _containers.RepeatedScalarFieldContainer[str]
    service_accounts: _containers.RepeatedScalarFieldContainer[str]
    scopes: _containers.RepeatedScalarFieldContainer[str]
    audiences: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[TrustPolicyKind, str]] = ..., issuer: _Optional[str] = ..., discovery_url: _Optional[str] = ..., jwks_json: _Optional[str] = ..., audience: _Optional[str] = ..., subject: _Optional[str] = ..., subject_pattern: _Optional[str] = ..., claim_equals: _Optional[_Mapping[str, str]] = ..., algorithms: _Optional[_Iterable[str]] = ..., service_accounts: _Optional[_Iterable[str]] = ..., scopes: _Optional[_Iterable[str]] = ..., audiences: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
