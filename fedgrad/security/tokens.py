"""Run-scoped client tokens: who may join this federation run, checked on every call.

A token is ``<nonce>.<mac>`` with ``mac = HMAC-SHA256(secret, run_id, client_id, nonce)``:

* the MAC binds the token to one run and one client, so a token is useless for another run (a new run gets a
  new secret and id) or under another client's name, and cannot be forged without the secret;
* the nonce is random per issue and the issuer remembers the current one per client, so issuing again rotates
  a client's token (the old one stops working) and a leaked token can be replaced;
* revocation is permanent for the run: a revoked client is rejected, and no new token is issued to it.

Comparison is constant-time (``hmac.compare_digest``), and unknown clients are checked against a MAC as well,
so response time does not tell an attacker which client names exist.

With a ``path`` every change is persisted at once (atomic write, mode 600), so a coordinator restarted with
``--resume`` accepts exactly the clients it accepted before the crash. The file holds the secret: it is
refused at load time if other users can read it, as ssh does with private keys.

The *token file* is what clients need: ``{"run": RUN, "tokens": {client id: token}}``, mode 600, written by the
coordinator side (:func:`write_token_file`) and read by clients (:func:`read_token_file`) so that tokens never
appear on a command line.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from pathlib import Path

from fedgrad.errors import ConfigError, DataError
from fedgrad.files import PRIVATE_MODE, is_private, write_atomic

FILE_FORMAT = "fedgrad-client-tokens"
SECRET_BYTES = 32
_NONCE_BYTES = 16
_DOMAIN = b"fedgrad-client-token-v1"


def write_token_file(path: Path, run: str, tokens: dict[str, str]) -> None:
    """The client-side token file: ``{"run": RUN, "tokens": {client id: token}}``, mode 600."""
    write_atomic(Path(path), json.dumps({"run": run, "tokens": tokens}, indent=1).encode("utf-8"), PRIVATE_MODE)


def read_token_file(path: Path, client_ids: list[str]) -> dict[str, str]:
    """The tokens of ``client_ids`` from a token file (``{"run": ..., "tokens": {id: token}}``, mode 600)."""
    try:
        if not is_private(path):
            raise ConfigError(f"{path} holds run tokens but other users can read it; chmod 600 it")
        tokens = json.loads(path.read_text(encoding="utf-8"))["tokens"]
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a token file ({exc})") from None
    if not isinstance(tokens, dict):
        raise DataError(f"{path}: not a token file ('tokens' is not an object)")
    missing = [client_id for client_id in client_ids if not isinstance(tokens.get(client_id), str)]
    if missing:
        raise ConfigError(f"{path} has no token for client(s) {', '.join(missing)}")
    return {client_id: tokens[client_id] for client_id in client_ids}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _field(value: str) -> bytes:
    """Length-prefixed so that no choice of run id and client id can collide with another."""
    data = value.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


class TokenIssuer:
    """Issues, verifies and revokes the tokens of one run."""

    def __init__(self, secret: bytes, run_id: str, *, path: Path | str | None = None) -> None:
        if len(secret) < SECRET_BYTES:
            raise ConfigError(f"token secret must be at least {SECRET_BYTES} bytes, got {len(secret)}")
        if not run_id:
            raise ConfigError("run id must be non-empty")
        self._secret = bytes(secret)
        self.run_id = run_id
        self.path = None if path is None else Path(path)
        self._nonces: dict[str, str] = {}
        self._revoked: set[str] = set()
        # Unknown clients are checked against this nonce so that they cost as much as known ones.
        self._decoy_nonce = _b64(secrets.token_bytes(_NONCE_BYTES))

    @classmethod
    def create(cls, run_id: str, path: Path | str | None = None) -> TokenIssuer:
        """A new issuer with a fresh random secret, saved to ``path`` when given."""
        issuer = cls(secrets.token_bytes(SECRET_BYTES), run_id, path=path)
        if issuer.path is not None:
            issuer.save()
        return issuer

    @classmethod
    def load(cls, path: Path | str) -> TokenIssuer:
        """The issuer saved at ``path``; later changes are persisted there."""
        path = Path(path)
        try:
            if not is_private(path):
                raise ConfigError(f"{path} holds the token secret but other users can access it; chmod 600 it")
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not a token file ({exc})") from None
        try:
            if data["format"] != FILE_FORMAT:
                raise ValueError(f"format is {data['format']!r}")
            issuer = cls(bytes.fromhex(data["secret"]), data["run_id"], path=path)
            clients, revoked = data["clients"], data["revoked"]
            if not isinstance(clients, dict) or not isinstance(revoked, list):
                raise ValueError("'clients' must be an object and 'revoked' a list")
            issuer._nonces = {str(client): str(nonce) for client, nonce in clients.items()}
            issuer._revoked = {str(client) for client in revoked}
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed token file ({exc})") from None
        return issuer

    @classmethod
    def open(cls, path: Path | str, run_id: str) -> TokenIssuer:
        """Resume the issuer of ``run_id`` saved at ``path``, or create it there if the file does not exist."""
        path = Path(path)
        if not path.exists():
            return cls.create(run_id, path)
        issuer = cls.load(path)
        if issuer.run_id != run_id:
            raise ConfigError(f"{path} belongs to run {issuer.run_id!r}, not {run_id!r}")
        return issuer

    def _token(self, client_id: str, nonce: str) -> str:
        message = _DOMAIN + _field(self.run_id) + _field(client_id) + _field(nonce)
        return f"{nonce}.{_b64(hmac.new(self._secret, message, hashlib.sha256).digest())}"

    def issue(self, client_id: str) -> str:
        """A new token for ``client_id``; any earlier token of that client stops working."""
        if not client_id:
            raise ConfigError("client id must be non-empty")
        if client_id in self._revoked:
            raise ConfigError(f"client {client_id!r} was revoked for run {self.run_id!r}")
        nonce = _b64(secrets.token_bytes(_NONCE_BYTES))
        self._nonces[client_id] = nonce
        self._persist()
        return self._token(client_id, nonce)

    def verify(self, client_id: str, token: str) -> bool:
        """True only for the current token of a known, unrevoked client. Never raises on bad input."""
        if not isinstance(client_id, str) or not isinstance(token, str):
            return False
        nonce = self._nonces.get(client_id)
        admitted = nonce is not None and client_id not in self._revoked
        expected = self._token(client_id, nonce if nonce is not None and admitted else self._decoy_nonce)
        matches = hmac.compare_digest(expected.encode("ascii"), token.encode("utf-8", "replace"))
        return matches and admitted

    def revoke(self, client_id: str) -> None:
        """Reject ``client_id`` from now on, for the rest of the run."""
        self._revoked.add(client_id)
        self._nonces.pop(client_id, None)
        self._persist()

    def is_revoked(self, client_id: str) -> bool:
        return client_id in self._revoked

    @property
    def clients(self) -> frozenset[str]:
        """Clients holding a valid token."""
        return frozenset(self._nonces)

    def save(self, path: Path | str | None = None) -> None:
        """Write the issuer (secret included) to ``path`` or to its own path, atomically and with mode 600."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ConfigError("no path to save the token issuer to")
        target.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FILE_FORMAT,
            "run_id": self.run_id,
            "secret": self._secret.hex(),
            "clients": dict(sorted(self._nonces.items())),
            "revoked": sorted(self._revoked),
        }
        write_atomic(target, json.dumps(data, indent=2).encode("utf-8"), PRIVATE_MODE)

    def _persist(self) -> None:
        if self.path is not None:
            self.save()
