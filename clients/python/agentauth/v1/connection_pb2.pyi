import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectorAuthType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECTOR_AUTH_TYPE_UNSPECIFIED: _ClassVar[ConnectorAuthType]
    CONNECTOR_AUTH_TYPE_OAUTH2: _ClassVar[ConnectorAuthType]
    CONNECTOR_AUTH_TYPE_API_KEY: _ClassVar[ConnectorAuthType]
    CONNECTOR_AUTH_TYPE_DEVELOPER_SECRET: _ClassVar[ConnectorAuthType]
    CONNECTOR_AUTH_TYPE_SERVICE_ACCOUNT: _ClassVar[ConnectorAuthType]
    CONNECTOR_AUTH_TYPE_KEY_PAIR_JWT: _ClassVar[ConnectorAuthType]

class OutputTrust(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_TRUST_UNSPECIFIED: _ClassVar[OutputTrust]
    OUTPUT_TRUST_TRUSTED: _ClassVar[OutputTrust]
    OUTPUT_TRUST_UNTRUSTED: _ClassVar[OutputTrust]

class CredentialSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDENTIAL_SOURCE_UNSPECIFIED: _ClassVar[CredentialSource]
    CREDENTIAL_SOURCE_NONE: _ClassVar[CredentialSource]
    CREDENTIAL_SOURCE_DEPLOYMENT: _ClassVar[CredentialSource]
    CREDENTIAL_SOURCE_ORGANIZATION: _ClassVar[CredentialSource]

class ConnectedAccountState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECTED_ACCOUNT_STATE_UNSPECIFIED: _ClassVar[ConnectedAccountState]
    CONNECTED_ACCOUNT_STATE_PENDING: _ClassVar[ConnectedAccountState]
    CONNECTED_ACCOUNT_STATE_ACTIVE: _ClassVar[ConnectedAccountState]
    CONNECTED_ACCOUNT_STATE_EXPIRED: _ClassVar[ConnectedAccountState]
    CONNECTED_ACCOUNT_STATE_REVOKED: _ClassVar[ConnectedAccountState]
    CONNECTED_ACCOUNT_STATE_ERROR: _ClassVar[ConnectedAccountState]
CONNECTOR_AUTH_TYPE_UNSPECIFIED: ConnectorAuthType
CONNECTOR_AUTH_TYPE_OAUTH2: ConnectorAuthType
CONNECTOR_AUTH_TYPE_API_KEY: ConnectorAuthType
CONNECTOR_AUTH_TYPE_DEVELOPER_SECRET: ConnectorAuthType
CONNECTOR_AUTH_TYPE_SERVICE_ACCOUNT: ConnectorAuthType
CONNECTOR_AUTH_TYPE_KEY_PAIR_JWT: ConnectorAuthType
OUTPUT_TRUST_UNSPECIFIED: OutputTrust
OUTPUT_TRUST_TRUSTED: OutputTrust
OUTPUT_TRUST_UNTRUSTED: OutputTrust
CREDENTIAL_SOURCE_UNSPECIFIED: CredentialSource
CREDENTIAL_SOURCE_NONE: CredentialSource
CREDENTIAL_SOURCE_DEPLOYMENT: CredentialSource
CREDENTIAL_SOURCE_ORGANIZATION: CredentialSource
CONNECTED_ACCOUNT_STATE_UNSPECIFIED: ConnectedAccountState
CONNECTED_ACCOUNT_STATE_PENDING: ConnectedAccountState
CONNECTED_ACCOUNT_STATE_ACTIVE: ConnectedAccountState
CONNECTED_ACCOUNT_STATE_EXPIRED: ConnectedAccountState
CONNECTED_ACCOUNT_STATE_REVOKED: ConnectedAccountState
CONNECTED_ACCOUNT_STATE_ERROR: ConnectedAccountState

class ConnectorTool(_message.Message):
    __slots__ = ("name", "description", "input_schema_json", "scopes", "destructive", "output_trust", "enabled")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    DESTRUCTIVE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUST_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    input_schema_json: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    destructive: bool
    output_trust: OutputTrust
    enabled: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., input_schema_json: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., destructive: _Optional[bool] = ..., output_trust: _Optional[_Union[OutputTrust, str]] = ..., enabled: _Optional[bool] = ...) -> None: ...

class Connector(_message.Message):
    __slots__ = ("name", "display_name", "description", "auth_type", "enabled", "tools", "oauth_app_source", "connection_params")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    OAUTH_APP_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_PARAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    auth_type: ConnectorAuthType
    enabled: bool
    tools: _containers.RepeatedCompositeFieldContainer[ConnectorTool]
    oauth_app_source: CredentialSource
    connection_params: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., auth_type: _Optional[_Union[ConnectorAuthType, str]] = ..., enabled: _Optional[bool] = ..., tools: _Optional[_Iterable[_Union[ConnectorTool, _Mapping]]] = ..., oauth_app_source: _Optional[_Union[CredentialSource, str]] = ..., connection_params: _Optional[_Iterable[str]] = ...) -> None: ...

