"""Paillier secure aggregation: clients encrypt updates, the coordinator adds ciphertexts, a key holder
decrypts only aggregates. Knows nothing about gRPC: payloads are plain bytes.

Client:      enc = make_encoder(cfg, pub); payload = enc.encrypt(update, weight)
Coordinator: acc = Accumulator(cfg, pub); acc.add(client_id, payload); acc.payload()
Key holder:  KeyHolder(priv, cfg, min_clients=...).decrypt_aggregate(round, acc.contributors, acc.payload())

See `packing` for the headroom bound (fractional or client-sent integer weights), `djn` for fast encryption and
its security assumptions.

Threshold decryption (no party holds the whole key): `threshold` (dealer, key shares and key-set files,
partial decryption, combining, batched proofs of correct partial decryption), with
`decryption.ParallelPartialDecryptor` to use every core of a decryptor; `identity` for the clients' Ed25519
contribution signatures and the operator's enrollment file (imported on use: it loads `cryptography`).
"""
from fedgrad.crypto.accumulator import Accumulator
from fedgrad.crypto.config import MODES, SecureAggConfig
from fedgrad.crypto.errors import (
                                   AggregationError,
                                   CiphertextError,
                                   CryptoError,
                                   EncodingError,
                                   InsecureKeyWarning,
                                   KeyHolderRefusal,
                                   PlaintextRangeError,
)
from fedgrad.crypto.keyholder import KeyHolder
from fedgrad.crypto.keys import generate_keypair, public_key_from_bytes, public_key_to_bytes
from fedgrad.crypto.packing import SlotLayout
from fedgrad.crypto.schemes import UpdateEncoder, make_encoder

__all__ = [
    "MODES", "Accumulator", "AggregationError", "CiphertextError", "CryptoError", "EncodingError",
    "InsecureKeyWarning", "KeyHolder", "KeyHolderRefusal", "PlaintextRangeError", "SecureAggConfig", "SlotLayout",
    "UpdateEncoder", "generate_keypair", "make_encoder", "public_key_from_bytes", "public_key_to_bytes",
]
