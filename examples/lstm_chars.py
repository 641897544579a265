"""A character-level LSTM language model on the fedgrad engine.

Embedding -> LSTM -> Linear predicts each next character of a text (by default the opening of
*Alice's Adventures in Wonderland*, public domain) with truncated backpropagation through
time over windows of ``--seq-len`` characters. Prints the loss as it falls and a sample.

    python examples/lstm_chars.py [--text FILE] [--steps N] [--hidden H]
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

ALICE = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
    "nothing to do: once or twice she had peeped into the book her sister was reading, but it had "
    "no pictures or conversations in it, 'and what is the use of a book,' thought Alice 'without "
    "pictures or conversations?' So she was considering in her own mind (as well as she could, for "
    "the hot day made her feel very sleepy and stupid), whether the pleasure of making a "
    "daisy-chain would be worth the trouble of getting up and picking the daisies, when suddenly a "
    "White Rabbit with pink eyes ran close by her."
)


class CharModel(nn.Module):
    def __init__(self, vocab_size: int, embed: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids: np.ndarray, state=None):
        """``ids [T, B]`` -> logits ``[T*B, V]`` and the final LSTM state."""
        out, state = self.lstm(self.embed(ids), state)
        return self.head(out.reshape(-1, out.shape[-1])), state


SEQ_LEN = 32
LOG_EVERY = 50


def train(text: str = ALICE, steps: int = 300, seq_len: int = SEQ_LEN, batch: int = 16, embed: int = 16,
          hidden: int = 128,
          lr: float = 0.01, seed: int = 0, log_every: int = LOG_EVERY) -> dict:
    """Adam on random windows; returns the losses logged every ``log_every`` steps and a sample."""
    fg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    encoded = np.array([index[c] for c in text], dtype=np.int64)
    model = CharModel(len(chars), embed, hidden)
    optimizer = fg.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    losses, running = [], 0.0
    for step in range(1, steps + 1):
        starts = rng.integers(0, len(encoded) - seq_len - 1, batch)
        windows = np.stack([encoded[s : s + seq_len + 1] for s in starts], axis=1)  # [T+1, B]
        optimizer.zero_grad()
        logits, _ = model(windows[:-1])
        loss = loss_fn(logits, windows[1:].reshape(-1))
        loss.backward()
        optimizer.step()
        running += loss.item()
        if step % log_every == 0:
            losses.append(running / log_every)
            running = 0.0
    return {"losses": losses, "sample": sample(model, chars, text[0], 80, rng)}


@fg.no_grad()
def sample(model: CharModel, chars: list[str], first: str, length: int, rng: np.random.Generator) -> str:
    """Generate ``length`` characters by sampling from the model's softmax, one step at a time."""
    index = {c: i for i, c in enumerate(chars)}
    out, state, current = [first], None, index[first]
    for _ in range(length):
        logits, state = model(np.array([[current]]), state)
        probs = logits.softmax(axis=-1).numpy()[0].astype(np.float64)
        current = int(rng.choice(len(chars), p=probs / probs.sum()))
        out.append(chars[current])
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", help="a UTF-8 text file to learn (default: a paragraph of Alice)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args(argv)
    text = ALICE
    if args.text:
        with open(args.text, encoding="utf-8") as handle:
            text = handle.read()
    if len(text) < 2 * SEQ_LEN:
        parser.error(f"the text needs at least {2 * SEQ_LEN} characters")
    result = train(text, steps=args.steps, hidden=args.hidden, log_every=LOG_EVERY)
    for k, loss in enumerate(result["losses"], start=1):
        print(json.dumps({"step": k * LOG_EVERY, "loss": round(loss, 4)}))
    print(result["sample"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
