"""A hostile client: a seeded, bounded, reflection-driven fuzzer of both gRPC services.

Every method of porter.bundle.v1.PorterBundle and porter.v1alpha1.Porter (and of the health
and server reflection services beside them) is found from the service descriptors, and each case sends it one request over a real channel, as raw bytes:
random bytes, a generated message (strings with NUL or huge, JSON/YAML text with lone
surrogates and NaN, tampered page tokens, Values that are NaN or nest deeply, extreme numbers)
or such a message mutated on the wire (bytes flipped, cut short, invalid UTF-8 spliced in).
A case fails when the server answers UNKNOWN, INTERNAL or RESOURCE_EXHAUSTED (an error too
large for grpcio), or a unary call does not answer within its deadline. Case ``i`` of seed
``s`` is generated from ``random.Random(f"{s}:{i}")`` alone, so each failure replays alone.

``make fuzz FUZZ_CASES=20000 FUZZ_SEED=7`` runs it against a server of its own
(``python -m tests.fuzz``); tests/api/test_fuzz.py runs a few hundred cases in ``make test``.

A little over 400 lines: the generators of hostile values and the runner belong together, so a
case stays readable (and replayable) from one file.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from porter_bundle.api.server import HEALTH_DESCRIPTOR, REFLECTION_DESCRIPTORS
from porter_bundle.api.servicers import LEGACY_SERVICE_DESCRIPTOR, SERVICE_DESCRIPTOR

SERVICES: tuple[ServiceDescriptor, ...] = (
    SERVICE_DESCRIPTOR,
    LEGACY_SERVICE_DESCRIPTOR,
    HEALTH_DESCRIPTOR,
    *REFLECTION_DESCRIPTORS,
)
FAILING = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED}
UNARY_DEADLINE = 10.0
"""Seconds a unary call may take before it counts as a hang."""
STREAM_DEADLINE = 0.3
"""Seconds a stream is read: live streams (follow) legitimately outlast it."""
MAX_STREAM_MESSAGES = 20

NAMESPACES = ["", "fz", "dev"]
NAMES = ["app", "creds", "params", "missing"]
"""Addresses the seeded resources use, so generated requests reach them."""


@dataclass(frozen=True)
class Method:
    """One RPC: its path, request type, whether it streams responses, and requests
    (reflection's bidirectional stream: the case's bytes are its one request)."""

    path: str
    request: type[Message]
    streaming: bool
    client_streaming: bool = False


def methods() -> list[Method]:
    """Every method of both services, from their descriptors."""
    return [
        Method(
            f"/{service.full_name}/{m.name}",
            message_factory.GetMessageClass(m.input_type),
            m.server_streaming,
            m.client_streaming,
        )
        for service in SERVICES
        for m in service.methods
    ]


# --- generating requests ------------------------------------------------------------------

SURROGATE_JSON = [
    '{"a":"\\ud800"}',
    '{"labels":{"a":"\\ud800"}}',
    '"\\udfff"',
    '{"\\ud800":1}',
    '{"x":NaN,"y":Infinity,"z":-Infinity}',
    "[" * 200 + "]" * 200,
]


def bundle_text(rng: random.Random) -> str:
    """A bundle.json, valid or not: odd descriptions, bad definitions, NaN, deep nesting."""
    doc: dict[str, Any] = {
        "schemaVersion": "v1.0.0",
        "name": rng.choice(["fz", "x", ""]),
        "version": rng.choice(["1.0.0", "0.1.2", "bad"]),
        "invocationImages": [{"imageType": "docker", "image": "localhost/fz:v1"}],
    }
    definition = rng.choice(
        [
            {"type": "string", "pattern": "(["},
            {"$ref": "#/nope"},
            {"type": "strin"},
            {"type": "number", "maximum": 10},
            {"type": "string"},
        ]
    )
    doc["definitions"] = {"d": definition}
    doc["parameters"] = {"p": {"definition": "d", "destination": {"env": "P"}}}
    text = json.dumps(doc)
    trick = rng.randrange(4)
    if trick == 0:
        text = text.replace('"version"', '"description": "\\ud800", "version"')
    elif trick == 1:
        text = text.replace('"version"', '"custom": {"n": NaN}, "version"')
    return text


def document_text(rng: random.Random) -> str:
    """A Porter document (YAML or JSON) with something odd in it."""
    kind = rng.choice(["Installation", "CredentialSet", "ParameterSet", "\\ud800"])
    namespace = rng.choice(["fz", "\\ud800", "a" * 300])
    odd = rng.choice(['"\\ud800"', ".nan", ".inf", '"a\\0b"', "[" * 40 + "]" * 40, "1e999"])
    return (
        f'schemaType: "{kind}"\nschemaVersion: 1.0.1\nnamespace: "{namespace}"\nname: app\n'
        f"labels: {{a: {odd}}}\n"
        f"parameters:\n  - {{name: p, source: {{value: {odd}}}}}\n"
        f"credentials:\n  - {{name: c, source: {{path: {odd}}}}}\n"
        f"bundle: {{repository: localhost/fz, version: 1.0.0}}\n"
    )


def plausible_document(rng: random.Random, request: str) -> str:
    """A valid Porter document for the seeded resources, mostly of the kind ``request``
    (the request message's name, e.g. ApplyInstallationRequest) applies."""
    documents = [
        "schemaType: ParameterSet\nschemaVersion: 1.1.0\nnamespace: fz\nname: params\n"
        "parameters:\n  - {name: log_level, source: {value: 4}}\n",
        "schemaType: CredentialSet\nschemaVersion: 1.0.1\nnamespace: fz\nname: creds\n"
        "credentials:\n  - {name: c, source: {env: HOME}}\n",
        "schemaType: Installation\nschemaVersion: 1.0.2\nnamespace: fz\nname: app\n"
        "bundle: {repository: localhost/fz, version: 1.0.0}\n"
        "parameters: {log_level: 5}\ncredentialSets: [creds]\n",
    ]
    fitting = [d for d in documents if d.split("\n", 1)[0].removeprefix("schemaType: ") in request]
    return rng.choice(fitting if fitting and rng.random() < 0.8 else documents)


def page_token(rng: random.Random) -> str:
    """A page token as the server writes them, tampered."""
    body = {"v": 1, "f": rng.choice(["0" * 16, "\ud800"]), "a": [rng.choice(["\ud800", "x", ""])]}
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as \\ud800
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class CaseRandom(random.Random):
    """The random source of one case, with how hostile its values are (the chance that a
    field gets a hostile value rather than a plausible one)."""

    hostile: float = 0.5


PLAUSIBLE = {
    "namespace": NAMESPACES,
    "name": NAMES,
    "run_id": ["latest", "01J0000000000000000000000Z"],
    "reference": ["localhost/fz:v1.0.0", "localhost/fz:v9"],
    "repository": ["localhost/fz"],
    "version": ["1.0.0", "v1.0.0"],
    "action": ["install", "upgrade", "status", "uninstall"],
    "credential_sets": ["creds"],
    "parameter_sets": ["params"],
    "paths": ["labels", "custom", "parameters", "credential_sets"],
    "env": ["HOME", "FZ_UNSET_X"],
    "page_token": [""],
    "schema_version": ["1.0.1", "1.1.0", "1.0.2"],
    "labels": ["team", "app.kubernetes.io/name"],
}


def text(rng: random.Random, name: str) -> str:
    """A string for a field called ``name``: plausible, or (by the case's hostility) not."""
    roll = rng.random()
    if roll > rng_hostile(rng):
        if name in PLAUSIBLE:
            return rng.choice(PLAUSIBLE[name])
        if name == "bundle_json":
            return bundle_text(rng)
        return rng.choice(["", "fz", "a"])
    roll = rng.random()
    if name == "page_token" and roll < 0.5:
        return page_token(rng)
    if name == "bundle_json" and roll < 0.6:
        return bundle_text(rng)
    if name in ("namespace",) and roll < 0.5:
        return rng.choice(NAMESPACES)
    if name == "name" and roll < 0.5:
        return rng.choice(NAMES)
    return rng.choice(
        [
            "",
            "app",
            "latest",
            "a\x00b",
            "x" * rng.choice([300, 20_000]),
            "../../etc/passwd",
            "ü" * 50,
            "\u202e",
            "installation.custom,labels",
            "-1",
            *SURROGATE_JSON,
        ]
    )


INTS = [0, 1, -1, 2, 7, 100, 501, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]


def number(rng: random.Random, f: FieldDescriptor) -> int | float:
    if rng.random() > rng_hostile(rng):
        return rng.choice([0, 1, 3]) if f.type != f.TYPE_ENUM else rng.choice([0, 1])
    if f.type in (f.TYPE_DOUBLE, f.TYPE_FLOAT):
        return rng.choice([0.0, -1.5, float("nan"), float("inf"), 1e308])
    value = rng.choice(INTS)
    if f.type in (f.TYPE_UINT32, f.TYPE_FIXED32, f.TYPE_UINT64, f.TYPE_FIXED64):
        value = abs(value) % 2**32
    elif f.type in (f.TYPE_INT32, f.TYPE_SINT32, f.TYPE_SFIXED32, f.TYPE_ENUM):
        value = max(-(2**31), min(2**31 - 1, value))
    return value


def value(rng: random.Random, depth: int = 0) -> struct_pb2.Value:
    """A google.protobuf.Value: NaN, Infinity, deep nesting, big lists."""
    out = struct_pb2.Value()
    roll = rng.random()
    if roll < 0.25:
        out.number_value = rng.choice([float("nan"), float("inf"), float("-inf"), 1.0, 3.0])
    elif roll < 0.4:
        out.string_value = text(rng, "value")
    elif roll < 0.5:
        out.bool_value = True
    elif roll < 0.55:
        out.null_value = struct_pb2.NULL_VALUE
    elif roll < 0.7 and depth < 40:  # beyond the decoder's limit of 32 now and then
        inner = out.struct_value.fields[rng.choice(["a", "p", "x"])]
        inner.CopyFrom(value(rng, depth + (1 if rng.random() < 0.3 else 8)))
    else:
        for _ in range(rng.choice([0, 1, 3])):
            out.list_value.values.add().CopyFrom(value(rng, depth + 1))
    return out


def fill(rng: random.Random, message: Message, depth: int = 0) -> Message:
    """Sets a random choice of ``message``'s fields to hostile values."""
    descriptor: Descriptor = message.DESCRIPTOR
    if descriptor.full_name == "google.protobuf.Value":
        message.CopyFrom(value(rng))
        return message
    if descriptor.full_name == "google.protobuf.Struct":
        for key in rng.sample(["x", "p", "log_level", "\x00"], rng.randrange(3)):
            message.fields[key].CopyFrom(value(rng))  # type: ignore[attr-defined]
        return message
    for f in descriptor.fields:
        if rng.random() < 0.6 * rng_hostile(rng) or depth > 6:
            continue
        if f.type == f.TYPE_BYTES and rng.random() > rng_hostile(rng):
            setattr(message, f.name, plausible_document(rng, descriptor.name).encode())
            continue
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key_f, value_f = (
                f.message_type.fields_by_name["key"],
                f.message_type.fields_by_name["value"],
            )
            container = getattr(message, f.name)
            for _ in range(rng.choice([1, 2, 70] if rng.random() < rng_hostile(rng) else [1])):
                k = text(rng, f.name) if key_f.type == key_f.TYPE_STRING else rng.choice(INTS)
                if value_f.message_type is not None:
                    fill(rng, container[k], depth + 1)
                else:
                    container[k] = scalar(rng, value_f)
        elif f.is_repeated:
            container = getattr(message, f.name)
            for _ in range(rng.choice([1, 2, 3, 300] if rng.random() < rng_hostile(rng) else [1])):
                if f.message_type is not None:
                    fill(rng, container.add(), depth + 1)
                else:
                    container.append(scalar(rng, f))
        elif f.message_type is not None:
            fill(rng, getattr(message, f.name), depth + 1)
        else:
            setattr(message, f.name, scalar(rng, f))
    return message


def rng_hostile(rng: random.Random) -> float:
    """The case's hostility (see :class:`CaseRandom`)."""
    return float(getattr(rng, "hostile", 0.5))


def scalar(rng: random.Random, f: FieldDescriptor) -> Any:
    if f.type == f.TYPE_STRING:
        return text(rng, f.name)
    if f.type == f.TYPE_BYTES:
        return (document_text(rng) if rng.random() < 0.7 else text(rng, f.name)).encode(
            "utf-8", "surrogatepass"
        )
    if f.type == f.TYPE_BOOL:
        return rng.random() < rng_hostile(rng)
    return number(rng, f)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """The encoding of a message, damaged."""
    buf = bytearray(data)
    roll = rng.random()
    if roll < 0.3 and buf:
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif roll < 0.5 and buf:
        del buf[rng.randrange(len(buf)) :]
    elif roll < 0.8:  # a length-delimited field (numbers 1-5) of invalid UTF-8
        junk = rng.choice([b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\x80", b"a\x80"])
        buf += bytes([(rng.randint(1, 5) << 3) | 2, len(junk)]) + junk
    else:
        at = rng.randrange(len(buf) + 1)
        buf[at:at] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def case(seed: int, index: int, catalogue: list[Method]) -> tuple[Method, str, bytes]:
    """Case ``index`` of ``seed``: (method, how it was made, request bytes)."""
    rng = CaseRandom(f"{seed}:{index}")
    rng.hostile = rng.choice([0.05, 0.2, 0.6])
    method = rng.choice(catalogue)
    roll = rng.random()
    if roll < 0.15:
        return method, "random", rng.randbytes(rng.choice([0, 1, 4, 64]))
    data = fill(rng, method.request()).SerializeToString()
    if roll < 0.4:
        return method, "mutated", mutate(rng, data)
    return method, "generated", data


# --- running cases ------------------------------------------------------------------------


@dataclass
class Report:
    """What the cases got: codes by count, and each failing case."""

    cases: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        codes = ", ".join(f"{c} {n}" for c, n in sorted(self.codes.items()))
        return f"{self.cases} cases in {self.seconds:.1f} s, {len(self.failures)} failing: {codes}"


def call(channel: grpc.Channel, method: Method, data: bytes) -> tuple[str, str]:
    """Sends one request; (the code's name, its details). A hang reads as "HANG"."""
    try:
        if method.client_streaming:
            stream: Any = channel.stream_stream(method.path)(iter([data]), timeout=UNARY_DEADLINE)
            list(stream)  # the requests end: so does the stream
        elif method.streaming:
            stream = channel.unary_stream(method.path)(data, timeout=STREAM_DEADLINE)
            for i, _ in enumerate(stream):
                if i >= MAX_STREAM_MESSAGES:
                    stream.cancel()
                    break
        else:
            channel.unary_unary(method.path)(data, timeout=UNARY_DEADLINE)
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ("DEADLINE_EXCEEDED", "") if method.streaming else ("HANG", "")
        if code == grpc.StatusCode.CANCELLED and method.streaming:
            return "OK", ""
        return code.name, err.details() or ""  # type: ignore[attr-defined]
    return "OK", ""


def run(target: str, cases: int, seed: int, *, first: int = 0) -> Report:
    """Runs cases ``first`` .. ``first + cases - 1`` of ``seed`` against ``target``."""
    catalogue = methods()
    report = Report()
    started = time.monotonic()
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(target, options=options) as channel:
        for index in range(first, first + cases):
            method, how, data = case(seed, index, catalogue)
            code, details = call(channel, method, data)
            report.cases += 1
            report.codes[code] += 1
            if code in {c.name for c in FAILING} or code == "HANG":
                report.failures.append(
                    f"seed {seed} case {index}: {method.path} ({how}, {len(data)} bytes) -> "
                    f"{code}: {details[:200]} request={data[:80].hex()}"
                )
    report.seconds = time.monotonic() - started
    return report


def iter_cases(seed: int, count: int) -> Iterator[tuple[Method, str, bytes]]:
    """The cases of ``seed`` without running them (to replay or inspect one)."""
    catalogue = methods()
    for i in range(count):
        yield case(seed, i, catalogue)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.fuzz --cases N --seed S``: a server of its own, then the cases."""
    from tests.fuzz_server import fuzz_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--first", type=int, default=0, help="the index of the first case")
    args = parser.parse_args(argv)
    with fuzz_server() as target:
        report = run(target, args.cases, args.seed, first=args.first)
    for line in report.failures:
        print(line)
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
