"""Robustness in a comparison: ``--strategies`` and ``--attack`` axes, and what each setting loses to attackers.

``--strategies fedavg,fedmedian,krum:f=3`` names aggregation strategies (options after ``:`` as ``key=value``,
``[federation.options]``); ``--attack label_flip:0.1,backdoor:0.3`` names attacks as ``kind:fraction`` (the
scenario's ``[attack]`` table gives ``start_round``, ``scale`` and ``trigger``). With ``--attack``, every setting
also runs without an attack, so that each attacked run is set against the *clean* run of the same privacy setting,
strategy and seed: **clean accuracy**, **accuracy under attack**, and, for a backdoor, **backdoor success** (the
share of the test set's spam, trigger added, that the final model classifies as ham). The **attack success**
plotted against the attackers' fraction is the backdoor's success for ``backdoor`` and the accuracy lost to the
attack (points) for the others.

A strategy whose rule needs more updates than ``federation.min_clients`` raises ``min_clients`` (the variant's
notes say so); a combination that cannot run at all (a rule over individual updates under a mode that hides them,
or more updates than a round has) is left out and listed with its reason.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from fedgrad.errors import ConfigError
from fedgrad.scenario import ATTACK_KINDS, Scenario
from fedgrad.strategy_names import STRATEGY_NAMES
from server.experiment import check_strategy
from server.strategies import build_strategy, strategy_for

NO_ATTACK = "none"
ATTACKS = tuple(kind for kind in ATTACK_KINDS if kind != NO_ATTACK)


@dataclass(frozen=True)
class StrategySetting:
    """One entry of ``--strategies``: a built-in strategy and its ``[federation.options]``."""

    name: str
    options: tuple[tuple[str, int | float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> StrategySetting:
        name, *pairs = text.strip().split(":")
        if name not in STRATEGY_NAMES:
            raise ConfigError(f"--strategies: unknown strategy {name!r} (one of {', '.join(STRATEGY_NAMES)})")
        options = []
        for pair in pairs:
            key, sep, value = pair.partition("=")
            try:
                number = float(value) if "." in value or "e" in value else int(value)
            except ValueError:
                raise ConfigError(f"--strategies: {text!r}: options are key=number, e.g. krum:f=2") from None
            if not sep or not key:
                raise ConfigError(f"--strategies: {text!r}: options are key=number, e.g. krum:f=2")
            options.append((key, number))
        setting = cls(name, tuple(options))
        build_strategy(name, server_lr=1.0, options=dict(setting.options))  # a bad option fails here, in one line
        return setting

    @property
    def label(self) -> str:
        return self.name + "".join(f"-{key}{value:g}" for key, value in self.options)

    def overrides(self) -> list[str]:
        table = ", ".join(f"{key} = {value!r}" for key, value in self.options)
        return [f"federation.strategy={json.dumps(self.name)}", f"federation.options={{{table}}}"]


@dataclass(frozen=True)
class AttackSetting:
    """One entry of ``--attack``: ``kind:fraction``, or no attack (the clean run every attacked run is set against)."""

    kind: str = NO_ATTACK
    fraction: float | None = None

    @classmethod
    def parse(cls, text: str) -> AttackSetting:
        kind, sep, value = text.strip().partition(":")
        if kind not in ATTACKS or not sep:
            raise ConfigError(f"--attack: {text!r}: expected kind:fraction with kind one of {', '.join(ATTACKS)}, "
                              "e.g. label_flip:0.1")
        try:
            fraction = float(value)
        except ValueError:
            fraction = math.nan
        if not 0 < fraction <= 1:
            raise ConfigError(f"--attack: {text!r}: the fraction of attackers is a number in (0, 1]")
        return cls(kind, fraction)

    @property
    def label(self) -> str:
        return "clean" if self.kind == NO_ATTACK else f"{self.kind}-{self.fraction:g}"

    def overrides(self) -> list[str]:
        values = [f"attack.kind={json.dumps(self.kind)}"]
        if self.fraction is not None:
            values.append(f"attack.fraction={self.fraction!r}")
        return values


#: The clean run: no attack.
CLEAN = AttackSetting()


def parse_strategy_list(text: str) -> list[StrategySetting]:
    settings = [StrategySetting.parse(item) for item in text.split(",") if item.strip()]
    if not settings:
        raise ConfigError("--strategies: name at least one strategy")
    return list(dict.fromkeys(settings))


def parse_attack_list(text: str) -> list[AttackSetting]:
    """``"label_flip:0.1,backdoor:0.3"`` as settings, the clean run first."""
    settings = [AttackSetting.parse(item) for item in text.split(",") if item.strip()]
    if not settings:
        raise ConfigError("--attack: name at least one attack")
    return list(dict.fromkeys([CLEAN, *settings]))


def strategy_fit(scenario: Scenario) -> tuple[list[str], list[str], str]:
    """For a variant's ``scenario``: the overrides and notes that raise ``min_clients`` to what its strategy needs,
    or the reason it cannot run at all (empty when it can): the server's own check (``check_strategy``)."""
    fed = scenario.federation
    needed = strategy_for(scenario).min_updates
    if needed > fed.clients_per_round:
        return [], [], (f"{fed.strategy} needs at least {needed} updates a round, more than "
                        f"federation.clients_per_round = {fed.clients_per_round}")
    overrides, notes = [], []
    if needed > fed.min_clients:
        overrides.append(f"federation.min_clients={needed}")
        notes.append(f"federation.min_clients raised from {fed.min_clients} to {needed}, the fewest updates "
                     f"{fed.strategy} is defined for")
    try:
        check_strategy(replace(scenario, federation=replace(fed, min_clients=max(needed, fed.min_clients))))
    except ConfigError as refusal:
        return [], [], str(refusal)
    return overrides, notes, ""


def robustness_columns(rows: Sequence[dict[str, Any]]) -> None:
    """Each attacked row's ``clean_accuracy`` (its clean sibling's accuracy after the same round) and
    ``attack_drop_pts`` (points lost to the attack); clean rows get their own accuracy as ``clean_accuracy``."""
    by_name = {row["variant"]: row for row in rows}
    for row in rows:
        row["clean_accuracy"] = row["attack_drop_pts"] = None
        clean = by_name.get(row.get("clean_variant") or "")
        if clean is None or not row["accuracy_per_round"] or clean["status"] != "ok":
            continue
        reference = dict(clean["accuracy_per_round"]).get(row["accuracy_per_round"][-1][0])
        if reference is not None:
            row["clean_accuracy"] = reference
            row["attack_drop_pts"] = 100 * (reference - row["accuracy"])


def attack_success(row: dict[str, Any]) -> float | None:
    """What an attack achieved in a frontier row: the backdoor's success (%) or the accuracy lost (points)."""
    stat = row["backdoor_success"] if row.get("attack") == "backdoor" else row.get("attack_drop_pts")
    if stat is None:
        return None
    return 100 * stat["mean"] if row.get("attack") == "backdoor" else stat["mean"]


def success_curves(frontier: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per attack kind, one curve per setting without its attack (privacy and strategy): (fraction, success)."""
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for row in frontier:
        success = attack_success(row)
        if row.get("attack") in (None, NO_ATTACK) or success is None:
            continue
        curves.setdefault(row["attack"], {}).setdefault(row["setting"], []).append((row["attack_fraction"], success))
    return {kind: {label: sorted(points) for label, points in by_label.items()} for kind, by_label in curves.items()}
