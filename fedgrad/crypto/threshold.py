"""t-of-k threshold Paillier: a trusted dealer, k key shares, any t partial decryptions recover a plaintext.

Scheme: Damgård and Jurik, "A generalisation, a simplification and some applications of Paillier's probabilistic
public-key system", PKC 2001, §4 (threshold variant) with s = 1, which follows Shoup's technique for threshold RSA
(Shoup, "Practical threshold signatures", EUROCRYPT 2000): the Lagrange coefficients are made integral by the
factor Δ = k!, so no one ever has to invert modulo the secret group order.

Key generation (`deal`, by a dealer trusted at key-generation time only)
    p = 2p' + 1, q = 2q' + 1 safe primes (`primes.safe_prime`), n = pq, m = p'q'. The public key is n with g = n + 1
    (a `phe.PaillierPublicKey`, so the existing packing and DJN encryption work unchanged).
    d ≡ 0 (mod m), d ≡ 1 (mod n), by the CRT: d = m · (m⁻¹ mod n).
    f(X) = d + a_1 X + … + a_{t−1} X^{t−1} with a_j uniform in [0, nm); share i ∈ {1..k} is s_i = f(i) mod nm.
    Verification keys (Shoup): v = x² mod n² with x = SHAKE-256(domain ‖ n) (nothing up anyone's sleeve, and
    derived from n, so not stored), v_i = v^{Δ s_i} mod n², published in the `KeySet` (`key_set(shares)`).
    The dealer then drops p, q, m, d and the polynomial. Python cannot wipe memory, so "forgets" means: nothing
    is returned or written but n and the shares, and the dealer process should exit after writing them (the
    `fedgrad` key-generation command is meant to run once, offline). Whoever runs the dealer could keep p, q and
    read everything: it is trusted at key-generation time, and only then. A dealer-free distributed key generation
    exists (Nishide–Sakurai; TNO's semi-honest `tno-mpc-protocols-distributed-keygen`) but is not used here.

Partial decryption (`partial_decrypt`, by decryptor i): c_i = c^{2Δ s_i} mod n², one powmod per ciphertext with
an exponent of |nm| + log₂(2Δ) ≈ 2|n| bits and no CRT (the decryptor does not know the factors).

Combining (`combine`, by anyone with t partials for indices S): λ_i = Δ · ∏_{j∈S, j≠i} (−j)/(i − j), an integer
because Δ = k! is divisible by ∏ (i − j); then c' = ∏ c_i^{2λ_i} = c^{4Δ·Σλ_i s_i} = c^{4Δ²d} mod n².
Why that is (1 + n)^{4Δ²M}: c^4 lies in the subgroup of order dividing nm (|Z*_{n²}| = n·4m), and
Σ_{i∈S} λ_i s_i ≡ Δ·f(0) = Δd (mod nm) (Lagrange interpolation at 0, scaled by Δ), so c' = (c^4)^{Δ²d}.
Writing c = (1 + n)^M · r^n: r^n lies in the subgroup of n-th residues, of order φ(n) = 4m, so (r^n)^4 has order
dividing m and d ≡ 0 (mod m) sends (r^{4n})^{Δ²d} to 1; d ≡ 1 (mod n) leaves (1 + n)^{4Δ²M} = 1 + 4Δ²M·n (mod n²). Hence
M = L(c') · (4Δ²)⁻¹ mod n with L(u) = (u − 1)/n; 4Δ² is invertible mod n because every prime factor of n is
larger than k (checked by `deal`). A c' that is not ≡ 1 (mod n) cannot come from honest partials and is rejected.

Cheating decryptors. A decryptor who returns a wrong c_i cannot learn anything more, but can corrupt the result:
a random c_i makes c' ≢ 1 (mod n) with overwhelming probability (`CryptoError`), while c_i·(1 + n)^δ silently
shifts M. Three layers, from cheapest:
* every partial is validated (0 < c_i < n², gcd(c_i, n) = 1);
* `combine` given more than t partials decodes every window of t consecutive indices (cheap: the λ_i are small)
  and raises unless all agree, which catches any single bad partial;
* zero-knowledge proofs of correct partial decryption (`prove_partials` / `verify_partials` /
  `combine_verified`), DJ01 §4's proof made non-interactive (Fiat–Shamir, SHA-256/SHAKE-256) and batched over all
  ciphertexts of a request (small-exponent batch verification, Bellare–Garay–Rabin, EUROCRYPT 1998):
  with 128-bit weights ρ_j derived from the whole transcript, C = ∏ c_j^{ρ_j} and C_i = ∏ c_ij^{ρ_j}; the decryptor
  proves log_{C⁴}(C_i²) = log_v(v_i) (= Δ s_i) with a Chaum–Pedersen proof over the integers: r of
  |Δ| + 2|n| + 256 + 128 bits, a = C^{4r}, b = v^r, e = H(transcript ‖ a ‖ b) (256 bits), z = r + e·Δ s_i
  (statistically hiding Δ s_i to 2^−128). The verifier recomputes a = C^{4z}·C_i^{−2e}, b = v^z·v_i^{−e} and
  checks e. A wrong c_ij survives only if Σ_j ρ_j·(its discrete-log error) ≡ 0 modulo an order ≥ min(p', q'),
  probability ≤ 2^−128 per request, or by breaking the proof's soundness (as DJ01). Errors of order 2 are not
  caught, and need not be: the squaring in c_i^{2λ_i} removes them. Cost per request: 2·count short (128-bit)
  powmods (~6% of the partial decryptions) plus a few long ones; measured at 2048 bits on 20 ciphertexts,
  proving adds ~25% to the partial decryptions and verifying one decryptor ~20%, less for larger requests.
  `combine_verified` drops partials whose proof fails and combines any t that pass, so up to k − t cheaters are
  tolerated and named.
Security level: the scheme is IND-CPA under DCR like Paillier, and a coalition of fewer than t decryptors learns
nothing about d beyond its public constraints (Shamir's threshold property over Z_{nm}, as in DJ01 Theorem 2).
Threshold t = 1 is allowed for tests, but then every single decryptor can decrypt alone.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import gmpy2
import phe

from fedgrad.crypto.errors import CiphertextError, CryptoError
from fedgrad.crypto.keys import SECURE_KEY_BITS, warn_insecure_key
from fedgrad.crypto.primes import safe_prime
from fedgrad.crypto.secretfile import read_secret_file, write_secret_file
from fedgrad.files import write_atomic

MAX_PARTIES = 64  # Δ = 64! adds ~296 bits to every partial-decryption exponent; beyond that is no longer cheap
MIN_KEY_BITS = 64  # tests only; real keys are 2048 or 3072 bits (see `keys`)
SHARE_FORMAT = "fedgrad/threshold-key-share/v1"
_KEYSET_FORMAT = "fedgrad/threshold-key-set/v1"
_VERIFICATION_DOMAIN = b"fedgrad/threshold-verification-base/v1\0"


def _check_counts(parties: object, threshold: object) -> None:
    if isinstance(parties, bool) or not isinstance(parties, int) or not 1 <= parties <= MAX_PARTIES:
        raise CryptoError(f"parties must be an integer in [1, {MAX_PARTIES}], got {parties!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= parties:
        raise CryptoError(f"threshold must be an integer in [1, parties={parties}], got {threshold!r}")


def delta(parties: int) -> int:
    """Δ = k!: clears the denominators of every Lagrange coefficient at 0 for indices in 1..k."""
    return math.factorial(parties)


@dataclass(frozen=True)
class KeySet:
    """Public threshold-key description, readable by anyone: n, k, t, and Shoup's verification keys.

    `verification_keys[i - 1]` = v^{Δ s_i} mod n² for share i; `verify_partials` checks proofs of correct partial
    decryption against them, and a share holder can check its share (`check`).
    """

    n: int
    parties: int
    threshold: int
    verification_keys: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_counts(self.parties, self.threshold)
        if self.n < 1 << (MIN_KEY_BITS - 1) or self.n % 2 == 0:
            raise CryptoError("malformed key set: modulus must be odd and at least 64 bits")
        if len(self.verification_keys) != self.parties:
            raise CryptoError(f"malformed key set: {len(self.verification_keys)} verification keys "
                              f"for {self.parties} parties")
        nsquare = self.n * self.n
        for value in self.verification_keys:
            if not 0 < value < nsquare or math.gcd(value, self.n) != 1:
                raise CryptoError("malformed key set: a verification key is not a unit mod n²")

    @property
    def public_key(self) -> phe.PaillierPublicKey:
        return phe.PaillierPublicKey(self.n)

    @property
    def verification_base(self) -> int:
        return verification_base(self.n)

    def check(self, share: KeyShare) -> None:
        """`CryptoError` unless `share` belongs to this key set (same n, k, t, and v^{Δ s_i} matches)."""
        if (share.n, share.parties, share.threshold) != (self.n, self.parties, self.threshold):
            raise CryptoError(f"key share {share.index} is for another key set")
        expected = self.verification_keys[share.index - 1]
        if int(gmpy2.powmod(self.verification_base, delta(self.parties) * share.secret, self.n * self.n)) != expected:
            raise CryptoError(f"key share {share.index} does not match its verification key")

    def to_json(self) -> str:
        return json.dumps({"format": _KEYSET_FORMAT, "n": hex(self.n), "parties": self.parties,
                           "threshold": self.threshold,
                           "verification_keys": [hex(v) for v in self.verification_keys]}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> KeySet:
        data = _load_document(text, _KEYSET_FORMAT, "key set")
        try:
            keys = data["verification_keys"]
            if not isinstance(keys, list):
                raise CryptoError("malformed key set: verification_keys must be a list")
            return cls(n=_hex_int(data["n"]), parties=_plain_int(data["parties"]),
                       threshold=_plain_int(data["threshold"]),
                       verification_keys=tuple(_hex_int(v) for v in keys))
        except KeyError as exc:
            raise CryptoError(f"malformed key set: missing {exc.args[0]!r}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key set (public: mode 0644) atomically."""
        write_atomic(Path(path), self.to_json(), 0o644)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeySet:
        try:
            return cls.from_json(Path(path).read_bytes())
        except OSError as exc:
            raise CryptoError(f"cannot read key set {path}: {exc.strerror}") from None


