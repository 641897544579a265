"""The Python API: run a simulation from a notebook or a script, exactly as ``fedgrad simulate`` runs it.

    import fedgrad

    result = fedgrad.run("scenarios/quick.toml", federation__rounds=3, train__lr=0.05)
    result.records[-1].accuracy, result.summary.final.f1, result.summary.privacy, result.run_dir

:func:`run` takes a scenario file or a :class:`~fedgrad.scenario.Scenario` and overrides in ``--set``'s terms
(``section.key``, spelled ``section__key`` as a keyword), and returns a :class:`RunResult`: the per-round
records and the summary (:mod:`fedgrad.results.schema`'s :class:`RoundRecord` and :class:`RunSummary`), as
written to the run directory (``metrics.jsonl``, ``summary.json``, ``report.md``,
``config.toml``). :func:`simulate_run` is the same with ``--set`` text; the ``simulate`` command is a thin
layer over it. :func:`compare` runs a scenario under several privacy settings and seeds, as ``fedgrad compare``
does, and returns the comparison (rows, frontier, directory, report); :func:`baseline` trains the scenario's model
centrally on the pooled data, as ``fedgrad train --centralized`` does, and returns a :class:`RunResult` too.
Errors in the scenario or overrides raise :class:`~fedgrad.errors.ConfigError`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedgrad.errors import ConfigError
from fedgrad.experiments.baseline import train_centralized
from fedgrad.experiments.compare import DEFAULT_PRIVACY, Comparison, run_comparison
from fedgrad.experiments.run import open_run, simulate
from fedgrad.launchers import Fleet, ray_fleet
from fedgrad.results.schema import RoundRecord, RunSummary
from fedgrad.scenario import Scenario, format_override, load_scenario, override_scenario

LAUNCHERS = ("local", "ray")


@dataclass(frozen=True)
class RunResult:
    """A finished run: what its run directory holds, in memory."""

    scenario: Scenario
    records: list[RoundRecord]  # one per round, as in metrics.jsonl
    summary: RunSummary         # as in summary.json
    run_dir: Path


def run(scenario: str | Path | Scenario | None = None, *, resume: str | Path | None = None,
        launcher: str = "local", ray_address: str | None = None, ray_cpus: float | None = None,
        insecure: bool = False, mutual: bool = False, host: str = "127.0.0.1", **overrides: Any) -> RunResult:
    """Simulate ``scenario`` (a TOML file or a scenario object) on this machine, or continue the run in
    ``resume``; returns the run's results. Keyword ``overrides`` set scenario keys as ``--set`` does, with
    Python values: ``federation__rounds=3`` or ``**{"federation.rounds": 3}``.

    ``launcher``: ``"local"`` client processes or ``"ray"`` tasks (on ``ray_address``, ``ray_cpus`` CPUs each);
    ``insecure`` (plaintext gRPC), ``mutual`` (mutual TLS) and ``host`` as the ``simulate`` flags. Works inside
    a running event loop too (a notebook): the run then happens on a helper thread.
    """
    source = Path(scenario) if isinstance(scenario, str) else scenario
    return simulate_run(source, resume=Path(resume) if resume is not None else None, overrides=_sets(overrides),
                        launcher=launcher, ray_address=ray_address, ray_cpus=ray_cpus, insecure=insecure,
                        mutual=mutual, host=host)


def compare(scenario: str | Path, *, privacy: str | Sequence[str] = DEFAULT_PRIVACY,
            seeds: int | str | Sequence[int] | None = None, clients: Sequence[int] | None = None,
            key_bits: Sequence[int] | None = None, rounds: int | None = None, canary: bool = True,
            **overrides: Any) -> Comparison:
    """Run the scenario file ``scenario`` under several privacy settings (``fedgrad compare``) and return the
    :class:`~fedgrad.experiments.compare.Comparison`: ``.rows`` (one per run), ``.frontier`` (mean and spread
    per setting over the seeds), ``.directory`` and ``.report``.

    ``privacy`` as ``--privacy`` (``"none,paillier,dp:4,paillier+dp:4"`` or a list; default: compare's), ``seeds``
    a count or the seeds themselves; keyword ``overrides`` set scenario keys as in :func:`run`.
    """
    return run_comparison(scenario, privacy=privacy, seeds=seeds, clients=clients, key_bits=key_bits, rounds=rounds,
                          canary=canary, overrides=_sets(overrides))


def baseline(scenario: str | Path | Scenario, *, epochs: int | None = None, **overrides: Any) -> RunResult:
    """Train ``scenario``'s model centrally on every client's training data pooled (``fedgrad train
    --centralized``): the baseline a federated run is measured against, one record per epoch, ``epochs`` of them
    (default: ``federation.rounds x train.epochs``). Keyword ``overrides`` set scenario keys as in :func:`run`."""
    sets = _sets(overrides)
    resolved = (override_scenario(scenario, sets) if isinstance(scenario, Scenario)
                else load_scenario(scenario, sets))
    writer, summary = train_centralized(resolved, epochs=epochs)
    return RunResult(resolved, list(writer.records), summary, writer.run_dir)


def _sets(overrides: dict[str, Any]) -> list[str]:
    """Keyword overrides (``federation__rounds=3`` or ``"federation.rounds": 3``) as ``--set`` text."""
    return [format_override(key.replace("__", "."), value) for key, value in overrides.items()]


def simulate_run(scenario: Path | Scenario | None = None, *, resume: Path | None = None,
                 overrides: Sequence[str] = (), launcher: str = "local", ray_address: str | None = None,
                 ray_cpus: float | None = None, insecure: bool = False, mutual: bool = False,
                 host: str = "127.0.0.1") -> RunResult:
    """:func:`run` with overrides as ``--set`` text (``"federation.rounds=3"``): what ``fedgrad simulate`` calls."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher: must be one of {', '.join(LAUNCHERS)} (got {launcher!r})")
    if launcher != "ray" and (ray_address or ray_cpus is not None):
        raise ConfigError("--ray-address and --ray-cpus are only used with --launcher ray")
    fleet: Fleet | None = ray_fleet(ray_address, ray_cpus) if launcher == "ray" else None  # no Ray: fail first
    opened = open_run(scenario, resume=resume, overrides=overrides)
    summary = _run_to_completion(simulate(opened, insecure=insecure, mutual=mutual, host=host, fleet=fleet))
    writer = opened.prepared.writer
    return RunResult(opened.prepared.scenario, list(writer.records), summary, writer.run_dir)


def _run_to_completion(work: Coroutine[Any, Any, RunSummary]) -> RunSummary:
    """``asyncio.run(work)``, on a helper thread when this thread already runs an event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedgrad-run") as executor:
        return executor.submit(asyncio.run, work).result()
