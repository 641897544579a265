"""Errors raised by secure aggregation; all are `FedgradError`s so the CLI prints them as one line."""
from __future__ import annotations

from fedgrad.errors import FedgradError


class CryptoError(FedgradError):
    """Base class for secure-aggregation failures (malformed key material, unusable updates)."""


class EncodingError(CryptoError):
    """A client update or weight that cannot be quantized (wrong size, NaN/inf, weight outside (0, 1])."""


class CiphertextError(CryptoError):
    """A payload that is malformed, made for another key/configuration, or holds an invalid ciphertext."""


class AggregationError(CryptoError):
    """A contribution the accumulator must not fold in (duplicate client, more than `max_clients`)."""


class KeyHolderRefusal(CryptoError):
    """The key holder refuses to decrypt: the request would reveal more than an aggregate."""


class PlaintextRangeError(CryptoError):
    """A decrypted aggregate breaks the encoding's bound, so it was not the sum of well-formed client updates."""


class InsecureKeyWarning(UserWarning):
    """A Paillier key shorter than 2048 bits was generated on explicit request (tests, demos)."""
