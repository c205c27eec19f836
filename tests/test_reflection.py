"""Discoverable: server reflection (v1alpha and v1) lists and describes every served service,
the Open Inference Protocol's included; health answers per service."""
from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as rpb
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from google.protobuf import descriptor_pb2

SERVICES = {"poolscore.v1.PoolScorer", "inference.GRPCInferenceService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}


def ask(channel: grpc.Channel, version: str, **request) -> rpb.ServerReflectionResponse:
    call = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                                 request_serializer=rpb.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=rpb.ServerReflectionResponse.FromString)
    return next(call(iter([rpb.ServerReflectionRequest(**request)]), timeout=10))


def test_both_reflection_versions_list_and_describe_the_inference_service(app) -> None:
    with grpc.insecure_channel(app.target) as channel:
        assert set(ProtoReflectionDescriptorDatabase(channel).get_services()) == SERVICES
        for version in ("v1alpha", "v1"):  # v1 is what current grpcurl and Postman ask first
            listed = ask(channel, version, list_services="")
            assert {s.name for s in listed.list_services_response.service} == SERVICES
            found = ask(channel, version, file_containing_symbol="inference.GRPCInferenceService")
            files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                     for b in found.file_descriptor_response.file_descriptor_proto]
            methods = {m.name for f in files for s in f.service if s.name == "GRPCInferenceService" for m in s.method}
            assert {"ServerLive", "ServerReady", "ModelMetadata", "ModelInfer"} <= methods


def test_health_answers_for_each_served_service(app) -> None:
    with grpc.insecure_channel(app.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "poolscore.v1.PoolScorer", "inference.GRPCInferenceService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == \
                health_pb2.HealthCheckResponse.SERVING
        try:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
            code = None
        except grpc.RpcError as err:
            code = err.code()
        assert code == grpc.StatusCode.NOT_FOUND


def test_a_tool_can_call_the_inference_service_from_reflection_alone(app) -> None:
    """What grpcurl does: types from reflection, nothing compiled in (a fresh descriptor pool)."""
    from google.protobuf import descriptor_pool, message_factory

    with grpc.insecure_channel(app.target) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service = pool.FindServiceByName("inference.GRPCInferenceService")
        method = service.methods_by_name["ModelMetadata"]
        request_type = message_factory.GetMessageClass(method.input_type)
        reply_type = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(f"/{service.full_name}/{method.name}", request_serializer=request_type.SerializeToString,
                                   response_deserializer=reply_type.FromString)
        reply = call(request_type(name="entropy"), timeout=10)
        assert reply.name == "entropy" and [o.name for o in reply.outputs] == ["scores"]
