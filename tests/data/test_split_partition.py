"""Train/test split and client partitions: invariants that must hold for every seed and scheme."""
import numpy as np
import pytest

from fedgrad.data import SCHEMES, partition, train_test_split
from fedgrad.errors import ConfigError

LABELS = np.array([1] * 300 + [0] * 700)


def test_split_is_stratified_disjoint_and_complete():
    train, test = train_test_split(LABELS, test_fraction=0.2, seed=0)
    assert len(test) == 200 and LABELS[test].sum() == 60
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(LABELS)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)


def test_split_is_deterministic_by_seed():
    first = train_test_split(LABELS, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, train_test_split(LABELS.tolist(), seed=3), strict=True))
    assert not np.array_equal(first[1], train_test_split(LABELS, seed=4)[1])


def test_split_rejects_fractions_that_leave_a_side_empty():
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="test_fraction"):
            train_test_split(LABELS, test_fraction=fraction)
    with pytest.raises(ConfigError, match="empty train or test"):
        train_test_split([1, 0], test_fraction=0.2)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("n_clients", [1, 3, 10, 97])
def test_partitions_are_disjoint_cover_everything_and_never_leave_a_client_empty(scheme, n_clients):
    for seed in range(3):
        parts = partition(LABELS, n_clients, scheme=scheme, seed=seed, alpha=0.05)
        assert len(parts) == n_clients
        assert all(len(part) >= 1 and part.dtype == np.int64 for part in parts)
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(LABELS)))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_partitions_are_deterministic_by_seed(scheme):
    same = [partition(LABELS, 7, scheme=scheme, seed=11, alpha=0.3) for _ in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(*same, strict=True))
    other = partition(LABELS, 7, scheme=scheme, seed=12, alpha=0.3)
    changed = not all(np.array_equal(a, b) for a, b in zip(same[0], other, strict=True))
    assert changed == (scheme != "book")  # the book's split is fixed by the data order


def _label_skew(parts: list[np.ndarray]) -> float:
    """Mean absolute gap between each client's spam rate and the overall rate."""
    return float(np.mean([abs(LABELS[part].mean() - LABELS.mean()) for part in parts]))


def test_dirichlet_alpha_controls_label_skew():
    skew = {alpha: np.mean([_label_skew(partition(LABELS, 10, "dirichlet", seed=s, alpha=alpha)) for s in range(5)])
            for alpha in (0.1, 1.0, 100.0)}
    assert skew[0.1] > skew[1.0] > skew[100.0]
    assert skew[0.1] > 0.2 and skew[100.0] < 0.05


def test_quantity_alpha_controls_size_spread_but_not_labels():
    def spread(alpha):
        return np.mean([np.std([len(p) for p in partition(LABELS, 10, "quantity", seed=s, alpha=alpha)])
                        for s in range(5)])
    assert spread(0.2) > spread(2.0) > spread(200.0)
    big = max(partition(LABELS, 10, "quantity", seed=0, alpha=0.5), key=len)
    assert abs(LABELS[big].mean() - 0.3) < 0.1


def test_iid_sizes_differ_by_at_most_one():
    sizes = [len(part) for part in partition(LABELS, 7, "iid", seed=0)]
    assert max(sizes) - min(sizes) <= 1


def test_book_split_alternates_spam_and_ham_in_contiguous_blocks():
    labels = np.array([0, 0, 1, 0, 1, 0, 0, 1])  # spam at 2, 4, 7; ham at 0, 1, 3, 5, 6
    parts = partition(labels, 3, "book")
    assert [part.tolist() for part in parts] == [[2, 0, 4], [1, 7, 3], [5, 6]]


def test_partition_errors_are_clear():
    with pytest.raises(ConfigError, match="cannot give each of 5 clients an example: only 4"):
        partition([0, 1, 0, 1], 5)
    with pytest.raises(ConfigError, match="unknown partition 'shards'"):
        partition(LABELS, 2, "shards")
    with pytest.raises(ConfigError, match="alpha must be > 0"):
        partition(LABELS, 2, "dirichlet", alpha=0)
    with pytest.raises(ConfigError, match=">= 1"):
        partition(LABELS, 0)
