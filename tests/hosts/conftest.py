"""Separate hosts on one machine: a Linux network namespace per host, all plugged into one bridge.

Each host has only ``lo`` and ``eth0`` (its end of a veth pair, addressed ``10.213.0.N/24``); the other end
sits in a switch namespace that holds the bridge, so nothing is added to the machine's own network and two
test runs (named after their process id) never share an interface, an address or a port. Creating
namespaces needs root and iproute2; where ``ip netns add`` fails the fixture skips, saying why, unless
``FEDGRAD_REQUIRE_NAMESPACES=1`` (set by ``.ci/run``, which runs as root) makes that a failure.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

SUBNET = "10.213.0"
REQUIRED = os.environ.get("FEDGRAD_REQUIRE_NAMESPACES") == "1"
#: The machines of docs/multi-machine.md: the coordinator, three decryptors and a client site.
HOST_NAMES = ("coord", "dec-1", "dec-2", "dec-3", "site-b")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)


def _checked_ip(*args: str) -> None:
    done = _ip(*args)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


@dataclass
class Hosts:
    """Network namespaces standing for machines: ``address(host)`` and ``command(host, argv)``."""

    prefix: str
    names: Sequence[str]
    namespaces: list[str] = field(default_factory=list)

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def address(self, host: str) -> str:
        return f"{SUBNET}.{self.names.index(host) + 1}"

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run on ``host`` (inside its namespace)."""
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def add(self, namespace: str) -> None:
        _checked_ip("netns", "add", namespace)
        self.namespaces.append(namespace)

    def build(self) -> None:
        switch = self.namespace("switch")
        self.add(switch)
        _checked_ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _checked_ip("-n", switch, "link", "set", "br0", "up")
        for index, host in enumerate(self.names, start=1):
            namespace, port = self.namespace(host), f"port{index}"
            self.add(namespace)
            _checked_ip("link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", port,
                        "netns", switch)
            _checked_ip("-n", switch, "link", "set", port, "master", "br0")
            _checked_ip("-n", switch, "link", "set", port, "up")
            _checked_ip("-n", namespace, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            _checked_ip("-n", namespace, "link", "set", "eth0", "up")
            _checked_ip("-n", namespace, "link", "set", "lo", "up")

    def remove(self) -> None:
        for namespace in reversed(self.namespaces):  # deleting a namespace deletes its ends of the veth pairs
            _ip("netns", "del", namespace)
        self.namespaces.clear()


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    """A namespace for each of :data:`HOST_NAMES`, removed again whatever happens."""
    if shutil.which("ip") is None:
        _unavailable("network namespaces need iproute2 (the ip command), which is not installed")
    made = Hosts(f"fg{os.getpid()}", HOST_NAMES)
    probe = _ip("netns", "add", made.namespace("probe"))
    if probe.returncode != 0:
        _unavailable(f"cannot create network namespaces here (ip netns add: {probe.stderr.strip()}); "
                    "they need root (CI runs as root)")
    made.namespaces.append(made.namespace("probe"))
    try:
        made.build()
        yield made
    finally:
        made.remove()


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"FEDGRAD_REQUIRE_NAMESPACES=1 but {reason}")
    pytest.skip(reason)
