"""One run of a fedgrad scenario in Flower's simulation engine: the Flower side of ``benchmarks/flower.py``.

    .venv-bench/bin/python benchmarks/flower_app.py --scenario S.toml [--set k=v ...] [--secure] --workers 2
                                                     --out RESULT.json

Needs the ``bench`` extra (``flwr[simulation]``, in its own virtual environment: see ``benchmarks/flower.py``).
Everything but the platform is fedgrad's: the dataset is the scenario's own (``Scenario.build_dataset``: the
same split, vocabulary and shards, saved once and loaded per client with ``fedgrad.data.load_shard``), the
model is the scenario's fedgrad-engine model with the coordinator's initial weights, and each Flower client
trains with ``fedgrad.training.train_local`` under the seed a fedgrad client gets in that round
(``fedgrad.training.client_seed``). The server is Flower's ``FedAvg`` (weighted by example counts, as fedgrad's),
sampling ``clients_per_round`` of the scenario's clients per round with its own sampler, and scoring the
global model after each round on the test set with ``fedgrad.training.evaluate`` (``evaluate_fn``).
``--secure`` runs the fit rounds through Flower's SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``).

Written to ``--out``: the global model's weights and bytes as Flower holds them, the seconds between consecutive
evaluations (one round: fit, aggregation, evaluation), the accuracy after each round, and the size of every message
a client received and sent, serialized as Flower's protobuf ``Message`` (``flwr.common.serde.message_to_proto``:
what its deployment runtime sends). In simulation nothing crosses a network: these messages move in-process, and no
gRPC framing or TLS is counted.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.client import Client, ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import ndarrays_to_parameters
from flwr.common.serde import message_to_proto
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.simulation import run_simulation

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from fedgrad.data import Shard, load_shard, load_test
from fedgrad.models import SpamModel, model_from_config
from fedgrad.scenario import Scenario, load_scenario
from fedgrad.training import client_seed, evaluate, train_local

HERE = Path(__file__).resolve().parent

#: SecAgg+ settings (Flower's secure-aggregation example): each client's key split into 3 shares among its
#: neighbours, any 2 reconstruct it.
SECAGG_SHARES = 3
SECAGG_THRESHOLD = 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--secure", action="store_true", help="SecAgg+ (Flower's secure aggregation)")
    parser.add_argument("--workers", type=int, required=True, help="Ray actors running the clients (1 CPU each)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result (JSON)")
    parser.add_argument("--rounds-done", type=Path,
                        help="a file to create once the last round's evaluation is done (before Flower shuts down)")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario, args.overrides)
    with tempfile.TemporaryDirectory(prefix="flower-bench-") as scratch:
        data_dir, bytes_dir = Path(scratch) / "data", Path(scratch) / "bytes"
        bytes_dir.mkdir()
        dataset = scenario.build_dataset()
        dataset.save(data_dir)
        vocab_size = len(dataset.vocab)
        del dataset
        # Ray's workers start with this environment: they import this module by name (see _MODELS).
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        # (time, accuracy, the model's weights and bytes) after round 0 (the initial model), 1, ...
        evaluations: list[tuple[float, float, int, int]] = []
        server_app = _server_app(scenario, vocab_size, load_test(data_dir), args.secure, evaluations, args.rounds_done)
        client_app = _client_app(scenario, vocab_size, data_dir, bytes_dir, args.secure)
        run_simulation(server_app=server_app, client_app=client_app, num_supernodes=scenario.federation.clients,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": args.workers, "log_to_driver": False}})
        received, sent = _count_bytes(bytes_dir)
    if len(evaluations) != scenario.federation.rounds + 1:
        raise SystemExit(f"Flower evaluated {len(evaluations) - 1} of {scenario.federation.rounds} rounds; "
                         "see the log above")
    times = [t for t, *_ in evaluations]
    _, _, weights, model_bytes = evaluations[-1]
    result = {"weights": weights, "model_bytes": model_bytes, "round_s": [b - a for a, b in itertools.pairwise(times)],
              "accuracy": [accuracy for _, accuracy, *_ in evaluations[1:]],
              "bytes_down": received, "bytes_up": sent}
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _server_app(scenario: Scenario, vocab_size: int, test: Shard, secure: bool,
                evaluations: list[tuple[float, float, int, int]], rounds_done: Path | None) -> ServerApp:
    model = model_from_config(scenario.model, vocab_size, seed=scenario.seed)  # the coordinator's initial model
    names = list(model.state_dict())
    fed = scenario.federation

    def evaluate_fn(server_round: int, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, dict]:
        model.load_state_dict(dict(zip(names, parameters, strict=True)))
        scores = evaluate(model, test)
        evaluations.append((time.perf_counter(), scores["accuracy"], sum(p.size for p in parameters),
                            sum(p.nbytes for p in parameters)))
        if rounds_done is not None and server_round == fed.rounds:
            rounds_done.touch()
        return scores["loss"], {"accuracy": scores["accuracy"]}

    strategy = _AllOrNothingFedAvg(
        fraction_fit=fed.clients_per_round / fed.clients, min_fit_clients=fed.clients_per_round,
        min_available_clients=fed.clients, fraction_evaluate=0.0, min_evaluate_clients=0, evaluate_fn=evaluate_fn,
        on_fit_config_fn=lambda server_round: {"round": server_round},
        initial_parameters=ndarrays_to_parameters(list(model.state_dict().values())))
    app = ServerApp()

    @app.main()
    def run(grid: Grid, context: Context) -> None:
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=fed.rounds), strategy=strategy)
        workflow = (DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(SECAGG_SHARES, SECAGG_THRESHOLD)) if secure
                    else DefaultWorkflow())
        workflow(grid, legacy)

    return app


class _AllOrNothingFedAvg(FedAvg):
    """Flower's FedAvg, refusing a round in which a client failed: Flower would go on with the others (with
    SecAgg+, an aggregate without them), and the benchmark would time a different round from fedgrad's."""

    def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> Any:
        if failures or len(results) < self.min_fit_clients:
            raise RuntimeError(f"round {server_round}: {len(results)} results, {len(failures)} failures "
                               f"({failures[:1]}); every sampled client must answer")
        return super().aggregate_fit(server_round, results, failures)


