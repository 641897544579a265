"""What privacy costs: one scenario run under several privacy settings, collected into one table.

``fedgrad compare`` plans a grid of *variants* (privacy mode x client count x Paillier key size), runs each
as a real ``fedgrad simulate`` child process (coordinator, client processes, gRPC), and sets every result
against the plain run (``none``) with the same number of clients. Three choices shape the numbers:

- **Same experiment.** Every variant is the user's scenario and ``--set`` values plus only the keys that
  define the variant, so all share corpus, split, partition, model initialisation and seed.
- **Child processes.** A variant is exactly what ``fedgrad simulate`` with the same ``--set`` values gives,
  and one that crashes or is refused (a mode not supported yet) fails alone: its error is reported in the
  table and the others still run.
- **One after another.** Time per round is half of what is being measured; two federations sharing the
  machine would slow each other down unevenly.

A comparison directory holds::

    compare-<timestamp>/
        results.json    everything, per-round series included: what ``fedgrad report`` re-renders from
        results.csv     one flat row per variant
        report.md       the table, the guarantees in words, notes, and the plots below
        accuracy_per_round.png  gap_vs_overhead.png  bytes_per_round.png
        logs/<variant>.log                         the child's stdout and stderr
        variants/<variant>/<scenario>-<timestamp>/ the child's run directory (metrics.jsonl, summary.json, ...)

One module per part: ``grid`` (the variants), ``processes`` (child processes
and signals), ``results`` (rows, ``results.json``, ``results.csv``) and ``report`` (Markdown).
"""
from fedgrad.experiments.compare.grid import (
    BASELINE_MODE,
    DEFAULT_PRIVACY,
    DP_PLACEMENTS,
    NAIVE_ROUND_TIMEOUT_S,
    NAIVE_ROUNDS,
    NAMED_MODES,
    PrivacySetting,
    Variant,
    parse_int_list,
    parse_privacy_list,
    plan_variants,
)
from fedgrad.experiments.compare.processes import LOG_DIR, VARIANT_DIR, Outcome, new_comparison_dir, run_variants
from fedgrad.experiments.compare.report import PLOT_FILES, REPORT_FILE, render_comparison, summary_lines
from fedgrad.experiments.compare.results import (
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
    "CSV_COLUMNS",
    "DEFAULT_PRIVACY",
    "DP_PLACEMENTS",
    "LOG_DIR",
    "NAIVE_ROUNDS",
    "NAIVE_ROUND_TIMEOUT_S",
    "NAMED_MODES",
    "PHASE_COLUMNS",
    "PLOT_FILES",
    "REPORT_FILE",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "VARIANT_DIR",
    "Outcome",
    "PrivacySetting",
    "Variant",
    "collect",
    "comparison_meta",
    "is_comparison_dir",
    "new_comparison_dir",
    "parse_int_list",
    "parse_privacy_list",
    "plan_variants",
    "read_results",
    "render_comparison",
    "run_variants",
    "summary_lines",
    "write_results",
]
