"""Certificates for TLS tests, made with ``cryptography``: a CA, a server certificate for
localhost, a client certificate (CN "deployer") and one from an untrusted CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Issued:
    key: bytes
    cert: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    cn: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name] | None, *, ca=False, server=False
):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    signer_key, issuer_name = issuer if issuer else (key, _name(cn))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(signer_key, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, cert, Issued(pem_key, cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued
    dir: Path


def make_pki(d: Path) -> Pki:
    ca_key, ca_cert, ca = _issue("test CA", None, ca=True)
    _, _, server = _issue("localhost", (ca_key, ca_cert.subject), server=True)
    _, _, client = _issue("deployer", (ca_key, ca_cert.subject))
    other_key, other_cert, _ = _issue("other CA", None, ca=True)
    _, _, stranger = _issue("deployer", (other_key, other_cert.subject))
    for name, item in [("ca", ca), ("server", server), ("client", client)]:
        (d / f"{name}.pem").write_bytes(item.cert)
        (d / f"{name}.key").write_bytes(item.key)
    return Pki(ca, server, client, stranger, d)
