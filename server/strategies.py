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

Robust rules (FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan) and QFedAvg need each client's update, not their
sum: they subclass :class:`IndividualUpdateStrategy`, whose ``aggregate`` reads ``WeightedSum.updates``. Only a mode
whose coordinator reads updates in plain keeps them (``fedgrad.modes.base.Aggregation.new_keeping_accumulator``);
``server.experiment`` refuses the others up front.

Each built-in strategy declares the ``[federation.options]`` it reads (:class:`Option`: type, default, range);
:func:`build_strategy` checks them and refuses anything else with a one-line :class:`ConfigError`.
"""
from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fedgrad.errors import ConfigError
from fedgrad.protocol import ClientUpdate, WeightedSum
from fedgrad.scenario import Scenario
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
    #: Whether ``aggregate`` needs each client's update (``WeightedSum.updates``), not only their weighted sum.
    needs_individual_updates: ClassVar[bool] = False

    @property
    def min_updates(self) -> int:
        """Fewest updates a round must bring for this rule to be defined (``federation.min_clients`` must reach it)."""
        return 1

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


class IndividualUpdateStrategy(FedAvg, ABC):
    """A rule over each client's update (``WeightedSum.updates``, in client-id order) rather than their weighted
    sum; the server step is FedAvg's, ``w + server_lr·Δ``. The rules below ignore the clients' example counts, as
    their papers do: a robust rule must not let a client's own claim of its size decide its influence."""

    needs_individual_updates = True

    def aggregate(self, summed: WeightedSum) -> StateDict:
        if not summed.updates:
            raise ValueError(f"{self.name} needs each client's update, but this round brought only their sum")
        return {name: value.astype(np.float32) for name, value in self.combine(summed.updates).items()}

    @abstractmethod
    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
        """The round's delta from its ``updates`` (at least :attr:`min_updates` of them), in float64."""


def _stacked(updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
    """Each tensor's values from every update, stacked along a new first axis (float64)."""
    return {name: np.stack([np.asarray(u.delta[name], dtype=np.float64) for u in updates])
            for name in updates[0].delta}


class QFedAvg(IndividualUpdateStrategy):
    """q-FedAvg (Li, Sanjabi, Beirami & Smith, "Fair Resource Allocation in Federated Learning", ICLR 2020,
    Algorithm 2): clients with a higher loss weigh more, so the model's accuracy is spread more evenly.

    With ``F_k`` client k's loss on its data at the global model ``w`` (the client reports it as ``start_loss``
    before training, asked to by :meth:`configure`), ``L`` the Lipschitz estimate (``lipschitz``, by default
    1 / ``train.lr``) and the client's delta ``δ_k = w_k - w``: ``Δw_k = -L·δ_k``, ``Δ_k = F_k^q·Δw_k``,
    ``h_k = q·F_k^(q-1)·‖Δw_k‖² + L·F_k^q``, and ``w ← w - Σ Δ_k / Σ h_k``. ``q = 0`` is the unweighted mean of
    the deltas. ``F_k`` is taken as ``max(F_k, 0) + 1e-10`` (Flower's offset), so that ``F_k^(q-1)`` is finite.
    Not a robust rule: a client that reports a large loss gains weight. Stateless.
    """

    name = "qfedavg"

    def __init__(self, q: float = 0.2, lipschitz: float = 100.0, server_lr: float = 1.0) -> None:
        super().__init__(server_lr)
        self.q, self.lipschitz = q, lipschitz

    def configure(self, round_number: int, clients: Sequence[ClientInfo]) -> dict[str, Instruction]:
        return {client_id: Instruction(instruction.weight, {**instruction.train_options, "report_start_loss": True})
                for client_id, instruction in super().configure(round_number, clients).items()}

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
        q, lip = self.q, self.lipschitz
        steps: dict[str, np.ndarray] = {}
        h_total = 0.0
        for update in updates:
            if "start_loss" not in update.metrics:
                raise ValueError(f"qfedavg: client {update.client_id} did not report its start_loss")
            loss = max(update.metrics["start_loss"], 0.0) + 1e-10
            grads = {name: -lip * np.asarray(value, dtype=np.float64) for name, value in update.delta.items()}
            squared_norm = math.fsum(float(np.sum(g * g)) for g in grads.values())
            h_total += q * loss ** (q - 1) * squared_norm + lip * loss ** q
            for name, grad in grads.items():
                steps[name] = steps.get(name, 0.0) + loss ** q * grad
        return {name: -step / h_total for name, step in steps.items()}


class FedMedian(IndividualUpdateStrategy):
    """Coordinate-wise median of the updates (Yin, Chen, Ramchandran & Bartlett, "Byzantine-Robust Distributed
    Learning: Towards Optimal Statistical Rates", ICML 2018): with an even count, the mean of the middle two.
    Stateless."""

    name = "fedmedian"

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
        return {name: np.median(values, axis=0) for name, values in _stacked(updates).items()}


class FedTrimmedAvg(IndividualUpdateStrategy):
    """Coordinate-wise β-trimmed mean (Yin et al., ICML 2018): per coordinate, drop the ``⌊β·n⌋`` largest and
    the ``⌊β·n⌋`` smallest of the n values and average the rest (``beta`` in [0, 0.5); 0 is the unweighted
    mean). Stateless."""

    name = "fedtrimmedavg"

    def __init__(self, beta: float = 0.2, server_lr: float = 1.0) -> None:
        super().__init__(server_lr)
        self.beta = beta

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
        cut = int(self.beta * len(updates))
        return {name: np.sort(values, axis=0)[cut:len(updates) - cut].mean(axis=0)
                for name, values in _stacked(updates).items()}


def krum_scores(vectors: np.ndarray, f: int) -> np.ndarray:
    """Krum's score of each row of ``vectors`` (Blanchard et al. 2017): the sum of its squared distances to its
    ``n - f - 2`` nearest other rows, at least 1 and at most ``n - 1`` of them (as in Flower, so that Bulyan's
    later, smaller candidate sets are still scored)."""
    n = len(vectors)
    neighbours = min(max(1, n - f - 2), n - 1)
    scores = np.empty(n)
    for i in range(n):
        distances = np.delete(np.sum((vectors - vectors[i]) ** 2, axis=1), i)
        scores[i] = np.sort(distances)[:neighbours].sum()
    return scores


def _flattened(updates: Sequence[ClientUpdate]) -> np.ndarray:
    """One row per update: all its tensors flattened and joined (float64)."""
    return np.stack([np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in u.delta.values()])
                     for u in updates])


