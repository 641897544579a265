"""Paillier secure aggregation on the coordinator: the key holder's home, and the accumulator that adds
ciphertexts without any key.

Who holds what:

- :func:`host_key_holder` generates the run's key pair and seals the private key inside a
  :class:`fedgrad.crypto.KeyHolder` on the spot. What leaves it is the public key and the key holder's
  one door, ``decrypt_aggregate(round, contributors, payload)``, which refuses anything but an aggregate of
  at least ``federation.min_clients`` distinct contributors, once per round. (Here the key holder lives in
  the coordinator's process; in a deployment it would be another party behind that same call.)
- :class:`PaillierAccumulator`, on the aggregation path, has the public key only. Each update is validated
  (header, fingerprint, width, count, 0 < c < n², gcd(c, n) = 1) and multiplied into the running product as
  it arrives; an invalid payload is a logged rejection and the round goes on without it. At the end the
  product goes through the door, and only the sum comes back. A plain update cannot even be added: its
  encoding is refused before its payload is read, and its bytes are not a ciphertext payload anyway.

Weights. Under FedAvg each client folds its share of the cohort's weight, f_i = w_i / Σ_cohort w, into its
update before encrypting (``fedgrad.crypto.quantize`` explains why that costs no packing headroom); the task
announces Σ_cohort w. The decrypted sum is Σ_i f_i·x_i over the clients that answered, and dividing by their
Σ_i f_i gives their weighted mean. Under DP (``unit_weights``) every client encrypts with weight 1.

A round with fewer than ``min_clients`` updates is retried by the coordinator with a fresh accumulator and
never decrypted. If the key holder refuses an aggregate that reached it (which only a client encrypting an
out-of-range plaintext can cause, see ``fedgrad.crypto.packing``), the run stops: that round number is spent.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import phe

from fedgrad.crypto import (Accumulator, AggregationError, CiphertextError, KeyHolder, SecureAggConfig, SlotLayout,
                            generate_keypair, public_key_to_bytes)
from fedgrad.crypto.schemes import make_scheme
from fedgrad.crypto.wire import HEADER_BYTES, ciphertext_width
from fedgrad.metrics import PhaseTimer
from fedgrad.scenario import Scenario
from fedgrad.transport import fedgrad_pb2 as pb
from server.aggregation import Aggregation, RoundCohort, UpdateAccumulator
from server.strategies import WeightedSum
from server.validation import Rejected

log = logging.getLogger("fedgrad.server")

#: The wire encoding of each secure-aggregation mode.
ENCODINGS: dict[str, int] = {"paillier": pb.PAILLIER, "paillier-naive": pb.PAILLIER_NAIVE}

#: The key holder's one call: (round, contributors, aggregate payload) -> Σ_i f_i·x_i as float64.
DecryptAggregate = Callable[[int, Iterable[str], bytes], np.ndarray]


def host_key_holder(cfg: SecureAggConfig, *, key_bits: int, insecure_key_bits: bool,
                    min_clients: int) -> tuple[phe.PaillierPublicKey, DecryptAggregate]:
    """Generate a key pair, give the private key to a new :class:`KeyHolder` and return only the public key
    and the key holder's ``decrypt_aggregate``: from here on the key holder is the only holder of the key."""
    public_key, private_key = generate_keypair(key_bits, insecure_key_bits)
    key_holder = KeyHolder(private_key, cfg, min_clients=min_clients)
    return public_key, key_holder.decrypt_aggregate


class PaillierAggregation(Aggregation):
    """One run's secure aggregation: its configuration, public key and the key holder's door."""

    def __init__(self, cfg: SecureAggConfig, public_key: phe.PaillierPublicKey, decrypt: DecryptAggregate,
                 *, unit_weights: bool = False) -> None:
        self.cfg = cfg
        self.public_key = public_key
        self.unit_weights = unit_weights
        self._decrypt = decrypt
        self._config_json = json.dumps(cfg.to_dict(), sort_keys=True)
        self._public_key_bytes = public_key_to_bytes(public_key)
        self.ciphertexts = make_scheme(cfg, public_key).n_ciphertexts
        self.payload_bytes = HEADER_BYTES + self.ciphertexts * ciphertext_width(public_key)

    def announcement(self, cohort_weight: float) -> pb.SecureAggregation:
        """What a TRAIN task tells the client (``cohort_weight`` 0: every client encrypts with weight 1)."""
        return pb.SecureAggregation(config_json=self._config_json, public_key=self._public_key_bytes,
                                    cohort_weight=cohort_weight, encoding=ENCODINGS[self.cfg.mode])

    def new_accumulator(self, specs: Sequence[pb.TensorSpec], cohort: RoundCohort) -> PaillierAccumulator:
        return PaillierAccumulator(specs, cohort, self, self._decrypt)

    def summary(self) -> dict[str, Any]:
        key_bits = int(self.public_key.n).bit_length()
        entry = {"mode": self.cfg.mode, "key_bits": key_bits, "clip": self.cfg.clip,
                 "value_bits": self.cfg.value_bits, "max_clients": self.cfg.max_clients,
                 "ciphertexts_per_update": self.ciphertexts, "update_bytes": self.payload_bytes,
                 "bytes_per_param": self.payload_bytes / self.cfg.n_params,
                 "guarantee": "the coordinator sees only ciphertexts and the decrypted sum of at least "
                              "federation.min_clients updates, never one client's update"}
        if self.cfg.mode == "paillier":
            entry["slots_per_ciphertext"] = SlotLayout.derive(self.cfg.value_bits, self.cfg.max_clients,
                                                              key_bits).slots
        return entry


