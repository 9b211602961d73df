"""gRPC server reflection under ``grpc.reflection.v1`` as well as ``v1alpha``.

grpcio-reflection serves only ``grpc.reflection.v1alpha.ServerReflection``; clients
that speak the stable ``grpc.reflection.v1`` (buf curl tries it first, newer grpcurl
and Postman too) would see no services. The two versions are the same messages with
the same field numbers in another package, so the bytes on the wire are identical:
the v1 service is the v1alpha servicer behind a second method path, and its schema
is derived from v1alpha's descriptor (package renamed) rather than kept as a copy.
The derived file is registered in the default descriptor pool, so reflection can
describe the v1 service like any other.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

PACKAGE = "grpc.reflection.v1"
SERVICE_NAME = f"{PACKAGE}.ServerReflection"
METHOD = f"/{SERVICE_NAME}/ServerReflectionInfo"
FILE_NAME = "grpc/reflection/v1/reflection.proto"


def _renamed(type_name: str) -> str:
    old = f".{v1alpha.DESCRIPTOR.package}."
    return f".{PACKAGE}." + type_name[len(old) :] if type_name.startswith(old) else type_name


def _rename_types(message: descriptor_pb2.DescriptorProto) -> None:
    for field in message.field:
        if field.type_name:
            field.type_name = _renamed(field.type_name)
    for nested in message.nested_type:
        _rename_types(nested)


def _v1_file() -> FileDescriptor:
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(FILE_NAME)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(proto)
    proto.name = FILE_NAME
    proto.package = PACKAGE
    proto.ClearField("options")  # language package options named the v1alpha package
    for message in proto.message_type:
        _rename_types(message)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type)
            method.output_type = _renamed(method.output_type)
    pool.Add(proto)
    return pool.FindFileByName(FILE_NAME)


DESCRIPTOR = _v1_file()
#: The v1 messages, for clients (tests) that speak v1.
ServerReflectionRequest: Any = message_factory.GetMessageClass(
    DESCRIPTOR.message_types_by_name["ServerReflectionRequest"]
)
ServerReflectionResponse: Any = message_factory.GetMessageClass(
    DESCRIPTOR.message_types_by_name["ServerReflectionResponse"]
)


def add_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    """Serve ``servicer`` (a v1alpha reflection servicer) under the v1 service name too."""
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=v1alpha.ServerReflectionRequest.FromString,
        response_serializer=v1alpha.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, {"ServerReflectionInfo": handler}),)
    )
