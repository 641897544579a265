"""Tokenizer, vocabulary and the padded id matrices."""
from typing import Any

import numpy as np
import pytest

from fedgrad.data import PAD, UNK, Vocabulary, encode_padded, tokenize, unique_tokens
from fedgrad.data.tokens import MAX_TOKEN_LEN
from fedgrad.errors import ConfigError, DataError


def test_tokenize_lowercases_words_and_digits_only():
    assert tokenize("FREE!!! Win $1,000 now_now -- Ça va? 東京") == [
        "free", "win", "1", "000", "now", "now", "ça", "va", "東京"]
    assert tokenize("") == []
    assert tokenize("a" * MAX_TOKEN_LEN + " " + "b" * (MAX_TOKEN_LEN + 1) + " end") == ["a" * MAX_TOKEN_LEN, "end"]


def test_unique_tokens_keep_first_occurrence_order():
    assert unique_tokens("buy now, BUY cheap now") == ["buy", "now", "cheap"]


def test_build_orders_by_count_then_word_and_applies_min_count_and_max_size():
    bags = [["b", "a", "c"], ["a", "b"], ["a", "d"], ["c"]]
    vocab = Vocabulary.build(bags)
    assert vocab.words == ("<pad>", "<unk>", "a", "b", "c", "d")
    assert Vocabulary.build(reversed(bags)) == vocab  # input order does not matter
    assert Vocabulary.build(bags, min_count=2).words == ("<pad>", "<unk>", "a", "b", "c")
    assert Vocabulary.build(bags, max_size=4).words == ("<pad>", "<unk>", "a", "b")
    assert len(Vocabulary.build([], min_count=1)) == 2


def test_build_rejects_bad_limits():
    with pytest.raises(ConfigError, match="min_count"):
        Vocabulary.build([["a"]], min_count=0)
    with pytest.raises(ConfigError, match="max_vocab"):
        Vocabulary.build([["a"]], max_size=1)


def test_encode_decode_and_specials():
    vocab = Vocabulary.build([["spam", "eggs"], ["spam"]])
    assert (PAD, UNK) == (0, 1)
    assert vocab.encode(["spam", "ham", "eggs"]) == [2, UNK, 3]
    assert vocab.decode([2, 0, 3, 0]) == ["spam", "eggs"]
    assert "spam" in vocab and "ham" not in vocab
    assert vocab.id_of("ham") == UNK


def test_dict_round_trip_and_validation():
    vocab = Vocabulary.build([["x", "y", "y"]])
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab
    bad: Any
    for bad in ({}, {"format": "fedgrad-vocabulary", "specials": ["<unk>", "<pad>"], "words": []},
                {**vocab.to_dict(), "words": ["x", 3]}, {**vocab.to_dict(), "words": ["x", "x"]},
                {**vocab.to_dict(), "words": ["<pad>"]}, []):
        with pytest.raises(DataError):
            Vocabulary.from_dict(bad)


def test_encode_padded_truncates_pads_and_maps_unknown_words():
    vocab = Vocabulary.build([["a", "b", "c"]])
    ids = encode_padded([["a", "zzz", "c", "b"], [], ["b"]], vocab, max_len=3)
    assert ids.dtype == np.int32 and ids.shape == (3, 3)
    a, b, c = vocab.encode("abc")
    assert ids.tolist() == [[a, UNK, c], [PAD, PAD, PAD], [b, PAD, PAD]]
    assert encode_padded([], vocab, max_len=4).shape == (0, 4)
    with pytest.raises(ConfigError, match="max_len"):
        encode_padded([["a"]], vocab, max_len=0)


def test_encode_padded_matches_row_by_row_encoding():
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(50)]
    bags = [list(rng.choice(words, size=rng.integers(0, 30))) for _ in range(200)]
    vocab = Vocabulary.build(bags, min_count=3)
    ids = encode_padded(bags, vocab, max_len=20)
    for row, bag in zip(ids, bags, strict=True):
        expected = vocab.encode(bag[:20])
        assert row.tolist() == expected + [PAD] * (20 - len(expected))
