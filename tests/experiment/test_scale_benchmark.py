"""benchmarks/scale.py's sampler: every process of a run by its role, with its peak RSS and peak PSS."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.experiment.test_flower_benchmark import load_benchmark

scale = load_benchmark("scale")


def test_each_process_of_the_tree_is_reported_by_role_with_its_peaks(tmp_path: Path) -> None:
    """Children whose command lines read as a client process and a decryptor (as the local launcher starts them)
    below this process, which plays the coordinator."""
    holder = "import sys; b = b'\\1' * (20 << 20); print('ready', flush=True); sys.stdin.read()"
    children = [subprocess.Popen([sys.executable, "-c", holder, "-m", "fedgrad.cli.main", role],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE) for role in ("client", "decryptor")]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        sampler = scale.MemorySampler(os.getpid(), tmp_path, rounds=1)
        for pid in [os.getpid(), *(child.pid for child in children)]:
            sampler._sample(pid)
        processes = {p["pid"]: p for p in sampler.processes()}
        assert [processes[pid]["role"] for pid in (os.getpid(), children[0].pid, children[1].pid)] == [
            "coordinator", "client", "decryptor"]
        for child in children:
            assert processes[child.pid]["peak_rss_mib"] >= 20  # its 20 MiB, at its peak
            assert 0 < processes[child.pid]["peak_pss_mib"] <= processes[child.pid]["peak_rss_mib"]
        assert sampler.peaks("client", "VmHWM") == [sampler.rss_peaks_kib[children[0].pid]]
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)
