"""docs/multi-machine.md followed step by step, each machine a network namespace of its own (tests/hosts/conftest.py).

The coordinator (coord), the three decryptors of threshold Paillier (dec-1, dec-2, dec-3) and a client site
(site-b) talk only over their veth addresses on 10.213.0.0/24, every channel TLS. Each machine has its own
directory; what the guide copies with scp from one machine to another is copied here from one directory to
the other, and nothing else is shared but the scenario file and its corpus. The operator's and the dealer's
steps need no network and run in the test's own process tree.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

COORD_PORT, DECRYPTOR_PORT = 45051, 45060  # each namespace has ports of its own; these are the test's range
CLIENTS = ("0", "1", "2")
ROUNDS = 2
RUN_ID = "fed-hosts-1"  # the operator's run policy fixes it
STEP_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 120.0


def fedgrad(*args: str | Path | int) -> list[str]:
    return [sys.executable, "-m", "fedgrad.cli.main", *(str(arg) for arg in args)]


def run_step(argv: Sequence[str], cwd: Path) -> str:
    """One command of the guide that finishes on its own; its output, or the test fails with it."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def copy(files: Sequence[Path], to: Path) -> None:
    """scp: the files keep their modes (secrets stay 600)."""
    to.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, to / path.name)


class Service:
    """A long-running command of the guide (decryptor, coordinator, client), its output kept for the assertions."""

    def __init__(self, argv: Sequence[str], cwd: Path) -> None:
        self.argv = list(argv)
        self.process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for_line(self, text: str, timeout: float = STEP_TIMEOUT_S) -> str:
        """The first output line containing ``text``, as soon as it is printed."""
        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self._seen:
            self._seen.wait_for(lambda: found() is not None or not self._reader.is_alive(), timeout)
            line = found()
        assert line is not None, f"{' '.join(self.argv)} never printed {text!r}:\n{self.output}"
        return line

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in reversed(started):
        service.stop()


