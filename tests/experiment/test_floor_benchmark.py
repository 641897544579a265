"""benchmarks/floor.py: the machine's floor trains and encodes with a client's own code, no messaging."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

from client.trainer import LocalTrainer, LocalUpdate
from fedgrad.data import Shard
from fedgrad.models import model_from_config
from fedgrad.protocol import TrainTask
from fedgrad.scenario import load_scenario
from fedgrad.transport.codec import encode_tensors
from tests.experiment.test_flower_benchmark import load_benchmark

floor = load_benchmark("floor")


def test_the_floor_trains_and_encodes_each_client_through_the_client_trainer(
        tmp_path: Path, enron_corpus: Path, write_scenario: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario(write_scenario(tmp_path / "s.toml", enron_corpus, name="floor", seed=3,
                                            federation={"clients": 4}))
    dataset = scenario.build_dataset()
    vocab_size = len(dataset.vocab)
    trained: list[tuple[str, int | None, int]] = []
    real = LocalTrainer.train_update

    def spy(self: LocalTrainer, client_id: str, shard: Shard, task: TrainTask,
            model: Mapping[str, np.ndarray]) -> LocalUpdate:
        trained.append((client_id, task.config.seed, task.local_examples))
        return real(self, client_id, shard, task, model)

    monkeypatch.setattr(LocalTrainer, "train_update", spy)
    result = floor.round_floor(scenario, vocab_size, dataset.shards, round_number=2)
    seeds = {seed for _, seed, _ in trained}
    assert [(client, examples) for client, _, examples in trained] == [
        (str(k), len(shard)) for k, shard in enumerate(dataset.shards)]
    assert len(seeds) == 4 and None not in seeds  # each client's own seed for the round, as the coordinator's
    weights = model_from_config(scenario.model, vocab_size, seed=0).state_dict()
    one_update = len(encode_tensors({name: np.zeros_like(w) for name, w in weights.items()})[1])
    assert result.clients == 4 and result.payload_bytes == 4 * one_update  # plain float32 updates
    assert 0 < result.train_s + result.encode_s <= result.seconds


def test_the_floor_is_for_plain_rounds(tmp_path: Path, enron_corpus: Path,
                                       write_scenario: Callable[..., Path]) -> None:
    scenario = load_scenario(write_scenario(tmp_path / "s.toml", enron_corpus, name="floor",
                                            privacy={"mode": "paillier-trusted"}))
    with pytest.raises(ValueError, match="plain rounds"):
        floor.round_floor(scenario, 10, [])
