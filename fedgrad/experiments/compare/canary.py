"""Privacy measured, not only stated: the leakage audit's canary attack on every variant's released aggregate.

For each federation of the grid (each ``none`` baseline: one seed, one client count), the audit's canary
(``fedgrad.experiments.audit``: pseudo-words found nowhere in the corpus, planted ``data.min_count`` times in
client 0's shard) is planted and round 1 is trained once, in this process, with the platform's own code. That
round's aggregate is then released under each variant's privacy mode by the mode's own aggregation
(quantization, Paillier, and DP noise calibrated for the variant's whole run, so the noise is what each of its
rounds carries) and attacked; the best attack's share of canary words recovered stands next to chance (naming
as many vocabulary words at random). The child runs themselves carry no canary: this replays their first round
with it, so it measures one released round, which is what every round of the run exposes.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from fedgrad.experiments.compare.grid import Variant
from fedgrad.modes.resolve import privacy_mode

#: Pseudo-words in the canary email.
CANARY_WORDS = 5


def measure_canaries(variants: Sequence[Variant], *, n_words: int = CANARY_WORDS) -> dict[str, dict[str, Any]]:
    """The canary attack's best result on each variant's released round-1 aggregate, by variant name (see the
    module docstring): ``audit_score``'s fields (``rate``, ``chance_rate``, ``recovered``, ``total``, ...) and
    the attack's name, or ``{"error": ...}`` when this variant (or its federation) could not be replayed. A
    variant that fails does not stop the others."""
    from fedgrad.experiments.audit import planted_round  # the platform's server side: only when measuring

    by_name = {variant.name: variant for variant in variants}
    federations: dict[str, list[Variant]] = {}
    for variant in variants:
        federations.setdefault(variant.baseline, []).append(variant)
    results: dict[str, dict[str, Any]] = {}
    with tqdm(total=len(variants), desc="canary attack", unit="variant", file=sys.stderr, leave=False) as bar:
        for baseline, members in federations.items():
            try:
                planted = planted_round(by_name.get(baseline, members[0]).scenario, n_words=n_words)
            except Exception as exc:  # noqa: BLE001 - reported in the table, like a failed run
                results.update({variant.name: {"error": _reason(exc)} for variant in members})
                bar.update(len(members))
                continue
            for variant in members:
                slow = privacy_mode(variant.scenario).profile().slow  # a slow mode's round is not replayed here
                if slow:
                    results[variant.name] = {"error": f"not replayed: {slow}"}
                else:
                    try:
                        results[variant.name] = planted.aggregate_leakage(variant.scenario)
                    except Exception as exc:  # noqa: BLE001 - this variant alone
                        results[variant.name] = {"error": _reason(exc)}
                bar.update()
    return results


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
