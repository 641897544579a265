"""Paillier key generation (via `phe`), the key-size policy, and the public key's wire form.

Only the public key ever leaves the key holder. Its wire form is a tiny header plus the modulus n;
everything else a client needs (g = n + 1, the DJN randomizer base) is derived from n.
"""
from __future__ import annotations

import logging
import struct
import warnings

import phe

from fedgrad.crypto.errors import CryptoError, InsecureKeyWarning
from fedgrad.errors import ConfigError

log = logging.getLogger(__name__)

SECURE_KEY_BITS = (2048, 3072)
MIN_INSECURE_KEY_BITS = 128  # phe's own lower limit in practice; only for tests and demos

_KEY_HEADER = struct.Struct(">4sB")
_KEY_MAGIC = b"FGPK"
_KEY_VERSION = 1


def security_bits(key_bits: int) -> int:
    """Symmetric-equivalent strength of a Paillier/RSA modulus (NIST SP 800-57 Part 1, Table 2).

    Keys below 2048 bits are rated 80 bits only nominally: they exist for fast tests, not for use.
    """
    if key_bits >= 3072:
        return 128
    if key_bits >= 2048:
        return 112
    return 80


def check_key_bits(bits: int, insecure_key_bits: bool, *, flag: str = "insecure_key_bits") -> None:
    """The key-size policy: 2048 or 3072 bits; shorter keys (even, at least ``MIN_INSECURE_KEY_BITS``) only when
    ``insecure_key_bits`` (whose setting is named ``flag``), for tests and demos. :class:`ConfigError` otherwise,
    its message to be prefixed with the setting's name."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ConfigError(f"must be an integer, got {bits!r}")
    if bits in SECURE_KEY_BITS:
        return
    if bits > SECURE_KEY_BITS[0]:
        raise ConfigError(f"must be one of {SECURE_KEY_BITS}, got {bits}")
    if not insecure_key_bits:
        raise ConfigError(f"must be >= {SECURE_KEY_BITS[0]} (got {bits}); set {flag} = true to allow weak keys in "
                          "tests")
    if bits < MIN_INSECURE_KEY_BITS or bits % 2:
        raise ConfigError(f"must be an even number >= {MIN_INSECURE_KEY_BITS}, got {bits}")


def warn_insecure_key(bits: int) -> None:
    """Announce a short key, as an `InsecureKeyWarning` and on the log."""
    _warn_insecure(bits, stacklevel=4)


def _warn_insecure(bits: int, stacklevel: int = 3) -> None:
    message = (f"INSECURE Paillier key: {bits} bits (minimum 2048). Anyone can factor it and read every "
               "client update; use it only for tests and demos.")
    warnings.warn(message, InsecureKeyWarning, stacklevel=stacklevel)
    log.warning(message)


def generate_keypair(bits: int = 2048, insecure_key_bits: bool = False
                     ) -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]:
    """Generate a Paillier key pair with `phe` (2048 or 3072 bits; shorter only when `insecure_key_bits`).

    A short key is generated only on explicit request and then announced loudly, both as an
    `InsecureKeyWarning` (so tests can assert it or turn it into an error) and on the log (so an operator sees it).
    """
    try:
        check_key_bits(bits, insecure_key_bits)
    except ConfigError as error:
        raise ConfigError(f"key_bits {error}") from None
    if bits not in SECURE_KEY_BITS:
        _warn_insecure(bits)
    public_key, private_key = phe.generate_paillier_keypair(n_length=bits)
    return public_key, private_key


def public_key_to_bytes(pub: phe.PaillierPublicKey) -> bytes:
    """Header (magic, version) followed by the modulus n, big-endian."""
    n = int(pub.n)
    return _KEY_HEADER.pack(_KEY_MAGIC, _KEY_VERSION) + n.to_bytes((n.bit_length() + 7) // 8, "big")


def public_key_from_bytes(data: bytes, *, insecure_key_bits: bool = False) -> phe.PaillierPublicKey:
    """Parse `public_key_to_bytes` output; refuses keys below 2048 bits unless `insecure_key_bits`.

    The size check matters on the client: it is the client's data that a short key would expose, so a
    client does not take the coordinator's word for it.
    """
    data = bytes(data)
    if len(data) <= _KEY_HEADER.size:
        raise CryptoError(f"malformed public key: {len(data)} bytes")
    magic, version = _KEY_HEADER.unpack_from(data)
    if magic != _KEY_MAGIC or version != _KEY_VERSION:
        raise CryptoError(f"malformed public key: unknown header {magic!r} v{version}")
    body = data[_KEY_HEADER.size:]
    if body[0] == 0:
        raise CryptoError("malformed public key: modulus has a leading zero byte")
    n = int.from_bytes(body, "big")
    if n % 2 == 0:
        raise CryptoError("malformed public key: modulus is even")
    bits = n.bit_length()
    if bits < SECURE_KEY_BITS[0]:
        if not insecure_key_bits:
            raise CryptoError(f"refusing a {bits}-bit public key (minimum 2048) without insecure_key_bits")
        if bits < MIN_INSECURE_KEY_BITS:
            raise CryptoError(f"malformed public key: {bits}-bit modulus")
    return phe.PaillierPublicKey(n)
