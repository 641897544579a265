import secrets

import gmpy2
import pytest
from hypothesis import given, settings, strategies as st

from fedgrad.crypto.djn import FastEncryptor, randomizer_base, randomizer_exponent_bits


def test_default_exponent_is_half_the_modulus_and_short_is_opt_in():
    assert (randomizer_exponent_bits(2048), randomizer_exponent_bits(3072)) == (1024, 1536)
    assert randomizer_exponent_bits(512) == 256 and randomizer_exponent_bits(510) == 256  # whole bytes, ≥ ⌈|n|/2⌉
    assert (randomizer_exponent_bits(2048, short=True), randomizer_exponent_bits(3072, short=True)) == (224, 256)


@pytest.mark.parametrize("short,bits", [(False, 1024), (True, 224)])
def test_encryptor_uses_the_configured_exponent(real_key, short, bits):
    assert FastEncryptor(real_key[0], short_randomizer=short).exponent_bytes * 8 == bits


def test_randomizer_base_is_h_to_the_n(small_key):
    pub, priv = small_key
    n, nsquare = gmpy2.mpz(pub.n), gmpy2.mpz(pub.nsquare)
    h_s = randomizer_base(pub.n)
    assert h_s == randomizer_base(pub.n)  # derived from n alone: every party gets the same base
    assert priv.raw_decrypt(int(h_s)) == 0  # an n-th residue: an encryption of zero
    assert h_s != 1 and gmpy2.gcd(h_s, n) == 1 and h_s < nsquare


@settings(max_examples=200, deadline=None)
@given(data=st.data(), short=st.booleans())
def test_ciphertext_matches_the_formula_and_decrypts(small_key, data, short):
    pub, priv = small_key
    encryptor = FastEncryptor(pub, short_randomizer=short)
    m = data.draw(st.integers(0, pub.n - 1))
    randomness = data.draw(st.binary(min_size=encryptor.exponent_bytes, max_size=encryptor.exponent_bytes))
    (c,) = encryptor.encrypt_with_randomness([m], randomness)
    r = int.from_bytes(randomness, "little")
    n, nsquare = gmpy2.mpz(pub.n), gmpy2.mpz(pub.nsquare)
    assert c == (1 + m * n) * gmpy2.powmod(randomizer_base(pub.n), r, nsquare) % nsquare
    assert priv.raw_decrypt(int(c)) == m


def test_real_key_encryptions_decrypt_and_are_randomized(real_key):
    pub, priv = real_key
    plaintexts = [0, 1, pub.n - 1, secrets.randbelow(pub.n)]
    first, second = FastEncryptor(pub).encrypt(plaintexts), FastEncryptor(pub).encrypt(plaintexts)
    assert [priv.raw_decrypt(int(c)) for c in first] == plaintexts
    assert all(a != b for a, b in zip(first, second))


def test_plaintext_must_be_below_n(small_key):
    with pytest.raises(ValueError, match="out of range"):
        FastEncryptor(small_key[0]).encrypt([small_key[0].n])
