"""A small synthetic corpus and scenario: fast enough for end-to-end compare/audit runs, with a vocabulary
large enough (several hundred words) that guessing a planted word at random is unlikely."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _words(rng: np.random.Generator, count: int, prefix: str) -> list[str]:
    return [prefix + "".join(rng.choice(list("abcdefghij"), 5)) for _ in range(count)]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, write_enron_corpus: Callable[..., Path]) -> Path:
    """Enron layout, words from class-specific and shared pools so the classes are learnable and most words
    are rare."""
    rng = np.random.default_rng(0)
    pools = {"spam": _words(rng, 300, "s"), "ham": _words(rng, 300, "h")}
    shared = _words(rng, 200, "c")
    return write_enron_corpus(tmp_path_factory.mktemp("corpus"), pools, shared, rng=rng, own_share=0.6,
                              body_words=30)


@pytest.fixture(scope="session")
def make_scenario(corpus: Path, write_scenario: Callable[..., Path]) -> Callable[[Path], Path]:
    """``make_scenario(directory)``: a 3-client, 2-round scenario whose runs go to ``directory/runs``; small
    insecure keys for speed."""
    return lambda directory: write_scenario(
        directory / "tiny.toml", corpus, directory / "runs", name="tiny", seed=1,
        data={"min_count": 2, "max_len": 40}, train={"epochs": 1, "batch_size": 16, "lr": 0.05},
        federation={"rounds": 2, "round_timeout_s": 30, "processes": 1},
        privacy={"key_bits": 512, "insecure_key_bits": True})


@pytest.fixture
def scenario(tmp_path: Path, make_scenario: Callable[[Path], Path]) -> Path:
    return make_scenario(tmp_path)
