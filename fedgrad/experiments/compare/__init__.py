"""What privacy costs: one scenario run under several privacy settings, collected into one table.

``fedgrad compare`` plans a grid of *variants* (privacy mode x client count x Paillier key size x seed), runs
each as a real ``fedgrad simulate`` child process (coordinator, client processes, gRPC), and sets every result
against the plain run (``none``) with the same number of clients and seed. Three choices shape the numbers:

- **Same experiment.** Every variant is the user's scenario and ``--set`` values plus only the keys that
  define the variant, so all runs on one seed share corpus, split, partition and model initialisation.
- **Child processes.** A variant is exactly what ``fedgrad simulate`` with the same ``--set`` values gives,
  and one that crashes or is refused (a mode not supported yet) fails alone: its error is reported in the
  table and the others still run.
- **One after another.** Time per round is half of what is being measured; two federations sharing the
  machine would slow each other down unevenly.

A comparison directory holds::

    compare-<timestamp>/
        results.json    everything, per-round series included: what ``fedgrad report`` re-renders from
        results.csv     one flat row per variant and seed
        report.md       the frontier and per-run tables, the guarantees in words, notes, and the plots below
        accuracy_vs_epsilon.png  gap_vs_overhead.png  accuracy_per_round.png  bytes_per_round.png
        logs/<variant>.log                         the child's stdout and stderr
        variants/<variant>/<scenario>-<timestamp>/ the child's run directory (metrics.jsonl, summary.json, ...)

With ``--seeds`` every variant runs once per seed and the *frontier* summarises each privacy setting over its
seeds (mean ± sample standard deviation); the leakage audit's canary attack is run on every variant's released
aggregate, so the table shows what each ε buys in practice, next to chance.

One module per part: ``grid`` (the variants and seeds), ``processes`` (child processes and signals),
``canary`` (the canary attack per variant), ``results`` (rows, ``results.json``, ``results.csv``), ``frontier``
(mean and spread over seeds), ``report`` (Markdown and plots) and ``comparison`` (``run_comparison``: all of
it in one call, what the CLI and ``fedgrad.compare`` run).
"""
from fedgrad.experiments.compare.canary import CANARY_WORDS, measure_canaries
from fedgrad.experiments.compare.comparison import Comparison, run_comparison
from fedgrad.experiments.compare.frontier import STAT_KEYS, frontier_rows, spread
from fedgrad.experiments.compare.grid import (
    BASELINE_MODE,
    DEFAULT_PRIVACY,
    DP_PLACEMENTS,
    NAIVE_ROUND_TIMEOUT_S,
    NAIVE_ROUNDS,
    PrivacySetting,
    Variant,
    parse_int_list,
    parse_privacy_list,
    parse_seeds,
    plan_variants,
)
from fedgrad.experiments.compare.processes import LOG_DIR, VARIANT_DIR, Outcome, new_comparison_dir, run_variants
from fedgrad.experiments.compare.report import PLOT_FILES, REPORT_FILE, render_comparison, summary_lines
from fedgrad.experiments.compare.results import (
    CANARY_COLUMNS,
    CSV_COLUMNS,
    PHASE_COLUMNS,
    RESULTS_CSV,
    RESULTS_JSON,
    collect,
    comparison_meta,
    is_comparison_dir,
    read_results,
    write_results,
)

__all__ = [
    "BASELINE_MODE",
    "CANARY_COLUMNS",
    "CANARY_WORDS",
    "CSV_COLUMNS",
    "DEFAULT_PRIVACY",
    "DP_PLACEMENTS",
    "LOG_DIR",
    "NAIVE_ROUNDS",
    "NAIVE_ROUND_TIMEOUT_S",
    "PHASE_COLUMNS",
    "PLOT_FILES",
    "REPORT_FILE",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "STAT_KEYS",
    "VARIANT_DIR",
    "Comparison",
    "Outcome",
    "PrivacySetting",
    "Variant",
    "collect",
    "comparison_meta",
    "frontier_rows",
    "is_comparison_dir",
    "measure_canaries",
    "new_comparison_dir",
    "parse_int_list",
    "parse_privacy_list",
    "parse_seeds",
    "plan_variants",
    "read_results",
    "render_comparison",
    "run_comparison",
    "run_variants",
    "spread",
    "summary_lines",
    "write_results",
]
