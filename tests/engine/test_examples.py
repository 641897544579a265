"""The runnable examples, at small sizes."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_script(path: Path, name: str) -> ModuleType:
    """Import a script that is not part of a package (examples/, benchmarks/)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_example(name: str) -> ModuleType:
    return load_script(EXAMPLES / f"{name}.py", f"example_{name}")


def test_fizzbuzz_is_perfect_on_1_to_100():
    fizzbuzz = load_example("fizzbuzz")
    result = fizzbuzz.train()
    assert result["test_accuracy"] == 1.0
    assert result["answers"][:15] == [
        "1", "2", "fizz", "4", "buzz", "fizz", "7", "8", "fizz", "buzz", "11", "fizz", "13", "14", "fizzbuzz",
    ]


def write_toy_corpus(path: Path, n: int = 600, seed: int = 0) -> Path:
    """``label<TAB>text`` lines: spam and ham draw from different word pools plus shared filler."""
    rng = np.random.default_rng(seed)
    spam_words = [f"offer{i}" for i in range(40)]
    ham_words = [f"meeting{i}" for i in range(40)]
    filler = [f"the{i}" for i in range(200)]
    lines = []
    for k in range(n):
        label = k % 2
        words = list(rng.choice(spam_words if label else ham_words, 4)) + list(rng.choice(filler, 20))
        lines.append(f"{'spam' if label else 'ham'}\t{' '.join(words)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_book_spam_model_learns_a_toy_corpus(tmp_path):
    spam_book = load_example("spam_book")
    corpus = write_toy_corpus(tmp_path / "toy.tsv")
    records = list(spam_book.train(str(corpus), epochs=4, batch_size=100, max_len=50))
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["test_accuracy"] >= 0.95
    assert records[-1]["train_loss"] < records[0]["train_loss"]


def test_spam_example_reports_a_missing_corpus_in_one_line(tmp_path, capsys):
    spam_book = load_example("spam_book")
    assert spam_book.main(["--corpus", str(tmp_path / "absent.tsv")]) == 2
    assert "not found" in capsys.readouterr().err


def test_lstm_loss_falls():
    lstm_chars = load_example("lstm_chars")
    result = lstm_chars.train(steps=60, hidden=32, batch=8, log_every=20)
    losses = result["losses"]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0]
    assert len(result["sample"]) == 81


def test_example_mains_print_json(capsys):
    lstm_chars = load_example("lstm_chars")
    assert lstm_chars.main(["--steps", "50", "--hidden", "16"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert set(json.loads(first)) == {"step", "loss"}


def test_benchmark_runs_and_reports_all_four_ratios():
    """A smoke run (one round each, threads as configured): the numbers are not checked, only
    that every benchmark still runs and the table names all five comparisons."""
    torch = pytest.importorskip("torch", reason="the benchmark compares against torch (test extra)")
    bench = load_script(EXAMPLES.parent / "benchmarks" / "engine.py", "benchmark_engine")
    rows = bench.run_all(torch, repeats=1)
    assert len(rows) == 5 and all(row.ours_s > 0 and row.reference_s > 0 for row in rows)
    table = bench.format_table(rows, threads=1, repeats=1, torch_version=torch.__version__)
    for unit in ("x torch time", "x numpy time", "x faster", "us per op"):
        assert unit in table