def test_threshold_federation_across_namespaces_over_tls(hosts, services, enron_corpus, write_scenario, tmp_path):
    machine = {name: tmp_path / name for name in (*hosts.names, "operator", "dealer")}
    for directory in machine.values():
        directory.mkdir()
    coord = hosts.address("coord")
    decryptors = [f"dec-{i}" for i in (1, 2, 3)]
    scenario = write_scenario(tmp_path / "spam_paillier.toml", enron_corpus, machine["coord"] / "runs",
                              name="spam_paillier", seed=0, train={"epochs": 2, "batch_size": 16, "lr": 0.5},
                              federation={"rounds": ROUNDS, "round_timeout_s": 60},
                              privacy={"mode": "paillier", "key_bits": 512, "insecure_key_bits": True})
    on = hosts.command

    # 1. Certificates, on coord: the coordinator's, and one per decryptor from the same CA.
    tls = machine["coord"] / "fed-tls"
    run_step(on("coord", fedgrad("certs", tls, "--hosts", coord, "--clients", "1")), machine["coord"])
    for name in decryptors:
        issued = machine["coord"] / f"{name}-tls"
        copy([tls / "ca.pem", tls / "ca.key"], issued)
        run_step(on("coord", fedgrad("certs", issued, "--hosts", hosts.address(name))), machine["coord"])
        (issued / "ca.key").unlink()
        copy([issued / "ca.pem", issued / "server.pem", issued / "server.key"], machine[name] / "tls")

    # 5. Threshold secure aggregation: identities on the client site, enrollment by the operator, the dealer.
    fed = machine["site-b"] / "fed"
    run_step(on("site-b", fedgrad("identity", fed / "ids", "--client-id", *CLIENTS)), machine["site-b"])
    copy(sorted((fed / "ids").glob("*.pub")), machine["operator"] / "enroll")
    run_step(fedgrad("enroll", *sorted((machine["operator"] / "enroll").glob("*.pub")), "--out", "enrollment.json"),
             machine["operator"])
    enrollment = machine["operator"] / "enrollment.json"
    for name in (*decryptors, "coord"):
        copy([enrollment], machine[name])
    copy([enrollment], fed)
    run_step(fedgrad("keygen", "--parties", "3", "--threshold", "2", "--key-bits", "512", "--insecure-key-bits",
                     "--out", "keys"), machine["dealer"])
    for index, name in enumerate(decryptors, start=1):
        copy([machine["dealer"] / "keys" / f"decryptor-{index}" / "share.json"], machine[name])
    for name in ("coord", *decryptors):
        copy([machine["dealer"] / "keys" / "keyset.json"], machine[name])
    copy([machine["dealer"] / "keys" / "keyset.json"], machine["operator"])
    shutil.rmtree(machine["dealer"] / "keys")
    # the operator's run policy: run id, key set, the scenario's settings, the coordinator's certificate
    run_step(fedgrad("data", "split", scenario, "--out", "data"), machine["operator"])
    copy([tls / "client-0.pem"], machine["operator"])
    run_step(fedgrad("policy", scenario, "--key-set", "keyset.json", "--data-dir", "data", "--out", "policy.json",
                     "--run", RUN_ID, "--coordinator-cert", "client-0.pem"), machine["operator"])
    for name in decryptors:
        copy([machine["operator"] / "policy.json"], machine[name])
    copy([machine["operator"] / "policy.json"], fed)
    for name in decryptors:
        decryptor = Service(on(name, fedgrad(
            "decryptor", "--share", "share.json", "--key-set", "keyset.json", "--enrollment", "enrollment.json",
            "--state-dir", "state", "--host", "0.0.0.0", "--port", DECRYPTOR_PORT, "--min-clients", "2",
            "--tls-dir", "tls", "--mtls", "--policy", "policy.json")), machine[name])
        services.append(decryptor)
        decryptor.wait_for_line("listening on")

    # 2. The coordinator, dialling the decryptors over TLS.
    server = Service(on("coord", fedgrad(
        "server", scenario, "--host", "0.0.0.0", "--port", COORD_PORT, "--tls-dir", tls,
        "--decryptors", ",".join(f"{hosts.address(name)}:{DECRYPTOR_PORT}" for name in decryptors),
        "--key-set", "keyset.json", "--enrollment", "enrollment.json", "--decryptor-tls-dir", tls,
        "--decryptor-tls-name", "client-0", "--run-id", RUN_ID)), machine["coord"])
    services.append(server)
    run_dir = Path(server.wait_for_line("run directory:").split("run directory:", 1)[1].strip())
    server.wait_for_line("listening on")
    run_step(on("coord", fedgrad("tokens", "export", run_dir, "--client-id", *CLIENTS, "--out",
                                 "tokens-site-b.json")), machine["coord"])
    copy([tls / "ca.pem", machine["coord"] / "tokens-site-b.json"], fed)

    # 3. The data, rebuilt on the client site from the same scenario; 4. the clients.
    run_step(on("site-b", fedgrad("data", "split", scenario, "--out", fed / "data")), machine["site-b"])
    clients = Service(on("site-b", fedgrad(
        "client", "--server", f"{coord}:{COORD_PORT}", "--shard-dir", fed / "data", "--client-id", *CLIENTS,
        "--token-file", fed / "tokens-site-b.json", "--tls-dir", fed, "--identity-dir", fed / "ids",
        "--enrollment", fed / "enrollment.json", "--policy", fed / "policy.json", "--insecure-key-bits")),
        machine["site-b"])
    services.append(clients)

    assert server.process.wait(RUN_TIMEOUT_S) == 0, server.output
    assert clients.process.wait(STEP_TIMEOUT_S) == 0, clients.output
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["round"] for record in records] == list(range(1, ROUNDS + 1))
    assert all(record["clients_used"] == len(CLIENTS) and "dropped" not in record for record in records)
    assert records[-1]["accuracy"] > 0.8, records[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["privacy"]["mode"], summary["privacy"]["decryptors"]) == ("paillier", 3)
    assert f"listening on 0.0.0.0:{COORD_PORT} (TLS)" in server.output
    for decryptor in services[:len(decryptors)]:  # each one was dialled over its veth address
        assert "opened run" in decryptor.output, decryptor.output