class MultiKrum(IndividualUpdateStrategy):
    """Multi-Krum (Blanchard, El Mhamdi, Guerraoui & Stainer, "Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent", NeurIPS 2017): the unweighted mean of the ``m`` updates with the lowest
    :func:`krum_scores`, for at most ``f`` Byzantine clients among ``n ≥ 2f + 3``. ``m = 0``: the paper's
    ``n - f``. Ties go to the lower client id. Stateless."""

    name = "multikrum"

    def __init__(self, f: int = 1, m: int = 0, server_lr: float = 1.0) -> None:
        super().__init__(server_lr)
        self.f, self.m = f, m

    @property
    def min_updates(self) -> int:
        return max(2 * self.f + 3, self.m)

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
        keep = self.m or len(updates) - self.f
        chosen = np.argsort(krum_scores(_flattened(updates), self.f), kind="stable")[:keep]
        return {name: values[chosen].mean(axis=0) for name, values in _stacked(updates).items()}


class Krum(MultiKrum):
    """Krum (Blanchard et al. 2017): the one update with the lowest :func:`krum_scores` (Multi-Krum, m = 1)."""

    name = "krum"

    def __init__(self, f: int = 1, server_lr: float = 1.0) -> None:
        super().__init__(f, 1, server_lr)


class Bulyan(IndividualUpdateStrategy):
    """Bulyan (El Mhamdi, Guerraoui & Rouault, "The Hidden Vulnerability of Distributed Learning in Byzantium",
    ICML 2018) over Krum, for at most ``f`` Byzantine clients among ``n ≥ 4f + 3``.

    Selection: ``θ = n - 2f`` times, take the update Krum picks among those not yet taken (scores recomputed over
    the remaining ones, :func:`krum_scores`). Aggregation, per coordinate: of the θ selected values, the
    ``β = θ - 2f`` closest to their median, averaged. Ties go to the lower client id. Stateless."""

    name = "bulyan"

    def __init__(self, f: int = 1, server_lr: float = 1.0) -> None:
        super().__init__(server_lr)
        self.f = f

    @property
    def min_updates(self) -> int:
        return 4 * self.f + 3

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, np.ndarray]:
        flat, remaining, selected = _flattened(updates), list(range(len(updates))), []
        for _ in range(len(updates) - 2 * self.f):
            best = remaining[int(np.argmin(krum_scores(flat[remaining], self.f)))]
            selected.append(best)
            remaining.remove(best)
        beta = len(selected) - 2 * self.f
        combined = {}
        for name, values in _stacked(updates).items():
            chosen = values[sorted(selected)]
            distance = np.abs(chosen - np.median(chosen, axis=0))
            closest = np.argsort(distance, axis=0, kind="stable")[:beta]
            combined[name] = np.take_along_axis(chosen, closest, axis=0).mean(axis=0)
        return combined


