"""A small synthetic corpus and scenario: fast enough for end-to-end compare/audit runs, with a vocabulary
large enough (several hundred words) that guessing a planted word at random is unlikely."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _words(rng: np.random.Generator, count: int, prefix: str) -> list[str]:
    return [prefix + "".join(rng.choice(list("abcdefghij"), 5)) for _ in range(count)]


def write_corpus(root: Path, per_class: int = 60) -> Path:
    """ham/ and spam/ folders of 'Subject: ...' text files (Enron layout), words from class-specific and shared
    pools so the classes are learnable and most words are rare."""
    rng = np.random.default_rng(0)
    pools = {"spam": _words(rng, 300, "s"), "ham": _words(rng, 300, "h")}
    shared = _words(rng, 200, "c")
    for label, own in pools.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            body = [rng.choice(own) if rng.random() < 0.6 else rng.choice(shared) for _ in range(30)]
            (root / label / f"{i:04d}.{label}.txt").write_text(
                f"Subject: {' '.join(rng.choice(own, 3))}\n{' '.join(body)}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def write_scenario(directory: Path, corpus: Path) -> Path:
    """A 3-client, 2-round scenario whose runs go to ``directory/runs``; small insecure keys for speed."""
    path = directory / "tiny.toml"
    path.write_text(f"""
name = "tiny"
seed = 1
[data]
corpus = "{corpus}"
partition = "iid"
min_count = 2
max_len = 40
[model]
name = "book"
[train]
epochs = 1
batch_size = 16
lr = 0.05
[federation]
clients = 3
clients_per_round = 3
rounds = 2
min_clients = 2
round_timeout_s = 30
processes = 1
[privacy]
key_bits = 512
insecure_key_bits = true
[output]
dir = "{directory / 'runs'}"
""", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def make_scenario(corpus: Path) -> Callable[[Path], Path]:
    """``make_scenario(directory)``: the tiny scenario, writing its runs below ``directory``."""
    return lambda directory: write_scenario(directory, corpus)


@pytest.fixture
def scenario(tmp_path: Path, make_scenario: Callable[[Path], Path]) -> Path:
    return make_scenario(tmp_path)
