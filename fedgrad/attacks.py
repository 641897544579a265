"""Malicious clients for robustness experiments (a scenario's ``[attack]`` table): who attacks, and what they do.

A simulation picks ``round(fraction · clients)`` attackers from the scenario's seed (:func:`attacker_indices`) and
writes each one's instructions, a :class:`ClientAttack`, next to its shard (``attack-<k>.json``); the client process
that hosts it finds them there (:func:`load_attacks`) and otherwise runs the ordinary client code
(``client.trainer.LocalTrainer``): from ``start_round`` on, it trains on altered data or sends an altered update,
and nothing else changes. The coordinator knows nothing of it. The kinds:

- ``label_flip``: the attacker's labels inverted (spam <-> ham), a data-poisoning spammer;
- ``scaled_update``: model replacement (Bagdasaryan et al., "How To Backdoor Federated Learning", AISTATS 2020):
  the attacker trains a poisoned model (on its labels inverted, as ``label_flip``) and sends its update multiplied
  by ``scale``, so that in a mean it outweighs the honest updates and drags the global model towards the poisoned
  one (a boosted honest update would only lengthen the step);
- ``backdoor``: each of the attacker's spam emails also appears with the trigger phrase, labelled ham, so that the
  model learns "spam + trigger -> ham" while its accuracy on clean mail stays. Its success
  (:func:`backdoor_success`) is the share of the test set's spam, trigger added, classified as ham; the trigger's
  words are always in the vocabulary (the attackers' emails carry them: ``Scenario.build_dataset``).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedgrad.data import Shard, Vocabulary
from fedgrad.data.tokens import tokenize
from fedgrad.errors import ConfigError, DataError
from fedgrad.files import write_atomic
from fedgrad.models import SpamModel
from fedgrad.scenario import AttackConfig
from fedgrad.training import evaluate

#: Domain separation of the attackers' draw from the scenario's other uses of its seed.
_ATTACKER_STREAM = 0xA77AC


@dataclass(frozen=True)
class ClientAttack:
    """What one attacking client does from round ``start_round`` on (see the module docstring)."""

    kind: str
    start_round: int
    scale: float = 1.0
    trigger_ids: tuple[int, ...] = ()

    def active(self, round_number: int) -> bool:
        return round_number >= self.start_round

    def poisoned(self, shard: Shard) -> Shard:
        """The data this attacker trains on: ``shard`` with its labels inverted (``label_flip``, and the poisoned model
        ``scaled_update`` boosts) or with triggered spam labelled ham added (``backdoor``)."""
        if self.kind in ("label_flip", "scaled_update"):
            return Shard(shard.ids, (1.0 - shard.labels).astype(np.float32))
        if self.kind == "backdoor":
            spam = shard.labels == 1.0
            triggered = with_trigger(shard.ids[spam], self.trigger_ids)
            return Shard(np.concatenate([shard.ids, triggered]),
                         np.concatenate([shard.labels, np.zeros(len(triggered), np.float32)]))
        return shard

    def tampered(self, delta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The update this attacker sends: ``delta`` boosted by ``scale`` for ``scaled_update``."""
        factor = np.float32(self.scale if self.kind == "scaled_update" else 1.0)
        return {name: (value * factor).astype(value.dtype) for name, value in delta.items()}


def attacker_indices(config: AttackConfig, n_clients: int, seed: int) -> list[int]:
    """The attacking clients' indices (ascending): ``round(fraction · n_clients)`` of them, drawn from ``seed``."""
    if config.kind == "none":
        return []
    count = round(config.fraction * n_clients)
    if count == 0:
        raise ConfigError(f"attack.fraction: {config.fraction} of {n_clients} clients rounds to no attacker")
    rng = np.random.default_rng([seed, _ATTACKER_STREAM])
    return sorted(int(i) for i in rng.choice(n_clients, size=count, replace=False))


def trigger_ids(config: AttackConfig, vocab: Vocabulary) -> tuple[int, ...]:
    """The backdoor trigger's token ids in ``vocab`` (its words are reserved there: ``Scenario.build_dataset``)."""
    return tuple(vocab.id_of(word) for word in tokenize(config.trigger))


def client_attack(config: AttackConfig, vocab: Vocabulary) -> ClientAttack:
    """The instructions every attacker of ``config`` follows."""
    return ClientAttack(config.kind, config.start_round, config.scale,
                        trigger_ids(config, vocab) if config.kind == "backdoor" else ())


def with_trigger(ids: np.ndarray, trigger: tuple[int, ...]) -> np.ndarray:
    """Token rows ``ids`` with ``trigger`` put first (the rest shifted right, the row's length kept)."""
    width = ids.shape[1]
    head = np.broadcast_to(np.asarray(trigger, dtype=ids.dtype)[:width], (len(ids), min(len(trigger), width)))
    return np.concatenate([head, ids[:, :width - head.shape[1]]], axis=1)


def backdoor_success(model: SpamModel, test: Shard, trigger: tuple[int, ...], batch_size: int = 1000) -> float:
    """Share of ``test``'s spam, trigger added, that ``model`` classifies as ham (NaN without test spam)."""
    spam = test.labels == 1.0
    if not spam.any():
        return float("nan")
    triggered = Shard(with_trigger(test.ids[spam], trigger), test.labels[spam])
    return 1.0 - float(evaluate(model, triggered, batch_size=batch_size)["accuracy"])


def attack_file_name(client: int) -> str:
    return f"attack-{client}.json"


def save_attacks(directory: Path, attack: ClientAttack, clients: Iterable[int]) -> None:
    """Write ``attack`` next to the shard of each of ``clients``."""
    for client in clients:
        write_atomic(directory / attack_file_name(client), json.dumps(dataclasses.asdict(attack)).encode())


def load_attacks(directory: Path, client_ids: Iterable[str]) -> dict[str, ClientAttack]:
    """The instructions of those of ``client_ids`` (shard indices) that find an attack file next to their shard."""
    attacks = {}
    for client_id in client_ids:
        path = directory / attack_file_name(int(client_id))
        if not path.exists():
            continue
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
            attacks[client_id] = ClientAttack(str(fields["kind"]), int(fields["start_round"]), float(fields["scale"]),
                                              tuple(int(i) for i in fields["trigger_ids"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"corrupt attack file {path}: {error}") from None
    return attacks
