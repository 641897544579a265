"""Shared keys: one insecure 512-bit key for fast property tests, one real 2048-bit key for the figures that matter."""
import pytest

from fedgrad.crypto import InsecureKeyWarning, generate_keypair


@pytest.fixture(scope="session")
def small_key():
    with pytest.warns(InsecureKeyWarning):
        return generate_keypair(512, insecure_key_bits=True)


@pytest.fixture(scope="session")
def real_key():
    return generate_keypair(2048)


@pytest.fixture(scope="session")
def threshold_key():
    """A 512-bit 3-of-5 threshold key (insecure size, tests only), dealt from a seeded generator."""
    import random

    from fedgrad.crypto.threshold import deal
    with pytest.warns(InsecureKeyWarning):
        return deal(512, 5, 3, rng=random.Random(2024), insecure_key_bits=True)


@pytest.fixture(scope="session")
def real_threshold_key():
    """A 2048-bit 2-of-3 threshold key: two 1024-bit safe primes take about a second (see `primes`)."""
    import random

    from fedgrad.crypto.threshold import deal
    return deal(2048, 3, 2, rng=random.Random(7))
