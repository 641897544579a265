"""Engine speed, side by side with PyTorch and hand-written numpy, measured in one run.

    python benchmarks/engine.py [--threads N] [--repeats R]

Prints one table with the four ratios of issue 3:

1. MLP 784-128-10, batch 64, forward + backward + SGD step, fedgrad / torch (target <= 0.7);
2. the book's spam model (Embedding(50,000, 1) over a 500 x 500 padded token batch, sum,
   sigmoid, MSE, SGD step), fedgrad / hand-written numpy (target <= 1.2) and
   torch with a dense-gradient nn.Embedding / fedgrad (target >= 10);
3. one LSTM step (batch 32, input 512, hidden 512) forward + backward, fedgrad / torch
   (target <= 1.0);
4. a chain of 1,000 tiny ops forward + backward, microseconds per op (target <= 5).

Thread counts are pinned before numpy and torch are imported: BLAS (numpy's OpenBLAS) and
torch intra-op threads use the same ``--threads`` (default: all cores). Every side gets the same
treatment: each timing is the best of ``--repeats`` rounds, after the same warm-up, and the rounds
of all sides of a comparison are interleaved so that load from other processes hits them alike.
Each side is timed in exactly one session (no side gets the best of two). All tensors are float32.

The hand-written numpy spam step does the work fedgrad does, the best way numpy can: it takes the
same padded id batch, drops the padding (token 0, ~45% of the 250,000 slots) before gathering, sums
each email's embeddings with ``np.add.reduceat`` and scatters the gradient of the real tokens only
with ``np.bincount``.
"""
from __future__ import annotations

import argparse
import os
import sys


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="BLAS and torch threads")
    parser.add_argument("--repeats", type=int, default=15, help="timing rounds per benchmark (best is kept)")
    return parser.parse_args()


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # must happen before numpy / torch load their thread pools
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import fedgrad as fg  # noqa: E402
from fedgrad import nn  # noqa: E402


def best_time(step: Callable[[], object], number: int, repeats: int) -> float:
    """Best seconds per call over ``repeats`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            step()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def compare(first: Callable[[], object], second: Callable[[], object], number: int,
            repeats: int) -> tuple[float, float]:
    """Best time of each, measured in alternating rounds after a warm-up."""
    a, b = compare_all([first, second], [number, number], repeats)
    return a, b


def compare_all(steps: list[Callable[[], object]], numbers: list[int], repeats: int) -> list[float]:
    """Best seconds per call of each step: the same warm-up and ``repeats`` interleaved rounds for every one
    (``numbers[i]`` calls of step i per round, so a slow step does not take over the wall clock)."""
    for _ in range(3):
        for step in steps:
            step()
    best = [float("inf")] * len(steps)
    for r in range(repeats):
        for k in range(len(steps)):  # the order rotates each round: no side always runs after the same one
            i = (r + k) % len(steps)
            best[i] = min(best[i], best_time(steps[i], numbers[i], 1))
    return best


@dataclass
class Row:
    name: str
    ours_s: float
    reference: str
    reference_s: float
    value: float
    unit: str
    target: str
    met: bool


# ----------------------------------------------------------------------------- 1. MLP
def bench_mlp(torch, repeats: int) -> Row:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 784)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = fg.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    xt = fg.tensor(x)

    def ours() -> None:
        opt.zero_grad()
        loss_fn(model(xt), y).backward()
        opt.step()

    tmodel = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01)
    tloss = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def theirs() -> None:
        topt.zero_grad()
        tloss(tmodel(tx), ty).backward()
        topt.step()

    a, b = compare(ours, theirs, 50, repeats)
    return Row("MLP 784-128-10 b64 step", a, "torch", b, a / b, "x torch time", "<= 0.7", a / b <= 0.7)


# ----------------------------------------------------------------------------- 2. spam
VOCAB, BATCH, LENGTH = 50_000, 500, 500


def spam_batch() -> tuple[np.ndarray, np.ndarray]:
    """Padded ids (token 0 = PAD) with email lengths between 50 and 500 tokens."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, (BATCH, LENGTH)).astype(np.int32)
    lengths = rng.integers(50, LENGTH + 1, BATCH)
    ids[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    return ids, rng.integers(0, 2, BATCH).astype(np.float32)


def bench_spam(torch, repeats: int) -> tuple[Row, Row]:
    ids, labels = spam_batch()
    init = (np.random.default_rng(1).random((VOCAB, 1)).astype(np.float32) - 0.5) * 0.1
    init[0] = 0.0

    bag = nn.EmbeddingBag(VOCAB, 1, mode="sum", padding_idx=0)
    bag.weight.data[...] = init
    opt = fg.optim.SGD(bag.parameters(), lr=0.01)
    target = fg.tensor(labels[:, None])

    def ours() -> None:
        opt.zero_grad()
        nn.functional.mse_loss(bag(ids).sigmoid(), target).backward()
        opt.step()

    weight = init.copy()
    flat_ids = ids.reshape(-1)
    y = labels[:, None]

    def numpy_step() -> None:
        """What one would write by hand, skipping padding as fedgrad does: drop the PAD slots, gather and
        segment-sum the real tokens, sigmoid, MSE gradient, bincount scatter of the real tokens only."""
        keep = flat_ids != 0
        tokens = flat_ids[keep]
        counts = np.count_nonzero(keep.reshape(BATCH, LENGTH), axis=1)
        starts = np.concatenate(([0], np.cumsum(counts[:-1])))
        sums = np.add.reduceat(weight[:, 0].take(tokens), starts) * (counts > 0)  # an empty email sums to 0
        pred = 1.0 / (1.0 + np.exp(-sums[:, None]))
        delta = (pred - y) * (2.0 / pred.size) * pred * (1.0 - pred)
        grad = np.bincount(tokens, weights=np.repeat(delta[:, 0], counts), minlength=VOCAB)
        weight[:, 0] -= (0.01 * grad).astype(np.float32)

    def check_same_step() -> None:
        """The numpy step must compute what fedgrad's does: one step of each from the same weights."""
        saved = weight.copy()
        bag.weight.data[...] = saved
        ours()
        numpy_step()
        np.testing.assert_allclose(weight, bag.weight.data, rtol=1e-5, atol=1e-9)
        weight[...] = saved
        bag.weight.data[...] = saved

    temb = torch.nn.Embedding(VOCAB, 1, padding_idx=0)  # dense gradient (sparse=False)
    with torch.no_grad():
        temb.weight.copy_(torch.from_numpy(init))
    topt = torch.optim.SGD(temb.parameters(), lr=0.01)
    tids, ty = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(labels[:, None])

    def torch_step() -> None:
        topt.zero_grad()
        torch.nn.functional.mse_loss(torch.sigmoid(temb(tids).sum(dim=1)), ty).backward()
        topt.step()

    check_same_step()
    # One session for all three sides: the same warm-up, the same rounds, interleaved; each its best.
    a, b, d = compare_all([ours, numpy_step, torch_step], [10, 10, 3], repeats)
    return (
        Row("spam Embedding(50k,1) 500x500 step", a, "numpy by hand, no PAD", b, a / b, "x numpy time", "<= 1.2",
            a / b <= 1.2),
        Row("spam Embedding(50k,1) 500x500 step", a, "torch dense Embedding", d, d / a, "x faster", ">= 10",
            d / a >= 10),
    )


# ----------------------------------------------------------------------------- 3. LSTM
def bench_lstm(torch, repeats: int) -> Row:
    batch, features, hidden = 32, 512, 512
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, features)).astype(np.float32)
    h0 = rng.standard_normal((batch, hidden)).astype(np.float32)
    c0 = rng.standard_normal((batch, hidden)).astype(np.float32)
    cell = nn.LSTMCell(features, hidden)
    xt, ht, ct = fg.tensor(x), fg.tensor(h0), fg.tensor(c0)

    def ours() -> None:
        cell.zero_grad()
        h, c = cell(xt, (ht, ct))
        (h.sum() + c.sum()).backward()

    tcell = torch.nn.LSTMCell(features, hidden)
    tx, th, tc = torch.from_numpy(x), torch.from_numpy(h0), torch.from_numpy(c0)

    def theirs() -> None:
        tcell.zero_grad()
        h, c = tcell(tx, (th, tc))
        (h.sum() + c.sum()).backward()

    a, b = compare(ours, theirs, 10, repeats)
    return Row("LSTM step b32 in512 h512 fwd+bwd", a, "torch", b, a / b, "x torch time", "<= 1.0", a / b <= 1.0)


