"""The frontier: one row per privacy setting, its runs over several seeds summarised as mean and spread.

The spread is the sample standard deviation over the seeds whose run finished (``n - 1`` in the denominator;
none for a single run); the ``frontier`` of ``results.json`` keeps the minimum and maximum next to it. Gaps
and ratios are first taken per seed, against ``none`` on the same seed, then summarised, so the gap's spread
is that of paired differences.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

#: Per-run numbers a frontier row summarises (keys of ``collect``'s rows).
STAT_KEYS = ("accuracy", "f1", "accuracy_gap_pts", "round_time_s", "round_time_ratio", "bytes_up_per_client",
             "bytes_up_ratio", "bytes_up_per_round", "bytes_down_per_round", "epsilon_spent", "canary_rate",
             "canary_chance", "canary_advantage", "clean_accuracy", "attack_drop_pts", "backdoor_success")


def spread(values: Iterable[float | None]) -> dict[str, float | int | None] | None:
    """Mean, sample standard deviation (None for one value), minimum, maximum and count of the values that are
    not None; None when there are none."""
    present = [float(value) for value in values if value is not None]
    if not present:
        return None
    return {"mean": statistics.fmean(present), "std": statistics.stdev(present) if len(present) > 1 else None,
            "min": min(present), "max": max(present), "n": len(present)}


def frontier_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group (a privacy setting, with its client count and key size), in the runs' order: which seeds
    ran, how many finished, the guarantee, ``STAT_KEYS`` summarised over the finished runs, and the mean test
    accuracy after each round (over the finished runs that reached that round)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("group") or row["variant"], []).append(row)  # older results.json: no group
    frontier = []
    for group, members in groups.items():
        finished = [row for row in members if row["status"] == "ok"]
        first = members[0]
        per_round: dict[int, list[float]] = {}
        for row in finished:
            for number, accuracy in row["accuracy_per_round"]:
                per_round.setdefault(number, []).append(accuracy)
        frontier.append({
            "variant": group,
            "privacy": first["privacy"],
            "epsilon": first["epsilon"],
            "dp_placement": first["dp_placement"],
            "dp_secure": first.get("dp_secure"),
            "clients": first["clients"],
            "strategy": first.get("strategy"),
            "attack": first.get("attack"),
            "attack_fraction": first.get("attack_fraction"),
            "setting": first.get("setting") or group,
            "seeds": [row.get("seed") for row in members],
            "runs": len(members),
            "finished": len(finished),
            "guarantee": first["guarantee"],
            **{key: spread(row.get(key) for row in finished) for key in STAT_KEYS},
            "accuracy_per_round": [[number, spread(values)] for number, values in sorted(per_round.items())],
        })
    return frontier
