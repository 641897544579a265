"""`fedgrad server`: coordinate a federated run whose clients connect over the network.

    fedgrad server SCENARIO.toml [--host 127.0.0.1] [--port 50051] [--tls-dir DIR [--mtls]] [--set k=v ...]
    fedgrad server --resume RUN_DIR [--host ...] [--port ...] [--tls-dir DIR [--mtls]]

The server builds the scenario's dataset into a fresh run directory, RUN_DIR/data/ (vocab.json,
test.npz and one shard-K.npz per client), issues one run token per client into
RUN_DIR/auth/client-tokens.json (mode 600), prints both paths, and waits for the clients. Start each
client, in another terminal or on another machine, with

    fedgrad client --server HOST:PORT --shard-dir RUN_DIR/data --client-id K \\
                   --token-file RUN_DIR/auth/client-tokens.json [--tls-dir DIR]

A client on another machine needs its shard (copied from RUN_DIR/data, or rebuilt there with
`fedgrad data split`), its token and, with TLS, the federation's ca.pem (docs/multi-machine.md).

Security. --tls-dir DIR (made by `fedgrad certs DIR --hosts NAME`) serves TLS with DIR/server.pem;
--mtls also requires every client to present a certificate of the same CA. Without --tls-dir the
channel is plaintext, which is refused on any address but loopback unless --insecure says so.
Every client must present its run token at join and on every call; `fedgrad tokens revoke RUN_DIR K`
shuts client K out of the running federation.

Crash safety. After every round the coordinator checkpoints its state into RUN_DIR/checkpoint/; if it
dies, `fedgrad server --resume RUN_DIR` (same port) carries on from the last completed round, the
clients reconnect on their own, and the run ends with the same model it would have had.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from fedgrad.cli.common import add_listen_options, add_run_source, listen_security, logs_above_progress, print_results
from fedgrad.errors import ConfigError
from fedgrad.experiments.run import open_run, serve

DEFAULT_PORT = 50051


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("server", help="run the coordinator of a federation (clients connect to it)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_source(parser)
    add_listen_options(parser, default_port=DEFAULT_PORT, callers="clients")
    parser.add_argument("--decryptors", type=_addresses, metavar="HOST:PORT,...",
                        help="privacy.mode = \"paillier\": the k decryptors (fedgrad decryptor), in share order")
    parser.add_argument("--key-set", type=Path, metavar="FILE",
                        help="privacy.mode = \"paillier\": the public key set the dealer wrote (fedgrad keygen)")
    parser.add_argument("--enrollment", type=Path, metavar="FILE",
                        help="privacy.mode = \"paillier\": the operator's enrollment, to refuse badly signed updates "
                             "before they reach the decryptors")
    parser.add_argument("--decryptor-tls-dir", type=Path, metavar="DIR",
                        help="dial the decryptors over TLS, trusting DIR/ca.pem")
    parser.add_argument("--decryptor-tls-name", metavar="NAME",
                        help="mutual TLS to the decryptors: present DIR/NAME.pem and DIR/NAME.key (a run policy "
                             "that pins the decryptors' CA requires it)")
    parser.add_argument("--run-id", metavar="RUN",
                        help="the run id the operator's run policy fixes (fedgrad policy): its clients and "
                             "decryptors serve no other (default: a fresh random id)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    security = listen_security(args)
    if (args.decryptors is None) != (args.key_set is None):
        raise ConfigError("--decryptors and --key-set go together (privacy.mode = \"paillier\")")
    opened = open_run(args.scenario, resume=args.resume, overrides=args.overrides)
    decryptors = None
    if args.decryptors is not None:
        from fedgrad.crypto.threshold import KeySet
        from fedgrad.decryptor.pool import DecryptorPool
        from fedgrad.transport.channel import ClientSecurity

        if args.decryptor_tls_name and not args.decryptor_tls_dir:
            raise ConfigError("--decryptor-tls-name needs --decryptor-tls-dir DIR")
        tls = (ClientSecurity.from_dir(args.decryptor_tls_dir, args.decryptor_tls_name) if args.decryptor_tls_dir
               else None)
        from fedgrad.crypto.identity import Enrollment

        decryptors = DecryptorPool(args.decryptors, KeySet.load(args.key_set), security=tls,
                                   enrollment=Enrollment.load(args.enrollment) if args.enrollment else None)
    with logs_above_progress(logging.INFO):
        summary = asyncio.run(serve(opened, args.host, args.port, security, args.tls_dir, decryptors, args.run_id))
    print_results(opened.prepared.scenario.name, opened.prepared.writer.records, summary)
    return 0


def _addresses(text: str) -> list[str]:
    addresses = [item.strip() for item in text.split(",") if item.strip()]
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise argparse.ArgumentTypeError(f"expected HOST:PORT,HOST:PORT,..., got {address!r}")
    return addresses
