"""A private certificate authority for one federation: TLS for the gRPC channel, optionally mutual.

``create_pki(directory, hosts=..., clients=N)`` writes::

    ca.pem       ca.key          the federation's CA (self-signed, may sign leaf certificates only)
    server.pem   server.key      the coordinator: serverAuth; SAN localhost, 127.0.0.1, ::1 and ``hosts``
    client-0.pem client-0.key    one per client for mutual TLS: clientAuth, common name = the client's name
    ...

Certificates are PEM, world-readable; private keys are unencrypted PKCS#8 PEM with mode 600 (the processes
that use them start unattended, so there is no one to type a passphrase; file permissions are the protection).
Running it again on a directory that already holds ``ca.pem``/``ca.key`` reuses that CA, so more clients can be
added to a running federation without re-issuing everyone's certificates.

Nothing here imports gRPC: ``load_identity`` returns the PEM bytes that ``grpc.ssl_server_credentials`` and
``grpc.ssl_channel_credentials`` take. A coordinator using mutual TLS can read the client's name from
``context.auth_context()["x509_common_name"]``.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedgrad.errors import ConfigError, DataError
from fedgrad.files import PRIVATE_MODE, PUBLIC_MODE, write_atomic

KeyType = Literal["ec", "rsa"]
KEY_TYPES: tuple[str, ...] = ("ec", "rsa")
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

CA_NAME = "ca"
SERVER_NAME = "server"
LOCAL_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_CLOCK_SKEW = dt.timedelta(minutes=5)


def client_name(index: int) -> str:
    """Name (file stem and certificate common name) of the ``index``-th client."""
    return f"client-{index}"


def cert_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}.pem"


def key_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}.key"


@dataclass(frozen=True)
class TlsIdentity:
    """PEM bytes one endpoint needs: its own certificate and key, and the CA it trusts for the peer."""

    certificate_chain: bytes
    private_key: bytes
    root_certificates: bytes


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ConfigError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def _subject_alt_name(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in dict.fromkeys((*LOCAL_NAMES, *hosts)):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if len(host) > 253 or not _HOSTNAME.match(host):
                raise ConfigError(f"not a valid host name or IP address for the server certificate: {host!r}") from None
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _key_usage(key: PrivateKey, *, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=not ca and isinstance(key, rsa.RSAPrivateKey),  # RSA key transport (TLS 1.2)
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    common_name: str,
    key: PrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: PrivateKey,
    days: int,
    *,
    usage: x509.ObjectIdentifier | None = None,
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    """Sign a certificate for ``key``; ``issuer=None`` makes a self-signed CA, otherwise a leaf for ``usage``."""
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedgrad"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True)
        .add_extension(_key_usage(key, ca=is_ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(directory: Path, name: str, cert: x509.Certificate, key: PrivateKey) -> list[Path]:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(key_path(directory, name), key_pem, PRIVATE_MODE)
    write_atomic(cert_path(directory, name), cert.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)
    return [cert_path(directory, name), key_path(directory, name)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def _load_ca(directory: Path) -> tuple[x509.Certificate, PrivateKey]:
    ca_file, ca_key_file = cert_path(directory, CA_NAME), key_path(directory, CA_NAME)
    try:
        cert = x509.load_pem_x509_certificate(_read(ca_file))
        key = serialization.load_pem_private_key(_read(ca_key_file), password=None)
    except ValueError as exc:
        raise DataError(f"cannot load the CA from {directory}: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise DataError(f"{ca_key_file}: unsupported key type {type(key).__name__}")
    cert_key = cert.public_key()
    if (not isinstance(cert_key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey))
            or cert_key.public_numbers() != key.public_key().public_numbers()):
        raise DataError(f"{ca_key_file} is not the key of {ca_file}")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise DataError(f"{ca_file} is not a CA certificate")
    return cert, key


def create_pki(
    directory: Path | str,
    *,
    hosts: Sequence[str] = (),
    clients: int = 0,
    days: int = 365,
    key_type: KeyType = "ec",
) -> list[Path]:
    """Create (or reuse) the CA in ``directory`` and issue the server and ``clients`` client certificates.

    ``hosts`` are extra names or IP addresses the coordinator is reached by, added to the server certificate
    next to localhost/127.0.0.1/::1. Keys are EC P-256 (``"ec"``) or RSA 2048 (``"rsa"``); certificates are
    valid for ``days`` days. Returns the paths written, certificates before keys.
    """
    if days < 1:
        raise ConfigError(f"certificate validity must be at least 1 day, got {days}")
    if clients < 0:
        raise ConfigError(f"number of client certificates must be non-negative, got {clients}")
    if key_type not in KEY_TYPES:
        raise ConfigError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")
    san = _subject_alt_name(hosts)
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: list[Path] = []
    if cert_path(directory, CA_NAME).exists() or key_path(directory, CA_NAME).exists():
        ca_cert, ca_key = _load_ca(directory)
    else:
        ca_key = _new_key(key_type)
        ca_cert = _issue("fedgrad federation CA", ca_key, None, ca_key, days)
        written += _write_pair(directory, CA_NAME, ca_cert, ca_key)

    server_key = _new_key(key_type)
    server_cert = _issue("fedgrad coordinator", server_key, ca_cert, ca_key, days,
                         usage=ExtendedKeyUsageOID.SERVER_AUTH, san=san)
    written += _write_pair(directory, SERVER_NAME, server_cert, server_key)
    for index in range(clients):
        client_key = _new_key(key_type)
        client_cert = _issue(client_name(index), client_key, ca_cert, ca_key, days,
                             usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        written += _write_pair(directory, client_name(index), client_cert, client_key)
    return written


def load_identity(directory: Path | str, name: str) -> TlsIdentity:
    """PEM material of ``name`` (``"server"`` or ``client_name(i)``) and of the CA, from ``directory``."""
    directory = Path(directory)
    return TlsIdentity(
        certificate_chain=_read(cert_path(directory, name)),
        private_key=_read(key_path(directory, name)),
        root_certificates=_read(cert_path(directory, CA_NAME)),
    )


def certificate_fingerprint(pem: bytes) -> str:
    """Hex SHA-256 of a PEM certificate's DER encoding (what a run policy pins); :class:`DataError` if malformed."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise DataError("not a PEM certificate") from None
    return cert.fingerprint(hashes.SHA256()).hex()


def load_root_certificates(directory: Path | str) -> bytes:
    """The CA certificate alone: all a client needs for server-authenticated (not mutual) TLS."""
    return _read(cert_path(Path(directory), CA_NAME))
