"""A user's own aggregation rule: ``federation.strategy = "server_momentum:FedAvgMomentum"``.

FedAvgM (Hsu et al., 2019): the server keeps a velocity of the clients' averaged deltas,
``v <- beta * v + delta`` and ``w <- w + server_lr * v``. A strategy subclasses
``server.strategies.Strategy``; it is built as ``Class(server_lr=federation.server_lr)``, weights clients by
their example counts unless it overrides ``configure``, and must define ``apply``. State that must survive a
coordinator restart goes through ``state_dict``/``load_state_dict`` (the checkpoint keeps it).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from server.strategies import StateDict, Strategy


class FedAvgMomentum(Strategy):
    name = "fedavgm"

    def __init__(self, server_lr: float = 1.0, beta: float = 0.5) -> None:
        self.server_lr, self.beta = server_lr, beta
        self._velocity: StateDict = {}

    def apply(self, global_model: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> StateDict:
        for name, step in delta.items():
            self._velocity[name] = (self.beta * self._velocity.get(name, 0.0) + step).astype(np.float32)
        return {name: (value + np.float32(self.server_lr) * self._velocity[name]).astype(np.float32)
                for name, value in global_model.items()}

    def state_dict(self) -> StateDict:
        return {name: value.copy() for name, value in self._velocity.items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self._velocity = {name: np.array(value, dtype=np.float32) for name, value in state.items()}
