"""The run policy: what the operator fixes for a secure federation, so that no party takes the coordinator's word.

The coordinator relays; it does not decide what protects a client. Every setting that shapes what a client's
update reveals is written once by the operator (``fedgrad policy``, next to ``keygen`` and ``enroll``; ``simulate``
writes it into its private parties directory) and handed to every client and decryptor out of band, as the
enrollment is. A client checks each task against it (``fedgrad.policy.check``); a decryptor serves only its run,
with its ``min_clients`` and cohort fraction. What it pins:

- ``run``: the run id. The coordinator must use it; decryptors serve no other run, so their once-per-(run, round)
  rule holds across coordinator restarts, and clients contribute at most once per (run, model);
- ``scenario``: the operator's scenario (its tables, as ``Scenario.to_dict``) and ``vocab_size``: the privacy mode
  and everything that mode announces (packing, clip, value bits, weight cap, randomizer rule, the DP parameters
  each client computes its own noise share from), and the training settings that shape an update (model, epochs,
  batch size, learning rate, optimizer, momentum, FedProx's μ);
- ``key_set``: SHA-256 of the threshold key set's public modulus; a client encrypts to no other key;
- ``min_clients`` and ``min_fraction``: the smallest sum a decryptor releases, as a count and as a fraction of the
  round's announced cohort (``release`` needs at least ``max(min_clients, ⌈min_fraction·cohort⌉)``), so that a
  coordinator cannot claim the rest of a cohort dropped to isolate one client with few colluders;
- ``coordinator_cert``: SHA-256 of the coordinator's client certificate (DER) for the decryptor channel. A
  decryptor given the policy serves only mutual TLS and answers only the peer presenting that certificate, so
  nobody else (another holder of a certificate from the same CA included) can open sessions and evict the
  coordinator's.

File: JSON ``{"format": "fedgrad/run-policy/v1", ...}``, public (mode 0644): it holds no secret.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedgrad.crypto.keys import public_key_to_bytes
from fedgrad.crypto.threshold import KeySet
from fedgrad.errors import ConfigError, FedgradError
from fedgrad.files import write_atomic
from fedgrad.modes.resolve import privacy_mode
from fedgrad.protocol import TaskConfig
from fedgrad.scenario import Scenario
from fedgrad.security.certs import certificate_fingerprint

_FORMAT = "fedgrad/run-policy/v1"
#: Default share of the announced cohort a release needs (against a coordinator claiming that the rest of a
#: large cohort dropped), and of ``clients_per_round`` that ``min_clients`` is raised to (:func:`policy_min_clients`).
DEFAULT_MIN_FRACTION = 0.5
#: Default least number of contributors a release needs, whatever the round's size allows above it.
DEFAULT_MIN_CLIENTS = 3


class PolicyError(ConfigError):
    """A policy file that cannot be read or does not fit the federation it is used for."""


def key_set_fingerprint(key_set: KeySet) -> str:
    """Hex SHA-256 of the threshold key's public modulus, in ``public_key_to_bytes`` form."""
    return hashlib.sha256(public_key_to_bytes(key_set.public_key)).hexdigest()


def public_key_fingerprint(public_key: bytes) -> str:
    """The fingerprint of an announced public key (``public_key_to_bytes`` bytes)."""
    return hashlib.sha256(bytes(public_key)).hexdigest()


