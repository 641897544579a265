import logging

import pytest

from fedgrad.crypto import (CryptoError, InsecureKeyWarning, generate_keypair, public_key_from_bytes,
                            public_key_to_bytes)
from fedgrad.crypto.keys import security_bits
from fedgrad.errors import ConfigError, FedgradError


def test_default_key_is_2048_bits(real_key):
    pub, priv = real_key
    assert int(pub.n).bit_length() == 2048
    assert priv.p * priv.q == pub.n


@pytest.mark.parametrize("bits", [512, 1024, 2047])
def test_short_key_needs_the_insecure_flag(bits):
    with pytest.raises(ConfigError, match="insecure"):
        generate_keypair(bits)


def test_short_key_with_flag_warns_loudly(caplog):
    with caplog.at_level(logging.WARNING, logger="fedgrad.crypto.keys"), \
            pytest.warns(InsecureKeyWarning, match="INSECURE"):
        pub, _ = generate_keypair(256, insecure_key_bits=True)
    assert int(pub.n).bit_length() == 256
    assert any("INSECURE" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("bits", [4096, 2560, 255, 64, True, 2048.0])
def test_unsupported_key_sizes_are_config_errors(bits):
    with pytest.raises(ConfigError):
        generate_keypair(bits, insecure_key_bits=True)


def test_security_levels():
    assert (security_bits(2048), security_bits(3072), security_bits(512)) == (112, 128, 80)


def test_public_key_round_trip(real_key):
    pub, _ = real_key
    assert public_key_from_bytes(public_key_to_bytes(pub)).n == pub.n


def test_short_public_key_refused_without_flag(small_key):
    data = public_key_to_bytes(small_key[0])
    with pytest.raises(CryptoError, match="512-bit"):
        public_key_from_bytes(data)
    assert public_key_from_bytes(data, insecure_key_bits=True).n == small_key[0].n


@pytest.mark.parametrize("mangle", [
    lambda b: b[:5],                                   # header only
    lambda b: b"XXXX" + b[4:],                         # bad magic
    lambda b: b[:4] + b"\x09" + b[5:],                 # unknown version
    lambda b: b[:-1] + bytes([b[-1] & 0xFE]),          # even modulus
    lambda b: b[:5] + b"\x00" + b[5:],                 # non-canonical leading zero
])
def test_malformed_public_key(real_key, mangle):
    with pytest.raises(CryptoError):
        public_key_from_bytes(mangle(public_key_to_bytes(real_key[0])))


def test_crypto_errors_are_user_facing():
    assert issubclass(CryptoError, FedgradError)
