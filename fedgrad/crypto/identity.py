"""Client identities: Ed25519 keys enrolled by the operator, and signatures binding a contribution to its round.

Why. The coordinator is not trusted (DESIGN, trust model): it picks cohorts, round numbers, weights and client
ids, and may lie about all of them. A decryptor therefore checks, before any partial decryption, that every
ciphertext it is asked to fold in was signed by an enrolled client *for this run, this round and this cohort*,
so the coordinator cannot replay an old update, pass one client's update off as several, move an update into a
smaller cohort, or change a client's weight.

Keys. Ed25519 (RFC 8032) through `cryptography`: 32-byte public keys, 64-byte deterministic signatures, no
per-signature randomness to get wrong. `ClientIdentity` holds a private key; `save` writes it as unencrypted
PKCS#8 PEM in a 0600 file created atomically (`secretfile`), `load` refuses a file readable by group/others.

Enrollment. The operator (not the coordinator) writes an `Enrollment` file, JSON
``{"format": "fedgrad/enrollment/v1", "clients": {client_id: hex public key}}``, and hands it to every decryptor.

What a client signs (`contribution_digest`). SHA-256 over an unambiguous encoding: a domain-separation tag, then
each field as a 4-byte big-endian length followed by its bytes, in this order:
    run id (UTF-8) ‖ round (8-byte big-endian unsigned) ‖ cohort digest (32 B) ‖ the client's public key (32 B) ‖
    SHA-256 of its ciphertext bytes (32 B; `wire.Payload.digest`) ‖ weight (canonical text, see `_weight_bytes`).
Signature v2 appends the task digest (32 B): SHA-256 of the task's settings (model, vocabulary, local training;
not the seed) and of the model the client started from, so a decryptor folds in only contributions trained on
one task per round. Length prefixes make the concatenation injective (no two field tuples give the same
bytes), and the tag keeps these signatures from being valid for any other fedgrad message. The signature is
Ed25519 over that digest.

Cohort digest (`cohort_digest`): SHA-256 over a domain tag and, for each member sorted by client id,
length-prefixed (client id, public key); member ids must be distinct. A signature therefore names the exact set
of clients (and their keys) the client agreed to be aggregated with.

Not covered: a signature proves who sent a ciphertext, not that its plaintext is well-formed (that takes range
proofs; `packing` catches visibly bad aggregates). Revocation is the operator removing a client from the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedgrad.crypto.errors import CryptoError
from fedgrad.crypto.secretfile import read_secret_file, write_secret_file
from fedgrad.files import write_atomic

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
DIGEST_BYTES = 32
_CONTRIBUTION_TAG = b"fedgrad/contribution-signature/v1"
_TASK_CONTRIBUTION_TAG = b"fedgrad/contribution-signature/v2"  # v1's fields, then the task digest
_COHORT_TAG = b"fedgrad/cohort/v1"
_ENROLLMENT_FORMAT = "fedgrad/enrollment/v1"
_MAX_ROUND = (1 << 64) - 1


class SignatureError(CryptoError):
    """A contribution signature that does not verify (forged, reused for other data, wrong key, malformed)."""


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _public_key(data: bytes) -> Ed25519PublicKey:
    if not isinstance(data, (bytes, bytearray)) or len(data) != PUBLIC_KEY_BYTES:
        raise CryptoError(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(data))
    except ValueError:
        raise CryptoError("malformed Ed25519 public key") from None


class ClientIdentity:
    """A client's Ed25519 signing key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def generate(cls) -> ClientIdentity:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key, as enrolled."""
        return self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the private key (PKCS#8 PEM) to a new 0600 file, atomically; never overwrites."""
        pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        write_secret_file(path, pem)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClientIdentity:
        """Read a key written by `save`; `CryptoError` if readable by group/others, not ours, or not Ed25519."""
        data = read_secret_file(path)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise CryptoError(f"{path} is not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CryptoError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    def __repr__(self) -> str:
        return f"ClientIdentity(public_key={self.public_key_bytes.hex()})"


def cohort_digest(members: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> bytes:
    """SHA-256 naming a cohort: its (client id, public key) pairs sorted by id (input order does not matter)."""
    pairs = list(members.items()) if isinstance(members, Mapping) else list(members)
    ids = [client_id for client_id, _ in pairs]
    if not pairs:
        raise CryptoError("a cohort needs at least one member")
    if len(set(ids)) != len(ids):
        raise CryptoError("a cohort lists a client id twice")
    digest = hashlib.sha256(_field(_COHORT_TAG))
    for client_id, key in sorted(pairs):
        if not isinstance(client_id, str) or not client_id:
            raise CryptoError(f"client id must be a non-empty string, got {client_id!r}")
        _public_key(key)
        digest.update(_field(client_id.encode()) + _field(bytes(key)))
    return digest.digest()


def _weight_bytes(weight: int | float) -> bytes:
    """Canonical text of a weight: "int:<decimal>" for integers, "float:<hex>" (exact) for fractional weights."""
    if isinstance(weight, bool):
        raise CryptoError("weight must be a number, not a bool")
    if isinstance(weight, numbers.Integral):
        weight = int(weight)
        if weight < 0:
            raise CryptoError(f"weight must be non-negative, got {weight}")
        return b"int:" + str(weight).encode()
    if isinstance(weight, float) and math.isfinite(weight) and weight >= 0:
        return b"float:" + (weight + 0.0).hex().encode()  # -0.0 signs as 0.0
    raise CryptoError(f"weight must be a non-negative int or finite float, got {weight!r}")


def contribution_digest(run_id: str, round: int, cohort_digest: bytes, public_key: bytes,
                        ciphertext_sha256: bytes, weight: int | float, task_digest: bytes | None = None) -> bytes:
    """H(tag ‖ run ‖ round ‖ cohort digest ‖ public key ‖ SHA-256 of the ciphertexts ‖ weight), length-prefixed;
    with ``task_digest`` (``fedgrad.protocol.task_digest``: the settings the client trained under and the model
    it started from), H(tag v2 ‖ the same fields ‖ task digest), so that a signature names the task too."""
    if not isinstance(run_id, str) or not run_id:
        raise CryptoError(f"run id must be a non-empty string, got {run_id!r}")
    if isinstance(round, bool) or not isinstance(round, int) or not 0 <= round <= _MAX_ROUND:
        raise CryptoError(f"round must be an integer in [0, 2^64), got {round!r}")
    digests = [("cohort digest", cohort_digest), ("ciphertext SHA-256", ciphertext_sha256)]
    if task_digest is not None:
        digests.append(("task digest", task_digest))
    for name, value in digests:
        if not isinstance(value, (bytes, bytearray)) or len(value) != DIGEST_BYTES:
            raise CryptoError(f"{name} must be {DIGEST_BYTES} bytes")
    _public_key(public_key)
    tag = _CONTRIBUTION_TAG if task_digest is None else _TASK_CONTRIBUTION_TAG
    message = b"".join((_field(tag), _field(run_id.encode()), _field(struct.pack(">Q", round)),
                        _field(bytes(cohort_digest)), _field(bytes(public_key)), _field(bytes(ciphertext_sha256)),
                        _field(_weight_bytes(weight)), _field(bytes(task_digest)) if task_digest is not None else b""))
    return hashlib.sha256(message).digest()


def sign_contribution(identity: ClientIdentity, run_id: str, round: int, cohort_digest: bytes,
                      ciphertext_sha256: bytes, weight: int | float, task_digest: bytes | None = None) -> bytes:
    """The client's 64-byte Ed25519 signature over `contribution_digest` with its own public key."""
    return identity.sign(contribution_digest(run_id, round, cohort_digest, identity.public_key_bytes,
                                             ciphertext_sha256, weight, task_digest))


def verify_contribution(public_key: bytes, signature: bytes, run_id: str, round: int, cohort_digest: bytes,
                        ciphertext_sha256: bytes, weight: int | float, task_digest: bytes | None = None) -> None:
    """Return if `signature` is `public_key`'s signature over exactly these fields; `SignatureError` otherwise."""
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != SIGNATURE_BYTES:
        raise SignatureError(f"an Ed25519 signature is {SIGNATURE_BYTES} bytes")
    try:
        key = _public_key(public_key)
        digest = contribution_digest(run_id, round, cohort_digest, public_key, ciphertext_sha256, weight, task_digest)
    except CryptoError as exc:
        raise SignatureError(f"cannot verify contribution: {exc}") from None
    try:
        key.verify(bytes(signature), digest)
    except InvalidSignature:
        raise SignatureError("contribution signature does not verify") from None


@dataclass(frozen=True)
class Enrollment:
    """Operator-written map client id → Ed25519 public key (32 raw bytes)."""

    clients: Mapping[str, bytes]

    def __post_init__(self) -> None:
        for client_id, key in self.clients.items():
            if not isinstance(client_id, str) or not client_id:
                raise CryptoError(f"enrolled client id must be a non-empty string, got {client_id!r}")
            _public_key(key)
        keys = [bytes(k) for k in self.clients.values()]
        if len(set(keys)) != len(keys):
            raise CryptoError("two enrolled clients share one public key")
        object.__setattr__(self, "clients", dict(self.clients))

    def public_key(self, client_id: str) -> bytes:
        try:
            return bytes(self.clients[client_id])
        except KeyError:
            raise CryptoError(f"client {client_id!r} is not enrolled") from None

    def cohort(self, client_ids: Iterable[str]) -> bytes:
        """`cohort_digest` of these enrolled clients with their enrolled keys."""
        return cohort_digest([(client_id, self.public_key(client_id)) for client_id in client_ids])

    def to_json(self) -> str:
        return json.dumps({"format": _ENROLLMENT_FORMAT,
                           "clients": {cid: bytes(k).hex() for cid, k in sorted(self.clients.items())}},
                          indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Enrollment:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise CryptoError("malformed enrollment: not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != _ENROLLMENT_FORMAT or not isinstance(
                doc.get("clients"), dict):
            raise CryptoError(f"malformed enrollment: expected format {_ENROLLMENT_FORMAT!r} with a clients map")
        clients = {}
        for client_id, key in doc["clients"].items():
            try:
                clients[client_id] = bytes.fromhex(key)
            except (TypeError, ValueError):
                raise CryptoError(f"malformed enrollment: key of {client_id!r} is not hex") from None
        return cls(clients)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, mode 0644: public keys only."""
        write_atomic(Path(path), self.to_json(), 0o644)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Enrollment:
        try:
            return cls.from_json(Path(path).read_bytes())
        except OSError as exc:
            raise CryptoError(f"cannot read enrollment {path}: {exc.strerror}") from None