@dataclass(frozen=True)
class RunPolicy:
    """One federation's run policy (see the module docstring)."""

    run: str
    scenario: Scenario
    vocab_size: int
    key_set: str
    min_clients: int
    min_fraction: float
    coordinator_cert: str = ""  # empty: not pinned (then the decryptors must not be reachable by others)

    def __post_init__(self) -> None:
        if not self.run or not isinstance(self.run, str):
            raise PolicyError("run policy: the run id must be a non-empty string")
        mode = privacy_mode(self.scenario)
        if not mode.needs_decryptors:
            raise PolicyError(f"run policy: privacy mode {mode.settings_line()!r} has no decryptors to hold a policy; "
                              "a run policy is for threshold secure aggregation")
        if isinstance(self.min_clients, bool) or not isinstance(self.min_clients, int) or self.min_clients < 2:
            raise PolicyError(f"run policy: min_clients must be an integer >= 2, got {self.min_clients!r}")
        if not 0.0 < self.min_fraction <= 1.0:
            raise PolicyError(f"run policy: min_fraction must be in (0, 1], got {self.min_fraction!r}")
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 1:
            raise PolicyError(f"run policy: vocab_size must be a positive integer, got {self.vocab_size!r}")

    @property
    def mode(self) -> str:
        return self.scenario.privacy.mode

    def min_contributors(self, cohort: int) -> int:
        """The fewest contributors a release of a round whose announced cohort has ``cohort`` members needs."""
        return max(self.min_clients, math.ceil(self.min_fraction * cohort - 1e-9))

    def to_json(self) -> str:
        return json.dumps({"format": _FORMAT, "run": self.run, "key_set": self.key_set,
                           "min_clients": self.min_clients, "min_fraction": self.min_fraction,
                           "coordinator_cert": self.coordinator_cert,
                           "vocab_size": self.vocab_size, "scenario": self.scenario.to_dict()},
                          indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> RunPolicy:
        try:
            doc: Any = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise PolicyError("malformed run policy: not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise PolicyError(f"malformed run policy: expected format {_FORMAT!r}")
        try:
            return cls(run=str(doc["run"]), scenario=Scenario.from_dict(doc["scenario"]),
                       vocab_size=doc["vocab_size"], key_set=str(doc["key_set"]), min_clients=doc["min_clients"],
                       min_fraction=float(doc["min_fraction"]), coordinator_cert=str(doc.get("coordinator_cert", "")))
        except KeyError as exc:
            raise PolicyError(f"malformed run policy: missing {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"malformed run policy: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, mode 0644: a policy is public."""
        write_atomic(Path(path), self.to_json(), 0o644)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunPolicy:
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise PolicyError(f"cannot read run policy {path}: {exc.strerror}") from None
        try:
            return cls.from_json(text)
        except ConfigError as exc:
            raise PolicyError(f"{path}: {exc}") from None

    def task_settings(self) -> TaskConfig:
        """The task settings the policy fixes (:func:`task_settings`)."""
        return task_settings(self.scenario, self.vocab_size)

    def check_key_set(self, key_set: KeySet) -> None:
        """:class:`PolicyError` unless ``key_set`` is the key this policy pins."""
        if key_set_fingerprint(key_set) != self.key_set:
            raise PolicyError(f"the key set is not the one run policy {self.run!r} pins")


def task_settings(scenario: Scenario, vocab_size: int) -> TaskConfig:
    """The task settings of ``scenario`` as its coordinator sends them (the seed aside): the model, the vocabulary
    and the local training settings, FedProx's μ included (0 for the other built-in strategies)."""
    fed = scenario.federation
    config = TaskConfig.from_scenario(scenario, vocab_size)
    return config.for_client(0, {"prox_mu": fed.prox_mu} if fed.strategy == "fedprox" else {})


def policy_min_clients(scenario: Scenario) -> int:
    """``min_clients`` of a policy for ``scenario``: the scenario's, raised to max(:data:`DEFAULT_MIN_CLIENTS`,
    ⌈:data:`DEFAULT_MIN_FRACTION` · clients_per_round⌉) as far as a round's size allows. The coordinator chooses
    how many clients it announces, so this, not the cohort fraction, is what bounds the smallest sum: the
    coordinator needs ``min_clients − 1`` colluding clients to read one update (4 at ten per round)."""
    fed = scenario.federation
    wanted = max(DEFAULT_MIN_CLIENTS, math.ceil(DEFAULT_MIN_FRACTION * fed.clients_per_round))
    return max(fed.min_clients, min(wanted, fed.clients_per_round))


def make_policy(scenario: Scenario, vocab_size: int, key_set: KeySet, *, run: str,
                min_fraction: float = DEFAULT_MIN_FRACTION, coordinator_cert: Path | None = None) -> RunPolicy:
    """The operator's policy for ``scenario`` under ``key_set`` (``min_clients``: :func:`policy_min_clients`);
    ``coordinator_cert``: the PEM certificate the coordinator presents to the decryptors, pinned."""
    pin = ""
    if coordinator_cert is not None:
        try:
            pin = certificate_fingerprint(coordinator_cert.read_bytes())
        except (OSError, FedgradError) as error:
            raise PolicyError(f"{coordinator_cert}: {getattr(error, 'strerror', None) or error}") from None
    return RunPolicy(run=run, scenario=scenario, vocab_size=vocab_size, key_set=key_set_fingerprint(key_set),
                     min_clients=policy_min_clients(scenario), min_fraction=min_fraction, coordinator_cert=pin)
