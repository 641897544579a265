"""The key holder: the only object with the private key, and it decrypts aggregates only.

Policy, each enforced before any decryption (`KeyHolderRefusal` otherwise):
* at least `min_clients` (≥ 2) and at most `max_clients` distinct contributors, matching the count the payload
  carries; a single client's update is never decrypted;
* one decryption per round, and never the same ciphertexts twice (not even under another round number);
* every ciphertext well-formed (width, count, 0 < c < n², gcd(c, n) = 1) and, after decryption, consistent
  with the encoding's bound for that many contributors.
There is deliberately no call that decrypts one update.

Decryption runs on every core through a :class:`~fedgrad.crypto.decryption.ParallelDecryptor` whose worker
processes are part of this component (that module says why they hold the key and what keeps them contained).
Use the key holder as a context manager, or call :meth:`KeyHolder.close`, to stop them when the run ends.

Trust model: the key holder cannot see which ciphertexts went into the product, so it relies on the coordinator
for the contributor set. It stops an honest-but-curious or buggy coordinator from asking for less than an
aggregate; a malicious coordinator that forges the set (e.g. re-randomizes one client's update and claims two
contributors) would need signed client contributions checked here, which this component does not do.
"""
from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

import numpy as np
import phe

from fedgrad.crypto.config import SecureAggConfig
from fedgrad.crypto.decryption import ParallelDecryptor
from fedgrad.crypto.errors import CiphertextError, KeyHolderRefusal, PlaintextRangeError
from fedgrad.crypto.quantize import dequantize
from fedgrad.crypto.schemes import make_scheme
from fedgrad.crypto.wire import load_payload
from fedgrad.errors import ConfigError


class KeyHolder:
    """Decrypts the round's aggregate Σ_i w_i·q_i once, and only with enough distinct contributors."""

    def __init__(self, priv: phe.PaillierPrivateKey, cfg: SecureAggConfig, *, min_clients: int,
                 cores: int | None = None) -> None:
        """``cores``: most cores to decrypt on (default: all this process may use; 1: in this process only)."""
        if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 2:
            raise ConfigError(f"min_clients for secure aggregation must be an integer >= 2, got {min_clients!r}")
        if min_clients > cfg.max_clients:
            raise ConfigError(f"min_clients={min_clients} exceeds max_clients={cfg.max_clients}")
        self._priv = priv
        self._cfg = cfg
        self._min_clients = min_clients
        self._scheme = make_scheme(cfg, priv.public_key)
        self._decryptor = ParallelDecryptor(priv, self._scheme.n_ciphertexts, cores=cores)
        self._fingerprint = cfg.fingerprint(priv.public_key.n)
        self._rounds_done: set[int] = set()
        self._digests_done: set[bytes] = set()

    def decrypt_aggregate(self, round: int, contributors: Iterable[str], payload: bytes) -> np.ndarray:
        """Σ_i weight_i · quantized(clip(update_i)), dequantized to float64; the caller divides by Σ weight_i."""
        return self.decrypt_weighted_aggregate(round, contributors, payload)[0]

    def decrypt_weighted_aggregate(self, round: int, contributors: Iterable[str],
                                   payload: bytes) -> tuple[np.ndarray, int | None]:
        """As `decrypt_aggregate`, plus Σ_i n_i decrypted from the clients' weight slot under integer weights
        (`SecureAggConfig.max_weight` ≥ 1; None under fractional weights). Counts as the round's one decryption."""
        if isinstance(round, bool) or not isinstance(round, int):
            raise TypeError(f"round must be an int, got {round!r}")
        if isinstance(contributors, str):
            raise TypeError("contributors must be a collection of client ids, not one string")
        ids = frozenset(contributors)
        if not all(isinstance(client_id, str) for client_id in ids):
            raise TypeError("client ids must be strings")
        if len(ids) < self._min_clients:
            raise KeyHolderRefusal(f"round {round}: {len(ids)} distinct contributor(s); decrypting needs "
                                   f"at least {self._min_clients}, so no single update is ever revealed")
        if len(ids) > self._cfg.max_clients:
            raise KeyHolderRefusal(f"round {round}: {len(ids)} contributors exceed max_clients="
                                   f"{self._cfg.max_clients}, beyond the packing headroom")
        if round in self._rounds_done:
            raise KeyHolderRefusal(f"round {round} was already decrypted")
        try:
            parsed = load_payload(payload, pub=self._priv.public_key, fingerprint=self._fingerprint,
                                  count=self._scheme.n_ciphertexts)
        except CiphertextError as exc:
            raise KeyHolderRefusal(f"round {round}: invalid payload: {exc}") from exc
        if parsed.digest in self._digests_done:
            raise KeyHolderRefusal(f"round {round}: these ciphertexts were already decrypted")
        if parsed.contributors != len(ids):
            raise KeyHolderRefusal(f"round {round}: payload aggregates {parsed.contributors} updates "
                                   f"but {len(ids)} contributors were named")
        self._rounds_done.add(round)  # spent from here on, whatever happens during decryption
        self._digests_done.add(parsed.digest)
        plaintexts = self._decryptor.decrypt(parsed.ciphertexts)
        try:
            sums, total_weight = self._scheme.decode(plaintexts, len(ids))
        except PlaintextRangeError as exc:
            raise KeyHolderRefusal(f"round {round}: decrypted aggregate is not a sum of {len(ids)} valid "
                                   f"updates: {exc}") from exc
        return dequantize(self._cfg, sums), total_weight

    def close(self) -> None:
        """Stop the decryption workers (idempotent; they also stop when this object is collected or at exit)."""
        self._decryptor.close()

    def __enter__(self) -> KeyHolder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
