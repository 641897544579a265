"""Local work of a client: load the global model, train or evaluate on a shard, return the result.

One :class:`LocalTrainer` serves every client its process hosts. The model is built once per model
specification and device and then only reloaded with each task's global weights, so a round pays
for training, not for building. Calls are meant to run one at a time (the client pool gives the
trainer a single worker thread); each call fully overwrites the weights, so clients never see each
other's state, and training depends only on the global model, the shard and the task's seed.

:meth:`LocalTrainer.train_update` also encodes the update as the task asks (clipping, DP noise share,
Paillier encryption: the round's privacy mode, ``fedgrad.modes``) on that worker thread, and times the two steps
apart. Under secure aggregation it withholds the local training metrics: a client's loss is a function of its data, and
the point is that the coordinator learns nothing about one client beyond what the aggregate shows.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from fedgrad.attacks import ClientAttack
from fedgrad.data import Shard
from fedgrad.errors import ConfigError
from fedgrad.models import SpamModel, model_from_config
from fedgrad.modes.base import DEFAULT_CLIENT_PRIVACY, ClientPrivacy
from fedgrad.modes.resolve import encode_update, sends_ciphertexts
from fedgrad.policy import PolicyGuard, RunPolicy
from fedgrad.protocol import EncodedUpdate, TaskConfig, TrainTask, model_digest
from fedgrad.training import evaluate, train_local
from fedgrad.usercode import is_reference


@dataclass(frozen=True)
class TrainResult:
    delta: dict[str, np.ndarray]  # trained weights minus the global weights, float32
    metrics: dict[str, float]     # the local training metrics (loss, steps)
    train_s: float


@dataclass(frozen=True)
class LocalUpdate:
    """A trained, encoded update ready for the coordinator."""

    encoded: EncodedUpdate
    metrics: dict[str, float]  # empty under secure aggregation (see the module docstring)
    train_s: float
    encode_s: float            # clipping, noise, quantization, packing and encryption


class LocalTrainer:
    """Trains and evaluates the task's model on a given shard (see the module docstring).

    ``device`` overrides the device the task names (for a client on a machine with a GPU, say);
    ``privacy`` holds what the client decides for itself when it encodes (key size, noise seed);
    ``trusted_code`` lists the user models (``"package.module:factory"``) this client agrees to import and run
    when a task names one: the coordinator chooses the model, so without this list it could make every
    client run any importable callable.
    """

    def __init__(self, device: str | None = None, privacy: ClientPrivacy = DEFAULT_CLIENT_PRIVACY,
                 trusted_code: Collection[str] = (), attacks: Mapping[str, ClientAttack] | None = None) -> None:
        self._device = device
        self._privacy = privacy
        self._trusted_code = frozenset(trusted_code)
        self._attacks = dict(attacks or {})  # a simulation's attacking clients (fedgrad.attacks); empty otherwise
        self._models: dict[tuple[str, str], SpamModel] = {}
        self._guard = (PolicyGuard(RunPolicy.load(privacy.policy), privacy.training_seed)
                       if privacy.policy is not None else None)

    def train(self, shard: Shard, config: TaskConfig, global_model: Mapping[str, np.ndarray]) -> TrainResult:
        model = self._load(config, global_model)
        started = time.perf_counter()
        settings = dataclasses.asdict(config.train)
        start = ({"start_loss": float(evaluate(model, shard, batch_size=config.train.batch_size)["loss"])}
                 if settings.pop("report_start_loss") else {})
        result = train_local(model, shard, seed=config.seed or 0, **settings)
        train_s = time.perf_counter() - started
        trained = model.state_dict()
        delta = {name: trained[name] - value for name, value in global_model.items()}
        metrics = {**start, **{name: float(value) for name, value in result.items() if name != "n_examples"}}
        return TrainResult(delta, metrics, train_s)

    def train_update(self, client_id: str, shard: Shard, task: TrainTask,
                     global_model: Mapping[str, np.ndarray]) -> LocalUpdate:
        """Train on ``shard`` as the TRAIN ``task`` says, then encode the delta as its privacy mode asks. A client
        with a run policy first checks the task against it and shuffles with its own seed (``fedgrad.policy``):
        :class:`~fedgrad.policy.PolicyRefused` when the task does not fit."""
        task = dataclasses.replace(task, model_digest=model_digest({name: global_model[name]
                                                                   for name in task.tensor_names}))
        config = task.config
        if self._guard is not None:
            config = dataclasses.replace(config, seed=self._guard.admit(task, client_id, global_model))
        attack = self._attacks.get(client_id)
        if attack is not None and attack.active(task.round):  # the same path, with its data or update altered
            result = self.train(attack.poisoned(shard), config, global_model)
            result = dataclasses.replace(result, delta=attack.tampered(result.delta))
        else:
            result = self.train(shard, config, global_model)
        started = time.perf_counter()
        encoded = encode_update(task, client_id, result.delta, self._privacy)
        encode_s = time.perf_counter() - started
        metrics = {} if sends_ciphertexts(task) else result.metrics
        return LocalUpdate(encoded, metrics, result.train_s, encode_s)

    def evaluate(self, shard: Shard, config: TaskConfig, global_model: Mapping[str, np.ndarray]) -> dict[str, float]:
        model = self._load(config, global_model)
        result = evaluate(model, shard, batch_size=config.train.batch_size)
        return {name: float(value) for name, value in result.items() if name != "n"}

    def _load(self, config: TaskConfig, global_model: Mapping[str, np.ndarray]) -> SpamModel:
        device = self._device or config.device
        key = (json.dumps([dataclasses.asdict(config.model), config.vocab_size], sort_keys=True), device)
        model = self._models.get(key)
        if model is None:
            name = config.model.name
            if is_reference(name) and name not in self._trusted_code:
                raise ConfigError(f"model.name: the coordinator asks this client to run user code {name!r}, which it "
                                  f"does not trust (start it with --trust-code {name})")
            model = self._models[key] = model_from_config(config.model, config.vocab_size, seed=0).to(device)
        model.load_state_dict(global_model)
        return model
