"""`fedgrad client`: host one or more clients of a federated run in this process.

    fedgrad client --server HOST:PORT --shard-dir DIR --client-id K [K ...] --token-file FILE
                   [--tls-dir DIR [--tls-name NAME]] [--device cuda]

DIR holds the clients' shard files, shard-K.npz: `fedgrad server` writes them into RUN_DIR/data, and
`fedgrad data split SCENARIO.toml --out DIR` rebuilds the same files on another machine. FILE is the
run's token file (RUN_DIR/auth/client-tokens.json, or a subset made with `fedgrad tokens export`); it
must be private to its owner (chmod 600), as tokens never go on a command line. Everything else
(model, training settings, seeds) comes from the coordinator. A user model ("package.module:factory")
runs only if named with --trust-code and importable here (PYTHONPATH). In a simulation with an [attack] table, a
client whose shard has an attack-K.json beside it plays the attacker it describes (fedgrad.attacks).

Secure federations. --identity-dir, --enrollment and --policy (the operator's run policy, `fedgrad policy`): each
TRAIN task is checked against the policy (mode, key, training settings, DP noise share, cohort, run) and one
outside it is refused: the client logs the one-line reason, sends it back to the coordinator and trains nothing.
Local shuffling then uses the client's own randomness (or --training-seed), never the coordinator's seed.

TLS. --tls-dir DIR trusts the coordinator only if its certificate is signed by DIR/ca.pem (copy that
file from the machine that ran `fedgrad certs`). For mutual TLS the process also presents
DIR/client-K.pem for the first hosted client K, or the certificate --tls-name names.

The clients join, wait for tasks, train and send their updates until the coordinator ends the run;
then the process exits 0. If the coordinator is not up yet, or restarts, they retry with backoff and
give up after --connect-timeout seconds without reaching it. A revoked client stops with the
coordinator's message.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from client.pool import run_clients
from client.session import ClientError, ClientOptions
from fedgrad.attacks import load_attacks
from fedgrad.backend import parse_device
from fedgrad.data import load_shard
from fedgrad.errors import ConfigError
from fedgrad.modes.base import ClientPrivacy
from fedgrad.security.tokens import read_token_file
from fedgrad.transport.channel import ClientSecurity

#: How often a client started by `simulate` checks that simulate is still there.
PARENT_CHECK_S = 0.5

T = TypeVar("T")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("client", help="host clients that connect to a coordinator",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, type=_address, metavar="HOST:PORT", help="the coordinator's address")
    parser.add_argument("--shard-dir", required=True, type=Path, metavar="DIR",
                        help="directory holding shard-K.npz for every hosted client K")
    parser.add_argument("--client-id", dest="client_ids", required=True, nargs="+", action="extend",
                        type=_client_index, metavar="K", help="client(s) to host: shard indices (repeatable)")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="the run's client token file (RUN_DIR/auth/client-tokens.json or an export of it)")
    parser.add_argument("--tls-dir", type=Path, metavar="DIR",
                        help="connect over TLS, trusting DIR/ca.pem (and presenting DIR/client-K.pem if present)")
    parser.add_argument("--tls-name", metavar="NAME",
                        help="certificate to present for mutual TLS: DIR/NAME.pem and DIR/NAME.key")
    parser.add_argument("--device", default=None, help="train on this device instead of the scenario's "
                                                       "(cpu, cuda, cuda:N)")
    parser.add_argument("--connect-timeout", type=float, default=ClientOptions.connect_timeout_s, metavar="S",
                        help="give up after this many seconds without reaching the coordinator "
                             f"(default: {ClientOptions.connect_timeout_s:g})")
    parser.add_argument("--insecure-key-bits", action="store_true",
                        help="accept Paillier keys below 2048 bits from the coordinator (tests and demos only)")
    parser.add_argument("--noise-seed", type=int, metavar="N",
                        help="seed the DP noise shares (repeatable simulations; default: fresh OS entropy)")
    parser.add_argument("--identity-dir", type=Path, metavar="DIR",
                        help="the hosted clients' signing identities, DIR/K.key (fedgrad identity); needed by "
                             "privacy.mode = \"paillier\"")
    parser.add_argument("--enrollment", type=Path, metavar="FILE",
                        help="the operator's enrollment of all clients' public keys (fedgrad enroll)")
    parser.add_argument("--policy", type=Path, metavar="FILE",
                        help="the operator's run policy (fedgrad policy): every task is checked against it, and one "
                             "that does not fit (no encryption, another key, other settings) is refused")
    parser.add_argument("--training-seed", type=int, metavar="N",
                        help="with --policy: seed local shuffling (repeatable simulations; default: fresh OS "
                             "entropy); the coordinator's seed is never used")
    parser.add_argument("--trust-code", action="append", default=[], metavar="PACKAGE.MODULE:FACTORY",
                        help="run this user model when the coordinator's tasks name it (repeatable; imported from "
                             "PYTHONPATH; it runs with this process's rights: see docs/custom-models.md)")
    parser.add_argument("--verbose", action="store_true", help="log every join, task and acknowledgement")
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)  # used by simulate
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if len(set(args.client_ids)) != len(args.client_ids):
        raise ConfigError("--client-id: each client may be hosted once")
    if args.tls_name and not args.tls_dir:
        raise ConfigError("--tls-name needs --tls-dir DIR")
    if args.identity_dir is not None and args.policy is None:
        raise ConfigError("--identity-dir: a client of a secure federation pins the operator's run policy "
                          "(--policy FILE, written by fedgrad policy); without it the coordinator would decide "
                          "whether and to which key its updates are encrypted")
    ids = [str(k) for k in args.client_ids]
    device = parse_device(args.device) if args.device else None
    tokens = read_token_file(args.token_file, ids) if args.token_file else None
    shards = {client_id: load_shard(args.shard_dir, int(client_id)) for client_id in ids}
    security = None
    if args.tls_dir:
        security = (ClientSecurity.from_dir(args.tls_dir, args.tls_name) if args.tls_name
                    else ClientSecurity.for_clients(args.tls_dir, ids))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    options = ClientOptions(connect_timeout_s=args.connect_timeout)
    if args.identity_dir is not None:
        missing = [cid for cid in ids if not (args.identity_dir / f"{cid}.key").is_file()]
        if missing:
            raise ConfigError(f"--identity-dir {args.identity_dir}: no identity for client(s) {', '.join(missing)} "
                              "(make them with fedgrad identity)")
    if args.enrollment is not None and not args.enrollment.is_file():
        raise ConfigError(f"--enrollment {args.enrollment}: no such file")
    if args.policy is not None and not args.policy.is_file():
        raise ConfigError(f"--policy {args.policy}: no such file")
    if args.training_seed is not None and args.policy is None:
        raise ConfigError("--training-seed needs --policy (without one, the coordinator's seed is used)")
    privacy = ClientPrivacy(allow_insecure_keys=args.insecure_key_bits, noise_seed=args.noise_seed,
                            identity_dir=args.identity_dir, enrollment=args.enrollment, policy=args.policy,
                            training_seed=args.training_seed)
    clients = run_clients(args.server, shards, device=device, options=options, tokens=tokens, security=security,
                          privacy=privacy, trusted_code=args.trust_code, attacks=load_attacks(args.shard_dir, ids))
    asyncio.run(_until_orphaned(clients) if args.exit_with_parent else clients)
    return 0


async def _until_orphaned(work: Awaitable[T]) -> T:
    """Run ``work`` while the process that started this one lives (simulate's children must not outlive it,
    even when it is killed with SIGKILL and cannot stop them)."""
    parent = os.getppid()
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=PARENT_CHECK_S)
        if not task.done() and os.getppid() != parent:
            task.cancel()
            raise ClientError(f"the process that started this client ({parent}) is gone; exiting")
    return task.result()


def _client_index(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"client id must be a shard index (0, 1, ...), got {text!r}")
    return int(text)


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port in 1-65535, got {text!r}")
    return text
