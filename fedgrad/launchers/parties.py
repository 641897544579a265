"""The other parties of a ``privacy.mode = "paillier"`` simulation, each in its own OS process: the clients'
identities, the dealer, and the k decryptors.

A simulation plays the operator (``docs/multi-machine.md`` shows each step on its own host):

1. the client software makes each client's Ed25519 identity (``fedgrad identity``, a subprocess); the launcher
   enrolls the published public keys (``client.identity.enroll``), never seeing a private key;
2. the dealer (``fedgrad keygen``, a subprocess) makes the threshold key, writes one share per decryptor (mode
   600) and exits, taking the factorization with it;
3. a CA for the coordinator -> decryptor channel (mutual TLS: a server certificate for the decryptors, a client
   certificate for the coordinator) and the operator's run policy (``fedgrad policy``: run id, key set, the
   coordinator's certificate,
   the scenario's privacy and training settings, ``min_clients`` and cohort fraction) for clients and decryptors;
4. each decryptor (``fedgrad decryptor``) reads its own share and serves on a loopback port it reports in a file.

Everything lives in a private temporary directory (mode 700) outside the run directory, which the coordinator
writes and checkpoints: no share ever lands there. The directory is deleted when the simulation ends. All
processes run as the same OS user here, so the separation is by process and file; on real hosts it is by machine.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from client.identity import PUBLIC_SUFFIX, enroll
from fedgrad.crypto.threshold import KeySet
from fedgrad.errors import FedgradError
from fedgrad.policy import make_policy
from fedgrad.scenario import Scenario
from fedgrad.security.certs import client_name, create_pki

log = logging.getLogger("fedgrad.simulate")

#: Longest a party's set-up step (identities, dealer, a decryptor's start) may take.
START_TIMEOUT_S = 120.0
#: ... plus this per client for the identities: each client's key pair is written durably (four fsyncs), and
#: on a loaded machine 4,837 of them took longer than START_TIMEOUT_S.
IDENTITY_S_PER_CLIENT = 0.1
#: How often the launcher looks for a decryptor's port file while it starts.
PORT_POLL_S = 0.05


class PartyError(FedgradError):
    """A decryptor or the dealer could not be started; the message says which and why."""


@dataclass
class LocalParties:
    """The running decryptors of one simulation and the files the clients and the coordinator need."""

    directory: Path
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def identity_dir(self) -> Path:
        return self.directory / "clients"

    @property
    def enrollment(self) -> Path:
        return self.directory / "enrollment.json"

    @property
    def tls_dir(self) -> Path:
        """The certificates of the coordinator -> decryptor channel (mutual TLS under a CA of this simulation)."""
        return self.directory / "tls"

    @property
    def policy(self) -> Path:
        return self.directory / "policy.json"

    @property
    def key_set(self) -> Path:
        return self.directory / "keys" / "keyset.json"

    def decryptor_dir(self, index: int) -> Path:
        return self.directory / "keys" / f"decryptor-{index}"

    async def stop(self) -> None:
        """Stop the decryptors (SIGTERM, then SIGKILL) and delete every key file."""
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


async def _run(args: list[str], what: str, log_file: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    with log_file.open("ab") as out:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "fedgrad.cli.main", *args,
                                                       stdout=out, stderr=out)
        try:
            code = await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            process.kill()
            raise PartyError(f"{what} did not finish in {timeout_s:g} s (log: {log_file})") from None
    if code != 0:
        raise PartyError(f"{what} failed with exit code {code}: {_last_line(log_file)}")


async def start_local_parties(scenario: Scenario, client_ids: list[str], log_dir: Path,
                              vocab_size: int) -> LocalParties:
    """Identities, enrollment, dealer, run policy and k decryptors for ``scenario`` (see the module docstring)."""
    privacy, fed = scenario.privacy, scenario.federation
    log_dir.mkdir(parents=True, exist_ok=True)
    parties = LocalParties(Path(tempfile.mkdtemp(prefix="fedgrad-parties-")))
    try:
        await _run(["identity", str(parties.identity_dir), "--client-id", *client_ids], "fedgrad identity",
                   log_dir / "identity.log", START_TIMEOUT_S + IDENTITY_S_PER_CLIENT * len(client_ids))
        enroll(sorted(parties.identity_dir.glob(f"*{PUBLIC_SUFFIX}"))).save(parties.enrollment)
        keygen = ["keygen", "--parties", str(privacy.decryptors), "--threshold", str(privacy.threshold),
                  "--key-bits", str(privacy.key_bits), "--out", str(parties.key_set.parent)]
        if privacy.insecure_key_bits:
            keygen.append("--insecure-key-bits")
        await _run(keygen, "fedgrad keygen (the dealer)", log_dir / "keygen.log")
        create_pki(parties.tls_dir, clients=1)  # decryptors serve 127.0.0.1; the coordinator presents client-0
        make_policy(scenario, vocab_size, KeySet.load(parties.key_set), run=parties.run_id,
                    coordinator_cert=parties.tls_dir / f"{client_name(0)}.pem").save(parties.policy)
        for index in range(1, privacy.decryptors + 1):
            home = parties.decryptor_dir(index)
            with (log_dir / f"decryptor-{index}.log").open("ab") as out:
                parties.processes.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "fedgrad.cli.main", "decryptor", "--share", str(home / "share.json"),
                    "--key-set", str(parties.key_set), "--enrollment", str(parties.enrollment),
                    "--state-dir", str(home / "state"), "--host", "127.0.0.1", "--port", "0",
                    "--port-file", str(home / "port"), "--min-clients", str(fed.min_clients),
                    "--policy", str(parties.policy), "--tls-dir", str(parties.tls_dir), "--mtls",
                    stdout=out, stderr=out, start_new_session=True))
        for index, process in enumerate(parties.processes, start=1):
            port = await _await_port(parties.decryptor_dir(index) / "port", process,
                                     log_dir / f"decryptor-{index}.log")
            parties.addresses.append(f"127.0.0.1:{port}")
        log.info("%d decryptors up (%d needed to decrypt): %s", privacy.decryptors, privacy.threshold,
                 ", ".join(parties.addresses))
        return parties
    except BaseException:
        await parties.stop()
        raise


async def _await_port(port_file: Path, process: asyncio.subprocess.Process, log_file: Path) -> int:
    """The port a decryptor reports once it listens (it writes the file atomically)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while not port_file.exists():
        if process.returncode is not None:
            raise PartyError(f"a decryptor exited with code {process.returncode}: {_last_line(log_file)}")
        if loop.time() > deadline:
            raise PartyError(f"a decryptor did not start in {START_TIMEOUT_S:g} s (log: {log_file})")
        await asyncio.sleep(PORT_POLL_S)
    return int(port_file.read_text().strip())


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1] if lines else "(no output)"
