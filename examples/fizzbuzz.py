"""FizzBuzz as 4-way classification (the PyTorch ch.2 exercise), on the fedgrad engine.

Numbers are 10-bit binary vectors; classes are [number, fizz, buzz, fizzbuzz]. The network
(10 -> 100 -> 4) trains on 101..1023 and is tested on 1..100, which it never saw, so the
score measures whether it learned divisibility by 3 and 5 from the bits.

Plain SGD on 0/1 bits (the chapter's recipe) fits the training numbers but typically misses a
few small multiples of 5 (5, 10, 40, 80: patterns with few bits set, rare above 100). Bits
centred to -1/+1, tanh units and Adam with a little weight decay reach 100% on 1..100 with
the default seed (and with 9 of seeds 0..9; the tenth gets 98%).

    python examples/fizzbuzz.py [--epochs N] [--seed S]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import fedgrad as fg
from fedgrad import nn

BITS = 10
LABELS = ("{}", "fizz", "buzz", "fizzbuzz")


def encode(numbers: np.ndarray) -> np.ndarray:
    """Binary digits, least significant first, as -1/+1 float32 ``[N, BITS]``."""
    return (((numbers[:, None] >> np.arange(BITS)) & 1) * 2 - 1).astype(np.float32)


def fizzbuzz_class(numbers: np.ndarray) -> np.ndarray:
    return (numbers % 3 == 0).astype(np.int64) + 2 * (numbers % 5 == 0)


def say(number: int, label: int) -> str:
    return LABELS[label].format(number)


def train(
    epochs: int = 800, batch_size: int = 64, hidden: int = 100, lr: float = 0.01, weight_decay: float = 1e-4,
    seed: int = 0
) -> dict:
    """Train on 101..1023 and return the accuracy on 1..100 (and the model's answers)."""
    fg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_numbers = np.arange(101, 2**BITS)
    x_train, y_train = encode(train_numbers), fizzbuzz_class(train_numbers)
    model = nn.Sequential(nn.Linear(BITS, hidden), nn.Tanh(), nn.Linear(hidden, 4))
    optimizer = fg.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = rng.permutation(len(train_numbers))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(fg.tensor(x_train[batch])), y_train[batch]).backward()
            optimizer.step()
    test_numbers = np.arange(1, 101)
    with fg.no_grad():
        predicted = model(fg.tensor(encode(test_numbers))).argmax(axis=1).numpy()
    return {
        "test_accuracy": float((predicted == fizzbuzz_class(test_numbers)).mean()),
        "answers": [say(int(n), int(p)) for n, p in zip(test_numbers, predicted, strict=True)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = train(epochs=args.epochs, seed=args.seed)
    print(" ".join(result["answers"]))
    print(json.dumps({"test_accuracy": result["test_accuracy"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
