"""The baseline: a bare grpc.aio server that answers one method with fixed response bytes.

It does what any grpcio server must do for a call (HTTP/2, framing, the asyncio hop)
and nothing else: no parsing, no database, no serialization. The benchmark captures
the real server's response for a request and serves it from here, so the two differ
only by the work porter-bundle does per call.

Usage: ``python -m bench.bare_server --method /pkg.Service/Method --response FILE
[--address 127.0.0.1:0]``; prints ``bare-grpc listening on port N`` when ready and
serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc


class FixedResponse(grpc.GenericRpcHandler):
    """Answers ``method`` with ``response``, taking requests as raw bytes."""

    def __init__(self, method: str, response: bytes) -> None:
        self._method = method
        self._handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            self._call
        )
        self._response = response

    async def _call(self, request: bytes, context: Any) -> bytes:
        return self._response

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        """The handler of ``method``; None (UNIMPLEMENTED) for anything else."""
        if handler_call_details.method == self._method:
            return self._handler
        return None


async def serve(address: str, method: str, response: bytes) -> None:
    """Serves until SIGTERM/SIGINT, announcing the bound port on stdout."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([FixedResponse(method, response)])
    port = server.add_insecure_port(address)
    await server.start()
    print(f"bare-grpc listening on port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.bare_server", description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--method", required=True)
    parser.add_argument("--response", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.address, args.method, args.response.read_bytes()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
