import datetime as dt
import ipaddress
import json
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedgrad.cli.main import main
from fedgrad.errors import ConfigError, DataError
from fedgrad.security import client_name, create_pki, load_identity


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.mark.parametrize("key_type, key_class", [("ec", ec.EllipticCurvePrivateKey), ("rsa", rsa.RSAPrivateKey)])
def test_pki_files_chain_and_permissions(tmp_path, key_type, key_class):
    directory = tmp_path / "pki"
    written = create_pki(directory, hosts=["coord.example", "10.1.2.3"], clients=2, days=30, key_type=key_type)
    names = sorted(path.name for path in written)
    assert names == sorted(f"{n}.{ext}" for n in ("ca", "server", "client-0", "client-1") for ext in ("pem", "key"))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644), path
    ca = _cert(directory / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), (client_name(1), ExtendedKeyUsageOID.CLIENT_AUTH)):
        cert = _cert(directory / f"{name}.pem")
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
        assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=30, minutes=1)
        key = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), password=None)
        assert isinstance(key, key_class)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    san = _cert(directory / "server.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "coord.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.1.2.3")
    ]
    client_subject = _cert(directory / "client-1.pem").subject
    assert client_subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "client-1"


def test_existing_ca_is_reused_to_add_clients(tmp_path):
    create_pki(tmp_path, clients=1)
    ca_before = (tmp_path / "ca.pem").read_bytes()
    client_before = (tmp_path / "client-0.pem").read_bytes()
    written = create_pki(tmp_path, clients=3)
    assert tmp_path / "ca.pem" not in written
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    _cert(tmp_path / "client-2.pem").verify_directly_issued_by(_cert(tmp_path / "ca.pem"))
    assert (tmp_path / "client-0.pem").read_bytes() != client_before  # re-issued by the same CA


def test_broken_or_mismatched_ca_is_a_data_error(tmp_path):
    create_pki(tmp_path / "a")
    create_pki(tmp_path / "b")
    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    with pytest.raises(DataError, match="not the key of"):
        create_pki(tmp_path / "a")
    (tmp_path / "b" / "ca.key").unlink()
    with pytest.raises(DataError, match="cannot read"):
        create_pki(tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "ca.pem").write_text("garbage")
    (tmp_path / "c" / "ca.key").write_text("garbage")
    with pytest.raises(DataError, match="cannot load the CA"):
        create_pki(tmp_path / "c")


@pytest.mark.parametrize("kwargs", [dict(days=0), dict(clients=-1), dict(hosts=["bad host"]),
                                    dict(hosts=["a..b"]), dict(key_type="dsa")])
def test_bad_options_are_config_errors(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        create_pki(tmp_path, **kwargs)
    assert not (tmp_path / "ca.key").exists()


def test_load_identity_reads_the_pem_material(tmp_path):
    create_pki(tmp_path, clients=1)
    identity = load_identity(tmp_path, "client-0")
    assert identity.certificate_chain == (tmp_path / "client-0.pem").read_bytes()
    assert identity.private_key.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert identity.root_certificates == (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(DataError, match="client-7"):
        load_identity(tmp_path, "client-7")


def test_certs_command(tmp_path, capsys):
    assert main(["certs", str(tmp_path / "pki"), "--clients", "1", "--hosts", "node1, 10.0.0.2,", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["files"]) == 6 and all((tmp_path / "pki" / name).exists() for name in ("ca.key", "client-0.pem"))
    san = _cert(tmp_path / "pki" / "server.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "node1" in san.value.get_values_for_type(x509.DNSName)
    assert main(["certs", str(tmp_path / "other"), "--days", "0"]) == 2
    assert "validity" in capsys.readouterr().err
