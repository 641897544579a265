"""A client's own signing identity (Ed25519, ``fedgrad.crypto.identity``), made on the client's side.

Each client keeps ``DIR/<client id>.key`` (mode 600, never sent anywhere) and publishes ``DIR/<client id>.pub``
(the raw public key, hex), which the operator collects into the run's enrollment (``fedgrad enroll``). The
coordinator never sees a private key and never enrolls anyone: decryptors trust the operator's enrollment.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fedgrad.crypto.identity import ClientIdentity, Enrollment
from fedgrad.errors import ConfigError
from fedgrad.files import write_atomic

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


def ensure_identities(directory: Path, client_ids: Iterable[str]) -> dict[str, bytes]:
    """Load each client's identity from ``directory``, making the ones that are missing; their public keys."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise ConfigError(f"{directory}: cannot hold client identities ({error.strerror})") from None
    public: dict[str, bytes] = {}
    for client_id in client_ids:
        path = directory / f"{client_id}{PRIVATE_SUFFIX}"
        identity = ClientIdentity.load(path) if path.exists() else ClientIdentity.generate()
        if not path.exists():
            identity.save(path)
        public[client_id] = identity.public_key_bytes
        write_atomic(directory / f"{client_id}{PUBLIC_SUFFIX}", identity.public_key_bytes.hex() + "\n")
    return public


def enroll(public_files: Iterable[Path]) -> Enrollment:
    """The operator's enrollment from clients' published ``<client id>.pub`` files."""
    clients: dict[str, bytes] = {}
    for path in public_files:
        client_id = path.name.removesuffix(PUBLIC_SUFFIX)
        if client_id in clients:
            raise ConfigError(f"{path}: client {client_id!r} is enrolled twice")
        try:
            clients[client_id] = bytes.fromhex(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: not a published client key ({error})") from None
    if not clients:
        raise ConfigError("no client public keys to enroll")
    return Enrollment(clients)
