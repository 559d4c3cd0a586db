"""Safe defaults: a server without authentication listens on loopback only."""

from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger(__name__)


def is_loopback(address: str) -> bool:
    """Whether ``host:port`` binds a loopback interface only (localhost, 127.0.0.0/8, ::1)."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(address: str, *, authenticated: bool, insecure: bool) -> None:
    """Refuses (ValueError) a non-loopback address without authentication unless ``insecure``."""
    if authenticated or is_loopback(address):
        return
    if not insecure:
        raise ValueError(
            f"refusing to listen on {address} without authentication: give --token-file "
            "(or --tls-client-ca for mutual TLS), listen on a loopback address, or pass "
            "--insecure to serve every caller with every role"
        )
    log.warning(
        "listening on %s WITHOUT AUTHENTICATION (--insecure): every caller may do everything",
        address,
    )
