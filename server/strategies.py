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


class FedAvgM(FedAvg):
    """FedAvg with server momentum (Hsu, Qi & Brown, "Measuring the effects of non-identical data distribution for
    federated visual classification", 2019): ``u ← β·u + Δ``, ``w ← w + η·u``.

    ``η`` is ``server_lr`` and ``β`` ``momentum`` (the paper's 0.9). With ``β = 0`` it is FedAvg. The momentum
    buffer ``u`` is the strategy's state, kept in the checkpoint.
    """

    name = "fedavgm"

    def __init__(self, server_lr: float = 1.0, momentum: float = 0.9) -> None:
        super().__init__(server_lr)
        self.momentum = momentum
        self._u: StateDict = {}

    def apply(self, global_model: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> StateDict:
        updated = {}
        for name, value in global_model.items():
            u = self.momentum * self._u.get(name, 0.0) + delta[name].astype(np.float64)
            self._u[name] = u
            updated[name] = (value + self.server_lr * u).astype(np.float32)
        return updated

    def state_dict(self) -> StateDict:
        return {f"u.{k}": v.copy() for k, v in self._u.items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self._u = _named_state(self.name, state, ("u",))["u"]


class _AdaptiveServer(Strategy, ABC):
    """The adaptive server optimisers of Reddi et al., "Adaptive Federated Optimization" (ICLR 2021), Algorithm 2.

    The averaged delta ``Δ`` plays the role of a negative gradient: ``m ← β1·m + (1-β1)·Δ``, a second moment
    ``v`` updated by :meth:`second_moment` (the one line in which FedAdagrad, FedYogi and FedAdam differ), and
    ``w ← w + η·m / (√v + τ)``. ``η`` is ``server_lr``; useful values are far below FedAvg's 1.0 (the paper's
    best lie around 1e-2 .. 1e-1), because ``m / √v`` is of order one per coordinate whatever the delta's
    scale. Both moments start at zero, as in Flower (the paper's ``v₋₁ ≥ τ²`` differs only in the first
    step's size); no bias correction. The moments are the strategy's state, kept in the checkpoint.
    """

    def __init__(self, server_lr: float, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> None:
        self.server_lr = server_lr
        self.beta1, self.beta2, self.tau = beta1, beta2, tau
        self._m: StateDict = {}
        self._v: StateDict = {}

    @abstractmethod
    def second_moment(self, v: np.ndarray | float, squared: np.ndarray) -> np.ndarray:
        """The new second moment from the previous one (0.0 before the first round) and ``Δ²``."""

    def apply(self, global_model: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> StateDict:
        updated = {}
        for name, value in global_model.items():
            step = delta[name].astype(np.float64)
            m = self.beta1 * self._m.get(name, 0.0) + (1 - self.beta1) * step
            v = self.second_moment(self._v.get(name, 0.0), step * step)
            self._m[name], self._v[name] = m, v
            updated[name] = (value + self.server_lr * m / (np.sqrt(v) + self.tau)).astype(np.float32)
        return updated

    def state_dict(self) -> StateDict:
        return {**{f"m.{k}": v.copy() for k, v in self._m.items()}, **{f"v.{k}": v.copy() for k, v in self._v.items()}}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        moments = _named_state(self.name, state, ("m", "v"))
        if moments["m"].keys() != moments["v"].keys():
            raise ValueError(f"{self.name} state has first and second moments for different tensors")
        self._m, self._v = moments["m"], moments["v"]


class FedAdam(_AdaptiveServer):
    """FedAdam: ``v ← β2·v + (1-β2)·Δ²`` (see :class:`_AdaptiveServer`)."""

    name = "fedadam"

    def second_moment(self, v: np.ndarray | float, squared: np.ndarray) -> np.ndarray:
        return self.beta2 * v + (1 - self.beta2) * squared


class FedAdagrad(_AdaptiveServer):
    """FedAdagrad: ``v ← v + Δ²`` (see :class:`_AdaptiveServer`; ``beta2`` is unused)."""

    name = "fedadagrad"

    def second_moment(self, v: np.ndarray | float, squared: np.ndarray) -> np.ndarray:
        return v + squared


class FedYogi(_AdaptiveServer):
    """FedYogi: ``v ← v - (1-β2)·Δ²·sign(v - Δ²)`` (see :class:`_AdaptiveServer`): ``v`` moves towards ``Δ²``
    by a step proportional to ``Δ²`` only, so it grows no faster than Adagrad's and shrinks more slowly than
    Adam's (Zaheer et al. 2018)."""

    name = "fedyogi"

    def second_moment(self, v: np.ndarray | float, squared: np.ndarray) -> np.ndarray:
        return v - (1 - self.beta2) * squared * np.sign(v - squared)


def _named_state(strategy: str, state: Mapping[str, np.ndarray], kinds: Sequence[str]) -> dict[str, StateDict]:
    """A checkpointed ``"<kind>.<tensor>"`` state split by kind; ValueError for a key of another shape."""
    split: dict[str, StateDict] = {kind: {} for kind in kinds}
    for key, value in state.items():
        kind, _, name = key.partition(".")
        if kind not in split or not name:
            raise ValueError(f"unexpected {strategy} state key {key!r}")
        split[kind][name] = np.array(value, dtype=np.float64)
    return split


#: ``federation.strategy`` -> how the built-in strategy is made from the scenario's settings.
BUILTIN_STRATEGIES: dict[str, Callable[[float, float], Strategy]] = {
    "fedavg": lambda server_lr, prox_mu: FedAvg(server_lr),
    "fedprox": lambda server_lr, prox_mu: FedProx(prox_mu, server_lr),
    "fedavgm": lambda server_lr, prox_mu: FedAvgM(server_lr),
    "fedadam": lambda server_lr, prox_mu: FedAdam(server_lr),
    "fedadagrad": lambda server_lr, prox_mu: FedAdagrad(server_lr),
    "fedyogi": lambda server_lr, prox_mu: FedYogi(server_lr),
}


def build_strategy(name: str, *, server_lr: float, prox_mu: float = 0.0, code_dir: str = "") -> Strategy:
    """The strategy named by ``federation.strategy``: a built-in one, or a user's :class:`Strategy` subclass
    ``"package.module:Class"`` imported from ``code_dir`` or ``PYTHONPATH`` and built as
    ``Class(server_lr=server_lr)``."""
    if name in BUILTIN_STRATEGIES:
        return BUILTIN_STRATEGIES[name](server_lr, prox_mu)
    if is_reference(name):
        return _user_strategy(name, server_lr=server_lr, code_dir=code_dir)
    raise ConfigError(f"federation.strategy: unknown strategy {name!r} (known: {', '.join(BUILTIN_STRATEGIES)}, "
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
