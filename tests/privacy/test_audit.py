import re

import numpy as np
import pytest

from fedgrad.privacy import (
    GaussianMechanism,
    audit_score,
    clip_update,
    make_canary,
    noise_rng,
    plant_canary,
    recover_words,
)

CORPUS_WORDS = [f"word{i}" for i in range(996)]


def _vocab_with(canary_words) -> list[str]:
    return ["<pad>", "<unk>", *CORPUS_WORDS, *canary_words]


def _sparse_update(vocab: list[str], used: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    """What one client's SGD step does to a bag-of-words model: only rows of words it used move."""
    rng = np.random.default_rng(seed)
    embedding = np.zeros((len(vocab), 1), dtype=np.float32)
    rows = [vocab.index(word) for word in used]
    embedding[rows, 0] = rng.uniform(0.01, 0.1, len(rows)) * rng.choice([-1, 1], len(rows))
    return {"embedding.weight": embedding, "bias": np.array([0.03], dtype=np.float32)}


def test_book_experiment_server_reads_bobs_email_from_his_update():
    """The book's demonstration, with the book's model: embedding of dim 1 summed, sigmoid, MSE, one SGD step."""
    vocab = ["<pad>", "<unk>", "my", "computer", "password", "is", "pizza", "free", "money", "meeting"]
    bobs_email = ["my", "computer", "password", "is", "pizza"]
    ids = np.array([vocab.index(word) for word in bobs_email])
    weights = np.zeros((len(vocab), 1))
    prediction = 1 / (1 + np.exp(-weights[ids].sum()))
    target = 0.0
    d_logit = 2 * (prediction - target) * prediction * (1 - prediction)
    gradient = np.zeros_like(weights)
    np.add.at(gradient, ids, d_logit)
    bobs_update = -0.1 * gradient
    recovered = recover_words(bobs_update, vocab)
    assert sorted(recovered) == sorted(bobs_email)


def test_canary_words_are_unique_reproducible_and_tokenizer_safe():
    canary = make_canary(seed=11, n_words=5, exclude=CORPUS_WORDS)
    assert canary == make_canary(seed=11, n_words=5, exclude=CORPUS_WORDS)
    assert canary != make_canary(seed=12, n_words=5, exclude=CORPUS_WORDS)
    assert len(set(canary.words)) == 5
    assert not set(canary.words) & set(CORPUS_WORDS)
    assert all(re.fullmatch(r"[a-z]{7,11}", word) for word in canary.words)
    assert canary.text.startswith("my computer password is ") and canary.text.endswith(canary.words[-1])
    taken = make_canary(seed=11, n_words=5).words
    assert not set(make_canary(seed=11, n_words=5, exclude=taken).words) & set(taken)


def test_plant_canary_appends_padded_rows_and_keeps_dtypes():
    ids = np.array([[5, 6, 0, 0], [7, 0, 0, 0]], dtype=np.int32)
    labels = np.array([1.0, 0.0], dtype=np.float32)
    planted_ids, planted_labels = plant_canary(ids, labels, [9, 10, 11], copies=2)
    assert planted_ids.dtype == np.int32 and planted_labels.dtype == np.float32
    np.testing.assert_array_equal(planted_ids[2:], [[9, 10, 11, 0], [9, 10, 11, 0]])
    np.testing.assert_array_equal(planted_labels, [1.0, 0.0, 0.0, 0.0])
    long_ids, _ = plant_canary(ids, labels, list(range(20, 30)), label=1.0)
    np.testing.assert_array_equal(long_ids[-1], [20, 21, 22, 23])
    assert ids.shape == (2, 4)  # inputs untouched
    with pytest.raises(ValueError):
        plant_canary(ids, labels[:1], [9])


def test_plain_update_gives_the_canary_away():
    canary = make_canary(seed=1, exclude=CORPUS_WORDS)
    vocab = _vocab_with(canary.words)
    client_words = [*CORPUS_WORDS[:40], *canary.words]
    recovered = recover_words(_sparse_update(vocab, client_words), vocab, "embedding.weight")
    assert set(recovered) == set(client_words)
    score = audit_score(recovered, canary.words, len(vocab))
    assert score["recovered"] == score["total"] == 5 and score["rate"] == 1.0
    assert score["chance_rate"] == pytest.approx(45 / len(vocab))
    assert score["advantage"] > 0.9


def test_pure_noise_update_reveals_about_chance():
    canary = make_canary(seed=2, exclude=CORPUS_WORDS)
    vocab = _vocab_with(canary.words)
    top_k, trials = 50, 400
    rates = []
    for trial in range(trials):
        noise = noise_rng(5, trial).normal(0, 1, (len(vocab), 1))
        rates.append(audit_score(recover_words(noise, vocab, top_k=top_k), canary.words, len(vocab))["rate"])
    chance = top_k / len(vocab)
    standard_error = np.sqrt(chance * (1 - chance) / (5 * trials))
    assert abs(np.mean(rates) - chance) < 4 * standard_error


def test_dp_noise_hides_the_canary_and_weak_noise_does_not():
    canary = make_canary(seed=3, exclude=CORPUS_WORDS)
    vocab = _vocab_with(canary.words)
    update, _ = clip_update(_sparse_update(vocab, [*CORPUS_WORDS[:40], *canary.words]), 1.0)
    weak = GaussianMechanism(noise_multiplier=1e-4, clip=1.0)
    strong = GaussianMechanism(noise_multiplier=1.0, clip=1.0)  # an individual update noised at the sum's std

    def rate(mechanism: GaussianMechanism, trial: int) -> float:
        observed = mechanism.noise_sum(update, noise_rng(9, trial))
        recovered = recover_words(observed, vocab, "embedding.weight", top_k=45)
        return audit_score(recovered, canary.words, len(vocab))["rate"]

    assert all(rate(weak, trial) == 1.0 for trial in range(20))
    hidden_rates = [rate(strong, trial) for trial in range(100)]
    chance = 45 / len(vocab)
    assert np.mean(hidden_rates) < chance + 0.05


def test_recover_words_accepts_a_word_to_id_mapping_and_rejects_mismatched_shapes():
    vocab = {"<pad>": 0, "spam": 1, "ham": 2}
    assert recover_words(np.array([0.0, 0.0, -2.0]), vocab) == ["ham"]
    assert recover_words(np.array([0.0, 1.0, -2.0]), vocab, top_k=1) == ["ham"]
    with pytest.raises(ValueError, match="one row per word"):
        recover_words(np.zeros(4), vocab)
    with pytest.raises(ValueError, match="embedding_key"):
        recover_words({"w": np.zeros(3)}, vocab, "embedding.weight")


def test_audit_score_rejects_empty_canary():
    with pytest.raises(ValueError):
        audit_score(["a"], [], 10)


def test_rarity_ranks_the_rows_that_moved_rarest_first_and_names_a_fixed_number():
    vocab = ["<pad>", "the", "spam", "zorblat", "quixel", "idle"]
    change = np.array([0.0, 5.0, 3.0, 0.2, 0.1, 0.0])
    counts = np.array([0, 900, 40, 2, 2, 1])  # "idle" is the rarest word but did not move
    assert recover_words(change, vocab, top_k=2) == ["the", "spam"]
    assert recover_words(change, vocab, top_k=2, rarity=counts) == ["zorblat", "quixel"]
    assert recover_words(change, vocab, top_k=10, rarity=counts) == ["zorblat", "quixel", "spam", "the"]
    with pytest.raises(ValueError):
        recover_words(change, vocab, top_k=2, rarity=counts[:3])


def test_score_reports_true_and_false_positive_rates_against_chance_for_the_same_number():
    score = audit_score(["zorblat", "the", "spam", "idle"], ["zorblat", "quixel"], vocab_size=102)
    assert (score["named"], score["recovered"]) == (4, 1)
    assert score["rate"] == 0.5 and score["fpr"] == pytest.approx(3 / 100)
    assert score["chance_rate"] == pytest.approx(4 / 102)
    assert score["advantage"] == pytest.approx(0.5 - 4 / 102)