class PaillierAccumulator(UpdateAccumulator):
    """One round attempt's homomorphic sum (see the module docstring); holds the public key only."""

    def __init__(self, specs: Sequence[pb.TensorSpec], cohort: RoundCohort, aggregation: PaillierAggregation,
                 decrypt: DecryptAggregate) -> None:
        self._shapes = {spec.name: tuple(spec.shape) for spec in specs}
        n_params = sum(math.prod(shape) for shape in self._shapes.values())
        if n_params != aggregation.cfg.n_params:
            raise ValueError(f"the model has {n_params} parameters, the secure-aggregation config "
                             f"{aggregation.cfg.n_params}")
        self._round = cohort.round_number
        self._unit_weights = aggregation.unit_weights
        self._cohort_weight = cohort.total_weight
        self._decrypt = decrypt
        self._sum = Accumulator(aggregation.cfg, aggregation.public_key)
        self._fractions: dict[str, float] = {}
        self.encoding = ENCODINGS[aggregation.cfg.mode]
        self.payload_bytes = aggregation.payload_bytes
        self.secure_aggregation = aggregation.announcement(0.0 if self._unit_weights else self._cohort_weight)

    def add(self, client_id: str, weight: float, payload: bytes | bytearray) -> None:
        try:
            self._sum.add(client_id, payload)
        except CiphertextError as error:
            log.warning("round %d: rejected client %s's ciphertexts: %s", self._round, client_id, error)
            raise Rejected.invalid(f"invalid ciphertext payload: {error}") from None
        except AggregationError as error:  # the aggregate holds max_clients updates already
            raise Rejected.resource(str(error)) from None
        self._fractions[client_id] = 1.0 if self._unit_weights else weight / self._cohort_weight

    def finalize(self, timer: PhaseTimer) -> WeightedSum:
        with timer.phase("aggregate"):
            aggregate = self._sum.payload()
            contributors = self._sum.contributors
        with timer.phase("decrypt"):
            flat = self._decrypt(self._round, contributors, aggregate)
        return WeightedSum(total=_unflatten(flat, self._shapes), weight=math.fsum(self._fractions.values()),
                           contributors=tuple(sorted(contributors)))


def _unflatten(flat: np.ndarray, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Split a flat vector into tensors in manifest order (the order clients flattened their updates in)."""
    tensors, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        tensors[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    return tensors


def secure_config(scenario: Scenario, model: Mapping[str, np.ndarray], *, mode: str, clip: float) -> SecureAggConfig:
    """The run's packing configuration: the model's size, the scenario's value bits and the packing bound
    ``federation.max_clients`` (0: ``clients_per_round``, the most updates a round can sum)."""
    return SecureAggConfig(mode=mode, n_params=sum(int(np.asarray(v).size) for v in model.values()), clip=clip,
                           value_bits=scenario.privacy.value_bits,
                           max_clients=scenario.federation.effective_max_clients)


def build_paillier_aggregation(scenario: Scenario, model: Mapping[str, np.ndarray], *, mode: str | None = None,
                               clip: float | None = None, unit_weights: bool = False) -> PaillierAggregation:
    """Secure aggregation for ``scenario`` (``privacy.mode``, ``privacy.clip`` unless given), with a fresh key."""
    privacy = scenario.privacy
    cfg = secure_config(scenario, model, mode=mode or privacy.mode, clip=privacy.clip if clip is None else clip)
    public_key, decrypt = host_key_holder(cfg, key_bits=privacy.key_bits, insecure_key_bits=privacy.insecure_key_bits,
                                          min_clients=scenario.federation.min_clients)
    return PaillierAggregation(cfg, public_key, decrypt, unit_weights=unit_weights)
