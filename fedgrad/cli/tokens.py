"""`fedgrad tokens`: manage who may take part in a run (the run tokens `fedgrad server`/`simulate` issued).

    fedgrad tokens revoke RUN_DIR K [K ...]                 # shut clients out, effective at once
    fedgrad tokens export RUN_DIR --client-id K [K ...] --out FILE   # a token file for one machine's clients

Revocation is written to RUN_DIR/auth/issuer.json; a running coordinator notices the change on the
client's next call and refuses it (PERMISSION_DENIED), and refuses it again at any later join, also
after `--resume`. `export` writes only the named clients' tokens (mode 600), so each machine receives
the tokens of the clients it hosts and no others.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedgrad.errors import ConfigError, DataError
from fedgrad.security import TokenIssuer, write_token_file
from server.registry import AUTH_DIR, CLIENT_TOKENS_FILE, ISSUER_FILE


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("tokens", help="revoke clients of a run, or export their tokens",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)

    revoke = actions.add_parser("revoke", help="reject these clients from now on, for the rest of the run")
    revoke.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    revoke.add_argument("client_ids", nargs="+", metavar="K", help="client ids to revoke")
    revoke.set_defaults(func=run_revoke)

    export = actions.add_parser("export", help="write the tokens of some clients to their own file")
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    export.add_argument("--client-id", dest="client_ids", required=True, nargs="+", action="extend", metavar="K")
    export.add_argument("--out", required=True, type=Path, metavar="FILE", help="token file to write (mode 600)")
    export.set_defaults(func=run_export)
    return parser


def run_revoke(args: argparse.Namespace) -> int:
    issuer = TokenIssuer.load(args.run_dir / AUTH_DIR / ISSUER_FILE)
    unknown = [k for k in args.client_ids if k not in issuer.clients and not issuer.is_revoked(k)]
    if unknown:
        raise ConfigError(f"run {issuer.run_id} has no client(s) {', '.join(unknown)}")
    for client_id in args.client_ids:
        issuer.revoke(client_id)  # persisted at once, atomically
    print(f"revoked client(s) {', '.join(args.client_ids)} of run {issuer.run_id}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    source = args.run_dir / AUTH_DIR / CLIENT_TOKENS_FILE
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
        run, tokens = document["run"], document["tokens"]
    except OSError as exc:
        raise DataError(f"cannot read {source}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{source}: not a token file ({exc})") from None
    missing = [client_id for client_id in args.client_ids if client_id not in tokens]
    if missing:
        raise ConfigError(f"run {run} has no token for client(s) {', '.join(missing)}")
    write_token_file(args.out, run, {client_id: tokens[client_id] for client_id in args.client_ids})
    print(f"wrote the tokens of client(s) {', '.join(args.client_ids)} to {args.out}")
    return 0
