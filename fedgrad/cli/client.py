"""`fedgrad client`: host one or more clients of a federated run in this process.

    fedgrad client --server HOST:PORT --shard-dir DIR --client-id K [K ...] [--device cuda]

DIR holds the clients' shard files, shard-K.npz. `fedgrad server` writes them into RUN_DIR/data when it
starts and prints that path; on another machine, copy each hosted client's shard-K.npz into a
directory there. Everything else (model, training settings, seeds) comes from the coordinator.

The clients join, wait for tasks, train and send their updates until the coordinator ends the run;
then the process exits 0. If the coordinator is not up yet, or restarts, they retry with backoff and
give up after --connect-timeout seconds without reaching it.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from client.pool import run_clients
from client.session import ClientOptions
from fedgrad.backend import parse_device
from fedgrad.data import load_shard
from fedgrad.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("client", help="host clients that connect to a coordinator",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, type=_address, metavar="HOST:PORT", help="the coordinator's address")
    parser.add_argument("--shard-dir", required=True, type=Path, metavar="DIR",
                        help="directory holding shard-K.npz for every hosted client K")
    parser.add_argument("--client-id", dest="client_ids", required=True, nargs="+", action="extend",
                        type=_client_index, metavar="K", help="client(s) to host: shard indices (repeatable)")
    parser.add_argument("--device", default=None, help="train on this device instead of the scenario's "
                                                       "(cpu, cuda, cuda:N)")
    parser.add_argument("--connect-timeout", type=float, default=ClientOptions.connect_timeout_s, metavar="S",
                        help="give up after this many seconds without reaching the coordinator "
                             f"(default: {ClientOptions.connect_timeout_s:g})")
    parser.add_argument("--verbose", action="store_true", help="log every join, task and acknowledgement")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if len(set(args.client_ids)) != len(args.client_ids):
        raise ConfigError("--client-id: each client may be hosted once")
    device = parse_device(args.device) if args.device else None
    shards = {str(k): load_shard(args.shard_dir, k) for k in args.client_ids}
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    options = ClientOptions(connect_timeout_s=args.connect_timeout)
    asyncio.run(run_clients(args.server, shards, device=device, options=options))
    return 0


def _client_index(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"client id must be a shard index (0, 1, ...), got {text!r}")
    return int(text)


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port in 1-65535, got {text!r}")
    return text