class _FedgradClient(NumPyClient):
    """A Flower client that trains exactly as a fedgrad client does (``fedgrad.training.train_local``)."""

    def __init__(self, scenario: Scenario, model: SpamModel, shard: Shard, client_id: str) -> None:
        self._scenario, self._model, self._shard, self._client_id = scenario, model, shard, client_id

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
        names = list(self._model.state_dict())
        self._model.load_state_dict(dict(zip(names, parameters, strict=True)))
        train = self._scenario.train
        train_local(self._model, self._shard, epochs=train.epochs, batch_size=train.batch_size, lr=train.lr,
                    optimizer=train.optimizer, momentum=train.momentum,
                    seed=client_seed(self._scenario.seed, int(config["round"]), self._client_id))
        return list(self._model.state_dict().values()), len(self._shard), {}


#: What one Ray actor keeps between the clients it runs, as a fedgrad client process does: the model, built
#: once (then only reloaded with each round's weights), and each shard, loaded once. Module globals: Ray ships
#: the client functions by reference (this module, imported by name), so each actor keeps its own.
_MODELS: dict[int, SpamModel] = {}
_SHARDS: dict[int, Shard] = {}


def _client_app(scenario: Scenario, vocab_size: int, data_dir: Path, bytes_dir: Path, secure: bool) -> ClientApp:
    mods = [functools.partial(_count_bytes_mod, bytes_dir), *([secaggplus_mod] if secure else [])]
    return ClientApp(client_fn=functools.partial(_client_fn, scenario, vocab_size, data_dir), mods=mods)


def _client_fn(scenario: Scenario, vocab_size: int, data_dir: Path, context: Context) -> Client:
    k = int(context.node_config["partition-id"])
    if vocab_size not in _MODELS:
        _MODELS[vocab_size] = model_from_config(scenario.model, vocab_size, seed=0)
    if k not in _SHARDS:
        _SHARDS[k] = load_shard(data_dir, k)
    return _FedgradClient(scenario, _MODELS[vocab_size], _SHARDS[k], str(k)).to_client()


def _count_bytes_mod(bytes_dir: Path, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A client mod (outermost) that appends the size of each message received and sent, serialized as
    Flower's protobuf ``Message`` (what its deployment runtime would put on the wire), to a file of its process."""
    reply = call_next(msg, context)
    with open(bytes_dir / f"{os.getpid()}.txt", "a", encoding="utf-8") as out:
        out.write(f"{message_to_proto(msg).ByteSize()} {message_to_proto(reply).ByteSize()}\n")
    return reply


def _count_bytes(bytes_dir: Path) -> tuple[int, int]:
    pairs = [line.split() for path in bytes_dir.glob("*.txt") for line in path.read_text().splitlines()]
    return sum(int(r) for r, _ in pairs), sum(int(s) for _, s in pairs)


if __name__ == "__main__":
    # This file again, by name, so that Ray ships its client functions by reference (see _MODELS).
    sys.exit(importlib.import_module("flower_app").main())
