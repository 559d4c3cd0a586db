"""The server around the service: health, reflection, error mapping and graceful shutdown."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter_bundle import errors
from porter_bundle.api.servicers import SERVICE
from porter_bundle.status import ERROR_DOMAIN, STATUS_CODES, status_code, to_status
from tests.helpers import failure


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def test_every_domain_error_is_mapped():
    unmapped = set(errors.PorterBundleError.__subclasses__()) - set(STATUS_CODES)
    assert not unmapped, f"add these to status.STATUS_CODES: {unmapped}"
    for cls, code in STATUS_CODES.items():
        got_code, status = to_status(cls("message"))
        assert got_code == code and status.message == "message" and status.details
    for cls in all_subclasses(errors.PorterBundleError):
        got_code, status = to_status(cls("message"))
        assert got_code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), cls
        assert status.message == "message" and status.details


def test_a_new_subclass_gets_its_parents_code():
    class StaleSnapshot(errors.Aborted):
        """A domain error nobody listed: its code comes from the class hierarchy."""

    class VeryStale(StaleSnapshot):
        pass

    for cls in (StaleSnapshot, VeryStale):
        code, status = to_status(cls("the snapshot moved", reason="SNAPSHOT_STALE"))
        assert code == grpc.StatusCode.ABORTED == status_code(cls("x"))
        assert status.code == grpc.StatusCode.ABORTED.value[0]
        assert status.message == "the snapshot moved"
    assert status_code(RuntimeError("x")) is None


def test_an_unmapped_domain_error_is_internal_without_its_message(caplog):
    code, status = to_status(errors.PorterBundleError("/etc/secret-path"))
    assert code == grpc.StatusCode.INTERNAL and "secret-path" not in status.message


def test_unexpected_fault_is_internal_without_internals(caplog):
    code, status = to_status(RuntimeError("/etc/secret-path exploded"))
    assert code == grpc.StatusCode.INTERNAL
    assert "secret-path" not in status.message and "incident" in status.message
    assert any("secret-path" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_health_overall_and_per_service(channel):
    health = health_pb2_grpc.HealthStub(channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service=""))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    # This server has no container engine: the service whose actions need one says so
    # (tests/observability/test_health.py has an engine that goes away and comes back).
    resp = health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as err:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_api(channel):
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    [listing] = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in listing.list_services_response.service}
    assert {
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    [found] = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)])
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    service = next(s for f in files for s in f.service if s.name == "PorterBundle")
    assert "ListInstallationRunOutputs" in {m.name for m in service.method}


def test_errors_carry_error_info_with_stable_reason(stub):
    f = failure(stub.GetInstallation, pb.GetInstallationRequest(namespace="dev", name="missing"))
    assert f.code == grpc.StatusCode.NOT_FOUND
    assert (f.domain, f.reason) == (ERROR_DOMAIN, "INSTALLATION_NOT_FOUND")
    assert f.metadata == {"namespace": "dev", "name": "missing"}


def test_missing_resource_in_request_is_invalid_argument(stub):
    f = failure(stub.CreateInstallation, pb.CreateInstallationRequest())
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and "installation" in f.violations


def test_shutdown_reports_not_serving(server, channel):
    health = health_pb2_grpc.HealthStub(channel)
    server.stop(grace=1)
    with grpc.insecure_channel(server.target) as again:
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(again).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    del health


def test_graceful_shutdown_flips_health_to_not_serving_first(server, channel):
    import asyncio

    asyncio.run_coroutine_threadsafe(
        server.running.health.enter_graceful_shutdown(), server.loop
    ).result(10)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
    # Calls in flight during the grace period are still answered.
    assert porter_stub(channel).ListInstallations(pb.ListInstallationsRequest()).total_size == 0


def porter_stub(channel):
    from porter.bundle.v1 import porter_bundle_pb2_grpc

    return porter_bundle_pb2_grpc.PorterBundleStub(channel)


def _backend(services):
    from concurrent.futures import ThreadPoolExecutor

    from porter_bundle.api.servicers import Backend, Calls
    from porter_bundle.auth.audit import AuditLog
    from porter_bundle.service.reveal import RevealService
    from porter_bundle.service.streams import StreamTiming

    timing = StreamTiming(heartbeat_seconds=15.0, recheck_seconds=5.0)
    return Backend(
        services, Calls(ThreadPoolExecutor(1)), RevealService(services, AuditLog()), timing
    )


def test_servicers_implement_every_rpc_exactly_once(services):
    from porter_bundle.api.server import _handlers
    from porter_bundle.api.servicers import SERVICE_DESCRIPTOR, porter_bundle_servicers

    servicers = porter_bundle_servicers(_backend(services))
    names = [name for s in servicers for name in s.rpcs()]
    assert sorted(names) == sorted(m.name for m in SERVICE_DESCRIPTOR.methods)
    assert _handlers(servicers) is not None
    with pytest.raises(ValueError, match="implemented twice"):
        _handlers([*servicers, servicers[0]])
    with pytest.raises(ValueError, match="lack"):
        _handlers(servicers[1:])


def test_one_value_set_servicer_serves_both_kinds(services):
    from porter_bundle.api.servicers import ValueSetServicer

    backend = _backend(services)
    assert set(ValueSetServicer(backend, services.parameter_sets).rpcs()) == {
        "ListParameterSets",
        "GetParameterSet",
        "CreateParameterSet",
        "UpdateParameterSet",
        "DeleteParameterSet",
    }
    assert "GetCredentialSet" in ValueSetServicer(backend, services.credential_sets).rpcs()
