"""`fedgrad train --centralized` end to end on a tiny generated corpus."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fedgrad import backend
from fedgrad.backend import DeviceError
from fedgrad.cli.main import main

SPAM_WORDS = "winner cash prize free offer viagra click unsubscribe money credit".split()
HAM_WORDS = "meeting project report schedule thanks review lunch draft agenda notes".split()
NEUTRAL = "the a to of and in for on with this that is it you we".split()


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    """A label<TAB>text corpus of 300 emails and a scenario that trains on it."""
    root = tmp_path_factory.mktemp("train_cli")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(300):
        spam = i % 3 == 0
        words = list(rng.choice(SPAM_WORDS if spam else HAM_WORDS, 3)) + list(rng.choice(NEUTRAL, 8))
        lines.append(f"{'spam' if spam else 'ham'}\t{' '.join(rng.permutation(words))}")
    (root / "mails.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "tiny.toml").write_text(
        f'[data]\ncorpus = "{(root / "mails.tsv").as_posix()}"\npartition = "iid"\nmin_count = 1\nmax_len = 20\n'
        '[train]\nepochs = 1\nbatch_size = 20\nlr = 0.05\n'
        '[federation]\nclients = 3\nclients_per_round = 3\nrounds = 4\n',
        encoding="utf-8",
    )
    return root / "tiny.toml"


def run_train(scenario_file, out_dir, *extra):
    code = main(["train", "--centralized", str(scenario_file), "--set", f'output.dir="{out_dir.as_posix()}"', *extra])
    (run_dir,) = out_dir.iterdir()
    return code, run_dir


def test_centralized_run_writes_a_run_directory(scenario_file, tmp_path, capsys):
    code, run_dir = run_train(scenario_file, tmp_path / "runs")
    assert code == 0
    assert run_dir.name.startswith("tiny-")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3, 4]  # rounds x epochs
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == "centralized" and summary["epochs"] == 4
    assert summary["final"]["accuracy"] == records[-1]["accuracy"] >= 0.95
    assert summary["final"]["accuracy"] > summary["initial"]["accuracy"]
    assert summary["train_examples"] + summary["test_examples"] == 300
    report = (run_dir / "report.md").read_text()
    assert "| mode | centralized |" in report and "| before training |" in report
    out = capsys.readouterr().out
    assert "epoch" in out and f"results: {run_dir}" in out


def test_same_seed_same_metrics(scenario_file, tmp_path):
    def metrics(out):
        _, run_dir = run_train(scenario_file, out, "--epochs", "2")
        return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
                for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")


def test_bad_override_is_one_line_exit_2(scenario_file, tmp_path, capsys):
    assert main(["train", "--centralized", str(scenario_file), "--set", "train.lr=0"]) == 2
    assert capsys.readouterr().err.strip() == "fedgrad: error: train.lr: must be > 0 (got 0.0)"


def _gpu_available() -> bool:
    try:
        backend.get_xp("cuda")
    except DeviceError:
        return False
    return True


GPU = _gpu_available()


@pytest.mark.skipif(GPU, reason="this machine has cupy and a GPU: test_cuda_training_equals_numpy_training runs")
def test_cuda_without_a_gpu_is_one_clear_error(scenario_file, tmp_path, capsys):
    """Without cupy the one error names the missing package and how to install it; with cupy but no GPU, it says
    no GPU was found. Either way: exit 2, one line, no run directory left behind."""
    import importlib.util

    out = tmp_path / "runs"
    code = main(["train", "--centralized", str(scenario_file), "--epochs", "1", "--set", 'train.device="cuda"',
                 "--set", f'output.dir="{out.as_posix()}"'])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    [error] = [line for line in err.splitlines() if line.startswith("fedgrad:")]  # besides the progress bar
    if importlib.util.find_spec("cupy") is None:
        assert error == "fedgrad: error: device 'cuda' needs cupy, which is not installed (pip install 'fedgrad[cuda]')"
    else:
        assert error.startswith("fedgrad: error: device 'cuda' asked for but no")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.skipif(not GPU, reason="needs cupy and a GPU (the no-GPU error is tested above)")
def test_cuda_training_equals_numpy_training(scenario_file, tmp_path):
    """The same seeded centralized run on the GPU and on the CPU: per-epoch loss equal within float32
    tolerance, accuracy equal up to one borderline test example; and one step's gradients equal too."""
    def records(device):
        code, run_dir = run_train(scenario_file, tmp_path / device, "--epochs", "3",
                                  "--set", f'train.device="{device}"')
        assert code == 0
        return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()], run_dir

    (cpu, cpu_dir), (gpu, _) = records("cpu"), records("cuda")
    test_examples = json.loads((cpu_dir / "summary.json").read_text())["test_examples"]
    assert len(cpu) == len(gpu) == 3
    np.testing.assert_allclose([r["loss"] for r in gpu], [r["loss"] for r in cpu], rtol=1e-4, atol=1e-6)
    for a, b in zip(gpu, cpu, strict=True):
        assert abs(a["accuracy"] - b["accuracy"]) <= 1 / test_examples + 1e-12

    import fedgrad as fg
    from fedgrad import nn

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 32)).astype(np.float32), rng.integers(0, 4, 64)
    grads = {}
    for device in ("cpu", "cuda"):
        model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
        init = np.random.default_rng(1)
        for param in model.parameters():
            param.data[...] = (init.standard_normal(param.data.shape) * 0.1).astype(np.float32)
        model.to(device)
        loss = nn.CrossEntropyLoss()(model(fg.tensor(x).to(device)), fg.tensor(y).to(device))
        loss.backward()
        grads[device] = [p.grad.numpy() for p in model.parameters()]
    for on_gpu, on_cpu in zip(grads["cuda"], grads["cpu"], strict=True):
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-5, atol=1e-6)


def test_the_baseline_runs_from_python_as_the_cli_runs_it(scenario_file, tmp_path):
    import fedgrad

    result = fedgrad.baseline(scenario_file, epochs=2, output__dir=str(tmp_path / "api"))
    _, run_dir = run_train(scenario_file, tmp_path / "cli", "--epochs", "2")
    cli_records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r.round for r in result.records] == [1, 2] and result.summary.mode == "centralized"
    assert [(r.accuracy, r.loss, r.train_loss) for r in result.records] == [
        (r["accuracy"], r["loss"], r["train_loss"]) for r in cli_records]  # the same seeded epochs
    assert result.run_dir.parent == tmp_path / "api" and (result.run_dir / "summary.json").exists()
