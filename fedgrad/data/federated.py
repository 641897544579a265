"""The federated dataset: a vocabulary, a held-out test set and one training shard per client.

`build_federated_dataset` is the single recipe every entry point uses (simulate, server, client,
centralized training), so all of them see identical ids for the same scenario:

1. load the corpus; 2. stratified seeded train/test split; 3. one bag of unique words per email
(`unique_tokens`, the book's set-of-words); 4. the vocabulary from the TRAIN split only, so no
test word leaks into the model's input space; 5. encode every email to ``max_len`` ids (a bag longer
than that keeps its first ``max_len`` distinct words); 6. partition the training examples.

`FederatedDataset.save` materialises it as ``vocab.json``, ``test.npz`` and ``shard-<k>.npz`` so that
each client process loads only its own file (`load_shard`).
"""
from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fedgrad.data.loaders import load_corpus
from fedgrad.data.partitioning import partition as split_among_clients
from fedgrad.data.split import train_test_split
from fedgrad.data.tokens import unique_tokens
from fedgrad.data.vocabulary import Vocabulary, encode_padded
from fedgrad.errors import ConfigError, DataError

VOCAB_FILE = "vocab.json"
TEST_FILE = "test.npz"


def shard_file_name(client: int) -> str:
    return f"shard-{client}.npz"


@dataclass(frozen=True)
class Shard:
    """`ids`: int32 ``[N, L]`` token ids padded with 0; `labels`: float32 ``[N]`` (1.0 = spam)."""

    ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FederatedDataset:
    """What one scenario trains and evaluates on: `shards[k]` is client k's data, `test` is held out."""

    vocab: Vocabulary
    test: Shard
    shards: list[Shard]

    @property
    def train(self) -> Shard:
        """The whole training split (all shards pooled): the centralized baseline's data."""
        return Shard(np.concatenate([s.ids for s in self.shards]), np.concatenate([s.labels for s in self.shards]))

    def save(self, directory: str | Path) -> Path:
        """Write ``vocab.json``, ``test.npz`` and ``shard-<k>.npz`` into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / VOCAB_FILE).write_text(json.dumps(self.vocab.to_dict()), encoding="utf-8")
        _save_shard(directory / TEST_FILE, self.test)
        for client, shard in enumerate(self.shards):
            _save_shard(directory / shard_file_name(client), shard)
        return directory


def build_federated_dataset(
    source: str | Path | None,
    *,
    n_clients: int,
    partition: str,
    alpha: float,
    test_fraction: float,
    seed: int,
    min_count: int,
    max_len: int,
    max_vocab: int,
    reserved: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> FederatedDataset:
    """The dataset for one scenario (recipe in the module docstring); `max_vocab` 0 means unlimited; `reserved`
    words are in the vocabulary whatever their count (a backdoor's trigger, which attackers' emails carry)."""
    if max_vocab < 0:
        raise ConfigError(f"max_vocab must be >= 0 (0 = unlimited), got {max_vocab}")
    emails = load_corpus(source, cache_dir=cache_dir, text_column=text_column, label_column=label_column)
    labels = np.fromiter((email.label for email in emails), dtype=np.float32, count=len(emails))
    train_idx, test_idx = train_test_split(labels, test_fraction=test_fraction, seed=seed)
    parts = split_among_clients(labels[train_idx], n_clients, scheme=partition, seed=seed, alpha=alpha)
    bags = [unique_tokens(email.text)
            for email in tqdm(emails, desc="tokenizing", unit="email", file=sys.stderr, leave=False)]
    vocab = Vocabulary.build((bags[i] for i in train_idx), min_count=min_count, max_size=max_vocab or None,
                             reserved=reserved)
    ids = encode_padded(bags, vocab, max_len)
    return FederatedDataset(
        vocab=vocab,
        test=Shard(ids[test_idx], labels[test_idx]),
        shards=[Shard(ids[train_idx[part]], labels[train_idx[part]]) for part in parts],
    )


def load_shard(directory: str | Path, client: int) -> Shard:
    """Client `client`'s training shard as written by `FederatedDataset.save`."""
    return _load_shard(Path(directory) / shard_file_name(client))


def load_test(directory: str | Path) -> Shard:
    return _load_shard(Path(directory) / TEST_FILE)


def load_vocab(directory: str | Path) -> Vocabulary:
    path = Path(directory) / VOCAB_FILE
    try:
        return Vocabulary.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise DataError(f"missing {path}: the dataset was not saved there (FederatedDataset.save)") from None
    except (OSError, ValueError, DataError) as exc:  # ValueError: bad JSON or UTF-8; DataError: not a vocabulary
        raise DataError(f"corrupt vocabulary file {path}: {exc}") from None


def _save_shard(path: Path, shard: Shard) -> None:
    np.savez_compressed(path, ids=np.ascontiguousarray(shard.ids, dtype=np.int32),
                        labels=np.asarray(shard.labels, dtype=np.float32))


def _load_shard(path: Path) -> Shard:
    try:
        # Open the file here, not in np.load, which leaks its handle when the zip is damaged.
        with path.open("rb") as file, np.load(file, allow_pickle=False) as arrays:
            ids, labels = arrays["ids"], arrays["labels"]
    except FileNotFoundError:
        raise DataError(f"missing {path}: the dataset was not saved there, or has fewer clients") from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"corrupt shard file {path}: {exc}") from None
    if ids.dtype != np.int32 or ids.ndim != 2 or labels.dtype != np.float32 or labels.shape != (len(ids),):
        raise DataError(f"corrupt shard file {path}: expected int32 ids [N, L] and float32 labels [N], "
                        f"got {ids.dtype}{list(ids.shape)} and {labels.dtype}{list(labels.shape)}")
    return Shard(ids, labels)
