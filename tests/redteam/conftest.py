"""A three-client federation (the book's Alice, Bob and Sue) and its coordinator under each Paillier mode, built
from the platform's own pieces: the mode's aggregation, the clients' own ``encode`` with their own identities,
and, under the threshold modes (``paillier``, ``paillier-masked``), three real decryptors (2-of-3, in this
process, each with its own state directory).

Small insecure keys (512 bits) keep the suite fast; the attacks do not depend on the key size.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from fedgrad.crypto import InsecureKeyWarning, SecureAggConfig
from fedgrad.decryptor.pool import DecryptorPool
from fedgrad.decryptor.service import start_decryptor_server
from fedgrad.experiments.redteam import (
    MASKED,
    THRESHOLD,
    TRUSTED,
    Coordinator,
    HonestClient,
    Victim,
    enroll_clients,
    local_decryptors,
)
from fedgrad.modes.base import ClientPrivacy
from fedgrad.modes.paillier import Decryptors, ThresholdAggregation
from fedgrad.modes.paillier_masked import MaskedAggregation
from fedgrad.modes.paillier_trusted import PaillierAggregation, host_key_holder
from fedgrad.protocol import TaskConfig
from fedgrad.protocol.task_config import TrainSettings
from fedgrad.scenario import ModelConfig
from server.tasks import ModelPayload

CLIENTS = {"alice": 30, "bob": 50, "sue": 20}  # example counts: the honest FedAvg weights
VICTIM = "bob"
SHAPES = {"embedding.weight": (12, 4), "linear.bias": (2,)}
KEY_BITS = 512
MIN_CLIENTS = 2
#: The coordinator's side of each threshold mode.
THRESHOLD_AGGREGATIONS: dict[str, type[ThresholdAggregation]] = {THRESHOLD: ThresholdAggregation,
                                                                 MASKED: MaskedAggregation}


def _deltas() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(2026)
    return {client: {name: rng.normal(0.0, 0.3, shape) for name, shape in SHAPES.items()} for client in CLIENTS}


def _flat(delta: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([delta[name].reshape(-1) for name in SHAPES])


MakeCoordinator = Callable[..., Coordinator]


@pytest.fixture
def make_coordinator(tmp_path: Path, loop_thread: Any) -> Iterator[MakeCoordinator]:
    """``make_coordinator(mode, parties=3, threshold=2, grpc=False)``: the coordinator of a fresh run under
    ``mode``; with ``grpc`` its decryptors are gRPC servers on localhost and it holds a real ``DecryptorPool``."""
    made: list[Coordinator] = []
    servers: list[Any] = []
    deltas = _deltas()
    model = {name: np.zeros(shape) for name, shape in SHAPES.items()}
    specs = ModelPayload.encode(0, model).specs
    config = TaskConfig(model=ModelConfig(), vocab_size=SHAPES["embedding.weight"][0],
                        train=TrainSettings(epochs=1, batch_size=8, lr=0.1, optimizer="sgd"))
    n_params = sum(int(np.prod(shape)) for shape in SHAPES.values())

    def make(mode: str, parties: int = 3, threshold: int = 2, grpc: bool = False) -> Coordinator:
        run_dir = tmp_path / f"coordinator-{len(made)}"
        run_dir.mkdir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureKeyWarning)
            if mode == TRUSTED:
                cfg = SecureAggConfig(mode="paillier", n_params=n_params, clip=1.0, max_clients=len(CLIENTS))
                public_key, key_holder = host_key_holder(cfg, key_bits=KEY_BITS, insecure_key_bits=True,
                                                         min_clients=MIN_CLIENTS)
                aggregation: PaillierAggregation | ThresholdAggregation = PaillierAggregation(
                    TRUSTED, cfg, public_key, key_holder.decrypt_aggregate, close=key_holder.close)
                privacy = {client: ClientPrivacy(allow_insecure_keys=True) for client in CLIENTS}
                files: tuple[Path, ...] = (run_dir,)
            else:
                parties_dir = tmp_path / f"parties-{len(made)}"
                identities, enrollment = enroll_clients(parties_dir / "clients", CLIENTS)
                decryptors = local_decryptors(parties_dir, key_bits=KEY_BITS, parties=parties, threshold=threshold,
                                              enrollment=enrollment, min_clients=MIN_CLIENTS,
                                              insecure_key_bits=True)
                decryptors.key_set.save(run_dir / "key-set.json")
                (run_dir / "enrollment.json").write_bytes(enrollment.read_bytes())
                cfg = SecureAggConfig(mode="paillier", n_params=n_params, clip=1.0, max_clients=len(CLIENTS),
                                      max_weight=64)
                aggregation = THRESHOLD_AGGREGATIONS[mode](cfg, decryptors)
                if grpc:
                    addresses = []
                    for party in decryptors.parties:
                        server, port = loop_thread.run(start_decryptor_server(party, "127.0.0.1", 0))
                        servers.append(server)
                        addresses.append(f"127.0.0.1:{port}")
                    pool = DecryptorPool(addresses, decryptors.key_set)  # its contribute's Future goes unused
                    aggregation = THRESHOLD_AGGREGATIONS[mode](cfg, cast(Decryptors, pool))
                privacy = {client: ClientPrivacy(allow_insecure_keys=True, identity_dir=identities,
                                                 enrollment=enrollment) for client in CLIENTS}
                files = (run_dir,)
        clients = {client: HonestClient(client, deltas[client], examples, privacy[client])
                   for client, examples in CLIENTS.items()}
        coordinator = Coordinator(mode, aggregation, specs, config, clients, run_id=f"run-{len(made)}",
                                  files=files, weights={c: float(n) for c, n in CLIENTS.items()})
        made.append(coordinator)
        return coordinator

    yield make
    for coordinator in made:
        coordinator.aggregation.close()
    for server in servers:
        loop_thread.run(server.stop(0))


@pytest.fixture
def victim() -> Callable[[Coordinator], Victim]:
    deltas = _deltas()

    def make(coordinator: Coordinator) -> Victim:
        aggregation = coordinator.aggregation
        assert isinstance(aggregation, (PaillierAggregation, ThresholdAggregation))
        return Victim(VICTIM, _flat(deltas[VICTIM]), aggregation.cfg)

    return make


__all__ = ["CLIENTS", "MASKED", "THRESHOLD", "TRUSTED", "VICTIM"]
