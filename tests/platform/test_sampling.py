"""How the coordinator draws a round's cohort: fixed size, or Poisson (what DP accounting assumes)."""
import numpy as np

from server.coordinator import sample_cohort


def test_fixed_size_cohorts_are_distinct_sorted_and_exactly_sized():
    rng = np.random.default_rng(0)
    for _ in range(50):
        cohort = sample_cohort(rng, 40, 7, None)
        assert len(cohort) == 7 and cohort == sorted(set(cohort)) and all(0 <= i < 40 for i in cohort)
    assert sample_cohort(rng, 3, 7, None) == [0, 1, 2]  # fewer candidates than the cohort size: all of them


def test_poisson_cohorts_vary_in_size_around_the_expected_one():
    rng = np.random.default_rng(1)
    n, rate = 400, 0.25
    sizes = [len(sample_cohort(rng, n, 100, rate)) for _ in range(400)]
    # Binomial(400, 0.25): mean 100, standard deviation ~8.7; the mean of 400 draws is within 0.44 of 100 at 1σ
    assert abs(np.mean(sizes) - n * rate) < 2.0
    assert 6.5 < np.std(sizes) < 11.0
    membership = np.zeros(n)
    for _ in range(400):
        membership[sample_cohort(rng, n, 100, rate)] += 1
    assert abs(membership.mean() / 400 - rate) < 0.01  # every client joins with probability ~rate
