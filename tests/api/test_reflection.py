"""Server reflection through the request decoder: on both listeners, bytes that are no
ServerReflectionRequest end the stream INVALID_ARGUMENT (MALFORMED_REQUEST), never UNKNOWN,
after the answers to the requests before them; and reflection keeps answering as grpcurl
asks it."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from porter_bundle.api.servicers import LEGACY_SERVICE, SERVICE
from porter_bundle.config import Settings
from tests.helpers import failure, server_in_thread

INFO = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
LIST = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()


def exchange(channel: grpc.Channel, *requests: bytes) -> tuple[list[bytes], grpc.RpcError | None]:
    """Sends raw request bytes on one stream: the raw answers, and how the stream ended."""
    stream = channel.stream_stream(INFO)(iter(requests), timeout=10)
    answers: list[bytes] = []
    try:
        for answer in stream:
            answers.append(answer)
    except grpc.RpcError as err:
        return answers, err
    return answers, None


def listed(answer: bytes) -> set[str]:
    response = reflection_pb2.ServerReflectionResponse.FromString(answer)
    return {s.name for s in response.list_services_response.service}


@pytest.fixture
def legacy_channel(services) -> Iterator[grpc.Channel]:
    """A server with the legacy listener too, and a channel to that listener."""
    settings = Settings(address="127.0.0.1:0", legacy_address="127.0.0.1:0")
    with (
        server_in_thread(settings, services) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.legacy_port}") as channel,
    ):
        yield channel


@pytest.mark.parametrize("data", ["ff", "0a056162", "3a02fffe"])
def test_undecodable_reflection_request_is_invalid_argument(channel, data):
    f = failure(lambda: list(channel.stream_stream(INFO)(iter([bytes.fromhex(data)]), timeout=10)))
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and f.reason == "MALFORMED_REQUEST", f
    assert "ServerReflectionRequest" in f.message and "class" not in f.message


def test_the_requests_before_a_malformed_one_are_answered(channel):
    answers, error = exchange(channel, LIST, LIST, b"\xff", LIST)
    assert [listed(a) for a in answers] == [listed(answers[0])] * 2
    assert {SERVICE, LEGACY_SERVICE, "grpc.health.v1.Health"} <= listed(answers[0])
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_well_formed_stream_still_ends_ok(channel):
    symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)
    answers, error = exchange(channel, LIST, symbol.SerializeToString())
    assert error is None and len(answers) == 2
    files = reflection_pb2.ServerReflectionResponse.FromString(answers[1])
    assert files.file_descriptor_response.file_descriptor_proto


def test_the_legacy_listener_refuses_them_too(legacy_channel):
    answers, error = exchange(legacy_channel, LIST, b"\xff")
    assert listed(answers[0]) >= {LEGACY_SERVICE} and SERVICE not in listed(answers[0])
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    f = failure(lambda: list(legacy_channel.stream_stream(INFO)(iter([b"\xff"]), timeout=10)))
    assert f.reason == "MALFORMED_REQUEST", f