@dataclass(frozen=True, repr=False)
class KeyShare:
    """Decryptor `index`'s share s_i = f(i) mod nm of the threshold key (secret: keep it in a 0600 file)."""

    index: int
    parties: int
    threshold: int
    n: int
    secret: int

    def __post_init__(self) -> None:
        _check_counts(self.parties, self.threshold)
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 1 <= self.index <= self.parties:
            raise CryptoError(f"share index must lie in [1, {self.parties}], got {self.index!r}")
        if self.n < 1 << (MIN_KEY_BITS - 1) or self.n % 2 == 0:
            raise CryptoError("malformed key share: modulus must be odd and at least 64 bits")
        if not 0 <= self.secret < self.n * self.n:
            raise CryptoError("malformed key share: secret out of range")

    def __repr__(self) -> str:  # never print the secret
        return (f"KeyShare(index={self.index}, parties={self.parties}, threshold={self.threshold}, "
                f"n=<{self.n.bit_length()} bits>)")

    @property
    def public_key(self) -> phe.PaillierPublicKey:
        return phe.PaillierPublicKey(self.n)

    @cached_property
    def exponent(self) -> gmpy2.mpz:
        """2Δ s_i: the exponent of this share's partial decryption."""
        return gmpy2.mpz(2 * delta(self.parties) * self.secret)

    def to_bytes(self) -> bytes:
        return (json.dumps({"format": SHARE_FORMAT, "index": self.index, "parties": self.parties,
                            "threshold": self.threshold, "n": hex(self.n), "secret": hex(self.secret)})
                + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyShare:
        doc = _load_document(data, SHARE_FORMAT, "key share")
        try:
            return cls(index=_plain_int(doc["index"]), parties=_plain_int(doc["parties"]),
                       threshold=_plain_int(doc["threshold"]), n=_hex_int(doc["n"]), secret=_hex_int(doc["secret"]))
        except KeyError as exc:
            raise CryptoError(f"malformed key share: missing {exc.args[0]!r}") from None

    def write(self, path: str | os.PathLike[str]) -> None:
        """Create `path` (mode 0600, never overwriting) holding this share; see `secretfile`."""
        write_secret_file(path, self.to_bytes())


def write_share(share: KeyShare, path: str | os.PathLike[str]) -> None:
    """Create `path` with mode 0600 atomically and write `share` to it (`CryptoError` if it exists)."""
    share.write(path)


def read_share(path: str | os.PathLike[str]) -> KeyShare:
    """Load a share file; `CryptoError` if it is readable by group/others, not ours, or malformed."""
    return KeyShare.from_bytes(read_secret_file(path))


def _load_document(text: str | bytes, expected_format: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise CryptoError(f"malformed {what}: not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != expected_format:
        raise CryptoError(f"malformed {what}: expected format {expected_format!r}")
    return doc


def _hex_int(value: object) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise CryptoError(f"malformed key material: expected a 0x-prefixed hex integer, got {value!r:.40}")
    try:
        return int(value, 16)
    except ValueError:
        raise CryptoError(f"malformed key material: {value!r:.40} is not hex") from None


def _plain_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CryptoError(f"malformed key material: expected an integer, got {value!r:.40}")
    return value


def verification_base(n: int) -> int:
    """v = x² mod n² with x = SHAKE-256(domain ‖ n): a square (so in the subgroup the proofs need), from n alone."""
    n_bytes = n.to_bytes((n.bit_length() + 7) // 8, "big")
    x = int.from_bytes(hashlib.shake_256(_VERIFICATION_DOMAIN + n_bytes).digest(2 * len(n_bytes) + 16), "big")
    x %= n * n
    if math.gcd(x, n) != 1:  # only if the hash found a factor of n
        raise CryptoError("degenerate verification base for this modulus")
    return x * x % (n * n)


def key_set(shares: Sequence[KeyShare]) -> KeySet:
    """The public `KeySet` of a complete list of shares (the dealer calls it right after `deal`)."""
    if not shares:
        raise CryptoError("no shares")
    first = shares[0]
    if sorted(s.index for s in shares) != list(range(1, first.parties + 1)) or any(
            (s.n, s.parties, s.threshold) != (first.n, first.parties, first.threshold) for s in shares):
        raise CryptoError("key_set needs every share 1..k of one key, once each")
    n, nsquare, big_delta = first.n, first.n * first.n, delta(first.parties)
    v = verification_base(n)
    keys = tuple(int(gmpy2.powmod(v, big_delta * s.secret, nsquare))
                 for s in sorted(shares, key=lambda s: s.index))
    return KeySet(n=n, parties=first.parties, threshold=first.threshold, verification_keys=keys)


def deal(key_bits: int, parties: int, threshold: int, *, rng: random.Random | None = None,
         insecure_key_bits: bool = False) -> tuple[phe.PaillierPublicKey, list[KeyShare]]:
    """Trusted dealer: a fresh `key_bits`-bit modulus from safe primes and its k = `parties` shares, any
    `threshold` of which decrypt. Returns (public key, shares for indices 1..k); `key_set(shares)` gives the
    public key-set file's contents.

    `rng` defaults to the OS CSPRNG (`secrets.SystemRandom`); pass a seeded `random.Random` in tests only.
    Key-size policy as in `keys.generate_keypair`: 2048 or 3072 bits; shorter (even, ≥ 64) only with
    `insecure_key_bits`, and then announced with an `InsecureKeyWarning` and on the log.
    """
    _check_counts(parties, threshold)
    if isinstance(key_bits, bool) or not isinstance(key_bits, int) or key_bits < MIN_KEY_BITS or key_bits % 2:
        raise CryptoError(f"key_bits must be an even integer >= {MIN_KEY_BITS}, got {key_bits!r}")
    if key_bits not in SECURE_KEY_BITS:
        if key_bits > SECURE_KEY_BITS[0] or not insecure_key_bits:
            raise CryptoError(f"key_bits={key_bits} is not one of {SECURE_KEY_BITS}; shorter keys only with "
                              "insecure_key_bits (tests and demos)")
        warn_insecure_key(key_bits)
    rng = rng if rng is not None else secrets.SystemRandom()
    half = key_bits // 2
    p = safe_prime(half, rng)
    q = safe_prime(half, rng)
    while q == p:
        q = safe_prime(half, rng)
    n = p * q
    p1, q1 = (p - 1) // 2, (q - 1) // 2
    m = p1 * q1
    nm = n * m
    # n's prime factors p, q exceed k, so Δ and 4Δ² are units mod n; gcd(n, m) = 1 as p, q ∉ {p', q'}.
    if n.bit_length() != key_bits or math.gcd(n, m) != 1 or min(p1, q1) <= parties:
        raise CryptoError("degenerate threshold key; deal again")
    d = m * int(gmpy2.invert(m, n))
    coefficients = [d] + [rng.randrange(nm) for _ in range(threshold - 1)]
    secrets_ = []
    for i in range(1, parties + 1):
        value = 0
        for a in reversed(coefficients):  # Horner, mod nm
            value = (value * i + a) % nm
        secrets_.append(value)
    shares = [KeyShare(index=i, parties=parties, threshold=threshold, n=n, secret=s)
              for i, s in enumerate(secrets_, start=1)]
    del p, q, p1, q1, m, nm, d, coefficients, secrets_  # see the module docstring for what "forget" can mean
    return phe.PaillierPublicKey(n), shares


def _valid_ciphertext(c: int, n: gmpy2.mpz, nsquare: gmpy2.mpz, what: str) -> gmpy2.mpz:
    if isinstance(c, bool) or not isinstance(c, (int, type(n))):
        raise CiphertextError(f"{what} is not an integer")
    value = gmpy2.mpz(c)
    if not 0 < value < nsquare:
        raise CiphertextError(f"{what} is outside (0, n²)")
    if gmpy2.gcd(value, n) != 1:
        raise CiphertextError(f"{what} is not a unit mod n (gcd(c, n) ≠ 1)")
    return value


def partial_decrypt(share: KeyShare, ciphertexts: Sequence[int]) -> list[int]:
    """c^{2Δ s_i} mod n² for each ciphertext (validated: 0 < c < n², gcd(c, n) = 1), in this process.

    `decryption.ParallelPartialDecryptor` runs the same on every core.
    """
    n = gmpy2.mpz(share.n)
    nsquare = n * n
    exponent = share.exponent
    return [int(gmpy2.powmod(_valid_ciphertext(c, n, nsquare, f"ciphertext {j}"), exponent, nsquare))
            for j, c in enumerate(ciphertexts)]


def lagrange_coefficients(indices: Sequence[int], parties: int) -> dict[int, int]:
    """λ_i = Δ · ∏_{j ≠ i} (−j)/(i − j) over `indices` (integers: Δ = k! clears every denominator)."""
    big_delta = delta(parties)
    out = {}
    for i in indices:
        numerator, denominator = big_delta, 1
        for j in indices:
            if j != i:
                numerator *= -j
                denominator *= i - j
        coefficient, remainder = divmod(numerator, denominator)
        assert remainder == 0, "Δ = k! must clear the Lagrange denominator"
        out[i] = coefficient
    return out


def _combine_subset(partials: Mapping[int, Sequence[gmpy2.mpz]], subset: Sequence[int], parties: int,
                    n: gmpy2.mpz, count: int) -> list[int]:
    nsquare = n * n
    lambdas = lagrange_coefficients(subset, parties)
    scale_inverse = gmpy2.invert(4 * delta(parties) ** 2, n)
    plaintexts = []
    for j in range(count):
        c = gmpy2.mpz(1)
        for i in subset:
            # negative exponents: gmpy2.powmod inverts the base mod n² (a unit, checked on input)
            c = c * gmpy2.powmod(partials[i][j], 2 * lambdas[i], nsquare) % nsquare
        if c % n != 1:
            raise CryptoError(f"partial decryptions of ciphertext {j} do not combine to (1 + n)^x: "
                              "a partial is corrupt or made with another key")
        plaintexts.append(int((c - 1) // n * scale_inverse % n))
    return plaintexts


def combine(public_key: phe.PaillierPublicKey,
            partials: Mapping[int, Sequence[int]] | Sequence[tuple[int, Sequence[int]]], threshold: int,
            parties: int) -> list[int]:
    """Plaintexts from the partial decryptions of ≥ `threshold` distinct shares (index → one partial per ciphertext).

    `partials` is a mapping, or a sequence of (index, partials) pairs as they arrive from decryptors, in which a
    repeated index is an error. Raises `CryptoError` on fewer than `threshold` partials, a repeated index or one
    outside 1..`parties`, lists of unequal
    length, an invalid partial (0 < c_i < n², gcd(c_i, n) = 1), a combination that is not (1 + n)^x, or — given
    more than `threshold` partials — windows of `threshold` shares that disagree (see the module docstring).
    """
    _check_counts(parties, threshold)
    pairs = list(partials.items()) if isinstance(partials, Mapping) else list(partials)
    by_index: dict[int, Sequence[int]] = {}
    for i, values in pairs:
        if isinstance(i, bool) or not isinstance(i, int) or not 1 <= i <= parties:
            raise CryptoError(f"partial decryption index {i!r} is not a share index in [1, {parties}]")
        if i in by_index:
            raise CryptoError(f"two partial decryptions for share index {i}")
        by_index[i] = values
    indices = sorted(by_index)
    if len(indices) < threshold:
        raise CryptoError(f"{len(indices)} partial decryption(s); combining needs at least {threshold}")
    lengths = {len(by_index[i]) for i in indices}
    if len(lengths) != 1:
        raise CryptoError("partial decryptions cover different numbers of ciphertexts")
    (count,) = lengths
    n = gmpy2.mpz(public_key.n)
    nsquare = n * n
    checked = {i: [_valid_ciphertext(c, n, nsquare, f"partial {j} of share {i}") for j, c in enumerate(by_index[i])]
               for i in indices}
    result = _combine_subset(checked, indices[:threshold], parties, n, count)
    for start in range(1, len(indices) - threshold + 1):
        if _combine_subset(checked, indices[start:start + threshold], parties, n, count) != result:
            raise CryptoError("partial decryptions are inconsistent: at least one decryptor returned a wrong partial")
    return result


# ---- zero-knowledge proofs of correct partial decryption (batched; see the module docstring) ----

_PROOF_DOMAIN = b"fedgrad/threshold-partial-proof/v1\0"
_RHO_BITS = 128
_CHALLENGE_BITS = 256
_STATISTICAL_BITS = 128


@dataclass(frozen=True)
class PartialProof:
    """Non-interactive proof that share `index`'s partials are c_j^{2Δ s_i} for the same s_i as v_i = v^{Δ s_i}."""

    index: int
    challenge: int
    response: int

    def to_bytes(self) -> bytes:
        return json.dumps({"index": self.index, "e": hex(self.challenge), "z": hex(self.response)}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PartialProof:
        try:
            doc = json.loads(data)
            return cls(index=_plain_int(doc["index"]), challenge=_hex_int(doc["e"]), response=_hex_int(doc["z"]))
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            raise CryptoError("malformed partial-decryption proof") from None


def _int_bytes(value: int) -> bytes:
    data = int(value).to_bytes((int(value).bit_length() + 7) // 8 or 1, "big")
    return len(data).to_bytes(4, "big") + data


def _transcript(n: int, index: int, ciphertexts: Sequence[int], partials: Sequence[int],
                verification_key: int) -> bytes:
    digest = hashlib.sha256(_PROOF_DOMAIN)
    digest.update(_int_bytes(n) + _int_bytes(index) + _int_bytes(verification_key) + _int_bytes(len(ciphertexts)))
    for c, c_i in zip(ciphertexts, partials, strict=True):
        digest.update(_int_bytes(c) + _int_bytes(c_i))
    return digest.digest()


def _batch(transcript: bytes, ciphertexts: Sequence[gmpy2.mpz], partials: Sequence[gmpy2.mpz],
           nsquare: gmpy2.mpz) -> tuple[gmpy2.mpz, gmpy2.mpz]:
    """C = ∏ c_j^{ρ_j}, C_i = ∏ c_ij^{ρ_j} with 128-bit ρ_j = SHAKE-256(transcript) (Fiat–Shamir)."""
    stream = hashlib.shake_256(b"rho" + transcript).digest(len(ciphertexts) * _RHO_BITS // 8)
    width = _RHO_BITS // 8
    big_c, big_ci = gmpy2.mpz(1), gmpy2.mpz(1)
    for j, (c, c_i) in enumerate(zip(ciphertexts, partials, strict=True)):
        rho = int.from_bytes(stream[j * width:(j + 1) * width], "big") | 1
        big_c = big_c * gmpy2.powmod(c, rho, nsquare) % nsquare
        big_ci = big_ci * gmpy2.powmod(c_i, rho, nsquare) % nsquare
    return big_c, big_ci


def _challenge(transcript: bytes, a: gmpy2.mpz, b: gmpy2.mpz) -> int:
    return int.from_bytes(hashlib.sha256(b"challenge" + transcript + _int_bytes(int(a)) + _int_bytes(int(b)))
                          .digest()[:_CHALLENGE_BITS // 8], "big")


def prove_partials(share: KeyShare, ciphertexts: Sequence[int], partials: Sequence[int]) -> PartialProof:
    """A batched proof that `partials` = `partial_decrypt(share, ciphertexts)` (the decryptor runs it once)."""
    if len(ciphertexts) != len(partials) or not ciphertexts:
        raise CryptoError("proof needs one partial per ciphertext, and at least one")
    n = gmpy2.mpz(share.n)
    nsquare = n * n
    cs = [_valid_ciphertext(c, n, nsquare, f"ciphertext {j}") for j, c in enumerate(ciphertexts)]
    ps = [_valid_ciphertext(c, n, nsquare, f"partial {j}") for j, c in enumerate(partials)]
    witness = gmpy2.mpz(delta(share.parties) * share.secret)
    v = gmpy2.mpz(verification_base(share.n))
    v_i = gmpy2.powmod(v, witness, nsquare)
    transcript = _transcript(share.n, share.index, cs, ps, int(v_i))
    big_c, _ = _batch(transcript, cs, ps, nsquare)
    bits = delta(share.parties).bit_length() + 2 * share.n.bit_length() + _CHALLENGE_BITS + _STATISTICAL_BITS
    r = gmpy2.mpz(secrets.randbits(bits))
    a = gmpy2.powmod(big_c, 4 * r, nsquare)
    b = gmpy2.powmod(v, r, nsquare)
    e = _challenge(transcript, a, b)
    return PartialProof(index=share.index, challenge=e, response=int(r + e * witness))


def verify_partials(key_set: KeySet, index: int, ciphertexts: Sequence[int], partials: Sequence[int],
                    proof: PartialProof) -> None:
    """Return if `proof` shows that share `index` of `key_set` decrypted `ciphertexts` into `partials`;
    `CryptoError` otherwise (wrong partial, proof for other data or another share, malformed input)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= key_set.parties:
        raise CryptoError(f"share index {index!r} is not in [1, {key_set.parties}]")
    if proof.index != index:
        raise CryptoError(f"proof is for share {proof.index}, not {index}")
    if len(ciphertexts) != len(partials) or not ciphertexts:
        raise CryptoError("proof covers one partial per ciphertext, and at least one")
    n = gmpy2.mpz(key_set.n)
    nsquare = n * n
    cs = [_valid_ciphertext(c, n, nsquare, f"ciphertext {j}") for j, c in enumerate(ciphertexts)]
    ps = [_valid_ciphertext(c, n, nsquare, f"partial {j} of share {index}") for j, c in enumerate(partials)]
    bits = delta(key_set.parties).bit_length() + 2 * key_set.n.bit_length() + _CHALLENGE_BITS + _STATISTICAL_BITS
    if not 0 <= proof.challenge < 1 << _CHALLENGE_BITS or not 0 <= proof.response < 1 << (bits + 1):
        raise CryptoError(f"proof of share {index} is out of range")
    v_i = gmpy2.mpz(key_set.verification_keys[index - 1])
    v = gmpy2.mpz(key_set.verification_base)
    transcript = _transcript(key_set.n, index, cs, ps, int(v_i))
    big_c, big_ci = _batch(transcript, cs, ps, nsquare)
    z, e = gmpy2.mpz(proof.response), gmpy2.mpz(proof.challenge)
    a = gmpy2.powmod(big_c, 4 * z, nsquare) * gmpy2.powmod(big_ci, -2 * e, nsquare) % nsquare
    b = gmpy2.powmod(v, z, nsquare) * gmpy2.powmod(v_i, -e, nsquare) % nsquare
    if _challenge(transcript, a, b) != proof.challenge:
        raise CryptoError(f"partial decryptions of share {index} fail their proof of correctness")


def combine_verified(key_set: KeySet, ciphertexts: Sequence[int],
                     responses: Mapping[int, tuple[Sequence[int], PartialProof]]) -> tuple[list[int], list[int]]:
    """Verify each decryptor's proof, drop those that fail, combine `threshold` of the rest.

    Returns (plaintexts, indices whose proofs failed). `CryptoError` if fewer than `threshold` verify.
    """
    good: dict[int, Sequence[int]] = {}
    bad: list[int] = []
    for index in sorted(responses):
        partials, proof = responses[index]
        try:
            verify_partials(key_set, index, ciphertexts, partials, proof)
        except CryptoError:
            bad.append(index)
            continue
        good[index] = partials
    if len(good) < key_set.threshold:
        raise CryptoError(f"only {len(good)} decryptor(s) proved their partial decryptions "
                          f"(failed: {bad or 'none'}); combining needs {key_set.threshold}")
    chosen = {i: good[i] for i in sorted(good)[:key_set.threshold]}
    return combine(key_set.public_key, chosen, key_set.threshold, key_set.parties), bad
