"""The built-in aggregation strategies by name: what ``federation.strategy`` may name besides a user's class.

``server.strategies.BUILTIN_STRATEGIES`` implements each of them, keyed by exactly these names
(``tests/platform/test_strategies.py`` checks). The names live here, below both, because the scenario schema checks
``federation.strategy`` against them and may not import ``server/``, which sits above it.
"""
from __future__ import annotations

STRATEGY_NAMES = ("fedavg", "fedprox", "fedavgm", "fedadam", "fedadagrad", "fedyogi", "qfedavg", "fedmedian",
                  "fedtrimmedavg", "krum", "multikrum", "bulyan")