class ListConnectorsRequest(_message.Message):
    __slots__ = ("parent",)
    PARENT_FIELD_NUMBER: _ClassVar[int]
    parent: str
    def __init__(self, parent: _Optional[str] = ...) -> None: ...

class ListConnectorsResponse(_message.Message):
    __slots__ = ("connectors",)
    CONNECTORS_FIELD_NUMBER: _ClassVar[int]
    connectors: _containers.RepeatedCompositeFieldContainer[Connector]
    def __init__(self, connectors: _Optional[_Iterable[_Union[Connector, _Mapping]]] = ...) -> None: ...

class UpdateConnectorConfigRequest(_message.Message):
    __slots__ = ("name", "enabled", "enabled_tools")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ENABLED_TOOLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    enabled_tools: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., enabled_tools: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateConnectorConfigResponse(_message.Message):
    __slots__ = ("connector",)
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    connector: Connector
    def __init__(self, connector: _Optional[_Union[Connector, _Mapping]] = ...) -> None: ...

class OAuthApp(_message.Message):
    __slots__ = ("name", "client_id", "client_secret", "client_secret_set", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_SET_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    client_id: str
    client_secret: str
    client_secret_set: bool
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., client_secret_set: _Optional[bool] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetOAuthAppRequest(_message.Message):
    __slots__ = ("oauth_app",)
    OAUTH_APP_FIELD_NUMBER: _ClassVar[int]
    oauth_app: OAuthApp
    def __init__(self, oauth_app: _Optional[_Union[OAuthApp, _Mapping]] = ...) -> None: ...

class SetOAuthAppResponse(_message.Message):
    __slots__ = ("oauth_app",)
    OAUTH_APP_FIELD_NUMBER: _ClassVar[int]
    oauth_app: OAuthApp
    def __init__(self, oauth_app: _Optional[_Union[OAuthApp, _Mapping]] = ...) -> None: ...

class GetOAuthAppRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetOAuthAppResponse(_message.Message):
    __slots__ = ("oauth_app",)
    OAUTH_APP_FIELD_NUMBER: _ClassVar[int]
    oauth_app: OAuthApp
    def __init__(self, oauth_app: _Optional[_Union[OAuthApp, _Mapping]] = ...) -> None: ...

class DeleteOAuthAppRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteOAuthAppResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("requests", "period")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    requests: int
    period: _duration_pb2.Duration
    def __init__(self, requests: _Optional[int] = ..., period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DeveloperSecret(_message.Message):
    __slots__ = ("name", "secret", "secret_hint", "per_user_rate_limit", "create_time", "rotate_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    SECRET_HINT_FIELD_NUMBER: _ClassVar[int]
    PER_USER_RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ROTATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    secret: str
    secret_hint: str
    per_user_rate_limit: RateLimit
    create_time: _timestamp_pb2.Timestamp
    rotate_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., secret: _Optional[str] = ..., secret_hint: _Optional[str] = ..., per_user_rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetDeveloperSecretRequest(_message.Message):
    __slots__ = ("developer_secret",)
    DEVELOPER_SECRET_FIELD_NUMBER: _ClassVar[int]
    developer_secret: DeveloperSecret
    def __init__(self, developer_secret: _Optional[_Union[DeveloperSecret, _Mapping]] = ...) -> None: ...

class SetDeveloperSecretResponse(_message.Message):
    __slots__ = ("developer_secret",)
    DEVELOPER_SECRET_FIELD_NUMBER: _ClassVar[int]
    developer_secret: DeveloperSecret
    def __init__(self, developer_secret: _Optional[_Union[DeveloperSecret, _Mapping]] = ...) -> None: ...

class GetDeveloperSecretRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDeveloperSecretResponse(_message.Message):
    __slots__ = ("developer_secret",)
    DEVELOPER_SECRET_FIELD_NUMBER: _ClassVar[int]
    developer_secret: DeveloperSecret
    def __init__(self, developer_secret: _Optional[_Union[DeveloperSecret, _Mapping]] = ...) -> None: ...

class DeleteDeveloperSecretRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteDeveloperSecretResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConnectedAccount(_message.Message):
    __slots__ = ("name", "connector", "owner", "label", "default", "state", "state_reason", "connection_params", "granted_scopes", "provider_metadata", "api_key_hint", "create_time", "update_time", "state_change_time", "last_used_time", "last_refreshed_time", "secret_create_time", "secret_rotate_time", "access_expire_time")
    class ConnectionParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ProviderMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_PARAMS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_SCOPES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_METADATA_FIELD_NUMBER: _ClassVar[int]
    API_KEY_HINT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_REFRESHED_TIME_FIELD_NUMBER: _ClassVar[int]
    SECRET_CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SECRET_ROTATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACCESS_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    connector: str
    owner: str
    label: str
    default: bool
    state: ConnectedAccountState
    state_reason: str
    connection_params: _containers.ScalarMap[str, str]
    granted_scopes: _containers.RepeatedScalarFieldContainer[str]
    provider_metadata: _containers.ScalarMap[str, str]
    api_key_hint: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    state_change_time: _timestamp_pb2.Timestamp
    last_used_time: _timestamp_pb2.Timestamp
    last_refreshed_time: _timestamp_pb2.Timestamp
    secret_create_time: _timestamp_pb2.Timestamp
    secret_rotate_time: _timestamp_pb2.Timestamp
    access_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., connector: _Optional[str] = ..., owner: _Optional[str] = ..., label: _Optional[str] = ..., default: _Optional[bool] = ..., state: _Optional[_Union[ConnectedAccountState, str]] = ..., state_reason: _Optional[str] = ..., connection_params: _Optional[_Mapping[str, str]] = ..., granted_scopes: _Optional[_Iterable[str]] = ..., provider_metadata: _Optional[_Mapping[str, str]] = ..., api_key_hint: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_refreshed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., secret_create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., secret_rotate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., access_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateConnectedAccountRequest(_message.Message):
    __slots__ = ("parent", "connected_account", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    connected_account: ConnectedAccount
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., connected_account: _Optional[_Union[ConnectedAccount, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateConnectedAccountResponse(_message.Message):
    __slots__ = ("connected_account",)
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    connected_account: ConnectedAccount
    def __init__(self, connected_account: _Optional[_Union[ConnectedAccount, _Mapping]] = ...) -> None: ...

class GetConnectedAccountRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetConnectedAccountResponse(_message.Message):
    __slots__ = ("connected_account",)
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    connected_account: ConnectedAccount
    def __init__(self, connected_account: _Optional[_Union[ConnectedAccount, _Mapping]] = ...) -> None: ...

class ListConnectedAccountsRequest(_message.Message):
    __slots__ = ("parent", "owner", "connector", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    owner: str
    connector: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., owner: _Optional[str] = ..., connector: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConnectedAccountsResponse(_message.Message):
    __slots__ = ("connected_accounts", "next_page_token")
    CONNECTED_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    connected_accounts: _containers.RepeatedCompositeFieldContainer[ConnectedAccount]
    next_page_token: str
    def __init__(self, connected_accounts: _Optional[_Iterable[_Union[ConnectedAccount, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateConnectedAccountRequest(_message.Message):
    __slots__ = ("name", "label", "make_default")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    MAKE_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    label: str
    make_default: bool
    def __init__(self, name: _Optional[str] = ..., label: _Optional[str] = ..., make_default: _Optional[bool] = ...) -> None: ...

class UpdateConnectedAccountResponse(_message.Message):
    __slots__ = ("connected_account",)
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    connected_account: ConnectedAccount
    def __init__(self, connected_account: _Optional[_Union[ConnectedAccount, _Mapping]] = ...) -> None: ...

class DeleteConnectedAccountRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteConnectedAccountResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetApiKeyRequest(_message.Message):
    __slots__ = ("name", "api_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    api_key: str
    def __init__(self, name: _Optional[str] = ..., api_key: _Optional[str] = ...) -> None: ...

class SetApiKeyResponse(_message.Message):
    __slots__ = ("connected_account",)
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    connected_account: ConnectedAccount
    def __init__(self, connected_account: _Optional[_Union[ConnectedAccount, _Mapping]] = ...) -> None: ...

class GetAuthorizationLinkRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetAuthorizationLinkResponse(_message.Message):
    __slots__ = ("url", "expire_time")
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    url: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, url: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchConnectedAccountsRequest(_message.Message):
    __slots__ = ("parent", "cursor")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    parent: str
    cursor: str
    def __init__(self, parent: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

class WatchConnectedAccountsResponse(_message.Message):
    __slots__ = ("connected_account", "connector", "state", "state_reason", "deleted", "event_time", "cursor", "synced")
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    SYNCED_FIELD_NUMBER: _ClassVar[int]
    connected_account: str
    connector: str
    state: ConnectedAccountState
    state_reason: str
    deleted: bool
    event_time: _timestamp_pb2.Timestamp
    cursor: str
    synced: bool
    def __init__(self, connected_account: _Optional[str] = ..., connector: _Optional[str] = ..., state: _Optional[_Union[ConnectedAccountState, str]] = ..., state_reason: _Optional[str] = ..., deleted: _Optional[bool] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cursor: _Optional[str] = ..., synced: _Optional[bool] = ...) -> None: ...

class RefreshConnectedAccountRequest(_message.Message):
    __slots__ = ("name", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RefreshConnectedAccountResponse(_message.Message):
    __slots__ = ("connected_account",)
    CONNECTED_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    connected_account: ConnectedAccount
    def __init__(self, connected_account: _Optional[_Union[ConnectedAccount, _Mapping]] = ...) -> None: ...
