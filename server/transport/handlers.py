"""The gRPC handler tables: method names → servicer methods, with their (de)serializers.

Tensor-carrying requests are read by wire.py (zero-copy) instead of protobuf's parser."""
from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from poolscore.server.transport import wire
from poolscore.server.transport.oip import SERVICE as OIP_SERVICE, InferenceServicer
from poolscore.server.transport.poolscorer import PoolScorer
from poolscore.v1 import scoring_pb2 as pb
from poolscore.v1.oip import inference_pb2 as oip

SERVICE = pb.DESCRIPTOR.services_by_name["PoolScorer"].full_name


def _out(message) -> bytes:
    return message.SerializeToString()


def poolscorer(s: PoolScorer) -> grpc.GenericRpcHandler:
    unary = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler(SERVICE, {
        "ScorePool": grpc.stream_unary_rpc_method_handler(s.ScorePool, wire.score_request, _out),
        "Score": grpc.stream_stream_rpc_method_handler(s.Score, wire.score_request, _out),
        "ScoreBatch": unary(s.ScoreBatch, wire.score_batch_request, _out),
        "CreateSession": unary(s.CreateSession, wire.message(pb.CreateSessionRequest), _out),
        "GetSession": unary(s.GetSession, wire.message(pb.SessionRef), _out),
        "GetTopK": unary(s.GetTopK, wire.message(pb.SessionRef), _out),
        "DeleteSession": unary(s.DeleteSession, wire.message(pb.SessionRef), _out),
        "ServerInfo": unary(s.ServerInfo, wire.message(pb.ServerInfoRequest), _out),
        "ReloadModels": unary(s.ReloadModels, wire.message(pb.ReloadModelsRequest), _out),
        "RegisterSharedMemory": unary(s.RegisterSharedMemory, wire.message(pb.RegisterSharedMemoryRequest), _out),
        "UnregisterSharedMemory": unary(s.UnregisterSharedMemory, wire.message(pb.UnregisterSharedMemoryRequest), _out),
        "SharedMemoryStatus": unary(s.SharedMemoryStatus, wire.message(pb.SharedMemoryStatusRequest), _out),
    })


def inference(s: InferenceServicer) -> grpc.GenericRpcHandler:
    calls = {"ServerLive": oip.ServerLiveRequest, "ServerReady": oip.ServerReadyRequest,
             "ModelReady": oip.ModelReadyRequest, "ServerMetadata": oip.ServerMetadataRequest,
             "ModelMetadata": oip.ModelMetadataRequest, "ModelInfer": oip.ModelInferRequest,
             "ModelConfig": oip.ModelConfigRequest, "RepositoryIndex": oip.RepositoryIndexRequest,
             "ModelStatistics": oip.ModelStatisticsRequest}
    return grpc.method_handlers_generic_handler(OIP_SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(getattr(s, name), wire.message(req), _out) for name, req in calls.items()})


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def enable_reflection(server: grpc.Server, services: list[str]) -> None:
    """Server reflection under both names tools ask for: v1alpha (grpcio-reflection's) and v1,
    whose messages are the same fields under a new package, so v1 is the same servicer behind
    v1's method path. Each lists every served service, OIP's included, from a pool of our own
    (see _reflected)."""
    names = [*services, reflection.SERVICE_NAME, REFLECTION_V1]
    servicer = reflection.ReflectionServicer(names, pool=_reflected())
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(reflection.SERVICE_NAME, {"ServerReflectionInfo": _reflection(servicer)}),
        grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": _reflection(servicer)})))


def _reflection(servicer) -> grpc.RpcMethodHandler:
    return grpc.stream_stream_rpc_method_handler(servicer.ServerReflectionInfo,
                                                 reflection_pb2.ServerReflectionRequest.FromString, _out)


def _reflected() -> descriptor_pool.DescriptorPool:
    """The descriptors reflection answers from. The OIP messages live in our package
    (poolscore.v1.oip, so tritonclient's own definitions load beside them), but the service is
    served at the protocol's path, inference.GRPCInferenceService: reflection describes it under
    that name, with its messages renamed alike (the same fields, so the same wire), so that
    `grpcurl describe inference.GRPCInferenceService` and calls through reflection work."""
    pool = descriptor_pool.DescriptorPool()
    for module in (pb, health_pb2, reflection_pb2):
        _add(pool, module.DESCRIPTOR)
    pool.AddSerializedFile(_renamed(oip.DESCRIPTOR, OIP_SERVICE.rsplit(".", 1)[0]).SerializeToString())
    return pool


def _add(pool: descriptor_pool.DescriptorPool, file) -> None:
    for dependency in file.dependencies:
        _add(pool, dependency)
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.AddSerializedFile(proto.SerializeToString())


def _renamed(file, package: str) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    old, new = f".{proto.package}.", f".{package}."
    proto.package, proto.name = package, f"{package}/grpc_service.proto"

    def retype(messages) -> None:
        for message in messages:
            for f in message.field:
                if f.type_name.startswith(old):
                    f.type_name = new + f.type_name[len(old):]
            retype(message.nested_type)

    retype(proto.message_type)
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old):]
            method.output_type = new + method.output_type[len(old):]
    return proto
