"""The spam classifier of Grokking Deep Learning (ch.15), written with the fedgrad engine.

The model is the book's: one weight per word (``Embedding(V, 1)``), summed over the distinct
words of an email, squashed by a sigmoid, trained with the book's summed squared error and
plain SGD (lr 0.01, batches of 500). Words never seen in training add nothing, as in the book.

    python examples/spam_book.py [--corpus PATH] [--epochs N] [--max-len L]

``--corpus`` takes anything ``fedgrad.data.load_corpus`` reads (default: the SpamAssassin corpus,
fetched once into the cache); prints one JSON line per epoch with the test accuracy.
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
from fedgrad.data import PAD, UNK, Vocabulary, encode_padded, load_corpus, train_test_split, unique_tokens
from fedgrad.errors import FedgradError


class BookSpamModel(nn.Module):
    """``sigmoid(sum of the email's word weights)`` -> ``[B, 1]``; weights start at zero as in the book."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 1, padding_idx=PAD)
        self.embed.weight.data[...] = 0.0

    def forward(self, ids: np.ndarray) -> fg.Tensor:
        return self.embed(ids).sum(axis=1).sigmoid()


def book_mse(pred: fg.Tensor, target: fg.Tensor) -> fg.Tensor:
    """The book's MSELoss: squared errors summed over the batch (so lr 0.01 means what it meant there)."""
    diff = pred - target
    return (diff * diff).sum()


def encode(texts: list[str], vocab: Vocabulary, max_len: int) -> np.ndarray:
    """Padded id matrix of each email's distinct words, unknown words dropped (made padding)."""
    ids = encode_padded([unique_tokens(text) for text in texts], vocab, max_len)
    ids[ids == UNK] = PAD
    return ids


def train(corpus: str | None = None, epochs: int = 3, batch_size: int = 500, lr: float = 0.01, max_len: int = 500,
          seed: int = 0):
    """Train on 80% of the corpus; yields ``{"epoch", "train_loss", "test_accuracy"}`` per epoch."""
    emails = load_corpus(corpus)
    labels = np.array([email.label for email in emails], dtype=np.float32)
    train_idx, test_idx = train_test_split(labels, test_fraction=0.2, seed=seed)
    vocab = Vocabulary.build(unique_tokens(emails[i].text) for i in train_idx)
    x_train = encode([emails[i].text for i in train_idx], vocab, max_len)
    x_test = encode([emails[i].text for i in test_idx], vocab, max_len)
    y_train, y_test = labels[train_idx][:, None], labels[test_idx][:, None]

    model = BookSpamModel(len(vocab))
    optimizer = fg.optim.SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = book_mse(model(x_train[batch]), fg.tensor(y_train[batch]))
            loss.backward()
            optimizer.step()
            total += loss.item()
        with fg.no_grad():
            predicted = model(x_test).numpy() > 0.5
        yield {"epoch": epoch, "train_loss": total / len(order),
               "test_accuracy": float((predicted == (y_test > 0.5)).mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=None, help="corpus path or 'spamassassin' (default)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=500)
    args = parser.parse_args(argv)
    try:
        for record in train(args.corpus, epochs=args.epochs, max_len=args.max_len):
            print(json.dumps(record))
    except FedgradError as exc:  # a missing or malformed corpus: one line, no traceback
        print(f"spam_book: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
