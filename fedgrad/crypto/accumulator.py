"""Coordinator side: the homomorphic sum of client payloads, computed with the public key only."""
from __future__ import annotations

import gmpy2
import phe

from fedgrad.crypto.config import SecureAggConfig
from fedgrad.crypto.errors import AggregationError, CiphertextError
from fedgrad.crypto.schemes import make_scheme
from fedgrad.crypto.wire import ciphertext_width, dump_payload, load_payload


class Accumulator:
    """Running product mod n² of the clients' ciphertexts (= encryption of the sum of their plaintexts).

    Streaming: each payload is validated in full, then folded into the running product and dropped, so memory
    is one ciphertext vector whatever the number of clients. A rejected payload leaves the sum untouched.
    At most `cfg.max_clients` contributions are accepted: beyond that the packing headroom is not guaranteed.
    """

    def __init__(self, cfg: SecureAggConfig, pub: phe.PaillierPublicKey, *, fingerprint: bytes | None = None,
                 count: int | None = None) -> None:
        """Payloads of `cfg`'s packed updates, or with ``fingerprint`` and ``count`` those of another layout under
        the same key and bound (`fedgrad.crypto.masked`: the clients' mask keys)."""
        self._pub = pub
        self._nsquare = gmpy2.mpz(pub.nsquare)
        self._max_clients = cfg.max_clients
        self._count = count if count is not None else make_scheme(cfg, pub).n_ciphertexts
        self._fingerprint = fingerprint if fingerprint is not None else cfg.fingerprint(pub.n)
        self._width = ciphertext_width(pub)
        self._sum: list[gmpy2.mpz] | None = None
        self._contributors: set[str] = set()

    @property
    def contributors(self) -> frozenset[str]:
        return frozenset(self._contributors)

    def add(self, client_id: str, payload: bytes) -> None:
        """Validate one client's payload (width, count, 0 < c < n², gcd(c, n) = 1) and fold it into the sum."""
        if not isinstance(client_id, str) or not client_id:
            raise AggregationError(f"client id must be a non-empty string, got {client_id!r}")
        if client_id in self._contributors:
            raise AggregationError(f"client {client_id!r} already contributed to this aggregate")
        if len(self._contributors) >= self._max_clients:
            raise AggregationError(f"aggregate already holds max_clients={self._max_clients} contributions")
        parsed = load_payload(payload, pub=self._pub, fingerprint=self._fingerprint, count=self._count)
        if parsed.contributors != 1:
            raise CiphertextError(f"client {client_id!r} sent an aggregate of {parsed.contributors} updates")
        if self._sum is None:
            self._sum = parsed.ciphertexts
        else:
            nsquare, total = self._nsquare, self._sum
            for i, c in enumerate(parsed.ciphertexts):
                total[i] = total[i] * c % nsquare
        self._contributors.add(client_id)

    def ciphertexts(self) -> list[int]:
        """The running product, one integer per ciphertext."""
        if self._sum is None:
            raise AggregationError("no contributions to aggregate")
        return [int(c) for c in self._sum]

    def payload(self) -> bytes:
        """The aggregate, in the same wire format, tagged with its number of contributors."""
        if self._sum is None:
            raise AggregationError("no contributions to aggregate")
        return dump_payload(self._fingerprint, len(self._contributors), self._sum, self._width)
