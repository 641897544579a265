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