def _named_state(strategy: str, state: Mapping[str, np.ndarray], kinds: Sequence[str]) -> dict[str, StateDict]:
    """A checkpointed ``"<kind>.<tensor>"`` state split by kind; ValueError for a key of another shape."""
    split: dict[str, StateDict] = {kind: {} for kind in kinds}
    for key, value in state.items():
        kind, _, name = key.partition(".")
        if kind not in split or not name:
            raise ValueError(f"unexpected {strategy} state key {key!r}")
        split[kind][name] = np.array(value, dtype=np.float64)
    return split


@dataclass(frozen=True)
class Option:
    """One key of ``[federation.options]`` a built-in strategy reads: its default (whose type, int or float, is the
    option's) and the bounds it must respect."""

    default: int | float
    doc: str
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None

    def check(self, key: str, value: Any) -> int | float:
        """``value`` as this option's type, or a one-line :class:`ConfigError` naming ``key``."""
        kind = type(self.default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)):
            wanted = "an integer" if kind is int else "a number"
            raise ConfigError(f"{key}: expected {wanted} (got {value!r})")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be finite (got {value})")
        for limit, holds, word in ((self.ge, operator.ge, ">="), (self.gt, operator.gt, ">"),
                                   (self.lt, operator.lt, "<")):
            if limit is not None and not holds(value, limit):
                raise ConfigError(f"{key}: must be {word} {limit:g} (got {value})")
        return kind(value)


@dataclass(frozen=True)
class StrategySettings:
    """What a built-in strategy is made from: ``[federation]``'s ``server_lr`` and ``prox_mu``, the local learning
    rate ``[train] lr`` (QFedAvg's default Lipschitz estimate) and the checked ``[federation.options]``."""

    server_lr: float
    prox_mu: float
    local_lr: float
    options: Mapping[str, Any]


@dataclass(frozen=True)
class BuiltinStrategy:
    """A built-in strategy: how it is made, and the ``[federation.options]`` it reads."""

    make: Callable[[StrategySettings], Strategy]
    options: Mapping[str, Option] = field(default_factory=dict)

    def build(self, name: str, settings: StrategySettings) -> Strategy:
        unknown = sorted(set(settings.options) - set(self.options))
        if unknown:
            known = f"known: {', '.join(self.options)}" if self.options else "it takes none"
            raise ConfigError(f"federation.options.{unknown[0]}: not an option of strategy {name!r} ({known})")
        checked = {key: option.check(f"federation.options.{key}", settings.options[key])
                   if key in settings.options else option.default for key, option in self.options.items()}
        return self.make(StrategySettings(settings.server_lr, settings.prox_mu, settings.local_lr, checked))


_ADAPTIVE = {"beta1": Option(0.9, "first-moment decay", ge=0.0, lt=1.0),
             "beta2": Option(0.99, "second-moment decay (fedadam, fedyogi)", ge=0.0, lt=1.0),
             "tau": Option(1e-3, "adaptivity: added to the root of the second moment", gt=0.0)}
_BYZANTINE = Option(1, "f, the most Byzantine (malicious) clients a round may hold", ge=0)

