"""Who may take part in a run, who has joined, and who is still there to be given work.

Admission. A client id must be one of the scenario's, and when the run has tokens
(:class:`~fedgrad.security.TokenIssuer`, issued by ``fedgrad server``/``simulate``) the token presented
must be that client's current one. Both are checked at join *and on every later call*, so revoking a
client (``fedgrad tokens revoke``) shuts it out at once, not at its next join. The issuer's file is
re-read when it changes on disk, which is how a revocation made by another process reaches a running
coordinator.

Task delivery is push-style, through each client's :class:`~server.mailbox.Mailbox`.

Liveness. A healthy client is always asked for by a parked GetTask call of its process (one call for all the
clients a process hosts, re-opened as soon as it ends). A client is *lost* when that call breaks before the
client's task went out on it (the process died, the network went away) or when it misses a
round's deadline with no call in progress; lost clients are not selected for rounds, so a dead client
costs at most the one round it was in, instead of a full timeout in every round it is drawn for. Any
call from the client (a poll, a late update, a new join) brings it back. A healthy run never loses a
client, so sampling stays a pure function of the seed.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fedgrad.errors import ConfigError, FedgradError
from fedgrad.protocol import Rejected
from fedgrad.security import TokenIssuer, write_token_file
from server.mailbox import Mailbox, Signal

log = logging.getLogger("fedgrad.server")


class RunTokens:
    """The run's token issuer, reloaded when its file changed (a revocation by another process) at ``refresh()``,
    which the registry calls once per request, however many clients the request names."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self._issuer = issuer
        self.path = issuer.path  # None: held in memory only, nothing to reload
        self._stamp = self._file_stamp()
        self._verified: set[tuple[str, str]] = set()  # (client, token) pairs this version of the issuer accepted

    def verify(self, client_id: str, token: str) -> bool:
        if (client_id, token) in self._verified:
            return True
        valid = self._issuer.verify(client_id, token)
        if valid:
            self._verified.add((client_id, token))
        return valid

    def is_revoked(self, client_id: str) -> bool:
        return self._issuer.is_revoked(client_id)

    def refresh(self) -> None:
        """Reload the issuer if its file changed on disk."""
        stamp = self._file_stamp()
        if stamp == self._stamp or stamp is None or self.path is None:  # unchanged, or briefly absent: keep it
            return
        try:
            self._issuer = TokenIssuer.load(self.path)
        except FedgradError as error:  # keep enforcing the last good version rather than letting anyone in
            log.error("token file changed but cannot be read, keeping the previous tokens: %s", error)
        else:
            log.info("token file %s changed; reloaded", self.path)
            self._verified.clear()
        self._stamp = stamp

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_ino, status.st_mtime_ns, status.st_size

AUTH_DIR = "auth"
ISSUER_FILE = "issuer.json"          # the issuer's secret: never leaves the coordinator's machine
CLIENT_TOKENS_FILE = "client-tokens.json"  # {"run": ..., "tokens": {client id: token}}: what clients need


def issue_run_tokens(run_dir: Path, client_ids: Collection[str]) -> RunTokens:
    """A new token issuer for the run in ``run_dir`` and one token per client.

    Writes ``auth/issuer.json`` (the secret, so a resumed coordinator accepts the same tokens) and
    ``auth/client-tokens.json`` (for ``fedgrad client --token-file``), both mode 600 in a mode-700
    directory: the tokens never appear on a command line, where other users could read them.
    """
    directory = Path(run_dir) / AUTH_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    issuer = TokenIssuer.create(Path(run_dir).name)  # persisted once below, not once per client
    tokens = {client_id: issuer.issue(client_id) for client_id in sorted(client_ids, key=_id_order)}
    issuer.save(directory / ISSUER_FILE)
    write_token_file(directory / CLIENT_TOKENS_FILE, issuer.run_id, tokens)
    return RunTokens(TokenIssuer.load(directory / ISSUER_FILE))


def open_run_tokens(run_dir: Path) -> RunTokens:
    """The tokens of an existing run (to resume it)."""
    path = Path(run_dir) / AUTH_DIR / ISSUER_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir}: no {AUTH_DIR}/{ISSUER_FILE}; was the run started with fedgrad server "
                          "or simulate?")
    return RunTokens(TokenIssuer.load(path))


@dataclass(slots=True)
class ClientRecord:
    client_id: str
    token: str
    n_examples: int
    mailbox: Mailbox = field(default_factory=Mailbox)
    shut_down: bool = False  # has received the SHUTDOWN task
    polls: int = 0           # GetTask calls parked right now
    lost: bool = False       # connection broke or deadline missed, and no call since (see the module docstring)


