"""TLS for the server: its certificate and key, and for mutual TLS the CA of client certificates.

With a client CA, every client must present a certificate that CA signed (the handshake
fails otherwise), and the certificate's subject common name is the caller's principal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """Server credentials from PEM files; ``client_ca`` set requires and verifies client certificates."""
    try:
        pair = (Path(key).read_bytes(), Path(cert).read_bytes())
        roots = Path(client_ca).read_bytes() if client_ca else None
    except OSError as exc:
        raise ValueError(f"cannot read a TLS file: {exc}") from None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=roots, require_client_auth=roots is not None
    )


def peer_common_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The subject CN of the client's verified certificate, or None (no mutual TLS)."""
    found = list(context.auth_context().get("x509_common_name") or ())
    if not found:
        return None
    name = found[0]
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)
