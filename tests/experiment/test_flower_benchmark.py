"""benchmarks/flower.py's own parts, without Flower: the process-tree memory sampler, the quiet-machine wait, the
repeats' pairing, means and spreads, the tables and the targets (and benchmarks/machine.py's /proc readers).

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
from typing import Any

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
machine = load_benchmark("machine")


def _fake_proc(root: Path, tree: dict[int, list[int]], pss_kib: dict[int, int]) -> Path:
    """A /proc with each process's children (on one thread) and smaps_rollup (RSS twice its PSS)."""
    for pid, kids in tree.items():
        (root / str(pid) / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
        (root / str(pid) / "task" / str(pid) / "children").write_text(" ".join(map(str, kids)) + " ")
        (root / str(pid) / "smaps_rollup").write_text(f"Rss: {2 * pss_kib[pid]} kB\nPss: {pss_kib[pid]} kB\n")
    return root


def test_descendants_follow_children_through_every_generation(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, {1: [10, 20], 10: [11, 12], 11: [], 12: [13], 13: [], 20: [21], 21: []},
                      dict.fromkeys([1, 10, 11, 12, 13, 20, 21], 1))
    assert sorted(machine.descendants(10, proc)) == [10, 11, 12, 13]
    assert machine.descendants(99, proc) == []
    (proc / "12" / "task" / "12" / "children").unlink()  # 12 exits while the tree is read: its children too
    assert sorted(machine.descendants(10, proc)) == [10, 11, 12]


def test_the_process_tree_is_read_again_only_after_its_refresh_interval(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, {1: [2], 2: []}, {1: 1, 2: 1})
    now = [0.0]
    tree = machine.ProcessTree(1, refresh_s=1.0, proc=proc, clock=lambda: now[0])
    assert sorted(tree.pids()) == [1, 2]
    _fake_proc(tmp_path, {1: [2, 3], 2: [], 3: []}, {1: 1, 2: 1, 3: 1})
    now[0] = 0.5
    assert sorted(tree.pids()) == [1, 2]
    now[0] = 1.0
    assert sorted(tree.pids()) == [1, 2, 3]


def test_the_rounds_peak_stops_when_the_rounds_are_done(tmp_path: Path) -> None:
    """fedgrad evaluates the final model on every client after its last round, which Flower's task does not: the
    peak compared is the one until the rounds are done; the whole run's peak is kept beside it."""
    proc = _fake_proc(tmp_path, {7: [8], 8: []}, {7: 100, 8: 50})
    done = False
    sampler = bench.TreeMemorySampler(7, lambda: done, proc=proc)
    sampler.sample()
    done = True
    _fake_proc(tmp_path, {7: [8], 8: []}, {7: 100, 8: 400})
    sampler.sample()
    assert (sampler.rounds_peak_pss_kib, sampler.rounds_peak_rss_kib) == (150, 300)
    assert (sampler.peak_pss_kib, sampler.peak_rss_kib, sampler.peak_processes) == (500, 1000, 2)


def test_memory_kib_reads_smaps_rollup_and_tolerates_a_gone_process(tmp_path: Path) -> None:
    rollup = tmp_path / "smaps_rollup"
    rollup.write_text("00400000-7fff [rollup]\nRss:               2048 kB\nPss:                512 kB\n"
                      "Pss_Anon:           100 kB\n")
    assert machine.memory_kib(rollup) == {"Rss": 2048, "Pss": 512, "Pss_Anon": 100}
    assert machine.memory_kib(tmp_path / "gone") == {}


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
        own = machine.memory_kib(Path(f"/proc/{process.pid}/smaps_rollup"))["Rss"]
        assert sampler.peak_processes == 2
        assert sorted(machine.descendants(process.pid)) == sorted([process.pid, child_pid])
        assert sampler.peak_rss_kib >= own + (80 << 10)
        assert own >= 40 << 10
        assert 0 < sampler.peak_pss_kib <= sampler.peak_rss_kib
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def _row(system: str, mode: str, per_round: int, seconds: float, rss: float, accuracy: float, *, repeat: int = 0,
         min_count: int = 5, pss: float | None = None, quiet: bool = True, load: float = 0.1,
         weights: int = 12_905, secure_name: str = "") -> Any:
    return bench.Row(system=system, mode=mode, per_round=per_round, rounds=3, seconds_per_round=seconds,
                     first_round_s=2 * seconds, rounds_peak_pss_mib=rss / 2 if pss is None else pss,
                     rounds_peak_rss_mib=rss, peak_pss_mib=rss, peak_rss_mib=2 * rss, peak_processes=4,
                     bytes_per_round=1000.0 if system == "fedgrad" else 4000.0, accuracy=accuracy, wall_s=60.0,
                     min_count=min_count, weights=weights, model_bytes=4 * weights, repeat=repeat,
                     busy_before=0.05 if quiet else 0.6, quiet=quiet, load_before=load, load_after=load,
                     sampler_cpu_s=0.5, secure_name=secure_name)


def test_ratios_pair_the_systems_and_the_targets_are_checked_at_the_largest_cohort() -> None:
    rows = [_row("fedgrad", "plain", 10, 1.0, 300.0, 0.90), _row("flower", "plain", 10, 2.0, 400.0, 0.90),
            _row("fedgrad", "plain", 1000, 1.0, 500.0, 0.951), _row("flower", "plain", 1000, 12.0, 1200.0, 0.948),
            _row("fedgrad", "secure", 10, 4.0, 600.0, 0.90, secure_name="paillier-masked"),
            _row("flower", "secure", 10, 3.0, 500.0, 0.89, secure_name="SecAgg+")]
    (largest,) = [r for r in bench.ratios(rows) if r["mode"] == "plain" and r["per_round"] == 1000]
    assert largest["speedup"]["mean"] == pytest.approx(12.0) and largest["pairs"] == 1
    assert largest["rss_ratio"]["mean"] == pytest.approx(500 / 1200)
    assert largest["pss_ratio"]["mean"] == pytest.approx(250 / 600)
    assert largest["bytes_ratio"]["mean"] == pytest.approx(0.25)
    assert largest["accuracy_diff_pt"]["mean"] == pytest.approx(0.3)
    report = bench.format_report(rows)
    assert "SecAgg+" in report and "paillier-masked" in report
    assert "| 12.00x |" in report and "| 0.75x |" in report  # secure at 10: Flower's side was faster
    assert bench.target_lines(rows) == [
        ("target at 1,000 per round, 51,620 B (below 100 KiB; min_count 5), at least 10x faster per round: "
         "12.00x -> met"),
        ("target at 1,000 per round, 51,620 B (below 100 KiB; min_count 5), at most half of Flower's memory "
         "(PSS sum): x0.417 -> met"),
        ("target at 1,000 per round, 51,620 B (below 100 KiB; min_count 5), at most half of Flower's memory "
         "(RSS sum): x0.417 -> met"),
        "target at 1,000 per round, 51,620 B (below 100 KiB; min_count 5), accuracy within 0.5 pt: +0.30 pt -> met",
    ]
    assert bench.target_lines(rows, {"5/1000": [0.4, 0.6]})[-1] == (
        "at 1,000 per round, 51,620 B (below 100 KiB; min_count 5), fedgrad's 1.000 s per round is 2.00x the "
        "machine's floor of 0.500 s (training and encoding the round's clients in one process)")
    slower = [*rows[:2], _row("fedgrad", "plain", 1000, 4.0, 700.0, 0.94), rows[3]]
    assert [line.endswith("NOT met") for line in bench.target_lines(slower)] == [True, True, True, True]


def test_memory_is_ranked_by_the_pss_sum_over_the_rounds_and_a_busy_machine_is_named() -> None:
    """Half of Flower's RSS sum but not of its PSS sum (Ray's shared pages counted once per process): not met.
    The whole run's peaks (fedgrad's final evaluation on every client) are not what is compared."""
    rows = [_row("fedgrad", "plain", 1000, 1.0, 500.0, 0.95, pss=450.0, quiet=False, load=1.9),
            _row("flower", "plain", 1000, 11.0, 1200.0, 0.95, pss=800.0)]
    lines = bench.target_lines(rows)
    assert "(PSS sum): x0.562 -> NOT met (a run started on a busy machine; load up to 1.90)" in lines[1]
    assert "(RSS sum): x0.417 -> met (a run started on a busy machine; load up to 1.90)" in lines[2]
    assert "fedgrad (not quiet)" in bench.format_report(rows)


def test_repeats_pair_up_by_repeat_and_each_figure_has_its_mean_and_spread() -> None:
    rows = [_row("fedgrad", "plain", 100, seconds, 500.0, 0.95, repeat=repeat)
            for repeat, seconds in enumerate([1.0, 2.0, 1.0])]
    rows += [_row("flower", "plain", 100, seconds, 1000.0, 0.95, repeat=repeat)
             for repeat, seconds in enumerate([10.0, 10.0, 12.0])]
    (ratio,) = bench.ratios(rows)
    assert ratio["pairs"] == 3
    assert ratio["speedup"] == {"mean": pytest.approx(9.0), "low": pytest.approx(5.0), "high": pytest.approx(12.0)}
    fedgrad, flower = bench.summary(rows)
    assert fedgrad["seconds_per_round"] == {"mean": pytest.approx(4 / 3), "low": 1.0, "high": 2.0}
    assert flower["seconds_per_round"] == {"mean": pytest.approx(32 / 3), "low": 10.0, "high": 12.0}
    report = bench.format_report(rows, {"5/100": [0.5, 0.5]})
    assert "| 9.00 (5.00–12.00)x |" in report  # the mean pair, then the smallest and largest
    assert "| 1.333 (1.000–2.000) |" in report and "| 2.67 |" in report  # fedgrad's mean over the floor
    other_size = [_row(system, "plain", 100, 1.0, 500.0, 0.95, min_count=2, weights=27_987)
                  for system in ("fedgrad", "flower")]
    assert len(bench.ratios(rows + other_size)) == 2  # one per model size
    assert "111,948 B (above 100 KiB; min_count 2)" in bench.format_report(rows + other_size)


def test_models_of_different_sizes_or_rounds_are_not_the_same_task() -> None:
    rows = [_row("fedgrad", "plain", 10, 1.0, 300.0, 0.9), _row("flower", "plain", 10, 2.0, 400.0, 0.9, weights=1)]
    with pytest.raises(ValueError, match="not the same task"):
        bench.ratios(rows)
    rows[1].weights, rows[1].rounds = rows[0].weights, 2
    with pytest.raises(ValueError, match=r"fedgrad ran 3 rounds .* Flower 2 .*: not the same task"):
        bench.ratios(rows)


def test_runs_alternate_which_side_goes_first() -> None:
    assert [bench.interleaved(["fedgrad", "flower"], repeat) for repeat in range(3)] == [
        ["fedgrad", "flower"], ["flower", "fedgrad"], ["fedgrad", "flower"]]


def test_a_row_measured_on_one_side_only_has_no_ratio() -> None:
    rows = [_row("fedgrad", "plain", 10, 1.0, 300.0, 0.9)]
    assert bench.ratios(rows) == [] and bench.target_lines(rows) == []
    assert len(bench.summary(rows)) == 1 and "fedgrad/Flower" not in bench.format_report(rows)


def test_wait_for_quiet_returns_at_the_first_quiet_window() -> None:
    windows, clock = iter([0.9, 0.5, 0.1, 0.0]), iter([0.0, 10.0, 20.0, 30.0])
    quiet = machine.wait_for_quiet(0.15, 600.0, busy=lambda: next(windows), clock=lambda: next(clock))
    assert quiet == machine.Quiet(busy=0.1, quiet=True, waited_s=30.0)


def test_wait_for_quiet_gives_up_after_its_longest_wait_and_says_so() -> None:
    times = iter(range(0, 1000, 10))
    quiet = machine.wait_for_quiet(0.15, 25.0, busy=lambda: 0.8, clock=lambda: float(next(times)))
    assert quiet == machine.Quiet(busy=0.8, quiet=False, waited_s=30.0)


def test_cpu_busy_counts_idle_and_iowait_as_not_busy(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    #            user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 0 50 800 50 0 0 0 10 0\ncpu0 50 0 25 400 25 0 0 0 5 0\n")
    assert machine.cpu_times(stat) == (150, 1000)


def test_cpu_busy_is_a_fraction_of_the_machine() -> None:
    assert 0.0 <= machine.cpu_busy(0.0) <= 1.0


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