#: ``federation.strategy`` -> how the built-in strategy is made from the scenario's settings, and its options.
BUILTIN_STRATEGIES: dict[str, BuiltinStrategy] = {
    "fedavg": BuiltinStrategy(lambda s: FedAvg(s.server_lr)),
    "fedprox": BuiltinStrategy(lambda s: FedProx(s.prox_mu, s.server_lr)),
    "fedavgm": BuiltinStrategy(lambda s: FedAvgM(s.server_lr, s.options["momentum"]),
                               {"momentum": Option(0.9, "server momentum β", ge=0.0, lt=1.0)}),
    "fedadam": BuiltinStrategy(lambda s: FedAdam(s.server_lr, **s.options), _ADAPTIVE),
    "fedadagrad": BuiltinStrategy(lambda s: FedAdagrad(s.server_lr, **s.options), _ADAPTIVE),
    "fedyogi": BuiltinStrategy(lambda s: FedYogi(s.server_lr, **s.options), _ADAPTIVE),
    "qfedavg": BuiltinStrategy(
        lambda s: QFedAvg(s.options["q"], s.options["lipschitz"] or 1.0 / s.local_lr, s.server_lr),
        {"q": Option(0.2, "fairness exponent; 0 = unweighted mean", ge=0.0),
         "lipschitz": Option(0.0, "Lipschitz estimate L; 0 = 1 / train.lr", ge=0.0)}),
    "fedmedian": BuiltinStrategy(lambda s: FedMedian(s.server_lr)),
    "fedtrimmedavg": BuiltinStrategy(lambda s: FedTrimmedAvg(s.options["beta"], s.server_lr),
                                     {"beta": Option(0.2, "fraction trimmed at each end", ge=0.0, lt=0.5)}),
    "krum": BuiltinStrategy(lambda s: Krum(s.options["f"], s.server_lr), {"f": _BYZANTINE}),
    "multikrum": BuiltinStrategy(lambda s: MultiKrum(s.options["f"], s.options["m"], s.server_lr),
                                 {"f": _BYZANTINE, "m": Option(0, "updates averaged; 0 = n - f", ge=0)}),
    "bulyan": BuiltinStrategy(lambda s: Bulyan(s.options["f"], s.server_lr), {"f": _BYZANTINE}),
}


def build_strategy(name: str, *, server_lr: float, prox_mu: float = 0.0, options: Mapping[str, Any] | None = None,
                   local_lr: float = 0.01, code_dir: str = "") -> Strategy:
    """The strategy named by ``federation.strategy``: a built-in one with its checked ``options``, or a user's
    :class:`Strategy` subclass ``"package.module:Class"`` imported from ``code_dir`` or ``PYTHONPATH`` and built as
    ``Class(server_lr=server_lr, **options)``."""
    options = dict(options or {})
    if name in BUILTIN_STRATEGIES:
        return BUILTIN_STRATEGIES[name].build(name, StrategySettings(server_lr, prox_mu, local_lr, options))
    if is_reference(name):
        return _user_strategy(name, server_lr=server_lr, options=options, code_dir=code_dir)
    raise ConfigError(f"federation.strategy: unknown strategy {name!r} (known: {', '.join(BUILTIN_STRATEGIES)}, "
                      "or \"package.module:Class\")")


def strategy_for(scenario: Scenario) -> Strategy:
    """The strategy ``scenario`` names, built from its ``[federation]`` settings."""
    fed = scenario.federation
    return build_strategy(fed.strategy, server_lr=fed.server_lr, prox_mu=fed.prox_mu, options=fed.options,
                          local_lr=scenario.train.lr, code_dir=scenario.code_dir)


def _user_strategy(reference: str, *, server_lr: float, options: Mapping[str, Any], code_dir: str) -> Strategy:
    cls = load_reference(reference, key="federation.strategy", code_dir=code_dir)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"federation.strategy: {reference!r} must be a subclass of server.strategies.Strategy "
                          f"(got {cls!r})")
    make: Callable[..., Strategy] = cls  # a subclass's own constructor, whatever the base's signature
    try:
        strategy = make(server_lr=server_lr, **options)
    except Exception as error:  # noqa: BLE001 - user code may raise anything
        arguments = ", ".join(f"{key}={value!r}" for key, value in {"server_lr": server_lr, **options}.items())
        raise ConfigError(f"federation.strategy: {reference}({arguments}) failed: "
                          f"{describe_failure(error)}") from None
    if not isinstance(getattr(strategy, "name", None), str):
        strategy.name = reference
    return strategy
