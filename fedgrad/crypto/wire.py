"""Ciphertext payloads on the wire, and the validation every received ciphertext goes through.

Layout (big-endian):  magic "FGCT" | version u8 | fingerprint 8 B | contributors u32 | count u32 | width u16 |
count ciphertexts of exactly `width` bytes each, width = byte length of n² (512 B for a 2048-bit key).
`fingerprint` binds the payload to one key and `SecureAggConfig` (see `SecureAggConfig.fingerprint`);
`contributors` is 1 for a client's update and N for an aggregate of N updates.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Sequence

import gmpy2
import phe

from fedgrad.crypto.errors import CiphertextError

_HEADER = struct.Struct(">4sB8sIIH")
_MAGIC = b"FGCT"
_VERSION = 1
HEADER_BYTES = _HEADER.size


def ciphertext_width(pub: phe.PaillierPublicKey) -> int:
    """Bytes per ciphertext: enough for any value below n² (2·|n| bits)."""
    return (int(pub.nsquare).bit_length() + 7) // 8


@dataclass(frozen=True)
class Payload:
    """A parsed, validated payload: every ciphertext c satisfies 0 < c < n² and gcd(c, n) = 1."""

    contributors: int
    ciphertexts: list[gmpy2.mpz]
    digest: bytes  # SHA-256 of the ciphertext bytes (header excluded)


@dataclass(frozen=True)
class PayloadHeader:
    """A payload's header as announced (not yet validated against a key): see `read_header`."""

    fingerprint: bytes
    contributors: int
    count: int
    width: int


def read_header(data: bytes | bytearray | memoryview) -> PayloadHeader:
    """The header of a payload, so that a receiver that does not know the fingerprint or the ciphertext count up
    front (a decryptor's first contribution of a session) can fix them before `load_payload` validates the rest;
    raises `CiphertextError` on a short or foreign header."""
    view = memoryview(data)
    if len(view) < HEADER_BYTES:
        raise CiphertextError(f"payload of {len(view)} bytes is shorter than its header")
    magic, version, fingerprint, contributors, count, width = _HEADER.unpack_from(view)
    if magic != _MAGIC or version != _VERSION:
        raise CiphertextError(f"not a ciphertext payload (header {bytes(magic)!r} v{version})")
    return PayloadHeader(bytes(fingerprint), contributors, count, width)


def dump_payload(fingerprint: bytes, contributors: int, ciphertexts: Sequence[int], width: int) -> bytes:
    header = _HEADER.pack(_MAGIC, _VERSION, fingerprint, contributors, len(ciphertexts), width)
    return header + b"".join(int(c).to_bytes(width, "big") for c in ciphertexts)


def load_payload(data: bytes, *, pub: phe.PaillierPublicKey, fingerprint: bytes, count: int) -> Payload:
    """Parse and validate a payload of exactly `count` ciphertexts under `pub`; raises `CiphertextError`."""
    view = memoryview(data)
    if len(view) < HEADER_BYTES:
        raise CiphertextError(f"payload of {len(view)} bytes is shorter than its header")
    magic, version, got_fingerprint, contributors, got_count, width = _HEADER.unpack_from(view)
    if magic != _MAGIC or version != _VERSION:
        raise CiphertextError(f"not a ciphertext payload (header {bytes(magic)!r} v{version})")
    if got_fingerprint != fingerprint:
        raise CiphertextError("payload was made for another key or secure-aggregation config")
    expected_width = ciphertext_width(pub)
    if width != expected_width:
        raise CiphertextError(f"ciphertext width {width} B, expected {expected_width} B for this key")
    if got_count != count:
        raise CiphertextError(f"payload holds {got_count} ciphertexts, expected {count}")
    if contributors < 1:
        raise CiphertextError("payload claims no contributors")
    body = view[HEADER_BYTES:]
    if len(body) != count * width:
        raise CiphertextError(f"payload body is {len(body)} bytes, expected {count} × {width}")
    n = gmpy2.mpz(pub.n)
    nsquare = n * n
    ciphertexts = []
    for i in range(count):
        c = gmpy2.mpz(int.from_bytes(body[i * width:(i + 1) * width], "big"))
        if not 0 < c < nsquare:
            raise CiphertextError(f"ciphertext {i} is outside (0, n²)")
        if gmpy2.gcd(c, n) != 1:
            raise CiphertextError(f"ciphertext {i} is not a unit mod n (gcd(c, n) ≠ 1)")
        ciphertexts.append(c)
    return Payload(contributors, ciphertexts, hashlib.sha256(body).digest())
