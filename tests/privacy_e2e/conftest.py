"""A tiny corpus, scenarios on it, and a whole federation over real gRPC on localhost in this process.

The federation is assembled exactly as ``fedgrad simulate`` assembles it (``server.experiment``), but the
clients run in this process (``client.pool.run_clients``) instead of in child processes, so that a test can
pass them client-side settings (short Paillier keys, a noise seed) and the suite stays fast.
"""
from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client.identity import PUBLIC_SUFFIX, enroll, ensure_identities
from client.pool import run_clients
from client.session import ClientOptions
from fedgrad.crypto import InsecureKeyWarning
from fedgrad.crypto.threshold import deal, key_set
from fedgrad.data import load_shard
from fedgrad.decryptor.core import Decryptor
from fedgrad.decryptor.pool import DecryptorPool
from fedgrad.decryptor.service import start_decryptor_server
from fedgrad.modes.base import ClientPrivacy
from fedgrad.results.schema import RoundRecord, RunSummary
from fedgrad.scenario import Scenario, load_scenario
from server.experiment import build_coordinator, client_ids, prepare_run
from server.service import start_server

#: Clients accept the short test keys and draw reproducible noise.
TEST_CLIENTS = ClientPrivacy(allow_insecure_keys=True, noise_seed=11)
FAST = ClientOptions(wait_s=2.0, rpc_timeout_s=20.0, connect_timeout_s=20.0, backoff_max_s=0.2)

SPAM = "free money offer winner click cash prize urgent discount credit loan cheap deal guaranteed".split()
HAM = "meeting project schedule report team lunch attached review budget deadline minutes agenda notes".split()
COMMON = "the and to of a in for is on that with this you it be".split()


def write_corpus(root: Path, per_class: int = 80) -> Path:
    """spam.txt + ham.txt with overlapping vocabularies (each email borrows the other class's words), so
    the task is learnable but not solved in one step and the loss keeps moving over a few rounds."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for name, own, other in (("spam.txt", SPAM, HAM), ("ham.txt", HAM, SPAM)):
        lines = []
        for _ in range(per_class):
            words = [rng.choice(own if rng.random() < 0.72 else other) if rng.random() < 0.5 else rng.choice(COMMON)
                     for _ in range(20)]
            lines.append(" ".join(words))
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def scenario_file(corpus, tmp_path, write_scenario) -> Path:
    """3 IID clients, 3 rounds of the book model; a 512-bit key should a test turn secure aggregation on."""
    return write_scenario(tmp_path / "fixture.toml", corpus, tmp_path / "runs", name="fixture", seed=5,
                          train={"epochs": 2, "batch_size": 16, "lr": 0.06},
                          federation={"rounds": 3, "round_timeout_s": 20},
                          privacy={"key_bits": 512, "insecure_key_bits": True})


@pytest.fixture
def scenario(scenario_file) -> Callable[..., Scenario]:
    """``scenario('privacy.mode="paillier-trusted"', ...)``: the fixture scenario with ``--set`` style overrides."""
    return lambda *overrides: load_scenario(scenario_file, list(overrides))


@dataclass(frozen=True)
class FinishedRun:
    records: list[RoundRecord]
    summary: RunSummary
    run_dir: Path

    @property
    def losses(self) -> list[float | None]:
        return [record.loss for record in self.records]


async def federate(scenario: Scenario, privacy: ClientPrivacy = TEST_CLIENTS,
                   rogue: Callable[[str], Any] | None = None) -> FinishedRun:
    """Run ``scenario`` to the end over gRPC; ``rogue(address)``, if given, plays the last client itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        prepared = prepare_run(scenario)
        coordinator = build_coordinator(prepared, prepared.writer.log_round)
    server, port = await start_server(coordinator, "127.0.0.1", 0)
    address = f"127.0.0.1:{port}"
    ids = client_ids(scenario)
    honest = ids[:-1] if rogue else ids
    shards = {cid: load_shard(prepared.data_dir, int(cid)) for cid in honest}
    clients = [asyncio.create_task(run_clients(address, shards, options=FAST, privacy=privacy))]
    if rogue:
        clients.append(asyncio.create_task(rogue(address)))
    try:
        outcome = await asyncio.wait_for(coordinator.run(), 120)
        await asyncio.wait_for(asyncio.gather(*clients), 30)
    finally:
        for task in clients:
            task.cancel()
        await server.stop(None)
    summary = prepared.writer.finish(outcome)
    return FinishedRun(prepared.writer.records, summary, prepared.writer.run_dir)


@pytest.fixture
def run() -> Callable[..., FinishedRun]:
    """``run(scenario, privacy=..., rogue=...)``: :func:`federate` from synchronous test code."""
    return lambda scenario, **kwargs: asyncio.run(federate(scenario, **kwargs))


@pytest.fixture(scope="module")
def dealt():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        _, shares = deal(512, 3, 2, insecure_key_bits=True)
    return shares


async def federate_threshold(scenario: Scenario, directory: Path, shares: Any, *,
                             stop_after_round1: int = 0) -> FinishedRun:
    """Run ``scenario`` with 3 decryptors in this process (each its own gRPC server); after round 1, stop
    ``stop_after_round1`` of them. Returns the records and summary."""
    ids = client_ids(scenario)
    ensure_identities(directory / "ids", ids)
    enrollment = enroll(sorted((directory / "ids").glob(f"*{PUBLIC_SUFFIX}")))
    enrollment.save(directory / "enrollment.json")
    keys = key_set(shares)
    servers = []
    for share in shares:
        decryptor = Decryptor(share, keys, enrollment, min_clients=2, state_dir=directory / f"state-{share.index}",
                              cores=1)
        servers.append(await start_decryptor_server(decryptor, "127.0.0.1", 0, None))
    pool = DecryptorPool([f"127.0.0.1:{port}" for _, port in servers], keys, timeout_s=30.0, enrollment=enrollment)
    stopping: list[asyncio.Task[None]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        prepared = prepare_run(scenario)

        def on_round(record: RoundRecord) -> None:
            prepared.writer.log_round(record)
            if record.round == 1:
                stopping.extend(asyncio.ensure_future(server.stop(None)) for server, _ in
                                servers[:stop_after_round1])

        coordinator = build_coordinator(prepared, on_round, decryptors=pool)
    server, port = await start_server(coordinator, "127.0.0.1", 0)
    privacy = ClientPrivacy(allow_insecure_keys=True, identity_dir=directory / "ids",
                            enrollment=directory / "enrollment.json")
    shards = {cid: load_shard(prepared.data_dir, int(cid)) for cid in ids}
    clients = asyncio.create_task(run_clients(f"127.0.0.1:{port}", shards, privacy=privacy))
    try:
        outcome = await asyncio.wait_for(coordinator.run(), 120)
        await asyncio.wait_for(clients, 30)
        await asyncio.gather(*stopping)
    finally:
        clients.cancel()
        await server.stop(None)
        for decryptor_server, _ in servers:
            await decryptor_server.stop(None)
    summary = prepared.writer.finish(outcome)
    return FinishedRun(prepared.writer.records, summary, prepared.writer.run_dir)


@pytest.fixture
def run_threshold(dealt, tmp_path) -> Callable[..., FinishedRun]:
    """``run_threshold(scenario, stop_after_round1=0)``: :func:`federate_threshold` from synchronous test code."""
    return lambda scenario, **kwargs: asyncio.run(federate_threshold(scenario, tmp_path, dealt, **kwargs))
