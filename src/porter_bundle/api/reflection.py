"""Server reflection's two names: ``grpc.reflection.v1alpha`` (the only one grpcio-reflection
ships) and ``grpc.reflection.v1``, its stable successor that grpcurl and buf curl ask first.
The two protos are the same messages field for field under another package, so v1's
descriptor is v1alpha's renamed (added to the default pool, where reflection finds it) and one
servicer answers both."""

from __future__ import annotations

from typing import cast

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc_reflection.v1alpha import reflection_pb2

V1ALPHA_DESCRIPTOR = cast(
    ServiceDescriptor, reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
)
V1_PACKAGE = "grpc.reflection.v1"


def _v1_descriptor() -> ServiceDescriptor:
    pool = descriptor_pool.Default()
    name = f"{V1_PACKAGE}.ServerReflection"
    try:
        return pool.FindServiceByName(name)
    except KeyError:
        pass
    old, new = f".{reflection_pb2.DESCRIPTOR.package}.", f".{V1_PACKAGE}."
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = "grpc/reflection/v1/reflection.proto", V1_PACKAGE
    proto.ClearField("options")  # v1alpha's are deprecated and name its Java/Go packages
    for message in proto.message_type:  # none has nested types
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.AddSerializedFile(proto.SerializeToString())
    return pool.FindServiceByName(name)


V1_DESCRIPTOR = _v1_descriptor()

__all__ = ["V1ALPHA_DESCRIPTOR", "V1_DESCRIPTOR"]
