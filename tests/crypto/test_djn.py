"""Fast (DJN) encryption, checked by properties any correct implementation has, not by its constants.

Whatever the randomizer's exponent length or table layout, a ciphertext must decrypt to its plaintext under
`phe`'s own private key, sums and scalar multiples must survive (the aggregation relies on both), two
encryptions of one plaintext must differ, and the random exponent must be long enough that the best known
attacks on a short exponent (baby-step giant-step, Pollard's kangaroo: ~2^(ℓ/2) group operations) are no
easier than the key's security level λ, i.e. ℓ ≥ 2λ (DJN's own choice ℓ = ⌈|n|/2⌉ satisfies it too).
"""
import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgrad.crypto.djn import FastEncryptor, randomizer_base, randomizer_exponent_bits
from fedgrad.crypto.keys import SECURE_KEY_BITS, security_bits


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
    pub, _priv = small_key
    encryptor = FastEncryptor(pub, short_randomizer=short)
    m = data.draw(st.integers(0, pub.n - 1))
    randomness = data.draw(st.binary(min_size=encryptor.exponent_bytes, max_size=encryptor.exponent_bytes))
    (c,) = encryptor.encrypt_with_randomness([m], randomness)
    r = int.from_bytes(randomness, "little")
    n, nsquare = gmpy2.mpz(pub.n), gmpy2.mpz(pub.nsquare)
    assert c == (1 + m * n) * gmpy2.powmod(randomizer_base(pub.n), r, nsquare) % nsquare


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_ciphertext_decrypts_with_phes_private_key(small_key, data):
    pub, priv = small_key
    m = data.draw(st.one_of(st.integers(0, pub.n - 1), st.sampled_from([0, 1, pub.n - 1])))
    (c,) = FastEncryptor(pub).encrypt([m])
    assert 0 < c < pub.nsquare and gmpy2.gcd(c, pub.n) == 1  # an element of Z*_{n²}
    assert priv.raw_decrypt(int(c)) == m


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_products_decrypt_to_sums_and_powers_to_multiples(small_key, data):
    pub, priv = small_key
    a, b = data.draw(st.integers(0, pub.n - 1)), data.draw(st.integers(0, pub.n - 1))
    k = data.draw(st.integers(0, 2**64))
    ca, cb = FastEncryptor(pub).encrypt([a, b])
    assert priv.raw_decrypt(int(ca * cb % pub.nsquare)) == (a + b) % pub.n
    assert priv.raw_decrypt(int(gmpy2.powmod(ca, k, pub.nsquare))) == k * a % pub.n


def test_two_encryptions_of_one_plaintext_differ(small_key):
    pub, priv = small_key
    ciphertexts = FastEncryptor(pub).encrypt([7] * 300)
    assert len(set(ciphertexts)) == 300
    assert {priv.raw_decrypt(int(c)) for c in ciphertexts} == {7}


def test_real_key_encryptions_decrypt_and_are_randomized(real_key):
    pub, priv = real_key
    plaintexts = [0, 1, pub.n - 1, 123456789 % pub.n]
    first, second = FastEncryptor(pub).encrypt(plaintexts), FastEncryptor(pub).encrypt(plaintexts)
    assert [priv.raw_decrypt(int(c)) for c in first] == plaintexts
    assert all(a != b for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("key_bits", SECURE_KEY_BITS)
def test_random_exponent_is_at_least_twice_the_security_level(key_bits):
    assert randomizer_exponent_bits(key_bits) >= 2 * security_bits(key_bits)


def test_the_encryptor_draws_a_full_length_exponent_per_ciphertext(real_key, monkeypatch):
    """Count the bits one encryption takes from the OS CSPRNG (``secrets``, however it is asked):
    at least ℓ ≥ 2λ per ciphertext."""
    import secrets

    drawn: list[int] = []

    def counting(real, bits):
        """``real``, also recording how many random bits each call draws."""
        def draw(arg):
            drawn.append(bits(arg))
            return real(arg)
        return draw

    for name, bits in (("token_bytes", lambda k: 8 * k), ("randbits", lambda k: k),
                       ("randbelow", lambda n: int(n).bit_length())):
        monkeypatch.setattr(secrets, name, counting(getattr(secrets, name), bits))
    FastEncryptor(real_key[0]).encrypt([1, 2, 3])
    assert sum(drawn) >= 3 * 2 * security_bits(int(real_key[0].n).bit_length())


def test_randomizer_base_is_public_and_of_large_order(small_key):
    """h_s depends on n alone (every party derives the same one), is an encryption of zero (an n-th residue),
    and has no small order (h = ±1, or any h of small order, would make h_s^r guessable)."""
    pub, priv = small_key
    h_s = randomizer_base(pub.n)
    assert h_s == randomizer_base(pub.n)
    assert priv.raw_decrypt(int(h_s)) == 0
    assert gmpy2.gcd(h_s, pub.n) == 1 and h_s < pub.nsquare
    power = gmpy2.mpz(1)
    for _ in range(1 << 14):
        power = power * h_s % pub.nsquare
        assert power != 1


def test_plaintext_must_be_below_n(small_key):
    with pytest.raises(ValueError, match="out of range"):
        FastEncryptor(small_key[0]).encrypt([small_key[0].n])
