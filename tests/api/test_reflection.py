"""Server reflection, v1 and v1alpha, through the request decoder: on both listeners, bytes
that are no ServerReflectionRequest end the stream INVALID_ARGUMENT (MALFORMED_REQUEST), never
UNKNOWN, after the answers to the requests before them; and a real reflection client (buf
curl, which asks v1 first) lists and calls the API through it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from porter_bundle.api.servicers import LEGACY_SERVICE, SERVICE
from porter_bundle.config import Settings
from tests.helpers import RpcFailure, failure, server_in_thread

V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
BOTH = pytest.mark.parametrize("info", [V1, V1ALPHA], ids=["v1", "v1alpha"])
BUF = Path(sys.executable).with_name("buf")
LIST = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()


def exchange(
    channel: grpc.Channel, *requests: bytes, info: str = V1
) -> tuple[list[bytes], grpc.RpcError | None]:
    """Sends raw request bytes on one stream: the raw answers, and how the stream ended."""
    stream = channel.stream_stream(info)(iter(requests), timeout=10)
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


def malformed(channel: grpc.Channel, info: str, data: bytes) -> RpcFailure:
    return failure(lambda: list(channel.stream_stream(info)(iter([data]), timeout=10)))


@BOTH
@pytest.mark.parametrize("data", ["ff", "0a056162", "3a02fffe"])
def test_undecodable_reflection_request_is_invalid_argument(channel, info, data):
    f = malformed(channel, info, bytes.fromhex(data))
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT and f.reason == "MALFORMED_REQUEST", f
    assert "ServerReflectionRequest" in f.message and "class" not in f.message


@BOTH
def test_the_requests_before_a_malformed_one_are_answered(channel, info):
    answers, error = exchange(channel, LIST, LIST, b"\xff", LIST, info=info)
    assert [listed(a) for a in answers] == [listed(answers[0])] * 2
    assert listed(answers[0]) == {
        SERVICE,
        LEGACY_SERVICE,
        "grpc.health.v1.Health",
        V1.split("/")[1],
        V1ALPHA.split("/")[1],
    }
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT


@BOTH
def test_a_well_formed_stream_still_ends_ok(channel, info):
    symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)
    answers, error = exchange(channel, LIST, symbol.SerializeToString(), info=info)
    assert error is None and len(answers) == 2
    files = reflection_pb2.ServerReflectionResponse.FromString(answers[1])
    assert files.file_descriptor_response.file_descriptor_proto


@BOTH
def test_the_legacy_listener_refuses_them_too(legacy_channel, info):
    answers, error = exchange(legacy_channel, LIST, b"\xff", info=info)
    assert listed(answers[0]) >= {LEGACY_SERVICE} and SERVICE not in listed(answers[0])
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert malformed(legacy_channel, info, b"\xff").reason == "MALFORMED_REQUEST"


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
def test_a_reflection_client_lists_and_calls_the_api(server, protocol):
    def buf(*args: str) -> str:
        done = subprocess.run(
            [
                str(BUF),
                "curl",
                "--protocol",
                "grpc",
                "--http2-prior-knowledge",
                "--reflect-protocol",
                protocol,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    url = f"http://{server.target}"
    assert SERVICE in buf("--list-services", url).split()
    assert f"{SERVICE}/ListInstallations" in buf("--list-methods", url).split()
    answer = json.loads(buf("-d", '{"namespace": "dev"}', f"{url}/{SERVICE}/ListInstallations"))
    assert answer.get("installations", []) == []
