"""benchmarks/flower.py's own parts, without Flower: the process-tree memory sampler, the table, the targets.

The Flower side itself (benchmarks/flower_app.py) needs the bench extra in its own environment (its pinned Ray
and protobuf conflict with the test environment's), so only its import is tried, and skipped where flwr is
not installed.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = load_benchmark("flower")


def test_descendants_follow_parent_pids_through_every_generation() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1, 21: 20}
    assert sorted(bench.descendants(10, parents)) == [10, 11, 12, 13]
    assert bench.descendants(99, parents) == []


def test_parent_pids_reads_comm_with_spaces_and_parentheses(tmp_path: Path) -> None:
    for pid, stat in {"7": "7 (ray::Client App) S 3 7 7 0", "8": "8 (a) b) R 7 8 8 0"}.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "stat").write_text(stat)
    (tmp_path / "self").mkdir()  # not a pid: skipped
    assert bench.parent_pids(tmp_path) == {7: 3, 8: 7}


def test_memory_kib_reads_smaps_rollup_and_tolerates_a_gone_process(tmp_path: Path) -> None:
    rollup = tmp_path / "smaps_rollup"
    rollup.write_text("00400000-7fff [rollup]\nRss:               2048 kB\nPss:                512 kB\n"
                      "Pss_Anon:           100 kB\n")
    assert bench.memory_kib(rollup) == {"Rss": 2048, "Pss": 512, "Pss_Anon": 100}
    assert bench.memory_kib(tmp_path / "gone") == {}


def test_sampler_sums_the_whole_tree_of_a_real_process() -> None:
    """A parent holding ~40 MiB with a child holding ~80 MiB: the sum covers both, more than either alone."""
    child = "import sys; b = b'\\1' * (80 << 20); print('ready', flush=True); sys.stdin.read()"
    parent = ("import subprocess, sys; b = b'\\1' * (40 << 20); "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}], stdin=subprocess.PIPE, "
              "stdout=subprocess.PIPE); "
              "p.stdout.readline(); print(p.pid, flush=True); sys.stdin.read(); p.stdin.close(); p.wait()")
    process = subprocess.Popen([sys.executable, "-c", parent], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        child_pid = int(process.stdout.readline())  # both have touched their memory by now
        sampler = bench.TreeMemorySampler(process.pid)
        sampler.sample()
        own = bench.memory_kib(Path(f"/proc/{process.pid}/smaps_rollup"))["Rss"]
        assert sampler.peak_processes == 2
        assert sorted(bench.descendants(process.pid, bench.parent_pids())) == sorted([process.pid, child_pid])
        assert sampler.peak_rss_kib >= own + (80 << 10)
        assert own >= 40 << 10
        assert 0 < sampler.peak_pss_kib <= sampler.peak_rss_kib
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def _row(system: str, mode: str, per_round: int, seconds: float, rss: float, accuracy: float, *, repeat: int = 0,
         min_count: int = 5, pss: float | None = None, load: float = 0.1, secure_name: str = "") -> object:
    return bench.Row(system=system, mode=mode, per_round=per_round, rounds=3, seconds_per_round=seconds,
                     first_round_s=2 * seconds, peak_rss_mib=rss, peak_pss_mib=rss / 2 if pss is None else pss,
                     peak_processes=4, bytes_per_round=1000.0 if system == "fedgrad" else 4000.0, accuracy=accuracy,
                     wall_s=60.0, min_count=min_count, weights=12_900 if system == "fedgrad" else 0, repeat=repeat,
                     load_before=load, load_after=load, secure_name=secure_name)


def test_table_pairs_the_systems_and_checks_the_targets_at_the_largest_cohort() -> None:
    rows = [_row("fedgrad", "plain", 10, 1.0, 300.0, 0.90), _row("flower", "plain", 10, 2.0, 400.0, 0.90),
            _row("fedgrad", "plain", 1000, 1.0, 500.0, 0.951), _row("flower", "plain", 1000, 12.0, 1200.0, 0.948),
            _row("fedgrad", "secure", 10, 4.0, 600.0, 0.90, secure_name="paillier-masked"),
            _row("flower", "secure", 10, 3.0, 500.0, 0.89, secure_name="SecAgg+")]
    (largest,) = [r for r in bench.ratios(rows) if r["mode"] == "plain" and r["per_round"] == 1000]
    assert largest["speedup"] == pytest.approx(12.0) and largest["pairs"] == 1
    assert largest["rss_ratio"] == pytest.approx(500 / 1200) and largest["pss_ratio"] == pytest.approx(250 / 600)
    assert largest["bytes_ratio"] == pytest.approx(0.25)
    assert largest["accuracy_diff_pt"] == pytest.approx(0.3)
    table = bench.format_table(rows)
    assert "SecAgg+" in table and "paillier-masked" in table
    assert "12.00x faster" in table and "0.75x faster" in table  # secure at 10: Flower's row was faster
    assert len(table.splitlines()) == 1 + len(rows) + 3  # header, the rows, one ratio line per pair
    assert bench.target_lines(rows, quiet_load=0.5) == [
        "target at 1,000 per round, min_count 5 (12,900 weights), at least 10x faster per round: 12.00x -> met",
        ("target at 1,000 per round, min_count 5 (12,900 weights), at most half of Flower's memory (PSS sum): "
        "x0.417 -> met"),
        ("target at 1,000 per round, min_count 5 (12,900 weights), at most half of Flower's memory (RSS sum): "
        "x0.417 -> met"),
        "target at 1,000 per round, min_count 5 (12,900 weights), accuracy within 0.5 pt: +0.30 pt -> met",
    ]
    slower = [*rows[:2], _row("fedgrad", "plain", 1000, 4.0, 700.0, 0.94), rows[3]]
    assert [line.endswith("NOT met") for line in bench.target_lines(slower)] == [True, True, True, True]


def test_memory_is_ranked_by_pss_too_and_a_loaded_machine_is_named() -> None:
    """Half of Flower's RSS sum but not of its PSS sum (Ray's shared pages counted once per process): not met."""
    rows = [_row("fedgrad", "plain", 1000, 1.0, 500.0, 0.95, pss=450.0, load=1.9),
            _row("flower", "plain", 1000, 11.0, 1200.0, 0.95, pss=800.0)]
    lines = bench.target_lines(rows, quiet_load=0.5)
    assert "(PSS sum): x0.562 -> NOT met (measured at load up to 1.90, not quiet)" in lines[1]
    assert "(RSS sum): x0.417 -> met (measured at load up to 1.90, not quiet)" in lines[2]


def test_repeats_pair_up_by_repeat_and_report_the_median_and_the_spread() -> None:
    rows = [_row("fedgrad", "plain", 100, seconds, 500.0, 0.95, repeat=repeat)
            for repeat, seconds in enumerate([1.0, 2.0, 1.0])]
    rows += [_row("flower", "plain", 100, seconds, 1000.0, 0.95, repeat=repeat)
             for repeat, seconds in enumerate([10.0, 10.0, 14.0])]
    (ratio,) = bench.ratios(rows)
    assert ratio["pairs"] == 3 and ratio["speedup"] == pytest.approx(10.0)  # pairs: 10, 5, 14
    assert (ratio["speedup_min"], ratio["speedup_max"]) == (pytest.approx(5.0), pytest.approx(14.0))
    assert "10.00 (5.00..14.00)x faster" in bench.format_table(rows)
    other_size = [_row(system, "plain", 100, 1.0, 500.0, 0.95, min_count=2) for system in ("fedgrad", "flower")]
    assert len(bench.ratios(rows + other_size)) == 2  # one per model size


def test_runs_alternate_which_side_goes_first() -> None:
    assert [bench.interleaved(["fedgrad", "flower"], repeat) for repeat in range(3)] == [
        ["fedgrad", "flower"], ["flower", "fedgrad"], ["fedgrad", "flower"]]


def test_a_row_measured_on_one_side_only_has_no_ratio() -> None:
    rows = [_row("fedgrad", "plain", 10, 1.0, 300.0, 0.9)]
    assert bench.ratios(rows) == [] and bench.target_lines(rows) == []
    assert len(bench.format_table(rows).splitlines()) == 2


def test_both_sides_run_one_task() -> None:
    overrides = bench.scenario_overrides(4837, 100, 3, 2, "paillier-masked", min_count=2)
    assert 'data.partition="iid"' in overrides and "federation.clients_per_round=100" in overrides
    assert 'privacy.mode="paillier-masked"' in overrides and "data.min_count=2" in overrides
    assert not any("privacy" in o for o in bench.scenario_overrides(4837, 100, 3, 2, None))


def test_flower_app_imports_where_flwr_is_installed() -> None:
    if importlib.util.find_spec("flwr") is None:
        pytest.skip("flwr is not installed here: the bench extra lives in its own environment (.venv-bench), "
                    "its Ray and protobuf pins conflict with the test extra's")
    assert callable(load_benchmark("flower_app").main)
