"""Running a federation from Python: open a run (new or resumed) and serve it, or simulate it whole.

``fedgrad server`` and ``fedgrad simulate`` are argparse front-ends over this module:

- :func:`open_run` prepares a fresh run directory from a scenario (data, tokens) or reopens an interrupted one
  at its last checkpoint, as an :class:`OpenedRun` that builds the checkpointing coordinator;
- :func:`serve` runs that coordinator for clients that connect over the network;
- :func:`simulate` runs it with the client workers of a :class:`~fedgrad.launchers.Fleet` (local client
  processes by default) over real gRPC, with the run's own TLS CA and run tokens;
- :class:`RoundProgress` records each finished round to the run directory and shows a progress bar.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fedgrad.errors import ConfigError, FedgradError
from fedgrad.launchers import ClientFleet, Fleet
from fedgrad.launchers.parties import start_local_parties
from fedgrad.modes.base import ClientPrivacy
from fedgrad.modes.resolve import privacy_mode
from fedgrad.results import format_percent
from fedgrad.results.schema import RoundRecord, RunSummary
from fedgrad.scenario import Scenario, load_scenario, override_scenario
from fedgrad.security import create_pki
from fedgrad.security.certs import client_name
from fedgrad.transport.channel import ClientSecurity, ServerSecurity
from fedgrad.usercode import ClientCode, is_reference
from server.checkpoint import Checkpoint, Checkpoints, reopen_run
from server.coordinator import Coordinator
from server.experiment import PreparedRun, build_coordinator, client_ids, prepare_run
from server.registry import AUTH_DIR, CLIENT_TOKENS_FILE, RunTokens, issue_run_tokens, open_run_tokens
from server.service import start_server

#: Client workers get this long to exit on their own after the run (then the fleet stops them).
EXIT_GRACE_S = 10.0
#: Most client processes ``federation.processes = 0`` starts (each costs ~100 MiB of memory).
MAX_AUTO_PROCESSES = 16
#: Where a simulation keeps the CA and certificates it makes for itself.
TLS_DIR = "tls"


@dataclass
class OpenedRun:
    """A run directory ready to serve: new (prepared now) or resumed (checkpoint restored)."""

    prepared: PreparedRun
    tokens: RunTokens
    checkpoint: Checkpoint | None

    @property
    def token_file(self) -> Path:
        return self.prepared.writer.run_dir / AUTH_DIR / CLIENT_TOKENS_FILE

    def coordinator(self, progress: RoundProgress, decryptors: object = None, run_id: str | None = None
                    ) -> Coordinator:
        """The coordinator, restored from the checkpoint if any, writing a checkpoint after every round
        (``decryptors``: the handle on the decryptor processes, for ``privacy.mode = "paillier"`` and for
        distributed DP; ``run_id``: the run the operator's run policy fixes)."""
        checkpoints = Checkpoints(self.prepared.writer.run_dir)

        def on_round(record: RoundRecord) -> None:
            progress.on_round(record)
            checkpoints.save(coordinator.state, self.prepared.writer.records)

        coordinator = build_coordinator(self.prepared, on_round, self.tokens, decryptors, run_id)
        if self.checkpoint is not None:
            self.checkpoint.restore(coordinator.state)
        return coordinator


def open_run(scenario: Path | Scenario | None = None, *, resume: Path | None = None,
             overrides: Sequence[str] = ()) -> OpenedRun:
    """A fresh run of ``scenario`` (a scenario file or object, with ``--set`` style ``overrides``), or the
    interrupted run in ``resume`` continued from its last checkpoint; exactly one of the two."""
    if (scenario is None) == (resume is None):
        raise ConfigError("give a scenario file to start a run, or --resume RUN_DIR to continue one (not both)")
    if resume is not None:
        if overrides:
            raise ConfigError("--set cannot change a resumed run (its scenario is RUN_DIR/config.toml)")
        prepared, checkpoint = reopen_run(resume)
        return OpenedRun(prepared, open_run_tokens(prepared.writer.run_dir), checkpoint)
    assert scenario is not None  # exactly one of the two was given
    resolved = (override_scenario(scenario, overrides) if isinstance(scenario, Scenario)
                else load_scenario(scenario, list(overrides)))
    prepared = prepare_run(resolved)
    return OpenedRun(prepared, issue_run_tokens(prepared.writer.run_dir, client_ids(prepared.scenario)), None)


async def serve(opened: OpenedRun, host: str, port: int, security: ServerSecurity | None,
                tls_dir: Path | None, decryptors: object = None, run_id: str | None = None) -> RunSummary:
    """Serve ``opened`` to clients that connect over the network until the run ends; returns the summary as
    written. ``tls_dir`` only goes into the printed client command line; ``run_id``: the run policy's."""
    prepared = opened.prepared
    with RoundProgress(prepared) as progress:
        coordinator = opened.coordinator(progress, decryptors, run_id)
        server, bound = await start_server(coordinator, host, port, security)
        try:
            tls = f" --tls-dir {tls_dir.resolve()}" if tls_dir else ""
            code = client_code(prepared.scenario)
            trust = "".join(f" --trust-code {reference}" for reference in code.trusted)  # with it on PYTHONPATH
            dial = socket.gethostname() if host in ("0.0.0.0", "::") else host  # what other machines dial
            progress.write(f"run directory: {prepared.writer.run_dir}\n"
                           f"listening on {host}:{bound} ({_describe(security)}); start each client K with\n"
                           f"  fedgrad client --server {dial}:{bound} --shard-dir {prepared.data_dir.resolve()} "
                           f"--client-id K --token-file {opened.token_file.resolve()}{tls}{trust}")
            if opened.checkpoint is not None:
                progress.write(f"resuming after round {opened.checkpoint.completed_rounds} "
                               f"({opened.checkpoint.path.name})")
            outcome = await coordinator.run()
        finally:
            await server.stop(grace=1.0)
    return prepared.writer.finish(outcome)


class RoundProgress:
    """Records each finished round to the run directory and advances a progress bar over rounds."""

    def __init__(self, prepared: PreparedRun) -> None:
        self._writer = prepared.writer
        self._bar = tqdm(total=prepared.scenario.federation.rounds, initial=len(prepared.writer.records),
                         desc=prepared.scenario.name, unit="round", file=sys.stderr, dynamic_ncols=True)

    def __enter__(self) -> RoundProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.close()

    def on_round(self, record: RoundRecord) -> None:
        self._writer.log_round(record)
        self._bar.set_postfix(acc=format_percent(record.accuracy), round=f"{record.time_s.total:.2f}s", refresh=False)
        self._bar.update(1)

    def write(self, text: str) -> None:
        self._bar.write(text, file=sys.stderr)


def process_count(scenario: Scenario) -> int:
    """``federation.processes``, or when 0 one client process per core, at most one per client and at most
    ``MAX_AUTO_PROCESSES``. Measured on 2 cores (10 clients, 1 local epoch each): 1 process 0.100 s per
    round, 2 processes 0.066 s, 4 processes 0.072 s, 10 processes 0.073 s: more processes than cores only
    adds switching, fewer leaves a core idle."""
    fed = scenario.federation
    return fed.processes or min(fed.clients, os.cpu_count() or 1, MAX_AUTO_PROCESSES)


def client_privacy(scenario: Scenario) -> ClientPrivacy:
    """What simulated clients accept: a scenario that allows short Paillier keys (tests, demos) allows them on
    its clients too. DP noise always comes from the OS: a seed the coordinator knows would let it remove it."""
    return ClientPrivacy(allow_insecure_keys=scenario.privacy.insecure_key_bits)


def client_code(scenario: Scenario) -> ClientCode:
    """The user model simulated clients trust and where they import it from: the simulation's operator wrote
    the scenario, so its clients run the scenario's own model (a strategy runs in the coordinator only)."""
    model = scenario.model.name
    return ClientCode(scenario.code_dir, (model,) if is_reference(model) else ())


def run_security(run_dir: Path, *, mutual: bool, processes: int, host: str) -> tuple[ServerSecurity, Path]:
    """The run's own CA and server certificate (and, for mutual TLS, one client certificate per process),
    made once in ``RUN_DIR/tls`` and reused when the run is resumed."""
    tls_dir = run_dir / TLS_DIR
    if not (tls_dir / "server.pem").exists() or (mutual and not (tls_dir / f"client-{processes - 1}.pem").exists()):
        create_pki(tls_dir, hosts=[host], clients=processes if mutual else 0)
    return ServerSecurity.from_dir(tls_dir, mutual=mutual), tls_dir


async def simulate(opened: OpenedRun, *, insecure: bool = False, mutual: bool = False, host: str = "127.0.0.1",
                   fleet: Fleet | None = None) -> RunSummary:
    """Run ``opened`` with local client processes (or ``fleet``); returns the summary as written."""
    prepared = opened.prepared
    main, loop = asyncio.current_task(), asyncio.get_running_loop()
    assert main is not None  # a coroutine always runs in a task
    terminated = asyncio.Event()

    def on_sigterm() -> None:  # treated like Ctrl-C: unwind, stopping the children on the way out
        terminated.set()
        main.cancel()

    handles_sigterm = threading.current_thread() is threading.main_thread()  # not in a notebook's helper thread
    if handles_sigterm:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    processes = process_count(prepared.scenario)
    run_dir = prepared.writer.run_dir
    fleet = fleet or ClientFleet(run_dir / "logs")
    ids = client_ids(prepared.scenario)
    privacy = client_privacy(prepared.scenario)
    parties, decryptors, run_id, server = None, None, None, None
    try:
        await fleet.prepare(processes)  # first: a Ray node forks its processes before any gRPC thread runs here
        security, tls_dir = (None, None) if insecure else run_security(run_dir, mutual=mutual, processes=processes,
                                                                       host=host)
        if privacy_mode(prepared.scenario).needs_decryptors:
            from fedgrad.crypto.identity import Enrollment
            from fedgrad.crypto.threshold import KeySet
            from fedgrad.decryptor.pool import DecryptorPool

            parties = await start_local_parties(prepared.scenario, ids, run_dir / "logs", prepared.vocab_size)
            decryptors = DecryptorPool(parties.addresses, KeySet.load(parties.key_set),
                                       enrollment=Enrollment.load(parties.enrollment),
                                       security=ClientSecurity.from_dir(parties.tls_dir, client_name(0)))
            run_id = parties.run_id
            # the simulation's operator seeds its clients' shuffling: reproducible, and not the coordinator's seed
            privacy = dataclasses.replace(privacy, identity_dir=parties.identity_dir, enrollment=parties.enrollment,
                                          policy=parties.policy, training_seed=prepared.scenario.seed)
        with RoundProgress(prepared) as progress:
            if opened.checkpoint is not None:
                progress.write(f"resuming {run_dir} after round {opened.checkpoint.completed_rounds}")
            coordinator = opened.coordinator(progress, decryptors, run_id)
            server, port = await start_server(coordinator, host, 0, security)
            await fleet.start(f"{host}:{port}", prepared.data_dir, ids, processes, opened.token_file, tls_dir,
                              privacy, client_code(prepared.scenario))
            outcome = await fleet.supervise(coordinator.run())
            await fleet.wait_for_exit(EXIT_GRACE_S)
    except asyncio.CancelledError:
        if terminated.is_set():
            raise FedgradError("terminated by SIGTERM; client processes stopped") from None
        raise
    finally:
        await fleet.stop()
        if server is not None:
            await server.stop(grace=1.0)
        if parties is not None:
            await parties.stop()
        if handles_sigterm:
            loop.remove_signal_handler(signal.SIGTERM)
    return prepared.writer.finish(dataclasses.replace(outcome, processes=processes))


def _describe(security: ServerSecurity | None) -> str:
    if security is None:
        return "plaintext"
    return "mutual TLS" if security.mutual else "TLS"
