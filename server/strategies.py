"""Federated optimisation strategies: how a round is configured and how its aggregate moves the global model.

A strategy follows Flower's split into three small steps, all on plain ``{name: np.ndarray}`` state dicts:

- ``configure(round, clients)``: per selected client, its aggregation weight and the extra local-training
  options the strategy needs (FedProx's ``prox_mu``);
- ``aggregate(summed)``: the weighted sum of the round's deltas (built incrementally by an
  :class:`~fedgrad.modes.base.UpdateAccumulator`) turned into one averaged delta;
- ``apply(global_model, delta)``: the server-side optimiser step producing the next global model.

Clients send deltas ``Δ_k = w_local - w_global``, so the averaged delta is the negative of a
"pseudo-gradient" and every server optimiser below *adds* its step.
Strategy state that must survive a coordinator restart (FedAdam's moments) is exposed through
``state_dict``/``load_state_dict`` so a checkpoint can hold it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedgrad.errors import ConfigError
from fedgrad.protocol import WeightedSum
from fedgrad.usercode import describe_failure, is_reference, load_reference

StateDict = dict[str, np.ndarray]


@dataclass(frozen=True)
class ClientInfo:
    """What the coordinator knows about a joined client when it configures a round."""

    client_id: str
    n_examples: int


@dataclass(frozen=True)
class Instruction:
    """A strategy's per-client settings for one round."""

    weight: float
    train_options: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Weights clients by example count and averages their deltas; subclasses choose the server step."""

    name: str

    def configure(self, round_number: int, clients: Sequence[ClientInfo]) -> dict[str, Instruction]:
        return {client.client_id: Instruction(weight=float(client.n_examples)) for client in clients}

    def aggregate(self, summed: WeightedSum) -> StateDict:
        """The weighted mean delta, as float32 like the model it updates."""
        if summed.weight <= 0:
            raise ValueError("cannot average a round whose contributors have zero total weight")
        return {name: (total / summed.weight).astype(np.float32) for name, total in summed.total.items()}

    @abstractmethod
    def apply(self, global_model: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> StateDict:
        """The next global model from the current one and the round's averaged delta."""

    def state_dict(self) -> StateDict:
        """Server-optimiser state a checkpoint must keep (none by default)."""
        return {}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got {sorted(state)}")


class FedAvg(Strategy):
    """Federated averaging (McMahan et al., 2017): clients weighted by their example counts.

    ``server_lr`` scales the averaged delta; 1.0 is plain FedAvg (the new model is the weighted mean of
    the clients' models).
    """

    name = "fedavg"

    def __init__(self, server_lr: float = 1.0) -> None:
        self.server_lr = server_lr

    def apply(self, global_model: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> StateDict:
        return {name: (value + np.float32(self.server_lr) * delta[name]).astype(np.float32)
                for name, value in global_model.items()}


class FedProx(FedAvg):
    """FedProx (Li et al., 2020): FedAvg whose clients add ``mu/2 · ||w - w_global||²`` to their loss.

    The server side is FedAvg's; the proximal term keeps heterogeneous clients from drifting apart.
    """

    name = "fedprox"

    def __init__(self, prox_mu: float, server_lr: float = 1.0) -> None:
        super().__init__(server_lr)
        self.prox_mu = prox_mu

    def configure(self, round_number: int, clients: Sequence[ClientInfo]) -> dict[str, Instruction]:
        return {client_id: Instruction(instruction.weight, {**instruction.train_options, "prox_mu": self.prox_mu})
                for client_id, instruction in super().configure(round_number, clients).items()}


class FedAdam(Strategy):
    """FedAdam (Reddi et al., "Adaptive Federated Optimization", 2021): Adam on the server.

    The averaged delta plays the role of a negative gradient:
    ``m ← β1·m + (1-β1)·Δ``, ``v ← β2·v + (1-β2)·Δ²``, ``w ← w + η·m / (√v + τ)``, as in the paper
    (no bias correction; ``τ`` bounds the step where ``v`` is tiny). ``η`` is ``server_lr``; useful
    values are far below FedAvg's 1.0 (the paper's best lie around 1e-2 .. 1e-1), because
    ``m / √v`` is of order one per coordinate whatever the delta's scale.
    """

    name = "fedadam"

    def __init__(self, server_lr: float, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> None:
        self.server_lr = server_lr
        self.beta1, self.beta2, self.tau = beta1, beta2, tau
        self._m: StateDict = {}
        self._v: StateDict = {}

    def apply(self, global_model: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> StateDict:
        updated = {}
        for name, value in global_model.items():
            step = delta[name].astype(np.float64)
            m = self.beta1 * self._m.get(name, 0.0) + (1 - self.beta1) * step
            v = self.beta2 * self._v.get(name, 0.0) + (1 - self.beta2) * step * step
            self._m[name], self._v[name] = m, v
            updated[name] = (value + self.server_lr * m / (np.sqrt(v) + self.tau)).astype(np.float32)
        return updated

    def state_dict(self) -> StateDict:
        return {**{f"m.{k}": v.copy() for k, v in self._m.items()}, **{f"v.{k}": v.copy() for k, v in self._v.items()}}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        moments: dict[str, StateDict] = {"m": {}, "v": {}}
        for key, value in state.items():
            kind, _, name = key.partition(".")
            if kind not in moments or not name:
                raise ValueError(f"unexpected {self.name} state key {key!r}")
            moments[kind][name] = np.array(value, dtype=np.float64)
        if moments["m"].keys() != moments["v"].keys():
            raise ValueError(f"{self.name} state has first and second moments for different tensors")
        self._m, self._v = moments["m"], moments["v"]


def build_strategy(name: str, *, server_lr: float, prox_mu: float = 0.0, code_dir: str = "") -> Strategy:
    """The strategy named by ``federation.strategy``: a built-in one, or a user's :class:`Strategy` subclass
    ``"package.module:Class"`` imported from ``code_dir`` or ``PYTHONPATH`` and built as
    ``Class(server_lr=server_lr)``."""
    if name == "fedavg":
        return FedAvg(server_lr)
    if name == "fedprox":
        return FedProx(prox_mu, server_lr)
    if name == "fedadam":
        return FedAdam(server_lr)
    if is_reference(name):
        return _user_strategy(name, server_lr=server_lr, code_dir=code_dir)
    raise ConfigError(f"federation.strategy: unknown strategy {name!r} (known: fedavg, fedprox, fedadam, "
                      "or \"package.module:Class\")")


def _user_strategy(reference: str, *, server_lr: float, code_dir: str) -> Strategy:
    cls = load_reference(reference, key="federation.strategy", code_dir=code_dir)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"federation.strategy: {reference!r} must be a subclass of server.strategies.Strategy "
                          f"(got {cls!r})")
    make: Callable[..., Strategy] = cls  # a subclass's own constructor, whatever the base's signature
    try:
        strategy = make(server_lr=server_lr)
    except Exception as error:  # noqa: BLE001 - user code may raise anything
        raise ConfigError(f"federation.strategy: {reference}(server_lr={server_lr}) failed: "
                          f"{describe_failure(error)}") from None
    if not isinstance(getattr(strategy, "name", None), str):
        strategy.name = reference
    return strategy