class ClientRegistry:
    """The clients that joined this run, by id; ``changed`` fires on every join, loss, return or shutdown."""

    def __init__(self, expected_ids: Collection[str], tokens: RunTokens | None = None) -> None:
        self.expected_ids = frozenset(expected_ids)
        self.tokens = tokens
        self._clients: dict[str, ClientRecord] = {}
        self._trainable = 0  # joined clients with examples, kept up to date: asked on every join
        self.changed = Signal()

    # ---- admission ---------------------------------------------------------------------------------

    def join(self, client_id: str, token: str, n_examples: int) -> ClientRecord:
        """Register a client, or refresh it when it rejoins (a restarted process keeps its mailbox)."""
        self._refresh_tokens()
        self._admit(client_id, token)
        record = self._clients.get(client_id)
        if record is None:
            record = ClientRecord(client_id, token, n_examples)
            self._clients[client_id] = record
        else:
            self._trainable -= record.n_examples > 0
            record.token, record.n_examples, record.shut_down, record.lost = token, n_examples, False, False
        self._trainable += n_examples > 0
        self.changed.fire()
        return record

    def authenticate(self, client_id: str, token: str) -> ClientRecord:
        """The joined client ``client_id`` if ``token`` is still valid for it; it counts as seen."""
        return self.authenticate_all([(client_id, token)])[0]

    def authenticate_all(self, credentials: Iterable[tuple[str, str]]) -> list[ClientRecord]:
        """:meth:`authenticate` each (client id, token) of one request, the token file checked once; the first
        that is not valid raises."""
        self._refresh_tokens()
        return [self._authenticated(client_id, token) for client_id, token in credentials]

    def _refresh_tokens(self) -> None:
        if self.tokens is not None:
            self.tokens.refresh()

    def _authenticated(self, client_id: str, token: str) -> ClientRecord:
        self._admit(client_id, token)
        record = self._clients.get(client_id)
        if record is None:
            raise Rejected.unauthenticated(f"client {client_id!r} has not joined")
        if token != record.token:
            raise Rejected.unauthenticated(f"client {client_id!r}: token differs from the one presented at join")
        self.seen(record)
        return record

    def _admit(self, client_id: str, token: str) -> None:
        if client_id not in self.expected_ids:
            raise Rejected.unauthenticated(f"unknown client id {client_id!r} (this run has "
                                           f"{len(self.expected_ids)} clients: {_id_range(self.expected_ids)})")
        if self.tokens is None:
            return
        if self.tokens.is_revoked(client_id):
            raise Rejected.revoked(f"client {client_id!r} was revoked for this run")
        if not token:
            raise Rejected.unauthenticated(f"client {client_id!r} presented no token; this run requires one "
                                           "(fedgrad client --token-file FILE)")
        if not self.tokens.verify(client_id, token):
            raise Rejected.unauthenticated(f"client {client_id!r}: the token is not valid for this run")

    # ---- membership --------------------------------------------------------------------------------

    def get(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    @property
    def joined(self) -> int:
        """How many clients have joined. The counts below cost O(1): the round loop asks after every join, and
        sorting thousands of clients each time made joining quadratic in the federation's size."""
        return len(self._clients)

    @property
    def trainable_count(self) -> int:
        """How many joined clients have at least one training example."""
        return self._trainable

    def all_gone(self) -> bool:
        """Every joined client has received SHUTDOWN or is lost (stops at the first that has not)."""
        return all(record.shut_down or record.lost for record in self._clients.values())

    def clients(self) -> list[ClientRecord]:
        """Joined clients in id order (the order sampling draws from, so it is deterministic)."""
        return [self._clients[client_id] for client_id in sorted(self._clients, key=_id_order)]

    def trainable(self) -> list[ClientRecord]:
        """Joined clients with at least one training example."""
        return [record for record in self.clients() if record.n_examples > 0]

    def available(self) -> list[ClientRecord]:
        """Trainable clients that are neither lost nor revoked: the ones worth giving a task."""
        self._refresh_tokens()
        return [record for record in self.trainable()
                if not record.lost and not (self.tokens and self.tokens.is_revoked(record.client_id))]

    def mark_shut_down(self, record: ClientRecord) -> None:
        record.shut_down = True
        self.changed.fire()

    # ---- liveness ----------------------------------------------------------------------------------

    def seen(self, record: ClientRecord) -> None:
        """``record`` just made a call: it is alive."""
        if record.lost:
            record.lost = False
            log.info("client %s is back", record.client_id)
            self.changed.fire()

    def poll_started(self, record: ClientRecord) -> None:
        record.polls += 1

    def poll_ended(self, record: ClientRecord, *, broken: bool) -> None:
        """A GetTask call ended; ``broken``: before its task was delivered (the client went away)."""
        record.polls -= 1
        if broken and record.polls == 0:
            self._lose(record, "its connection broke")

    def missed_deadline(self, client_ids: Iterable[str]) -> None:
        """Clients that did not answer a closed round; those not polling now are taken for lost."""
        for client_id in client_ids:
            record = self._clients[client_id]
            if record.polls == 0:
                self._lose(record, "it missed the round's deadline and is not asking for tasks")

    def _lose(self, record: ClientRecord, why: str) -> None:
        if not record.lost:
            record.lost = True
            log.warning("client %s lost: %s; not selected until it calls again", record.client_id, why)
            self.changed.fire()


def _id_order(client_id: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order ("2" before "10"), then any others alphabetically."""
    return (0, int(client_id)) if client_id.isdigit() else (1, client_id)


def _id_range(ids: Collection[str]) -> str:
    ordered = sorted(ids, key=_id_order)
    return ", ".join(ordered) if len(ordered) <= 4 else f"{ordered[0]} .. {ordered[-1]}"
