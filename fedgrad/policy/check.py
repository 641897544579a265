"""A client's check of every TRAIN task against its pinned run policy, and the client-held training seed.

The coordinator chooses everything in a task. A client started with a policy (``fedgrad client --policy``)
trains and encodes only a task that fits it, and refuses anything else with one line saying what did not fit:

- no privacy announcement (the update would travel in plaintext), another mode, another run;
- a public key other than the policy's key set (the coordinator's own key would let it decrypt alone);
- a cohort that does not list this client once, or is smaller than the policy's ``min_clients``;
- training settings other than the policy's (``epochs = 0`` or ``lr = 0`` sent to everyone but a victim make
  their deltas zero, and an honest release then equals the victim's update);
- announcement parameters other than what the policy's mode computes itself (``PrivacyMode.pinned_params``: the
  packing, clip, weight cap, randomizer rule, and under distributed DP the noise share, which the client derives
  from the policy's ε, δ, clip, cohort and rounds: a coordinator announcing ``noise_std = 0`` is refused);
- a model this client already trained on in another round of the run (re-issuing it to a smaller cohort and
  differencing two releases would give the client's update); the same round again is a resumed round.

Local training takes its randomness (shuffling) from the client, never from the task's seed: fresh OS entropy, or,
for a reproducible simulation, a seed the client's operator gave it (``--training-seed``), mixed with the round and
the client id. The once-per-model rule lives in this process's memory: a client restarted mid-run forgets it.
"""
from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from fedgrad.modes.base import EncodingRefused
from fedgrad.modes.resolve import privacy_mode
from fedgrad.policy.document import RunPolicy, public_key_fingerprint
from fedgrad.protocol import TrainTask, model_digest
from fedgrad.training import client_seed


class PolicyRefused(EncodingRefused):
    """A task outside this client's run policy; the message is the one-line reason."""


class PolicyGuard:
    """One client process's pinned policy and what its clients already trained on (see the module docstring)."""

    def __init__(self, policy: RunPolicy, training_seed: int | None = None) -> None:
        self.policy = policy
        self._training_seed = training_seed
        self._train = policy.task_settings().train
        self._trained: dict[tuple[str, bytes], int] = {}  # (client id, model digest) -> round
        self._mode = privacy_mode(policy.scenario)
        self._pinned: dict[int, dict[str, Any]] = {}  # parameters -> announcement (DP calibrates: computed once)
        self._lock = threading.Lock()

    def admit(self, task: TrainTask, client_id: str, model: Mapping[str, np.ndarray]) -> int:
        """Check ``task`` against the policy and record it; the training seed this client uses for it.
        :class:`PolicyRefused` with the reason when it does not fit."""
        policy = self.policy
        announcement = task.announcement

        def refuse(reason: str) -> PolicyRefused:
            return PolicyRefused(f"client {client_id} refuses the task of round {task.round}: {reason} "
                                 f"(run policy {policy.run!r})")

        if announcement is None:
            raise refuse("it carries no privacy announcement, so the update would travel in plaintext")
        if announcement.mode != policy.mode:
            raise refuse(f"it announces privacy mode {announcement.mode!r}, the policy pins {policy.mode!r}")
        if task.run_id != policy.run:
            raise refuse(f"it is for run {task.run_id!r:.60}, the policy pins {policy.run!r}")
        if public_key_fingerprint(announcement.public_key) != policy.key_set:
            raise refuse("it announces a public key other than the policy's key set")
        cohort = announcement.cohort
        if cohort.count(client_id) != 1 or len(set(cohort)) != len(cohort):
            raise refuse("the announced cohort does not list each client once, this one included")
        if len(cohort) < policy.min_clients:
            raise refuse(f"the announced cohort has {len(cohort)} clients, the policy's min_clients is "
                         f"{policy.min_clients}")
        config = task.config
        if config.model != policy.scenario.model or config.vocab_size != policy.vocab_size:
            raise refuse("its model is not the policy's")
        if config.train != self._train:
            raise refuse(f"its training settings {asdict(config.train)} are not the policy's {asdict(self._train)}")
        n_params = sum(int(np.asarray(model[name]).size) for name in task.tensor_names)
        pinned = self._pinned.get(n_params)
        if pinned is None:
            pinned = self._pinned[n_params] = dict(self._mode.pinned_params(n_params))
        if dict(announcement.params) != dict(pinned):
            changed = sorted(key for key in {*announcement.params, *pinned}
                             if announcement.params.get(key) != pinned.get(key))
            raise refuse(f"its announced {', '.join(changed)} differ from what this client computes from the policy")
        digest = task.model_digest or model_digest({name: model[name] for name in task.tensor_names})
        with self._lock:
            earlier = self._trained.setdefault((client_id, digest), task.round)
        if earlier != task.round:
            raise refuse(f"this client trained on the same model in round {earlier}; a model is trained on in one "
                         "round only")
        if self._training_seed is None:
            return secrets.randbits(63)
        return client_seed(self._training_seed, task.round, client_id)
