"""`build_federated_dataset` and the files a run directory holds for its clients."""
import numpy as np
import pytest

from fedgrad.data import (
    PAD,
    FederatedDataset,
    build_federated_dataset,
    load_corpus,
    load_shard,
    load_test,
    load_vocab,
    train_test_split,
    unique_tokens,
)
from fedgrad.errors import ConfigError, DataError

SETTINGS = dict(n_clients=4, partition="dirichlet", alpha=0.5, test_fraction=0.25, seed=0, min_count=1, max_len=6,
                max_vocab=0)


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    spam_words = ["free", "money", "win", "offer", "cheap"]
    ham_words = ["meeting", "report", "lunch", "project", "notes"]
    lines = []
    for i in range(80):
        label, words = ("spam", spam_words) if i % 3 == 0 else ("ham", ham_words)
        lines.append(f"{label}\t{' '.join(rng.choice(words, size=8))} unique{i} shared")
    path = tmp_path / "corpus.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _build(source, **overrides) -> FederatedDataset:
    return build_federated_dataset(source, **{**SETTINGS, **overrides})


def test_shapes_labels_and_coverage(corpus):
    data = _build(corpus)
    emails = load_corpus(corpus)
    train_idx, test_idx = train_test_split([e.label for e in emails], test_fraction=0.25, seed=0)
    assert len(data.shards) == 4 and all(len(shard) >= 1 for shard in data.shards)
    assert sum(map(len, data.shards)) == len(train_idx) and len(data.test) == len(test_idx)
    for shard in (*data.shards, data.test):
        assert shard.ids.dtype == np.int32 and shard.ids.shape == (len(shard), 6)
        assert shard.labels.dtype == np.float32 and set(np.unique(shard.labels)) <= {0.0, 1.0}
    assert data.test.labels.sum() == sum(emails[i].label for i in test_idx)
    pooled = data.train
    assert len(pooled) == len(train_idx) and pooled.labels.sum() == sum(emails[i].label for i in train_idx)


def test_rows_are_the_encoded_unique_words_of_each_email(corpus):
    data = _build(corpus, n_clients=1, partition="iid", max_len=50)
    emails = load_corpus(corpus)
    train_idx, _ = train_test_split([e.label for e in emails], test_fraction=0.25, seed=0)
    expected = {tuple(data.vocab.encode(unique_tokens(emails[i].text))) for i in train_idx}
    assert {tuple(row[row != PAD].tolist()) for row in data.shards[0].ids} == expected


def test_vocabulary_comes_from_the_training_split_only(corpus):
    data = _build(corpus)
    emails = load_corpus(corpus)
    train_idx, test_idx = train_test_split([e.label for e in emails], test_fraction=0.25, seed=0)
    assert all(f"unique{i}" in data.vocab for i in train_idx)
    assert not any(f"unique{i}" in data.vocab for i in test_idx)
    assert "shared" in data.vocab
    frequent_only = _build(corpus, min_count=2).vocab
    assert "shared" in frequent_only and not any(f"unique{i}" in frequent_only for i in train_idx)
    assert _build(corpus, max_vocab=5).vocab.words == ("<pad>", "<unk>", "shared", *data.vocab.words[3:5])


def test_same_settings_same_dataset_and_seed_matters(corpus):
    first, second, other = _build(corpus), _build(corpus), _build(corpus, seed=1)
    assert first.vocab == second.vocab
    assert all(np.array_equal(a.ids, b.ids) and np.array_equal(a.labels, b.labels)
               for a, b in zip([first.test, *first.shards], [second.test, *second.shards], strict=True))
    assert not np.array_equal(first.test.ids, other.test.ids)


def test_save_and_load_round_trip(corpus, tmp_path):
    data = _build(corpus)
    directory = data.save(tmp_path / "run" / "data")
    assert sorted(p.name for p in directory.iterdir()) == ["shard-0.npz", "shard-1.npz", "shard-2.npz", "shard-3.npz",
                                                           "test.npz", "vocab.json"]
    assert load_vocab(directory) == data.vocab
    for k, shard in enumerate(data.shards):
        loaded = load_shard(directory, k)
        assert np.array_equal(loaded.ids, shard.ids) and loaded.ids.dtype == np.int32
        assert np.array_equal(loaded.labels, shard.labels) and loaded.labels.dtype == np.float32
    assert np.array_equal(load_test(directory).ids, data.test.ids)


def test_missing_and_corrupt_files_are_data_errors(corpus, tmp_path):
    directory = _build(corpus).save(tmp_path / "data")
    with pytest.raises(DataError, match=r"missing .*shard-4.npz"):
        load_shard(directory, 4)
    (directory / "shard-1.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match=r"corrupt shard file .*shard-1.npz"):
        load_shard(directory, 1)
    np.savez(directory / "shard-2.npz", ids=np.zeros((3, 2), np.int64), labels=np.zeros(3, np.float32))
    with pytest.raises(DataError, match="expected int32 ids"):
        load_shard(directory, 2)
    np.savez(directory / "test.npz", labels=np.zeros(3, np.float32))
    with pytest.raises(DataError, match=r"corrupt shard file .*test.npz"):
        load_test(directory)
    (directory / "vocab.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt vocabulary file"):
        load_vocab(directory)
    (directory / "vocab.json").write_text('{"format": "something else"}')
    with pytest.raises(DataError, match=r"corrupt vocabulary file .*not a fedgrad vocabulary"):
        load_vocab(directory)
    with pytest.raises(DataError, match=r"missing .*vocab.json"):
        load_vocab(tmp_path / "elsewhere")


def test_bad_settings_are_config_errors(corpus):
    with pytest.raises(ConfigError, match="max_vocab"):
        _build(corpus, max_vocab=-1)
    with pytest.raises(ConfigError, match="cannot give each of 500 clients"):
        _build(corpus, n_clients=500)
