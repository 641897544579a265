"""Leakage audit: can the coordinator read a client's email from what it observes?

The book's demonstration: with plain FedAvg and a bag-of-words model, one SGD step on Bob's email
"my computer password is pizza" changes exactly the embedding rows of those five words, so whoever sees
Bob's update reads his words off its non-zero rows. This module turns that into a measurement:

1. ``make_canary`` invents a secret made of words that occur nowhere else (pseudo-words drawn from a seed and
   checked against the corpus vocabulary), so recovering them can only come from the planted email;
2. ``plant_canary`` appends the encoded canary email to one client's shard;
3. after a round, ``recover_words`` plays the attacker on whatever the coordinator observed (an individual
   update in plain FedAvg, the decrypted aggregate with Paillier, a noised update with DP);
4. ``audit_score`` compares the recovered words with the canary and with what guessing would achieve (true- and
   false-positive rates; chance for naming as many words at random).

The canary words must have rows in the model's embedding, i.e. be in the vocabulary the model was built with
(for instance by planting the canary email at least ``min_count`` times before the vocabulary is built);
words outside it map to the unknown-word id and cannot leak by construction, which would make the audit vacuous.
"""
from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_CONSONANTS = "bcdfghjklmnprstvwxz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class Canary:
    """A secret email: a familiar prefix followed by unique words. Only ``words`` are audited; the prefix
    words are common and their recovery says nothing about this client."""

    words: tuple[str, ...]
    prefix: str = "my computer password is"

    @property
    def text(self) -> str:
        return f"{self.prefix} {' '.join(self.words)}"


def _pseudo_word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CONSONANTS)


def make_canary(seed: int, n_words: int = 5, exclude: Collection[str] = ()) -> Canary:
    """``n_words`` distinct pronounceable pseudo-words (lowercase letters, 7 to 11 characters, so every
    tokenizer keeps them whole) drawn from ``seed`` and absent from ``exclude`` (pass the corpus vocabulary)."""
    if n_words < 1:
        raise ValueError(f"a canary needs at least one word, got n_words={n_words}")
    rng = random.Random(seed)
    excluded = set(exclude)
    words: list[str] = []
    while len(words) < n_words:
        word = _pseudo_word(rng, rng.randint(3, 5))
        if word not in excluded and word not in words:
            words.append(word)
    return Canary(words=tuple(words))


def plant_canary(
    ids: np.ndarray,
    labels: np.ndarray,
    canary_ids: Sequence[int],
    *,
    label: float = 0.0,
    copies: int = 1,
    pad_id: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Append ``copies`` rows of the encoded canary email to a shard ``(ids [N, L], labels [N])``.

    The canary row is truncated or padded with ``pad_id`` to the shard's width ``L``; dtypes are kept.
    Returns new arrays; the inputs are not modified.
    """
    if ids.ndim != 2 or labels.shape != (ids.shape[0],):
        raise ValueError(f"expected ids [N, L] and labels [N], got {ids.shape} and {labels.shape}")
    if copies < 1 or len(canary_ids) == 0:
        raise ValueError("plant at least one copy of a non-empty canary")
    width = ids.shape[1]
    row = np.full(width, pad_id, dtype=ids.dtype)
    encoded = np.asarray(canary_ids, dtype=ids.dtype)[:width]
    row[: len(encoded)] = encoded
    planted_ids = np.concatenate([ids, np.tile(row, (copies, 1))])
    planted_labels = np.concatenate([labels, np.full(copies, label, dtype=labels.dtype)])
    return planted_ids, planted_labels


def _id_to_word(vocab: Sequence[str] | Mapping[str, int]) -> list[str]:
    if isinstance(vocab, Mapping):
        words = [""] * (max(vocab.values(), default=-1) + 1)
        for word, index in vocab.items():
            words[index] = word
        return words
    return list(vocab)


def recover_words(
    observed_update: Mapping[str, np.ndarray] | np.ndarray,
    vocab: Sequence[str] | Mapping[str, int],
    embedding_key: str | None = None,
    top_k: int | None = None,
    rarity: np.ndarray | None = None,
) -> list[str]:
    """The attacker's inference: words whose embedding rows changed, in the attacker's order of suspicion.

    ``observed_update`` is what the coordinator saw (a name -> array update, or the embedding delta itself);
    ``embedding_key`` names the embedding tensor in a mapping; ``vocab`` is the id-ordered word list
    (``Vocabulary.words``) or a word -> id mapping. The order is by L2 change, largest first; with ``rarity``
    (one number per word, e.g. how often the word occurs in the training data, which whoever built the
    vocabulary knows) only rows that changed at all are ranked, the rarest first and, among equally rare words, the
    most changed: a rare word that moved points at the few clients who use it. With ``top_k=None`` every row with a
    non-zero change is returned (exact for plain SGD, where untouched rows do not move at all); ``top_k`` names
    that many words, the most suspicious. Ties are broken by id, for determinism.
    """
    if isinstance(observed_update, Mapping):
        if embedding_key is None or embedding_key not in observed_update:
            raise ValueError(
                f"embedding_key {embedding_key!r} not in the update (tensors: {', '.join(sorted(observed_update))})"
            )
        table = np.asarray(observed_update[embedding_key])
    else:
        table = np.asarray(observed_update)
    words = _id_to_word(vocab)
    if table.ndim not in (1, 2) or table.shape[0] != len(words):
        raise ValueError(f"embedding update of shape {table.shape} does not have one row per word ({len(words)})")
    magnitude = np.linalg.norm(table.reshape(len(words), -1).astype(np.float64), axis=1)
    if rarity is None:
        order = np.lexsort((np.arange(len(words)), -magnitude))
    else:
        if np.shape(rarity) != (len(words),):
            raise ValueError(f"rarity needs one value per word ({len(words)}), got shape {np.shape(rarity)}")
        order = np.lexsort((np.arange(len(words)), -magnitude, np.asarray(rarity)))
        order = order[magnitude[order] > 0]
    if top_k is None:
        order = order[magnitude[order] > 0]
    else:
        if top_k < 0:
            raise ValueError(f"top_k must be non-negative, got {top_k}")
        order = order[:top_k]
    return [words[index] for index in order]


def audit_score(recovered: Collection[str], canary_words: Collection[str], vocab_size: int) -> dict[str, float | int]:
    """How many canary words the attacker recovered by naming the words ``recovered``, against guessing.

    ``rate`` is the true-positive rate (canary words named / canary words); ``fpr`` the false-positive rate (other
    words named / other words of the vocabulary). ``chance_rate`` is the true-positive rate of naming as many
    words uniformly at random (``named / vocab_size``, which is also that guesser's false-positive rate), and
    ``advantage = rate - chance_rate`` is what the observation gave the attacker (about 0: nothing). Compare
    attackers that name the same small number of words: naming the whole vocabulary scores a rate of 1 at a
    chance of 1.
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    secret = set(canary_words)
    if not secret:
        raise ValueError("the canary has no words to audit")
    named = set(recovered)
    hits = len(secret & named)
    rate = hits / len(secret)
    chance_rate = min(1.0, len(named) / vocab_size)
    others = vocab_size - len(secret)
    return {
        "recovered": hits,
        "total": len(secret),
        "named": len(named),
        "rate": rate,
        "fpr": (len(named) - hits) / others if others > 0 else 0.0,
        "chance_rate": chance_rate,
        "advantage": rate - chance_rate,
    }
