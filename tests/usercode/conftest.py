"""The example's user model and strategy (examples/custom_model), copied to a folder outside the repository and
off sys.path, with a scenario next to them over the small shared fixture corpus."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_model"
MODEL = "spam_nets:make_two_layer"
STRATEGY = "server_momentum:FedAvgMomentum"


@pytest.fixture
def custom_scenario(tmp_path, enron_corpus, write_scenario) -> Callable[..., Path]:
    """``custom_scenario(**sections)``: the user model and strategy on 3 clients, 2 rounds, runs in tmp/runs."""
    code = tmp_path / "lab"
    code.mkdir()
    for module in ("spam_nets.py", "server_momentum.py"):
        shutil.copy(EXAMPLE / module, code / module)

    def write(**sections: dict[str, object]) -> Path:
        tables: dict[str, dict[str, object]] = {
            "model": {"name": MODEL}, "train": {"batch_size": 8, "lr": 0.05, "optimizer": "adam"},
            "federation": {"rounds": 2, "round_timeout_s": 60, "strategy": STRATEGY}}
        for section, values in sections.items():
            tables.setdefault(section, {}).update(values)
        return write_scenario(code / "custom.toml", enron_corpus, tmp_path / "runs", name="custom", seed=1, **tables)

    return write
