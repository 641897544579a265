"""`fedgrad certs`: a CA plus server and client certificates for TLS (and mutual TLS) on the gRPC channel.

    fedgrad certs DIR                              # ca, server (localhost, 127.0.0.1, ::1)
    fedgrad certs DIR --hosts coord.lan,10.0.0.5   # the server is also reached by these names/addresses
    fedgrad certs DIR --clients 10                 # client-0 ... client-9 for mutual TLS
    fedgrad certs DIR --json                       # list the files written as one JSON object

An existing CA in DIR is reused, so running it again adds clients or re-issues the server certificate
without invalidating certificates already handed out. Private keys are written with mode 600.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedgrad.security.certs import KEY_TYPES, create_pki


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("certs", help="create TLS certificates for a federation", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, help="where to write (and find an existing) ca.pem/ca.key")
    parser.add_argument("--hosts", default="",
                        help="comma-separated extra host names or IP addresses for the server certificate")
    parser.add_argument("--clients", type=int, default=0, help="number of client certificates (default: 0)")
    parser.add_argument("--days", type=int, default=365, help="validity in days (default: 365)")
    parser.add_argument("--key-type", choices=KEY_TYPES, default="ec",
                        help="ec = ECDSA P-256 (default), rsa = RSA 2048")
    parser.add_argument("--json", action="store_true", help="print the written files as one JSON object")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    hosts = [host.strip() for host in args.hosts.split(",") if host.strip()]
    written = create_pki(args.directory, hosts=hosts, clients=args.clients, days=args.days, key_type=args.key_type)
    if args.json:
        print(json.dumps({"directory": str(args.directory), "files": [str(path) for path in written]}))
    else:
        print("\n".join(f"wrote {path}" for path in written))
    return 0
