"""The spam LSTM model (``model.name = "lstm"``) against the same network in PyTorch, measured in one run.

    python benchmarks/lstm_model.py [--threads N] [--repeats R] [--batch B] [--max-len L] [--hidden H]

One local training step on a batch of emails (default: 500 emails of 64 words, hidden 32, a 20,000-word
vocabulary): embedding, LSTM over the words, mean of its outputs over the words present, linear logit,
binary cross-entropy, backward, Adam step. PyTorch runs ``nn.Embedding`` + ``nn.LSTM`` (its fused CPU kernel)
+ the same pooling. Both sides get the same warm-up and interleaved rounds (``compare_all`` of
``benchmarks/engine.py``); the printed ratio is fedgrad's time over torch's. No target: it says what a
federated round of ``spam_lstm`` costs per batch, and how far a Python-level time loop is from a fused one.
"""
from __future__ import annotations

import argparse
import os
import sys


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (a client process uses 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (best is kept)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=32)
    return parser.parse_args()


ARGS = _parse_args()
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy and torch load
    os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import fedgrad as fg  # noqa: E402
from benchmarks.engine import compare_all  # noqa: E402
from fedgrad.models import build_model  # noqa: E402

VOCAB = 20_000


def main() -> int:
    torch.set_num_threads(ARGS.threads)
    rng = np.random.default_rng(0)
    lengths = rng.integers(ARGS.max_len // 4, ARGS.max_len + 1, size=ARGS.batch)  # some emails are short
    ids = np.zeros((ARGS.batch, ARGS.max_len), dtype=np.int32)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(2, VOCAB, size=length)
    labels = rng.integers(0, 2, size=ARGS.batch).astype(np.float32)

    model = build_model("lstm", VOCAB, seed=0, hidden=ARGS.hidden, max_len=ARGS.max_len)
    optimizer = fg.optim.Adam(model.parameters(), lr=0.01)
    target = fg.Tensor(labels)

    def ours() -> None:
        loss = model.loss_fn(model(ids), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    embedding = torch.nn.Embedding(VOCAB, ARGS.hidden, padding_idx=0)
    lstm = torch.nn.LSTM(ARGS.hidden, ARGS.hidden)
    out = torch.nn.Linear(ARGS.hidden, 1)
    parameters = [*embedding.parameters(), *lstm.parameters(), *out.parameters()]
    torch_optimizer = torch.optim.Adam(parameters, lr=0.01)
    tids = torch.from_numpy(ids.T.astype(np.int64).copy())
    mask = (tids != 0).float()[:, :, None]
    tlabels = torch.from_numpy(labels)

    def theirs() -> None:
        outputs, _ = lstm(embedding(tids))
        pooled = (outputs * mask).sum(0) / mask.sum(0).clamp(min=1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out(pooled).reshape(-1), tlabels)
        torch_optimizer.zero_grad()
        loss.backward()
        torch_optimizer.step()

    ours_s, theirs_s = compare_all([ours, theirs], [1, 1], ARGS.repeats)
    print(f"spam LSTM training step, {ARGS.batch} emails x {ARGS.max_len} words, hidden {ARGS.hidden}, "
          f"{ARGS.threads} thread(s), best of {ARGS.repeats} interleaved rounds (torch {torch.__version__})")
    print(f"fedgrad {ours_s * 1e3:.1f} ms   torch {theirs_s * 1e3:.1f} ms   ratio {ours_s / theirs_s:.2f}x torch time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
