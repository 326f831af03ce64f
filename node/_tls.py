"""OCPP security profile 2: the TLS certificate a host node makes for its wallbox link.

Theory of operation (DESIGN.md, "OCPP"; OCPP 1.6J security whitepaper, profile 2):
profile 1 sends the charge point's password in HTTP Basic auth, readable by anyone on
the home LAN; profile 2 runs the same WebSocket over TLS, so the wallbox knows it talks
to its own host node and the password travels encrypted. There is no CA at home: `host
init --ocpp-tls` makes an ECDSA P-256 key (written 0600 from its first byte) and a
self-signed certificate naming the OCPP address's host, 127.0.0.1 and localhost, valid
for ten years from the node's clock. The wallbox is told to trust exactly that
certificate: installed as its central system root certificate, or pinned by the SHA-256
fingerprint `host init` prints. The node then serves `wss://HOST:PORT/ocpp/<id>` (TLS 1.2
or later) and still requires each charge point's password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wattshare.protocol import write_private

VALID_FOR = dt.timedelta(days=3650)


def make_certificate(host: str, key_path: Path, cert_path: Path, now: float) -> str:
    """Write a new key (0600) and self-signed certificate for `host`; returns its fingerprint."""
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        own: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        own = x509.DNSName(host)
    loopback = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    names = loopback if own in loopback else [own, *loopback]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"wattshare host node {host}")])
    start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=1)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(start + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return fingerprint(cert_path)


def fingerprint(cert_path: Path) -> str:
    """The certificate's SHA-256 fingerprint, as wallbox setup pages show it (AA:BB:...)."""
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def server_context(key_path: Path, cert_path: Path) -> ssl.SSLContext:
    """The central system's side: this certificate, TLS 1.2 or later."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def client_context(cert_path: Path) -> ssl.SSLContext:
    """A wallbox's side: trust this one certificate and nothing else (the simulated wallbox)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert_path))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
