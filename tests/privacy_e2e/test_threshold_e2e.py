"""``privacy.mode = "paillier"`` end to end: real decryptors over gRPC, clients signing with their own keys."""
from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client.identity import PUBLIC_SUFFIX, enroll, ensure_identities
from client.pool import run_clients
from fedgrad.crypto import InsecureKeyWarning
from fedgrad.crypto.threshold import SHARE_FORMAT, deal, key_set
from fedgrad.data import load_shard
from fedgrad.decryptor.core import Decryptor
from fedgrad.decryptor.pool import DecryptorPool
from fedgrad.decryptor.service import start_decryptor_server
from fedgrad.modes.base import ClientPrivacy
from server.experiment import build_coordinator, client_ids, prepare_run
from server.service import start_server

FAST_ROUNDS = ("federation.round_timeout_s=20",)


@pytest.fixture(scope="module")
def dealt():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        _, shares = deal(512, 3, 2, insecure_key_bits=True)
    return shares


async def federate_threshold(scenario, directory: Path, shares, *, stop_after_round1: int = 0) -> dict[str, Any]:
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

        def on_round(record: dict[str, Any]) -> None:
            prepared.writer.log_round(record)
            if record["round"] == 1:
                stopping.extend(asyncio.ensure_future(server.stop(None)) for server, _ in
                                servers[:stop_after_round1])

        coordinator = build_coordinator(prepared, on_round, decryptors=pool)
    server, port = await start_server(coordinator, "127.0.0.1", 0)
    privacy = ClientPrivacy(allow_insecure_keys=True, identity_dir=directory / "ids",
                            enrollment=directory / "enrollment.json")
    shards = {cid: load_shard(prepared.data_dir, int(cid)) for cid in ids}
    clients = asyncio.create_task(run_clients(f"127.0.0.1:{port}", shards, privacy=privacy))
    try:
        extras = await asyncio.wait_for(coordinator.run(), 120)
        await asyncio.wait_for(clients, 30)
        await asyncio.gather(*stopping)
    finally:
        clients.cancel()
        await server.stop(None)
        for decryptor_server, _ in servers:
            await decryptor_server.stop(None)
    return {"records": prepared.writer.records, "summary": prepared.writer.finish(extras),
            "run_dir": prepared.writer.run_dir}


def test_threshold_paillier_matches_plain_training(scenario, run, dealt, tmp_path):
    plain = run(scenario())
    secure = asyncio.run(federate_threshold(scenario('privacy.mode="paillier"', *FAST_ROUNDS), tmp_path, dealt))
    # Equal-size IID shards: the clients' own encrypted example counts weight them as FedAvg does.
    assert [r["accuracy"] for r in secure["records"]] == [r["accuracy"] for r in plain.records]
    np.testing.assert_allclose([r["loss"] for r in secure["records"]], plain.losses, rtol=1e-3)
    for record in secure["records"]:
        assert record["clients_used"] == 3 and "dropped" not in record
        assert record["local"] == {} and record["time_s"]["decrypt"] > 0
        stats = record["decryptors"]  # where the release's time went: t decryptors asked, each one's phases
        assert stats["decryptors_asked"] == 2 and stats["partial_s"] > 0 and stats["prove_s"] > 0
        assert 0 < stats["partial_s"] + stats["combine_s"] < record["time_s"]["decrypt"]
    privacy = secure["summary"]["privacy"]
    assert (privacy["mode"], privacy["decryptors"], privacy["threshold"]) == ("paillier", 3, 2)
    assert "2 of 3 decryptors must collude" in privacy["guarantee"]


def test_the_run_goes_on_when_k_minus_t_decryptors_die(scenario, dealt, tmp_path):
    finished = asyncio.run(federate_threshold(scenario('privacy.mode="paillier"', *FAST_ROUNDS), tmp_path, dealt,
                                              stop_after_round1=1))
    assert [r["round"] for r in finished["records"]] == [1, 2, 3]
    assert all("dropped" not in r for r in finished["records"])
    assert finished["records"][-1]["loss"] < finished["records"][0]["loss"]


def test_with_fewer_than_t_decryptors_rounds_are_dropped_and_the_model_stays(scenario, dealt, tmp_path):
    finished = asyncio.run(federate_threshold(scenario('privacy.mode="paillier"', *FAST_ROUNDS), tmp_path, dealt,
                                              stop_after_round1=2))
    first, *later = finished["records"]
    assert "dropped" not in first
    for record in later:
        assert "not released" in record["dropped"]
        assert (record["accuracy"], record["loss"]) == (first["accuracy"], first["loss"])


def test_fedgrad_simulate_runs_the_decryptors_as_their_own_processes(scenario_file, tmp_path):
    """The command line path: identities, dealer and decryptors as OS processes; no share in the run directory."""
    from fedgrad.cli.main import main

    overrides = ['privacy.mode="paillier"', "federation.rounds=2", "federation.processes=2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        assert main(["simulate", str(scenario_file), *(arg for o in overrides for arg in ("--set", o))]) == 0
    [run_dir] = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["privacy"]["mode"] == "paillier" and summary["rounds"] == 2
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SHARE_FORMAT.encode() not in path.read_bytes(), f"{path} holds a key share"
    assert not [line for line in (run_dir / "logs").glob("decryptor-*.log") if "Traceback" in line.read_text()]
