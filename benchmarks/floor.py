"""The machine's floor for a round: train and encode N clients' updates in one process, with no messaging.

    .venv/bin/python benchmarks/floor.py [--scenario scenarios/spam_email_clients.toml] [--clients 1000]
                                         [--repeats 3] [--set KEY=VALUE ...] [--json FILE]

What one round's clients must do however a platform runs them, done here one after another on one thread:
each client trains on its shard from the round's global model and encodes its update, through the very code
a client process runs for a TRAIN task (``client.trainer.LocalTrainer.train_update``: load the model, the
local epochs of ``fedgrad.training.train_local`` under the client's seed for the round, the delta, then the
round's encoding, ``fedgrad.modes.encode_update``; plain rounds). The task is the one the coordinator would
send (``server.tasks.train_task`` with the scenario's ``TaskConfig`` and ``client_seed``), and the model is
decoded from its payload once, as a client process shares one copy among its clients. Not timed: building
the dataset and loading the shards (a client holds its shard before the round), building that payload.
Nothing is sent: no gRPC, no TLS, no coordinator, no scheduling of virtual clients.

A round's seconds divided by this floor is what the platform costs on top of its clients' work (fedgrad can
use all cores, this floor one, so on a machine of C cores a platform could in principle reach 1/C).

Takes ~15 s at 1,000 clients with 3 repeats on a 2-core machine (most of it building the dataset).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from client.trainer import LocalTrainer
from fedgrad.data import Shard
from fedgrad.models import model_from_config
from fedgrad.protocol import TaskConfig, TrainTask
from fedgrad.scenario import Scenario, load_scenario
from fedgrad.training import client_seed
from fedgrad.transport.codec import decode_tensors
from server.tasks import ModelPayload, train_task

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Floor:
    """One pass over ``clients`` clients: the whole loop's seconds, and the trainer's own split of them."""

    clients: int
    seconds: float    # wall time of the loop: everything a client process does for these TRAIN tasks
    train_s: float    # of which local training (``LocalUpdate.train_s``, summed)
    encode_s: float   # and encoding the updates (``LocalUpdate.encode_s``, summed)
    payload_bytes: int  # the encoded updates' bytes, summed

    @property
    def ms_per_client(self) -> float:
        return 1000 * self.seconds / self.clients


def round_floor(scenario: Scenario, vocab_size: int, shards: Sequence[Shard], round_number: int = 1) -> Floor:
    """Train and encode one plain round's update for each of ``shards`` (client ``k`` holds ``shards[k]``), one
    after another in this process, from the scenario's initial model (see the module docstring)."""
    if scenario.privacy.mode != "none":
        raise ValueError(f"the floor is measured for plain rounds, not privacy.mode {scenario.privacy.mode!r}")
    initial = model_from_config(scenario.model, vocab_size, seed=scenario.seed).state_dict()
    payload = ModelPayload.encode(round_number, initial)
    model = decode_tensors(payload.specs, b"".join(payload.pieces))
    for array in model.values():
        array.flags.writeable = False  # shared read-only by the clients, as in a client process
    config = TaskConfig.from_scenario(scenario, vocab_size)
    trainer = LocalTrainer()
    train_s = encode_s = 0.0
    payload_bytes = 0
    started = time.perf_counter()
    for k, shard in enumerate(shards):
        client_id = str(k)
        task = train_task(k + 1, round_number, payload, config.for_client(
            client_seed(scenario.seed, round_number, client_id), {}), 1.0, None).task
        assert isinstance(task, TrainTask)
        task = dataclasses.replace(task, run_id="floor", local_examples=len(shard))
        update = trainer.train_update(client_id, shard, task, model)
        train_s += update.train_s
        encode_s += update.encode_s
        payload_bytes += len(update.encoded.payload)
    return Floor(len(shards), time.perf_counter() - started, train_s, encode_s, payload_bytes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "spam_email_clients.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="scenario overrides, as fedgrad simulate takes them")
    parser.add_argument("--clients", type=int, default=1000, help="clients trained per pass (default: 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="passes, after one untimed warm-up (default: 3)")
    parser.add_argument("--json", type=Path, help="also write the passes and their mean here")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario, ['privacy.mode="none"', *args.overrides])
    dataset = scenario.build_dataset()
    if args.clients > len(dataset.shards):
        raise SystemExit(f"--clients {args.clients}: the scenario has {len(dataset.shards)} clients")
    shards = dataset.shards[:args.clients]
    vocab_size = len(dataset.vocab)
    round_floor(scenario, vocab_size, shards[:10])  # warm-up: imports, the model's first build
    load = os.getloadavg()[0]
    passes = [round_floor(scenario, vocab_size, shards) for _ in range(args.repeats)]
    seconds = [p.seconds for p in passes]
    weights = sum(v.size for v in model_from_config(scenario.model, vocab_size, seed=0).state_dict().values())
    print(f"floor: {args.clients:,} clients of {scenario.name} ({weights:,} weights), {args.repeats} passes, "
          f"load {load:.2f}-{os.getloadavg()[0]:.2f}: {statistics.mean(seconds):.3f} s a round "
          f"(min {min(seconds):.3f}, max {max(seconds):.3f}; {statistics.mean(p.ms_per_client for p in passes):.2f} "
          f"ms a client, of which training {statistics.mean(p.train_s for p in passes):.3f} s and encoding "
          f"{statistics.mean(p.encode_s for p in passes):.3f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"scenario": scenario.name, "weights": weights, "load": load,
                                         "passes": [dataclasses.asdict(p) for p in passes],
                                         "mean_s": statistics.mean(seconds)}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