# ----------------------------------------------------------------------------- 4. tiny-op chain
CHAIN_OPS = 1000


def bench_chain(torch, repeats: int) -> Row:
    """``y = tanh(y * w + b) - b`` repeated: 4 ops per round, 1,000 ops, then backward."""
    x = fg.randn(8, requires_grad=True)
    w, b = fg.randn(8), fg.randn(8)

    def ours() -> None:
        y = x
        for _ in range(CHAIN_OPS // 4):
            y = (y * w + b).tanh() - b
        y.sum().backward()

    tx = torch.randn(8, requires_grad=True)
    tw, tb = torch.randn(8), torch.randn(8)

    def theirs() -> None:
        y = tx
        for _ in range(CHAIN_OPS // 4):
            y = torch.tanh(y * tw + tb) - tb
        y.sum().backward()

    ours_s, theirs_s = compare(ours, theirs, 5, repeats)
    per_op = ours_s / CHAIN_OPS * 1e6
    return Row("1,000 tiny ops fwd+bwd", ours_s, "torch", theirs_s, per_op, "us per op", "<= 5", per_op <= 5.0)


def run_all(torch, repeats: int) -> list[Row]:
    return [bench_mlp(torch, repeats), *bench_spam(torch, repeats), bench_lstm(torch, repeats),
            bench_chain(torch, repeats)]


def format_table(rows: list[Row], threads: int, repeats: int, torch_version: str) -> str:
    lines = [
        (f"fedgrad engine benchmark: float32, {threads} thread(s) for numpy BLAS and torch "
        f"(torch {torch_version}, numpy {np.__version__}), best of {repeats} interleaved rounds")
    ]
    header = f"{'benchmark':36} {'fedgrad':>10} {'reference':>22} {'ref time':>10}   {'result':>22} {'target':>7}"
    lines += [header, "-" * len(header)]
    for row in rows:
        result = f"{row.value:.2f} {row.unit}"
        lines.append(
            f"{row.name:36} {row.ours_s * 1e3:8.3f}ms {row.reference:>22} {row.reference_s * 1e3:8.3f}ms   "
            f"{result:>22} {row.target:>7} {'ok' if row.met else 'MISSED'}"
        )
    return "\n".join(lines)


def main() -> int:
    import torch

    assert ARGS is not None
    torch.set_num_threads(ARGS.threads)
    rows = run_all(torch, ARGS.repeats)
    print(format_table(rows, ARGS.threads, ARGS.repeats, torch.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
