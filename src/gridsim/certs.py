"""``gridsim certs``: a private CA and the certificates a TLS broker (``mqtts://``) and its clients need.

Writes into one folder: ``ca.crt`` / ``ca.key`` (the authority, 10 years), ``server.crt`` / ``server.key``
(for the broker, valid for the host names given plus localhost and 127.0.0.1) and ``client.crt`` /
``client.key`` (for services when the broker asks for client certificates). Keys are 0600. Mosquitto:
``cafile``, ``certfile``, ``keyfile``; gridsim: ``GRIDSIM_MQTT__CA_FILE`` (and ``__CERT_FILE``,
``__KEY_FILE``) with a ``mqtts://`` URL.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridsim.credentials import write_private

__all__ = ["generate_certificates"]

_VALID = timedelta(days=3650)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gridsim"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alt_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    usage: x509.ObjectIdentifier,
    hosts: Sequence[str] = (),
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if hosts:
        builder = builder.add_extension(_alt_names(hosts), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def generate_certificates(target: Path, hosts: Sequence[str] = ("mosquitto",)) -> list[Path]:
    """Write a CA, a server certificate for ``hosts`` and a client certificate into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = _key()
    ca_name = _name("gridsim CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key, client_key = _key(), _key()
    server = _issue(
        "gridsim broker", server_key, ca_name, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=hosts
    )
    client = _issue("gridsim client", client_key, ca_name, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    written = []
    for name, cert, key in (
        ("ca", ca, ca_key),
        ("server", server, server_key),
        ("client", client, client_key),
    ):
        cert_path = target / f"{name}.crt"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        cert_path.chmod(0o644)
        write_private(target / f"{name}.key", _pem_key(key))
        written += [cert_path, target / f"{name}.key"]
    return written
