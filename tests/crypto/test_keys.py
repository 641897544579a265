import logging
import math

import gmpy2
import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgrad.crypto import CryptoError, InsecureKeyWarning, generate_keypair, public_key_from_bytes, public_key_to_bytes
from fedgrad.crypto.keys import SECURE_KEY_BITS, security_bits
from fedgrad.errors import ConfigError, FedgradError


def test_default_key_is_a_product_of_two_large_distinct_primes(real_key):
    pub, priv = real_key
    assert int(pub.n).bit_length() >= 2048
    assert priv.p * priv.q == pub.n and priv.p != priv.q
    assert gmpy2.is_prime(priv.p, 50) and gmpy2.is_prime(priv.q, 50)
    half = int(pub.n).bit_length() // 2
    assert abs(int(priv.p).bit_length() - half) <= 1 and abs(int(priv.q).bit_length() - half) <= 1


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(-8, 2047))
def test_every_key_below_2048_bits_is_refused_without_the_flag(bits):
    with pytest.raises(ConfigError, match=r"insecure|key_bits"):
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


def _gnfs_bits(key_bits: int) -> float:
    """log2 of the general number field sieve's heuristic cost L_n[1/3, (64/9)^(1/3)] for a key_bits modulus."""
    ln_n = key_bits * math.log(2)
    return (64 / 9) ** (1 / 3) * ln_n ** (1 / 3) * math.log(ln_n) ** (2 / 3) / math.log(2)


@pytest.mark.parametrize("key_bits", SECURE_KEY_BITS)
def test_claimed_security_level_matches_the_cost_of_factoring(key_bits):
    """The level the randomizer is sized from never exceeds what factoring n costs (GNFS asymptotic cost,
    which NIST SP 800-57's figures round down from), nor sits far below it (a too-low figure shortens the
    DJN exponent). For 2048 bits GNFS gives ~116.9, for 3072 ~138.7."""
    claimed = security_bits(key_bits)
    assert _gnfs_bits(key_bits) - 15 <= claimed <= _gnfs_bits(key_bits)


def test_claimed_security_level_does_not_drop_as_keys_grow():
    levels = [security_bits(bits) for bits in range(256, 4097, 128)]
    assert levels == sorted(levels)


def test_public_key_round_trip(real_key):
    pub, _ = real_key
    assert public_key_from_bytes(public_key_to_bytes(pub)).n == pub.n


def test_short_public_key_refused_without_flag(small_key):
    data = public_key_to_bytes(small_key[0])
    with pytest.raises(CryptoError, match="512-bit"):
        public_key_from_bytes(data)
    assert public_key_from_bytes(data, insecure_key_bits=True).n == small_key[0].n


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(128, 2047), seed=st.integers(0, 2**64))
def test_any_public_modulus_below_2048_bits_is_refused_without_flag(bits, seed):
    """What a client receives is checked by size too: any odd modulus under 2048 bits, not just phe's."""
    n = (1 << (bits - 1)) | (seed % (1 << (bits - 1))) | 1
    with pytest.raises(CryptoError, match="refusing"):
        public_key_from_bytes(public_key_to_bytes(phe.PaillierPublicKey(n)))


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
