"""Word <-> id mapping and the padded id matrices the models consume.

Id 0 is `PAD` (the padding that `EmbeddingBag(padding_idx=0)` ignores) and id 1 is `UNK` (every
word outside the vocabulary). Real words follow in a deterministic order: most frequent first,
ties broken alphabetically, so the same corpus and split always give the same ids on every machine.
"""
from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from fedgrad.errors import ConfigError, DataError

PAD = 0
UNK = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
_SPECIALS = (PAD_TOKEN, UNK_TOKEN)
_FORMAT = "fedgrad-vocabulary"


class Vocabulary:
    """An immutable word list; `len(vocab)` counts PAD and UNK, so it is the embedding table size."""

    def __init__(self, words: Sequence[str]):
        self._words: tuple[str, ...] = (*_SPECIALS, *words)
        self._ids = {word: index for index, word in enumerate(self._words)}
        if len(self._ids) != len(self._words):
            raise DataError("vocabulary words must be distinct and must not include <pad>/<unk>")

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], min_count: int = 1, max_size: int | None = None,
              reserved: Iterable[str] = ()) -> Vocabulary:
        """Words occurring at least `min_count` times in `token_lists`, at most `max_size` entries in all
        (PAD and UNK included), and then the `reserved` words not among them (beyond `max_size`). Counts are over
        the lists as given: pass one list of unique words per email (`unique_tokens`) and they are document
        frequencies."""
        if min_count < 1:
            raise ConfigError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < len(_SPECIALS):
            raise ConfigError(f"max_vocab must be 0 (unlimited) or >= {len(_SPECIALS)}, got {max_size}")
        counts = Counter(itertools.chain.from_iterable(token_lists))
        ranked = sorted((word for word, count in counts.items() if count >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max_size - len(_SPECIALS)]
        kept = set(ranked)
        return cls([*ranked, *(word for word in dict.fromkeys(reserved) if word not in kept)])

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._words == other._words

    def __hash__(self) -> int:
        return hash(self._words)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} entries)"

    @property
    def words(self) -> tuple[str, ...]:
        """All entries by id, PAD and UNK first."""
        return self._words

    def id_of(self, word: str) -> int:
        return self._ids.get(word, UNK)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of `tokens`; words outside the vocabulary become `UNK`."""
        return list(map(self._ids.get, tokens, itertools.repeat(UNK)))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of `ids`, with padding left out."""
        return [self._words[index] for index in ids if index != PAD]

    def to_dict(self) -> dict:
        return {"format": _FORMAT, "specials": list(_SPECIALS), "words": list(self._words[len(_SPECIALS):])}

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        if not isinstance(data, dict) or data.get("format") != _FORMAT or data.get("specials") != list(_SPECIALS):
            raise DataError("not a fedgrad vocabulary (format/specials mismatch)")
        words = data.get("words")
        if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
            raise DataError("vocabulary 'words' must be a list of strings")
        return cls(words)


def encode_padded(token_lists: Sequence[Sequence[str]], vocab: Vocabulary, max_len: int) -> np.ndarray:
    """int32 ``[N, max_len]``: row i holds the ids of ``token_lists[i][:max_len]``, then `PAD`.

    One flat dictionary pass and one masked scatter instead of N small arrays, so encoding the whole
    corpus costs about as much as looking its words up once.
    """
    if max_len < 1:
        raise ConfigError(f"max_len must be >= 1, got {max_len}")
    truncated = [tokens[:max_len] for tokens in token_lists]
    lengths = np.fromiter(map(len, truncated), dtype=np.int64, count=len(truncated))
    ids = np.full((len(truncated), max_len), PAD, dtype=np.int32)
    flat = vocab.encode(itertools.chain.from_iterable(truncated))
    ids[np.arange(max_len) < lengths[:, None]] = np.array(flat, dtype=np.int32)
    return ids
