"""Certificates for the unit tests, made with cryptography: self-signed, one fresh key each unless given."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)


def new_key(kind: str = "ec"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def certificate(hostname: str, key=None, days: int = 90, extra_names: tuple[str, ...] = ()) -> str:
    """A PEM certificate for hostname (and extra_names) signed by its own key (a new P-256 key unless given)."""
    key = key or new_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, hostname)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW)
               .not_valid_after(NOW + datetime.timedelta(days=days))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in (hostname, *extra_names)]), critical=False))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def private_key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
